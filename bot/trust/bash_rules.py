"""The Bash half of the guard's rules: which commands an agent may run, and how a command line is read.

``ToolGuard`` (``mendbot.trust.guard``) decides a Bash call with these: the prefix allow-list
(``DEFAULT_BASH_ALLOW``) and what the guard knows of each allowed command (read-only or not, the
options it refuses, whether it searches trees or rewrites files), the commands refused whatever a
policy allows (``NEVER_ALLOWED``, compared on argv normalised past wrappers and spellings), the
quote-aware scan that refuses every shell feature that could chain, smuggle or expand, and the
tokens of an argv that could name a file.  They are pure functions of the command line, kept apart
from the guard that also resolves paths and speaks the SDK's hook protocol.

Per-command option deny-sets (``find -exec``, ``git diff --output``, ``mypy --install-types``,
…) are a second layer under the prefix allow-list, not the mechanism.  Commands that run
project code (pytest, a script, mypy plugins) can do anything that code does — which is why
they run in the kernel's sandbox, where the live checkout, its secrets, the network and every
other process do not exist, and why the final diff is checked again for protected paths.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["DEFAULT_BASH_ALLOW", "NEVER_ALLOWED"]

DEFAULT_BASH_ALLOW: tuple[str, ...] = (
    "git diff",
    "git status",
    "git log",
    "git show",
    "git blame",
    "ls",
    "cat",
    "head",
    "tail",
    "wc",
    "grep",
    "rg",
    "find",
    "python -m pytest",
    "pytest",
    "python",  # a script or module of the worktree: confined by the sandbox like everything in Bash
    "ruff check",
    "ruff format",
    "python -m ruff check",
    "python -m ruff format",
    "mypy",
    "python -m mypy",
    "env",
    "printenv",
)

# Refused even when a policy's bash_allow would let them through (compared on normalised argv).
NEVER_ALLOWED: tuple[str, ...] = (
    "git push",
    "git remote",
    "git config",
    "git fetch",
    "git pull",
    "git clone",
    "git submodule",
    "git credential",
    "pip",
    "pipx",
    "uv",
    "poetry",
    "npm",
    "npx",
    "yarn",
    "pnpm",
    "apt",
    "apt-get",
    "curl",
    "wget",
    "nc",
    "ncat",
    "socat",
    "ssh",
    "scp",
    "sftp",
    "ftp",
    "rsync",
    "telnet",
    "python -m pip",
    "sudo",
    "su",
)


@dataclass(frozen=True)
class _CommandSpec:
    """What the guard knows about one allowed command prefix."""

    read_only: bool = False  # allowed in a read_only (investigate) run
    exact: bool = False  # no arguments allowed (``env`` with arguments runs a command)
    denied_options: frozenset[str] = frozenset()  # run commands, write files or reach the network
    search: bool = False  # may read whole directory trees (grep -r, rg)
    kind: str = ""  # "ruff-format" / "ruff-check": may rewrite files


_GIT_READ = _CommandSpec(read_only=True, denied_options=frozenset({"--output"}))
_FIND = _CommandSpec(
    read_only=True,
    denied_options=frozenset(
        {"-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0", "-fprintf", "-fls"}
    ),
)
_PYTEST = _CommandSpec(
    denied_options=frozenset(
        {
            "--basetemp",
            "--junitxml",
            "--junit-xml",
            "--result-log",
            "--report-log",
            "-o",
            "--override-ini",
            "-p",
            "--pastebin",
            "--debug",
        }
    )
)
_MYPY = _CommandSpec(
    denied_options=frozenset(
        {
            "--install-types",
            "--python-executable",
            "--cache-dir",
            "--junit-xml",
            "--html-report",
            "--txt-report",
            "--xml-report",
            "--linecount-report",
            "--linecoverage-report",
            "--lineprecision-report",
            "--any-exprs-report",
            "--cobertura-xml-report",
            "--xslt-html-report",
            "--xslt-txt-report",
            "--memory-xml-report",
            "--shadow-file",
        }
    )
)
_RUFF_OPTIONS = frozenset({"--output-file", "-o", "--cache-dir", "--watch", "-w", "--add-noqa"})
_RUFF_CHECK = _CommandSpec(denied_options=_RUFF_OPTIONS, kind="ruff-check")
_RUFF_FORMAT = _CommandSpec(denied_options=_RUFF_OPTIONS, kind="ruff-format")
_READ_UTILITY = _CommandSpec(read_only=True)
_SPECS: dict[tuple[str, ...], _CommandSpec] = {
    ("git", "diff"): _GIT_READ,
    ("git", "status"): _GIT_READ,
    ("git", "log"): _GIT_READ,
    ("git", "show"): _GIT_READ,
    ("git", "blame"): _GIT_READ,
    ("ls",): _READ_UTILITY,
    ("cat",): _READ_UTILITY,
    ("head",): _READ_UTILITY,
    ("tail",): _READ_UTILITY,
    ("wc",): _READ_UTILITY,
    ("grep",): _CommandSpec(read_only=True, search=True),
    ("rg",): _CommandSpec(read_only=True, search=True, denied_options=frozenset({"--pre", "--pre-glob"})),
    ("find",): _FIND,
    ("python", "-m", "pytest"): _PYTEST,
    ("pytest",): _PYTEST,
    ("ruff", "check"): _RUFF_CHECK,
    ("ruff", "format"): _RUFF_FORMAT,
    ("python", "-m", "ruff", "check"): _RUFF_CHECK,
    ("python", "-m", "ruff", "format"): _RUFF_FORMAT,
    ("mypy",): _MYPY,
    ("python", "-m", "mypy"): _MYPY,
    ("env",): _CommandSpec(read_only=True, exact=True),
    ("printenv",): _READ_UTILITY,
}
# A prefix someone added to bash_allow that the guard has no spec for: not read-only.
_UNKNOWN_SPEC = _CommandSpec()

# git's global options that take a separate value (``git -C dir push``).
_GIT_VALUE_OPTIONS = frozenset({"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--super-prefix"})
# Commands that run their arguments as another command.
_WRAPPERS = frozenset(
    {"command", "exec", "nohup", "time", "nice", "timeout", "env", "xargs", "stdbuf", "setsid"}
)
_WRAPPER_VALUE_OPTIONS = {
    "nice": frozenset({"-n"}),
    "timeout": frozenset({"-s", "-k"}),
    "env": frozenset({"-u", "-C", "-S"}),
    "xargs": frozenset({"-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s"}),
    "stdbuf": frozenset({"-i", "-o", "-e"}),
}
_PYTHON_VALUE_OPTIONS = frozenset({"-W", "-X", "--check-hash-based-pycs"})
_PYTHON = re.compile(r"^python[0-9.]*$")
_PIP = re.compile(r"^pip[0-9.]*$")


_OPERATOR_NAMES = {
    "&&": "command chaining",
    "||": "command chaining",
    ">>": "redirection",
    "$(": "command substitution",
    "<(": "process substitution",
    ">(": "process substitution",
    ";": "command chaining",
    "&": "background or chaining",
    "|": "a pipe",
    ">": "redirection",
    "<": "redirection",
    "$": "variable expansion",
    "(": "a subshell",
    ")": "a subshell",
}


def _shell_hazard(command: str) -> str | None:
    """The first shell feature that could chain, smuggle or expand into another command or path.

    Quote-aware: inside single quotes nothing is special; inside double quotes only ``$`` and
    backticks are.  Outside quotes every operator, expansion, glob and escape is refused, so
    what ``shlex.split`` sees is exactly the argv bash will run.
    """
    quote = ""
    at_word_start = True
    i = 0
    while i < len(command):
        c = command[i]
        pair = command[i : i + 2]
        if c in "\n\r":
            return "a newline (several commands)"
        if ord(c) < 0x20 and c != "\t":
            return "a control character"
        if quote == "'":
            if c == "'":
                quote = ""
        elif quote == '"':
            if c == '"':
                quote = ""
            elif c == "\\":
                i += 1
            elif pair == "$(":
                return "`$(` (command substitution)"
            elif c == "$":
                return "`$` (variable expansion)"
            elif c == "`":
                return "a backtick (command substitution)"
        elif c in "'\"":
            quote = c
        elif c == "`":
            return "a backtick (command substitution)"
        elif pair in ("&&", "||", ">>", "$(", "<(", ">("):
            return f"`{pair}` ({_OPERATOR_NAMES[pair]})"
        elif c in _OPERATOR_NAMES:
            return f"`{c}` ({_OPERATOR_NAMES[c]})"
        elif c in "*?[{}":
            return f"`{c}` (unquoted glob or brace expansion)"
        elif c == "\\":
            return "a backslash escape outside quotes"
        elif c == "~" and at_word_start:
            return "`~` at the start of a word (home directory expansion)"
        elif c == "#" and at_word_start:
            return "`#` at the start of a word (a comment)"
        elif c == "~" and command[i - 1] in "=:":
            return "`~` after `=` or `:` (home expansion)"
        at_word_start = quote == "" and c in " \t"
        i += 1
    if quote:
        return "an unterminated quote"
    return None


def _normalise(argv: list[str]) -> list[str]:
    """argv with the program's directory dropped and git's/python's wrapper options skipped.

    ``/usr/bin/git -C x --no-pager push`` becomes ``git push …`` and ``python3 -I -m pip``
    becomes ``python -m pip`` so the never-allowed list cannot be dodged by spelling.
    """
    argv = _strip_wrappers(argv)
    if not argv:
        return []
    program = os.path.basename(argv[0])
    rest = argv[1:]
    if program == "git":
        i = 0
        while i < len(rest) and rest[i].startswith("-"):
            i += 2 if rest[i] in _GIT_VALUE_OPTIONS else 1
        return ["git", *rest[i:]]
    if _PYTHON.match(program):
        i = 0
        while i < len(rest) and rest[i].startswith("-"):
            token = rest[i]
            if token == "-m" and i + 1 < len(rest):
                return ["python", "-m", _pip_name(rest[i + 1]), *rest[i + 2 :]]
            if token.startswith("-m"):
                return ["python", "-m", _pip_name(token[2:]), *rest[i + 1 :]]
            i += 2 if token in _PYTHON_VALUE_OPTIONS else 1
        return ["python", *rest]
    return [_pip_name(program), *rest]


def _strip_wrappers(argv: list[str]) -> list[str]:
    """Drop leading commands that only run the rest (``timeout 5 git push`` → ``git push``)."""
    while argv and os.path.basename(argv[0]) in _WRAPPERS:
        wrapper = os.path.basename(argv[0])
        rest = argv[1:]
        while rest and (rest[0].startswith("-") or (wrapper == "env" and "=" in rest[0])):
            takes_value = rest[0] in _WRAPPER_VALUE_OPTIONS.get(wrapper, ())
            rest = rest[2:] if takes_value else rest[1:]
        if wrapper == "timeout" and rest:
            rest = rest[1:]  # the duration
        argv = rest
    return argv


def _pip_name(program: str) -> str:
    return "pip" if _PIP.match(program) else program


_NEVER = tuple(_normalise(shlex.split(entry)) for entry in NEVER_ALLOWED)


def _matches_option(token: str, denied: frozenset[str]) -> str | None:
    """The denied option ``token`` spells (exactly, as ``--opt=value``, as an unambiguous
    abbreviation ``--opt`` prefix, or inside a short-option cluster like ``-qo``)."""
    if not token.startswith("-") or token == "-":
        return None
    name = token.split("=", 1)[0]
    if name in denied:
        return name
    if name.startswith("--") and len(name) > 3:
        for option in denied:
            if option.startswith(name):
                return option
    if not name.startswith("--") and len(name) > 2 and name[1:].isalnum():
        for option in denied:
            if len(option) == 2 and option[1] in name[1:]:
                return option
    return None


def _path_candidates(args: Iterable[str]) -> Iterator[str]:
    """Every string in ``args`` bash or the program could treat as a path.

    Every token as it is, option values after ``=`` or glued to a short option, and the part
    after ``:`` (git's ``rev:path``).  Over-inclusive on purpose: a pattern that looks like a
    path outside the worktree is refused too.
    """
    for token in args:
        if token in ("-", "--"):
            continue
        yield token  # an option-looking token may still be a file name (after `--`)
        if token.startswith("-"):
            if "=" in token:
                yield token.split("=", 1)[1]
            elif not token.startswith("--") and len(token) > 2:
                yield token[2:]
            continue
        if ":" in token:
            yield token.split(":", 1)[1]
