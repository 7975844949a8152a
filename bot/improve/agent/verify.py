"""The verify gate: run the configured checks and a smoke load of every extension on exactly a commit's
tree, each inside the sandbox (`mendbot.trust.sandbox`): the checks execute code the agent wrote.

`verify_commit` is what the pipeline and the merge queue call: the checks run on a fresh copy of the
commit's tree (`Workspace.checkout`), never in a worktree anyone wrote in, so an ignored or untracked
file the agent's code left there (a `sitecustomize.pyc`, a `conftest.py` nobody committed) takes no part,
and nothing a check writes can reach the next commit. The verdict is about the sha it names.

The checks must exercise the worktree's code. The live checkout is an editable install, so in a plain
subprocess `import bot` would resolve to the LIVE `bot/` whenever the worktree is not on `sys.path` — the
case for any entry-point script (`pytest`, `mypy`) or `python some/script.py`, whose `sys.path[0]` is the
script's directory. Inside the sandbox the live checkout does not exist at all, and each check runs with:

- `cwd` = the worktree, no shell (the command is `shlex.split`);
- the sandbox's environment only (`Jail.environment`: venv tools first on PATH, HOME and TMPDIR a
  private /tmp, `PYTHONPATH` = the worktree, `PYTHONDONTWRITEBYTECODE=1`);
- the executable resolved against the running interpreter's venv: `python`/`python3` is
  `sys.executable`; another bare name (`ruff`, `mypy`, `pytest`) is `Path(sys.executable).parent / name`
  when that exists, else looked up on the sandbox's `PATH`.

Every check runs (the agent is shown all failures at once) within a total time budget, each under its
own timeout that kills the sandbox and everything in it. The smoke check (`python -m mendbot.tools.smoke`)
always runs, alongside the checks (it reads the same read-only tree and judges nothing of theirs), and is
listed last. Without a working sandbox nothing runs: the verification fails with the reason (fail closed).
Output is passed through the redactor before it is kept: it goes to chat, the database and the model.

A check that reaches one of the sandbox's limits — its timeout, the process count, the size of `/tmp`
or of what it writes into the tree, CPU time — fails with that reason (`CheckResult.limit`, e.g. "process
limit 256 reached"), taken from the supervisor's own channel, never from the check's output; the
`Verification` then names it (`limit_hit`), and the pipeline ends the run there instead of handing the
failure back to the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import msgspec

from mendbot.improve.agent.workspace import Workspace
from mendbot.kernel.git import git
from mendbot.kernel.log import get_logger
from mendbot.kernel.sections import HostConfig
from mendbot.trust import host_smoke
from mendbot.trust.sandbox import Jail, Sandbox, SandboxUnavailable

__all__ = [
    "OUTPUT_TAIL_CHARS",
    "SMOKE_CHECK",
    "CheckResult",
    "Verification",
    "resolve_command",
    "run_check",
    "verify",
    "verify_commit",
]

_log = get_logger(__name__)

OUTPUT_TAIL_CHARS = 4000
SMOKE_CHECK = "python -m mendbot.tools.smoke"
# A bot mendbot is attached to: the installed mendbot's smoke load of it, bound read-only into the sandbox.
_HOST_SMOKE_INSIDE = "/run/mendbot/smoke"
HOST_SMOKE_CHECK = f"python {_HOST_SMOKE_INSIDE}/host_smoke.py {_HOST_SMOKE_INSIDE}/spec.json"
_SMOKE_TIMEOUT_S = 120.0
_KILLED = 124  # the supervisor's exit code when the sandbox ended the command
_PYTHON_NAMES = {"python", "python3", f"python{sys.version_info.major}.{sys.version_info.minor}"}


class CheckResult(msgspec.Struct, frozen=True):
    """One check: `exit_code` is None when it did not exit by itself (killed, or never started);
    `limit` the sandbox limit it reached, by the supervisor's word."""

    command: str
    ok: bool
    exit_code: int | None
    output_tail: str
    duration_s: float
    limit: str | None = None

    @property
    def last_line(self) -> str:
        if self.limit:
            return self.limit
        lines = [line.strip() for line in self.output_tail.splitlines() if line.strip()]
        return lines[-1][:200] if lines else f"exit code {self.exit_code}"

    def line(self) -> str:
        """`✅ ruff check . (1.2 s)`, `❌ pytest -q (3.4 s) — <its last line of output>`, or with the limit
        it reached: `❌ pytest -q (3.4 s) — process limit 256 reached`."""
        if self.ok:
            return f"✅ {self.command} ({self.duration_s:.1f} s)"
        return f"❌ {self.command} ({self.duration_s:.1f} s) — {self.last_line}"


