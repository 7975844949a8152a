"""ToolGuard's policy, decided in code: paths, secrets, protected files, Bash, other tools."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import PermissionResultAllow, PermissionResultDeny, ToolPermissionContext

from mendbot.kernel.sections import DEFAULT_PROTECTED_PATHS
from mendbot.trust import agent_env
from mendbot.trust.agent_env import agent_environment, write_launcher
from mendbot.trust.guard import Decision, GuardPolicy, ToolGuard
from mendbot.trust.path_rules import protected_entry

PROTECTED = ("bot/trust/guard.py", ".ci/", "prompts/agent/", "config.yaml")


def _as_written(argv: list[str], wall_s: float) -> str:
    """Stands in for the sandbox where only the guard's decision is under test: `wrapped <command>`."""
    return f"wrapped {wall_s:g} " + shlex.join(argv)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text("not yours\n")
    return path


@pytest.fixture
def worktree(tmp_path: Path, outside: Path) -> Path:
    root = tmp_path / "wt"
    files = {
        "cogs/dice.py": "def roll() -> int:\n    return 4\n",
        "src/app.py": "print('hi')\n",
        ".env": "DISCORD_TOKEN=fake-secret\n",
        ".env.example": "DISCORD_TOKEN=\n",
        "data/mendbot.db": "",
        ".git/config": "[core]\n",
        "bot/trust/guard.py": "# the guard\n",
        ".ci/check.sh": "ruff check .\n",
        "tests/test_x.py": "def test_x() -> None:\n    pass\n",
    }
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    (root / "links").mkdir()
    (root / "links" / "escape").symlink_to(outside / "secret.txt")
    (root / "links" / "escape_dir").symlink_to(outside)
    (root / "links" / "to_env").symlink_to(root / ".env")
    (root / "-escape").symlink_to(outside / "secret.txt")  # a file name that looks like an option
    return root


@pytest.fixture
def guard(worktree: Path) -> ToolGuard:
    return ToolGuard(GuardPolicy(worktree=worktree, protected_paths=PROTECTED), confine=_as_written)


def _bash(guard: ToolGuard, command: str) -> Decision:
    return guard.check("Bash", {"command": command, "description": "test"})


# ---------------------------------------------------------------------------- file tools


def test_write_outside_worktree_absolute_denied(guard: ToolGuard, outside: Path) -> None:
    """Write to an absolute path outside the worktree is refused, naming the path."""
    target = outside / "new.txt"
    decision = guard.check("Write", {"file_path": str(target), "content": "x"})
    assert not decision.allowed
    assert decision.reason == f"path {target} is outside the worktree"


def test_write_outside_worktree_dotdot_denied(guard: ToolGuard, worktree: Path) -> None:
    """Write through `..` is refused after resolving, absolute or relative."""
    for path in (f"{worktree}/cogs/../../escaped.txt", "../escaped.txt"):
        decision = guard.check("Write", {"file_path": path, "content": "x"})
        assert not decision.allowed, path
        assert "outside the worktree" in decision.reason


def test_write_through_symlink_pointing_out_denied(guard: ToolGuard, worktree: Path, outside: Path) -> None:
    """A symlink inside the worktree that points outside is resolved and refused."""
    for path in ("links/escape", f"{worktree}/links/escape_dir/new.txt"):
        decision = guard.check("Write", {"file_path": path, "content": "x"})
        assert not decision.allowed, path
        assert f"resolves to {outside}" in decision.reason
        assert "outside the worktree" in decision.reason


def test_read_through_symlink_pointing_out_denied(guard: ToolGuard) -> None:
    """Reading is held to the same resolved-path rule as writing."""
    decision = guard.check("Read", {"file_path": "links/escape"})
    assert not decision.allowed
    assert "outside the worktree" in decision.reason


def test_read_env_denied(guard: ToolGuard, worktree: Path) -> None:
    """.env inside the worktree is a secret and cannot be read."""
    decision = guard.check("Read", {"file_path": str(worktree / ".env")})
    assert not decision.allowed
    assert decision.reason.startswith(".env is an environment file")


