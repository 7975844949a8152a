"""The verify gate: checks run sandboxed on the worktree's code, not the live checkout's; smoke, tails,
timeouts, and no check without a sandbox."""

from __future__ import annotations

import asyncio
import json
import os
import py_compile
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mendbot.improve.agent.verify import (
    OUTPUT_TAIL_CHARS,
    SMOKE_CHECK,
    CheckResult,
    Verification,
    resolve_command,
    run_check,
    verify,
    verify_base,
    verify_commit,
)
from mendbot.improve.agent.workspace import NothingToCommitError, Workspace, Worktree
from mendbot.trust.sandbox import Limits, Sandbox
from tests.harness.repo import copy_of_bot, git
from tests.test_merge import commit, small_repo

# A script and a pytest test in the worktree that pass only if `import mendbot` finds the worktree's code.
PROBE_SCRIPT = """\
import sys
import mendbot.features.dice
if not hasattr(mendbot.features.dice, "ONLY_IN_WORKTREE"):
    sys.exit(f"imported the wrong code: {mendbot.features.dice.__file__}")
print(f"imported {mendbot.features.dice.__file__}")
"""
PROBE_TEST = """\
import mendbot.features.dice


def test_marker():
    assert mendbot.features.dice.ONLY_IN_WORKTREE, mendbot.features.dice.__file__
"""
PROBE_CHECKS = {
    "python probe/check_marker.py": "imported the wrong code",
    "pytest -q -p no:cacheprovider probe/test_marker.py": "has no attribute 'ONLY_IN_WORKTREE'",
}


SANDBOX = Sandbox()


def _real(path: Path) -> str:
    return os.path.realpath(path)


async def _verify(worktree: Path, checks: list[str], timeout_s: float, **kwargs: Any) -> Verification:
    kwargs.setdefault("git_dir", None)
    return await verify(worktree, checks, timeout_s, sandbox=SANDBOX, **kwargs)


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
    dice = worktree.path / "bot" / "features" / "dice.py"
    dice.write_text(dice.read_text() + "\nONLY_IN_WORKTREE = True\n")
    (worktree.path / "probe").mkdir()
    (worktree.path / "probe" / "check_marker.py").write_text(PROBE_SCRIPT)
    (worktree.path / "probe" / "test_marker.py").write_text(PROBE_TEST)
    sha = await workspace.commit(worktree, "mark the worktree", 1)

    # The trap: cwd is the worktree, yet an entry-point script's sys.path[0] is its own directory, so
    # without the worktree on PYTHONPATH `import mendbot` never finds the worktree's code.
    async with SANDBOX.jail(worktree.path, git_dir=repo / ".git") as jail:
        naive = {k: v for k, v in jail.environment().items() if k != "PYTHONPATH"}
        for command in PROBE_CHECKS:
            trapped = await run_check(command, jail, naive, timeout_s=60)
            assert not trapped.ok and "ONLY_IN_WORKTREE" not in trapped.output_tail, trapped.output_tail

    verification = await verify_commit(
        workspace, sha, list(PROBE_CHECKS), 60, sandbox=SANDBOX, name="probe", smoke=False
    )

    assert verification.ok, verification.failure_report()
    assert f"imported {workspace.worktrees_dir}/probe-" in verification.checks[0].output_tail
    assert verification.sha == sha
    assert "ONLY_IN_WORKTREE" not in (repo / "bot" / "features" / "dice.py").read_text()


async def test_checks_see_exactly_the_committed_tree(
    workspace: Workspace, worktree: Worktree, tmp_path: Path
) -> None:
    """An ignored `sitecustomize.pyc` the agent's code planted in the worktree (it would end every Python
    process with exit 0 before a test ran) takes no part in verify: the checks run on exactly the
    committed tree. What a check writes never reaches the worktree or the next commit."""
    failing = "tests/test_truth.py"
    (worktree.path / failing).write_text("def test_truth():\n    assert False, 'the real verdict'\n")
    sha = await workspace.commit(worktree, "a failing test", 1)
    source = tmp_path / "sitecustomize.py"
    source.write_text("import os\nos._exit(0)\n")
    py_compile.compile(str(source), cfile=str(worktree.path / "sitecustomize.pyc"))  # *.pyc: ignored
    check = f"python -m pytest -q -p no:cacheprovider {failing}"
    writes = "python -c \"open('written_by_check.txt', 'w').write('x')\""

    verification = await verify_commit(
        workspace, sha, [check, writes], 60, sandbox=SANDBOX, name="exact", smoke=False
    )

    assert not verification.checks[0].ok and "the real verdict" in verification.checks[0].output_tail
    assert verification.checks[1].ok, verification.failure_report()
    assert not (worktree.path / "written_by_check.txt").exists()
    with pytest.raises(NothingToCommitError):
        await workspace.commit(worktree, "after verify", 1)


