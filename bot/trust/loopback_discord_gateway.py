"""The loopback Discord's gateway: the websocket discord.py's client connects to, and the application it is.

`GatewayDouble` holds what READY carries — the bot application's token, ids and user, the owner and the
guilds — and answers the gateway as Discord does: HELLO, heartbeat acks (after a round trip's worth),
IDENTIFY with READY and one GUILD_CREATE per guild, RESUME on the same session — replaying the events
dispatched since the sequence the client last saw, those sent while its connection was down included,
as Discord does (a new IDENTIFY gets none of them). It speaks shards as
Discord does: each IDENTIFY's `shard: [id, count]` is kept on its `GatewaySession` (in `sessions`,
`shards_identified`), READY carries it, and a guild's GUILD_CREATE and events go only to the shard that
owns it (`session_of(guild)`). `add_guild(name, shard=, shard_count=)` adds a guild whose time-encoding
id that shard owns; `drop_shard(id)` drops one shard. Scripted failures: `close_on_identify(code)` (4004,
4010–4014), `refuse_gateway()` (gateway upgrades get 503, REST keeps working),
`hold_gateway()`/`release_gateway()` (new gateway connections wait before HELLO) and `drop_gateway(code)`;
`identified`/`resumed` count gateway sessions; `greeted` says that every session was sent READY and its
guilds (an event dispatched after reaches the bot after them). Text gateway frames need no zlib
(HARNESS-NOTES).

It is the lowest layer of `DiscordDouble` (`mendbot.trust.loopback_discord`): the REST half
(`mendbot.trust.loopback_discord_rest`) builds on it, to send the bot's own doings back over the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from mendbot.trust.loopback_discord_model import FakeGuild, bot_token, shard_of, snowflake

__all__ = ["GatewayDouble", "GatewaySession"]

HEARTBEAT_INTERVAL_MS = 41_250
HEARTBEAT_ACK_DELAY_S = 0.05
# Application flags: the Message Content intent, as Discord reports it for an unverified bot.
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19
_REPLAYABLE = 1000  # frames a session keeps for a RESUME to replay


@dataclass
class GatewaySession:
    """One IDENTIFY that was answered with READY: the shard it asked for and its live connection."""

    id: str
    shard: tuple[int, int]  # [shard id, shard count] as IDENTIFY sent it; (0, 1) when it sent none
    ws: web.WebSocketResponse
    sequence: int = 0
    identified_at: float = field(default_factory=time.monotonic)  # when its IDENTIFY came
    guild_ids: list[int] = field(default_factory=list)  # the guilds GUILD_CREATE was sent for, in order
    greeted: bool = False  # READY and every GUILD_CREATE sent: an event dispatched now reaches the bot after
    # Every dispatched frame, newest last: what a RESUME after a dropped connection gets replayed.
    sent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_REPLAYABLE))


class GatewayDouble:
    """Discord's gateway on 127.0.0.1 (or a unix socket), and the bot application it serves."""

    def __init__(self, *, message_content_intent: bool, unix_socket: Path | None) -> None:
        self.unix_socket = unix_socket  # listen there instead of a port on 127.0.0.1
        self.application_id = snowflake()
        self.token = bot_token(self.application_id)
        self.owner = self._user(snowflake(), "owner", bot=False)
        self.user = self._user(self.application_id, "mendbot", bot=True)
        self.guild = FakeGuild()
        self.guilds: list[FakeGuild] = [self.guild]
        self.application_flags = GATEWAY_MESSAGE_CONTENT_LIMITED if message_content_intent else 0
        self.requests: list[tuple[str, str]] = []
        # (event, the id of what it is about) → when its frame was handed to the bot's connection
        # (`time.perf_counter()`): when a member's message or interaction reached the bot.
        self.sent_at: dict[tuple[str, str], float] = {}
        self.identified = 0
        self.resumed = 0
        self.gateway_asked = asyncio.Event()  # set at the first gateway connection attempt
        self.gateway_attempts: list[float] = []  # when each gateway connection was asked for (monotonic)
        self._identify_close: int | None = None
        self._gateway_refused = False
        self._gateway_open = asyncio.Event()
        self._gateway_open.set()
        self._sockets: set[web.WebSocketResponse] = set()
        self._acks: set[asyncio.Task[None]] = set()  # heartbeat acks on their way
        self.sessions: dict[str, GatewaySession] = {}  # every session identified, by its id
        self.port = 0

    @property
    def host(self) -> str:
        return "discord.invalid" if self.unix_socket is not None else f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}/gateway/"

    # -- scripting ----------------------------------------------------------------------------

    def close_on_identify(self, code: int | None) -> None:
        """Close the gateway with `code` in reply to IDENTIFY (4004 bad token, 4010–4014)."""
        self._identify_close = code

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

    @property
    def greeted(self) -> bool:
        """A session identified, and each one sent READY and its guilds: the bot reads any event dispatched
        from now on after them, on the same connection."""
        return bool(self.sessions) and all(session.greeted for session in self.sessions.values())

    def session_of(self, guild: FakeGuild) -> GatewaySession:
        """The session whose shard owns the guild (its events go there and nowhere else): the newest open
        one, else — the connection dropped, as in an outage — the newest one, whose events wait for a
        RESUME to replay them, as Discord keeps them."""
        owners = [
            session
            for session in self.sessions.values()
            if shard_of(guild.id, session.shard[1]) == session.shard[0]
        ]
        if not owners:
            raise LookupError(f"no gateway session owns guild {guild.id}")
        open_ = [session for session in owners if not session.ws.closed]
        return (open_ or owners)[-1]

    async def drop_shard(self, shard_id: int, code: int = 4000) -> None:
        """Close the connections of one shard's sessions with `code` (4000: the client resumes)."""
        for session in self.sessions.values():
            if session.shard[0] == shard_id and not session.ws.closed:
                await session.ws.close(code=code, message=b"dropped by the test")

    # -- gateway ------------------------------------------------------------------------------

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

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("GATEWAY", request.path))
        self.gateway_attempts.append(time.monotonic())
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
        frame = {"op": 0, "t": event, "s": session.sequence, "d": data}
        session.sent.append(frame)
        if isinstance(data, dict) and "id" in data:
            self.sent_at[(event, str(data["id"]))] = time.perf_counter()
        if not session.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):  # closing meanwhile: kept for RESUME
                await self._send(session.ws, frame)

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
        session.greeted = True
        return session

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> GatewaySession | None:
        session = self.sessions.get(str(data.get("session_id")))
        if data.get("token") != self.token or session is None:
            await self._send(ws, {"op": 9, "d": False})  # invalid session: identify again
            return None
        self.resumed += 1
        session.ws = ws  # the resumed session's events now go over the new connection
        # What the client missed since the last sequence it saw is replayed first, as Discord does.
        seen = int(data.get("seq") or 0)
        for frame in [frame for frame in session.sent if frame["s"] > seen]:
            await self._send(ws, frame)
        await self._dispatch(session, "RESUMED", {})
        return session
