"""`/health` (alive), `/health/ready` (connected and serving) and `/metrics` (Prometheus, see
bot/runtime/metrics.py) on a local port (aiohttp).

Ready means: READY (or RESUMED) received on every gateway shard this process runs and no disconnect
since, taking new work, and the database answering. Both pages list the shards (`shards`: id,
connected, heartbeat latency) and the shard count. While discord.py reconnects after a dropped
connection, `/health/ready` is 503.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web

from bot.db import core
from bot.kernel.log import get_logger
from bot.runtime.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from bot.runtime.app import MendBot

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
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self._metrics = Metrics(bot)

    def _status(self) -> dict[str, object]:
        return process_status(self._bot, self._started)

    async def _health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **self._status()})

    async def _ready(self, _: web.Request) -> web.Response:
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
        return web.Response(body=await self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def start(self) -> int | None:
        """Start serving; returns the bound port, or None when the port is taken (logged)."""
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/health/ready", self._ready)
        app.router.add_get("/metrics", self._metrics_page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:
            _log.warning("health endpoint not started", host=self._host, port=self._port, error=str(exc))
            await self._runner.cleanup()
            self._runner = None
            return None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port
        _log.info("health endpoint up", url=f"http://{self._host}:{self.port}/health")
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
