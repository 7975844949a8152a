"""A loopback Discord that the real discord.py HTTP client and gateway connect to.

It is the proof's observer (`bot.improve.replay`): a bot started from a checkout in the sandbox connects
to it over a unix socket bound into the sandbox (`unix_socket=`; `discord.invalid` is then the host in
its URLs), and what it answers each replayed call is judged here, outside the process under test. The
tests use it too, on 127.0.0.1.

simcord (tests/harness/discord.py) swaps discord.py's HTTP client out; this double keeps it in and
answers it over real sockets, so the start-up path — login, application info, the command sync,
IDENTIFY, READY, RESUME — and doctor's REST checks run exactly as against Discord::

    async with DiscordDouble() as discord_api:
        with discord_api.pointed_at():
            discord_api.fail_sync(403)
            settings = make_settings(data_dir, discord_token=discord_api.token,
                                     discord={"dev_guild_id": discord_api.guild.id})
            assert await _run(settings) == 78        # bot.__main__'s `mendbot run`

`pointed_at()` sets `discord.http.Route.BASE` and `DiscordWebSocket.DEFAULT_GATEWAY` (READY's
`resume_gateway_url` is loopback too).

It speaks shards as Discord does: `GET /gateway/bot` answers its loopback gateway and
`recommended_shards`; each IDENTIFY's `shard: [id, count]` is kept on its `GatewaySession` (in
`sessions`, `shards_identified`), READY carries it, and a guild's GUILD_CREATE and messages go only to
the shard that owns it, `(guild_id >> 22) % count`. `add_guild(name, shard=, shard_count=)` adds a guild
whose time-encoding id that shard owns; `send_message(channel, text)` is a member's message on the
owning shard and `answer_to(message)` waits for the bot's answer; `drop_shard(id)` drops one shard.

What people do and see, for tests of the whole loop (a `mendbot run` process: tests/harness/live_bot.py):
`member(name, roles=)` is a member with a stable id (for `access.allowed_user_ids`) and roles
(`FakeGuild.add_role` before the bot connects, `await create_role(guild, name)` after), answered by
`GET /guilds/{g}/members/{id}` and `GET /users/{id}`; `send_message(channel, text,
author=, reply_to=, mention_bot=)`, `mention(channel, text, reply_to=)` (`@mendbot …`: the bot in
`mentions`), `reply(message, text)` (`message_reference` and the resolved `referenced_message`) and
`react(message, emoji)`/`unreact(…)` (MESSAGE_REACTION_ADD/REMOVE) are dispatched to the shard owning the
guild. The bot's REST calls keep the channels' state: posts, edits (PATCH), deletes, its own reactions
(PUT/DELETE …/reactions/{emoji}/@me), typing, uploads (multipart: the files' names are kept), and `GET`
of a message or of a channel's history; like Discord, its own posts, edits, deletes and reactions come
back to it over the gateway (`echo=False` turns that off). `channel_messages(channel)` is a channel as a
human sees it now (edits applied, each with `reactions` emoji → user ids and an `edits` count),
`bot_messages(channel)` the bot's part of it,
`reactions_on(message)` one message's reactions, and `await wait_for_message(predicate, timeout,
channel=, author=)` waits (on changes, not by sleeping) for the first of the bot's messages — or a
member's — that matches as it is now. `message_text(message)` is what a human reads in it (content and
embeds). `slash(channel, "fix", author=, **options)` is a member's slash command (INTERACTION_CREATE; the
interaction callback, the followup webhook and `@original` edits are answered, a deferred "thinking…"
message is filled by the first followup as on Discord) and `await response_to(interaction, predicate)` its
answer as it is now. Calls the double cannot answer are listed in `unknown_routes` (404).

Scripted failures: `fail_sync(status)` (403 Missing Access / 400 Invalid Form Body),
`close_on_identify(code)` (4004, 4010–4014), `refuse()`/`accept()` (nothing listening: connection
refused), `refuse_gateway()` (gateway upgrades get 503, REST keeps working),
`hold_gateway()`/`release_gateway()` (new gateway connections wait before HELLO) and `drop_gateway(code)`;
the guild's channels, permission overwrites and membership, and the application's flags, are plain
attributes to change. Everything asked is recorded in `requests`; commands synced in
`synced`, messages posted in `messages`; `identified`/`resumed` count gateway sessions.

A process can be pointed at a double too: `python -m tests.harness.pointed API_URL GATEWAY_URL -- run …`
runs the real `mendbot` entry point with both URLs swapped.

Facts it depends on (HARNESS-NOTES): discord.py decodes JSON only with `Content-Type` exactly
`application/json`; the sync reply must echo the commands with ids; text gateway frames need no zlib;
snowflakes encode the current time (discord.py derives `created_at` from them).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord
import yarl
from aiohttp import BodyPartReader, WSMsgType, web

__all__ = [
    "DiscordDouble",
    "FakeChannel",
    "FakeGuild",
    "GatewaySession",
    "message_text",
    "pointed_at",
    "shard_of",
]

API_PREFIX = "/api/v10"
HEARTBEAT_INTERVAL_MS = 41_250
HEARTBEAT_ACK_DELAY_S = 0.05
# Application flags: the Message Content intent, as Discord reports it for an unverified bot.
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19
# What Discord answers when a bot lacks access, has a bad token or names an unknown thing.
MISSING_ACCESS = {"message": "Missing Access", "code": 50001}
UNKNOWN_GUILD = {"message": "Unknown Guild", "code": 10004}
UNKNOWN_CHANNEL = {"message": "Unknown Channel", "code": 10003}
UNAUTHORIZED = {"message": "401: Unauthorized", "code": 0}
INVALID_FORM_BODY = {
    "message": "Invalid Form Body",
    "code": 50035,
    "errors": {
        "0": {
            "description": {
                "_errors": [
                    {"code": "BASE_TYPE_BAD_LENGTH", "message": "Must be between 1 and 100 in length."}
                ]
            }
        }
    },
}
_ids = itertools.count()


def snowflake(shard: int | None = None, shard_count: int = 1) -> int:
    """A fresh id that, like Discord's, encodes the current time.

    With `shard`, the id is one that shard owns (`(id >> 22) % shard_count == shard`): its timestamp is
    moved back at most `shard_count - 1` milliseconds, still the current time for anything that reads it.
    """
    now = datetime.datetime.now(datetime.UTC)
    stamp = discord.utils.time_snowflake(now) >> 22
    if shard is not None:
        stamp -= (stamp - shard) % shard_count
    return (stamp << 22) + next(_ids) % 4096


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard that receives a guild's events (Discord's rule)."""
    return (guild_id >> 22) % shard_count


