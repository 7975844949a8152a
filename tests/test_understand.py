"""Complaints are understood, not phrasings: a developer's message the word grammar cannot place is
decided by the chat model's structured tool call; with no model — no key, or the model unreachable —
the bot asks one short question and understands the reply. The real bot on the virtual Discord."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import discord

from mendbot.chat.route import ROUTE_TOOL
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_settings, reply_text, running_world
from tests.harness.model_double import ModelDouble, text, tool_use
from tests.harness.sql import stored

QUIZ = "the quiz congratulated me on 0% when I got 7 out of 10"


async def _say(world: VirtualWorld, user: str, words: str, **kwargs: Any) -> list[discord.Message]:
    """`user` says `words` to the bot in #dev; the bot's messages that follow."""
    me = world.bot.user
    assert me is not None
    before = {m.id for m in bot_messages(world, world.dev)}
    await world.users[user].send(world.dev, f"{me.mention} {words}", **kwargs)
    await world.quiesce()
    return [m for m in bot_messages(world, world.dev) if m.id not in before]


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_the_models_tool_call_decides_a_complaint_in_everyday_words(tmp_path: Path) -> None:
    """'the quiz says I got 0% when I got 7 out of 10' matches no word pattern: the model is asked with
    one forced tool, given the commands and open incidents, and its `fix` call makes it a fix request —
    never a chat answer."""
    async with ModelDouble() as model:
        model.script(tool_use(ROUTE_TOOL, {"action": "fix", "command": "/quiz"}))
        settings = make_settings(
            tmp_path / "data", anthropic_api_key="test-key", anthropic_base_url=model.base_url
        )
        async with running_world(settings, extra_extensions=["tests.fixtures.quiz_cog"]) as world:
            [answer] = await _say(world, "alice", QUIZ)
        [request] = model.message_requests
    body = request.json
    assert body["tool_choice"] == {"type": "tool", "name": ROUTE_TOOL}
    [tool] = body["tools"]
    assert "/quiz" in tool["input_schema"]["properties"]["command"]["enum"]
    assert QUIZ in json.dumps(body["messages"])
    # Understood as a fix request: the run is refused only because this world has no git repository.
    assert "is not a git repository" in answer.content
    [decided] = stored(settings, "SELECT extra FROM actions WHERE kind = 'chat:route'")
    assert json.loads(decided[0])["decision"] == {"action": "fix", "command": "/quiz", "incident": None}


async def test_what_the_model_calls_chat_is_answered_as_chat(tmp_path: Path) -> None:
    """A message the model's tool call says is just chat gets the chat reply, once."""
    async with ModelDouble() as model:
        model.script(tool_use(ROUTE_TOOL, {"action": "chat"}), text("Thanks, glad it helps!"))
        settings = make_settings(
            tmp_path / "data", anthropic_api_key="test-key", anthropic_base_url=model.base_url
        )
        async with running_world(settings) as world:
            answers = await _say(world, "alice", "thanks for the help earlier today")
    assert [m.content for m in answers] == ["Thanks, glad it helps!"]


async def test_with_no_model_key_the_bot_asks_one_question_and_understands_the_reply(tmp_path: Path) -> None:
    """No key: 'the meeting time disagrees with the calendar' (words the grammar cannot place) is answered
    with one short question naming the command its words lead to, with buttons; replying "investigate"
    to the question is a request on it."""
    settings = make_settings(tmp_path / "data")
    async with running_world(settings, extra_extensions=["tests.fixtures.quiz_cog"]) as world:
        [question] = await _say(world, "alice", "the meeting time disagrees with the calendar")
        assert question.content == "Is this about `/meeting`? Reply fix or investigate."
        labels = [c.label for row in question.components for c in getattr(row, "children", [])]
        assert labels == ["Investigate", "Fix", "No"]
        [answer] = await _say(world, "alice", "investigate", reply_to=question)
    # Understood as an investigate request on it: refused only because this world has no git repository.
    assert "is not a git repository" in answer.content


async def test_with_the_model_unreachable_the_bot_asks_instead_of_failing(tmp_path: Path) -> None:
    """A key but the model's API unreachable: 'my list has things on it I didn't type' is asked about
    (the words lead to `/todo` first), not answered with "I can't reach the model"; "no" leaves it."""
    settings = make_settings(
        tmp_path / "data", anthropic_api_key="test-key", anthropic_base_url=_closed_port()
    )
    async with running_world(settings, extra_extensions=["tests.fixtures.quiz_cog"]) as world:
        said = await _say(world, "alice", "my list has things on it I didn't type")
        # The unreachable model is the environment's incident, announced apart; the answer is a question.
        [question] = [m for m in said if not m.embeds]
        assert question.content.startswith("Is this about `/todo`?")
        assert question.content.endswith("Reply fix or investigate.")
        [answer] = await _say(world, "alice", "no thanks", reply_to=question)
        assert answer.content == "OK, leaving it."
        clicked = await world.users["alice"].click(question, label="No")
        assert reply_text(clicked) == "OK, leaving it."


async def test_someone_not_allow_listed_is_answered_as_chat(tmp_path: Path) -> None:
    """Only an allow-listed developer's messages are decided or asked about: mallory's gets the chat
    cog's answer (here, how to configure a key), and no question."""
    settings = make_settings(tmp_path / "data")
    async with running_world(settings, extra_extensions=["tests.fixtures.quiz_cog"]) as world:
        answers = await _say(world, "mallory", "the meeting time disagrees with the calendar")
    assert len(answers) == 1 and "no model API key" in answers[0].content
