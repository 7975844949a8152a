"""Health endpoints: /health answers while alive, /health/ready only when serving and all shards connected."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mendbot.runtime.app import MendBot
from mendbot.runtime.health import HealthServer
from mendbot.runtime.services import build_services
from mendbot.runtime.startup import start_on_discord
from mendbot.tools.playground import VirtualWorld
from mendbot.trust.loopback_discord import DiscordDouble
from tests.harness.discord import make_settings


async def test_health_and_readiness(world: VirtualWorld) -> None:
    """/health is 200 with the loaded cogs; /health/ready turns 503 once the bot stops accepting."""
    server = HealthServer(world.bot, "127.0.0.1", 0)
    port = await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/health") as response:
                body = await response.json()
                assert response.status == 200
                assert body["cogs"] == [
                    "Audit",
                    "Chat",
                    "Dashboard",
                    "DevMode",
                    "Dice",
                    "Drill",
                    "Help",
                    "Improve",
                    "Incidents",
                    "Remind",
                    "Ship",
                ]
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


async def test_an_empty_host_serves_every_interface(world: VirtualWorld) -> None:
    """`health.host: ""` binds every interface (as asyncio reads an empty host); loopback reaches it."""
    server = HealthServer(world.bot, "", 0)
    port = await server.start()
    assert port is not None
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as response:
            assert response.status == 200
    finally:
        await server.stop()


async def test_a_host_with_two_addresses_is_served_on_both_on_one_port(
    world: VirtualWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host resolving to ::1 and 127.0.0.1 (`localhost` on many machines) answers on each, one port."""
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback here")
    loop = asyncio.get_running_loop()

    async def dual_stack(host: object, port: int, **_: object) -> list[Any]:
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(loop, "getaddrinfo", dual_stack)  # this machine's resolver gives one of them
    server = HealthServer(world.bot, "localhost", 0)
    port = await server.start()
    monkeypatch.undo()
    try:
        async with aiohttp.ClientSession() as http:
            for address in ("[::1]", "127.0.0.1"):
                async with http.get(f"http://{address}:{port}/health") as response:
                    assert response.status == 200
    finally:
        await server.stop()


async def test_ready_follows_the_gateway_connection(tmp_path: Path) -> None:
    """/health/ready is 503 while the gateway connection is down and 200 again once it resumed."""
    async with DiscordDouble() as discord_api:
        with discord_api.pointed_at():
            settings = make_settings(
                tmp_path / "data",
                discord_token=discord_api.token,
                discord={"dev_guild_id": discord_api.guild.id},
            )
            services = await build_services(settings, watch_prompts=False)
            bot = MendBot(services, guild_ready_timeout=0.05)
            server = HealthServer(bot, "127.0.0.1", 0)
            port = await server.start()
            start = asyncio.create_task(start_on_discord(bot, discord_api.token))
            try:
                await asyncio.wait_for(bot.wait_until_ready(), timeout=30)
                async with aiohttp.ClientSession() as http:
                    url = f"http://127.0.0.1:{port}/health/ready"
                    async with http.get(url) as response:
                        assert response.status == 200
                    discord_api.hold_gateway()  # the reconnect waits for HELLO until released
                    disconnected = asyncio.ensure_future(bot.wait_for("disconnect", timeout=30))
                    await discord_api.drop_gateway()
                    await disconnected
                    async with http.get(url) as response:
                        assert response.status == 503
                        assert (await response.json())["discord_connected"] is False
                    resumed = asyncio.ensure_future(bot.wait_for("resumed", timeout=30))
                    discord_api.release_gateway()
                    await resumed
                    async with http.get(url) as response:
                        assert response.status == 200
                    assert discord_api.resumed == 1 and discord_api.identified == 1
            finally:
                await bot.close()
                await asyncio.wait_for(start, timeout=30)
                await server.stop()
                await services.aclose()


@asynccontextmanager
async def _two_shards_live(tmp_path: Path) -> AsyncIterator[tuple[DiscordDouble, MendBot, str]]:
    """A bot running shards 0 and 1 of 2 on the loopback Discord, ready; the health server's base URL."""
    async with DiscordDouble() as discord_api:
        discord_api.max_concurrency = 2  # both shards may identify at once
        with discord_api.pointed_at():
            settings = make_settings(
                tmp_path / "data",
                discord_token=discord_api.token,
                discord={"dev_guild_id": discord_api.guild.id, "shard_count": 2},
            )
            services = await build_services(settings, watch_prompts=False)
            bot = MendBot(services, guild_ready_timeout=0.05)
            server = HealthServer(bot, "127.0.0.1", 0)
            port = await server.start()
            start = asyncio.create_task(start_on_discord(bot, discord_api.token))
            try:
                await asyncio.wait_for(bot.wait_until_ready(), timeout=30)
                yield discord_api, bot, f"http://127.0.0.1:{port}"
            finally:
                await bot.close()
                await asyncio.wait_for(start, timeout=30)
                await server.stop()
                await services.aclose()


async def test_health_and_metrics_list_each_shard(tmp_path: Path) -> None:
    """/health names the shard count and each shard this process runs, connected; /metrics gauges each."""
    async with _two_shards_live(tmp_path) as (_, _, base), aiohttp.ClientSession() as http:
        async with http.get(f"{base}/health") as response:
            body = await response.json()
        assert body["shard_count"] == 2
        assert [(shard["id"], shard["connected"]) for shard in body["shards"]] == [(0, True), (1, True)]
        assert all("latency_ms" in shard for shard in body["shards"])
        async with http.get(f"{base}/metrics") as response:
            text = await response.text()
        assert 'mendbot_discord_shard_connected{shard="0"} 1.0' in text
        assert 'mendbot_discord_shard_connected{shard="1"} 1.0' in text
        assert 'mendbot_discord_shard_latency_seconds{shard="1"}' in text


async def test_one_shard_down_makes_the_process_not_ready(tmp_path: Path) -> None:
    """With shard 1 disconnected /health/ready is 503 and says which shard; after it resumes, 200 again."""
    async with _two_shards_live(tmp_path) as (discord_api, bot, base), aiohttp.ClientSession() as http:
        discord_api.hold_gateway()  # the reconnect waits for HELLO until released
        disconnected = asyncio.ensure_future(bot.wait_for("shard_disconnect", timeout=30))
        await discord_api.drop_shard(1)
        assert await disconnected == 1
        async with http.get(f"{base}/health/ready") as response:
            assert response.status == 503
            body = await response.json()
        assert body["discord_connected"] is False
        assert [(shard["id"], shard["connected"]) for shard in body["shards"]] == [(0, True), (1, False)]
        async with http.get(f"{base}/metrics") as response:
            assert 'mendbot_discord_shard_connected{shard="1"} 0.0' in await response.text()
        resumed = asyncio.ensure_future(bot.wait_for("shard_resumed", timeout=30))
        discord_api.release_gateway()
        assert await resumed == 1
        async with http.get(f"{base}/health/ready") as response:
            assert response.status == 200