def test_read_symlink_to_env_denied(guard: ToolGuard) -> None:
    """A symlink that resolves to a secret file is refused like the file itself."""
    decision = guard.check("Read", {"file_path": "links/to_env"})
    assert not decision.allowed
    assert ".env is an environment file" in decision.reason


def test_read_env_example_allowed(guard: ToolGuard) -> None:
    """.env.example is documentation, not a secret."""
    assert guard.check("Read", {"file_path": ".env.example"}).allowed


def test_read_data_db_denied(guard: ToolGuard, worktree: Path) -> None:
    """Anything under data/ (the bot's database) is unreadable."""
    decision = guard.check("Read", {"file_path": str(worktree / "data" / "mendbot.db")})
    assert not decision.allowed
    assert "data/mendbot.db is in data/" in decision.reason


def test_read_git_config_denied(guard: ToolGuard) -> None:
    """.git/config may hold credentials and is unreadable."""
    decision = guard.check("Read", {"file_path": ".git/config"})
    assert not decision.allowed
    assert ".git/config is git's config" in decision.reason


def test_read_proc_self_environ_denied(guard: ToolGuard) -> None:
    """/proc/self/environ (the process's secrets) is outside the worktree."""
    decision = guard.check("Read", {"file_path": "/proc/self/environ"})
    assert not decision.allowed
    assert decision.reason == "path /proc/self/environ is outside the worktree"


def test_home_relative_path_denied(guard: ToolGuard) -> None:
    """A `~` path is the agent's HOME, never the worktree."""
    decision = guard.check("Write", {"file_path": "~/.bashrc", "content": "x"})
    assert not decision.allowed
    assert "outside the worktree" in decision.reason


@pytest.mark.parametrize(
    "rel",
    [
        ".env.local",
        "cogs/.env.production",
        "certs/server.pem",
        "tls/site.key",
        "id_rsa",
        "id_ed25519.pub",
        ".netrc",
        "state.sqlite",
        "cogs/cache.db",
        "data/notes.txt",
    ],
)
def test_secret_file_patterns_denied(guard: ToolGuard, rel: str) -> None:
    """Every secret-file pattern is refused for reading and writing alike."""
    assert not guard.check("Read", {"file_path": rel}).allowed
    assert not guard.check("Write", {"file_path": rel, "content": "x"}).allowed


def test_write_inside_git_dir_denied(guard: ToolGuard) -> None:
    """Nothing under .git/ is written (hooks there would run on the host)."""
    decision = guard.check("Write", {"file_path": ".git/hooks/pre-commit", "content": "#!/bin/sh\n"})
    assert not decision.allowed
    assert ".git/hooks/pre-commit is inside .git/" in decision.reason


def test_edit_inside_worktree_allowed(guard: ToolGuard, worktree: Path) -> None:
    """An ordinary Edit of a worktree file is allowed."""
    decision = guard.check(
        "Edit", {"file_path": str(worktree / "cogs" / "dice.py"), "old_string": "4", "new_string": "5"}
    )
    assert decision.allowed
    assert decision.tool == "Edit"
    assert decision.target == str(worktree / "cogs" / "dice.py")


def test_edit_protected_file_denied(guard: ToolGuard, worktree: Path) -> None:
    """Editing a protected file needs the security flag, and the reason says so."""
    decision = guard.check(
        "Edit", {"file_path": str(worktree / "bot/trust/guard.py"), "old_string": "a", "new_string": "b"}
    )
    assert not decision.allowed
    assert decision.reason == "bot/trust/guard.py is protected (needs the security flag)"


def test_write_under_protected_directory_denied(guard: ToolGuard) -> None:
    """A protected directory prefix covers new files under it too."""
    for path in (".ci/check.sh", ".ci/new.yml", "prompts/agent/system.md", "config.yaml"):
        decision = guard.check("Write", {"file_path": path, "content": "x"})
        assert not decision.allowed, path
        assert "is protected (needs the security flag)" in decision.reason