async def _body(request: web.Request) -> Any:
    """A request's JSON: the body, or a multipart upload's `payload_json` (its files named in
    `attachments`, their bytes dropped)."""
    if not request.can_read_body:
        return None
    if request.content_type != "multipart/form-data":
        return await request.json()
    payload: dict[str, Any] = {}
    files: list[str] = []
    async for part in await request.multipart():
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "payload_json":
            payload = json.loads(await part.text())
        else:
            files.append(part.filename or part.name or "file")
            await part.read()
    if files:
        payload["attachments"] = [{"id": str(i), "filename": name} for i, name in enumerate(files)]
    return payload


def _unknown_message() -> web.Response:
    return _json({"message": "Unknown Message", "code": 10008}, 404)


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


def _json(payload: Any, status: int = 200) -> web.Response:
    # Exactly `application/json`: json_response's "; charset=utf-8" makes discord.py treat it as text.
    return web.Response(body=json.dumps(payload).encode(), status=status, content_type="application/json")


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


@dataclass
class GatewaySession:
    """One IDENTIFY that was answered with READY: the shard it asked for and its live connection."""

    id: str
    shard: tuple[int, int]  # [shard id, shard count] as IDENTIFY sent it; (0, 1) when it sent none
    ws: web.WebSocketResponse
    sequence: int = 0
    guild_ids: list[int] = field(default_factory=list)  # the guilds GUILD_CREATE was sent for, in order


