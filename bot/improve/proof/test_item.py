"""The regression-test item of a proof: the change's own tests, run by the proof's runner on the base and on
the branch (`mendbot.trust.proof_runner`), and what they show.

A test the change's author wrote can disprove a fix (it fails on the branch) and can add to a proof; it
never proves alone (`mendbot.improve.proof.prover`: a fix only a test shows is "tested"). It shows the fix
when it **fails on the base with the reported error** (its type, reaching the recorded function — not for
a name the change adds), **passes on the branch**, **runs some of the lines the change made**, reads none
of the changed sources but by running them, and **replaces none of the code under test** — no monkeypatch
or mock of it, no assignment to it, no stub handed to it through a constructor argument or a default, no
module global or environment variable set to change how it behaves (the runner sees each from outside the
tests' code).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mendbot.improve.agent.verify import CheckResult
from mendbot.improve.proof.replay_plan import Failure
from mendbot.improve.proof.verdict import ItemVerdict, ProofItem, Side
from mendbot.trust.proof_runner import MARKER

__all__ = ["TEST_FILE", "Request", "TestRun", "added_names", "read_test_run", "test_item"]

TEST_FILE = re.compile(r"(^|/)(test_[^/]*|[^/]*_test)\.py$")
# Errors a test meets on the base when it only uses a name the change adds.
_MISSING_NAME_ERRORS = ("ImportError", "ModuleNotFoundError", "AttributeError", "NameError", "TypeError")


@dataclass(frozen=True)
class TestRun:
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
class Request:
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


def added_names(base: Path, branch: Path, changed: list[str]) -> set[str]:
    """The names the change defines that the base's version of the same files does not."""
    added: set[str] = set()
    for path in changed:
        if path.endswith(".py") and not TEST_FILE.search(path):
            added |= _defined_names(_read(branch, path)) - _defined_names(_read(base, path))
    return added


def read_test_run(result: CheckResult) -> TestRun:
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
    return TestRun(
        Side(result.ok, text, result.duration_s),
        coverage if isinstance(coverage, dict) else None,
        [str(path) for path in read] if isinstance(read, list) else [],
        tests if isinstance(tests, dict) else {},
        [str(error) for error in errors] if isinstance(errors, list) else [],
        patched if isinstance(patched, dict) else {},
    )


def _failed(entry: dict[str, Any] | None) -> bool:
    return entry is not None and entry.get("outcome") in ("failed", "error")


def test_item(request: Request, base: TestRun, branch: TestRun) -> ProofItem:
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


def _why_not_the_failure(entry: dict[str, Any], request: Request) -> str:
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


def _read(root: Path, path: str) -> str | None:
    """A file of a checkout's committed tree by its repository path (None: not a file inside it)."""
    target = (root / path).resolve()
    if not target.is_relative_to(root.resolve()) or not target.is_file():
        return None
    try:
        return target.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
