"""ToolGuard plugged into the real bundled Claude Code CLI (via claude_agent_sdk) and the model double.

Runs as root, where ``bypassPermissions`` is refused: the guard's PreToolUse hook must be the
enforcement, with ``can_use_tool`` as the second gate for calls the CLI's rules ask about.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient, ResultMessage, ToolPermissionContext

from mendbot.trust.agent_env import agent_environment, prepare_home, write_launcher
from mendbot.trust.guard import Confine, Decision, GuardPolicy, ToolGuard
from mendbot.trust.sandbox import Sandbox
from tests.harness.model_double import ModelDouble, Turn, text, tool_use

pytestmark = pytest.mark.cli

RUN_TIMEOUT = 120.0
TOOLS = ["Read", "Edit", "Write", "Glob", "Grep", "Bash"]
PROTECTED = (".ci/", "bot/trust/guard.py")
FAKE_SECRET = "fake-secret-in-dotenv"
BUG_LINE = "return total - 1  # bug"
CI_SCRIPT = "ruff check .\n"


@dataclass
class Run:
    """What one CLI run produced."""

    messages: list[Any] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def result(self) -> ResultMessage:
        results = [m for m in self.messages if isinstance(m, ResultMessage)]
        assert results, f"no ResultMessage; stderr: {self.stderr[-20:]}"
        return results[-1]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=test", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "cogs").mkdir(parents=True)
    (root / ".ci").mkdir()
    (root / "cogs" / "dice.py").write_text(f"def roll_total(total: int) -> int:\n    {BUG_LINE}\n")
    (root / ".ci" / "check.sh").write_text(CI_SCRIPT)
    (root / ".gitignore").write_text(".env\ncogs/environ\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "init")
    (root / ".env").write_text(f"DISCORD_TOKEN={FAKE_SECRET}\n")
    (root / "cogs" / "environ").symlink_to("/proc/self/environ")
    return root


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    prepare_home(path)
    return path


@pytest.fixture
async def model() -> AsyncIterator[ModelDouble]:
    async with ModelDouble() as double:
        yield double


@pytest.fixture
async def confine(repo: Path) -> AsyncIterator[Confine]:
    """Bash commands wrapped into a real sandbox around the repository, as ClaudeCodeAgent does."""
    async with Sandbox().jail(repo, git_dir=repo / ".git") as jail:
        env = jail.environment()
        yield lambda argv, wall_s: jail.shell_command(argv, env, wall_s=wall_s)


def _options(
    guard: ToolGuard, repo: Path, home: Path, model: ModelDouble, run: Run, **overrides: Any
) -> ClaudeAgentOptions:
    env = agent_environment(home, base_url=model.base_url, api_key="test-key")
    fields: dict[str, Any] = {
        "cwd": repo,
        "cli_path": write_launcher(home, env),
        "env": env,
        "setting_sources": [],
        "tools": list(TOOLS),
        "allowed_tools": [],
        "permission_mode": "default",
        "hooks": guard.hooks(),
        "can_use_tool": guard.can_use_tool,
        "max_turns": 16,
        "stderr": run.stderr.append,
    }
    fields.update(overrides)
    return ClaudeAgentOptions(**fields)


async def _run(prompt: str, options: ClaudeAgentOptions, run: Run) -> Run:
    started = time.monotonic()

    async def drive() -> None:
        async with ClaudeSDKClient(options) as client:
            await client.query(prompt)
            async for message in client.receive_response():
                run.messages.append(message)

    await asyncio.wait_for(drive(), RUN_TIMEOUT)
    run.seconds = time.monotonic() - started
    return run


def _decision(guard: ToolGuard, call: Turn) -> Decision:
    (decision,) = [d for d in guard.decisions if d.tool_use_id == call.tool_use_id]
    return decision


@dataclass(frozen=True)
class Gates:
    """A permission setup: the CLI's mode, what it pre-approves, and whether can_use_tool is wired."""

    mode: str
    allowed_tools: tuple[str, ...]
    second_gate: bool