async def test_smoke_check_fails_on_a_broken_cog(
    repo: Path, workspace: Workspace, worktree: Worktree
) -> None:
    """A syntax error in a committed cog fails the smoke load, which names the cog; the base passes."""
    (worktree.path / "cogs" / "dice.py").write_text("def broken(:\n")
    sha = await workspace.commit(worktree, "break the dice cog", 1)

    broken = await verify_commit(workspace, sha, [], 60, sandbox=SANDBOX, name="broken")
    clean = await verify_commit(workspace, worktree.base_sha, [], 60, sandbox=SANDBOX, name="clean")

    smoke = broken.checks[-1]
    assert smoke.command == SMOKE_CHECK
    assert not broken.ok and not smoke.ok and smoke.exit_code == 1
    assert "❌ cogs.dice" in smoke.output_tail and "SyntaxError" in smoke.output_tail
    assert "✅ cogs.remind" in smoke.output_tail
    assert clean.ok, clean.failure_report()
    assert "✅ cogs.dice" in clean.checks[-1].output_tail


async def test_all_checks_run_and_a_failure_keeps_its_output_tail(tmp_path: Path) -> None:
    """A failing check does not stop the rest; its exit code and the last part of its output are kept."""
    noisy = "python -c \"import sys; print('x' * 10000); print('the end'); sys.exit(3)\""
    passing = "python -c \"print('fine')\""

    verification = await _verify(tmp_path, [noisy, passing], 30, smoke=False)

    failed, passed = verification.checks
    assert not verification.ok and passed.ok
    assert failed.exit_code == 3 and not failed.ok
    assert len(failed.output_tail) <= OUTPUT_TAIL_CHARS
    assert failed.output_tail.rstrip().endswith("the end")
    assert failed.line().startswith("❌ python -c") and failed.line().endswith("— the end")
    assert verification.summary().splitlines()[1].startswith("✅ python -c \"print('fine')\" (")
    assert "exit code 3" in verification.failure_report() and "fine" not in verification.failure_report()


def _running(token: str) -> list[int]:
    """The host's processes whose command line holds `token` (sandboxed ones are visible from here)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if token.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


async def test_a_check_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    """On timeout the sandbox and all in it die; the check fails saying so and keeps what it printed."""
    child = f"child_{os.getpid()}_{time.monotonic_ns()}.py"
    (tmp_path / child).write_text("import time\nwhile True:\n    time.sleep(0.05)\n")
    (tmp_path / "parent.py").write_text(
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, {child!r}])\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )

    started = time.perf_counter()
    verification = await _verify(tmp_path, ["python parent.py"], 1, smoke=False)

    check = verification.checks[0]
    assert time.perf_counter() - started < 10
    assert not check.ok and check.exit_code is None
    assert check.output_tail.startswith("started") and check.limit == "killed after 1 s (wall clock)"
    assert check.line().endswith("— killed after 1 s (wall clock)")
    gone_by = time.monotonic() + 10  # the kernel ends what was left in the sandbox's namespace
    while _running(child) and time.monotonic() < gone_by:  # noqa: ASYNC110 - the kernel, from /proc
        await asyncio.sleep(0.05)
    assert _running(child) == []  # the child inside the sandbox died with it


async def test_total_budget_skips_checks_that_cannot_start(tmp_path: Path) -> None:
    """Checks share a total time budget; one left without time fails as skipped rather than running."""
    verification = await _verify(
        tmp_path,
        ['python -c "import time; time.sleep(5)"', "python -V"],
        5,
        total_timeout_s=0.5,
        smoke=False,
    )

    slow, skipped = verification.checks
    assert slow.exit_code is None and slow.limit == "killed after 0.5 s (wall clock)"
    assert not skipped.ok and skipped.output_tail.startswith("skipped")


BOMB = """\
import os, time
count = 0
while count < 150:  # without a limit: fails, and stays below a sandbox this suite runs in
    try:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        count += 1
    except OSError:
        time.sleep(0.01)
