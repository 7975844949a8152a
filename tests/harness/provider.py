"""Another service a bot calls, for tests: a real HTTP server on 127.0.0.1 (aiohttp's web server).

It answers a search (`ok`), rate-limits with 429 and a `Retry-After` (`rate_limit`), fails (`down`: 503),
or holds every request until the client's own timeout gives up on it (`hold`): the test never sleeps to
make a call time out, the client's short timeout does. Held requests are let go when the provider stops,
so stopping never waits out a shutdown timeout.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from aiohttp import web

__all__ = ["Provider", "ProviderMode"]

ProviderMode = Literal["ok", "hold", "rate_limit", "down"]


@dataclass
class Provider:
    """A search provider the bot's code calls; `mode` says how it answers the next requests."""

    mode: ProviderMode = "ok"
    retry_after: str = "30"
    requests: list[str] = field(default_factory=list)  # each request's path and query, as received
    held: int = 0  # requests waiting now
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    _port: int | None = None

    async def __aenter__(self) -> Provider:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = int(sock.getsockname()[1])
        await web.SockSite(runner, sock).start()
        self._runner = runner
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        assert self._port is not None, "the provider is not started"
        return f"http://127.0.0.1:{self._port}"

    @property
    def service(self) -> str:
        """The service's name as mendbot records it: its host and port."""
        return f"127.0.0.1:{self._port}"

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        if self.mode == "hold":
            self.held += 1
            try:
                await self._release.wait()
            finally:
                self.held -= 1
            return web.json_response({"results": []})
        if self.mode == "rate_limit":
            headers = {"Retry-After": self.retry_after}
            return web.json_response({"error": "slow down"}, status=429, headers=headers)
        if self.mode == "down":
            return web.json_response({"error": "maintenance"}, status=503)
        query = request.query.get("q", "")
        return web.json_response({"results": [{"title": f"All about {query}"}]})
