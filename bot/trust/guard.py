"""The coding agent's deterministic permission policy: every tool call is checked in code.

``ToolGuard.check`` decides one tool call from a ``GuardPolicy``; ``ToolGuard.hooks()`` plugs
it into ``ClaudeAgentOptions(hooks=...)`` as a PreToolUse hook, which the Claude Code CLI
honours in every permission mode (``can_use_tool`` is only asked when the CLI's own rules say
"ask", so it cannot be the enforcement).  The rules are allow-lists over resolved paths and
argv tokens:

- file tools may only touch paths whose ``realpath`` is inside the worktree (so ``..``,
  absolute paths, ``/proc/self/environ`` and symlinks pointing out are refused);
- secret files (``.env*``, ``data/``, keys, databases, ``.git/config``) are never read or
  written, and nothing under ``.git/`` is written;
- protected paths are read-only unless the run has the security flag;
- in a run with a file claim (``bot.improve.claims``), file tools and ruff's rewrites may only write
  the claimed files; the denial tells the agent to extend its claim with the ``claim_files`` tool;
- Bash runs one simple command (no chaining, substitution, redirection, globbing) whose argv
  starts with an allowed prefix; a fixed set of commands (push, installs, network tools) is
  refused even if someone allow-lists it, and every argument that could name a file must
  resolve inside the worktree;
- an allowed Bash command never runs as written: the hook rewrites it to run inside the OS
  sandbox (``confine``, see ``bot.trust.sandbox``), and without a sandbox Bash is refused;
- any other tool is refused unless the policy names it in ``extra_tools``.

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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:  # the SDK is imported where it is used: evidence and start-up need only the rules
    from claude_agent_sdk import (
        HookContext,
        HookInput,
        HookJSONOutput,
        HookMatcher,
        PermissionResultAllow,
        PermissionResultDeny,
        ToolPermissionContext,
    )
    from claude_agent_sdk.types import HookEvent

__all__ = [
    "CLAIM_TOOL",
    "DEFAULT_BASH_ALLOW",
    "NEVER_ALLOWED",
    "READ_TOOLS",
    "WRITE_TOOLS",
    "ClaimView",
    "Decision",
    "GuardPolicy",
    "ToolGuard",
    "protected_entry",
    "secret_reason",
]

WRITE_TOOLS = frozenset({"Edit", "Write", "MultiEdit", "NotebookEdit"})
READ_TOOLS = frozenset({"Read", "Glob", "Grep", "NotebookRead", "LS"})
# Tools that touch nothing outside the conversation.
HARMLESS_TOOLS = frozenset({"TodoWrite"})
# The in-process tool that extends a run's file claim (an SDK MCP server named "mendbot").
CLAIM_TOOL = "mcp__mendbot__claim_files"

# Which input field names the file a tool touches (Claude Code CLI 2.1 schemas).
_PATH_FIELD = {
    "Read": "file_path",
    "Edit": "file_path",
    "Write": "file_path",
    "MultiEdit": "file_path",
    "NotebookEdit": "notebook_path",
    "NotebookRead": "notebook_path",
    "Glob": "path",
    "Grep": "path",
    "LS": "path",
}
# Tools whose path is optional and defaults to the working directory.
_DEFAULTS_TO_CWD = frozenset({"Glob", "Grep", "LS"})

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

# Recursive searches walk at most this many entries looking for secrets before giving up.
MAX_WALK_ENTRIES = 100_000
# Bash's own timeout (the tool's ``timeout``, in ms) is clamped to this range of seconds.
BASH_DEFAULT_S = 120.0
BASH_MAX_S = 600.0

# Wraps an allowed command's argv, to run within ``wall_s`` seconds, into the shell command that
# runs it inside the sandbox.
Confine = Callable[[list[str], float], str]


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
_KEY_FILES = ("id_rsa", "id_dsa", "id_ecdsa", "id_ed25519")


class ClaimView(Protocol):
    """A run's file claim as the guard reads it (``bot.improve.claims.Claim``); it may grow mid-run."""

    def covers(self, rel: str) -> bool: ...

    def shown(self) -> str: ...


@dataclass(frozen=True)
class GuardPolicy:
    """What one agent run may do.

    ``protected_paths`` are repo-relative files or directory prefixes (ending in "/"; an entry
    without the slash also covers a directory of that name). ``claim``, when set, is the only
    set of files the run may write.
    """

    worktree: Path
    protected_paths: tuple[str, ...] = ()
    security: bool = False
    read_only: bool = False
    bash_allow: tuple[str, ...] = DEFAULT_BASH_ALLOW
    extra_tools: tuple[str, ...] = ()
    claim: ClaimView | None = None

    def __post_init__(self) -> None:
        # Everything below compares realpaths, so the worktree must be one as well.
        object.__setattr__(self, "worktree", Path(os.path.realpath(self.worktree)))


