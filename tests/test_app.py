"""Bot assembly: extensions load, names do not collide, a broken cog does not stop the boot."""

from __future__ import annotations

import re
from collections import Counter

from discord.ext import commands

from mendbot.kernel.settings import Settings
from mendbot.runtime.app import discover_extensions
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_bot, reply_text, running_world


async def test_every_extension_loads_and_command_names_are_unique(settings: Settings) -> None:
    """Every module in cogs/ imports and loads, and no two commands share a name or alias."""
    extensions = discover_extensions()
    assert {"cogs.dice", "cogs.remind", "cogs.chat"} <= set(extensions)
    bot = await make_bot(settings, extensions)
    try:
        failures = await bot.load_extensions()
        assert failures == {}
        assert set(bot.extensions) == set(extensions)
        prefix_names = Counter(
            name
            for command in bot.walk_commands()
            if isinstance(command, commands.Command)
            for name in (command.qualified_name, *command.aliases)
        )
        assert [name for name, n in prefix_names.items() if n > 1] == []
        slash_names = Counter(command.qualified_name for command in bot.tree.walk_commands())
        assert [name for name, n in slash_names.items() if n > 1] == []
        assert "roll" in slash_names
    finally:
        await bot.close()
        await bot.services.aclose()


async def test_a_broken_cog_does_not_stop_the_boot(settings: Settings) -> None:
    """A cog that raises on load is skipped and reported in #dev; the others serve."""
    async with running_world(settings, extra_extensions=["tests.fixtures.broken_cog"]) as world:
        assert "tests.fixtures.broken_cog" in world.bot.extension_failures
        report = [m.content for m in bot_messages(world, world.dev)]
        assert any(
            "tests.fixtures.broken_cog" in text and "this cog is broken on purpose" in text for text in report
        )
        result = await world.users["alice"].slash(world.general, "roll", notation="2d6")
        assert "2d6" in reply_text(result)


async def test_roll_answers_and_bad_notation_gets_a_clear_error(world: VirtualWorld) -> None:
    """/roll 2d6 answers with the total; /roll 2x explains the notation instead of failing."""
    alice = world.users["alice"]
    good = await alice.slash(world.general, "roll", notation="2d6")
    assert reply_text(good).startswith("🎲 `2d6` →")
    bad = await alice.slash(world.general, "roll", notation="2x")
    assert "isn't dice notation" in reply_text(bad)
    assert "Try `2d6`" in reply_text(bad)


async def test_a_roll_with_a_modifier_reads_as_a_sum(world: VirtualWorld) -> None:
    """A modifier is one more term of the written-out sum (`4 + 2 = **6**`, `4 - 2 = **2**`), never `4 +2`."""
    alice = world.users["alice"]
    for notation, sign in (("d6+2", "+"), ("d6-2", "-")):
        text = reply_text(await alice.slash(world.general, "roll", notation=notation))
        match = re.fullmatch(r"🎲 `1d6[+-]2` → (\d) ([+-]) 2 = \*\*(-?\d+)\*\*", text)
        assert match is not None, text
        die, shown_sign, total = int(match[1]), match[2], int(match[3])
        assert shown_sign == sign and total == (die + 2 if sign == "+" else die - 2)


async def test_prefix_command_goes_through_the_same_error_path(world: VirtualWorld) -> None:
    """`!roll 2x` gets the same explanation as the slash command."""
    await world.users["alice"].send(world.general, "!roll 2x")
    assert "isn't dice notation" in bot_messages(world, world.general)[-1].content


async def test_close_drains_and_unloads_cogs(settings: Settings) -> None:
    """close() stops accepting work and unloads every extension."""
    async with running_world(settings) as world:
        bot = world.bot
        assert bot.cogs
    assert bot.is_closed()
    assert not bot.accepting
    assert bot.extensions == {}


async def test_a_run_asked_in_a_channel_that_is_gone_reports_in_the_dev_channel(world: VirtualWorld) -> None:
    """A run's channel that no longer exists (deleted, or from an earlier playground world) sends its
    reports to the first dev channel rather than nowhere; an existing channel is kept."""
    assert getattr(world.bot.run_channel(world.general.id), "id", None) == world.general.id
    assert getattr(world.bot.run_channel(424242), "id", None) == world.dev.id
    assert getattr(world.bot.run_channel(None), "id", None) == world.dev.id
