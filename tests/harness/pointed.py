"""`python -m tests.harness.pointed API_URL GATEWAY_URL -- MENDBOT_ARGS…`: the real `mendbot` entry point
in this process, with discord.py pointed at a loopback Discord another process runs
(`mendbot.trust.loopback_discord`). The double's own modules (and aiohttp's server side) stay out of the
bot's process, as they are out of a production bot's: the start bench measures this process."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from typing import Any

import discord
import yarl

__all__ = ["main", "point"]


def point(api: str, gateway: str) -> None:
    """discord.py's REST base and gateway: the loopback Discord at `api` and `gateway`; with
    `POINTED_TOKEN` in the environment, that token is the one discord.py logs in with, whatever the bot
    gives it — a bot whose token is written in its source plays its real token, valid on the double."""
    discord.http.Route.BASE = api + "/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
    token = os.environ.get("POINTED_TOKEN")
    if token is not None:
        login = discord.http.HTTPClient.static_login

        async def static_login(self: discord.http.HTTPClient, _: str) -> Any:
            return await login(self, token)

        discord.http.HTTPClient.static_login = static_login  # type: ignore[method-assign,assignment]


def main(argv: list[str]) -> int:
    # SIGUSR1 prints every thread's Python stack to stderr and goes on: how a test sees where a bot hangs.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if len(argv) < 3 or argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    # The two class attributes discord.py reads (as `mendbot.trust.loopback_discord.pointed_at` sets them).
    point(argv[0], argv[1])
    from mendbot.__main__ import main as mendbot  # after pointing: the one-line way imports none of it

    return mendbot(argv[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