@dataclass(frozen=True)
class Decision:
    """One verdict on one tool call; ``target`` is the path or command it was about."""

    allowed: bool
    reason: str
    tool: str
    target: str
    tool_use_id: str | None = None


def protected_entry(rel: str, entries: Iterable[str]) -> str | None:
    """The entry of ``entries`` that protects the repository-relative path ``rel``, or None.

    ``dir/`` protects that directory; an entry with a ``/`` is a path from the root (a glob, or a
    directory it names); a bare name (glob allowed) protects that file name anywhere in the tree.
    """
    path = PurePosixPath(rel.removeprefix("./")).as_posix()
    parts = path.split("/")
    for raw in entries:
        entry = raw.strip().removeprefix("./")
        if not entry:
            continue
        base = entry.rstrip("/")
        if entry.endswith("/") or "/" in base:
            if path == base or path.startswith(base + "/") or fnmatchcase(path, base):
                return entry
        elif any(fnmatchcase(part, base) for part in parts):
            return entry
    return None


def secret_reason(rel: str) -> str | None:
    """Why a worktree-relative path is a secret file, or None if it is not one."""
    parts = PurePosixPath(rel).parts
    if not parts or parts == (".",):
        return None
    if parts[0] == "data":
        return f"{rel} is in data/ (runtime state and secrets)"
    if parts[:2] == (".git", "config"):
        return f"{rel} is git's config (may hold credentials)"
    for name in parts:
        if name == ".env" or (name.startswith(".env.") and name != ".env.example"):
            return f"{rel} is an environment file (secrets)"
        if name == ".netrc":
            return f"{rel} is a .netrc (credentials)"
        if name.endswith((".pem", ".key")) or name.startswith(_KEY_FILES):
            return f"{rel} is a key file"
        if name.endswith((".db", ".sqlite", ".sqlite3")):
            return f"{rel} is a database"
    return None


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


