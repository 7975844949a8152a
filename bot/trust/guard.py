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
- in a run with a file claim (``mendbot.improve.agent.claims``), file tools and ruff's rewrites may only write
  the claimed files; the denial tells the agent to extend its claim with the ``claim_files`` tool;
- Bash runs one simple command (no chaining, substitution, redirection, globbing) whose argv
  starts with an allowed prefix; a fixed set of commands (push, installs, network tools) is
  refused even if someone allow-lists it, and every argument that could name a file must
  resolve inside the worktree;
- an allowed Bash command never runs as written: the hook rewrites it to run inside the OS
  sandbox (``confine``, see ``mendbot.trust.sandbox``), and without a sandbox Bash is refused;
- any other tool is refused unless the policy names it in ``extra_tools``.

The path rules live in ``mendbot.trust.path_rules`` and the Bash rules (the allow-list, the commands
never allowed, how a command line is read) in ``mendbot.trust.bash_rules``; this module applies them to
tool calls and speaks the SDK's hook and permission protocols.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol, cast

from mendbot.trust.bash_rules import (
    _NEVER,
    _SPECS,
    _UNKNOWN_SPEC,
    DEFAULT_BASH_ALLOW,
    _CommandSpec,
    _matches_option,
    _normalise,
    _path_candidates,
    _shell_hazard,
    _strip_wrappers,
)
from mendbot.trust.path_rules import protected_entry, secret_reason

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
    "READ_TOOLS",
    "WRITE_TOOLS",
    "ClaimView",
    "Decision",
    "GuardPolicy",
    "ToolGuard",
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

# Recursive searches walk at most this many entries looking for secrets before giving up.
MAX_WALK_ENTRIES = 100_000
# Bash's own timeout (the tool's ``timeout``, in ms) is clamped to this range of seconds.
BASH_DEFAULT_S = 120.0
BASH_MAX_S = 600.0

# Wraps an allowed command's argv, to run within ``wall_s`` seconds, into the shell command that
# runs it inside the sandbox.
Confine = Callable[[list[str], float], str]


class ClaimView(Protocol):
    """A run's file claim as the guard reads it (``mendbot.improve.agent.claims.Claim``); it may grow
    mid-run."""

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
