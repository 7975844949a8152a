"""Discord refusing a call (403 Missing Permissions, 404 Unknown Channel, 5xx) is an environment
incident that says what the bot needs, never a code bug offered for 🛠 fixing. The refusals come from
the virtual Discord itself: a channel whose overwrites deny the bot, and injected REST failures."""

from __future__ import annotations

import json
from typing import Any

import discord
import simcord

from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, reply_text
from tests.harness.sql import stored


def _announcements(world: VirtualWorld) -> list[discord.Message]:
    return [
        m
        for m in bot_messages(world, world.dev)
        if m.embeds and "incident" in (m.embeds[0].title or "").lower()
    ]


def _fields(message: discord.Message) -> dict[str | None, Any]:
    return {field.name: field.value for field in message.embeds[0].fields}


def _actions(world: VirtualWorld, kind: str) -> list[tuple[Any, ...]]:
    found = stored(
        world.bot.services.settings, "SELECT ok, fingerprint, extra FROM actions WHERE kind = ?", kind
    )
    return [
        (ok, fingerprint, json.loads(extra or "{}").get("environment")) for ok, fingerprint, extra in found
    ]


async def _locked_channel(world: VirtualWorld) -> simcord.ChannelHandle:
    """#locked: everyone may talk, but the bot may not send messages there."""
    assert world.bot.user is not None
    locked = world.guild.create_text_channel(
        "locked", overwrites={world.bot.user: discord.PermissionOverwrite(send_messages=False)}
    )
    await world.env.settle()
    return locked


async def test_missing_send_permission_is_an_environment_incident_naming_it(world: VirtualWorld) -> None:
    """A command whose reply Discord refuses (403) opens one environment incident saying "I need Send
    Messages in #locked" — no 🔍/🛠, no code incident, the action recorded as an environment failure."""
    locked = await _locked_channel(world)
    await world.users["alice"].send(locked, "!roll 2d6")
    await world.users["alice"].send(locked, "!roll 1d20")
    await world.quiesce()
    [announcement] = _announcements(world)
    assert "Environment incident" in (announcement.embeds[0].title or "")
    assert "Send Messages in #locked" in _fields(announcement)["Needs"]
    assert _fields(announcement)["Seen"] == "2 times"
    assert announcement.components == [] and announcement.reactions == []
    assert _actions(world, "command:roll") == [(0, None, "discord:forbidden")] * 2
    assert [i.category for i in world.bot.services.incidents.active()] == ["environment"]


async def test_fix_requests_on_a_discord_incident_are_answered_as_environment(world: VirtualWorld) -> None:
    """🛠 on the announcement, "fix this" replying to it and /fix incident=N each answer that it is an
    environment problem and what it needs; no run is created."""
    locked = await _locked_channel(world)
    alice = world.users["alice"]
    await alice.send(locked, "!roll 2d6")
    await world.quiesce()
    [announcement] = _announcements(world)
    await alice.react(announcement, "🛠")
    await alice.send(world.dev, "fix this", reply_to=announcement)
    await world.quiesce()
    answers = [m.content for m in bot_messages(world, world.dev) if "environment problem" in m.content]
    assert len(answers) == 2 and all("Send Messages in #locked" in answer for answer in answers)
    result = await alice.slash(world.dev, "fix", description="roll is broken", incident=1)
    assert "environment problem" in reply_text(result)
    assert await world.bot.services.improve.runs.list_recent() == []


async def test_a_discord_outage_is_an_environment_incident_and_the_user_is_told(world: VirtualWorld) -> None:
    """A 5xx from Discord on a command's reply opens a "discord:outage" environment incident; the user
    is told Discord is having trouble, not "something went wrong on my side"."""
    world.env.inject_error("POST", "/channels/*/messages", status=503, message="Service Unavailable")
    await world.users["alice"].send(world.general, "!roll 2d6")
    await world.quiesce()
    replies = [m.content for m in bot_messages(world, world.general)]
    assert replies == ["Discord is having trouble right now (503) — try again in a moment."]
    [announcement] = _announcements(world)
    assert "discord:outage" in (announcement.embeds[0].title or "")
    assert "discordstatus.com" in _fields(announcement)["Needs"]
    assert _actions(world, "command:roll") == [(0, None, "discord:outage")]


async def test_an_unknown_channel_is_an_environment_incident(world: VirtualWorld) -> None:
    """A 404 Unknown Channel (deleted while the bot used it) is an environment incident too, not a bug."""
    world.env.inject_error("POST", "/channels/*/messages", status=404, code=10003, message="Unknown Channel")
    await world.users["alice"].send(world.general, "!roll 2d6")
    await world.quiesce()
    [announcement] = _announcements(world)
    assert "discord:not_found" in (announcement.embeds[0].title or "")
    assert "deleted" in _fields(announcement)["Needs"]
    assert [m.content for m in bot_messages(world, world.general)] == [
        "That message or channel is gone, so I couldn't finish. Try again."
    ]


async def test_an_outage_under_a_slash_command_is_answered_and_is_no_bug(world: VirtualWorld) -> None:
    """A 5xx on a slash command's response goes the same way: an environment incident, an answer to
    the user once Discord takes one again, and no code incident."""
    world.env.inject_error("POST", "/interactions/*/*/callback", status=502, message="Bad Gateway")
    result = await world.users["alice"].slash(world.general, "roll", notation="2d6")
    await world.quiesce()
    assert "Discord is having trouble right now (502)" in reply_text(result)
    [announcement] = _announcements(world)
    assert "discord:outage" in (announcement.embeds[0].title or "")
    assert _actions(world, "command:roll") == [(0, None, "discord:outage")]


async def test_a_listener_refused_by_discord_opens_the_environment_incident(world: VirtualWorld) -> None:
    """A listener whose answer Discord refuses (the chat reply to a mention, 403) opens the environment
    incident as a command would — it used to pass for the user's own mistake, with no incident at all."""
    world.env.inject_error(
        "POST", "/channels/*/messages", status=403, code=50013, message="Missing Permissions"
    )
    me = world.bot.user
    assert me is not None
    await world.users["alice"].send(world.general, f"{me.mention} hello")
    await world.quiesce()
    assert [(i.category, i.kind) for i in world.bot.services.incidents.active()] == [
        ("environment", "discord:forbidden")
    ]
    # Every cog's on_message is recorded, in the order they finish: the one Discord refused is the
    # only one not ok, and it carries the environment, not a fingerprint.
    refused = [outcome for outcome in _actions(world, "listener:on_message") if not outcome[0]]
    assert refused == [(0, None, "discord:forbidden")]
