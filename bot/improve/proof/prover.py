"""Proof of fix: the reported failure on the base, gone on the branch, nothing that worked broken —
judged from outside the code under test, on exactly the committed trees, before "ship it".

Checks passing on a branch say nothing about *the reported failure*: a change that deletes the failing
command passes them too, and one that answers exactly the recorded inputs, or catches the error and
answers anything, passes a replay of those inputs. A proof has two kinds of items. Each runs on a fresh
copy of exactly the base's tree and of the branch's (`Workspace.checkout`: no ignored or untracked file of
any worktree), in the OS sandbox, in identical environments — nothing tells the code which side it is,
or that it is being judged:

- **replay** (`mendbot.improve.proof.replay`, planned by `mendbot.improve.proof.replay_plan`, judged by
  `mendbot.improve.proof.judge`): the recorded failing calls — those the agent's evidence showed and those
  it held out — their neighbours (the same command with a nearby value), and recent calls that worked of
  every command the change can reach, sent over the wire to a bot started from each tree. The observer is
  the bot process itself, outside the sandbox; it judges what a user would see, what the code raised
  (the launcher's watch, armed before the checkout's code runs) and how long each answer took (when a
  call looks slow, both sides are replayed once more, one after the other, and each call keeps its
  shorter time — the branch only while a call is slow against the base's times, and up to the first call
  slow again). The fix is proven when the failing calls fail on the base and are answered on the
  branch without the error happening, and every call that worked answers alike; for a latency
  complaint, when the branch's first answer comes in at most half the base's time.
- **regression test** (`mendbot.improve.proof.test_item`): the test files the change adds or modifies, on
  the branch and on the base's tree with only those files added, run by the proof's runner
  (`bot/trust/proof_runner.py`, the installed bot's copy) under coverage, with the changed source files
  unreadable except by import. It shows the fix when it fails on the base **with the reported error** (its
  type, reaching the recorded function — not for a name the change adds), passes on the branch, **runs
  some of the lines the change made**, and changes none of the code under test (a monkeypatch or mock of
  it, a stub through its constructor, a global or a variable set, proves nothing). The change's author
  wrote it: it adds to a proof and can disprove one, never proves alone — a fix only a test shows is
  **tested**.

The bot is replayed on a copy of its stored data as it is now (`mendbot.improve.proof.bot_data`: mendbot's
own bot's cog rows and JSON files; a bot mendbot is attached to, its data files — its SQLite and JSON
state), and what the branch did to that data the base did not — a row deleted, or rewritten into another
shape — is an item of its own: a data change, never a proof; a migration the change carries (a migration
file, an `ALTER TABLE` or `CREATE TABLE` it adds) is named as one.

The verdict they add up to, and how a proof reads, are `mendbot.improve.proof.verdict`; the Prover stores
each proof it takes with the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Literal

from mendbot.db import handlers as handler_queries
from mendbot.db import proofs as queries
from mendbot.db.core import Connection
from mendbot.improve.agent.verify import run_check
from mendbot.improve.agent.workspace import Workspace
from mendbot.improve.proof import replay_plan as plans
from mendbot.improve.proof.bot_data import BotData, State, data_changes, snapshot, unreadable
from mendbot.improve.proof.host_data import ReadInPart
from mendbot.improve.proof.judge import Timing, judge_replay
from mendbot.improve.proof.replay import CALL_TIMEOUT_S, HostBot, ReplayError, ReplayResult, run_replay
from mendbot.improve.proof.replay_plan import ReplayCase, ReplayPlan, plan_proof
from mendbot.improve.proof.retime import quickest, slow_again
from mendbot.improve.proof.test_item import TEST_FILE, Request, TestRun, added_names, read_test_run, test_item
from mendbot.improve.proof.verdict import ItemVerdict, Proof, ProofItem, Side, proved_by_replay
from mendbot.kernel.git import git
from mendbot.kernel.log import get_logger
from mendbot.trust import proof_runner
from mendbot.trust.host_start import new_token, prepare_tree, snapshot_data
from mendbot.trust.sandbox import Sandbox, SandboxUnavailable
from mendbot.trust.trees import overlay_tree

__all__ = ["Prover", "changed_files", "changed_lines", "changed_tests"]

_log = get_logger(__name__)

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")
_LATENCY_FACTOR = 0.5  # a latency fix must at least halve the replayed call's time
_RUNNER = Path(proof_runner.__file__).resolve()
_RUNNER_INSIDE = "/run/mendbot/proof"


async def changed_tests(repo: Path, base_sha: str, sha: str) -> list[str]:
    """Test files the committed change `base_sha..sha` adds or modifies (not deletes), sorted."""
    result = await git(repo, "diff", "--name-only", "--diff-filter=AM", "-z", base_sha, sha, timeout_s=60)
    return sorted(name for name in result.output.split("\0") if name and TEST_FILE.search(name))


async def changed_lines(repo: Path, base_sha: str, sha: str) -> dict[str, list[int]]:
    """For each Python source (not test) file the change adds or modifies, the lines of its new version
    the change wrote — for a deletion, the lines around it."""
    names = await git(repo, "diff", "--name-only", "--diff-filter=AM", "-z", base_sha, sha, timeout_s=60)
    sources = sorted(
        name for name in names.output.split("\0") if name.endswith(".py") and not TEST_FILE.search(name)
    )
    if not sources:
        return {}
    diff = await git(repo, "diff", "-U0", "--no-color", base_sha, sha, "--", *sources, timeout_s=60)
    lines: dict[str, set[int]] = {}
    current: set[int] | None = None
    for line in diff.output.splitlines():
        if line.startswith("+++ "):
            path = line[4:].removeprefix("b/")
            current = lines.setdefault(path, set()) if path in sources else None
        elif current is not None and (hunk := _HUNK.match(line)):
            start, count = int(hunk.group(1)), int(hunk.group(2) or "1")
            current.update(range(start, start + count) if count else (start, start + 1))
    return {path: sorted(found) for path, found in lines.items() if found}


async def changed_files(repo: Path, base_sha: str, sha: str) -> list[str]:
    """Every file the committed change `base_sha..sha` adds, modifies or deletes, sorted."""
    result = await git(repo, "diff", "--name-only", "-z", base_sha, sha, timeout_s=60)
    return sorted(name for name in result.output.split("\0") if name)


class Prover:
    """Takes proofs in the sandbox and stores them with the run."""

    def __init__(
        self,
        *,
        db: Connection,
        workspace: Workspace,
        sandbox: Sandbox,
        test_timeout_s: float,
        latency_min_ms: float,
        replay_answer_s: float = CALL_TIMEOUT_S,
        slowdown: tuple[float, float] = (5.0, 250.0),
        redact: Callable[[str], str] = str,
        now: Callable[[], float] = time.time,
        data_dir: Path | None = None,
    ) -> None:
        self._db = db
        self._workspace = workspace
        self._sandbox = sandbox
        self._test_timeout_s = test_timeout_s
        self._latency_min_ms = latency_min_ms
        self._replay_answer_s = replay_answer_s
        self._timing = Timing(factor=slowdown[0], min_ms=slowdown[1], latency_min_ms=latency_min_ms)
        self._redact = redact
        self._now = now
        self._data_dir = data_dir  # where mendbot's own bot keeps its data (None: no copy of it is made)

    async def _replay(
        self,
        checkout: Path,
        plan: ReplayPlan,
        data: BotData | None = None,
        enough: Callable[[str, float], bool] | None = None,
    ) -> dict[str, ReplayResult] | str:
        if not plan.replayable:
            return {}
        try:
            config = self._workspace.host
            host = HostBot(config, self._workspace.repo_root) if config is not None else None
            return await run_replay(
                checkout,
                plan,
                sandbox=self._sandbox,
                call_timeout_s=self._replay_answer_s,
                host=host,
                data=data,
                redact=self._redact,
                enough=enough,
            )
        except ReplayError as exc:
            return str(exc)

    @contextlib.asynccontextmanager
    async def _live_data(self) -> AsyncIterator[Path | None]:
        """A copy of the live bot's stored data as it is now (`mendbot.improve.proof.bot_data`), for the
        block: mendbot's own bot's, or the data files of a bot mendbot is attached to, from its live
        checkout. None when there is none to copy."""
        host = self._workspace.host
        if (self._data_dir is None and host is None) or (host is not None and not host.data_files):
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="mendbot-data-") as scratch:
            copy = Path(scratch) / "data"
            try:
                if host is not None:
                    names = host.data_files
                    await asyncio.to_thread(snapshot_data, self._workspace.repo_root, names, copy)
                else:
                    assert self._data_dir is not None
                    await snapshot(self._db, self._data_dir, copy)
            except Exception:
                _log.exception("copying the bot's data for the replay failed")
                yield None
                return
            yield copy

    def _side_data(self, copy: Path | None) -> BotData | None:
        if copy is None:
            return None
        if self._workspace.host is not None:
            return BotData(copy, None, files=tuple(self._workspace.host.data_files))
        return BotData(copy, str(self._data_dir)) if self._data_dir is not None else None

    async def prove(
        self,
        *,
        run_id: int,
        base_sha: str,
        sha: str,
        fingerprint: str | None,
        kind: str | None,
        shown: set[str] | None = None,
    ) -> Proof:
        """Commit `sha` against `base_sha`: regression tests and replay (module docstring). `shown`: the
        failing calls the agent's evidence showed (`mendbot.improve.proof.heldout`); the rest are held out."""
        started = time.perf_counter()
        repo = self._workspace.repo_root
        tests = await changed_tests(repo, base_sha, sha)
        changed = await changed_files(repo, base_sha, sha)
        sources = await changed_lines(repo, base_sha, sha) if tests else {}
        items: list[ProofItem] = []
        plan = ReplayPlan([], [], fingerprint is None)
        if tests or fingerprint is not None or kind is not None:
            base_tree = await overlay_tree(repo, base_sha, sha, tests) if tests else base_sha
            # Both copies are named as the live checkout is: nothing in a path says which side it is, or
            # that it is judged.
            name = repo.name
            async with (
                self._workspace.checkout(base_tree, name=name, at=base_sha) as base,
                self._workspace.checkout(sha, name=name) as branch,
                self._live_data() as copy,
            ):
                reach = plans.affected_kinds(await handler_queries.every(self._db), changed, base)
                plan = await plan_proof(
                    self._db, fingerprint=fingerprint, kind=kind, shown=shown or set(), reach=reach
                )
                plan = plans.with_failure_extensions(plan, base)
                request = Request(
                    tests,
                    sources,
                    sorted({*sources, *([plan.failure.file] if plan.failure and plan.failure.file else [])}),
                    plan.failure,
                    added_names(base, branch, changed),
                )
                base_data, branch_data = self._side_data(copy), self._side_data(copy)
                (base_tests, base_replay), (branch_tests, branch_replay) = await asyncio.gather(
                    self._side(base, request, plan, base_data), self._side(branch, request, plan, branch_data)
                )
                if base_tests is not None and branch_tests is not None:
                    items.append(test_item(request, base_tests, branch_tests))
                source = functools.partial(_read, branch)
                replayed = _replay_items(plan, base_replay, branch_replay, self._timing, source)
                if slow := [item.label for item in replayed if item.verdict == "slow"]:
                    _log.info(
                        "a replayed call looked slow: timing both sides again",
                        run_id=run_id,
                        calls=len(slow),
                        first=slow[0],
                    )
                    # Timed again, one side after the other: run at once, one side's first answers can
                    # meet the other's start or stop (seen: the branch's first answer came as the base's
                    # bot stopped, in both replays), and a busy machine stalls one answer of one side.
                    # A change that is slow stays slow. The branch is timed again only where a call is
                    # still slow against the base's times, and up to the first call slow again: the change
                    # is slow then, whatever the calls after it take (each keeps its first time) — but
                    # for a latency complaint, whose fixed calls are judged by their time too.
                    again_base = await self._replay(base, plan, self._side_data(copy))
                    base_replay = quickest(base_replay, again_base)
                    enough = slow_again(plan, base_replay, branch_replay, self._timing, source)
                    if enough is not None or plan.latency:
                        until = None if plan.latency else enough
                        again_branch = await self._replay(branch, plan, self._side_data(copy), until)
                        branch_replay = quickest(branch_replay, again_branch)
                    replayed = _replay_items(plan, base_replay, branch_replay, self._timing, source)
                items += replayed
                if copy is not None and base_data is not None and branch_data is not None:
                    before = base_data.state(copy)
                    found = _changed_data(before, base_data, branch_data)
                    migration = await _migration(repo, base_sha, sha, changed) if found else None
                    items += _data_items(before, found, migration)
        items += _unreplayable_items(plan)
        proof = _judge(items, time.perf_counter() - started, plan)
        await self._store(run_id, "verify", sha, base_sha, proof)
        return proof

    async def prove_deployed(
        self, *, run_id: int, sha: str, base_sha: str, fingerprint: str | None, kind: str | None
    ) -> Proof | None:
        """The replay once against the deployed commit `sha`; None when there is nothing to replay."""
        started = time.perf_counter()
        plan = await plans.plan_replay(self._db, fingerprint=fingerprint, kind=kind)
        if not plan.replayable:
            return None
        async with (
            self._workspace.checkout(sha, name=self._workspace.repo_root.name) as live,
            self._live_data() as copy,
        ):
            plan = plans.with_failure_extensions(plan, live)
            results = await self._replay(live, plan, self._side_data(copy))
        items: list[ProofItem] = []
        for case in plan.replayable:
            recorded = Side(False if case.fingerprint else None, _recorded(case), case.recorded_ms / 1000)
            if isinstance(results, str):
                items.append(
                    ProofItem("replay", case.label, recorded, None, "neutral", f"could not run: {results}")
                )
                continue
            after = results.get(case.key)
            fixed = (
                after is not None
                and after.ok
                and (not plan.latency or after.duration_ms <= case.recorded_ms * _LATENCY_FACTOR)
            )
            note = "" if fixed else _still_failing(case, after, plan.latency)
            items.append(
                ProofItem(
                    "replay", case.label, recorded, _result_side(after), "proves" if fixed else "fails", note
                )
            )
        proof = _judge(items, time.perf_counter() - started, plan, stage="deploy")
        await self._store(run_id, "deploy", sha, base_sha, proof)
        return proof

    async def prove_rollback(
        self, *, run_id: int, sha: str, fingerprint: str | None, kind: str | None
    ) -> Proof | None:
        """The replay against a rolled-back commit `sha`: proven when each recorded call behaves again
        as it did before the fix (the recorded error shown again; for a latency complaint, answered).
        Not stored as a proof of the run (the caller records it); None when nothing is replayable."""
        started = time.perf_counter()
        plan = await plans.plan_replay(self._db, fingerprint=fingerprint, kind=kind)
        if not plan.replayable:
            return None
        async with (
            self._workspace.checkout(sha, name=self._workspace.repo_root.name) as tree,
            self._live_data() as copy,
        ):
            plan = plans.with_failure_extensions(plan, tree)
            results = await self._replay(tree, plan, self._side_data(copy))
        items: list[ProofItem] = []
        for case in plan.replayable:
            recorded = Side(False if case.fingerprint else None, _recorded(case), case.recorded_ms / 1000)
            if isinstance(results, str):
                items.append(
                    ProofItem("replay", case.label, recorded, None, "neutral", f"could not run: {results}")
                )
                continue
            after = results.get(case.key)
            if case.error_type is not None:
                same = after is not None and after.error_type == case.error_type
            else:
                same = after is not None and after.answered
            note = "as before the fix" if same else f"not as before the fix: {_result_side(after).text}"
            verdict: ItemVerdict = "proves" if same else "fails"
            items.append(ProofItem("replay", case.label, recorded, _result_side(after), verdict, note))
        return _judge(items, time.perf_counter() - started, plan, stage="deploy")

    async def _side(
        self, checkout: Path, request: Request, plan: ReplayPlan, data: BotData | None
    ) -> tuple[TestRun | None, dict[str, ReplayResult] | str]:
        """One side's tests and replay, at once (each its own sandbox: neither sees the other). A bot
        mendbot is attached to finds its tree as wherever it is started: its data files, and the files
        git does not keep with their secrets replaced (the replay gives their token key its own token)."""
        started = time.perf_counter()
        if self._workspace.host is not None:
            host = HostBot(self._workspace.host, self._workspace.repo_root)
            for problem in prepare_tree(checkout, host, new_token(), data.snapshot if data else None):
                _log.warning("a file the bot needs was not copied for its proof", problem=problem)
        tests = self._run_tests(checkout, request) if request.tests else _nothing()
        test_run, replayed = await asyncio.gather(tests, self._replay(checkout, plan, data))
        _log.info("proof side", checkout=checkout.name, seconds=round(time.perf_counter() - started, 2))
        return test_run, replayed

    async def _run_tests(self, checkout: Path, request: Request) -> TestRun:
        command = shlex.join(["python", f"{_RUNNER_INSIDE}/runner.py", request.json()])
        with tempfile.TemporaryDirectory(prefix="mendbot-proof-") as runner_dir:
            shutil.copyfile(_RUNNER, Path(runner_dir) / "runner.py")
            try:
                async with self._sandbox.jail(
                    checkout, git_dir=None, writable=False, binds={Path(runner_dir): _RUNNER_INSIDE}
                ) as jail:
                    result = await run_check(
                        command, jail, jail.environment(), self._test_timeout_s, self._redact
                    )
            except SandboxUnavailable as exc:
                return TestRun(Side(None, f"not run: {exc}"), None)
        return read_test_run(result)

    async def _store(
        self, run_id: int, stage: queries.ProofStage, sha: str, base_sha: str, proof: Proof
    ) -> None:
        await queries.insert(
            self._db,
            run_id=run_id,
            stage=stage,
            sha=sha,
            base_sha=base_sha,
            verdict=proof.verdict,
            reason=self._redact(proof.reason),
            items=[item.redacted(self._redact).to_dict() for item in proof.items],
            overhead_s=round(proof.overhead_s, 3),
            now=self._now(),
        )
        _log.info(
            "proof",
            run_id=run_id,
            stage=stage,
            verdict=proof.verdict,
            basis=proof.basis,
            items=len(proof.items),
            overhead_s=round(proof.overhead_s, 2),
        )


