"""Every slash command's options, fuzzed through the virtual Discord: each call gets an answer, none is a bug.

Values are what Discord's client can send (it enforces option types, choices and integer range):
sizes from empty to long, any unicode, negative and huge numbers, and command-shaped text
(durations, dice) with absurd magnitudes. A reply that apologises for "something on my side",
a failed action record or an incident is a bug found.
"""

from __future__ import annotations

import importlib
from typing import Any

import discord
import pytest
import simcord
from discord import app_commands
from discord.ext import commands
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from mendbot.runtime.app import discover_extensions
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import reply_text
from tests.harness.sql import sql

# Discord's own bounds for integer and number options.
_DISCORD_INT = 2**53

# Magnitudes by order: each overflow threshold (a timedelta, an int64, a float) gets crossed.
_HUGE = st.sampled_from([10**k - 1 for k in range(1, 31)])
_TEXT = st.one_of(
    st.text(min_size=1, max_size=40),
    st.text(min_size=200, max_size=1500),
    st.builds("{}{}".format, st.one_of(st.integers(-(10**30), 10**30), _HUGE), st.sampled_from("wdhms")),
    st.from_regex(r"\d{0,15}d-?\d{0,15}([+-]\d{1,15})?", fullmatch=True),  # dice, likewise
    st.sampled_from(["0s", "1w1w1w", "💥", "\u202e\u200b", "@everyone", "<@1>", "' OR 1=1 --", "nan"]),
)


def _value(param: app_commands.Parameter, world: VirtualWorld) -> st.SearchStrategy[Any]:
    """What Discord's client could send for this option."""
    if param.choices:
        return st.sampled_from([choice.value for choice in param.choices])
    kind = param.type
    if kind is discord.AppCommandOptionType.integer:
        return st.one_of(
            st.integers(min_value=-_DISCORD_INT, max_value=_DISCORD_INT),
            st.sampled_from([0, -1, 1, _DISCORD_INT, -_DISCORD_INT]),
        )
    if kind is discord.AppCommandOptionType.number:
        return st.floats(min_value=-_DISCORD_INT, max_value=_DISCORD_INT, allow_nan=False)
    if kind is discord.AppCommandOptionType.boolean:
        return st.booleans()
    if kind in (discord.AppCommandOptionType.user, discord.AppCommandOptionType.mentionable):
        return st.sampled_from(list(world.users.values()))
    if kind is discord.AppCommandOptionType.channel:
        return st.sampled_from(list(world.channels.values()))
    return _TEXT


def _leaves(command: app_commands.Command[Any, Any, Any] | app_commands.Group) -> set[str]:
    if isinstance(command, app_commands.Group):
        return {name for child in command.commands for name in _leaves(child)}
    return {command.qualified_name}


def declared_commands() -> list[str]:
    """Every slash command the cogs in cogs/ declare (a hybrid command's slash half too): a cog someone
    adds — README's `/coin` — is fuzzed like the bot's own, with no list here to keep up."""
    names: set[str] = set()
    for extension in discover_extensions():
        module = importlib.import_module(extension)
        for cog in vars(module).values():
            if not (isinstance(cog, type) and issubclass(cog, commands.Cog) and cog.__module__ == extension):
                continue
            for command in cog.__cog_app_commands__:
                names |= _leaves(command)
            for hybrid in cog.__cog_commands__:
                if isinstance(hybrid, commands.HybridCommand | commands.HybridGroup) and hybrid.app_command:
                    names |= _leaves(hybrid.app_command)
    return sorted(names)


# Checked against the synced tree below, so each is fuzzed on its own.
COMMANDS = declared_commands()


def _command(world: VirtualWorld, name: str) -> app_commands.Command[Any, Any, Any]:
    command = world.bot.tree.get_command(name, guild=discord.Object(world.guild.id))
    assert isinstance(command, app_commands.Command), f"/{name} is not synced"
    return command


async def test_the_fuzzed_commands_are_all_the_commands(world: VirtualWorld) -> None:
    """The commands the cogs declare are the bot's whole synced slash command tree: none is left unfuzzed."""
    tree = world.bot.tree.walk_commands(guild=discord.Object(world.guild.id))
    assert sorted(c.qualified_name for c in tree if isinstance(c, app_commands.Command)) == COMMANDS


@pytest.mark.parametrize("name", COMMANDS)
@settings(
    max_examples=80,
    deadline=None,  # a shared machine: time is measured in bench/, never asserted here
    database=None,
    derandomize=True,  # the same cases on every run: a failure here is a bug, never bad luck
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_command_answers_any_option_values_without_a_bug(
    world: VirtualWorld, name: str, data: st.DataObject
) -> None:
    """The command with any option values Discord allows, by anyone anywhere, gets a reply and no bug."""
    command = _command(world, name)
    user = data.draw(st.sampled_from(sorted(world.users)), label="user")
    channel = data.draw(st.sampled_from(sorted(world.channels)), label="channel")
    options: dict[str, Any] = {}
    for param in command.parameters:
        if param.required or data.draw(st.booleans(), label=f"give {param.name}"):
            options[param.name] = data.draw(_value(param, world), label=param.name)
    try:
        result = await world.users[user].slash(world.channels[channel], name, **options)
    except simcord.SetupError:  # a value Discord's client would not send (e.g. over a length limit)
        reject()
    await world.quiesce()
    answers = [r for r in [result.response, *result.followups] if r is not None]
    assert answers, f"/{name} {options} got no answer"
    text = " ".join(answer.content or "" for answer in answers)
    assert "Something went wrong on my side" not in text, (name, options, text)
    # A bug is an error incident; how long eighty calls take on a shared machine is not one (the
    # latency rule reads the wall clock: a busy machine slows a command past its own baseline).
    bugs = [incident for incident in world.bot.services.incidents.active() if incident.rule != "latency"]
    assert bugs == [], (name, options)
    await world.bot.services.recorder.flush()
    # A fire drill's failing calls are its synthetic fault (bot/improve/drill.py), never a bug.
    failures = await sql(
        world.bot.services.db, "SELECT kind, error_type FROM actions WHERE ok = 0 AND kind NOT LIKE 'drill:%'"
    )
    assert failures == [], (name, options, failures)


async def test_remind_with_an_overflowing_duration_says_the_limit(world: VirtualWorld) -> None:
    """`/remind 99999999999999d x` is answered with the limit (it used to overflow building a timedelta)."""
    result = await world.users["alice"].slash(world.general, "remind", when="99999999999999d", text="x")
    assert reply_text(result) == "I can remind you at most a year ahead."


async def test_every_option_has_a_description(world: VirtualWorld) -> None:
    """Each slash command option says what it is (Discord shows "…" for one without a description)."""
    missing = [
        f"/{name} {param.name}"
        for name in COMMANDS
        for param in _command(world, name).parameters
        if not param.description or param.description == "…"
    ]
    assert missing == []
