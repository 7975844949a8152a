"""The loopback Discord's world as Discord's payloads: guilds, channels, snowflakes and what a message reads.

`FakeGuild` is a guild with `#dev` and `#general`, its roles (`add_role(name)`) and the bot's membership
and permissions; `FakeChannel` a text channel with its permission overwrites — plain attributes a test
changes before or while the bot runs. `snowflake()` makes ids that, like Discord's, encode the current
time (discord.py derives `created_at` from them; HARNESS-NOTES), and with `shard=` an id that shard owns
under Discord's rule `shard_of(guild_id, count) == (guild_id >> 22) % count`. `message_text(message)` is
what a human reads in a message (content and embeds). None of it serves anything: the gateway and the
REST halves of the double (`mendbot.trust.loopback_discord_gateway`, `mendbot.trust.loopback_discord_rest`)
send these payloads.
"""

from __future__ import annotations

import base64
import datetime
import secrets
import string
import threading
from dataclasses import dataclass, field
from typing import Any

import discord

__all__ = ["FakeChannel", "FakeGuild", "bot_token", "message_text", "shard_of", "snowflake"]

# The last id made: each new one is above it. Discord's ids grow with time and the double's users rely
# on it (the answer to a message is found as the first of the bot's messages with a greater id); a
# counter taken modulo 4096 went back to 0 within a millisecond now and then, and an earlier answer
# then read as the answer to the next message.
_last = [0]
_lock = threading.Lock()


def snowflake(shard: int | None = None, shard_count: int = 1) -> int:
    """A fresh id that, like Discord's, encodes the current time, and is greater than every id made
    before it in this process.

    With `shard`, the id is one that shard owns (`(id >> 22) % shard_count == shard`): its timestamp is
    moved back at most `shard_count - 1` milliseconds, still the current time for anything that reads it.
    More than 4096 ids in one millisecond move the timestamp on by one: still the current time too.
    """
    stamp = discord.utils.time_snowflake(datetime.datetime.now(datetime.UTC)) >> 22
    with _lock:
        last = _last[0]
        stamp = max(stamp, (last + 1) >> 22)
        if shard is not None:
            stamp -= (stamp - shard) % shard_count
            if stamp << 22 | 4095 <= last:  # moved back below the last id: that shard's next millisecond
                stamp += shard_count
        _last[0] = made = max(stamp << 22, last + 1)
        return made


def bot_token(user_id: int) -> str:
    """A token shaped as Discord's bot tokens are — the bot's id in base64, a dot, six characters, a dot,
    38 more — so a bot that checks its token's form before logging in (`\\w+\\.\\w+\\.\\S+`) takes it."""
    alphabet = string.ascii_letters + string.digits
    head = base64.b64encode(str(user_id).encode()).decode().rstrip("=")
    return ".".join([head, *("".join(secrets.choice(alphabet) for _ in range(n)) for n in (6, 38))])


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard that receives a guild's events (Discord's rule)."""
    return (guild_id >> 22) % shard_count


def _emoji_payload(emoji: str) -> dict[str, Any]:
    """A reaction's emoji as Discord sends it: a unicode emoji by name, a custom one `name:id`."""
    name, _, emoji_id = emoji.partition(":")
    return {"id": emoji_id or None, "name": name}


def message_text(message: dict[str, Any]) -> str:
    """What a human reads in a message: its content and its embeds' titles, descriptions and fields."""
    parts = [message.get("content") or ""]
    for embed in message.get("embeds") or []:
        parts += [embed.get("title") or "", embed.get("description") or ""]
        parts += [f"{f.get('name', '')}: {f.get('value', '')}" for f in embed.get("fields") or []]
    return "\n".join(part for part in parts if part)


def _summary(message: dict[str, Any]) -> str:
    return message_text(message).replace("\n", " ")[:160]


@dataclass
class FakeChannel:
    """A text channel; `overwrites` are Discord permission overwrite payloads."""

    name: str
    id: int = field(default_factory=snowflake)
    overwrites: list[dict[str, Any]] = field(default_factory=list)

    def payload(self, guild_id: int, position: int) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "guild_id": str(guild_id),
            "type": 0,
            "name": self.name,
            "position": position,
            "permission_overwrites": self.overwrites,
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
        }


def _default_permissions() -> int:
    """What an invite with the README's permissions grants the bot's role."""
    return discord.Permissions(
        view_channel=True,
        send_messages=True,
        send_messages_in_threads=True,
        create_public_threads=True,
        embed_links=True,
        add_reactions=True,
        read_message_history=True,
    ).value


@dataclass
class FakeGuild:
    """A guild with `#dev` and `#general`; the bot is a member with one role unless told otherwise."""

    name: str = "mendbot dev"
    id: int = field(default_factory=snowflake)
    channels: list[FakeChannel] = field(default_factory=lambda: [FakeChannel("dev"), FakeChannel("general")])
    everyone_permissions: int = 0
    bot_role_permissions: int = field(default_factory=_default_permissions)
    bot_role_id: int = field(default_factory=snowflake)
    bot_is_member: bool = True
    extra_roles: dict[int, str] = field(default_factory=dict)  # role id → name, for members' roles

    def add_role(self, name: str) -> int:
        """A role members can hold (`DiscordDouble.member(name, roles=[…])`); its id."""
        role_id = snowflake()
        self.extra_roles[role_id] = name
        return role_id

    def channel(self, name: str) -> FakeChannel:
        return next(channel for channel in self.channels if channel.name == name)

    def roles(self) -> list[dict[str, Any]]:
        def role(role_id: int, name: str, permissions: int, position: int) -> dict[str, Any]:
            return {
                "id": str(role_id),
                "name": name,
                "color": 0,
                "hoist": False,
                "position": position,
                "permissions": str(permissions),
                "managed": False,
                "mentionable": False,
                "flags": 0,
            }

        return [
            role(self.id, "@everyone", self.everyone_permissions, 0),
            role(self.bot_role_id, "mendbot", self.bot_role_permissions, 1),
            *(role(role_id, name, 0, 2 + i) for i, (role_id, name) in enumerate(self.extra_roles.items())),
        ]

    def member(self, user: dict[str, Any]) -> dict[str, Any]:
        return {
            "user": user,
            "roles": [str(self.bot_role_id)],
            "joined_at": datetime.datetime.now(datetime.UTC).isoformat(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
            "pending": False,
        }

    def payload(self, owner_id: int) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "owner_id": str(owner_id),
            "roles": self.roles(),
            "features": [],
            "emojis": [],
            "stickers": [],
            "premium_tier": 0,
            "preferred_locale": "en-US",
        }