async def _nothing() -> None:
    return None


def _read(root: Path, path: str) -> str | None:
    """A file of a checkout's committed tree by its repository path (None: not a file inside it)."""
    target = (root / path).resolve()
    if not target.is_relative_to(root.resolve()) or not target.is_file():
        return None
    try:
        return target.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _recorded(case: ReplayCase) -> str:
    return f"recorded: {case.error_type}" if case.error_type else "recorded"


def _result_side(result: ReplayResult | None) -> Side:
    if result is None:
        return Side(None, "not run")
    return Side(result.ok, result.shown(), result.duration_ms / 1000 if result.answered else None)


def _still_failing(case: ReplayCase, after: ReplayResult | None, latency: bool) -> str:
    if after is None:
        return "the replay did not run it"
    if not after.answered:
        return "no answer on the branch"
    if after.error_type is not None:
        same = case.error_type is not None and after.error_type == case.error_type
        return f"{'still fails as recorded' if same else 'fails with another error'}: {after.error_type}"
    if latency:
        return f"still slow: {after.duration_ms:.0f} ms (recorded {case.recorded_ms:.0f} ms)"
    return ""


def _replay_items(
    plan: ReplayPlan,
    base: dict[str, ReplayResult] | str,
    branch: dict[str, ReplayResult] | str,
    timing: Timing,
    source_of: Callable[[str], str | None],
) -> list[ProofItem]:
    if isinstance(base, str) or isinstance(branch, str):
        why = base if isinstance(base, str) else branch
        return [
            ProofItem("replay", case.label, None, None, "neutral", f"could not run: {why}", case.role)
            for case in plan.replayable
            if case.role in ("recorded", "held-out")
        ]
    return judge_replay(plan, base, branch, timing=timing, source_of=source_of)


