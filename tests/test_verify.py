"""The verify gate: checks import the worktree's code, not the live checkout's; smoke, tails, timeouts."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from bot.improve.verify import (
    OUTPUT_TAIL_CHARS,
    SMOKE_CHECK,
    CheckResult,
    Verification,
    check_environment,
    resolve_command,
    run_check,
    verify,
)
from bot.improve.workspace import Workspace, Worktree
from tests.harness.repo import copy_of_bot

# A script and a pytest test in the worktree that pass only if `import bot` finds the worktree's code.
PROBE_SCRIPT = """\
import sys
import bot.dice
if not hasattr(bot.dice, "ONLY_IN_WORKTREE"):
    sys.exit(f"imported the wrong code: {bot.dice.__file__}")
print(f"imported {bot.dice.__file__}")
"""
PROBE_TEST = """\
import bot.dice


def test_marker():
    assert bot.dice.ONLY_IN_WORKTREE, bot.dice.__file__
"""
PROBE_CHECKS = {
    "python probe/check_marker.py": "imported the wrong code",
    "pytest -q -p no:cacheprovider probe/test_marker.py": "has no attribute 'ONLY_IN_WORKTREE'",
}


def _env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_of_bot(tmp_path / "repo")


@pytest.fixture
def workspace(repo: Path, tmp_path: Path) -> Workspace:
    return Workspace(repo, tmp_path / "worktrees")


@pytest.fixture
async def worktree(workspace: Workspace) -> Worktree:
    return await workspace.create(1, "probe")


async def test_checks_import_the_worktree_not_the_live_checkout(
    repo: Path, workspace: Workspace, worktree: Worktree
) -> None:
    """Only the worktree holds the change: naive checks see the live code; verify sees the worktree's."""
    dice = worktree.path / "bot" / "dice.py"
    dice.write_text(dice.read_text() + "\nONLY_IN_WORKTREE = True\n")
    (worktree.path / "probe").mkdir()
    (worktree.path / "probe" / "check_marker.py").write_text(PROBE_SCRIPT)
    (worktree.path / "probe" / "test_marker.py").write_text(PROBE_TEST)
    sha = await workspace.commit(worktree, "mark the worktree", 1)

    # The trap: cwd is the worktree, yet an entry-point script's sys.path[0] is its own directory, so
    # `import bot` falls through to the editable install of the live checkout.
    for command, symptom in PROBE_CHECKS.items():
        trapped = await run_check(command, worktree.path, _env(), timeout_s=60)
        assert not trapped.ok and symptom in trapped.output_tail, trapped.output_tail

    verification = await verify(worktree.path, list(PROBE_CHECKS), 60, _env(), smoke=False)

    assert verification.ok, verification.failure_report()
    assert f"imported {worktree.path / 'bot' / 'dice.py'}" in verification.checks[0].output_tail
    assert verification.sha == sha and not verification.dirty
    assert "ONLY_IN_WORKTREE" not in (repo / "bot" / "dice.py").read_text()


async def test_smoke_check_fails_on_a_broken_cog(repo: Path, worktree: Worktree) -> None:
    """A syntax error in a worktree cog fails the smoke load, which names the cog; the clean copy passes."""
    (worktree.path / "cogs" / "dice.py").write_text("def broken(:\n")

    broken = await verify(worktree.path, [], 60, _env())
    clean = await verify(repo, [], 60, _env())

    smoke = broken.checks[-1]
    assert smoke.command == SMOKE_CHECK
    assert not broken.ok and not smoke.ok and smoke.exit_code == 1
    assert "❌ cogs.dice" in smoke.output_tail and "SyntaxError" in smoke.output_tail
    assert "✅ cogs.remind" in smoke.output_tail
    assert broken.dirty
    assert clean.ok, clean.failure_report()
    assert "✅ cogs.dice" in clean.checks[-1].output_tail


