"""Proof of fix: the reported failure on the base, gone on the branch — judged from outside the code under
test, on exactly the committed trees, before "ship it".

Checks passing on a branch say nothing about *the reported failure*: a change that deletes the failing
command passes them too. A proof has up to two kinds of items. Each runs on a fresh copy of exactly the
base's tree and of the branch's (`Workspace.checkout`: no ignored or untracked file of any worktree), in
the OS sandbox, in identical environments — nothing tells the code which side it is, or that it is
being judged:

- **incident replay** (`bot.improve.replay`): the recorded failing calls, sent again over the wire to a
  bot started from each tree. The observer is the bot process itself, outside the sandbox, and it judges
  what a user would see: the fix is proven when the base shows the failure (the bot's apology naming a
  bug, or no answer) and the branch answers; for a latency complaint, when the branch's first answer
  comes in at most half the base's time. Nothing the process under test writes or prints is read.
- **regression test**: the test files the change adds or modifies, on the branch and on the base's tree
  with only those files added, run by the proof's runner (`bot/trust/proof_runner.py`, the installed
  bot's copy) under coverage, with the changed source files unreadable except by import. It proves the
  fix when it fails on the base, passes on the branch **and runs some of the lines the change made**; a
  test that passes on the base, or runs none of the changed lines (one that only looks for text the
  change adds), proves nothing.

The verdict they add up to, and how a proof reads, are `bot.improve.proof`; the Prover stores each proof
it takes with the run.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bot.db import proofs as queries
from bot.db.core import Connection
from bot.improve.proof import ItemVerdict, Proof, ProofItem, Side, proved_by_replay
from bot.improve.replay import (
    CALL_TIMEOUT_S,
    ReplayCase,
    ReplayError,
    ReplayPlan,
    ReplayResult,
    plan_replay,
    run_replay,
)
from bot.improve.verify import CheckResult, run_check
from bot.improve.workspace import Workspace
from bot.kernel.git import git
from bot.kernel.log import get_logger
from bot.trust import proof_runner
from bot.trust.proof_runner import MARKER
from bot.trust.sandbox import Sandbox, SandboxUnavailable
from bot.trust.trees import overlay_tree

__all__ = ["Prover", "changed_lines", "changed_tests"]

_log = get_logger(__name__)

_TEST_FILE = re.compile(r"(^|/)(test_[^/]*|[^/]*_test)\.py$")
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")
_LATENCY_FACTOR = 0.5  # a latency fix must at least halve the replayed call's time
_RUNNER = Path(proof_runner.__file__).resolve()
_RUNNER_INSIDE = "/run/mendbot/proof"


async def changed_tests(repo: Path, base_sha: str, sha: str) -> list[str]:
    """Test files the committed change `base_sha..sha` adds or modifies (not deletes), sorted."""
    result = await git(repo, "diff", "--name-only", "--diff-filter=AM", "-z", base_sha, sha, timeout_s=60)
    return sorted(name for name in result.output.split("\0") if name and _TEST_FILE.search(name))


async def changed_lines(repo: Path, base_sha: str, sha: str) -> dict[str, list[int]]:
    """For each Python source (not test) file the change adds or modifies, the lines of its new version
    the change wrote — for a deletion, the lines around it."""
    names = await git(repo, "diff", "--name-only", "--diff-filter=AM", "-z", base_sha, sha, timeout_s=60)
    sources = sorted(
        name for name in names.output.split("\0") if name.endswith(".py") and not _TEST_FILE.search(name)
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


@dataclass(frozen=True)
class _TestRun:
    """The tests on one side: the outcome, which changed lines they ran (None: not measured), and the
    changed sources they read other than to run them."""

    side: Side
    coverage: dict[str, dict[str, list[int]]] | None
    read: list[str] = field(default_factory=list)


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
        redact: Callable[[str], str] = str,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._workspace = workspace
        self._sandbox = sandbox
        self._test_timeout_s = test_timeout_s
        self._latency_min_ms = latency_min_ms
        self._replay_answer_s = replay_answer_s
        self._redact = redact
        self._now = now

    async def _replay(self, checkout: Path, plan: ReplayPlan) -> dict[str, ReplayResult] | str:
        if not plan.replayable:
            return {}
        try:
            return await run_replay(
                checkout, plan, sandbox=self._sandbox, call_timeout_s=self._replay_answer_s
            )
        except ReplayError as exc:
            return str(exc)

    async def prove(
        self, *, run_id: int, base_sha: str, sha: str, fingerprint: str | None, kind: str | None
    ) -> Proof:
        """Commit `sha` against `base_sha`: regression tests and replay (module docstring)."""
        started = time.perf_counter()
        repo = self._workspace.repo_root
        tests = await changed_tests(repo, base_sha, sha)
        sources = await changed_lines(repo, base_sha, sha) if tests else {}
        plan = await plan_replay(self._db, fingerprint=fingerprint, kind=kind)
        items: list[ProofItem] = []
        if tests or plan.replayable:
            base_tree = await overlay_tree(repo, base_sha, sha, tests) if tests else base_sha
            # Both copies get the same kind of name: nothing in a path says which side it is.
            name = f"run-{run_id}-proof"
            async with (
                self._workspace.checkout(base_tree, name=name, at=base_sha) as base,
                self._workspace.checkout(sha, name=name) as branch,
            ):
                (base_tests, base_replay), (branch_tests, branch_replay) = await asyncio.gather(
                    self._side(base, tests, sources, plan), self._side(branch, tests, sources, plan)
                )
            if base_tests is not None and branch_tests is not None:
                items.append(_test_item(tests, base_tests, branch_tests))
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
        async with self._workspace.checkout(sha, name=f"run-{run_id}-live") as live:
            results = await self._replay(live, plan)
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
        plan = await plan_replay(self._db, fingerprint=fingerprint, kind=kind)
        if not plan.replayable:
            return None
        async with self._workspace.checkout(sha, name=f"run-{run_id}-rollback") as tree:
            results = await self._replay(tree, plan)
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
        self, checkout: Path, tests: list[str], sources: dict[str, list[int]], plan: ReplayPlan
    ) -> tuple[_TestRun | None, dict[str, ReplayResult] | str]:
        test_run = await self._run_tests(checkout, tests, sources) if tests else None
        return test_run, await self._replay(checkout, plan)

    async def _run_tests(self, checkout: Path, tests: list[str], sources: dict[str, list[int]]) -> _TestRun:
        request = json.dumps({"tests": tests, "sources": sources})
        command = shlex.join(["python", f"{_RUNNER_INSIDE}/runner.py", request])
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
                return _TestRun(Side(None, f"not run: {exc}"), None)
        return _read_test_run(result)

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
            "proof",
            run_id=run_id,
            stage=stage,
            verdict=proof.verdict,
            basis=proof.basis,
            overhead_s=round(proof.overhead_s, 2),
        )


def _read_test_run(result: CheckResult) -> _TestRun:
    """The runner's outcome: its last line before the coverage line, and what that line reported."""
    report: dict[str, Any] = {}
    shown: list[str] = []
    for line in result.output_tail.splitlines():
        if line.startswith(MARKER + " "):
            try:
                parsed = json.loads(line.removeprefix(MARKER + " "))
            except json.JSONDecodeError:
                parsed = None
            report = parsed if isinstance(parsed, dict) else {}
        elif line.strip():
            shown.append(line.strip())
    text = shown[-1][:80] if shown else f"exit code {result.exit_code}"
    coverage = report.get("coverage")
    read = report.get("read")
    return _TestRun(
        Side(result.ok, text, result.duration_s),
        coverage if isinstance(coverage, dict) else None,
        [str(path) for path in read] if isinstance(read, list) else [],
    )