_MIGRATION = re.compile(r"(^|/)(migrations?|versions)/|migrat", re.I)
_SCHEMA = re.compile(r"\b(?:ALTER|CREATE)\s+TABLE\b[^\n'\"]{0,60}", re.I)


def _changed_data(before: State, base: BotData, branch: BotData) -> list[str]:
    """What the branch did to the bot's stored data that the base did not (`bot_data.data_changes`); for a
    branch whose data could not be read after the replay (its bot did not end when asked), that."""
    if before and branch.after is None and branch.unread is not None and base.after is not None:
        return [f"left data that could not be read: {branch.unread}"]
    return data_changes(before, base.after, branch.after)


async def _migration(repo: Path, base_sha: str, sha: str, changed: list[str]) -> str | None:
    """The migration the change carries, named: a file of a migrations folder, or a statement that
    changes a table's schema (`ALTER TABLE`, `CREATE TABLE`) among the lines it adds."""
    files = [path for path in changed if _MIGRATION.search(path)]
    if files:
        return f"`{files[0]}`"
    diff = await git(repo, "diff", "-U0", "--no-color", base_sha, sha, timeout_s=60, check=False)
    where = ""
    for line in diff.output.splitlines():
        if line.startswith("+++ "):
            where = line[4:].removeprefix("b/")
        elif line.startswith("+") and (statement := _SCHEMA.search(line)) is not None:
            return f"`{statement[0].strip()}` in `{where}`"
    return None


