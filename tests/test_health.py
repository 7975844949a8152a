"""Health endpoints: /health answers while alive, /health/ready only when serving."""

from __future__ import annotations

import aiohttp

from bot.health import HealthServer
from bot.playground import VirtualWorld


async def test_health_and_readiness(world: VirtualWorld) -> None:
    """/health is 200 with the loaded cogs; /health/ready turns 503 once the bot stops accepting."""
    server = HealthServer(world.bot, "127.0.0.1", 0)
    port = await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/health") as response:
                body = await response.json()
                assert response.status == 200
                assert body["cogs"] == ["Chat", "Dice", "Help", "Improve", "Incidents", "Remind", "Ship"]
            async with http.get(f"http://127.0.0.1:{port}/health/ready") as response:
                assert response.status == 200
                assert (await response.json())["database"] is True
            world.bot.accepting = False
            async with http.get(f"http://127.0.0.1:{port}/health/ready") as response:
                assert response.status == 503
    finally:
        world.bot.accepting = True
        await server.stop()


async def test_port_in_use_is_not_fatal(world: VirtualWorld) -> None:
    """A taken port leaves the bot running without the endpoint instead of crashing."""
    first = HealthServer(world.bot, "127.0.0.1", 0)
    port = await first.start()
    assert port is not None
    second = HealthServer(world.bot, "127.0.0.1", port)
    try:
        assert await second.start() is None
    finally:
        await first.stop()
        await second.stop()
