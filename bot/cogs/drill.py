"""/drill: start a fire drill — a synthetic fault sent down the real repair loop (allow-listed, dev channel).

The drill itself lives in bot/improve/drill.py; this cog checks who asks and where, starts it, and
posts its report in the dev channel when it ends; it also keeps the schedule (`drill.every_h`).
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from mendbot.kernel.errors import UserError
from mendbot.runtime.attachment import Attachment, add_surface_cog, attached


class DrillCog(commands.Cog, name="Drill"):
    def __init__(self, bot: Attachment) -> None:
        self.bot = bot
        self.drill = bot.services.drill
        self.drill.post = self._post

    async def cog_load(self) -> None:
        leadership = self.bot.services.cluster.leadership
        self.drill.start_schedule(lambda: leadership.is_leader)

    async def cog_unload(self) -> None:
        self.drill.stop_schedule()

    async def _post(self, text: str) -> None:
        await self.bot.send_dev(text)

    @app_commands.command(
        name="drill", description="Fire drill: inject a synthetic fault and time the repair loop's stages."
    )
    async def drill_command(self, interaction: discord.Interaction[Any]) -> None:
        if interaction.channel_id not in self.bot.services.settings.discord.dev_channel_ids:
            await interaction.response.send_message("Ask me that in the dev channel.", ephemeral=True)
            return
        if not self.bot.authorize(interaction.user, "drill"):
            await interaction.response.send_message(
                "Only allow-listed developers can start a fire drill.", ephemeral=True
            )
            return
        try:
            number = await self.drill.start()
        except UserError as exc:
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        targets = self.bot.services.settings.drill.targets
        await interaction.response.send_message(
            f"🧯 Fire drill #{number} started: a synthetic fault on the drill path (no user can reach it)."
            f" I'll time detection (target {targets.detect_s:g}s) through the proposal"
            f" (target {targets.propose_s:g}s) and post the report here. Its proposal never merges."
        )


async def setup(bot: commands.Bot) -> None:
    await add_surface_cog(bot, DrillCog(attached(bot)))