time.sleep(60)
"""


async def test_a_check_that_reaches_a_limit_fails_with_it_and_the_verification_names_it(
    tmp_path: Path,
) -> None:
    """A fork bomb in a check stops at the process limit long before its timeout, and its line says so;
    a check that only prints the sandbox's words reached no limit."""
    (tmp_path / "bomb.py").write_text(BOMB)
    (tmp_path / "claim.py").write_text("print('[sandbox] process limit 32 reached')\n")
    sandbox = Sandbox(limits=Limits(processes=32))

    started = time.perf_counter()
    verification = await verify(
        tmp_path, ["python claim.py", "python bomb.py"], 60, sandbox=sandbox, git_dir=None, smoke=False
    )

    claim, bomb = verification.checks
    assert time.perf_counter() - started < 20
    assert claim.ok and claim.limit is None
    assert not bomb.ok and bomb.exit_code is None and bomb.limit == "process limit 32 reached"
    assert bomb.line().endswith("— process limit 32 reached")
    assert verification.limit_hit == "check `python bomb.py`: process limit 32 reached"


def test_tools_resolve_to_the_running_venv(tmp_path: Path) -> None:
    """python is this interpreter, venv tools come from its bin/, other programs from PATH."""
    venv_bin = Path(sys.executable).parent
    env = {"PATH": "/usr/bin:/bin"}

    assert resolve_command("python -m mendbot.tools.smoke", env) == [
        sys.executable,
        "-m",
        "mendbot.tools.smoke",
    ]
    assert resolve_command("pytest -q -x -m 'not cli'", env) == [
        str(venv_bin / "pytest"),
        "-q",
        "-x",
        "-m",
        "not cli",
    ]
    assert resolve_command("git status", env)[0] in ("/usr/bin/git", "/bin/git")
    assert resolve_command("./scripts/check.sh", env) == ["./scripts/check.sh"]


