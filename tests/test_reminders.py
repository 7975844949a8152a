"""Reminders survive a restart and fire exactly once."""

from __future__ import annotations

from mendbot.db import reminders as queries
from mendbot.kernel.settings import Settings
from mendbot.runtime.app import discover_extensions
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_bot, reply_text, running_world


def _fired(world: VirtualWorld, text: str) -> list[str]:
    return [
        m.content
        for m in bot_messages(world, world.general)
        if "reminder:" in m.content and text in m.content
    ]


async def test_reminder_fires_once_when_due(world: VirtualWorld) -> None:
    """A reminder fires when its time comes, and never again."""
    await world.users["alice"].slash(world.general, "remind", when="10m", text="stretch")
    await world.env.advance_time(9 * 60)
    assert _fired(world, "stretch") == []
    await world.env.advance_time(61)
    assert len(_fired(world, "stretch")) == 1
    await world.env.advance_time(3600)
    assert len(_fired(world, "stretch")) == 1


async def test_reminder_survives_a_restart_and_fires_once(settings: Settings) -> None:
    """A reminder set before a restart fires after it, once, from the new process's state."""
    async with running_world(settings) as world:
        await world.users["alice"].slash(world.general, "remind", when="1h", text="water the plants")
        await world.restart(await make_bot(settings, discover_extensions()))
        assert world.bot.services.reminders.scheduled == 1
        await world.env.advance_time(3601)
        assert len(_fired(world, "water the plants")) == 1
        assert await queries.pending(world.bot.services.db) == []
        await world.restart(await make_bot(settings, discover_extensions()))
        await world.env.advance_time(3600)
        assert len(_fired(world, "water the plants")) == 1


async def test_bad_duration_is_explained(world: VirtualWorld) -> None:
    """A duration that is not one says which forms work."""
    result = await world.users["alice"].slash(world.general, "remind", when="soon", text="x")
    assert "isn't a duration" in reply_text(result)
