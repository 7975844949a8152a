"""The verify gate: run the configured checks, then a smoke load of every extension, in a run's worktree.

The checks must exercise the worktree's code. The live checkout is an editable install, so in a plain
subprocess `import bot` resolves to the LIVE `bot/` whenever the worktree is not on `sys.path` — which
is the case for any entry-point script (`pytest`, `mypy`) or `python some/script.py`, whose `sys.path[0]`
is the script's directory, not the cwd. Checks would then pass or fail on code the run never changed.
Each check therefore runs with:

- `cwd` = the worktree, no shell (the command is `shlex.split`);
- `PYTHONPATH` = the worktree first (before anything the caller had), which `sys.path` puts ahead of
  site-packages and so ahead of the editable install's import hook; `PYTHONSAFEPATH` removed (it would
  drop the cwd from `python -m`'s path) and `PYTHONDONTWRITEBYTECODE=1` (no `__pycache__` in the tree);
- the executable resolved against the running interpreter's venv: `python`/`python3` is
  `sys.executable`; another bare name (`ruff`, `mypy`, `pytest`) is `Path(sys.executable).parent / name`
  when that exists, else looked up on the given `PATH`. That venv's `bin/` also leads `PATH`, so tools a
  check starts itself come from the same place.

Every check runs (the agent is shown all failures at once) within a total time budget, each under its
own timeout that kills its process group. The smoke check (`python -m bot.smoke`) always runs last.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.git import git
from bot.log import get_logger
from bot.process import run_process

__all__ = [
    "OUTPUT_TAIL_CHARS",
    "SMOKE_CHECK",
    "CheckResult",
    "Verification",
    "check_environment",
    "resolve_command",
    "run_check",
    "verify",
]

_log = get_logger(__name__)

OUTPUT_TAIL_CHARS = 4000
SMOKE_CHECK = "python -m bot.smoke"
_SMOKE_TIMEOUT_S = 120.0
_PYTHON_NAMES = {"python", "python3", f"python{sys.version_info.major}.{sys.version_info.minor}"}


@dataclass(frozen=True)
class CheckResult:
    command: str
    ok: bool
    exit_code: int | None
    output_tail: str
    duration_s: float

    @property
    def last_line(self) -> str:
        lines = [line.strip() for line in self.output_tail.splitlines() if line.strip()]
        return lines[-1][:200] if lines else f"exit code {self.exit_code}"

    def line(self) -> str:
        """`✅ ruff check . (1.2 s)` or `❌ pytest -q (3.4 s) — <its last line of output>`."""
        if self.ok:
            return f"✅ {self.command} ({self.duration_s:.1f} s)"
        return f"❌ {self.command} ({self.duration_s:.1f} s) — {self.last_line}"


@dataclass(frozen=True)
class Verification:
    """The outcome for the worktree at `sha`; `dirty` means uncommitted changes were verified too."""

    ok: bool
    checks: list[CheckResult]
    sha: str
    dirty: bool = False

    def summary(self) -> str:
        return "\n".join(check.line() for check in self.checks)

    def failure_report(self) -> str:
        """Each failing check with its output tail: what is fed back to the agent for the next attempt."""
        return "\n\n".join(
            f"$ {check.command}  (exit code {check.exit_code})\n{check.output_tail}"
            for check in self.checks
            if not check.ok
        )


def check_environment(worktree: Path, env: Mapping[str, str]) -> dict[str, str]:
    """`env` made to import the worktree's code first and to find the running venv's tools."""
    merged = dict(env)
    root = str(_absolute(worktree))
    existing = merged.get("PYTHONPATH")
    merged["PYTHONPATH"] = root + (os.pathsep + existing if existing else "")
    merged.pop("PYTHONSAFEPATH", None)
    merged["PYTHONDONTWRITEBYTECODE"] = "1"
    venv_bin = str(Path(sys.executable).parent)
    path = merged.get("PATH") or os.defpath
    merged["PATH"] = venv_bin + os.pathsep + path
    return merged


def resolve_command(command: str, env: Mapping[str, str]) -> list[str]:
    """`command` split as a shell would (none runs), its program resolved as the module docstring says."""
    argv = shlex.split(command)
    if not argv:
        raise ValueError("empty check command")
    program = argv[0]
    if "/" not in program:
        if program in _PYTHON_NAMES:
            argv[0] = sys.executable
        else:
            sibling = Path(sys.executable).parent / program
            if sibling.is_file() and os.access(sibling, os.X_OK):
                argv[0] = str(sibling)
            else:
                argv[0] = shutil.which(program, path=env.get("PATH")) or program
    return argv


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _seconds(value: float) -> str:
    return f"{round(value, 1):g}"


def _tail(text: str) -> str:
    if len(text) <= OUTPUT_TAIL_CHARS:
        return text
    return "…" + text[-(OUTPUT_TAIL_CHARS - 1) :]


async def run_check(command: str, worktree: Path, env: Mapping[str, str], timeout_s: float) -> CheckResult:
    """Run one check command in the worktree with `env` as given (see `check_environment`)."""
    started = time.perf_counter()
    try:
        argv = resolve_command(command, env)
        result = await run_process(argv, cwd=worktree, env=env, timeout_s=timeout_s)
    except (OSError, ValueError) as exc:
        return CheckResult(command, False, None, f"could not run: {exc}", time.perf_counter() - started)
    output = result.output
    if result.timed_out:
        output = f"{output.rstrip()}\ntimed out after {_seconds(timeout_s)} s".lstrip()
    return CheckResult(
        command=command,
        ok=result.code == 0,
        exit_code=result.code,
        output_tail=_tail(output),
        duration_s=result.duration_s,
    )


async def _worktree_state(worktree: Path) -> tuple[str, bool]:
    head = await git(worktree, "rev-parse", "HEAD", check=False, timeout_s=30)
    status = await git(worktree, "status", "--porcelain", check=False, timeout_s=30)
    sha = head.output.strip() if head.code == 0 else ""
    return sha, bool(status.output.strip())


async def verify(
    worktree: Path,
    checks: list[str],
    timeout_s: float,
    env: Mapping[str, str],
    *,
    total_timeout_s: float | None = None,
    smoke: bool = True,
) -> Verification:
    """Run `checks` then the smoke check in `worktree`; ok only if every one passed.

    `timeout_s` bounds each check; `total_timeout_s` (default twice `timeout_s`) bounds the configured
    checks together — one that cannot start within it fails as skipped. The smoke check always runs,
    under min(`timeout_s`, 120 s). `sha` is the worktree's HEAD when verification started.
    """
    worktree = _absolute(worktree)
    sha, dirty = await _worktree_state(worktree)
    check_env = check_environment(worktree, env)
    budget = total_timeout_s if total_timeout_s is not None else 2 * timeout_s
    deadline = time.monotonic() + budget
    results: list[CheckResult] = []
    for command in checks:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            results.append(
                CheckResult(
                    command,
                    False,
                    None,
                    f"skipped: the {_seconds(budget)} s budget for checks was spent",
                    0.0,
                )
            )
            continue
        results.append(await run_check(command, worktree, check_env, min(timeout_s, remaining)))
    if smoke:
        results.append(await run_check(SMOKE_CHECK, worktree, check_env, min(timeout_s, _SMOKE_TIMEOUT_S)))
    verification = Verification(ok=all(r.ok for r in results), checks=results, sha=sha, dirty=dirty)
    _log.info(
        "verified",
        worktree=str(worktree),
        sha=sha,
        ok=verification.ok,
        dirty=dirty,
        checks={r.command: r.ok for r in results},
    )
    return verification
