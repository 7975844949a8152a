"""People as a reader expects them: by the name the bot knows them by, the id kept for hover and detail.

Everything the bot shows a person about other people — who asked for a run, who approved, whose call
failed — names them by their display name when the bot knows it (a member or user it has seen), and
falls back to "user 1234…" only when it does not. `addressed()` puts a person's mention before a
reply only when the reply does not already name them ("@mallory mallory isn't allow-listed" read
twice).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord

if TYPE_CHECKING:
    from bot.runtime.app import MendBot

__all__ = ["actor_name", "addressed", "display_name"]

_ACTOR = re.compile(r"^user:(\d+)$")


def display_name(bot: MendBot, user_id: int | None) -> str | None:
    """The name `user_id` goes by where the bot has seen them (a dev guild's member first, for their
    nickname there), or None when the bot does not know them."""
    if user_id is None:
        return None
    guild_id = bot.services.settings.discord.dev_guild_id
    guilds = [guild for guild in bot.guilds if guild.id == guild_id] + list(bot.guilds)
    for guild in guilds:
        member = guild.get_member(user_id)
        if member is not None:
            return member.display_name
    user = bot.get_user(user_id)
    return user.display_name if user is not None else None


def actor_name(bot: MendBot, actor: str) -> str:
    """A run event's actor as people read it: `user:1234` becomes the person's name; `pipeline`,
    `agent`, `watch` … stay as they are."""
    match = _ACTOR.match(actor)
    if match is None:
        return actor
    return display_name(bot, int(match[1])) or f"user {match[1]}"


def addressed(user: discord.abc.User, text: str) -> str:
    """`text` for a reply that has no message to reply to (a reaction's answer): after the person's
    mention, unless it names them already."""
    names = {user.display_name, user.name}
    if user.mention in text or any(re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text) for name in names):
        return text
    return f"{user.mention} {text}"
