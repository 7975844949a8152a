"""ClaudeCodeAgent: the real bundled CLI through the model double, confined and budgeted."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from mendbot.improve.agent.code_agent import ClaudeCodeAgent
from mendbot.trust.sandbox import Sandbox
from tests.harness.model_double import ModelDouble, text, tool_use
from tests.harness.repo import copy_of_bot

pytestmark = pytest.mark.cli

PROTECTED = ("bot/trust/guard.py", ".ci/")


def _agent(tmp_path: Path, model: ModelDouble) -> ClaudeCodeAgent:
    return ClaudeCodeAgent(
        home=tmp_path / "home",
        model="claude-sonnet-5-5",
        protected_paths=PROTECTED,
        sandbox=Sandbox(),
        git_dir=tmp_path / "repo" / ".git",
    )


async def test_agent_edits_in_the_worktree_and_reports(tmp_path: Path) -> None:
    """A scripted Edit lands in the worktree; the result is success with the final text and turns."""
    repo = copy_of_bot(tmp_path / "repo")
    target = repo / "cogs" / "dice.py"
    async with ModelDouble() as model:
        model.script(
            tool_use(
                "Edit",
                {
                    "file_path": str(target),
                    "old_string": '"""/roll: dice notation like `2d6+1`."""',
                    "new_string": '"""/roll: dice notation like `2d6+1` (edited)."""',
                },
            ),
            text("Edited the docstring."),
        )
        result = await _agent(tmp_path, model).run(
            prompt="fix it",
            system_prompt="You fix bugs.",
            worktree=repo,
            read_only=False,
            security=False,
            max_turns=5,
            max_budget_usd=1.0,
            base_url=model.base_url,
            api_key="test-key",
        )
    assert result.outcome == "success", result.error
    assert result.text == "Edited the docstring."
    assert "(edited)" in target.read_text()
    assert result.tools_used == ["Edit"]
    assert result.denials == []


async def test_read_only_run_cannot_edit(tmp_path: Path) -> None:
    """In an investigate (read-only) run Edit is not even offered: the call fails, the file is unchanged."""
    repo = copy_of_bot(tmp_path / "repo")
    target = repo / "cogs" / "dice.py"
    before = target.read_text()
    async with ModelDouble() as model:
        model.script(
            tool_use("Edit", {"file_path": str(target), "old_string": "Dice", "new_string": "X"}),
            text("Could not edit."),
        )
        await _agent(tmp_path, model).run(
            prompt="look",
            system_prompt="Investigate.",
            worktree=repo,
            read_only=True,
            security=False,
            max_turns=5,
            max_budget_usd=1.0,
            base_url=model.base_url,
            api_key="test-key",
        )
        (refused,) = model.tool_results()
    assert target.read_text() == before
    assert refused.is_error


async def test_budget_cap_stops_the_run(tmp_path: Path) -> None:
    """A run whose spend passes max_budget_usd stops with outcome `budget`."""
    repo = copy_of_bot(tmp_path / "repo")
    async with ModelDouble() as model:
        model.script(
            *[
                tool_use(
                    "Read", {"file_path": str(repo / "README.md")}, input_tokens=400_000, output_tokens=20_000
                )
                for _ in range(4)
            ],
            text("done"),
        )
        result = await _agent(tmp_path, model).run(
            prompt="read a lot",
            system_prompt="x",
            worktree=repo,
            read_only=True,
            security=False,
            max_turns=10,
            max_budget_usd=0.01,
            base_url=model.base_url,
            api_key="test-key",
        )
    assert result.outcome == "budget", (result.outcome, result.error)
    assert result.cost_usd > 0.01


async def test_a_session_answers_each_prompt_in_the_conversation_until_one_fails(tmp_path: Path) -> None:
    """One CLI for several prompts: each answered with the conversation so far, with its own text, tools
    and cost; once an answer fails, or the session is interrupted, no later prompt reaches the model."""
    repo = copy_of_bot(tmp_path / "repo")
    async with ModelDouble() as model:
        model.script(
            tool_use("Read", {"file_path": str(repo / "README.md")}),
            text("FIRST ANSWER"),
            text("SECOND ANSWER"),
            *[tool_use("Read", {"file_path": str(repo / "README.md")})] * 3,  # past max_turns
        )
        agent = _agent(tmp_path, model)
        session_of_two_turns = functools.partial(
            agent.session,
            system_prompt="x",
            worktree=repo,
            read_only=True,
            security=False,
            max_turns=2,
            max_budget_usd=1.0,
            base_url=model.base_url,
            api_key="test-key",
        )
        async with session_of_two_turns() as session:
            first = await session.ask("ASKED FIRST")
            second = await session.ask("ASKED SECOND")
            failed = await session.ask("ASKED THIRD")
            sent = len(model.message_requests)
            after = await session.ask("ASKED FOURTH")
        async with session_of_two_turns() as session:
            await agent.interrupt()
            interrupted = await session.ask("ASKED AFTER AN INTERRUPT")
    assert (first.outcome, first.text, first.tools_used, first.turns) == (
        "success",
        "FIRST ANSWER",
        ["Read"],
        2,
    )
    assert (second.outcome, second.text, second.tools_used, second.turns) == (
        "success",
        "SECOND ANSWER",
        [],
        1,
    )
    assert first.cost_usd > 0 and 0 < second.cost_usd < first.cost_usd  # each its own, not the session's
    history = str(model.message_requests[2].json["messages"])
    assert "ASKED FIRST" in history and "FIRST ANSWER" in history and "ASKED SECOND" in history
    assert failed.outcome == "max_turns" and after.outcome == "error" and after.error == failed.error
    assert interrupted.outcome == "interrupted"
    assert len(model.message_requests) == sent == 5
