"""Proof of fix: the reported failure reproduced on the base, gone on the branch — before "ship it".

Checks passing on a branch say nothing about *the reported failure*: a change that deletes the failing
command passes them too. A proof has up to two kinds of items, each run on the base commit and on the
branch, every piece of worktree code inside the OS sandbox (`bot.sandbox`):

- **regression test**: the test files the change adds or modifies (`tests/**/test_*.py`,
  `*_test.py`) run with pytest on the branch, and on a throwaway worktree at the base commit with only
  those test changes applied. It proves the fix when it fails on the base and passes on the branch; a
  test that passes on the base proves nothing, and one failing on the branch shows the fix incomplete;
- **incident replay** (`bot.improve.replay`): the recorded failing invocations, sent to a throwaway bot
  loading each checkout's cogs. It proves the fix when the base fails (as recorded) and the branch
  completes; for a latency complaint, when the branch takes at most half the base's time.

The verdict is `proven` (some item proves it, none says otherwise), `disproven` (an item shows the
change does not fix it: the replay still fails, the test fails on the branch) or `unproven` (nothing
could tell). What an agent can act on — a test passing without the fix, a replay still failing — is
`Proof.feedback()`, fed back like failed checks. The proof is stored with the run (`proofs`) and
rendered as a small table into the proposal and its report.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from bot.db import proofs as queries
from bot.db.core import Connection
from bot.git import git
from bot.improve.replay import ReplayCase, ReplayError, ReplayPlan, ReplayResult, plan_replay, run_replay
from bot.improve.trees import overlay_tree
from bot.improve.verify import run_check
from bot.improve.workspace import Workspace
from bot.log import get_logger
from bot.sandbox import Sandbox, SandboxUnavailable

__all__ = ["ItemVerdict", "Proof", "ProofItem", "Prover", "Side", "Verdict", "changed_tests", "load_proof"]

_log = get_logger(__name__)

Verdict = Literal["proven", "unproven", "disproven"]
ItemVerdict = Literal["proves", "fails", "no_proof", "neutral"]

_TEST_FILE = re.compile(r"(^|/)(test_[^/]*|[^/]*_test)\.py$")
_LATENCY_FACTOR = 0.5  # a latency fix must at least halve the replayed call's time
_MARK = {True: "✅", False: "❌", None: "—"}


@dataclass(frozen=True)
class Side:
    """One item's outcome on one checkout: passed or not (None: not run), a short text, its duration."""

    ok: bool | None
    text: str
    duration_s: float | None = None

    def cell(self) -> str:
        took = "" if self.duration_s is None else f" {_seconds(self.duration_s)}"
        return f"{_MARK[self.ok]} {self.text}{took}".strip()


@dataclass(frozen=True)
class ProofItem:
    kind: Literal["test", "replay"]
    label: str
    base: Side | None
    branch: Side | None
    verdict: ItemVerdict
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ProofItem:
        sides = {name: Side(**value[name]) if value.get(name) else None for name in ("base", "branch")}
        return cls(
            value["kind"], value["label"], sides["base"], sides["branch"], value["verdict"], value["note"]
        )


