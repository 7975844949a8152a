"""A loopback Discord that the real discord.py HTTP client and gateway connect to.

It is the proof's observer (`mendbot.improve.proof.replay`): a bot started from a checkout in the sandbox
connects to it over a unix socket bound into the sandbox (`unix_socket=`; `discord.invalid` is then the host
in its URLs), and what it answers each replayed call is judged here, outside the process under test. The
tests use it too, on 127.0.0.1.

simcord (tests/harness/discord.py) swaps discord.py's HTTP client out; this double keeps it in and
answers it over real sockets, so the start-up path — login, application info, the command sync,
IDENTIFY, READY, RESUME — and doctor's REST checks run exactly as against Discord::

    async with DiscordDouble() as discord_api:
        with discord_api.pointed_at():
            discord_api.fail_sync(403)
            settings = make_settings(data_dir, discord_token=discord_api.token,
                                     discord={"dev_guild_id": discord_api.guild.id})
            assert await _run(settings) == 78        # mendbot.__main__'s `mendbot run`

`pointed_at()` sets `discord.http.Route.BASE` and `DiscordWebSocket.DEFAULT_GATEWAY` (READY's
`resume_gateway_url` is loopback too).

`DiscordDouble` is built in layers, one module each: the world's payloads (`FakeGuild`, `FakeChannel`,
snowflakes, `message_text`: `mendbot.trust.loopback_discord_model`), the gateway and shards
(`mendbot.trust.loopback_discord_gateway`), the REST API with the channels' state
(`mendbot.trust.loopback_discord_rest`), and members and what they do in interactions — a recorded member
and channel by id, buttons, select menus, modals, autocomplete, context menus, and what each is answered
(`mendbot.trust.loopback_discord_interact`). This module adds the server's lifecycle, pointing discord.py
at it, and what people do and see.

What people do and see, for tests of the whole loop (a `mendbot run` process: tests/harness/live_bot.py):
`member(name, roles=)` is a member with a stable id (for `access.allowed_user_ids`) and roles
(`FakeGuild.add_role` before the bot connects, `await create_role(guild, name)` after), answered by
`GET /guilds/{g}/members/{id}` and `GET /users/{id}`; `send_message(channel, text,
author=, reply_to=, mention_bot=)`, `mention(channel, text, reply_to=)` (`@mendbot …`: the bot in
`mentions`), `reply(message, text)` (`message_reference` and the resolved `referenced_message`) and
`react(message, emoji)`/`unreact(…)` (MESSAGE_REACTION_ADD/REMOVE) are dispatched to the shard owning the
guild, and `answer_to(message)` waits for the bot's answer. `channel_messages(channel)` is a channel as a
human sees it now (edits applied, each with `reactions` emoji → user ids and an `edits` count),
`bot_messages(channel)` the bot's part of it,
`reactions_on(message)` one message's reactions, and `await wait_for_message(predicate, timeout,
channel=, author=)` waits (on changes, not by sleeping) for the first of the bot's messages — or a
member's — that matches as it is now. `slash(channel, "fix", author=, **options)` is a member's slash
command (INTERACTION_CREATE; a deferred "thinking…" message is filled by the first followup as on
Discord) and `await response_to(interaction, predicate)` its answer as it is now.

Scripted failures beyond the gateway's and the sync's: `refuse()`/`accept()` (nothing listening:
connection refused); the guild's channels, permission overwrites and membership, and the application's
flags, are plain attributes to change. Everything asked is recorded in `requests`.

A process can be pointed at a double too: `python -m tests.harness.pointed API_URL GATEWAY_URL -- run …`
runs the real `mendbot` entry point with both URLs swapped.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import discord
import yarl
from aiohttp import web

from mendbot.kernel.waits import wait_for
from mendbot.trust.loopback_discord_interact import InteractionDouble
from mendbot.trust.loopback_discord_model import FakeChannel, FakeGuild, _summary
from mendbot.trust.loopback_discord_rest import API_PREFIX

__all__ = ["DiscordDouble", "pointed_at"]


class DiscordDouble(InteractionDouble):
    """Discord's REST API and gateway on 127.0.0.1, for one bot application."""

    def __init__(
        self,
        *,
        message_content_intent: bool = True,
        recommended_shards: int = 1,
        echo: bool = True,
        unix_socket: Path | None = None,
    ) -> None:
        super().__init__(
            message_content_intent=message_content_intent,
            recommended_shards=recommended_shards,
            echo=echo,
            unix_socket=unix_socket,
        )
        self._runner: web.AppRunner | None = None
        self._site: web.BaseSite | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/gateway/", self._gateway)
        app.router.add_route("*", API_PREFIX + "/{path:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        if self.unix_socket is None:
            with socket.socket() as probe:  # a free port, kept across refuse()/accept()
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
        await self.accept()

    async def stop(self) -> None:
        for ack in list(self._acks):
            ack.cancel()
        self._gateway_open.set()
        for ws in list(self._sockets):
            await ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def __aenter__(self) -> DiscordDouble:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def pointed_at(self) -> Iterator[None]:
        """Point discord.py (REST and gateway) at this double for the duration of the block."""
        with pointed_at(self.url, self.gateway_url):
            yield

    # -- scripting ----------------------------------------------------------------------------

    async def refuse(self) -> None:
        """Stop listening: every connection is refused, as when Discord is unreachable."""
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def accept(self) -> None:
        """Listen (again) on the same port or unix socket."""
        if self._site is None and self._runner is not None:
            if self.unix_socket is not None:
                self._site = web.UnixSite(self._runner, str(self.unix_socket))
            else:
                self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
            await self._site.start()

    # -- people -------------------------------------------------------------------------------

    async def answer_to(self, message: dict[str, Any]) -> dict[str, Any]:
        """Wait for the bot's first message in `message`'s channel after it (ids encode the time)."""
        while True:
            for posted in self.messages:
                if posted["channel_id"] == message["channel_id"] and int(posted["id"]) > int(message["id"]):
                    return posted
            self._posted.clear()
            await self._posted.wait()

    async def create_role(self, guild: FakeGuild, name: str) -> int:
        """A role made while the bot is connected (`FakeGuild.add_role` before it connects): GUILD_ROLE_CREATE
        to the owning shard. Its id."""
        role_id = guild.add_role(name)
        role = next(role for role in guild.roles() if role["id"] == str(role_id))
        with contextlib.suppress(LookupError):
            await self._dispatch(
                self.session_of(guild), "GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role}
            )
        return role_id

    async def send_message(
        self,
        channel: FakeChannel,
        content: str,
        *,
        author: str = "alice",
        reply_to: dict[str, Any] | None = None,
        mention_bot: bool = False,
    ) -> dict[str, Any]:
        """A member's message in a channel, dispatched (MESSAGE_CREATE) to the shard owning its guild.

        `author` names a stable member (`member(name)`). `reply_to` makes it a reply to that message
        (`message_reference`, and `referenced_message` as Discord resolves it). `mention_bot` starts it
        with the bot's mention and carries the bot in `mentions`, so `bot.user.mentioned_in` holds.
        """
        guild = self._guild_of(channel)
        user = self.member(author)
        member = self._member_payload(guild, user)
        del member["user"]  # a message's member is partial: the user is its author
        if mention_bot:
            content = f"<@{self.user['id']}> {content}"
        body: dict[str, Any] = {}
        if reply_to is not None:
            body["message_reference"] = {
                "type": 0,
                "message_id": reply_to["id"],
                "channel_id": reply_to["channel_id"],
                "guild_id": reply_to.get("guild_id"),
                "fail_if_not_exists": False,
            }
        message = {**self._message(channel, guild, user, content, body), "member": member}
        if mention_bot:
            message["mentions"] = [self.user]
        if reply_to is not None:
            current = self._find_message(reply_to["channel_id"], reply_to["id"]) or reply_to
            message["referenced_message"] = self._with_reactions(current)
            if reply_to["author"]["id"] not in {m["id"] for m in message["mentions"]}:
                message["mentions"] = [*message["mentions"], reply_to["author"]]  # a reply pings its author
        self._channel_log.setdefault(channel.id, []).append(message)
        await self._dispatch(self.session_of(guild), "MESSAGE_CREATE", message)
        await self._notify()
        return message

    async def mention(
        self,
        channel: FakeChannel,
        content: str,
        *,
        author: str = "alice",
        reply_to: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`@mendbot <content>` said by a member (optionally as a reply to `reply_to`)."""
        return await self.send_message(channel, content, author=author, reply_to=reply_to, mention_bot=True)

    async def reply(self, message: dict[str, Any], content: str, *, author: str = "alice") -> dict[str, Any]:
        """A member's reply to `message` in its channel (no mention of the bot unless it is written)."""
        return await self.send_message(
            self._channel_by_id(message["channel_id"]), content, author=author, reply_to=message
        )

    async def react(self, message: dict[str, Any], emoji: str, *, author: str = "alice") -> None:
        """A member's reaction: recorded on the message and MESSAGE_REACTION_ADD to the owning shard."""
        await self._member_reaction(message, emoji, author, add=True)

    async def unreact(self, message: dict[str, Any], emoji: str, *, author: str = "alice") -> None:
        """A member takes a reaction back: MESSAGE_REACTION_REMOVE to the owning shard."""
        await self._member_reaction(message, emoji, author, add=False)

    async def _member_reaction(self, message: dict[str, Any], emoji: str, author: str, *, add: bool) -> None:
        guild = self._guild_of(self._channel_by_id(message["channel_id"]))
        user = self.member(author)
        users = self._reactions.setdefault(int(message["id"]), {}).setdefault(emoji, [])
        if add and int(user["id"]) not in users:
            users.append(int(user["id"]))
        elif not add and int(user["id"]) in users:
            users.remove(int(user["id"]))
        event, data = self._reaction_event(message, emoji, guild, user, add=add)
        await self._dispatch(self.session_of(guild), event, data)
        await self._notify()

    async def slash(
        self, channel: FakeChannel, command_name: str, /, *, author: str = "alice", **options: Any
    ) -> dict[str, Any]:
        """A member's slash command `/name option=value…` (INTERACTION_CREATE to the owning shard); the
        command must have been synced (its option types come from the sync). `await response_to(it)` is
        the bot's answer as it is now."""
        guild = self._guild_of(channel)
        synced = [*self.synced.get(str(guild.id), []), *self.synced.get("global", [])]
        top, *path = command_name.split()  # `status summary`: a subcommand of a group, as Discord nests it
        command = next((c for c in synced if c["name"] == top), None)
        if command is None:
            raise LookupError(f"/{top} was not synced to the guild or globally")
        chosen: list[dict[str, Any]] = []  # the group and subcommand options, outermost first
        level = command
        for word in path:
            level = next(
                (o for o in level.get("options") or [] if o["name"] == word and o["type"] in (1, 2)), {}
            )
            if not level:
                raise LookupError(f"/{command_name}: /{top} has no subcommand {word}")
            chosen.append({"name": word, "type": level["type"], "options": []})
        types = {option["name"]: option["type"] for option in level.get("options") or []}
        given = [{"name": k, "type": types.get(k, 3), "value": v} for k, v in options.items()]
        for option in reversed(chosen):
            option["options"], given = given, [option]
        data = {"id": command["id"], "name": top, "type": 1, "guild_id": str(guild.id), "options": given}
        return await self._interact(channel, author, 2, data)

    async def press(
        self, message: dict[str, Any], custom_id: str, /, *, author: str = "alice"
    ) -> dict[str, Any]:
        """A member presses the button `custom_id` under `message` (INTERACTION_CREATE, a component, to
        the owning shard); `await response_to(it)` is the bot's answer."""
        channel = self._channel_by_id(message["channel_id"])
        current = self._find_message(message["channel_id"], message["id"]) or message
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interact(channel, author, 3, data, message=self._with_reactions(current))

    async def acknowledged(self, interaction: dict[str, Any], timeout: float) -> None:
        """Wait until the bot has answered `interaction`'s callback (a message, "thinking…", an update);
        AssertionError if it has not within `timeout`."""
        token = interaction["token"]

        async def wait() -> None:
            async with self._changed:
                while token not in self._originals:
                    await self._changed.wait()

        try:
            await wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"interaction not acknowledged within {timeout}s") from None

    async def response_to(
        self,
        interaction: dict[str, Any],
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        """The bot's response to a `slash` as it is now — once it is not "thinking…" any more and, with
        `predicate`, once that holds (a deferred answer is filled in by its first followup)."""
        token = interaction["token"]

        def answered(message: dict[str, Any]) -> bool:
            original = self._originals.get(token) or {}
            ready = message["id"] == original.get("id") and not message["flags"] & 128
            return ready and (predicate is None or predicate(message))

        return await self.wait_for_message(
            answered, timeout, channel=self._channel_by_id(interaction["channel_id"])
        )

    def channel_messages(self, channel: FakeChannel) -> list[dict[str, Any]]:
        """Every message in the channel as a human sees it now, oldest first: members' and the bot's,
        edits applied, deleted ones gone, each with its `reactions` (emoji → user ids) and `edits` count."""
        return [self._as_seen(message) for message in self._channel_log.get(channel.id, [])]

    def _as_seen(self, message: dict[str, Any]) -> dict[str, Any]:
        edits = self._edits.get(int(message["id"]), 0)
        return {**message, "reactions": self.reactions_on(message), "edits": edits}

    def reactions_on(self, message: dict[str, Any]) -> dict[str, list[int]]:
        """The reactions on a message now: emoji → the ids of the users (the bot's included) who reacted."""
        return {e: list(u) for e, u in self._reactions.get(int(message["id"]), {}).items() if u}

    def bot_messages(self, channel: FakeChannel | None = None) -> list[dict[str, Any]]:
        """The bot's messages (in `channel`, or everywhere), as they are now."""
        return [
            self._as_seen(m) for m in self.messages if channel is None or m["channel_id"] == str(channel.id)
        ]

    async def wait_for_message(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 30,
        *,
        channel: FakeChannel | None = None,
        author: str | None = None,
    ) -> dict[str, Any]:
        """The first of the bot's messages (or, with `author`, that member's) for which `predicate`
        holds as the message is now (edits and reactions applied, see `channel_messages`), waiting for
        posts and edits until `timeout`. On timeout the error lists what the channel(s) held."""

        def match() -> dict[str, Any] | None:
            channels = [channel] if channel is not None else [c for g in self.guilds for c in g.channels]
            for candidate in channels:
                # The author first, on the message as stored: only a candidate is copied as seen now.
                for message in self._channel_log.get(candidate.id, []):
                    who = message["author"]
                    mine = who["id"] == self.user["id"] if author is None else who["username"] == author
                    if mine and predicate(seen := self._as_seen(message)):
                        return seen
            return None

        async def wait() -> dict[str, Any]:
            async with self._changed:
                while (found := match()) is None:
                    await self._changed.wait()
                return found

        try:
            return await wait_for(wait(), timeout)
        except TimeoutError:
            said = [f"{m['author']['username']}: {_summary(m)}" for m in self._all_messages(channel)]
            raise AssertionError(f"no matching message within {timeout}s; messages: {said[-20:]}") from None

    def _all_messages(self, channel: FakeChannel | None) -> list[dict[str, Any]]:
        if channel is not None:
            return self.channel_messages(channel)
        everything = [self._as_seen(m) for log in self._channel_log.values() for m in log]
        return sorted(everything, key=lambda m: int(m["id"]))


@contextlib.contextmanager
def pointed_at(url: str, gateway_url: str) -> Iterator[None]:
    """discord.py's REST base and default gateway, swapped for the block (both are class attributes)."""
    route = discord.http.Route
    gateway = discord.gateway.DiscordWebSocket
    old_base, old_gateway = route.BASE, gateway.DEFAULT_GATEWAY
    route.BASE = url + API_PREFIX
    gateway.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield
    finally:
        route.BASE, gateway.DEFAULT_GATEWAY = old_base, old_gateway
