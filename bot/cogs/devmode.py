"""/devmode: see dev mode, or switch it on (optionally for a while) and off (allow-listed)."""

from __future__ import annotations

from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from mendbot.features.devmode import DevModeStatus
from mendbot.kernel.durations import human_duration
from mendbot.runtime.attachment import Attachment, add_surface_cog, attached

_EFFECT = "autonomous runs wait; requested runs still work"


def status_text(status: DevModeStatus) -> str:
    if not status.active:
        return "Dev mode is **off**."
    return f"🛠 Dev mode is **on** — {status.reason}. Meanwhile {_EFFECT}."


class DevModeCog(commands.Cog, name="DevMode"):
    def __init__(self, bot: Attachment) -> None:
        self.bot = bot
        self.devmode = bot.services.devmode

    @app_commands.command(
        name="devmode", description="Dev mode: pause the bot's own work while you edit it by hand."
    )
    @app_commands.describe(
        state="on or off; leave it out to see the current state",
        duration="with on: how long, e.g. 2h (default: until /devmode off)",
    )
    async def devmode_command(
        self,
        interaction: discord.Interaction[Any],
        state: Literal["on", "off"] | None = None,
        duration: str | None = None,
    ) -> None:
        if state is None:
            await interaction.response.send_message(status_text(await self.devmode.status()))
            return
        if not self.bot.authorize(interaction.user, "devmode", state=state):
            await interaction.response.send_message(
                "Only allow-listed developers can switch dev mode.", ephemeral=True
            )
            return
        status = await self.devmode.switch(interaction.user.id, on=state == "on", duration=duration)
        if state == "on":
            if status.manual_until is not None and status.manual_since is not None:
                span = human_duration((status.manual_until - status.manual_since).total_seconds())
                ends = f"for {span}, until {discord.utils.format_dt(status.manual_until, 't')}"
            else:
                ends = "until `/devmode off`"
            text = f"🛠 Dev mode on {ends}: {_EFFECT}."
        elif status.active:
            text = f"Dev mode switched off, but it stays on: {status.reason}."
        else:
            text = "Dev mode off."
        await interaction.response.send_message(text)


async def setup(bot: commands.Bot) -> None:
    await add_surface_cog(bot, DevModeCog(attached(bot)))