async def test_checks_see_only_the_sandbox_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check's environment is the sandbox's: the worktree first on PYTHONPATH, no secret, private HOME."""
    monkeypatch.setenv("DISCORD_TOKEN", "sekrit-in-the-bot")
    script = "import json, os; print(json.dumps(dict(os.environ)))"
    verification = await _verify(tmp_path, [f"python -c {script!r}"], 30, smoke=False)
    check = verification.checks[0]
    assert check.ok, check.output_tail
    env = json.loads(check.output_tail.strip().splitlines()[-1])
    assert env["PYTHONPATH"] == f"/run/mendbot/import:/run/mendbot/lib:{_real(tmp_path)}"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"] == "/tmp" and env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert "sekrit-in-the-bot" not in check.output_tail and "DISCORD_TOKEN" not in env


async def test_a_missing_program_fails_the_check(tmp_path: Path) -> None:
    """A check whose program does not exist fails with the reason instead of raising."""
    async with SANDBOX.jail(tmp_path, git_dir=None) as jail:
        result = await run_check("no-such-tool-here --flag", jail, {"PATH": "/nonexistent"}, 5)

    assert not result.ok and result.output_tail.startswith("could not run")


async def test_no_check_runs_without_a_sandbox(tmp_path: Path) -> None:
    """With bwrap missing, verification fails closed: nothing runs and the reason is the only result."""
    marker = tmp_path / "ran"
    broken = Sandbox(bwrap=tmp_path / "no-bwrap-here")
    verification = await verify(
        tmp_path, [f"python -c \"open({str(marker)!r}, 'w')\""], 30, sandbox=broken, git_dir=None
    )
    (refused,) = verification.checks
    assert not verification.ok and refused.command == "sandbox"
    assert "refused to run any check" in refused.output_tail
    assert not marker.exists()


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


def _smoke_in(tree: Path) -> bool:
    """Whether a smoke load runs in `tree` (not one of another test's, elsewhere on the machine)."""
    for pid in _running("mendbot.tools.smoke"):
        try:
            if Path(f"/proc/{pid}/cwd").resolve() == tree.resolve():
                return True
        except OSError:
            continue
    return False


async def test_the_smoke_load_runs_alongside_the_checks(worktree: Worktree) -> None:
    """The smoke load does not wait for the checks: a check still running sees it start (it waits for
    the smoke process, seen from the host), and both verdicts are kept, the smoke's last."""
    release = worktree.path / "release-the-check"
    token = f"smoke-alongside-{os.getpid()}"
    # Looked for by listing the tree: through the sandbox's overlay, a name looked up before the host wrote
    # it stays missing (the overlay keeps the failed lookup; seen for seconds on end), while a listing
    # reads the host's directory again. A loaded suite, whose check looked before the release, waited out
    # its 120 s.
    name = release.name
    wait = f"while not os.path.exists('{name}') and '{name}' not in os.listdir(): time.sleep(0.05)"
    waits = f"python -c \"import os, time; t='{token}'\n{wait}\""

    verifying = asyncio.ensure_future(_verify(worktree.path, [waits], 120))
    together = False
    try:
        for _ in range(1200):  # up to a minute on a loaded machine
            if _running(token) and _smoke_in(worktree.path):
                together = True
                break
            await asyncio.sleep(0.05)
    finally:
        release.write_text("")  # the check ends either way
        verification = await verifying
    assert together
    assert [check.command for check in verification.checks] == [waits, SMOKE_CHECK]
    assert verification.ok, verification.failure_report()


async def test_a_check_the_base_fails_the_same_way_does_not_fail_the_verification(tmp_path: Path) -> None:
    """Main fails the check already; the change fails it the same way: shown as failing on main too, not
    handed to the agent, and the verification passes."""
    root, base, _ = small_repo(tmp_path / "repo")
    git(root, "switch", "-q", "main")
    broken = commit(root, {"roll.txt": "BROKEN\n"}, "main breaks the check")
    git(root, "switch", "-q", "-c", "change")
    change = commit(root, {"notes.txt": "other notes\n"}, "a change elsewhere")
    workspace = Workspace(root, tmp_path / "worktrees")
    verification = await verify_commit(
        workspace, change, ["python check.py"], 60, sandbox=SANDBOX, name="v", smoke=False, base=broken
    )
    assert verification.ok and verification.failure_report() == ""
    (check,) = verification.checks
    assert not check.ok and check.on_base == "main"
    assert "fails on main too" in verification.summary()
    alone = await verify_commit(
        workspace, change, ["python check.py"], 60, sandbox=SANDBOX, name="v", smoke=False
    )
    assert not alone.ok  # without a base to compare with, the failure counts
    assert base != broken


async def test_a_failure_the_change_adds_to_a_check_main_fails_still_counts(tmp_path: Path) -> None:
    """The check fails on main for one line; the change makes it fail for another too: that is the
    change's doing, and the verification fails with it."""
    root, _, _ = small_repo(tmp_path / "repo")
    git(root, "switch", "-q", "main")
    loud = (
        "import sys\nbad = [l for l in open('roll.txt') if 'BROKEN' in l]\nprint(*bad)\nsys.exit(bool(bad))\n"
    )
    broken = commit(root, {"roll.txt": "BROKEN one\n", "check.py": loud}, "main breaks the check")
    git(root, "switch", "-q", "-c", "change")
    change = commit(root, {"roll.txt": "BROKEN one\nBROKEN two\n"}, "the change breaks it more")
    verification = await verify_commit(
        Workspace(root, tmp_path / "worktrees"),
        change,
        ["python check.py"],
        60,
        sandbox=SANDBOX,
        name="v",
        smoke=False,
        base=broken,
    )
    assert not verification.ok
    assert verification.checks[0].on_base is None and "BROKEN two" in verification.failure_report()


async def test_the_base_is_verified_once_per_commit_and_per_what_verifies_it(tmp_path: Path) -> None:
    """The base's verification is kept: asked again, it is not run again; other checks verify it anew."""
    root, base, _ = small_repo(tmp_path / "repo")
    workspace = Workspace(root, tmp_path / "worktrees")
    first, fresh = await verify_base(workspace, base, ["python check.py"], 60, sandbox=SANDBOX, smoke=False)
    assert fresh and first.ok
    again, fresh = await verify_base(workspace, base, ["python check.py"], 60, sandbox=SANDBOX, smoke=False)
    assert not fresh and again == first
    assert [path.name.startswith(base) for path in workspace.cache_dir.iterdir()] == [True]
    other, fresh = await verify_base(workspace, base, ["python -c pass"], 60, sandbox=SANDBOX, smoke=False)
    assert fresh and other.checks[0].command == "python -c pass"
