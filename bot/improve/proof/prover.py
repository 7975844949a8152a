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
  (the launcher's watch, armed before the checkout's code runs) and how long each answer took. The fix
  is proven when the failing calls fail on the base and are answered on the branch without the error
  happening, and every call that worked answers alike; for a latency complaint, when the branch's first
  answer comes in at most half the base's time.
- **regression test**: the test files the change adds or modifies, on the branch and on the base's tree
  with only those files added, run by the proof's runner (`bot/trust/proof_runner.py`, the installed
  bot's copy) under coverage, with the changed source files unreadable except by import. It proves the
  fix when it fails on the base **with the reported error** (its type, reaching the recorded function —
  not for a name the change adds), passes on the branch, **runs some of the lines the change made**, and
  replaces none of the code under test (a monkeypatch or mock of it proves nothing).

The verdict they add up to, and how a proof reads, are `mendbot.improve.proof.verdict`; the Prover stores
each proof it takes with the run.
"""

from __future__ import annotations

import ast
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

from mendbot.db import handlers as handler_queries
from mendbot.db import proofs as queries
from mendbot.db.core import Connection
from mendbot.improve.agent.verify import CheckResult, run_check
from mendbot.improve.agent.workspace import Workspace
from mendbot.improve.proof import replay_plan as plans
from mendbot.improve.proof.judge import Timing, judge_replay
from mendbot.improve.proof.replay import CALL_TIMEOUT_S, HostBot, ReplayError, ReplayResult, run_replay
from mendbot.improve.proof.replay_plan import Failure, ReplayCase, ReplayPlan, plan_proof
from mendbot.improve.proof.verdict import ItemVerdict, Proof, ProofItem, Side, proved_by_replay
from mendbot.kernel.git import git
from mendbot.kernel.log import get_logger
from mendbot.trust import proof_runner
from mendbot.trust.host_start import new_token, prepare_tree
from mendbot.trust.proof_runner import MARKER
from mendbot.trust.sandbox import Sandbox, SandboxUnavailable
from mendbot.trust.trees import overlay_tree

__all__ = ["Prover", "changed_files", "changed_lines", "changed_tests"]

_log = get_logger(__name__)

_TEST_FILE = re.compile(r"(^|/)(test_[^/]*|[^/]*_test)\.py$")
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")
_LATENCY_FACTOR = 0.5  # a latency fix must at least halve the replayed call's time
# Errors a test meets on the base when it only uses a name the change adds.
_MISSING_NAME_ERRORS = ("ImportError", "ModuleNotFoundError", "AttributeError", "NameError", "TypeError")
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


async def changed_files(repo: Path, base_sha: str, sha: str) -> list[str]:
    """Every file the committed change `base_sha..sha` adds, modifies or deletes, sorted."""
    result = await git(repo, "diff", "--name-only", "-z", base_sha, sha, timeout_s=60)
    return sorted(name for name in result.output.split("\0") if name)


@dataclass(frozen=True)
class _TestRun:
    """The tests on one side: the outcome, which changed lines they ran (None: not measured), the changed
    sources they read other than to run them, each test's outcome, the test files that could not be
    collected, and what each test replaced of the code under test."""

    side: Side
    coverage: dict[str, dict[str, list[int]]] | None
    read: list[str] = field(default_factory=list)
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    collect_errors: list[str] = field(default_factory=list)
    patched: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Request:
    """What the test runner is asked on both sides, and what the test item is judged against."""

    tests: list[str]
    sources: dict[str, list[int]]
    watched: list[str]
    expect: Failure | None
    added: set[str]

    def json(self) -> str:
        expect = None
        if self.expect is not None:
            expect = {
                "type": self.expect.error_type,
                "file": self.expect.file,
                "function": self.expect.function,
            }
        return json.dumps(
            {"tests": self.tests, "sources": self.sources, "watched": self.watched, "expect": expect}
        )


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

    async def _replay(self, checkout: Path, plan: ReplayPlan) -> dict[str, ReplayResult] | str:
        if not plan.replayable:
            return {}
        try:
            config = self._workspace.host
            host = HostBot(config, self._workspace.repo_root) if config is not None else None
            return await run_replay(
                checkout, plan, sandbox=self._sandbox, call_timeout_s=self._replay_answer_s, host=host
            )
        except ReplayError as exc:
            return str(exc)

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
            # Both copies get the same kind of name: nothing in a path says which side it is.
            name = f"run-{run_id}-proof"
            async with (
                self._workspace.checkout(base_tree, name=name, at=base_sha) as base,
                self._workspace.checkout(sha, name=name) as branch,
            ):
                reach = plans.affected_kinds(await handler_queries.every(self._db), changed, base)
                plan = await plan_proof(
                    self._db, fingerprint=fingerprint, kind=kind, shown=shown or set(), reach=reach
                )
                request = _Request(
                    tests,
                    sources,
                    sorted({*sources, *([plan.failure.file] if plan.failure and plan.failure.file else [])}),
                    plan.failure,
                    _added_names(base, branch, changed),
                )
                (base_tests, base_replay), (branch_tests, branch_replay) = await asyncio.gather(
                    self._side(base, request, plan), self._side(branch, request, plan)
                )
                if base_tests is not None and branch_tests is not None:
                    items.append(_test_item(request, base_tests, branch_tests))
                items += _replay_items(
                    plan, base_replay, branch_replay, self._timing, lambda path: _read(branch, path)
                )
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
        plan = await plans.plan_replay(self._db, fingerprint=fingerprint, kind=kind)
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
        self, checkout: Path, request: _Request, plan: ReplayPlan
    ) -> tuple[_TestRun | None, dict[str, ReplayResult] | str]:
        """One side's tests and replay, at once (each its own sandbox: neither sees the other). A bot
        mendbot is attached to finds its tree as wherever it is started: its data files, and the files
        git does not keep with their secrets replaced (the replay gives their token key its own token)."""
        started = time.perf_counter()
        if self._workspace.host is not None:
            host = HostBot(self._workspace.host, self._workspace.repo_root)
            for problem in prepare_tree(checkout, host, new_token()):
                _log.warning("a file the bot needs was not copied for its proof", problem=problem)
        tests = self._run_tests(checkout, request) if request.tests else _nothing()
        test_run, replayed = await asyncio.gather(tests, self._replay(checkout, plan))
        _log.info("proof side", checkout=checkout.name, seconds=round(time.perf_counter() - started, 2))
        return test_run, replayed

    async def _run_tests(self, checkout: Path, request: _Request) -> _TestRun:
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


def _defined_names(source: str | None) -> set[str]:
    """The names a module defines: functions, classes, their methods and parameters, assigned names."""
    if source is None:
        return set()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names |= {arg.arg for arg in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return names


def _added_names(base: Path, branch: Path, changed: list[str]) -> set[str]:
    """The names the change defines that the base's version of the same files does not."""
    added: set[str] = set()
    for path in changed:
        if path.endswith(".py") and not _TEST_FILE.search(path):
            added |= _defined_names(_read(branch, path)) - _defined_names(_read(base, path))
    return added


