"""File claims: which files each live run may change, so several runs can edit at once safely.

A fix run declares the files it will change in its plan (the plan's `files`, else the files its
`changes` name). Each path is resolved the way the guard resolves paths — inside the run's worktree,
after symlinks and `..` — and stored repository-relative (a directory as `dir/`, covering everything
under it). A path is refused, with the reason, when it is empty, a pattern (`*`, `?`, `[`, `{`), the
home directory, outside the worktree, the whole repository, a secret file, inside `.git/`, or
protected without the run's security flag.

The claim is recorded in SQLite (`claims`) and counts while its run is *live* (`LIVE_STATES`: from
queued to merging, awaiting approval included): a run that ended in any way, was interrupted, or whose
change is merged holds nothing — also after a crash, since ownership is read through the runs' states.
Rows of ended runs are deleted when the run's task ends and at start-up.

Two live runs never hold overlapping paths (compared case-insensitively, so `Cogs/x.py` and
`cogs/x.py` never pass as different on a case-insensitive disk). A run whose declared claim overlaps
a live run's waits — unbounded, it is queued behind that run, and says so in its channel — until the
holder stops being live; every state change of any run wakes the waiters (no polling). While editing,
the guard denies an edit outside the claim and tells the agent to call the `claim_files` tool, which
extends the claim, waiting at most `improve.claim_wait_s` for another run to let go of those files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec

from mendbot.db import claims as queries
from mendbot.db.core import Connection
from mendbot.improve.runs import ACTIVE_STATES, Run, RunService, RunState
from mendbot.kernel.log import get_logger
from mendbot.kernel.waits import wait_for
from mendbot.trust.path_rules import protected_entry, secret_reason

__all__ = [
    "LIVE_STATES",
    "Claim",
    "ClaimBusy",
    "ClaimRefused",
    "ClaimService",
    "covers",
    "normalise_path",
    "overlapping",
    "plan_files",
]

_log = get_logger(__name__)

# A merged change is on main (deployed, watching): the files are free for the next run to change.
LIVE_STATES: frozenset[RunState] = ACTIVE_STATES - {"deployed", "watching"}
_PATTERN = re.compile(r"[*?\[\]{}]")
# A waiting run records that it is still waiting this often, so the stuck-run watchdog (which fails
# runs without progress) can tell a run queued behind another from a hung one.
_HEARTBEAT_FRACTION = 4

Waiter = Callable[[dict[int, list[str]], bool], Awaitable[None]]


class ClaimRefused(ValueError):
    """A path that cannot be claimed; the message says why."""


class ClaimBusy(Exception):
    """Other live runs hold some of the paths: `holders` maps their run ids to those paths."""

    def __init__(self, holders: dict[int, list[str]]) -> None:
        self.holders = holders
        super().__init__(_holders_text(holders))


def normalise_path(worktree: Path, raw: str, *, protected: Sequence[str], security: bool) -> str:
    """The repository-relative form of `raw` (absolute or relative to the worktree), or ClaimRefused."""
    root = os.path.realpath(worktree)
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        raise ClaimRefused("an empty path")
    if "\x00" in text:
        raise ClaimRefused(f"{text!r} contains a NUL byte")
    if _PATTERN.search(text):
        raise ClaimRefused(f"{text} is a pattern; claim files or directories by name")
    if text.startswith("~"):
        raise ClaimRefused(f"{text} is outside the worktree (home directory)")
    joined = os.path.join(root, text)
    real = os.path.realpath(joined)
    lexical = os.path.normpath(joined)

    def inside(path: str) -> bool:
        return path == root or path.startswith(root + os.sep)

    def rel(path: str) -> str:
        return PurePosixPath(os.path.relpath(path, root)).as_posix()

    if not inside(real):
        raise ClaimRefused(f"{text} is outside the worktree")
    if root in (real, lexical):
        raise ClaimRefused(f"{text} is the whole repository; claim the files you will change")
    names = dict.fromkeys([rel(real), *([rel(lexical)] if inside(lexical) else [])])
    for name in names:
        secret = secret_reason(name)
        if secret:
            raise ClaimRefused(f"{secret}; secret files are never changed")
        if name == ".git" or name.startswith(".git/"):
            raise ClaimRefused(f"{name} is inside .git/, which the agent never writes")
        if not security and protected_entry(name, protected):
            raise ClaimRefused(f"{name} is protected (needs the security flag)")
    result = rel(real)
    if os.path.isdir(real) or (text.endswith("/") and not os.path.exists(real)):
        result += "/"
    return result


def covers(paths: Iterable[str], rel: str) -> bool:
    """Whether the claimed `paths` include the repository-relative file `rel`."""
    return any(rel == path or (path.endswith("/") and rel.startswith(path)) for path in paths)


def _overlap(a: str, b: str) -> bool:
    a, b = a.casefold(), b.casefold()
    return a == b or (a.endswith("/") and b.startswith(a)) or (b.endswith("/") and a.startswith(b))


def overlapping(mine: Iterable[str], theirs: Iterable[str]) -> list[str]:
    """The paths of `theirs` that overlap any of `mine` (the same file, or one inside a claimed directory)."""
    mine = list(mine)
    return [path for path in theirs if any(_overlap(path, own) for own in mine)]


def plan_files(plan: dict[str, Any]) -> list[str]:
    """The files a plan declares: its `files` list, else the `file` of each of its `changes`."""
    declared = plan.get("files")
    if isinstance(declared, list):
        return [item for item in declared if isinstance(item, str)]
    changes = plan.get("changes")
    if not isinstance(changes, list):
        return []
    return [str(change["file"]) for change in changes if isinstance(change, dict) and change.get("file")]


def _holders_text(holders: dict[int, list[str]]) -> str:
    return "; ".join(
        f"run #{run_id} holds {', '.join(f'`{path}`' for path in paths[:5])}"
        for run_id, paths in sorted(holders.items())
    )


class Claim(msgspec.Struct):
    """One run's claim as the guard reads it while the agent edits; `extend` is the claim_files tool."""

    run_id: int
    worktree: Path
    security: bool
    paths: list[str] = msgspec.field(default_factory=list)
    service: ClaimService | None = None

    def covers(self, rel: str) -> bool:
        return covers(self.paths, rel)

    def shown(self) -> str:
        return ", ".join(self.paths) if self.paths else "nothing"

    async def extend(self, raw_paths: list[str], why: str) -> tuple[bool, str]:
        """(ok, the tool's answer): claim more paths, all or none, waiting boundedly for other runs."""
        if self.service is None:
            return False, "claims cannot be extended in this run"
        return await self.service.extend(self, raw_paths, why)


