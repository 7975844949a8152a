"""/audit: the self-audit on demand in a dev channel, and posted there by itself on `audit.schedule`.

The report is text (bot/observe/audit_render.py) with PNG charts attached
(bot/observe/audit_charts.py); a scheduled audit is recorded as the action `task:audit`. At
`improve.autonomy: propose` the report ends with a run of the bot's own on its highest-impact item
(bot/improve/autonomy.py).
"""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from mendbot.observe.audit import parse_period
from mendbot.runtime.attachment import Attachment, add_surface_cog, attached

if TYPE_CHECKING:
    from mendbot.observe.audit_charts import Chart
    from mendbot.observe.audit_report import AuditReport


def command_kinds(bot: commands.Bot | commands.AutoShardedBot, guild_id: int | None = None) -> set[str]:
    """The action kinds the loaded bot's commands are recorded under (bot/runtime/recording.py): its
    global ones, and those of the dev guild `guild_id` (where mendbot's own are)."""
    kinds = {f"command:{c.qualified_name}" for c in bot.walk_commands() if not isinstance(c, commands.Group)}
    guild = discord.Object(guild_id) if guild_id is not None else None
    for command in [*bot.tree.walk_commands(), *(bot.tree.walk_commands(guild=guild) if guild else [])]:
        # Hybrid commands are recorded as `command:` whichever way they are invoked.
        if isinstance(command, app_commands.Command) and not isinstance(
            command, commands.hybrid.HybridAppCommand
        ):
            kinds.add(f"app:{command.qualified_name}")
    return kinds


def _files(charts: list[Chart]) -> list[discord.File]:
    return [discord.File(io.BytesIO(chart.png), filename=chart.filename) for chart in charts]


class Audit(commands.Cog):
    def __init__(self, bot: Attachment) -> None:
        self.bot = bot
        self.audit = bot.services.audit

    async def cog_load(self) -> None:
        self.audit.schedule.start(self._scheduled)

    async def cog_unload(self) -> None:
        self.audit.schedule.stop()

    async def _render(self, report: AuditReport) -> tuple[list[str], list[Chart]]:
        from mendbot.observe.audit_charts import CHARTS_MISSING, charts_available, render_charts
        from mendbot.observe.audit_render import render_text

        redact = self.bot.services.redactor.text
        texts = [redact(text) for text in render_text(report, report.highest_impact())]
        if not self.audit.config.charts:
            return texts, []
        if not charts_available():
            return [*texts, CHARTS_MISSING], []
        return texts, await asyncio.to_thread(render_charts, report, redact)

    async def _scheduled(self) -> None:
        if not self.bot.services.cluster.leadership.is_leader:
            return  # every process has the schedule; the leader posts the report (bot/scale/cluster.py)
        with self.bot.services.recorder.action("task:audit", "Audit"):
            report = await self.audit.report(
                self.audit.default_period, command_kinds(self.bot.bot, self.bot.dev_guild_id)
            )
            texts, charts = await self._render(report)
            sent: list[discord.Message] = []
            for index, text in enumerate(texts):
                last = index == len(texts) - 1
                sent += await self.bot.send_dev(text, files=_files(charts) if last else [])
            channel_id = sent[0].channel.id if sent else None
            line = await self.bot.services.autonomy.propose_for_audit(report.highest_impact(), channel_id)
            if line:
                await self.bot.send_dev(line)

    @app_commands.command(
        name="audit", description="Self-audit: error budgets, failures, latency, unused commands, spend."
    )
    @app_commands.describe(period="how far back, e.g. 24h or 7d (default: one day, or audit.period_hours)")
    async def audit_command(self, interaction: discord.Interaction[Any], period: str | None = None) -> None:
        if interaction.channel_id not in self.bot.services.settings.discord.dev_channel_ids:
            await interaction.response.send_message("Ask me that in the dev channel.", ephemeral=True)
            return
        if not self.bot.authorize(interaction.user, "audit"):
            await interaction.response.send_message(
                "Only allow-listed developers can ask for an audit.", ephemeral=True
            )
            return
        max_hours = self.bot.services.settings.observe.retention_days * 24
        span = parse_period(period, max_hours) if period else self.audit.default_period
        await interaction.response.defer(thinking=True)
        # What just happened counts: the recorder writes in batches, and the audit reads the database.
        await self.bot.services.recorder.flush()
        report = await self.audit.report(span, command_kinds(self.bot.bot, self.bot.dev_guild_id))
        texts, charts = await self._render(report)
        for index, text in enumerate(texts):
            last = index == len(texts) - 1
            await interaction.followup.send(text, files=_files(charts) if last else [])
        autonomy = self.bot.services.autonomy
        line = await autonomy.propose_for_audit(report.highest_impact(), interaction.channel_id)
        if line:
            await interaction.followup.send(line)


async def setup(bot: commands.Bot) -> None:
    await add_surface_cog(bot, Audit(attached(bot)))