class Verification(msgspec.Struct, frozen=True):
    """The outcome for the tree of commit `sha`."""

    ok: bool
    checks: list[CheckResult]
    sha: str

    def summary(self) -> str:
        return "\n".join(check.line() for check in self.checks)

    @property
    def limit_hit(self) -> str | None:
        """ "check `pytest -q`: process limit 256 reached" for the first check that reached a sandbox
        limit, else None."""
        hit = next((check for check in self.checks if check.limit), None)
        return f"check `{hit.command}`: {hit.limit}" if hit is not None else None

    def failure_report(self) -> str:
        """Each failing check with its output tail: what is fed back to the agent for the next attempt."""
        return "\n\n".join(
            f"$ {check.command}  (exit code {check.exit_code})\n{check.output_tail}"
            for check in self.checks
            if not check.ok
        )


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


async def run_check(
    command: str,
    jail: Jail,
    env: Mapping[str, str],
    timeout_s: float,
    redact: Callable[[str], str] = str,
) -> CheckResult:
    """Run one check command in `jail`'s worktree with exactly `env` (usually `jail.environment()`)."""
    started = time.perf_counter()
    try:
        argv = resolve_command(command, env)
    except ValueError as exc:
        return CheckResult(command, False, None, f"could not run: {exc}", time.perf_counter() - started)
    if "/" not in argv[0]:
        reason = f"could not run: {argv[0]} is not installed (not on the sandbox's PATH)"
        return CheckResult(command, False, None, reason, time.perf_counter() - started)
    try:
        ran = await jail.run(argv, env, wall_s=timeout_s)
    except OSError as exc:
        return CheckResult(command, False, None, f"could not run: {exc}", time.perf_counter() - started)
    result, limit = ran.process, ran.limit
    output = result.output
    if limit:
        output = f"{output.rstrip()}\n{limit}".lstrip()
    killed = limit is not None and (result.timed_out or result.code == _KILLED)
    return CheckResult(
        command=command,
        ok=result.code == 0 and limit is None,
        exit_code=None if killed else result.code,
        output_tail=_tail(redact(output)),
        duration_s=result.duration_s,
        limit=limit,
    )


async def _head(worktree: Path) -> str:
    head = await git(worktree, "rev-parse", "HEAD", check=False, timeout_s=30)
    return head.output.strip() if head.code == 0 else ""


async def verify_commit(
    workspace: Workspace,
    sha: str,
    checks: list[str],
    timeout_s: float,
    *,
    sandbox: Sandbox,
    name: str,
    total_timeout_s: float | None = None,
    smoke: bool = True,
    redact: Callable[[str], str] = str,
) -> Verification:
    """`verify` on a fresh copy of exactly commit `sha`'s tree (`name` names the copy's directory)."""
    async with workspace.checkout(sha, name=name) as tree:
        return await verify(
            tree,
            checks,
            timeout_s,
            sandbox=sandbox,
            git_dir=workspace.repo_root / ".git",
            sha=sha,
            total_timeout_s=total_timeout_s,
            smoke=smoke,
            redact=redact,
            host=workspace.host,
        )


@contextlib.contextmanager
def _host_smoke(host: HostConfig) -> Iterator[dict[Path, str]]:
    """The binds that give the sandbox the installed smoke load of a host bot and what it loads."""
    shared = Path(tempfile.mkdtemp(prefix="mendbot-smoke-"))
    try:
        shutil.copyfile(host_smoke.__file__, shared / "host_smoke.py")
        spec = {
            "bot_class": host.bot_class,
            "extensions": host.extensions,
            "path": host.path,
            "env": host.env,
        }
        (shared / "spec.json").write_text(json.dumps(spec))
        os.chmod(shared, 0o755)
        yield {shared: _HOST_SMOKE_INSIDE}
    finally:
        shutil.rmtree(shared, ignore_errors=True)