def test_edit_protected_file_allowed_with_security_flag(worktree: Path) -> None:
    """With security=True protected paths become writable (secrets still are not)."""
    guard = ToolGuard(
        GuardPolicy(worktree=worktree, protected_paths=PROTECTED, security=True), confine=_as_written
    )
    assert guard.check(
        "Edit", {"file_path": "bot/trust/guard.py", "old_string": "a", "new_string": "b"}
    ).allowed
    assert guard.check("Write", {"file_path": ".ci/new.yml", "content": "x"}).allowed
    assert not guard.check("Write", {"file_path": ".env", "content": "x"}).allowed


def test_read_protected_file_allowed(guard: ToolGuard) -> None:
    """Protected files are read-only, not hidden."""
    assert guard.check("Read", {"file_path": "bot/trust/guard.py"}).allowed
    assert _bash(guard, "cat bot/trust/guard.py").allowed


def test_read_only_run_denies_every_write_tool(worktree: Path) -> None:
    """In a read_only run Edit, Write and NotebookEdit are refused but Read works."""
    guard = ToolGuard(GuardPolicy(worktree=worktree, read_only=True), confine=_as_written)
    edit = guard.check("Edit", {"file_path": "cogs/dice.py", "old_string": "4", "new_string": "5"})
    assert not edit.allowed
    assert edit.reason == "Edit is not allowed in a read-only run"
    assert not guard.check("Write", {"file_path": "cogs/new.py", "content": ""}).allowed
    assert not guard.check("NotebookEdit", {"notebook_path": "n.ipynb", "new_source": ""}).allowed
    assert guard.check("Read", {"file_path": "cogs/dice.py"}).allowed


def test_glob_pattern_escaping_worktree_denied(guard: ToolGuard) -> None:
    """Glob may not climb out with `..` or an absolute pattern; its default path is the worktree."""
    assert guard.check("Glob", {"pattern": "**/*.py"}).allowed
    assert not guard.check("Glob", {"pattern": "../**/*"}).allowed
    assert not guard.check("Glob", {"pattern": "/etc/*"}).allowed
    assert not guard.check("Glob", {"pattern": "*", "path": "/etc"}).allowed


def test_grep_over_directory_with_secrets_denied(guard: ToolGuard) -> None:
    """Grep over a tree that holds a secret or an escaping symlink is refused; a clean tree is not."""
    whole = guard.check("Grep", {"pattern": "TOKEN"})
    assert not whole.allowed
    assert "would read a secret" in whole.reason
    assert not guard.check("Grep", {"pattern": "x", "path": "links"}).allowed
    assert guard.check("Grep", {"pattern": "roll", "path": "cogs"}).allowed
    assert guard.check("Grep", {"pattern": "roll", "path": "cogs/dice.py"}).allowed


def test_worktree_given_through_symlink_is_resolved(tmp_path: Path, worktree: Path) -> None:
    """A policy built from a symlinked worktree path still allows the real paths inside it."""
    alias = tmp_path / "alias"
    alias.symlink_to(worktree)
    guard = ToolGuard(GuardPolicy(worktree=alias), confine=_as_written)
    assert guard.policy.worktree == worktree.resolve()
    assert guard.check("Read", {"file_path": str(worktree / "cogs" / "dice.py")}).allowed
    assert guard.check("Read", {"file_path": str(alias / "cogs" / "dice.py")}).allowed


