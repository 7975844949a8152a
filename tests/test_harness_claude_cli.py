"""The real bundled Claude Code CLI, driven through claude_agent_sdk, against the model double."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import AssistantMessage, ClaudeSDKClient, ResultMessage, TextBlock

from tests.harness.claude_cli import agent_options, cli_env
from tests.harness.model_double import ModelDouble, text, tool_use

pytestmark = pytest.mark.cli

RUN_TIMEOUT = 120.0
ALLOWED_PATHS = {"/v1/messages", "/v1/messages/count_tokens", "/api/hello"}
BUG_LINE = "return total - 1  # bug"
# Set by the CLI or its shell itself, so equal values there prove nothing about leaking.
SHELL_SET_VARIABLES = {"PWD", "OLDPWD", "SHELL", "SHLVL", "_"}


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

    @property
    def texts(self) -> list[str]:
        return [
            b.text
            for m in self.messages
            if isinstance(m, AssistantMessage)
            for b in m.content
            if isinstance(b, TextBlock)
        ]


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
    (root / "cogs" / "dice.py").write_text(f"def roll_total(total: int) -> int:\n    {BUG_LINE}\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "init")
    return root


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
async def model() -> AsyncIterator[ModelDouble]:
    async with ModelDouble() as double:
        yield double


async def _run(prompt: str, repo: Path, home: Path, model: ModelDouble, **overrides: Any) -> Run:
    run = Run()
    options = agent_options(repo, home, model, stderr=run.stderr.append, **overrides)
    started = time.monotonic()

    async def drive() -> None:
        async with ClaudeSDKClient(options) as client:
            await client.query(prompt)
            async for message in client.receive_response():
                run.messages.append(message)

    await asyncio.wait_for(drive(), RUN_TIMEOUT)
    run.seconds = time.monotonic() - started
    return run


async def test_cli_applies_scripted_edit(repo: Path, home: Path, model: ModelDouble) -> None:
    """A scripted Edit tool_use changes the file on disk and the CLI reports it back to the model."""
    target = repo / "cogs" / "dice.py"
    edit = tool_use("Edit", {"file_path": str(target), "old_string": BUG_LINE, "new_string": "return total"})
    model.script(edit, text("Fixed the off-by-one."))

    run = await _run("Fix the off-by-one in cogs/dice.py", repo, home, model)
    print(f"edit run took {run.seconds:.2f}s")

    assert "return total\n" in target.read_text()
    assert "# bug" not in target.read_text()
    result = model.tool_result(edit.tool_use_id)
    assert result.is_error is False
    assert "updated" in result.content
    assert run.result.subtype == "success"
    assert run.result.is_error is False
    assert run.result.result == "Fixed the off-by-one."
    assert run.texts[-1] == "Fixed the off-by-one."
    assert model.exhausted == 0 and model.remaining == 0
    assert set(model.paths) <= ALLOWED_PATHS, model.paths
    assert not model.unknown
    assert all(r.json.get("stream") is True for r in model.message_requests)


async def test_cli_environment_is_allow_listed(
    repo: Path, home: Path, model: ModelDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bash inside the CLI sees the private HOME and no variable of ours outside cli_env."""
    monkeypatch.setenv("DISCORD_TOKEN", "sekrit-test")
    monkeypatch.setenv("MENDBOT_TEST_LEAK_PROBE", "leak-probe-value")
    env_call = tool_use("Bash", {"command": "env", "description": "Print the environment"})
    model.script(env_call, text("That is the environment."))

    run = await _run("Show me the environment", repo, home, model, allowed_tools=["Read", "Bash"])
    print(f"env run took {run.seconds:.2f}s")

    result = model.tool_result(env_call.tool_use_id)
    assert result.is_error is False
    seen = dict(line.split("=", 1) for line in result.content.splitlines() if "=" in line)
    assert seen["HOME"] == str(home)
    assert seen["ANTHROPIC_BASE_URL"] == model.base_url
    assert "sekrit-test" not in result.content
    assert "leak-probe-value" not in result.content
    allowed = cli_env(home, model)
    leaked = {k for k in os.environ if k not in allowed and k in seen and seen[k] == os.environ[k]}
    assert not leaked - SHELL_SET_VARIABLES, f"variables leaked from the test process: {sorted(leaked)}"
    assert run.result.subtype == "success"
    assert set(model.paths) <= ALLOWED_PATHS, model.paths
