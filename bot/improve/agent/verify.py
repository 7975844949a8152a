"""The verify gate: run the configured checks and a smoke load of every extension on exactly a commit's
tree, each inside the sandbox (`mendbot.trust.sandbox`): the checks execute code the agent wrote.

`verify_commit` is what the pipeline and the merge queue call: the checks run on a fresh copy of the
commit's tree (`Workspace.checkout`), never in a worktree anyone wrote in, so an ignored or untracked
file the agent's code left there (a `sitecustomize.pyc`, a `conftest.py` nobody committed) takes no part,
and nothing a check writes can reach the next commit. The verdict is about the sha it names.

The checks must exercise the worktree's code. mendbot's own checkout is an editable install, so in a plain
subprocess `import mendbot` would resolve to the LIVE `bot/` — the case for any entry-point script
(`pytest`, `mypy`) or `python some/script.py`, whose `sys.path[0]` is the script's directory. Inside the
sandbox the live checkout does not exist at all, and each check runs with:

- `cwd` = the worktree, no shell (the command is `shlex.split`);
- the sandbox's environment only (`Jail.environment`: venv tools first on PATH, HOME and TMPDIR a
  private /tmp, `PYTHONPATH` = the tree's own packages by the names its pyproject.toml gives them (in
  mendbot's repository, `mendbot` is its `bot/`), the installed mendbot, then the worktree;
  `PYTHONDONTWRITEBYTECODE=1`);
- the executable resolved against the running interpreter's venv: `python`/`python3` is
  `sys.executable`; another bare name (`ruff`, `mypy`, `pytest`) is `Path(sys.executable).parent / name`
  when that exists, else looked up on the sandbox's `PATH`.

Every check runs (the agent is shown all failures at once) within a total time budget, each under its
own timeout that kills the sandbox and everything in it. The smoke check (`python -m mendbot.tools.smoke`)
always runs, alongside the checks (it reads the same read-only tree and judges nothing of theirs), and is
listed last. For a bot mendbot is attached to, the smoke load is its own program started in the sandbox
until it connects with every extension loaded (`mendbot.trust.host_start`), on a tree made ready as for
every start of it (its data files, the files git does not keep with their secrets replaced). Without a
working sandbox nothing runs: the verification fails with the reason (fail closed). Output is passed
through the redactor before it is kept: it goes to chat, the database and the model.

**A run never fails at verify for what also fails on its base.** Given the commit a change starts from
(`verify_commit(base=…)`), a failing check is compared with the same check on that commit, verified once
per sha and kept in mendbot's data directory (`verify_base`): when the base fails it the same way — the
same exit status, and nothing in its output (the tree's path and numbers aside) that the base's lacks —
it is shown as "fails on main too" and does not fail the verification, nor is it handed to the agent. A
failure the change adds, even to a check that already failed, still counts. `mendbot adopt` and the start
of `mendbot attach` verify the committed HEAD the same way, and say what fails before a run is spent.

A check that reaches one of the sandbox's limits — its timeout, the process count, the size of `/tmp`
or of what it writes into the tree, CPU time — fails with that reason (`CheckResult.limit`, e.g. "process
limit 256 reached"), taken from the supervisor's own channel, never from the check's output; the
`Verification` then names it (`limit_hit`), and the pipeline ends the run there instead of handing the
failure back to the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import msgspec

from mendbot.improve.agent.workspace import Workspace
from mendbot.kernel.git import git
from mendbot.kernel.log import get_logger
from mendbot.trust.host_start import HostBot, new_token, prepare_tree, smoke_start
from mendbot.trust.sandbox import Jail, Sandbox, SandboxUnavailable

__all__ = [
    "HOST_SMOKE_CHECK",
    "OUTPUT_TAIL_CHARS",
    "SMOKE_CHECK",
    "CheckResult",
    "Verification",
    "base_report",
    "resolve_command",
    "run_check",
    "verify",
    "verify_base",
    "verify_commit",
]

_log = get_logger(__name__)

OUTPUT_TAIL_CHARS = 4000
SMOKE_CHECK = "python -m mendbot.tools.smoke"
# A bot mendbot is attached to: the installed mendbot's smoke load of it, its program started in the sandbox.
HOST_SMOKE_CHECK = "smoke load: your bot's own start"
_SMOKES = (SMOKE_CHECK, HOST_SMOKE_CHECK)
_SMOKE_TIMEOUT_S = 120.0
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PROGRESS = re.compile(r"[.FEsxXp]+\s*(?:\[\s*#%\])?")  # pytest's dots, its numbers already taken out
# Bumped when what a verification holds or how it is reached changes: a base's kept one is then not used.
_BASE_FORMAT = 1
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
    # It failed on the base commit too, the same way ("main"): not the change's doing, so it does not
    # fail the verification (`Verification.against`).
    on_base: str | None = None

    @property
    def passes(self) -> bool:
        """Whether it does not fail the verification: it passed, or fails on the base too."""
        return self.ok or self.on_base is not None

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
        if self.on_base is not None:
            shared = f"fails on {self.on_base} too"
            return f"⚠️ {self.command} ({self.duration_s:.1f} s) — {shared}: {self.last_line}"
        return f"❌ {self.command} ({self.duration_s:.1f} s) — {self.last_line}"

    def failures(self, tree: str = "") -> set[str]:
        """What it failed on, comparable between two trees: its exit status and the limit it reached, and
        each line of its output, with the tree's path (`tree`) and every number taken out and a test
        runner's progress dots left out."""
        output = self.output_tail
        lines = output.splitlines()[1 if output.startswith("…") else 0 :]  # a cut line is not comparable
        found = {f"exit {self.exit_code}, limit {self.limit}"}
        for raw in lines:
            line = _NUMBER.sub("#", (raw.replace(tree, "<tree>") if tree else raw).strip())
            if line and not _PROGRESS.fullmatch(line):
                found.add(line)
        return found


