"""/remind: reminders that survive a restart and fire once."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from mendbot.features.reminders import Reminder
from mendbot.runtime.app import MendBot


class Remind(commands.Cog):
    def __init__(self, bot: MendBot) -> None:
        self.bot = bot
        self.reminders = bot.services.reminders

    async def cog_load(self) -> None:
        await self.reminders.start(self._deliver)

    async def cog_unload(self) -> None:
        self.reminders.stop()

    @commands.hybrid_command(name="remind", description="Remind you of something later, e.g. 10m stretch.")  # type: ignore[arg-type]  # mypy cannot solve its generics
    @app_commands.describe(
        when="how long from now: 10m, 1h30m, 2d (at most a year)", text="what to remind you of"
    )
    async def remind(self, ctx: commands.Context[MendBot], when: str, *, text: str) -> None:
        """Remind you after a delay like 10m, 1h30m or 2d."""
        # Saving may wait out a locked database for a few seconds: longer than Discord gives an
        # interaction to answer, so say "thinking…" first.
        await ctx.defer()
        reminder = await self.reminders.create(
            guild_id=ctx.guild.id if ctx.guild else None,
            channel_id=ctx.channel.id,
            user_id=ctx.author.id,
            when=when,
            text=text,
        )
        stamp = discord.utils.format_dt(reminder.due_at, "R")
        await ctx.send(f"⏰ Okay {ctx.author.mention}, I'll remind you {stamp}: {reminder.text}")

    async def _deliver(self, reminder: Reminder, late: bool) -> None:
        channel = self.bot.get_channel(reminder.channel_id) or await self.bot.fetch_channel(
            reminder.channel_id
        )
        if not isinstance(channel, discord.abc.Messageable):
            raise RuntimeError(f"reminder channel {reminder.channel_id} cannot receive messages")
        suffix = " (late: I was offline when it was due)" if late else ""
        await channel.send(f"⏰ <@{reminder.user_id}> reminder: {reminder.text}{suffix}")


async def setup(bot: MendBot) -> None:
    await bot.add_cog(Remind(bot))