# ---------------------------------------------------------------------------- Bash


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("git push origin main", "`git push` is never allowed"),
        ("git  push", "`git push` is never allowed"),
        ("/usr/bin/git --no-pager -C . push", "`git push` is never allowed"),
        ("git remote add x http://x", "`git remote` is never allowed"),
        ("git fetch", "`git fetch` is never allowed"),
        ("curl http://x", "`curl` is never allowed"),
        ("wget http://x", "`wget` is never allowed"),
        ("pip install x", "`pip` is never allowed"),
        ("pip3 install x", "`pip` is never allowed"),
        ("python -m pip install x", "`python -m pip` is never allowed"),
        ("python3 -I -mpip install x", "`python -m pip` is never allowed"),
        ("sudo ls", "`sudo` is never allowed"),
        ("ls; curl x", "`;` (command chaining)"),
        ("ls && curl x", "`&&` (command chaining)"),
        ("ls || curl x", "`||` (command chaining)"),
        ("ls | head", "`|` (a pipe)"),
        ("echo $(curl x)", "`$(` (command substitution)"),
        ('cat "$(curl x)"', "`$(` (command substitution)"),
        ("cat `id`", "backtick"),
        ("cat $HOME/.netrc", "`$` (variable expansion)"),
        ("cat x > y", "`>` (redirection)"),
        ("cat x >> y", "`>>` (redirection)"),
        ("cat < /etc/passwd", "`<` (redirection)"),
        ("ls &", "`&` (background or chaining)"),
        ("ls\ncurl x", "a newline"),
        ("cat .e*", "unquoted glob"),
        ("cat ~/.ssh/id_rsa", "home directory expansion"),
        ("cat 'unterminated", "unterminated quote"),
        ("find . -exec rm {} \\;", "unquoted glob or brace"),
        ("find . -exec rm '{}' ';'", "`find -exec` is not allowed"),
        ("find . -delete", "`find -delete` is not allowed"),
        ("find . -fprint out.txt", "`find -fprint` is not allowed"),
        ("cat ../../etc/passwd", "path ../../etc/passwd is outside the worktree"),
        ("cat /etc/passwd", "path /etc/passwd is outside the worktree"),
        ("cat /proc/self/environ", "path /proc/self/environ is outside the worktree"),
        ("cat links/escape", "resolves to"),
        ("cat .env", ".env is an environment file"),
        ("head -n 5 data/mendbot.db", "data/mendbot.db is in data/"),
        ("tail cogs/../.git/config", ".git/config is git's config"),
        ("grep -r TOKEN .", "recursive search would read a secret"),
        ("git show HEAD:.env", ".env is an environment file"),
        ("git diff --output=/tmp/x", "`git diff --output` is not allowed"),
        ("git pushx", "`git pushx` is not on the Bash allow-list"),
        ("lsx", "`lsx` is not on the Bash allow-list"),
        ("pytestx", "`pytestx` is not on the Bash allow-list"),
        ("echo hi", "`echo hi` is not on the Bash allow-list"),
        ("bash -c ls", "`bash -c` is not on the Bash allow-list"),
        ("GIT_DIR=/x git diff", "is not on the Bash allow-list"),
        ("env curl x", "`curl` is never allowed"),
        ("env FOO=1 ls", "`env` takes no arguments here"),
        ("cat -- -escape", "path -escape resolves to"),
        ("mypy --install-types", "`mypy --install-types` is not allowed"),
        ("pytest --basetemp=bot", "`pytest --basetemp` is not allowed"),
        ("ruff format .", "would rewrite protected bot/trust/guard.py (needs the security flag)"),
        ("ruff check --fix .ci", "would rewrite protected .ci/"),
    ],
)
def test_bash_command_denied(guard: ToolGuard, command: str, reason: str) -> None:
    """Each refused Bash shape is refused with a reason naming what was wrong."""
    decision = _bash(guard, command)
    assert not decision.allowed, command
    assert reason in decision.reason
    assert decision.target == command


@pytest.mark.parametrize(
    "command",
    [
        "git diff",
        "git diff HEAD~1 -- cogs/dice.py",
        "git status --short",
        "git log --oneline -5",
        "git show HEAD:cogs/dice.py",
        "git blame cogs/dice.py",
        "pytest -q tests/test_x.py",
        "python -m pytest -x -q tests",
        "ruff check .",
        "python -m ruff check cogs",
        "ruff format cogs/dice.py",
        "ruff format --check .",
        "mypy cogs",
        "python -m mypy cogs",
        "env",
        "printenv HOME",
        "cat cogs/dice.py",
        "head -n 3 cogs/dice.py",
        "wc -l cogs/dice.py",
        "ls -la cogs",
        "grep -n 'return 4$' cogs/dice.py",
        "find cogs -name '*.py'",
        "cat 'odd;name'",
    ],
)
def test_bash_command_allowed(guard: ToolGuard, command: str) -> None:
    """The checks, git reads and read-only utilities on worktree files are allowed."""
    decision = _bash(guard, command)
    assert decision.allowed, decision.reason


