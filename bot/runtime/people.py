"""People as a reader expects them: by the name the bot knows them by, the id kept for hover and detail.

Everything the bot shows a person about other people — who asked for a run, who approved, whose call
failed — names them by their display name when the bot knows it (a member or user it has seen), and
falls back to "user 1234…" only when it does not. `addressed()` puts a person's mention before a
reply only when the reply does not already name them ("@mallory mallory isn't allow-listed" read
twice).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import datetime

import discord

from mendbot.db import people as queries
from mendbot.db.core import Connection
from mendbot.kernel.log import get_logger

__all__ = ["People", "addressed"]

_log = get_logger(__name__)
_ACTOR = re.compile(r"^user:(\d+)$")


class People:
    """The names people go by, as the bot last saw them (in a message, an interaction, a reaction):
    held in memory, and stored when one is new or changed so a restart still knows them. `client`
    (the bot, once built) is asked first: a member's nickname in the dev guild is what people there
    call them."""

    def __init__(
        self, db: Connection, clock: Callable[[], datetime], *, dev_guild_id: int | None = None
    ) -> None:
        self._db = db
        self._clock = clock
        self._dev_guild_id = dev_guild_id
        self._names: dict[int, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.client: discord.Client | None = None

    @classmethod
    async def loaded(
        cls, db: Connection, clock: Callable[[], datetime], *, dev_guild_id: int | None = None
    ) -> People:
        """People with the names stored before (one row per person who ever used the bot)."""
        people = cls(db, clock, dev_guild_id=dev_guild_id)
        people._names = await queries.names(db)
        return people

    def name(self, user_id: int | None) -> str | None:
        """The name `user_id` goes by: the dev guild's member first, then any user the client has
        cached, then the name the bot last saw them by; None when the bot never saw them."""
        if user_id is None:
            return None
        client = self.client
        if client is not None:
            guilds = sorted(client.guilds, key=lambda guild: guild.id != self._dev_guild_id)
            for guild in guilds:
                member = guild.get_member(user_id)
                if member is not None:
                    return member.display_name
            user = client.get_user(user_id)
            if user is not None:
                return user.display_name
        return self._names.get(user_id)

    def actor(self, actor: str) -> str:
        """A run event's actor as people read it: `user:1234` is the person's name (or "user 1234" when
        the bot never saw them); `pipeline`, `agent`, `watch` … stay as they are."""
        match = _ACTOR.match(actor)
        if match is None:
            return actor
        return self.name(int(match[1])) or f"user {match[1]}"

    def seen(self, user: discord.abc.User) -> None:
        """Note the name `user` goes by now (bots are not people here)."""
        name = user.display_name
        if user.bot or not name or self._names.get(user.id) == name:
            return
        self._names[user.id] = name
        task = asyncio.get_running_loop().create_task(self._store(user.id, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store(self, user_id: int, name: str) -> None:
        try:
            await queries.remember(self._db, user_id=user_id, name=name, at=self._clock().timestamp())
        except Exception as exc:  # a name not kept is a name shown as an id later, nothing worse
            _log.warning("a person's name was not stored", user_id=user_id, error=str(exc))

    async def quiesce(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def addressed(user: discord.abc.User, text: str) -> str:
    """`text` for a reply that has no message to reply to (a reaction's answer): after the person's
    mention, unless it names them already."""
    names = {user.display_name, user.name}
    if user.mention in text or any(re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text) for name in names):
        return text
    return f"{user.mention} {text}"
