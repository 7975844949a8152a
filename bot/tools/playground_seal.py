"""The playground is sealed: under `mendbot attach --play` nothing of the bot's program reaches Discord.

The runner plays the bot in the virtual Discord whichever way the program starts it (`run`, `start`, or
its own `login` then `connect`), but a program can reach Discord in other ways — a webhook posted at
start-up, a second client, a `connect` the runner did not foresee — and would send its real token there.
So the seal works at discord.py's own edge, where every byte for Discord passes: the REST base and the
gateway point at an address that cannot resolve (`discord.invalid`), and discord.py's real HTTP client
(`static_login`, `request`, `ws_connect`, `get_from_cdn`) and both webhook adapters refuse with one line.

simcord's virtual Discord is untouched: its HTTP client subclasses discord.py's and replaces each of those
methods, and its webhook adapter is a class of its own — they never reach the refusing ones.

`PlaygroundSeal().install()` / `.uninstall()` are symmetric, and sealing twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import discord.gateway
import discord.http
import discord.webhook.async_
import discord.webhook.sync
import yarl

__all__ = ["SEALED_API", "SEALED_GATEWAY", "LeftThePlayground", "PlaygroundSeal", "is_sealed"]

SEALED_API = "https://discord.invalid/api/v10"  # `.invalid` never resolves (RFC 6761)
SEALED_GATEWAY = "wss://discord.invalid/"
_SEAL_MARK = "__mendbot_sealed__"  # on each refusing replacement

# (owner, attribute, what it is, as the refusal names it)
_DOORS: tuple[tuple[type, str, str], ...] = (
    (discord.http.HTTPClient, "static_login", "a login"),
    (discord.http.HTTPClient, "request", "a REST call"),
    (discord.http.HTTPClient, "ws_connect", "a gateway connection"),
    (discord.http.HTTPClient, "get_from_cdn", "a download from Discord's CDN"),
    (discord.webhook.async_.AsyncWebhookAdapter, "request", "a webhook call"),
    (discord.webhook.sync.WebhookAdapter, "request", "a webhook call"),
)


class LeftThePlayground(RuntimeError):
    """The program tried to reach Discord under `--play`; the message is the whole explanation.

    Not an `OSError`, `aiohttp.ClientError` or `discord.HTTPException`: discord.py's `connect` retries
    those for ever, and a bot's own `except discord.HTTPException` would hide the refusal."""


def _refusal(what: str, target: str) -> LeftThePlayground:
    return LeftThePlayground(
        f"mendbot attach --play: your bot tried to reach Discord outside the playground ({what}{target}) — "
        "the playground is a virtual Discord and nothing leaves this machine: run `mendbot attach` "
        "without --play to reach Discord"
    )


def _route_of(args: tuple[Any, ...]) -> str:
    """`POST /webhooks/{webhook_id}/{webhook_token}`: the route, never its values (a webhook's token)."""
    route = args[0] if args else None
    if isinstance(route, discord.http.Route):
        return f": {route.method} {route.path}"
    return ""


def _door(what: str) -> Callable[..., Any]:
    """A replacement for one of discord.py's ways out that refuses (asynchronous, as the ones it replaces
    are — but for the synchronous webhook adapter, `_sync_door`)."""

    async def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise _refusal(what, _route_of(args))

    setattr(refuse, _SEAL_MARK, True)
    return refuse


def _sync_door(what: str) -> Callable[..., Any]:
    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise _refusal(what, _route_of(args))

    setattr(refuse, _SEAL_MARK, True)
    return refuse


class PlaygroundSeal:
    """The seal on this process's discord.py: `install()` points it at `discord.invalid` and makes its ways
    out refuse, `uninstall()` puts back what it replaced. Installing twice — or a second seal while one is
    on — changes nothing."""

    def __init__(self) -> None:
        self._saved: dict[tuple[type, str], Any] = {}  # what this seal replaced, to put back

    def install(self) -> None:
        if self._saved or is_sealed():
            return
        route, gateway = discord.http.Route, discord.gateway.DiscordWebSocket
        self._saved[(route, "BASE")] = route.BASE
        self._saved[(gateway, "DEFAULT_GATEWAY")] = gateway.DEFAULT_GATEWAY
        route.BASE = SEALED_API
        gateway.DEFAULT_GATEWAY = yarl.URL(SEALED_GATEWAY)
        for owner, name, what in _DOORS:
            self._saved[(owner, name)] = owner.__dict__[name]
            synchronous = owner is discord.webhook.sync.WebhookAdapter
            setattr(owner, name, (_sync_door if synchronous else _door)(what))

    def uninstall(self) -> None:
        for (owner, name), value in self._saved.items():
            setattr(owner, name, value)
        self._saved.clear()


def is_sealed() -> bool:
    """Whether discord.py in this process is sealed (by any seal)."""
    return getattr(discord.http.HTTPClient.request, _SEAL_MARK, False) is True