class ToolGuard:
    """Decides every tool call of one agent run and keeps the audit trail (``decisions``)."""

    def __init__(
        self,
        policy: GuardPolicy,
        on_decision: Callable[[Decision], None] | None = None,
        *,
        confine: Confine | None = None,
        unconfined_reason: str = "no sandbox is configured",
    ) -> None:
        self.policy = policy
        self._confine = confine
        self._unconfined_reason = unconfined_reason
        self.decisions: list[Decision] = []
        self._by_tool_use: dict[str, Decision] = {}
        self._on_decision = on_decision
        self._root = str(policy.worktree)
        self._protected = tuple(p.strip().removeprefix("./") for p in policy.protected_paths if p.strip())
        allow = (shlex.split(prefix) for prefix in policy.bash_allow)
        # Longest prefix first, so "python -m pytest" wins over a shorter custom "python -m".
        self._bash_allow = sorted((tuple(p) for p in allow if p), key=len, reverse=True)

    # ------------------------------------------------------------------ entry points

    def check(
        self, tool_name: str, tool_input: Mapping[str, Any], *, tool_use_id: str | None = None
    ) -> Decision:
        """Decide one tool call, record it in ``decisions`` and pass it to ``on_decision``.

        Synchronous and deterministic; it only reads the filesystem (to resolve paths and,
        for recursive searches, to look for secret files).  If ``on_decision`` raises, the
        exception propagates and the hook fails, which blocks the call.
        """
        decision = self.evaluate(tool_name, tool_input, tool_use_id=tool_use_id)
        self._record(decision)
        return decision

    def evaluate(
        self, tool_name: str, tool_input: Mapping[str, Any], *, tool_use_id: str | None = None
    ) -> Decision:
        """Decide one tool call without recording it."""
        target = ""
        try:
            if tool_name == "Bash":
                target = str(tool_input.get("command", ""))
                reason, allowed = self._check_bash(tool_input)
            elif tool_name in _PATH_FIELD:
                target = str(tool_input.get(_PATH_FIELD[tool_name]) or "")
                reason, allowed = self._check_file_tool(tool_name, tool_input)
            elif tool_name in HARMLESS_TOOLS or tool_name in self.policy.extra_tools:
                reason, allowed = f"{tool_name} is allowed", True
            else:
                reason, allowed = f"tool {tool_name} is not allowed in this run", False
        except Exception as exc:  # malformed input or a path the OS refuses: fail closed, on record
            reason, allowed = f"cannot check {tool_name}: {exc}", False
        return Decision(allowed, reason, tool_name, target, tool_use_id)

    def _record(self, decision: Decision) -> None:
        self.decisions.append(decision)
        if decision.tool_use_id is not None:
            self._by_tool_use[decision.tool_use_id] = decision
        if self._on_decision is not None:
            self._on_decision(decision)

    async def pre_tool_use_hook(
        self, input_data: HookInput, tool_use_id: str | None, context: HookContext
    ) -> HookJSONOutput:
        """PreToolUse hook: deny with the guard's reason; on allow defer to the CLI's own rules.

        Returning ``{}`` rather than "allow" keeps the CLI's checks (and ``can_use_tool``) as a
        second gate: a call runs only if both agree.
        """
        if input_data["hook_event_name"] != "PreToolUse":
            return {}
        data = cast("Mapping[str, Any]", input_data)
        tool_input = data.get("tool_input")
        tool_input = tool_input if isinstance(tool_input, Mapping) else {}
        decision = self.check(
            str(data.get("tool_name", "")), tool_input, tool_use_id=tool_use_id or data.get("tool_use_id")
        )
        if decision.allowed and decision.tool == "Bash":
            return {
                "hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "permissionDecision": "allow",
                    "permissionDecisionReason": decision.reason,
                    "updatedInput": self.confined_bash(tool_input),
                }
            }
        if decision.allowed:
            return {}
        return {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": decision.reason,
            }
        }

    async def can_use_tool(
        self, tool_name: str, tool_input: dict[str, Any], context: ToolPermissionContext
    ) -> PermissionResultAllow | PermissionResultDeny:
        """``can_use_tool`` callback: the same policy, for calls the CLI's rules would ask about.

        A call the hook already decided is re-evaluated but recorded again only if the
        verdict changed, so the audit trail holds one entry per call.
        """
        import claude_agent_sdk as sdk

        decision = self.evaluate(tool_name, tool_input, tool_use_id=context.tool_use_id)
        if self._by_tool_use.get(context.tool_use_id or "") != decision:
            self._record(decision)
        if decision.allowed and tool_name == "Bash":
            return sdk.PermissionResultAllow(updated_input=self.confined_bash(tool_input))
        if decision.allowed:
            return sdk.PermissionResultAllow()
        return sdk.PermissionResultDeny(message=decision.reason)

    def confined_bash(self, tool_input: Mapping[str, Any]) -> dict[str, Any]:
        """The Bash input that actually runs: the allowed command inside the sandbox, nothing else.

        Only ``command``, ``timeout`` and ``description`` are kept, so no other field of the model's
        input (``run_in_background``, ``dangerouslyDisableSandbox``) reaches the CLI.
        """
        assert self._confine is not None, "Bash is only allowed with a sandbox"
        timeout_ms = tool_input.get("timeout")
        seconds = BASH_DEFAULT_S
        if isinstance(timeout_ms, int | float) and timeout_ms > 0:
            seconds = min(max(float(timeout_ms) / 1000, 1.0), BASH_MAX_S)
        argv = shlex.split(str(tool_input["command"]))
        confined: dict[str, Any] = {
            "command": self._confine(argv, seconds),
            # The CLI's own timeout a little later than the sandbox's, which reports it.
            "timeout": int((seconds + 5) * 1000),
        }
        if isinstance(tool_input.get("description"), str):
            confined["description"] = tool_input["description"][:200]
        return confined

    def hooks(self) -> dict[HookEvent, list[HookMatcher]]:
        """``ClaudeAgentOptions.hooks``; a hook that fails (raises, times out) blocks the call."""
        import claude_agent_sdk as sdk

        return {
            "PreToolUse": [sdk.HookMatcher(matcher=None, hooks=[self.pre_tool_use_hook], on_failure="block")]
        }

    # ------------------------------------------------------------------ paths

    def _inside(self, real: str) -> bool:
        return real == self._root or real.startswith(self._root + os.sep)

    def _rel(self, real: str) -> str:
        return PurePosixPath(os.path.relpath(real, self._root)).as_posix()

    def _path_problem(self, raw: str, *, write: bool) -> str | None:
        """Why ``raw`` (absolute or relative to the worktree) may not be used, or None."""
        if not raw:
            return "the path is empty"
        if "\x00" in raw:
            return f"path {raw!r} contains a NUL byte"
        if raw.startswith("~"):
            # The CLI and bash both expand ~ to the agent's HOME, outside the worktree.
            return f"path {raw} is outside the worktree (home directory)"
        joined = os.path.join(self._root, raw)
        real = os.path.realpath(joined)
        if not self._inside(real):
            lexical = os.path.normpath(joined)
            if self._inside(lexical):
                return f"path {raw} resolves to {real}, outside the worktree"
            return f"path {raw} is outside the worktree"
        rels = dict.fromkeys([self._rel(real)])
        lexical = os.path.normpath(joined)
        if self._inside(lexical):
            rels = dict.fromkeys([self._rel(lexical), *rels])
        for rel in rels:
            secret = secret_reason(rel)
            if secret:
                return f"{secret}; secret files are never read or written"
        if write:
            for rel in rels:
                if rel == ".git" or rel.startswith(".git/"):
                    return f"{rel} is inside .git/, which the agent never writes"
                protected = self._protected_entry(rel)
                if protected and not self.policy.security:
                    return f"{rel} is protected (needs the security flag)"
        return None

    def _protected_entry(self, rel: str) -> str | None:
        return protected_entry(rel, self._protected)

    def _claim_problem(self, raw: str) -> str | None:
        """Why writing ``raw`` (already found inside the worktree) falls outside the run's claim."""
        claim = self.policy.claim
        if claim is None:
            return None
        rel = self._rel(os.path.realpath(os.path.join(self._root, raw)))
        if claim.covers(rel):
            return None
        return (
            f"{rel} is outside this run's claim ({claim.shown()}); to change it, first call the "
            f'claim_files tool with paths ["{rel}"] and why (it waits while another run holds the file)'
        )

    def _covers_protected(self, rel: str) -> str | None:
        """A protected entry at, under or above the worktree-relative path ``rel``."""
        direct = self._protected_entry(rel)
        if direct:
            return direct
        for entry in self._protected:
            base = entry.rstrip("/")
            if rel == "." or base.startswith(rel + "/"):
                return entry
        names = [entry for entry in self._protected if "/" not in entry.rstrip("/")]
        directory = os.path.join(self._root, rel)
        if names and os.path.isdir(directory):
            seen = 0
            for _, dirs, files in os.walk(directory):
                for name in [*dirs, *files]:
                    seen += 1
                    if seen > MAX_WALK_ENTRIES:
                        return names[0]  # too much to check: assume the worst
                    found = protected_entry(name, names)
                    if found:
                        return found
        return None

    def _secret_under(self, directory: str) -> str | None:
        """The first secret file, or symlink leading out of the worktree, under ``directory``."""
        seen = 0
        for root, dirs, files in os.walk(directory):
            for name in [*dirs, *files]:
                seen += 1
                if seen > MAX_WALK_ENTRIES:
                    return f"more than {MAX_WALK_ENTRIES} files to check for secrets"
                full = os.path.join(root, name)
                rel = self._rel(full)
                secret = secret_reason(rel)
                if secret:
                    return secret
                if os.path.islink(full):
                    real = os.path.realpath(full)
                    if not self._inside(real):
                        return f"{rel} links outside the worktree"
                    secret = secret_reason(self._rel(real))
                    if secret:
                        return f"{rel} links to a secret: {secret}"
        return None

    # ------------------------------------------------------------------ file tools

    def _check_file_tool(self, tool: str, tool_input: Mapping[str, Any]) -> tuple[str, bool]:
        write = tool in WRITE_TOOLS
        if write and self.policy.read_only:
            return f"{tool} is not allowed in a read-only run", False
        raw = tool_input.get(_PATH_FIELD[tool])
        if raw is None and tool in _DEFAULTS_TO_CWD:
            raw = "."
        if not isinstance(raw, str):
            return f"{tool} needs a {_PATH_FIELD[tool]} string", False
        problem = self._path_problem(raw, write=write)
        if problem:
            return problem, False
        if write:
            problem = self._claim_problem(raw)
            if problem:
                return problem, False
        if tool == "Glob":
            pattern = str(tool_input.get("pattern", ""))
            if pattern.startswith(("/", "~")) or ".." in PurePosixPath(pattern).parts:
                return f"glob pattern {pattern} reaches outside the worktree", False
        if tool == "Grep":
            real = os.path.realpath(os.path.join(self._root, raw))
            if os.path.isdir(real):
                hazard = self._secret_under(real)
                if hazard:
                    return f"searching {raw} would read a secret ({hazard}); search a narrower path", False
        verb = "write to" if write else "read"
        return f"{tool} may {verb} {raw} inside the worktree", True

    # ------------------------------------------------------------------ Bash

    def _check_bash(self, tool_input: Mapping[str, Any]) -> tuple[str, bool]:
        command = tool_input.get("command")
        if not isinstance(command, str) or not command.strip():
            return "an empty Bash command", False
        if tool_input.get("run_in_background"):
            return "Bash commands may not run in the background", False
        if tool_input.get("dangerouslyDisableSandbox"):
            return "Bash commands may not disable the sandbox", False
        hazard = _shell_hazard(command)
        if hazard:
            return f"Bash command contains {hazard}; run one simple command", False
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            return f"cannot parse the Bash command: {exc}", False
        if not argv:
            return "an empty Bash command", False
        normalised = _normalise(argv)
        for never in _NEVER:
            if normalised and normalised[: len(never)] == never:
                return f"`{' '.join(never)}` is never allowed", False
        prefix = self._allowed_prefix(argv)
        if prefix is None:
            shown = " ".join(argv[:2])
            return f"`{shown}` is not on the Bash allow-list", False
        inner = _strip_wrappers(argv)
        if inner and inner != argv and self._allowed_prefix(inner) is None:
            # A wrapper someone allow-listed (timeout, nice, …) may only run allowed commands.
            return f"`{' '.join(inner[:2])}` (run through `{argv[0]}`) is not on the Bash allow-list", False
        name = " ".join(prefix)
        spec = _SPECS.get(prefix, _UNKNOWN_SPEC)
        if self.policy.read_only and not spec.read_only:
            return f"`{name}` is not allowed in a read-only run", False
        args = argv[len(prefix) :]
        if spec.exact and args:
            return f"`{name}` takes no arguments here", False
        for token in args:
            option = _matches_option(token, spec.denied_options)
            if option:
                return f"`{name} {option}` is not allowed", False
        for candidate in _path_candidates(args):
            if not candidate:
                continue
            problem = self._path_problem(candidate, write=False)
            if problem:
                return problem, False
        if spec.search and self._recursive(prefix, args):
            hazard = self._secret_under(self._root)
            if hazard:
                reason = f"a recursive search would read a secret ({hazard}); use the Grep tool on a path"
                return reason, False
        if spec.kind and self._rewrites(spec, args):
            problem = self._rewrite_problem(name, args)
            if problem:
                return problem, False
        if self._confine is None:
            return f"Bash runs only inside the OS sandbox, and {self._unconfined_reason}", False
        return f"`{name}` is on the Bash allow-list", True

    def _allowed_prefix(self, argv: list[str]) -> tuple[str, ...] | None:
        return next((p for p in self._bash_allow if tuple(argv[: len(p)]) == p), None)

    @staticmethod
    def _recursive(prefix: tuple[str, ...], args: list[str]) -> bool:
        if prefix == ("rg",):
            return True
        for token in args:
            if token.startswith("--") and token.split("=", 1)[0] in (
                "--recursive",
                "--dereference-recursive",
                "--directories",
            ):
                return True
            if re.match(r"^-[A-Za-z0-9]+$", token) and set(token[1:]) & {"r", "R", "d"}:
                return True
        return False

    @staticmethod
    def _rewrites(spec: _CommandSpec, args: list[str]) -> bool:
        names = {token.split("=", 1)[0] for token in args}
        if spec.kind == "ruff-format":
            return not names & {"--check", "--diff"}
        return bool(names & {"--fix", "--fix-only", "--unsafe-fixes"}) and "--no-fix" not in names

    def _rewrite_problem(self, name: str, args: list[str]) -> str | None:
        """A command that rewrites files must name them, and none may be protected."""
        targets = [token for token in args if not token.startswith("-")]
        if not targets:
            targets = ["."]
        for target in targets:
            real = os.path.realpath(os.path.join(self._root, target))
            if not os.path.exists(real):
                return f"`{name}` rewrites files: {target} is not a file or directory of the worktree"
            claim = self.policy.claim
            if claim is not None and not claim.covers(self._rel(real) + ("/" if os.path.isdir(real) else "")):
                return (
                    f"`{name} {target}` would rewrite files outside this run's claim ({claim.shown()});"
                    " name the claimed files"
                )
            if self.policy.security:
                continue
            protected = self._covers_protected(self._rel(real))
            if protected:
                return (
                    f"`{name} {target}` would rewrite protected {protected} (needs the security flag); "
                    "name the files to change"
                )
        return None