def _test_item(tests: list[str], base: _TestRun, branch: _TestRun) -> ProofItem:
    label = ", ".join(tests[:3]) + (f" (+{len(tests) - 3})" if len(tests) > 3 else "")

    def item(verdict: ItemVerdict, note: str) -> ProofItem:
        return ProofItem("test", label, base.side, branch.side, verdict, note)

    if branch.side.ok is not True:
        return item("fails", "your test fails on your branch: the fix is incomplete")
    if base.side.ok is True:
        return item(
            "no_proof",
            "your test passes without your fix: on the base it passes too, so it does not reproduce"
            " the failure",
        )
    if base.side.ok is None:
        return item("neutral", "could not run on the base")
    if branch.read:
        shown = ", ".join(f"`{path}`" for path in branch.read[:3])
        return item(
            "no_proof",
            f"unproven: the test reads the source of a file your change made ({shown}): a proof's test"
            " must run the code, not read it",
        )
    if branch.coverage is None:
        return item("no_proof", "unproven: which lines of the change your test runs could not be measured")
    changed = sum(len(found["changed"]) for found in branch.coverage.values())
    ran = sum(len(found["ran"]) for found in branch.coverage.values())
    if ran == 0:
        what = (
            f"it runs none of the {changed} changed lines"
            if changed
            else "the change has no line it could run"
        )
        return item("no_proof", f"unproven: the test does not exercise the change ({what})")
    return item("proves", f"fails on the base, passes on the branch, runs {ran} of {changed} changed lines")


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
    latency_min_ms: float,
) -> list[ProofItem]:
    items: list[ProofItem] = []
    for case in plan.replayable:
        if isinstance(base, str) or isinstance(branch, str):
            why = base if isinstance(base, str) else branch
            items.append(ProofItem("replay", case.label, None, None, "neutral", f"could not run: {why}"))
            continue
        before, after = base.get(case.key), branch.get(case.key)
        if plan.latency:
            items.append(_latency_item(case, before, after, latency_min_ms))
            continue
        base_side, branch_side = _result_side(before), _result_side(after)
        reproduced = before is not None and not before.ok
        fixed = after is not None and after.ok
        if not fixed:
            note = _still_failing(case, after, False)
            items.append(ProofItem("replay", case.label, base_side, branch_side, "fails", note))
        elif not reproduced:
            note = "does not fail on the base either"
            items.append(ProofItem("replay", case.label, base_side, branch_side, "neutral", note))
        else:
            assert before is not None
            same = case.error_type is not None and before.error_type == case.error_type
            note = "fails on the base as recorded" if same else "fails on the base"
            note += ", answered on the branch"
            items.append(ProofItem("replay", case.label, base_side, branch_side, "proves", note))
    return items


