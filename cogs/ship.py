"""Shipping in Discord: ✅/🔐/❌ and Approve/Reject on a proposal, "ship it" replies, /rollback,
and the deploy reports (with a one-click rollback when a change regressed)."""

from __future__ import annotations

import re
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import MendBot, role_ids
from bot.deploy.approval import ApprovalForm
from bot.deploy.reload import Reloader
from bot.errors import UserError
from bot.improve.intent import parse_intent
from bot.improve.runs import Run

REACTIONS: dict[str, ApprovalForm] = {"✅": "approve", "🔐": "approve_security", "❌": "reject"}
INTENT_FORMS: dict[str, ApprovalForm] = {"approve": "approve", "reject": "reject"}


def _parent(channel: Any) -> int | None:
    return channel.parent_id if isinstance(channel, discord.Thread) else None


class ProposalButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"proposal:(?P<id>\d+):(?P<form>approve|reject)"
):
    """Approve / Reject on a proposal; persistent, so it works on messages from before a restart."""

    def __init__(self, proposal_id: int, form: ApprovalForm) -> None:
        approve = form == "approve"
        super().__init__(
            discord.ui.Button(
                label="Approve" if approve else "Reject",
                emoji="✅" if approve else "❌",
                style=discord.ButtonStyle.success if approve else discord.ButtonStyle.danger,
                custom_id=f"proposal:{proposal_id}:{form}",
            )
        )
        self.proposal_id = proposal_id
        self.form = form

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ProposalButton:
        return cls(int(match["id"]), "approve" if match["form"] == "approve" else "reject")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: MendBot = interaction.client
        await interaction.response.defer(thinking=True)
        text = await decide(
            bot, self.proposal_id, interaction.user, interaction.channel, form=self.form, via="button"
        )
        await interaction.followup.send(text[:2000])


class RollbackButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"rollback:(?P<run>\d+)"):
    """One-click emergency rollback of a regressed run (allow-listed users only)."""

    def __init__(self, run_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Roll back now",
                emoji="⏪",
                style=discord.ButtonStyle.danger,
                custom_id=f"rollback:{run_id}",
            )
        )
        self.run_id = run_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> RollbackButton:
        return cls(int(match["run"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: MendBot = interaction.client
        await interaction.response.defer(thinking=True)
        await interaction.followup.send((await emergency_rollback(bot, self.run_id, interaction.user))[:2000])


def proposal_view(proposal_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ProposalButton(proposal_id, "approve"))
    view.add_item(ProposalButton(proposal_id, "reject"))
    return view


async def decide(
    bot: MendBot, proposal_id: int, user: discord.abc.User, channel: Any, *, form: ApprovalForm, via: str
) -> str:
    try:
        return await bot.services.deploy.decide(
            proposal_id=proposal_id,
            user_id=user.id,
            user_name=user.display_name,
            role_ids=role_ids(user),
            is_bot=user.bot,
            channel_id=channel.id,
            parent_channel_id=_parent(channel),
            form=form,
            via=via,
        )
    except UserError as exc:
        return str(exc)


async def emergency_rollback(bot: MendBot, run_id: int, user: discord.abc.User) -> str:
    if not bot.authorize(user, action="rollback_now", run_id=run_id):
        return "Only allow-listed developers can roll back."
    try:
        await bot.services.improve.runs.get(run_id)  # a run that does not exist, said before anything else
        return await bot.services.deploy.emergency_rollback(run_id, user_id=user.id)
    except UserError as exc:
        return str(exc)


class Ship(commands.Cog):
    def __init__(self, bot: MendBot) -> None:
        self.bot = bot
        self.deploy = bot.services.deploy

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ProposalButton, RollbackButton)
        self.deploy.reporter = self
        self.deploy.reloader = Reloader(self.bot)
        await self.deploy.resume_watches()

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ProposalButton, RollbackButton)
        if self.deploy.reporter is self:
            self.deploy.reporter = None

    # -- DeployReporter ---------------------------------------------------------------------------

    async def deployed(self, run: Run, text: str) -> None:
        channel = self.bot.run_channel(run.channel_id)
        if channel is not None:
            await channel.send(text[:2000])

    async def regressed(self, run: Run, text: str) -> None:
        channel = self.bot.run_channel(run.channel_id)
        if channel is not None:
            view = discord.ui.View(timeout=None)
            view.add_item(RollbackButton(run.id))
            await channel.send(text[:2000], view=view)

    # -- signals --------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        form = REACTIONS.get(str(payload.emoji))
        if form is None or payload.user_id == getattr(self.bot.user, "id", None):
            return
        proposal_id = await self.deploy.approvals.proposal_for_message(payload.message_id)
        if proposal_id is None:
            return
        user = (
            payload.member or self.bot.get_user(payload.user_id) or await self.bot.fetch_user(payload.user_id)
        )
        channel = self.bot.get_channel(payload.channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            return
        text = await decide(self.bot, proposal_id, user, channel, form=form, via="reaction")
        await channel.send(f"{user.mention} {text}"[:2000], allowed_mentions=discord.AllowedMentions.none())

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.reference is None or message.reference.message_id is None:
            return
        proposal_id = await self.deploy.approvals.proposal_for_message(message.reference.message_id)
        if proposal_id is None:
            return
        intent = parse_intent(message.content)
        form = INTENT_FORMS.get(intent.kind)
        if form is None:
            return
        if form == "approve" and intent.security:
            form = "approve_security"
        async with message.channel.typing():  # a merge re-verifies and reloads: show it is under way
            text = await decide(
                self.bot, proposal_id, message.author, message.channel, form=form, via="words"
            )
        await message.reply(text[:2000], mention_author=False)

    @app_commands.command(
        name="rollback", description="Roll back a deployed run (now: revert and reload at once)."
    )
    @app_commands.describe(run_id="the run to roll back", now="emergency: revert and reload without approval")
    async def rollback(
        self, interaction: discord.Interaction[MendBot], run_id: int, now: bool = False
    ) -> None:
        user = interaction.user
        if now:
            await interaction.response.defer(thinking=True)
            await interaction.followup.send((await emergency_rollback(self.bot, run_id, user))[:2000])
            return
        if not self.bot.authorize(user, action="rollback", run_id=run_id):
            await interaction.response.send_message(
                "Only allow-listed developers can roll back.", ephemeral=True
            )
            return
        try:
            await self.bot.services.improve.runs.get(run_id)  # "no run 1" before "no model key"
            run = await self.bot.services.improve.rollback(
                target_run_id=run_id, requester_id=user.id, channel_id=interaction.channel_id
            )
        except UserError as exc:
            await interaction.response.send_message(str(exc))
            return
        await interaction.response.send_message(
            f"Run #{run.id} will revert run #{run_id} on a branch, verify it and propose it for approval."
        )


async def setup(bot: MendBot) -> None:
    await bot.add_cog(Ship(bot))