def test_never_allowed_beats_bash_allow(worktree: Path) -> None:
    """Push, network and install commands stay refused even if someone allow-lists them."""
    policy = GuardPolicy(worktree=worktree, bash_allow=("git", "curl", "python", "pip install"))
    guard = ToolGuard(policy, confine=_as_written)
    assert _bash(guard, "git push origin main").reason == "`git push` is never allowed"
    assert _bash(guard, "git -c x=y push").reason == "`git push` is never allowed"
    assert _bash(guard, "git config user.name x").reason == "`git config` is never allowed"
    assert _bash(guard, "curl http://127.0.0.1:9/").reason == "`curl` is never allowed"
    assert _bash(guard, "python -m pip install x").reason == "`python -m pip` is never allowed"
    assert _bash(guard, "pip install x").reason == "`pip` is never allowed"
    assert _bash(guard, "git status").allowed


def test_allow_listed_wrapper_runs_only_allowed_commands(worktree: Path) -> None:
    """A wrapper someone allow-lists (timeout, nice) cannot smuggle a refused command."""
    guard = ToolGuard(
        GuardPolicy(worktree=worktree, bash_allow=("timeout", "nice", "ls")), confine=_as_written
    )
    assert _bash(guard, "timeout 5 git push").reason == "`git push` is never allowed"
    assert _bash(guard, "nice -n 5 pip install x").reason == "`pip` is never allowed"
    denied = _bash(guard, "timeout 5 bash -c ls")
    assert denied.reason == "`bash -c` (run through `timeout`) is not on the Bash allow-list"
    assert _bash(guard, "timeout 5 ls cogs").allowed


def test_read_only_run_allows_only_read_commands(worktree: Path) -> None:
    """In a read_only run the checks and formatters are refused; git reads and cat are not."""
    guard = ToolGuard(GuardPolicy(worktree=worktree, read_only=True), confine=_as_written)
    assert _bash(guard, "pytest -q").reason == "`pytest` is not allowed in a read-only run"
    assert not _bash(guard, "ruff format cogs/dice.py").allowed
    assert not _bash(guard, "ruff check .").allowed
    assert _bash(guard, "git diff").allowed
    assert _bash(guard, "cat cogs/dice.py").allowed
    assert _bash(guard, "env").allowed


def test_ruff_format_of_protected_allowed_with_security_flag(worktree: Path) -> None:
    """With the security flag a formatter may rewrite protected files."""
    guard = ToolGuard(
        GuardPolicy(worktree=worktree, protected_paths=PROTECTED, security=True), confine=_as_written
    )
    assert _bash(guard, "ruff format bot/trust/guard.py").allowed


def test_bash_background_and_sandbox_escape_denied(guard: ToolGuard) -> None:
    """Background commands and requests to disable the sandbox are refused."""
    background = guard.check("Bash", {"command": "pytest -q", "run_in_background": True})
    assert background.reason == "Bash commands may not run in the background"
    unsandboxed = guard.check("Bash", {"command": "ls", "dangerouslyDisableSandbox": True})
    assert unsandboxed.reason == "Bash commands may not disable the sandbox"


# ---------------------------------------------------------------------------- other tools and trail


def test_unknown_tool_denied(guard: ToolGuard) -> None:
    """Web and sub-agent tools are refused unless the policy lists them in extra_tools."""
    for tool in ("WebFetch", "WebSearch", "Agent", "Task", "mcp__x__y"):
        decision = guard.check(tool, {"url": "http://x"})
        assert not decision.allowed
        assert decision.reason == f"tool {tool} is not allowed in this run"
    assert guard.check("TodoWrite", {"todos": []}).allowed


def test_extra_tools_allow_listed(worktree: Path) -> None:
    """A tool named in extra_tools is allowed."""
    guard = ToolGuard(GuardPolicy(worktree=worktree, extra_tools=("WebFetch",)), confine=_as_written)
    assert guard.check("WebFetch", {"url": "http://x"}).allowed