def _latency_item(
    case: ReplayCase,
    before: ReplayResult | None,
    after: ReplayResult | None,
    latency_min_ms: float,
) -> ProofItem:
    base_side, branch_side = _result_side(before), _result_side(after)
    if after is None or not after.ok:
        return ProofItem(
            "replay", case.label, base_side, branch_side, "fails", _still_failing(case, after, True)
        )
    if before is None or not before.answered or before.duration_ms < latency_min_ms:
        return ProofItem(
            "replay", case.label, base_side, branch_side, "neutral", "not slow on the base either"
        )
    if after.duration_ms <= before.duration_ms * _LATENCY_FACTOR:
        drop = f"{before.duration_ms:.0f} ms → {after.duration_ms:.0f} ms"
        return ProofItem(
            "replay", case.label, base_side, branch_side, "proves", f"first answer sooner: {drop}"
        )
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
        if stage == "deploy":
            what = "the replayed calls are answered by the live code"
        elif proved_by_replay(items):
            what = "the failure a user saw reproduces on the base and is gone on the branch"
        else:
            what = "a test that runs the change fails on the base and passes on the branch"
        return Proof("proven", what, items, overhead_s, stage)
    if not items:
        why = "nothing was recorded to replay" if not plan.cases else "no recorded call could be replayed"
        return Proof("unproven", f"no test reproduces the failure and {why}", items, overhead_s, stage)
    notes = "; ".join(f"{item.kind} `{item.label}`: {item.note}" for item in items[:3])
    return Proof("unproven", f"nothing proved the fix ({notes})", items, overhead_s, stage)
