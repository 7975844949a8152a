"""The bot's own git: one way to run it, executing nothing a repository's config could name.

Every git command mendbot runs itself — worktrees, commits, diffs, rebases, merges, pushes, the
evidence's history — goes through `git()`. Branches and worktrees hold agent-written files, and git
runs programs named in configuration (hooks, fsmonitor, pagers, editors, external diff and textconv
drivers, credential helpers, ssh commands, gpg), so each call:

- starts from an empty environment: `PATH`, `HOME`, `LANG`/`LC_ALL=C`, the bot's identity, and the
  `GIT_*` settings below — never the bot's own environment, which holds its tokens;
- reads no system or global config (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`);
- overrides, at command-line precedence (`GIT_CONFIG_COUNT`), every config key that names a program
  (`NEUTRALISED`), and adds `--no-ext-diff --no-textconv` to `diff`, `log` and `show`, whose drivers
  have arbitrary names that cannot be overridden one by one;
- never prompts (`GIT_TERMINAL_PROMPT=0`, no askpass) and takes no optional locks.

Callers add config (the GitHub forge's auth header) and environment (a scratch index) per call;
neither can re-enable what is neutralised, because the neutralising pairs are applied last.

Why a subprocess of our own rather than GitPython's `Repo.git`/`Git.execute`: GitPython builds each
git process's environment from a copy of `os.environ` and only lets callers add or overwrite
variables (git/cmd.py, `env = os.environ.copy()` then `env.update(...)`), so the bot's tokens and any
`GIT_*` override in its environment would reach git, its aliases and whatever it starts — the
first property above could then only be approximated by a deny-list of names to blank. It is also
synchronous (a thread per call, which cancellation cannot stop) and on timeout kills git but not
the process group it started. tests/test_git.py pins both sides: what git really receives from
`git()`, and that GitPython would still hand it the bot's environment. GitPython stays the
read-only view of a repository's state where no git program runs on our behalf with our
environment (`mendbot doctor`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from bot.process import ProcessResult, run_process

__all__ = ["GIT_TIMEOUT_S", "IDENTITY", "NEUTRALISED", "GitError", "git", "git_environment"]

GIT_TIMEOUT_S = 120.0
IDENTITY = ("mendbot", "mendbot@localhost")
_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"

# Config keys that make git execute something, each set to a value that runs nothing of anyone's.
NEUTRALISED: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.pager", "cat"),
    ("core.editor", "true"),
    ("sequence.editor", "true"),
    ("core.askPass", ""),
    ("core.sshCommand", "ssh"),
    ("core.gitProxy", ""),
    ("core.alternateRefsCommand", ""),
    ("credential.helper", ""),  # an empty value clears the list of helpers
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("push.gpgSign", "false"),
    ("gpg.program", "false"),
    ("protocol.ext.allow", "never"),
    ("rerere.enabled", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
)
# Subcommands that may run an external diff or textconv driver named by .gitattributes.
_DIFF_COMMANDS = frozenset({"diff", "log", "show"})
_DIFF_GUARDS = ("--no-ext-diff", "--no-textconv")


class GitError(Exception):
    """A git command failed; the message says which, where, and git's own explanation."""


def git_environment(
    *, config: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The whole environment of one git process (module docstring); `extra` may not set GIT_CONFIG*."""
    extra = dict(extra or {})
    if any(name.startswith("GIT_CONFIG") for name in extra):
        raise ValueError("pass git config through `config`, not the environment")
    name, email = IDENTITY
    env = {
        "PATH": _SYSTEM_PATH,
        "HOME": os.environ.get("HOME", "/nonexistent"),
        "LANG": "C",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_PAGER": "cat",
        "GIT_EDITOR": "true",
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
        **extra,
    }
    pairs = [*(config or {}).items(), *NEUTRALISED]
    env["GIT_CONFIG_COUNT"] = str(len(pairs))
    for index, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def _with_diff_guards(args: tuple[str, ...]) -> list[str]:
    if args and args[0] in _DIFF_COMMANDS:
        return [args[0], *_DIFF_GUARDS, *args[1:]]
    return list(args)


def _reason(result: ProcessResult, secrets: Iterable[str]) -> str:
    if result.timed_out:
        return "timed out"
    reason = (result.errors.strip() or result.output.strip() or f"exit code {result.code}")[:500]
    for secret in secrets:
        if secret:
            reason = reason.replace(secret, "***")
    return reason


async def git(
    cwd: Path,
    *args: str,
    check: bool = True,
    timeout_s: float = GIT_TIMEOUT_S,
    config: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    error: type[Exception] = GitError,
) -> ProcessResult:
    """Run `git <args>` in `cwd` the one safe way; stdout and stderr are kept apart.

    With `check`, a non-zero exit (or a timeout) raises `error` naming the subcommand, `cwd` and git's
    explanation, with `secrets` masked. `config` adds `-c`-level settings, `env` environment variables.
    """
    result = await run_process(
        ["git", *_with_diff_guards(args)],
        cwd=cwd,
        env=git_environment(config=config, extra=env),
        timeout_s=timeout_s,
        merge_stderr=False,
    )
    if check and (result.timed_out or result.code != 0):
        command = args[0] if args else "git"
        raise error(f"git {command} failed in {cwd}: {_reason(result, secrets)}")
    return result