class DiscordDouble:
    """Discord's REST API and gateway on 127.0.0.1, for one bot application."""

    def __init__(
        self,
        *,
        message_content_intent: bool = True,
        recommended_shards: int = 1,
        echo: bool = True,
        unix_socket: Path | None = None,
    ) -> None:
        self.unix_socket = unix_socket  # listen there instead of a port on 127.0.0.1
        self.echo = echo  # the bot's own posts, edits and deletes come back over the gateway, as on Discord
        self.token = f"double.{secrets.token_urlsafe(24)}"
        self.application_id = snowflake()
        self.owner = self._user(snowflake(), "owner", bot=False)
        self.user = self._user(self.application_id, "mendbot", bot=True)
        self.guild = FakeGuild()
        self.guilds: list[FakeGuild] = [self.guild]
        self.recommended_shards = recommended_shards  # what GET /gateway/bot answers
        self.application_flags = GATEWAY_MESSAGE_CONTENT_LIMITED if message_content_intent else 0
        self.requests: list[tuple[str, str]] = []
        self.unknown_routes: list[str] = []  # "METHOD /path" of every REST call the double cannot answer
        self.synced: dict[str, list[dict[str, Any]]] = {}  # "global" or the guild id → commands
        self.messages: list[dict[str, Any]] = []  # the bot's messages, as they are now (edits applied)
        self.members: dict[str, dict[str, Any]] = {}  # member name → its user payload (stable ids)
        self.member_roles: dict[int, list[str]] = {}  # member id → its role ids (see `member`)
        self._channel_log: dict[int, list[dict[str, Any]]] = {}  # channel id → every message, oldest first
        self._reactions: dict[int, dict[str, list[int]]] = {}  # message id → emoji → user ids, in order
        self._edits: dict[int, int] = {}  # message id → how many times the bot edited it
        self.interactions: dict[str, dict[str, Any]] = {}  # token → an interaction a test dispatched
        self._originals: dict[str, dict[str, Any]] = {}  # token → the interaction's response message
        self._changed = asyncio.Condition()  # notified at every message posted, edited, reacted to
        self.identified = 0
        self.resumed = 0
        self.gateway_asked = asyncio.Event()  # set at the first gateway connection attempt
        self._posted = asyncio.Event()  # set (and cleared by waiters) at every message the bot posts
        self._sync_error: tuple[int, dict[str, Any]] | None = None
        self._identify_close: int | None = None
        self._gateway_refused = False
        self._gateway_open = asyncio.Event()
        self._gateway_open.set()
        self._sockets: set[web.WebSocketResponse] = set()
        self._acks: set[asyncio.Task[None]] = set()  # heartbeat acks on their way
        self.sessions: dict[str, GatewaySession] = {}  # every session identified, by its id
        self._runner: web.AppRunner | None = None
        self._site: web.BaseSite | None = None
        self.port = 0

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

    @property
    def host(self) -> str:
        return "discord.invalid" if self.unix_socket is not None else f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}/gateway/"

    @contextlib.contextmanager
    def pointed_at(self) -> Iterator[None]:
        """Point discord.py (REST and gateway) at this double for the duration of the block."""
        with pointed_at(self.url, self.gateway_url):
            yield

    # -- scripting ----------------------------------------------------------------------------

    def fail_sync(self, status: int, body: dict[str, Any] | None = None) -> None:
        """Answer every command sync with this error (403 Missing Access, 400 Invalid Form Body)."""
        default = INVALID_FORM_BODY if status == 400 else MISSING_ACCESS
        self._sync_error = (status, body or default)

    def close_on_identify(self, code: int | None) -> None:
        """Close the gateway with `code` in reply to IDENTIFY (4004 bad token, 4010–4014)."""
        self._identify_close = code

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

    def refuse_gateway(self, refused: bool = True) -> None:
        """Answer gateway upgrades with 503 (REST keeps working), as in a gateway outage."""
        self._gateway_refused = refused

    def hold_gateway(self) -> None:
        """New gateway connections are accepted but get no HELLO until `release_gateway()`."""
        self._gateway_open.clear()

    def release_gateway(self) -> None:
        self._gateway_open.set()

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close every gateway connection with `code` (4000 is resumable: the client resumes)."""
        for ws in list(self._sockets):
            await ws.close(code=code, message=b"dropped by the test")

    @property
    def paths(self) -> list[str]:
        return [f"{method} {path}" for method, path in self.requests]

    def add_guild(self, name: str, *, shard: int | None = None, shard_count: int = 1) -> FakeGuild:
        """Another guild the bot is in; with `shard`, one whose id that shard of `shard_count` owns."""
        guild = FakeGuild(name=name, id=snowflake(shard, shard_count))
        self.guilds.append(guild)
        return guild

    @property
    def shards_identified(self) -> list[tuple[int, int]]:
        """The [shard id, shard count] of every session identified, in order."""
        return [session.shard for session in self.sessions.values()]

    def session_of(self, guild: FakeGuild) -> GatewaySession:
        """The newest open session whose shard owns the guild (its events go there and nowhere else)."""
        owners = [
            session
            for session in self.sessions.values()
            if not session.ws.closed and shard_of(guild.id, session.shard[1]) == session.shard[0]
        ]
        if not owners:
            raise LookupError(f"no gateway session owns guild {guild.id}")
        return owners[-1]

    async def answer_to(self, message: dict[str, Any]) -> dict[str, Any]:
        """Wait for the bot's first message in `message`'s channel after it (ids encode the time)."""
        while True:
            for posted in self.messages:
                if posted["channel_id"] == message["channel_id"] and int(posted["id"]) > int(message["id"]):
                    return posted
            self._posted.clear()
            await self._posted.wait()

    async def drop_shard(self, shard_id: int, code: int = 4000) -> None:
        """Close the connections of one shard's sessions with `code` (4000: the client resumes)."""
        for session in self.sessions.values():
            if session.shard[0] == shard_id and not session.ws.closed:
                await session.ws.close(code=code, message=b"dropped by the test")

    def member(self, name: str, *, roles: list[int] | None = None) -> dict[str, Any]:
        """The user payload of the member called `name`: the same id every time it is asked for (an
        allow-list names it by `int(double.member("alice")["id"])`); `roles` (ids from
        `FakeGuild.add_role`) are what its member payloads and `GET /guilds/{g}/members/{id}` carry."""
        if name not in self.members:
            self.members[name] = self._user(snowflake(), name, bot=False)
        if roles is not None:
            self.member_roles[int(self.members[name]["id"])] = [str(role) for role in roles]
        return self.members[name]

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

    def _member_payload(self, guild: FakeGuild, user: dict[str, Any]) -> dict[str, Any]:
        return {**guild.member(user), "roles": self.member_roles.get(int(user["id"]), [])}

    def _known_user(self, user_id: str) -> dict[str, Any] | None:
        if user_id == self.user["id"]:
            return self.user
        return next((user for user in self.members.values() if user["id"] == user_id), None)

    def _guild_of(self, channel: FakeChannel) -> FakeGuild:
        return next(guild for guild in self.guilds if channel in guild.channels)

    def _channel_by_id(self, channel_id: str | int) -> FakeChannel:
        found = self._find_channel(str(channel_id))
        if found is None:
            raise LookupError(f"no channel {channel_id}")
        return found[1]

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
        command = next((c for c in synced if c["name"] == command_name), None)
        if command is None:
            raise LookupError(f"/{command_name} was not synced to the guild or globally")
        types = {option["name"]: option["type"] for option in command.get("options") or []}
        user = self.member(author)
        member = {**self._member_payload(guild, user), "permissions": str(discord.Permissions.all().value)}
        interaction: dict[str, Any] = {
            "id": str(snowflake()),
            "application_id": str(self.application_id),
            "type": 2,
            "data": {
                "id": command["id"],
                "name": command_name,
                "type": 1,
                "guild_id": str(guild.id),
                "options": [{"name": k, "type": types.get(k, 3), "value": v} for k, v in options.items()],
            },
            "guild_id": str(guild.id),
            "channel_id": str(channel.id),
            "channel": {**channel.payload(guild.id, guild.channels.index(channel))},
            "member": member,
            "token": secrets.token_urlsafe(32),
            "version": 1,
            "app_permissions": str(guild.bot_role_permissions),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": 8 * 1024 * 1024,
        }
        self.interactions[interaction["token"]] = interaction
        await self._dispatch(self.session_of(guild), "INTERACTION_CREATE", interaction)
        return interaction

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
                for seen in self.channel_messages(candidate):
                    who = seen["author"]
                    mine = who["id"] == self.user["id"] if author is None else who["username"] == author
                    if mine and predicate(seen):
                        return seen
            return None

        async def wait() -> dict[str, Any]:
            async with self._changed:
                while (found := match()) is None:
                    await self._changed.wait()
                return found

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            said = [f"{m['author']['username']}: {_summary(m)}" for m in self._all_messages(channel)]
            raise AssertionError(f"no matching message within {timeout}s; messages: {said[-20:]}") from None

    def _all_messages(self, channel: FakeChannel | None) -> list[dict[str, Any]]:
        if channel is not None:
            return self.channel_messages(channel)
        everything = [self._as_seen(m) for log in self._channel_log.values() for m in log]
        return sorted(everything, key=lambda m: int(m["id"]))

    # -- REST ---------------------------------------------------------------------------------

    @staticmethod
    def _user(user_id: int, name: str, *, bot: bool) -> dict[str, Any]:
        return {
            "id": str(user_id),
            "username": name,
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": bot,
            "flags": 0,
            "public_flags": 0,
        }

    def _find_guild(self, guild_id: str) -> FakeGuild | None:
        return next((guild for guild in self.guilds if str(guild.id) == guild_id), None)

    def _find_channel(self, channel_id: str) -> tuple[FakeGuild, FakeChannel] | None:
        for guild in self.guilds:
            for channel in guild.channels:
                if str(channel.id) == channel_id:
                    return guild, channel
        return None

    def _can_view(self, guild: FakeGuild, channel: FakeChannel) -> bool:
        permissions = discord.Permissions(guild.everyone_permissions | guild.bot_role_permissions)
        if permissions.administrator:
            return True
        allow, deny = 0, 0
        for overwrite in channel.overwrites:
            if overwrite["id"] in (str(guild.id), str(guild.bot_role_id), self.user["id"]):
                allow |= int(overwrite["allow"])
                deny |= int(overwrite["deny"])
        value = (permissions.value & ~deny) | allow
        return discord.Permissions(value).view_channel

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        self.requests.append((request.method, path))
        parts = path.strip("/").split("/")
        tokened = parts[0] in ("interactions", "webhooks")  # authorised by the interaction's token instead
        if not tokened and request.headers.get("Authorization") != f"Bot {self.token}":
            return _json(UNAUTHORIZED, 401)
        body = await _body(request)
        match request.method, parts:
            case "POST", ["interactions", _, token, "callback"]:
                return await self._interaction_callback(token, body or {})
            case "POST", ["webhooks", app, token] if app == str(self.application_id):
                return await self._followup(token, body or {})
            case ("PATCH" | "GET" | "DELETE") as method, ["webhooks", app, token, "messages", which] if (
                app == str(self.application_id)
            ):
                return await self._webhook_message(method, token, which, body or {})
            case "GET", ["users", "@me"]:
                return _json(self.user)
            case "GET", ["oauth2", "applications", "@me"]:
                return _json(self._application())
            case "GET", ["gateway", "bot"]:
                return _json(
                    {
                        "url": self.gateway_url.rstrip("/"),
                        "shards": self.recommended_shards,
                        "session_start_limit": {
                            "total": 1000,
                            "remaining": 1000,
                            "reset_after": 0,
                            "max_concurrency": 1,
                        },
                    }
                )
            case "PUT", ["applications", app, "commands"] if app == str(self.application_id):
                return self._sync("global", None, body)
            case "PUT", ["applications", app, "guilds", guild_id, "commands"] if app == str(
                self.application_id
            ):
                return self._sync(guild_id, self._find_guild(guild_id), body)
            case "GET", ["applications", app, "guilds", guild_id, "commands"] if app == str(
                self.application_id
            ):
                guild = self._find_guild(guild_id)
                if guild is None or not guild.bot_is_member:
                    return _json(MISSING_ACCESS, 403)
                return _json(self.synced.get(guild_id, []))
            case "GET", ["guilds", guild_id]:
                guild = self._find_guild(guild_id)
                if guild is None:
                    return _json(UNKNOWN_GUILD, 404)
                if not guild.bot_is_member:
                    return _json(MISSING_ACCESS, 403)
                return _json(guild.payload(int(self.owner["id"])))
            case "GET", ["guilds", guild_id, "members", user_id]:
                guild = self._find_guild(guild_id)
                if guild is None or not guild.bot_is_member:
                    return _json(MISSING_ACCESS, 403)
                if user_id == self.user["id"]:
                    return _json(guild.member(self.user))
                known = self._known_user(user_id)
                if known is None:
                    return _json({"message": "Unknown Member", "code": 10007}, 404)
                return _json(self._member_payload(guild, known))
            case "GET", ["users", user_id]:
                known = self._known_user(user_id)
                return _json(known) if known else _json({"message": "Unknown User", "code": 10013}, 404)
            case "GET", ["channels", channel_id]:
                found = self._find_channel(channel_id)
                if found is None:
                    return _json(UNKNOWN_CHANNEL, 404)
                guild, channel = found
                if not guild.bot_is_member or not self._can_view(guild, channel):
                    return _json(MISSING_ACCESS, 403)
                return _json(channel.payload(guild.id, guild.channels.index(channel)))
            case "POST", ["channels", channel_id, "messages"]:
                return await self._post_message(channel_id, body or {})
            case "GET", ["channels", channel_id, "messages"]:
                return self._history(channel_id, request.query)
            case "GET", ["channels", channel_id, "messages", message_id]:
                found_message = self._find_message(channel_id, message_id)
                return _json(self._with_reactions(found_message)) if found_message else _unknown_message()
            case "PATCH", ["channels", channel_id, "messages", message_id]:
                return await self._edit_message(channel_id, message_id, body or {})
            case "DELETE", ["channels", channel_id, "messages", message_id]:
                return await self._delete_message(channel_id, message_id)
            case "PUT", ["channels", channel_id, "messages", message_id, "reactions", emoji, "@me"]:
                return await self._react(channel_id, message_id, emoji, int(self.user["id"]), add=True)
            case "DELETE", ["channels", channel_id, "messages", message_id, "reactions", emoji, who]:
                reactor = int(self.user["id"]) if who == "@me" else int(who)
                return await self._react(channel_id, message_id, emoji, reactor, add=False)
            case "POST", ["channels", channel_id, "typing"]:
                return web.Response(status=204)
        self.unknown_routes.append(f"{request.method} {path}")
        return _json({"message": "404: Not Found", "code": 0}, 404)

    def _application(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id),
            "name": "mendbot",
            "description": "",
            "icon": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": self.owner,
            "team": None,
            "verify_key": "0" * 64,
            "flags": self.application_flags,
            "interactions_endpoint_url": None,
            "bot": self.user,
        }

    def _sync(self, scope: str, guild: FakeGuild | None, commands: Any) -> web.Response:
        if self._sync_error is not None:
            status, error = self._sync_error
            return _json(error, status)
        if scope != "global" and (guild is None or not guild.bot_is_member):
            return _json(MISSING_ACCESS, 403)
        echoed = [
            {
                **command,
                "id": str(snowflake()),
                "application_id": str(self.application_id),
                "version": str(snowflake()),
                **({"guild_id": scope} if scope != "global" else {}),
            }
            for command in commands or []
        ]
        self.synced[scope] = echoed
        return _json(echoed)

    async def _post_message(self, channel_id: str, body: dict[str, Any]) -> web.Response:
        found = self._find_channel(channel_id)
        if found is None:
            return _json(UNKNOWN_CHANNEL, 404)
        guild, channel = found
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            # Discord returns the message the bot already posted with this nonce (minutes) instead.
            for posted in self.messages:
                if posted["channel_id"] == str(channel.id) and posted.get("nonce") == str(nonce):
                    return _json(posted)
        message = self._message(channel, guild, self.user, body.get("content") or "", body)
        if nonce is not None:
            message["nonce"] = str(nonce)
        self.messages.append(message)
        self._channel_log.setdefault(channel.id, []).append(message)
        self._posted.set()
        await self._echo(guild, "MESSAGE_CREATE", message)
        await self._notify()
        return _json(message)

    async def _echo(self, guild: FakeGuild, event: str, data: dict[str, Any]) -> None:
        """Dispatch an event about the bot's own doing to the shard owning the guild, if `echo`."""
        if not self.echo:
            return
        with contextlib.suppress(LookupError):  # no session owns the guild (yet): nobody to tell
            await self._dispatch(self.session_of(guild), event, data)

    def _interaction_message(
        self, interaction: dict[str, Any], body: dict[str, Any], *, loading: bool = False
    ) -> dict[str, Any]:
        channel = self._channel_by_id(interaction["channel_id"])
        message = self._message(channel, self._guild_of(channel), self.user, body.get("content") or "", body)
        user = interaction["member"]["user"]
        message.update(
            type=20,  # CHAT_INPUT_COMMAND
            flags=(body.get("flags") or 0) | (128 if loading else 0),  # 64 ephemeral, 128 "thinking…"
            interaction_metadata={
                "id": interaction["id"],
                "type": 2,
                "user": user,
                "authorizing_integration_owners": {"0": interaction["guild_id"]},
            },
        )
        return message

    async def _store_bot_message(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self._channel_log.setdefault(int(message["channel_id"]), []).append(message)
        self._posted.set()
        if not message["flags"] & 64:  # an ephemeral message is not sent to the channel
            await self._echo(
                self._guild_of(self._channel_by_id(message["channel_id"])), "MESSAGE_CREATE", message
            )
        await self._notify()

    async def _interaction_callback(self, token: str, body: dict[str, Any]) -> web.Response:
        interaction = self.interactions.get(token)
        if interaction is None:
            return _json({"message": "Unknown interaction", "code": 10062}, 404)
        if token in self._originals:
            return _json({"message": "Interaction has already been acknowledged.", "code": 40060}, 400)
        kind, data = body.get("type"), body.get("data") or {}
        if kind in (4, 5):  # a message, or "thinking…" (deferred) until the first followup fills it
            message = self._interaction_message(interaction, data, loading=kind == 5)
            self._originals[token] = message
            await self._store_bot_message(message)
            resource: dict[str, Any] = {"type": kind, "message": message}
        else:  # 6/7 update the message a component was on; 1 pong; 9 modal
            self._originals[token] = {}
            resource = {"type": kind}
            await self._notify()
        original = self._originals[token]
        return _json(
            {
                "interaction": {
                    "id": interaction["id"],
                    "type": interaction["type"],
                    "response_message_id": original.get("id"),
                    "response_message_loading": kind == 5,
                    "response_message_ephemeral": bool(original.get("flags", 0) & 64),
                },
                "resource": resource,
            }
        )

    async def _followup(self, token: str, body: dict[str, Any]) -> web.Response:
        interaction = self.interactions.get(token)
        if interaction is None or token not in self._originals:
            return _json({"message": "Unknown Webhook", "code": 10015}, 404)
        original = self._originals[token]
        if original.get("flags", 0) & 128:  # the first followup after a defer replaces "thinking…"
            return await self._webhook_message(
                "PATCH", token, "@original", {**body, "flags": original["flags"] & ~128}
            )
        message = self._interaction_message(interaction, body)
        await self._store_bot_message(message)
        return _json(message)

    async def _webhook_message(
        self, method: str, token: str, which: str, body: dict[str, Any]
    ) -> web.Response:
        original = self._originals.get(token) or {}
        message_id = original.get("id") if which == "@original" else which
        message = next((m for m in self.messages if m["id"] == message_id), None)
        if message is None:
            return _unknown_message()
        if method == "GET":
            return _json(message)
        if method == "DELETE":
            return await self._delete_message(message["channel_id"], message["id"])
        return await self._edit_message(message["channel_id"], message["id"], body)

    def _find_message(self, channel_id: str, message_id: str) -> dict[str, Any] | None:
        for message in self._channel_log.get(int(channel_id), []):
            if message["id"] == message_id:
                return message
        return None

    def _with_reactions(self, message: dict[str, Any]) -> dict[str, Any]:
        """The message as the REST API shows it: its reactions counted, `me` for the bot's own."""
        me = int(self.user["id"])
        reactions = [
            {
                "emoji": _emoji_payload(emoji),
                "count": len(users),
                "count_details": {"normal": len(users), "burst": 0},
                "me": me in users,
                "me_burst": False,
                "burst_colors": [],
            }
            for emoji, users in self._reactions.get(int(message["id"]), {}).items()
            if users
        ]
        return {**message, "reactions": reactions}

    def _history(self, channel_id: str, query: Any) -> web.Response:
        if self._find_channel(channel_id) is None:
            return _json(UNKNOWN_CHANNEL, 404)
        log = self._channel_log.get(int(channel_id), [])
        before, after = query.get("before"), query.get("after")
        chosen = [
            m
            for m in log
            if (before is None or int(m["id"]) < int(before)) and (after is None or int(m["id"]) > int(after))
        ]
        limit = int(query.get("limit", 50))
        # Newest first, as Discord answers (with `after` alone Discord also answers newest first).
        picked = chosen[:limit] if after is not None and before is None else chosen[-limit:]
        return _json([self._with_reactions(m) for m in reversed(picked)])

    async def _edit_message(self, channel_id: str, message_id: str, body: dict[str, Any]) -> web.Response:
        message = self._find_message(channel_id, message_id)
        if message is None:
            return _unknown_message()
        if message["author"]["id"] != self.user["id"]:
            return _json({"message": "Cannot edit a message authored by another user", "code": 50005}, 403)
        for key in ("content", "embeds", "components", "flags"):
            if key in body:
                message[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        message["edited_timestamp"] = datetime.datetime.now(datetime.UTC).isoformat()
        self._edits[int(message_id)] = self._edits.get(int(message_id), 0) + 1
        await self._echo(self._guild_of(self._channel_by_id(channel_id)), "MESSAGE_UPDATE", message)
        await self._notify()
        return _json(self._with_reactions(message))

    async def _delete_message(self, channel_id: str, message_id: str) -> web.Response:
        message = self._find_message(channel_id, message_id)
        if message is None:
            return _unknown_message()
        self._channel_log[int(channel_id)].remove(message)
        if message in self.messages:
            self.messages.remove(message)
        self._reactions.pop(int(message_id), None)
        await self._echo(
            self._guild_of(self._channel_by_id(channel_id)),
            "MESSAGE_DELETE",
            {"id": message_id, "channel_id": channel_id, "guild_id": message["guild_id"]},
        )
        await self._notify()
        return web.Response(status=204)

    async def _react(
        self, channel_id: str, message_id: str, emoji: str, user_id: int, *, add: bool
    ) -> web.Response:
        message = self._find_message(channel_id, message_id)
        if message is None:
            return _unknown_message()
        users = self._reactions.setdefault(int(message_id), {}).setdefault(emoji, [])
        changed = (user_id not in users) if add else (user_id in users)
        if add and changed:
            users.append(user_id)
        elif changed:
            users.remove(user_id)
        if changed:
            guild = self._guild_of(self._channel_by_id(channel_id))
            user = self.user if user_id == int(self.user["id"]) else self._user(user_id, "someone", bot=False)
            await self._echo(guild, *self._reaction_event(message, emoji, guild, user, add=add))
        await self._notify()
        return web.Response(status=204)

    def _reaction_event(
        self, message: dict[str, Any], emoji: str, guild: FakeGuild, user: dict[str, Any], *, add: bool
    ) -> tuple[str, dict[str, Any]]:
        """MESSAGE_REACTION_ADD/REMOVE as Discord sends it (`type` and `burst_colors` are required)."""
        event: dict[str, Any] = {
            "user_id": user["id"],
            "channel_id": message["channel_id"],
            "message_id": message["id"],
            "guild_id": str(guild.id),
            "emoji": _emoji_payload(emoji),
            "burst": False,
            "type": 0,  # normal, not a super reaction
        }
        if add:
            member = (
                guild.member(user) if user["id"] == self.user["id"] else self._member_payload(guild, user)
            )
            event.update(member=member, message_author_id=message["author"]["id"], burst_colors=[])
        return ("MESSAGE_REACTION_ADD" if add else "MESSAGE_REACTION_REMOVE"), event

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    @staticmethod
    def _message(
        channel: FakeChannel, guild: FakeGuild, author: dict[str, Any], content: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        reference = body.get("message_reference")
        if reference:  # ids as Discord answers them: strings (discord.py sends some as numbers)
            reference = {
                k: str(v) if k.endswith("_id") and v is not None else v for k, v in reference.items()
            }
        return {
            "id": str(snowflake()),
            "channel_id": str(channel.id),
            "guild_id": str(guild.id),
            "author": author,
            "content": content,
            "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [
                {
                    "id": str(snowflake()),
                    "filename": attachment.get("filename") or "file",
                    "size": 0,
                    "url": f"https://cdn.invalid/{attachment.get('filename') or 'file'}",
                    "proxy_url": f"https://cdn.invalid/{attachment.get('filename') or 'file'}",
                }
                for attachment in body.get("attachments") or []
            ],
            "embeds": body.get("embeds") or [],
            "pinned": False,
            "type": 19 if reference else 0,
            "flags": 0,
            "components": body.get("components") or [],
            **({"message_reference": reference} if reference else {}),
        }

    # -- gateway ------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("GATEWAY", request.path))
        self.gateway_asked.set()
        if self._gateway_refused:
            return web.Response(status=503, text="upstream connect error")
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await self._gateway_open.wait()
            if ws.closed:
                return ws
            await self._send(ws, {"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}})
            session: GatewaySession | None = None
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(message.data)
                op, data = frame.get("op"), frame.get("d")
                if op == 1:  # heartbeat
                    # Acked after a round trip's worth, as over a network: discord.py's heartbeat thread
                    # notes the send time only after the loop has sent it, so an instant ack reads as a
                    # latency of a whole interval ("Can't keep up … 41.3s behind").
                    self._acks.add(asyncio.create_task(self._ack_later(ws)))
                elif op == 2:
                    session = await self._identify(ws, data)
                    if session is None:
                        break
                elif op == 6:
                    session = await self._resume(ws, data)
        finally:
            self._sockets.discard(ws)
        return ws

    async def _ack_later(self, ws: web.WebSocketResponse) -> None:
        try:
            await asyncio.sleep(HEARTBEAT_ACK_DELAY_S)
            if not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self._send(ws, {"op": 11})
        finally:
            self._acks.discard(asyncio.current_task())

    async def _send(self, ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        await ws.send_str(json.dumps(frame))

    async def _dispatch(self, session: GatewaySession, event: str, data: Any) -> None:
        session.sequence += 1
        await self._send(session.ws, {"op": 0, "t": event, "s": session.sequence, "d": data})

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> GatewaySession | None:
        self.identified += 1
        if self._identify_close is not None:
            await ws.close(code=self._identify_close, message=b"closed by the test's script")
            return None
        if data.get("token") != self.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        shard_id, shard_count = data.get("shard") or (0, 1)
        if not 0 <= shard_id < shard_count:
            await ws.close(code=4010, message=b"Invalid shard.")
            return None
        session = GatewaySession(secrets.token_hex(16), (shard_id, shard_count), ws)
        self.sessions[session.id] = session
        # A guild's events go to the one shard that owns it, READY's guild list included.
        members = [
            guild
            for guild in self.guilds
            if guild.bot_is_member and shard_of(guild.id, shard_count) == shard_id
        ]
        await self._dispatch(
            session,
            "READY",
            {
                "v": 10,
                "user": self.user,
                "guilds": [{"id": str(guild.id), "unavailable": True} for guild in members],
                "session_id": session.id,
                "resume_gateway_url": self.gateway_url,
                "shard": [shard_id, shard_count],
                "application": {"id": str(self.application_id), "flags": self.application_flags},
            },
        )
        for guild in members:
            payload = guild.payload(int(self.owner["id"]))
            payload.update(
                unavailable=False,
                member_count=1,  # == len(members): discord.py then asks for no member chunks
                members=[guild.member(self.user)],
                channels=[channel.payload(guild.id, i) for i, channel in enumerate(guild.channels)],
                threads=[],
                voice_states=[],
                presences=[],
                stage_instances=[],
                guild_scheduled_events=[],
                soundboard_sounds=[],
                joined_at=datetime.datetime.now(datetime.UTC).isoformat(),
                large=False,
            )
            session.guild_ids.append(guild.id)
            await self._dispatch(session, "GUILD_CREATE", payload)
        return session

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> GatewaySession | None:
        session = self.sessions.get(str(data.get("session_id")))
        if data.get("token") != self.token or session is None:
            await self._send(ws, {"op": 9, "d": False})  # invalid session: identify again
            return None
        self.resumed += 1
        session.ws = ws  # the resumed session's events now go over the new connection
        await self._dispatch(session, "RESUMED", {})
        return session


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