async def test_all_checks_run_and_a_failure_keeps_its_output_tail(tmp_path: Path) -> None:
    """A failing check does not stop the rest; its exit code and the last part of its output are kept."""
    noisy = "python -c \"import sys; print('x' * 10000); print('the end'); sys.exit(3)\""
    passing = "python -c \"print('fine')\""

    verification = await verify(tmp_path, [noisy, passing], 30, _env(), smoke=False)

    failed, passed = verification.checks
    assert not verification.ok and passed.ok
    assert failed.exit_code == 3 and not failed.ok
    assert len(failed.output_tail) <= OUTPUT_TAIL_CHARS
    assert failed.output_tail.rstrip().endswith("the end")
    assert failed.line().startswith("❌ python -c") and failed.line().endswith("— the end")
    assert verification.summary().splitlines()[1].startswith("✅ python -c \"print('fine')\" (")
    assert "exit code 3" in verification.failure_report() and "fine" not in verification.failure_report()


def _gone(pid: int, wait_s: float = 5) -> bool:
    deadline = time.monotonic() + wait_s
    while not _exited(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _exited(pid)


def _exited(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # killed; a zombie only waits for a reaper


async def test_a_check_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    """On timeout the whole process group dies; the check fails saying so and keeps what it printed."""
    pid_file = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(child.pid)); print('started', flush=True); time.sleep(60)"
    )

    started = time.perf_counter()
    verification = await verify(tmp_path, [f"python -c {script!r}"], 1, _env(), smoke=False)

    check = verification.checks[0]
    assert time.perf_counter() - started < 10
    assert not check.ok and check.exit_code is None
    assert check.output_tail.startswith("started") and check.line().endswith("— timed out after 1 s")
    pid = int(pid_file.read_text())
    assert _gone(pid)


async def test_total_budget_skips_checks_that_cannot_start(tmp_path: Path) -> None:
    """Checks share a total time budget; one left without time fails as skipped rather than running."""
    verification = await verify(
        tmp_path,
        ['python -c "import time; time.sleep(5)"', "python -V"],
        5,
        _env(),
        total_timeout_s=0.5,
        smoke=False,
    )

    slow, skipped = verification.checks
    assert slow.exit_code is None and "timed out after 0.5 s" in slow.output_tail
    assert not skipped.ok and skipped.output_tail.startswith("skipped")


def test_tools_resolve_to_the_running_venv(tmp_path: Path) -> None:
    """python is this interpreter, venv tools come from its bin/, other programs from PATH."""
    venv_bin = Path(sys.executable).parent
    env = {"PATH": "/usr/bin:/bin"}

    assert resolve_command("python -m bot.smoke", env) == [sys.executable, "-m", "bot.smoke"]
    assert resolve_command("pytest -q -x -m 'not cli'", env) == [
        str(venv_bin / "pytest"),
        "-q",
        "-x",
        "-m",
        "not cli",
    ]
    assert resolve_command("git status", env)[0] in ("/usr/bin/git", "/bin/git")
    assert resolve_command("./scripts/check.sh", env) == ["./scripts/check.sh"]


def test_check_environment_puts_the_worktree_first(tmp_path: Path) -> None:
    """PYTHONPATH leads with the worktree, safe-path mode is off and no bytecode is written."""
    env = check_environment(tmp_path, {"PYTHONPATH": "/elsewhere", "PYTHONSAFEPATH": "1", "PATH": "/usr/bin"})

    assert env["PYTHONPATH"] == f"{tmp_path.resolve()}{os.pathsep}/elsewhere"
    assert "PYTHONSAFEPATH" not in env
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"] == f"{Path(sys.executable).parent}{os.pathsep}/usr/bin"


async def test_a_missing_program_fails_the_check(tmp_path: Path) -> None:
    """A check whose program does not exist fails with the reason instead of raising."""
    result = await run_check("no-such-tool-here --flag", tmp_path, {"PATH": "/nonexistent"}, 5)

    assert not result.ok and result.output_tail.startswith("could not run")


def test_summary_has_one_line_per_check() -> None:
    """The summary shows a tick or a cross, the command, its time and, for a failure, its last line."""
    verification = Verification(
        ok=False,
        checks=[
            CheckResult("ruff check .", True, 0, "All checks passed!\n", 1.23),
            CheckResult("pytest -q", False, 1, "....F\n\n1 failed, 4 passed in 0.5s\n", 3.4),
        ],
        sha="abc",
    )

    assert verification.summary() == (
        "✅ ruff check . (1.2 s)\n❌ pytest -q (3.4 s) — 1 failed, 4 passed in 0.5s"
    )