@pytest.mark.parametrize(
    "gates",
    [Gates("default", (), True), Gates("dontAsk", tuple(TOOLS), False)],
    ids=["default+can_use_tool", "dontAsk+allowed_tools"],
)
async def test_guard_blocks_escapes_and_allows_the_fix(
    repo: Path, home: Path, model: ModelDouble, gates: Gates, confine: Confine
) -> None:
    """Each escape attempt is denied with the guard's reason, in either mode; the real fix goes through."""
    outside = repo.parent / "outside.txt"
    guard = ToolGuard(GuardPolicy(worktree=repo, protected_paths=PROTECTED), confine=confine)
    attempts = [
        tool_use("Write", {"file_path": str(outside), "content": "escaped"}),
        tool_use("Read", {"file_path": str(repo / ".env")}),
        tool_use("Read", {"file_path": str(repo / "cogs" / "environ")}),  # symlink to /proc/self/environ
        tool_use("Bash", {"command": "cat /proc/self/environ", "description": "Show environment"}),
        tool_use("Bash", {"command": "git push origin main", "description": "Push"}),
        tool_use("Bash", {"command": "curl http://127.0.0.1:9/", "description": "Fetch"}),
        tool_use("Bash", {"command": "cat .env", "description": "Show env file"}),
        tool_use(
            "Edit", {"file_path": str(repo / ".ci" / "check.sh"), "old_string": "ruff", "new_string": "true"}
        ),
    ]
    fix = tool_use(
        "Edit",
        {"file_path": str(repo / "cogs" / "dice.py"), "old_string": BUG_LINE, "new_string": "return total"},
    )
    status = tool_use("Bash", {"command": "git status --short", "description": "Show status"})
    # The CLI itself refuses /proc paths in Read before any hook runs; still pinned here.
    proc_read = tool_use("Read", {"file_path": "/proc/self/environ"})
    model.script(*attempts, proc_read, fix, status, text("Fixed, within the rules."))

    asked: list[str] = []

    async def can_use_tool(name: str, tool_input: dict[str, Any], context: ToolPermissionContext) -> Any:
        asked.append(name)
        return await guard.can_use_tool(name, tool_input, context)

    run = Run()
    options = _options(
        guard,
        repo,
        home,
        model,
        run,
        permission_mode=gates.mode,
        allowed_tools=list(gates.allowed_tools),
        can_use_tool=can_use_tool if gates.second_gate else None,
    )
    await _run("Fix the off-by-one in cogs/dice.py", options, run)
    print(f"{gates.mode} run took {run.seconds:.2f}s")

    assert not outside.exists()
    assert (repo / ".ci" / "check.sh").read_text() == CI_SCRIPT
    for call in attempts:
        decision = _decision(guard, call)
        result = model.tool_result(call.tool_use_id)
        assert not decision.allowed, decision
        assert result.is_error is True, result
        assert decision.reason in result.content
        assert FAKE_SECRET not in result.content
    reasons = [_decision(guard, call).reason for call in attempts]
    assert reasons[0] == f"path {outside} is outside the worktree"
    assert reasons[1].startswith(".env is an environment file")
    assert "resolves to /proc/" in reasons[2]
    assert reasons[3] == "path /proc/self/environ is outside the worktree"
    assert reasons[4] == "`git push` is never allowed"
    assert reasons[5] == "`curl` is never allowed"
    assert reasons[6].startswith(".env is an environment file")
    assert reasons[7] == ".ci/check.sh is protected (needs the security flag)"
    assert model.tool_result(proc_read.tool_use_id).is_error is True

    assert "return total\n" in (repo / "cogs" / "dice.py").read_text()
    assert model.tool_result(fix.tool_use_id).is_error is False
    assert _decision(guard, fix).allowed
    assert model.tool_result(status.tool_use_id).content.strip() == "M cogs/dice.py"
    assert [d.allowed for d in guard.decisions if d.tool_use_id != proc_read.tool_use_id] == [False] * len(
        attempts
    ) + [True, True]
    # default mode asks can_use_tool about the Edit the hook allowed (the second gate);
    # dontAsk pre-approves everything in allowed_tools and leaves the hook as the only gate.
    assert ("Edit" in asked) is gates.second_gate
    assert run.result.subtype == "success"
    assert model.exhausted == 0 and model.remaining == 0


async def test_bash_env_shows_no_bot_secrets(
    repo: Path, home: Path, model: ModelDouble, monkeypatch: pytest.MonkeyPatch, confine: Confine
) -> None:
    """`env` run by the agent sees the sandbox's private HOME and no token or model key at all."""
    monkeypatch.setenv("DISCORD_TOKEN", "sekrit-discord")
    monkeypatch.setenv("GITHUB_TOKEN", "sekrit-gh")
    guard = ToolGuard(GuardPolicy(worktree=repo, protected_paths=PROTECTED), confine=confine)
    env_call = tool_use("Bash", {"command": "env", "description": "Print the environment"})
    model.script(env_call, text("That is the environment."))

    run = Run()
    await _run("Show me the environment", _options(guard, repo, home, model, run), run)
    print(f"env run took {run.seconds:.2f}s")

    result = model.tool_result(env_call.tool_use_id)
    assert result.is_error is False
    assert "HOME=/tmp\n" in result.content + "\n"
    assert "ANTHROPIC" not in result.content and "test-key" not in result.content
    assert "sekrit-discord" not in result.content
    assert "sekrit-gh" not in result.content
    assert "DISCORD_TOKEN" not in result.content
    assert "GITHUB_TOKEN" not in result.content
    assert _decision(guard, env_call).allowed


async def test_failing_guard_blocks_the_call(repo: Path, home: Path, model: ModelDouble) -> None:
    """If the guard raises (here: its audit callback), the CLI blocks the call instead of running it."""

    def broken_audit(decision: Decision) -> None:
        raise RuntimeError("audit log unavailable")

    guard = ToolGuard(GuardPolicy(worktree=repo), on_decision=broken_audit)
    fix = tool_use(
        "Edit",
        {"file_path": str(repo / "cogs" / "dice.py"), "old_string": BUG_LINE, "new_string": "return total"},
    )
    model.script(fix, text("Could not edit."))

    run = Run()
    await _run("Fix it", _options(guard, repo, home, model, run), run)

    assert BUG_LINE in (repo / "cogs" / "dice.py").read_text()
    assert model.tool_result(fix.tool_use_id).is_error is True


async def test_read_only_run_cannot_edit(repo: Path, home: Path, model: ModelDouble) -> None:
    """In a read_only (investigate) run the CLI reads but every Edit is denied."""
    guard = ToolGuard(GuardPolicy(worktree=repo, read_only=True))
    read = tool_use("Read", {"file_path": str(repo / "cogs" / "dice.py")})
    edit = tool_use(
        "Edit",
        {"file_path": str(repo / "cogs" / "dice.py"), "old_string": BUG_LINE, "new_string": "return total"},
    )
    model.script(read, edit, text("Found it."))

    run = Run()
    await _run("Investigate", _options(guard, repo, home, model, run), run)

    assert BUG_LINE in model.tool_result(read.tool_use_id).content
    result = model.tool_result(edit.tool_use_id)
    assert result.is_error is True
    assert "Edit is not allowed in a read-only run" in result.content
    assert BUG_LINE in (repo / "cogs" / "dice.py").read_text()