class ClaimService:
    """Records, checks and releases claims; wakes runs waiting for files when any run changes state."""

    def __init__(
        self,
        db: Connection,
        runs: RunService,
        *,
        protected: Sequence[str],
        extend_wait_s: float,
        heartbeat_s: float,
    ) -> None:
        self._db = db
        self._runs = runs
        self._protected = tuple(protected)
        self._extend_wait_s = extend_wait_s
        self._heartbeat_s = heartbeat_s
        self._lock = asyncio.Lock()  # check-then-record is atomic: two runs never both take a file
        self._changed = asyncio.Event()
        runs.add_listener(self._run_changed)

    @classmethod
    def heartbeat_for(cls, stuck_timeout_s: float) -> float:
        return max(1.0, stuck_timeout_s / _HEARTBEAT_FRACTION)

    def _run_changed(self, run: Run) -> None:
        # A state change may free files: wake every waiter (each re-checks), then arm a fresh event.
        self._changed.set()
        self._changed = asyncio.Event()

    def normalise(self, claim: Claim, raw_paths: Iterable[str]) -> tuple[list[str], list[str]]:
        """(normalised paths, refusals) for `raw_paths` in `claim`'s worktree."""
        paths: list[str] = []
        refused: list[str] = []
        for raw in raw_paths:
            try:
                path = normalise_path(claim.worktree, raw, protected=self._protected, security=claim.security)
            except ClaimRefused as exc:
                refused.append(f"{str(raw)[:200]}: {exc}")
                continue
            if path not in paths:
                paths.append(path)
        return paths, refused

    async def holders(self, run_id: int, paths: list[str]) -> dict[int, list[str]]:
        """Other live runs' claimed paths that overlap `paths`, by run id."""
        found: dict[int, list[str]] = {}
        for other, path in await queries.held_in_states(self._db, LIVE_STATES):
            if other != run_id and overlapping(paths, [path]):
                found.setdefault(other, []).append(path)
        return found

    async def declare(
        self, run: Run, worktree: Path, raw_paths: list[str], *, on_wait: Waiter
    ) -> tuple[Claim, list[str]]:
        """The run's claim from its plan: (claim, refusals). Waits, unbounded, while a live run holds
        any of those files (`on_wait(holders, first)` says so, then again every heartbeat)."""
        claim = Claim(run.id, worktree, run.security, service=self)
        paths, refused = self.normalise(claim, raw_paths)
        await queries.delete_for_run(self._db, run.id)  # a resumed run plans again from scratch
        await self._acquire(run.id, paths, "plan", wait_s=None, on_wait=on_wait)
        claim.paths = paths
        _log.info("claimed", run_id=run.id, paths=paths, refused=refused)
        return claim, refused

    async def extend(self, claim: Claim, raw_paths: list[str], why: str) -> tuple[bool, str]:
        paths, refused = self.normalise(claim, raw_paths)
        if refused:
            return False, "Nothing was claimed: " + "; ".join(refused)
        new = [path for path in paths if not claim.covers(path)]
        if not new:
            return True, f"Already claimed; this run may change: {claim.shown()}."
        try:
            await self._acquire(claim.run_id, new, why[:200], wait_s=self._extend_wait_s, on_wait=None)
        except ClaimBusy as busy:
            return False, (
                f"Nothing was claimed: {busy} (waited {self._extend_wait_s:g}s). Another run owns those"
                " files until it ends; change only your claimed files, or finish and say what is left."
            )
        claim.paths.extend(new)
        await self._runs.event(
            claim.run_id, "claim_extended", actor="agent", detail={"paths": new, "why": why[:200]}
        )
        _log.info("claim_extended", run_id=claim.run_id, paths=new)
        return True, f"Claimed {', '.join(new)}; this run may now change: {claim.shown()}."

    async def _acquire(
        self, run_id: int, paths: list[str], why: str, *, wait_s: float | None, on_wait: Waiter | None
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if wait_s is None else loop.time() + wait_s
        first = True
        while True:
            changed = self._changed  # taken before the check, so a change during it is not missed
            async with self._lock:
                holders = await self.holders(run_id, paths)
                if not holders:
                    if paths:
                        await queries.add(self._db, run_id, paths, why, self._runs.now())
                    return
            if deadline is not None and loop.time() >= deadline:
                raise ClaimBusy(holders)
            if on_wait is not None:
                await on_wait(holders, first)
            first = False
            timeout = self._heartbeat_s
            if deadline is not None:
                timeout = min(timeout, deadline - loop.time())
            with contextlib.suppress(TimeoutError):
                await wait_for(changed.wait(), max(0.0, timeout))

    async def paths_of(self, run_id: int) -> list[str]:
        return await queries.for_run(self._db, run_id)

    async def release(self, run_id: int) -> None:
        """Forget what `run_id` held (it ended); its claim stopped counting when it stopped being live."""
        released = await queries.delete_for_run(self._db, run_id)
        if released:
            _log.info("claims_released", run_id=run_id, paths=released)

    async def release_ended(self) -> int:
        """At start-up: forget the claims of every run that is no longer live."""
        return await queries.delete_unless_in_states(self._db, LIVE_STATES)