def test_decisions_recorded_in_order(guard: ToolGuard) -> None:
    """Every check, allowed or denied, lands in decisions and on_decision, in order."""
    seen: list[Decision] = []
    guard = ToolGuard(guard.policy, on_decision=seen.append, confine=_as_written)
    guard.check("Read", {"file_path": "cogs/dice.py"})
    guard.check("Bash", {"command": "git push"})
    guard.check("WebFetch", {"url": "http://x"})
    assert [(d.tool, d.allowed) for d in guard.decisions] == [
        ("Read", True),
        ("Bash", False),
        ("WebFetch", False),
    ]
    assert seen == guard.decisions


def test_evaluate_does_not_record(guard: ToolGuard) -> None:
    """evaluate() decides without touching the audit trail."""
    assert not guard.evaluate("Bash", {"command": "git push"}).allowed
    assert guard.decisions == []


async def test_hook_denies_with_reason(guard: ToolGuard) -> None:
    """The PreToolUse hook answers deny with the guard's reason, and {} for allowed calls."""
    data: Any = {
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": "git push origin main"},
        "tool_use_id": "toolu_1",
    }
    denied = await guard.pre_tool_use_hook(data, "toolu_1", {"signal": None})
    assert denied == {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": "`git push` is never allowed",
        }
    }
    data = dict(data, tool_name="Read", tool_input={"file_path": "cogs/dice.py"}, tool_use_id="toolu_2")
    assert await guard.pre_tool_use_hook(data, "toolu_2", {"signal": None}) == {}
    assert [d.tool_use_id for d in guard.decisions] == ["toolu_1", "toolu_2"]


async def test_can_use_tool_follows_policy_without_duplicate_records(guard: ToolGuard) -> None:
    """can_use_tool answers Allow/Deny; a call the hook already decided is not recorded twice."""
    data: Any = {
        "hook_event_name": "PreToolUse",
        "tool_name": "Edit",
        "tool_input": {"file_path": "cogs/dice.py", "old_string": "4", "new_string": "5"},
    }
    await guard.pre_tool_use_hook(data, "toolu_1", {"signal": None})
    allowed = await guard.can_use_tool(
        "Edit", data["tool_input"], ToolPermissionContext(tool_use_id="toolu_1")
    )
    assert isinstance(allowed, PermissionResultAllow)
    assert len(guard.decisions) == 1
    denied = await guard.can_use_tool(
        "Write", {"file_path": "/etc/x", "content": ""}, ToolPermissionContext(tool_use_id="toolu_2")
    )
    assert isinstance(denied, PermissionResultDeny)
    assert denied.message == "path /etc/x is outside the worktree"
    assert len(guard.decisions) == 2


async def test_hook_rewrites_an_allowed_bash_command_into_the_sandbox(guard: ToolGuard) -> None:
    """An allowed Bash call is answered allow with the confined command and only safe input fields."""
    data: Any = {
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {
            "command": "python -m pytest -q tests",
            "timeout": 30_000,
            "description": "run tests",
            "run_in_background": False,
        },
        "tool_use_id": "toolu_1",
    }
    answer: Any = await guard.pre_tool_use_hook(data, "toolu_1", {"signal": None})
    output = answer["hookSpecificOutput"]
    assert output["permissionDecision"] == "allow"
    assert output["updatedInput"] == {
        "command": "wrapped 30 python -m pytest -q tests",
        "timeout": 35_000,
        "description": "run tests",
    }
    context = ToolPermissionContext(tool_use_id="toolu_2")
    allowed = await guard.can_use_tool("Bash", {"command": "ls", "timeout": 10**9}, context)
    assert isinstance(allowed, PermissionResultAllow)
    assert allowed.updated_input == {"command": "wrapped 600 ls", "timeout": 605_000}


def test_bash_without_a_sandbox_is_refused(worktree: Path) -> None:
    """With no sandbox to run in, even an allow-listed command is refused, saying why."""
    guard = ToolGuard(GuardPolicy(worktree=worktree), unconfined_reason="bwrap is missing")
    decision = _bash(guard, "ls cogs")
    assert not decision.allowed
    assert decision.reason == "Bash runs only inside the OS sandbox, and bwrap is missing"
    assert _bash(guard, "git push").reason == "`git push` is never allowed"


