"""The seal `mendbot attach --play` puts on discord.py (bot/tools/playground_seal.py): every way discord.py
reaches Discord refuses in one line, its addresses point at `discord.invalid`, the virtual Discord
(simcord's own HTTP client) keeps working, and taking the seal off puts everything back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import aiohttp
import discord
import discord.gateway
import discord.http
import discord.webhook.async_
import discord.webhook.sync
import pytest
import simcord
from discord.ext import commands

from mendbot.tools.playground_seal import (
    SEALED_API,
    SEALED_GATEWAY,
    LeftThePlayground,
    PlaygroundSeal,
    is_sealed,
)

TAIL = (
    "the playground is a virtual Discord and nothing leaves this machine: run `mendbot attach` without "
    "--play to reach Discord"
)
WEBHOOK = "https://discord.com/api/webhooks/123456789012345678/" + "t0ken" * 14


@pytest.fixture
def sealed() -> Iterator[PlaygroundSeal]:
    seal = PlaygroundSeal()
    seal.install()
    try:
        yield seal
    finally:
        seal.uninstall()


def _route() -> discord.http.Route:
    return discord.http.Route("GET", "/users/@me")


def _webhook_route() -> discord.http.Route:
    return discord.http.Route(
        "POST", "/webhooks/{webhook_id}/{webhook_token}", webhook_id=123, webhook_token="s3cret"
    )


async def _webhook_send() -> None:
    """A program's own webhook post, outside any bot (discord.py's async webhook adapter)."""
    async with aiohttp.ClientSession() as session:
        await discord.Webhook.from_url(WEBHOOK, session=session).send("hello")


def _client_call(call: Callable[[discord.http.HTTPClient], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        return await call(discord.http.HTTPClient(asyncio.get_running_loop()))

    return run


async def _sync_webhook() -> None:
    adapter = discord.webhook.sync.WebhookAdapter()  # type: ignore[no-untyped-call]
    adapter.request(_webhook_route(), cast(Any, None))  # no session: the seal refuses first


@pytest.mark.parametrize(
    ("attempt", "what"),
    [
        (_client_call(lambda http: http.static_login("a-real-token")), "a login"),
        (_client_call(lambda http: http.request(_route())), "a REST call: GET /users/@me"),
        (_client_call(lambda http: http.ws_connect(SEALED_GATEWAY)), "a gateway connection"),
        (
            _client_call(lambda http: http.get_from_cdn("https://cdn.discordapp.com/a.png")),
            "a download from Discord's CDN",
        ),
        (_webhook_send, "a webhook call: POST /webhooks/{webhook_id}/{webhook_token}"),
        (_sync_webhook, "a webhook call: POST /webhooks/{webhook_id}/{webhook_token}"),
    ],
    ids=["login", "rest", "gateway", "cdn", "webhook", "sync-webhook"],
)
async def test_each_way_to_discord_refuses_in_one_line(
    sealed: PlaygroundSeal, attempt: Callable[[], Awaitable[Any]], what: str
) -> None:
    """A login, a REST call, a gateway connection, a CDN download and both webhook adapters refuse before
    anything is sent, naming what was tried (a webhook's route, never its token)."""
    with pytest.raises(LeftThePlayground) as refused:
        await attempt()
    assert str(refused.value) == (
        f"mendbot attach --play: your bot tried to reach Discord outside the playground ({what}) — {TAIL}"
    )
    assert "s3cret" not in str(refused.value) and "t0ken" not in str(refused.value)


def test_discord_points_at_an_address_that_cannot_resolve_and_comes_back(sealed: PlaygroundSeal) -> None:
    """Sealed, REST and the gateway point at `discord.invalid`; taken off, at Discord again, and the
    methods are discord.py's own."""
    assert discord.http.Route.BASE == SEALED_API and _route().url.startswith("https://discord.invalid/")
    assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == SEALED_GATEWAY
    sealed.uninstall()
    assert not is_sealed()
    assert discord.http.Route.BASE == "https://discord.com/api/v10"
    assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == "wss://gateway.discord.gg/"
    assert discord.http.HTTPClient.request.__module__ == "discord.http"
    assert discord.webhook.async_.AsyncWebhookAdapter.request.__module__ == "discord.webhook.async_"


def test_sealing_twice_changes_nothing(sealed: PlaygroundSeal) -> None:
    """A second install, or a second seal while one is on, leaves the first one's refusals and puts back
    nothing of its own: taking the first off unseals."""
    refusing = discord.http.HTTPClient.request
    sealed.install()
    other = PlaygroundSeal()
    other.install()
    other.uninstall()
    assert is_sealed() and discord.http.HTTPClient.request is refusing
    sealed.uninstall()
    assert not is_sealed()


async def test_the_virtual_discord_works_through_the_seal(sealed: PlaygroundSeal) -> None:
    """simcord's own HTTP client logs in and carries the bot's calls: a command answers."""
    intents = discord.Intents.default()
    intents.message_content = True
    bot = commands.Bot(command_prefix="!", intents=intents)

    @bot.command()
    async def ping(ctx: commands.Context[Any]) -> None:
        await ctx.send("pong")

    async with simcord.run(bot) as env:
        guild = env.create_guild(name="sealed")
        channel = guild.create_text_channel("general")
        alice = guild.add_member(env.create_user("alice"))
        await env.settle()
        await alice.send(channel, "!ping")
        await env.settle()
        assert [message.content for message in channel.history() if message.author.bot] == ["pong"]