@dataclass(frozen=True)
class Proof:
    verdict: Verdict
    reason: str
    items: list[ProofItem] = field(default_factory=list)
    overhead_s: float = 0.0
    stage: Literal["verify", "deploy"] = "verify"

    @property
    def proven(self) -> bool:
        return self.verdict == "proven"

    def feedback(self) -> str | None:
        """What the agent must change for the proof to hold, or None when there is nothing to act on."""
        lines = [
            f"- {item.kind} `{item.label}`: {item.note}"
            for item in self.items
            if item.verdict in ("fails", "no_proof")
        ]
        if not lines:
            return None
        return (
            "The proof of your fix does not hold. A fix must come with a test that FAILS on the base commit "
            "(with only your test changes applied) and PASSES with your change, and the recorded failing "
            "calls must complete on your branch:\n" + "\n".join(lines)
        )

    def headline(self) -> str:
        if self.verdict == "proven":
            return f"✅ **proven** — {self.reason}"
        if self.verdict == "disproven":
            return f"❌ **unproven** (disproved) — {self.reason}"
        return f"⚠️ **unproven** — {self.reason}"

    def table(self) -> str:
        """The proof as a markdown table (the PR body and the README)."""
        first, second = ("base", "branch") if self.stage == "verify" else ("recorded", "live")
        rows = [f"| proof | {first} | {second} | |", "|---|---|---|---|"]
        for item in self.items:
            base = item.base.cell() if item.base else "—"
            branch = item.branch.cell() if item.branch else "—"
            rows.append(f"| {item.kind} `{item.label}` | {base} | {branch} | {item.note} |")
        return "\n".join(rows)

    def chat(self) -> str:
        """The proof for a chat message: a headline and one line per item (Discord renders no tables)."""
        lines = [f"🧪 Proof: {self.headline()}"]
        for item in self.items[:8]:
            base = item.base.cell() if item.base else "—"
            branch = item.branch.cell() if item.branch else "—"
            note = f" — {item.note}" if item.note and item.verdict != "proves" else ""
            lines.append(f"• {item.kind} `{item.label}`: base {base} · branch {branch}{note}")
        return "\n".join(lines)


def _seconds(value: float) -> str:
    return f"({value * 1000:.0f} ms)" if value < 1 else f"({value:.1f} s)"


async def changed_tests(repo: Path, base_sha: str, sha: str) -> list[str]:
    """Test files the committed change `base_sha..sha` adds or modifies (not deletes), sorted."""
    result = await git(repo, "diff", "--name-only", "--diff-filter=AM", "-z", base_sha, sha, timeout_s=60)
    return sorted(name for name in result.output.split("\0") if name and _TEST_FILE.search(name))


async def load_proof(db: Connection, run_id: int, stage: queries.ProofStage = "verify") -> Proof | None:
    """The newest stored proof of `stage` for a run (what /run, the proposal and the approval gate read)."""
    row = await queries.latest(db, run_id, stage)
    if row is None:
        return None
    items = [ProofItem.from_dict(item) for item in row.items]
    verdict: Verdict = row.verdict  # type: ignore[assignment]  # the table's CHECK allows only these
    return Proof(verdict, row.reason, items, row.overhead_s, row.stage)


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
        redact: Any = str,
        now: Any = time.time,
    ) -> None:
        self._db = db
        self._workspace = workspace
        self._sandbox = sandbox
        self._test_timeout_s = test_timeout_s
        self._latency_min_ms = latency_min_ms
        self._redact = redact
        self._now = now

    async def prove(
        self, *, run_id: int, base_sha: str, sha: str, fingerprint: str | None, kind: str | None
    ) -> Proof:
        """Commit `sha` against `base_sha`: regression tests and replay, each side on a fresh copy of
        exactly its tree (`Workspace.checkout`) — the base's with only the change's test files."""
        started = time.perf_counter()
        repo = self._workspace.repo_root
        tests = await changed_tests(repo, base_sha, sha)
        plan = await plan_replay(self._db, fingerprint=fingerprint, kind=kind)
        items: list[ProofItem] = []
        if tests or plan.replayable:
            base_tree = await overlay_tree(repo, base_sha, sha, tests) if tests else base_sha
            async with (
                self._workspace.checkout(base_tree, name=f"run-{run_id}-base", at=base_sha) as base,
                self._workspace.checkout(sha, name=f"run-{run_id}-branch") as branch,
            ):
                (base_test, base_replay), (branch_test, branch_replay) = await asyncio.gather(
                    self._side(base, tests, plan), self._side(branch, tests, plan)
                )
            if tests:
                items.append(_test_item(tests, base_test, branch_test))
            items += _replay_items(plan, base_replay, branch_replay, self._latency_min_ms)
        items += _unreplayable_items(plan)
        proof = _judge(items, time.perf_counter() - started, plan)
        await self._store(run_id, "verify", sha, base_sha, proof)
        return proof

    async def prove_deployed(
        self, *, run_id: int, sha: str, base_sha: str, fingerprint: str | None, kind: str | None
    ) -> Proof | None:
        """The replay once against the deployed commit `sha`; None when there is nothing to replay."""
        started = time.perf_counter()
        plan = await plan_replay(self._db, fingerprint=fingerprint, kind=kind)
        if not plan.replayable:
            return None
        async with self._workspace.checkout(sha, name=f"run-{run_id}-deployed") as live:
            results: dict[str, ReplayResult] | str = await _replay(live, plan, self._sandbox)
        items: list[ProofItem] = []
        for case in plan.replayable:
            recorded = Side(False if case.fingerprint else None, "as recorded", case.recorded_ms / 1000)
            if isinstance(results, str):
                items.append(
                    ProofItem("replay", case.label, recorded, None, "neutral", f"could not run: {results}")
                )
                continue
            after = results.get(case.key)
            side = _result_side(after)
            fixed = (
                after is not None
                and after.ran
                and after.ok
                and (not plan.latency or after.duration_ms <= case.recorded_ms * _LATENCY_FACTOR)
            )
            note = "" if fixed else _still_failing(case, after, plan.latency)
            items.append(
                ProofItem("replay", case.label, recorded, side, "proves" if fixed else "fails", note)
            )
        proof = _judge(items, time.perf_counter() - started, plan, stage="deploy")
        await self._store(run_id, "deploy", sha, base_sha, proof)
        return proof

    async def _side(
        self, checkout: Path, tests: list[str], plan: ReplayPlan
    ) -> tuple[Side | None, dict[str, ReplayResult] | str]:
        test_side: Side | None = None
        if tests:
            test_side = await self._run_tests(checkout, tests)
        return test_side, await _replay(checkout, plan, self._sandbox)

    async def _run_tests(self, checkout: Path, tests: list[str]) -> Side:
        command = "python -m pytest -q -p no:cacheprovider " + " ".join(tests)
        try:
            async with self._sandbox.jail(checkout, git_dir=None) as jail:
                result = await run_check(
                    command, jail, jail.environment(), self._test_timeout_s, self._redact
                )
        except SandboxUnavailable as exc:
            return Side(None, f"not run: {exc}")
        return Side(result.ok, result.last_line[:80], result.duration_s)

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
            items=[item.to_dict() for item in proof.items],
            overhead_s=round(proof.overhead_s, 3),
            now=self._now(),
        )
        _log.info(
            "proof", run_id=run_id, stage=stage, verdict=proof.verdict, overhead_s=round(proof.overhead_s, 2)
        )


