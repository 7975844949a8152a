"""A gateway outage on the loopback Discord: the connection drops, reconnecting is refused for a while,
and a member writes meanwhile. Like a plain discord.py client (the reference), the bot — on one shard
and on two — resumes its session instead of identifying anew, so Discord replays what it missed and the
message sent during the outage is answered; /health/ready and `mendbot_discord_ready` say not ready
while it is down."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest

from mendbot.runtime.app import MendBot
from mendbot.runtime.health import HealthServer
from mendbot.runtime.services import build_services
from mendbot.runtime.startup import start_on_discord
from mendbot.trust.loopback_discord import DiscordDouble
from tests.harness.discord import make_settings


@pytest.fixture
async def discord_api() -> AsyncIterator[DiscordDouble]:
    async with DiscordDouble() as double:
        with double.pointed_at():
            yield double


@contextlib.asynccontextmanager
async def _outage(double: DiscordDouble, client: discord.Client) -> AsyncIterator[None]:
    """The gateway drops every connection and refuses new ones until the block ends and the client has
    been refused at least once (a resume that fails, as in any outage longer than a moment)."""
    disconnected = asyncio.ensure_future(client.wait_for("disconnect", timeout=30))
    double.refuse_gateway()
    double.gateway_asked.clear()
    await double.drop_gateway()
    await disconnected
    try:
        yield
        await asyncio.wait_for(double.gateway_asked.wait(), timeout=30)  # a reconnect was refused
    finally:
        double.refuse_gateway(False)


async def test_a_plain_discord_py_client_resumes_and_sees_what_was_said_meanwhile(
    discord_api: DiscordDouble,
) -> None:
    """The reference: discord.py's plain Client resumes after the outage and receives the message."""
    intents = discord.Intents.default()
    intents.message_content = True
    client = discord.Client(intents=intents)
    seen = asyncio.Event()
    client.event(_collect("said during the outage", seen))
    task = asyncio.create_task(client.start(discord_api.token))
    try:
        await asyncio.wait_for(client.wait_until_ready(), timeout=30)
        async with _outage(discord_api, client):
            await discord_api.send_message(discord_api.guild.channel("general"), "said during the outage")
        await asyncio.wait_for(seen.wait(), timeout=30)
        assert discord_api.identified == 1 and discord_api.resumed == 1
    finally:
        await client.close()
        await asyncio.wait_for(task, timeout=30)


def _collect(content: str, seen: asyncio.Event) -> Any:
    async def on_message(message: discord.Message) -> None:
        if message.content == content:
            seen.set()

    return on_message


async def _metric(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(f"{base}/metrics") as response:
        text = await response.text()
    [line] = [line for line in text.splitlines() if line.startswith("mendbot_discord_ready ")]
    return line.split()[1]


@pytest.mark.parametrize("shard_count", [None, 2], ids=["one shard", "two shards"])
async def test_the_bot_resumes_after_an_outage_and_answers_what_was_said(
    tmp_path: Path, discord_api: DiscordDouble, shard_count: int | None
) -> None:
    """After the outage every shard resumes (no new IDENTIFY), the `!roll` sent meanwhile is answered,
    and while it was down /health/ready was 503 and `mendbot_discord_ready` 0."""
    discord_api.max_concurrency = 2  # two shards may identify at once
    settings = make_settings(
        tmp_path / "data",
        discord_token=discord_api.token,
        discord={"dev_guild_id": discord_api.guild.id, "shard_count": shard_count},
    )
    services = await build_services(settings, watch_prompts=False)
    bot = MendBot(services, guild_ready_timeout=0.05)
    server = HealthServer(bot, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{await server.start()}"
    start = asyncio.create_task(start_on_discord(bot, discord_api.token))
    try:
        await asyncio.wait_for(bot.wait_until_ready(), timeout=30)
        identified = discord_api.identified
        async with aiohttp.ClientSession() as http:
            assert await _metric(http, base) == "1.0"
            async with _outage(discord_api, bot):
                async with http.get(f"{base}/health/ready") as response:
                    assert response.status == 503
                assert await _metric(http, base) == "0.0"
                sent = await discord_api.send_message(discord_api.guild.channel("general"), "!roll 2d6")
                resumed = [
                    asyncio.ensure_future(
                        bot.wait_for("shard_resumed", check=lambda s, i=shard: s == i, timeout=60)
                    )
                    for shard in bot.running_shard_ids
                ]
            reply = await asyncio.wait_for(discord_api.answer_to(sent), timeout=60)
            assert reply["content"].startswith("🎲 `2d6` →")
            await asyncio.gather(*resumed)
            assert discord_api.identified == identified
            assert discord_api.resumed == len(bot.running_shard_ids)
            await asyncio.gather(*resumed)
            assert bot.gateway_connected and await _metric(http, base) == "1.0"
    finally:
        await bot.close()
        await asyncio.wait_for(start, timeout=30)
        await server.stop()
        await services.aclose()


async def test_during_an_outage_the_bot_asks_again_every_few_seconds(
    tmp_path: Path, discord_api: DiscordDouble
) -> None:
    """While the gateway refuses (12 s here), the shard asks again at least every few seconds, at
    jittered intervals, and resumes its session once it is accepted; however many attempts an outage
    takes, the waits its reconnect loop draws stay within a few seconds (never the exponential waits
    that left a bot 28.6 s behind a gateway already back)."""
    settings = make_settings(
        tmp_path / "data", discord_token=discord_api.token, discord={"dev_guild_id": discord_api.guild.id}
    )
    services = await build_services(settings, watch_prompts=False)
    bot = MendBot(services, guild_ready_timeout=0.05)
    start = asyncio.create_task(start_on_discord(bot, discord_api.token))
    try:
        await asyncio.wait_for(bot.wait_until_ready(), timeout=30)
        disconnected = asyncio.ensure_future(bot.wait_for("disconnect", timeout=30))
        discord_api.refuse_gateway()
        await discord_api.drop_gateway()
        await disconnected
        discord_api.gateway_attempts.clear()
        await asyncio.sleep(12)  # the outage
        attempts = list(discord_api.gateway_attempts)
        resumed = asyncio.ensure_future(bot.wait_for("resumed", timeout=60))
        discord_api.refuse_gateway(False)
        await resumed
        shard = bot.get_shard(0)
        assert shard is not None
        waits = [shard._parent._backoff.delay() for _ in range(50)]  # the loop's own draws, an hour on
    finally:
        await bot.close()
        await asyncio.wait_for(start, timeout=30)
        await services.aclose()
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert len(attempts) >= 4, attempts
    assert max(gaps) <= 4.0, gaps  # bounded: GatewayBackoff's cap (2.5 s) and some scheduling slack
    assert len({round(gap, 2) for gap in gaps}) > 1, gaps  # jittered
    assert discord_api.resumed == 1
    assert max(waits) <= 2.5 and min(waits) > 0 and len(set(waits)) > 1, waits