def _data_items(before: State, found: list[str], migration: str | None) -> list[ProofItem]:
    """The data change the branch made that the base did not (`mendbot.improve.proof.bot_data`), as one
    item that caps the proof: a failure made to vanish by deleting or rewriting what it met is no fix,
    and a deliberate migration (a migration file, a schema statement in the change) is named as one. A
    data file that cannot be read as SQLite or JSON is said too: only whether it is there is compared."""
    items = []
    if found:
        shown = "; ".join(found[:3]) + (f" (+{len(found) - 3} more)" if len(found) > 3 else "")
        what = f"a data migration ({migration})" if migration else "a data change"
        note = f"{what}: the branch {shown}, where the base left the bot's stored data as it was"
        kept = sum(1 for value in before.values() if not isinstance(value, ReadInPart))
        base_side = Side(True, f"{kept} stored rows and files, kept")
        branch_side = Side(False, f"{len(found)} changed")
        items.append(
            ProofItem("replay", "the bot's stored data", base_side, branch_side, "changes_data", note, "data")
        )
    for where, why in unreadable(before).items():
        note = f"`{where}` is {why}: only whether it is there is compared"
        items.append(ProofItem("replay", "the bot's stored data", None, None, "neutral", note, "stored"))
    return items


def _unreplayable_items(plan: ReplayPlan) -> list[ProofItem]:
    return [
        ProofItem(
            "replay", case.label, None, None, "neutral", f"not replayable: {case.unreplayable}", case.role
        )
        for case in plan.cases
        if case.unreplayable is not None and case.role in ("recorded", "held-out")
    ]