class Verification(msgspec.Struct, frozen=True):
    """The outcome for the tree of commit `sha`."""

    ok: bool
    checks: list[CheckResult]
    sha: str
    tree: str = ""  # where it ran (its copy of the tree): taken out of what is compared with another

    def summary(self) -> str:
        return "\n".join(check.line() for check in self.checks)

    @property
    def limit_hit(self) -> str | None:
        """ "check `pytest -q`: process limit 256 reached" for the first check that reached a sandbox
        limit (and not on the base too), else None."""
        hit = next((check for check in self.checks if check.limit and check.on_base is None), None)
        return f"check `{hit.command}`: {hit.limit}" if hit is not None else None

    def failure_report(self) -> str:
        """Each failing check with its output tail: what is fed back to the agent for the next attempt
        (not what fails on the base too: nothing the change can be asked to mend)."""
        return "\n\n".join(
            f"$ {check.command}  (exit code {check.exit_code})\n{check.output_tail}"
            for check in self.checks
            if not check.passes
        )

    @property
    def refused(self) -> bool:
        """Nothing ran, or not everything did: no sandbox, or a check skipped for the time."""
        return any(
            check.command == "sandbox" or check.output_tail.startswith("skipped:") for check in self.checks
        )

    def against(self, base: Verification, name: str) -> Verification:
        """This verification with each failure that `base` (the verification of the commit it starts
        from, called `name`) fails the same way — the same check, the same exit status, nothing in its
        output the base's does not have (`CheckResult.failures`) — marked as the base's
        (`CheckResult.on_base`): ok when nothing else fails."""
        on_base = {check.command: check for check in base.checks if not check.ok}
        checks = []
        for check in self.checks:
            before = on_base.get(check.command)
            shared = (
                not check.ok
                and before is not None
                and check.failures(self.tree) <= before.failures(base.tree)
            )
            checks.append(msgspec.structs.replace(check, on_base=name) if shared else check)
        return Verification(
            ok=all(check.passes for check in checks), checks=checks, sha=self.sha, tree=self.tree
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
    base: str | None = None,
) -> Verification:
    """`verify` on a fresh copy of exactly commit `sha`'s tree (`name` names the copy's directory). With
    `base`, the commit the change starts from: a failure is held against the change only if the base
    does not fail the same way (`verify_base`, `Verification.against`)."""
    host = HostBot(workspace.host, workspace.repo_root) if workspace.host is not None else None
    async with workspace.checkout(sha, name=name) as tree:
        verification = await verify(
            tree,
            checks,
            timeout_s,
            sandbox=sandbox,
            git_dir=workspace.repo_root / ".git",
            sha=sha,
            total_timeout_s=total_timeout_s,
            smoke=smoke,
            redact=redact,
            host=host,
        )
    if verification.ok or verification.refused or base is None or base == sha:
        return verification
    on_base, _ = await verify_base(
        workspace,
        base,
        checks,
        timeout_s,
        sandbox=sandbox,
        total_timeout_s=total_timeout_s,
        smoke=smoke,
        redact=redact,
    )
    if on_base.refused:
        return verification
    judged = verification.against(on_base, workspace.base_branch)
    if judged.ok:
        _log.info("verify failures shared with the base", sha=sha, base=base, summary=judged.summary())
    return judged


def base_report(verification: Verification) -> list[str]:
    """What a verification of the unchanged tree (`verify_base`) found, one line each, for the person who
    runs the bot: that it passes, or each failure and what to change."""
    short = verification.sha[:7]
    if verification.refused:
        why = next((check.last_line for check in verification.checks if not check.ok), "not run")
        return [f"⚠️ your bot was not checked on {short}: {why} — `mendbot doctor` says what is missing"]
    failing = [check for check in verification.checks if not check.ok]
    if not failing:
        own = len([check for check in verification.checks if check.command not in _SMOKES])
        checks = f", and its {own} check(s) pass" if own else ""
        return [f"✅ your bot starts in the sandbox on {short} with every extension loaded{checks}"]
    lines = []
    for check in failing:
        if check.command in _SMOKES:
            lines.append(f"❌ {check.last_line}")
        else:
            lines.append(
                f"❌ your check `{check.command}` fails on {short}: {check.last_line} — fix it, or change "
                "bot.checks in mendbot.yaml"
            )
    return lines