async def _replay(checkout: Path, plan: ReplayPlan, sandbox: Sandbox) -> dict[str, ReplayResult] | str:
    if not plan.replayable:
        return {}
    try:
        return await run_replay(checkout, plan, sandbox=sandbox)
    except ReplayError as exc:
        return str(exc)


def _test_item(tests: list[str], base: Side | None, branch: Side | None) -> ProofItem:
    label = ", ".join(tests[:3]) + (f" (+{len(tests) - 3})" if len(tests) > 3 else "")
    if base is None or branch is None:
        return ProofItem("test", label, base, branch, "neutral", "the tests did not run")
    if branch.ok is not True:
        return ProofItem(
            "test", label, base, branch, "fails", "your test fails on your branch: the fix is incomplete"
        )
    if base.ok is True:
        return ProofItem(
            "test",
            label,
            base,
            branch,
            "no_proof",
            "your test passes without your fix: on the base it passes too, so it does not reproduce"
            " the failure",
        )
    if base.ok is None:
        return ProofItem("test", label, base, branch, "neutral", "could not run on the base")
    return ProofItem("test", label, base, branch, "proves", "fails on the base, passes on the branch")


def _result_side(result: ReplayResult | None) -> Side:
    if result is None:
        return Side(None, "not run")
    if not result.ran:
        return Side(False, "not handled", None)
    if result.ok:
        return Side(True, "ok", result.duration_ms / 1000)
    return Side(False, result.error_type or "error", result.duration_ms / 1000)


def _still_failing(case: ReplayCase, after: ReplayResult | None, latency: bool) -> str:
    if after is None:
        return "the replay did not run it"
    if not after.ran:
        return f"no longer handled — {after.error}"[:200]
    if not after.ok:
        same = case.fingerprint is not None and after.fingerprint == case.fingerprint
        what = "still fails as recorded" if same else "fails with another error"
        return f"{what}: {after.error_type}: {after.error}"[:200]
    if latency:
        return f"still slow: {after.duration_ms:.0f} ms (recorded {case.recorded_ms:.0f} ms)"
    return ""


