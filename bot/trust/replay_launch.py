"""The replay's launcher: the first code of a bot started from a checkout in the sandbox, before any of it.

`bot.improve.replay` binds this file read-only into the sandbox (like `bot/trust/supervise.py`, the copy that
runs is the installed bot's, never the checkout's) and runs it with the checkout first on `sys.path`:

    python /run/mendbot/replay/launch.py SOCKET CONFIG

It points discord.py at the observer — the loopback Discord (`bot.trust.loopback_discord`) that the bot
process outside the sandbox serves on the unix socket `SOCKET`, bound in — and then hands over to the
checkout's own `mendbot run` (`bot.__main__.main`) with the config file `CONFIG`. It decides nothing and
reports nothing: whether a replayed call passed is judged by the observer, from what the bot answered
over the wire. It imports only the standard library, aiohttp, yarl and discord.py before that.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["main"]

API = "http://discord.invalid/api/v10"
GATEWAY = "ws://discord.invalid/gateway/"


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: launch.py SOCKET CONFIG\n")
        return 2
    socket_path, config = argv[1], argv[2]
    import aiohttp
    import discord.gateway
    import discord.http
    import yarl

    login = discord.http.HTTPClient.static_login

    async def static_login(self: discord.http.HTTPClient, token: str) -> Any:
        # Every REST call and the gateway go through the session made here: over the socket.
        self.connector = aiohttp.UnixConnector(path=socket_path)
        return await login(self, token)

    discord.http.HTTPClient.static_login = static_login  # type: ignore[method-assign]
    discord.http.Route.BASE = API
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(GATEWAY)

    # The checkout's own entry point, whatever it imports: named, so that nothing in the installed bot
    # depends on it.
    mendbot = importlib.import_module("bot.__main__").main
    return int(mendbot(["--config", config, "run"]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