def _not_replayed(items: list[ProofItem], plan: ReplayPlan) -> str:
    """Why no replay proved the fix, in a few words (what a tested proof says it lacks)."""
    unreplayable = [case.unreplayable for case in plan.cases if case.unreplayable and case.failing]
    if unreplayable:
        return f"the failure could not be replayed: {unreplayable[0]}"
    if not plan.cases:
        return "nothing was recorded to replay"
    neutral = [
        item.note
        for item in items
        if item.kind == "replay" and item.verdict == "neutral" and item.role != "stored"
    ]
    return f"the replay did not show it: {neutral[0]}" if neutral else "no replay showed it"


def _judge(
    items: list[ProofItem], overhead_s: float, plan: ReplayPlan, stage: Literal["verify", "deploy"] = "verify"
) -> Proof:
    failing = [item for item in items if item.verdict == "fails"]
    if failing:
        reason = "; ".join(f"{item.title}: {item.note}" for item in failing[:3])
        return Proof("disproven", reason, items, overhead_s, stage)
    cautious = [item for item in items if item.cautious]
    if any(item.verdict == "proves" for item in items) or cautious:
        if cautious:
            notes = [
                f"{item.title}: {'; '.join([item.note, *item.flags] if item.note else item.flags)}"
                for item in cautious[:3]
            ]
            return Proof("unproven", "the failure is gone, but " + "; ".join(notes), items, overhead_s, stage)
        if stage == "deploy":
            what = "the replayed calls are answered by the live code"
        elif proved_by_replay(items):
            what = "the failure a user saw reproduces on the base and is gone on the branch"
            checked = [
                i for i in items if i.role in ("held-out", "neighbour", "pass") and i.verdict != "neutral"
            ]
            if checked:
                what += ", on calls the agent was not shown too, and what worked still works"
        else:
            # The change's own test is the only evidence: its author wrote it, so it shows the fix
            # without proving it (nothing was replayed from outside the code under test).
            why = _not_replayed(items, plan)
            what = (
                f"only the change's own test shows the fix ({why}): it fails on the base and passes on"
                " the branch"
            )
            return Proof("tested", what, items, overhead_s, stage)
        return Proof("proven", what, items, overhead_s, stage)
    if not items:
        why = "nothing was recorded to replay" if not plan.cases else "no recorded call could be replayed"
        return Proof("unproven", f"no test reproduces the failure and {why}", items, overhead_s, stage)
    said = "; ".join(f"{item.title}: {item.note}" for item in items[:3])
    return Proof("unproven", f"nothing proved the fix ({said})", items, overhead_s, stage)