def test_hooks_block_when_the_guard_fails(guard: ToolGuard) -> None:
    """hooks() registers one PreToolUse matcher for every tool that blocks if the callback fails."""
    hooks = guard.hooks()
    (matcher,) = hooks["PreToolUse"]
    assert matcher.matcher is None
    assert matcher.hooks == [guard.pre_tool_use_hook]
    assert matcher.on_failure == "block"


# ---------------------------------------------------------------------------- agent environment


def test_agent_environment_is_allow_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's environment holds only the listed names, never the bot's tokens."""
    monkeypatch.setenv("DISCORD_TOKEN", "sekrit-discord")
    monkeypatch.setenv("GITHUB_TOKEN", "sekrit-gh")
    env = agent_environment(tmp_path, base_url="http://127.0.0.1:1", api_key="k")
    assert "DISCORD_TOKEN" not in env
    assert "GITHUB_TOKEN" not in env
    assert env["HOME"] == str(tmp_path)
    assert env["CLAUDE_CONFIG_DIR"] == str(tmp_path / ".claude")
    assert env["TMPDIR"] == str(tmp_path / "tmp")
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:1"
    assert env["PATH"].split(":")[0] == str(Path(sys.prefix) / "bin")
    assert "/usr/bin" in env["PATH"].split(":")
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert not set(env) - {*agent_environment(tmp_path, base_url="u", api_key="k")}
    assert "ANTHROPIC_API_KEY" not in agent_environment(tmp_path, base_url=None, api_key=None)


def test_agent_environment_refuses_bot_secrets_in_extra(tmp_path: Path) -> None:
    """Passing a bot secret through extra is a programming error, raised at once."""
    with pytest.raises(ValueError, match="DISCORD_TOKEN"):
        agent_environment(tmp_path, base_url=None, api_key=None, extra={"DISCORD_TOKEN": "x"})


def test_launcher_keeps_only_allowed_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The launcher execs its target under `env -i` with only allowed and SDK variables."""
    monkeypatch.setattr(agent_env, "BUNDLED_CLI", Path("/usr/bin/env"))  # prints what it got
    launcher = write_launcher(tmp_path, ["KEEP_ME"])
    parent = dict(os.environ, KEEP_ME="yes", DISCORD_TOKEN="sekrit", CLAUDE_CODE_ENTRYPOINT="sdk-py")
    out = subprocess.run([str(launcher)], env=parent, capture_output=True, text=True, check=True).stdout
    seen = sorted(line for line in out.splitlines() if not line.startswith("PWD="))  # sh sets PWD
    assert seen == ["CLAUDE_CODE_ENTRYPOINT=sdk-py", "KEEP_ME=yes"]
    assert launcher == tmp_path / "bin" / "claude"
    with pytest.raises(ValueError, match="not valid"):
        write_launcher(tmp_path, ["BAD NAME"])


@pytest.mark.parametrize(
    "path",
    [
        "bot/observe/recorder.py",
        "bot/observe/capture.py",
        "bot/observe/detector.py",
        "bot/observe/incidents.py",
        "bot/kernel/errors.py",
        "bot/trust/loopback_discord.py",
        "bot/trust/replay_launch.py",
        "bot/trust/proof_runner.py",
    ],
)
def test_what_the_watch_and_the_proof_see_is_protected(path: str) -> None:
    """A change to observation, the bot's apology or the replay's observer could blind the watch or
    forge a proof: by default it needs a security run and the security form."""
    assert protected_entry(path, DEFAULT_PROTECTED_PATHS) is not None


@pytest.mark.parametrize("path", ["bot/kernel/settings.py", "bot/kernel/sections.py"])
def test_the_settings_and_their_defaults_are_protected(path: str) -> None:
    """How settings load and what every section allows by default (this list, the sandbox's limits, the
    approvals a merge needs) decide what is confined and what merges: both modules are protected."""
    assert protected_entry(path, DEFAULT_PROTECTED_PATHS) is not None
