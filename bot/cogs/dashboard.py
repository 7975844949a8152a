"""/dashboard: a one-time sign-in link to the read-only web dashboard, for an allow-listed developer.

Only in a dev channel, only to the allow-listed user who asked, ephemerally: the link signs its
holder in as that user (bot/dashboard/signin.py), so nobody else may see it.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from mendbot.kernel.settings import config_file_shown
from mendbot.runtime.attachment import Attachment, add_surface_cog, attached


class Dashboard(commands.Cog):
    def __init__(self, bot: Attachment) -> None:
        self.bot = bot

    @app_commands.command(name="dashboard", description="A one-time sign-in link to the web dashboard.")
    async def dashboard_command(self, interaction: discord.Interaction[Any]) -> None:
        services = self.bot.services
        if interaction.channel_id not in services.settings.discord.dev_channel_ids:
            await interaction.response.send_message("Ask me that in the dev channel.", ephemeral=True)
            return
        if not self.bot.authorize(interaction.user, "dashboard"):
            await interaction.response.send_message(
                "Only allow-listed developers can open the dashboard.", ephemeral=True
            )
            return
        signin = services.dashboard
        link = await signin.link(interaction.user.id) if signin is not None else None
        if signin is None or link is None:
            where = config_file_shown(services.settings)
            await interaction.response.send_message(
                f"The dashboard is not served here: set `dashboard.enabled: true` in {where} and restart.",
                ephemeral=True,
            )
            return
        minutes = max(1, signin.config.link_ttl_s // 60)
        await interaction.response.send_message(
            f"🔑 Your sign-in link (works once, for {minutes} min, and only for you; don't share it):\n"
            f"{link}",
            ephemeral=True,
        )


async def setup(bot: commands.Bot) -> None:
    await add_surface_cog(bot, Dashboard(attached(bot)))
