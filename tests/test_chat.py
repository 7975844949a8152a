"""Chat: replies through the Messages API (the model double) with the channel's history."""

from __future__ import annotations

from pathlib import Path

from mendbot.chat import split_message
from mendbot.chat.service import NO_KEY_AGAIN, NO_KEY_MESSAGE
from tests.harness.discord import bot_messages, make_settings, running_world
from tests.harness.model_double import ModelDouble, text


async def test_chat_reply_uses_persona_and_history(tmp_path: Path) -> None:
    """A mention is answered by the model; the next request carries the earlier exchange."""
    async with ModelDouble() as model:
        model.script(text("Hi alice! I'm mendbot."), text("You said hello a moment ago."))
        settings = make_settings(
            tmp_path / "data", anthropic_api_key="test-key", anthropic_base_url=model.base_url
        )
        async with running_world(settings) as world:
            alice, general = world.users["alice"], world.general
            me = world.bot.user
            assert me is not None
            await alice.send(general, f"{me.mention} hello there")
            await alice.send(general, f"{me.mention} what did I say?")
            replies = [m.content for m in bot_messages(world, general)]
        assert replies == ["Hi alice! I'm mendbot.", "You said hello a moment ago."]
        first, second = (request.json for request in model.message_requests)
        assert first["stream"] is True
        assert first["model"] == "claude-sonnet-5-5"
        assert "You are mendbot" in str(first["system"])
        assert first["messages"] == [{"role": "user", "content": "alice: hello there"}]
        assert second["messages"] == [
            {"role": "user", "content": "alice: hello there"},
            {"role": "assistant", "content": "Hi alice! I'm mendbot."},
            {"role": "user", "content": "alice: what did I say?"},
        ]


async def test_long_reply_is_split_at_discord_limit(tmp_path: Path) -> None:
    """A reply longer than 2000 characters arrives as several messages, none over the limit."""
    long_text = ("word " * 900).strip()
    async with ModelDouble() as model:
        model.script(text(long_text))
        settings = make_settings(tmp_path / "data", anthropic_api_key="k", anthropic_base_url=model.base_url)
        async with running_world(settings) as world:
            me = world.bot.user
            assert me is not None
            await world.users["alice"].send(world.general, f"{me.mention} talk a lot")
            parts = [m.content for m in bot_messages(world, world.general)]
    assert len(parts) == 3
    assert all(len(part) <= 2000 for part in parts)
    assert " ".join(parts) == long_text


async def test_without_a_key_it_explains_once_then_answers_briefly(tmp_path: Path) -> None:
    """With no API key the bot says how to configure one, then answers each later mention briefly."""
    async with running_world(make_settings(tmp_path / "data")) as world:
        me = world.bot.user
        assert me is not None
        for _ in range(3):
            await world.users["alice"].send(world.general, f"{me.mention} hi")
        assert [m.content for m in bot_messages(world, world.general)] == [
            NO_KEY_MESSAGE,
            NO_KEY_AGAIN,
            NO_KEY_AGAIN,
        ]


def test_split_prefers_line_breaks() -> None:
    """Splitting keeps lines whole when it can."""
    chunks = split_message("a" * 1500 + "\n" + "b" * 1500)
    assert chunks == ["a" * 1500, "b" * 1500]