async def _run_checks(
    checks: list[str],
    jail: Jail,
    check_env: Mapping[str, str],
    *,
    timeout_s: float,
    budget: float,
    redact: Callable[[str], str],
    results: list[CheckResult],
) -> None:
    """The configured checks one after another, each within `timeout_s` and all within `budget`."""
    deadline = time.monotonic() + budget
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
        results.append(await run_check(command, jail, check_env, min(timeout_s, remaining), redact))


async def verify(
    worktree: Path,
    checks: list[str],
    timeout_s: float,
    *,
    sandbox: Sandbox,
    git_dir: Path | None,
    sha: str | None = None,
    total_timeout_s: float | None = None,
    smoke: bool = True,
    redact: Callable[[str], str] = str,
    host: HostConfig | None = None,
) -> Verification:
    """Run `checks`, and alongside them the smoke check, in the tree `worktree`, sandboxed; ok only if every
    one passed.

    `git_dir` is the repository's .git (visible read-only inside). `timeout_s` bounds each check;
    `total_timeout_s` (default twice `timeout_s`) bounds the configured checks together — one that cannot
    start within it fails as skipped. The smoke check always runs, under min(`timeout_s`, 120 s). `sha`
    names what the tree is (default: its HEAD) — `verify_commit` makes sure it is exactly that.
    Output passes through `redact`. For a `host` bot (not mendbot's own) the smoke load is the installed
    mendbot's of that bot (bot/trust/host_smoke.py), in a tree it may write to (its program may, as
    when it runs: a log file, its database), which is a throwaway copy.
    """
    started = time.monotonic()
    worktree = _absolute(worktree)
    sha = sha if sha is not None else await _head(worktree)
    try:
        await sandbox.probe()
    except SandboxUnavailable as exc:
        refused = CheckResult("sandbox", False, None, f"refused to run any check: {exc}", 0.0)
        _log.error("verify refused: no sandbox", worktree=str(worktree), reason=str(exc))
        return Verification(ok=False, checks=[refused], sha=sha)
    budget = total_timeout_s if total_timeout_s is not None else 2 * timeout_s
    results: list[CheckResult] = []
    with contextlib.ExitStack() as stack:
        binds = stack.enter_context(_host_smoke(host)) if host is not None else {}
        async with sandbox.jail(worktree, git_dir=git_dir, writable=host is not None, binds=binds) as jail:
            results = await _checks_and_smoke(
                jail,
                checks,
                HOST_SMOKE_CHECK if host is not None else SMOKE_CHECK if smoke else None,
                timeout_s=timeout_s,
                budget=budget,
                redact=redact,
            )
    verification = Verification(ok=all(r.ok for r in results), checks=results, sha=sha)
    _log.info(
        "verified",
        worktree=str(worktree),
        sha=sha,
        ok=verification.ok,
        checks={r.command: r.ok for r in results},
        # where a verification's time goes (bench/deploy.py reads it): each check's seconds (the smoke
        # load's overlap the others'), and the whole verification's
        seconds={r.command: round(r.duration_s, 3) for r in results},
        wall_s=round(time.monotonic() - started, 3),
    )
    return verification


async def _checks_and_smoke(
    jail: Jail,
    checks: list[str],
    smoke: str | None,
    *,
    timeout_s: float,
    budget: float,
    redact: Callable[[str], str],
) -> list[CheckResult]:
    """The checks in turn and, alongside them, the smoke load (listed last)."""
    results: list[CheckResult] = []
    check_env = jail.environment()
    # The smoke load reads the same tree as the checks and judges nothing of theirs: it runs alongside
    # them, so a verification takes the longer of the two rather than their sum.
    smoke_run = (
        asyncio.ensure_future(run_check(smoke, jail, check_env, min(timeout_s, _SMOKE_TIMEOUT_S), redact))
        if smoke is not None
        else None
    )
    try:
        await _run_checks(
            checks, jail, check_env, timeout_s=timeout_s, budget=budget, redact=redact, results=results
        )
    except BaseException:  # the checks were interrupted (cancelled): so is the smoke load
        if smoke_run is not None:
            smoke_run.cancel()
            await asyncio.wait([smoke_run])
        raise
    if smoke_run is not None:
        results.append(await smoke_run)
    return results
