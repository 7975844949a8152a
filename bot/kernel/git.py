"""The bot's own git: one way to run it, executing nothing a repository's config or a tree could name.

Every git command mendbot runs itself — worktrees, commits, diffs, rebases, merges, pushes, the
evidence's history — goes through `git()`. Branches and worktrees hold agent-written files, and git
runs programs named in configuration (hooks, fsmonitor, pagers, editors, credential helpers, ssh
commands, gpg) and in drivers that a tree's `.gitattributes` selects by name (filter, diff and merge
drivers) — and, recursing into a submodule or an embedded repository, in *that* repository's config,
which whoever wrote the tree controls. Nothing of this can run, by construction:

- every call starts from an empty environment: `PATH`, `HOME`, `LANG`/`LC_ALL=C`, the bot's identity,
  and the `GIT_*` settings below — never the bot's own environment, which holds its tokens;
- no system or global config is read (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`), so the only
  config file is the repository's own, which sandboxed code cannot write (it is read-only inside every
  sandbox) and which must define no driver (`driver_problem`: a run does not start in a repository
  whose config defines one). A tree's attributes can then select a driver name, but no program stands
  behind any name;
- git never enters another repository: submodule recursion is off everywhere (`submodule.recurse`,
  `diff.ignoreSubmodules=all`, `status --ignore-submodules=all`, fetches and pushes), so the config of
  an embedded repository in a worktree is never read — and `mendbot.trust.trees` refuses a change that
  carries one anyway;
- the fixed-name keys that name a program (`NEUTRALISED`: hooks, fsmonitor, pager, editors, askpass,
  ssh, proxies, credential helpers, gpg…) are overridden at command-line precedence (`GIT_CONFIG_COUNT`),
  and `diff`, `log` and `show` get `--no-ext-diff --no-textconv`;
- it never prompts (`GIT_TERMINAL_PROMPT=0`, no askpass) and takes no optional locks.

Commits of agent-made trees are built with plumbing from bytes read by Python (`mendbot.trust.trees`:
`hash-object --no-filters`, `write-tree`, `commit-tree`), and checks run on trees materialised from
blobs (`cat-file`), so no git command reads an agent's working tree through attributes at all.

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

from mendbot.kernel.process import ProcessResult, run_process

__all__ = [
    "GIT_TIMEOUT_S",
    "IDENTITY",
    "NEUTRALISED",
    "GitError",
    "driver_problem",
    "git",
    "git_environment",
]

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
    # Never enter another repository (a submodule, an embedded repository an agent made): its config
    # is written by whoever wrote the tree.
    ("submodule.recurse", "false"),
    ("diff.ignoreSubmodules", "all"),
    ("status.submoduleSummary", "false"),
    ("fetch.recurseSubmodules", "false"),
    ("push.recurseSubmodules", "no"),
)
# Subcommands that may run an external diff or textconv driver named by .gitattributes.
_DIFF_COMMANDS = frozenset({"diff", "log", "show"})
_DIFF_GUARDS = ("--no-ext-diff", "--no-textconv")
# `status` honours diff.ignoreSubmodules, but says so on its own command line too.
_STATUS_GUARDS = ("--ignore-submodules=all",)
# The config sections whose entries a tree's .gitattributes selects by name (gitattributes(5): the
# `filter`, `diff` and `merge` attributes), each naming a program: `<section>.<name>.<key>`.
_DRIVER_KEY = r"^(filter|diff|merge)\..+\..+$"


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


def _with_guards(args: tuple[str, ...]) -> list[str]:
    if args and args[0] in _DIFF_COMMANDS:
        return [args[0], *_DIFF_GUARDS, *args[1:]]
    if args and args[0] == "status":
        return [args[0], *_STATUS_GUARDS, *args[1:]]
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
    input: bytes | None = None,
    binary: bool = False,
) -> ProcessResult:
    """Run `git <args>` in `cwd` the one safe way; stdout and stderr are kept apart.

    With `check`, a non-zero exit (or a timeout) raises `error` naming the subcommand, `cwd` and git's
    explanation, with `secrets` masked. `config` adds `-c`-level settings, `env` environment variables;
    `input` is fed to git's stdin and `binary` keeps its stdout as bytes (`ProcessResult.data`).
    """
    result = await run_process(
        ["git", *_with_guards(args)],
        cwd=cwd,
        env=git_environment(config=config, extra=env),
        timeout_s=timeout_s,
        merge_stderr=False,
        input=input,
        binary=binary,
    )
    if check and (result.timed_out or result.code != 0):
        command = args[0] if args else "git"
        raise error(f"git {command} failed in {cwd}: {_reason(result, secrets)}")
    return result


async def driver_problem(repo: Path) -> str | None:
    """Why git must not work on agent-made trees in `repo`, or None: its config (with what it
    includes) defines a filter, diff or merge driver, which a tree's .gitattributes could select.

    Only the repository's own config is read (`git_environment`), so with none defined there, no
    attribute in any tree can name a program. A repository that needs one (git-lfs installed with
    `--local`) is refused rather than half-trusted: install the driver globally instead, which the
    bot's git never reads.
    """
    result = await git(repo, "config", "--null", "--name-only", "--get-regexp", _DRIVER_KEY, check=False)
    if result.code not in (0, 1):  # 1: no such key
        return f"its git config could not be read: {_reason(result, ())}"
    keys = sorted({key for key in result.output.split("\0") if key})
    if not keys:
        return None
    shown = ", ".join(keys[:4]) + (f" (+{len(keys) - 4})" if len(keys) > 4 else "")
    return (
        f"the repository's git config defines drivers that a file's attributes could make git run ({shown});"
        " mendbot's git runs no program a repository names: remove them from .git/config"
        " (a global install of the tool is not read by mendbot and keeps working for you)"
    )