def _replay_items(
    plan: ReplayPlan,
    base: dict[str, ReplayResult] | str,
    branch: dict[str, ReplayResult] | str,
    latency_min_ms: float,
) -> list[ProofItem]:
    items: list[ProofItem] = []
    for case in plan.replayable:
        if isinstance(base, str) or isinstance(branch, str):
            why = base if isinstance(base, str) else branch
            items.append(ProofItem("replay", case.label, None, None, "neutral", f"could not run: {why}"))
            continue
        before, after = base.get(case.key), branch.get(case.key)
        base_side, branch_side = _result_side(before), _result_side(after)
        if plan.latency:
            items.append(_latency_item(case, before, after, latency_min_ms))
            continue
        reproduced = before is not None and before.ran and not before.ok
        fixed = after is not None and after.ran and after.ok
        if not fixed:
            items.append(
                ProofItem(
                    "replay", case.label, base_side, branch_side, "fails", _still_failing(case, after, False)
                )
            )
        elif not reproduced:
            items.append(
                ProofItem(
                    "replay",
                    case.label,
                    base_side,
                    branch_side,
                    "neutral",
                    "does not fail on the base either",
                )
            )
        else:
            same = before is not None and before.fingerprint == case.fingerprint
            note = "fails on the base as recorded" if same else "fails on the base (another fingerprint)"
            items.append(
                ProofItem(
                    "replay", case.label, base_side, branch_side, "proves", note + ", completes on the branch"
                )
            )
    return items


def _latency_item(
    case: ReplayCase,
    before: ReplayResult | None,
    after: ReplayResult | None,
    latency_min_ms: float,
) -> ProofItem:
    base_side, branch_side = _result_side(before), _result_side(after)
    if after is None or not after.ran or not after.ok:
        return ProofItem(
            "replay", case.label, base_side, branch_side, "fails", _still_failing(case, after, True)
        )
    if before is None or not before.ran or before.duration_ms < latency_min_ms:
        return ProofItem(
            "replay", case.label, base_side, branch_side, "neutral", "not slow on the base either"
        )
    if after.duration_ms <= before.duration_ms * _LATENCY_FACTOR:
        drop = f"{before.duration_ms:.0f} ms → {after.duration_ms:.0f} ms"
        return ProofItem("replay", case.label, base_side, branch_side, "proves", f"duration dropped: {drop}")
    return ProofItem(
        "replay",
        case.label,
        base_side,
        branch_side,
        "fails",
        f"still slow: {after.duration_ms:.0f} ms on the branch, {before.duration_ms:.0f} ms on the base",
    )


def _unreplayable_items(plan: ReplayPlan) -> list[ProofItem]:
    return [
        ProofItem("replay", case.label, None, None, "neutral", f"not replayable: {case.unreplayable}")
        for case in plan.cases
        if case.unreplayable is not None
    ]


def _judge(
    items: list[ProofItem], overhead_s: float, plan: ReplayPlan, stage: Literal["verify", "deploy"] = "verify"
) -> Proof:
    failing = [item for item in items if item.verdict == "fails"]
    if failing:
        reason = "; ".join(f"{item.kind} `{item.label}`: {item.note}" for item in failing[:3])
        return Proof("disproven", reason, items, overhead_s, stage)
    if any(item.verdict == "proves" for item in items):
        what = (
            "the replay completes on the live code"
            if stage == "deploy"
            else ("the failure reproduces on the base and is gone on the branch")
        )
        return Proof("proven", what, items, overhead_s, stage)
    if not items:
        why = "nothing was recorded to replay" if not plan.cases else "no recorded call could be replayed"
        return Proof("unproven", f"no test reproduces the failure and {why}", items, overhead_s, stage)
    notes = "; ".join(f"{item.kind} `{item.label}`: {item.note}" for item in items[:3])
    return Proof(
        "unproven", f"nothing reproduced the failure on the base ({notes})", items, overhead_s, stage
    )