def _base_file(workspace: Workspace, sha: str, checks: list[str], smoke: bool) -> Path:
    """Where the verification of base commit `sha` is kept: by the sha and by what verifies it (the
    checks, the smoke load, how the bot runs), so that changing any of those verifies it again."""
    host = msgspec.to_builtins(workspace.host) if workspace.host is not None else None
    what = json.dumps([_BASE_FORMAT, checks, smoke, host], sort_keys=True).encode()
    return workspace.cache_dir / f"{sha}-{hashlib.sha256(what).hexdigest()[:16]}.json"


async def verify_base(
    workspace: Workspace,
    sha: str,
    checks: list[str],
    timeout_s: float,
    *,
    sandbox: Sandbox,
    total_timeout_s: float | None = None,
    smoke: bool = True,
    redact: Callable[[str], str] = str,
) -> tuple[Verification, bool]:
    """The verification of base commit `sha` — `verify_commit`'s, once per sha and per what verifies it,
    kept in the workspace's `cache_dir` (mendbot's data directory, out of every sandbox's reach) — and
    whether it was made now (False: kept from before). One that could not run (no sandbox) is not kept."""
    path = _base_file(workspace, sha, checks, smoke)
    with contextlib.suppress(OSError, msgspec.DecodeError, msgspec.ValidationError):
        return msgspec.json.decode(path.read_bytes(), type=Verification), False
    verification = await verify_commit(
        workspace,
        sha,
        checks,
        timeout_s,
        sandbox=sandbox,
        name=f"base-{sha[:12]}",
        total_timeout_s=total_timeout_s,
        smoke=smoke,
        redact=redact,
    )
    if not verification.refused:
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = path.with_suffix(".tmp")
        kept.write_bytes(msgspec.json.encode(verification))
        kept.replace(path)
    return verification, True


async def _host_smoke(
    worktree: Path,
    host: HostBot,
    sandbox: Sandbox,
    *,
    token: str,
    notes: list[str],
    timeout_s: float,
    redact: Callable[[str], str],
) -> CheckResult:
    """The smoke load of a host bot (`mendbot.trust.host_start.smoke_start`) as a check: its lines, the
    reason last; `notes` (files that could not be copied) first."""
    try:
        outcome = await smoke_start(worktree, host, sandbox, token=token, timeout_s=timeout_s, redact=redact)
    except (OSError, SandboxUnavailable) as exc:
        return CheckResult(HOST_SMOKE_CHECK, False, None, f"could not run: {exc}", 0.0)
    lines = [redact(f"⚠️ not copied: {note}") for note in notes] + outcome.lines
    return CheckResult(
        HOST_SMOKE_CHECK, outcome.ok, 0 if outcome.ok else 1, _tail("\n".join(lines)), outcome.duration_s
    )


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
    host: HostBot | None = None,
) -> Verification:
    """Run `checks`, and alongside them the smoke check, in the tree `worktree`, sandboxed; ok only if every
    one passed.

    `git_dir` is the repository's .git (visible read-only inside). `timeout_s` bounds each check;
    `total_timeout_s` (default twice `timeout_s`) bounds the configured checks together — one that cannot
    start within it fails as skipped. The smoke check always runs, under min(`timeout_s`, 120 s). `sha`
    names what the tree is (default: its HEAD) — `verify_commit` makes sure it is exactly that.
    Output passes through `redact`. For a `host` bot (not mendbot's own) the tree, a throwaway copy, is
    made ready as wherever the bot is started (its data files; its `files`, secrets replaced:
    `mendbot.trust.host_start.prepare_tree`), the checks may write to it (its program may, as when it
    runs: a log file, its database), and the smoke load is the installed mendbot's start of its own
    program (`mendbot.trust.host_start.smoke_start`).
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
    smoke_timeout_s = min(timeout_s, _SMOKE_TIMEOUT_S)
    smoke_check: Callable[[Jail, Mapping[str, str]], Awaitable[CheckResult]] | None = None
    if host is not None:
        token = new_token()
        notes = prepare_tree(worktree, host, token)

        def smoke_check(_: Jail, __: Mapping[str, str]) -> Awaitable[CheckResult]:
            return _host_smoke(
                worktree, host, sandbox, token=token, notes=notes, timeout_s=smoke_timeout_s, redact=redact
            )

    elif smoke:

        def smoke_check(jail: Jail, env: Mapping[str, str]) -> Awaitable[CheckResult]:
            return run_check(SMOKE_CHECK, jail, env, smoke_timeout_s, redact)

    async with sandbox.jail(worktree, git_dir=git_dir, writable=host is not None) as jail:
        results = await _checks_and_smoke(
            jail, checks, smoke_check, timeout_s=timeout_s, budget=budget, redact=redact
        )
    verification = Verification(ok=all(r.ok for r in results), checks=results, sha=sha, tree=str(worktree))
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
    smoke: Callable[[Jail, Mapping[str, str]], Awaitable[CheckResult]] | None,
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
    smoke_run = asyncio.ensure_future(smoke(jail, check_env)) if smoke is not None else None
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
