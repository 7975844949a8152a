"""`/health` (alive), `/health/ready` (connected and serving) and `/metrics` (Prometheus, see
bot/runtime/metrics.py) on a local port (aiohttp).

Ready means: READY (or RESUMED) received on every gateway shard this process runs and no disconnect
since, taking new work, and the database answering. Both pages list the shards (`shards`: id,
connected, heartbeat latency) and the shard count. While discord.py reconnects after a dropped
connection, `/health/ready` is 503.

The port is bound at start, so a taken one is reported then; aiohttp's server side (about 2 MB) is
loaded when the first connection arrives, and serves that connection and every later one.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import TYPE_CHECKING

from mendbot.db import core
from mendbot.kernel.log import get_logger
from mendbot.runtime.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from aiohttp import web

    from mendbot.runtime.app import MendBot

__all__ = ["HealthServer", "process_status"]

_log = get_logger(__name__)
_PING = "SELECT 1"


def process_status(bot: MendBot, started: float) -> dict[str, object]:
    """This process's figures: uptime, Discord, shards, cogs, in-flight work, leadership, storage."""
    return {
        "uptime_s": round(time.monotonic() - started, 1),
        "discord_ready": bot.is_ready(),
        "accepting": bot.accepting,
        "cogs": sorted(bot.cogs),
        "extension_failures": bot.extension_failures,
        "inflight": bot.inflight,
        "shard_count": bot.shard_count,
        "shards": [
            {
                "id": shard.id,
                "connected": shard.connected,
                "latency_ms": None if shard.latency_s is None else round(shard.latency_s * 1000, 1),
            }
            for shard in bot.shard_states()
        ],
        **bot.services.health(),
    }


class HealthServer:
    def __init__(self, bot: MendBot, host: str, port: int) -> None:
        self._bot = bot
        self._host = host
        self._port = port
        self._started = time.monotonic()
        self._sockets: list[socket.socket] = []
        self._serving: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self._metrics = Metrics(bot)

    def _status(self) -> dict[str, object]:
        return process_status(self._bot, self._started)

    async def _health(self, _: web.Request) -> web.Response:
        from aiohttp import web

        return web.json_response({"status": "ok", **self._status()})

    async def _ready(self, _: web.Request) -> web.Response:
        from aiohttp import web

        status = self._status()
        try:
            database = await core.scalar(self._bot.services.db, _PING) == 1
        except Exception:
            database = False
        connected = self._bot.gateway_connected
        ready = self._bot.serving and database
        return web.json_response(
            {
                "status": "ready" if ready else "not ready",
                "database": database,
                "discord_connected": connected,
                **status,
            },
            status=200 if ready else 503,
        )

    async def _metrics_page(self, _: web.Request) -> web.Response:
        from aiohttp import web

        return web.Response(body=await self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def start(self) -> int | None:
        """Bind the port on every address the host resolves to (as asyncio binds them); returns it, or
        None when it cannot be bound (logged). Serving starts with the first connection."""
        loop = asyncio.get_running_loop()
        try:
            found = await loop.getaddrinfo(  # an empty host is every interface, as asyncio reads it
                self._host or None, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            port = self._port
            bound: set[tuple[int, str]] = set()
            for family, _, _, _, address in found:
                if (family, str(address[0])) in bound:
                    continue
                bound.add((family, str(address[0])))
                listener = socket.create_server((address[0], port, *address[2:]), family=family, backlog=128)
                self._sockets.append(listener)
                port = listener.getsockname()[1]  # port 0: the others take the one the first was given
        except OSError as exc:
            _log.warning("health endpoint not started", host=self._host, port=self._port, error=str(exc))
            self._close_sockets()
            return None
        self.port = port
        for listener in self._sockets:
            listener.setblocking(False)
            loop.add_reader(listener.fileno(), self._first_connection)
        _log.info("health endpoint up", url=f"http://{self._host}:{self.port}/health")
        return self.port

    def _first_connection(self) -> None:
        loop = asyncio.get_running_loop()
        for listener in self._sockets:
            loop.remove_reader(listener.fileno())
        self._serving = asyncio.ensure_future(self._serve(self._sockets))
        self._serving.add_done_callback(self._served)

    async def _serve(self, listeners: list[socket.socket]) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/health/ready", self._ready)
        app.router.add_get("/metrics", self._metrics_page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        for listener in listeners:
            await web.SockSite(self._runner, listener).start()

    def _served(self, serving: asyncio.Task[None]) -> None:
        if serving.cancelled() or serving.exception() is None:
            return
        # Refuse from now on rather than leave probes waiting in the backlog of a port nobody serves.
        _log.error("health endpoint failed", port=self.port, exc_info=serving.exception())
        for listener in self._sockets:
            listener.close()

    def _close_sockets(self) -> None:
        for listener in self._sockets:
            listener.close()
        self._sockets = []

    async def stop(self) -> None:
        if not self._sockets:
            return
        if self._serving is None:
            loop = asyncio.get_running_loop()
            for listener in self._sockets:
                loop.remove_reader(listener.fileno())
        elif not self._serving.done():
            self._serving.cancel()
            await asyncio.gather(self._serving, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()  # closes the listening sockets with the server
            self._runner = None
        self._close_sockets()
