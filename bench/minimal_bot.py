"""The yardstick `bench/startup.py` measures mendbot against: a minimal discord.py bot.

`python bench/minimal_bot.py API_URL GATEWAY_URL GUILD_ID` with DISCORD_TOKEN set: a `commands.Bot`,
one cog with one slash command, the tree synced to the guild in `setup_hook`, pointed at a loopback
Discord (bot/trust/loopback_discord.py) by the two class attributes discord.py reads — and nothing of
mendbot imported, so its start and memory are discord.py's own.
"""

from __future__ import annotations

import os
import sys

import discord
import yarl
from discord import app_commands
from discord.ext import commands


class Hello(commands.Cog):
    """The one cog: one slash command."""

    @app_commands.command(description="Say hello.")
    async def hello(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("hello")


class MinimalBot(commands.Bot):
    def __init__(self, guild_id: int) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(command_prefix="!", intents=intents)
        self.guild_id = guild_id

    async def setup_hook(self) -> None:
        await self.add_cog(Hello())
        guild = discord.Object(self.guild_id)
        self.tree.copy_global_to(guild=guild)
        await self.tree.sync(guild=guild)

    async def on_ready(self) -> None:
        print("ready", flush=True)


def main(argv: list[str]) -> None:
    api_url, gateway_url, guild_id = argv
    discord.http.Route.BASE = api_url + "/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    MinimalBot(int(guild_id)).run(os.environ["DISCORD_TOKEN"], log_handler=None)


if __name__ == "__main__":
    main(sys.argv[1:])