def _read_test_run(result: CheckResult) -> _TestRun:
    """The runner's outcome: its last line before the report line, and what that line reported."""
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
    tests = report.get("tests")
    errors = report.get("collect_errors")
    patched = report.get("patched")
    return _TestRun(
        Side(result.ok, text, result.duration_s),
        coverage if isinstance(coverage, dict) else None,
        [str(path) for path in read] if isinstance(read, list) else [],
        tests if isinstance(tests, dict) else {},
        [str(error) for error in errors] if isinstance(errors, list) else [],
        patched if isinstance(patched, dict) else {},
    )


def _failed(entry: dict[str, Any] | None) -> bool:
    return entry is not None and entry.get("outcome") in ("failed", "error")


def _test_item(request: _Request, base: _TestRun, branch: _TestRun) -> ProofItem:
    tests = request.tests
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
    if base.collect_errors and not any(_failed(entry) for entry in base.tests.values()):
        return item(
            "no_proof",
            "unproven: on the base your test cannot even be collected — it fails for a name your change"
            f" adds, not for the reported failure ({_first_line(base.collect_errors[0])})",
        )
    proving = [
        test
        for test, entry in branch.tests.items()
        if entry.get("outcome") == "passed" and _failed(base.tests.get(test))
    ]
    if branch.tests and not proving:
        return item("no_proof", "unproven: no test both fails on the base and passes on your branch")
    clean = [test for test in proving if not branch.patched.get(test) and not base.patched.get(test)]
    if proving and not clean:
        replaced = (branch.patched.get(proving[0]) or base.patched.get(proving[0]) or ["?"])[0]
        return item(
            "no_proof",
            f"unproven: the test replaces the code it tests ({replaced}): it proves nothing about the real"
            " code",
        )
    reasons = [_why_not_the_failure(base.tests[test], request) for test in clean]
    if clean and all(reasons):
        return item("no_proof", f"unproven: {reasons[0]}")
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


def _why_not_the_failure(entry: dict[str, Any], request: _Request) -> str:
    """Why a test's failure on the base is not the reported failure, or "" when it is."""
    error = str(entry.get("error_type") or "")
    message = str(entry.get("message") or "")
    expect = request.expect
    if expect is not None:
        if error == expect.error_type and (entry.get("reaches") or not expect.function):
            return ""
        where = f" in `{expect.function}`" if expect.function else ""
        got = f"{error} ({message[:80]})" if message else error
        return f"on the base your test fails with {got}, not with the reported {expect.error_type}{where}"
    if error in _MISSING_NAME_ERRORS:
        missing = sorted(name for name in request.added if re.search(rf"\b{re.escape(name)}\b", message))
        if missing:
            return (
                f"on the base your test fails only because `{missing[0]}` is missing — a name your change"
                " adds, not the reported failure"
            )
    return ""


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else text)[:120]


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


def _unreplayable_items(plan: ReplayPlan) -> list[ProofItem]:
    return [
        ProofItem(
            "replay", case.label, None, None, "neutral", f"not replayable: {case.unreplayable}", case.role
        )
        for case in plan.cases
        if case.unreplayable is not None and case.role in ("recorded", "held-out")
    ]


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
            what = "a test that runs the change fails on the base and passes on the branch"
        return Proof("proven", what, items, overhead_s, stage)
    if not items:
        why = "nothing was recorded to replay" if not plan.cases else "no recorded call could be replayed"
        return Proof("unproven", f"no test reproduces the failure and {why}", items, overhead_s, stage)
    said = "; ".join(f"{item.title}: {item.note}" for item in items[:3])
    return Proof("unproven", f"nothing proved the fix ({said})", items, overhead_s, stage)
