"""Shipping in Discord: ✅/🔐/❌ and Approve/Reject on a proposal, "ship it" replies, objections,
/rollback, and the deploy reports (with a one-click rollback when a change regressed).

Words and reactions are read by the one approval grammar (`mendbot.trust.grammar`). A message is about
a proposal when it replies to the proposal's message or is in the thread started from it; a message
in a dev channel that names the run ("run 7", "#7") can hold it too, never approve or reject it.
Approvals and objections follow the human through raw gateway events — a deleted or edited message, a
removed reaction — so they work on messages from before a restart, when nothing is cached; and what
the bot missed while it was down is found by reading the messages again (`DiscordSources`, which the
deploy side calls at start-up and at merge time).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from mendbot.deploy.approval import ApprovalForm
from mendbot.deploy.reload import Reloader
from mendbot.deploy.sources import SourceRead
from mendbot.improve.runs import Run
from mendbot.kernel.errors import UserError
from mendbot.runtime.attachment import Attachment, add_surface_cog, attached, role_ids
from mendbot.runtime.people import addressed
from mendbot.trust.grammar import normalise, reaction_form, read_approval, run_references


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
        bot = attached(interaction.client)
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
        bot = attached(interaction.client)
        await interaction.response.defer(thinking=True)
        await interaction.followup.send((await emergency_rollback(bot, self.run_id, interaction.user))[:2000])


class DiscordSources:
    """`mendbot.deploy.sources.ApprovalSources` over discord.py: the message fetched from Discord (never
    the cache) and the users of each decision reaction on it, fetched too."""

    def __init__(
        self, bot: Attachment | commands.Bot | commands.AutoShardedBot, timeout_s: float = 15.0
    ) -> None:
        self.bot = bot
        self.timeout_s = timeout_s

    async def read(self, channel_id: int, message_id: int) -> SourceRead:
        try:
            async with asyncio.timeout(self.timeout_s):
                message = await self.bot.get_partial_messageable(channel_id).fetch_message(message_id)
                reactions: dict[str, frozenset[int]] = {}
                for reaction in message.reactions:
                    emoji = normalise(str(reaction.emoji))
                    if reaction_form(emoji) is None:
                        continue
                    users = frozenset([user.id async for user in reaction.users(limit=None)])
                    reactions[emoji] = reactions.get(emoji, frozenset()) | users
        except discord.NotFound:  # the message, or its channel, is gone
            return SourceRead.gone()
        except (discord.HTTPException, TimeoutError, aiohttp.ClientError, OSError) as exc:
            return SourceRead.unreadable(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        return SourceRead.found(message.content, reactions)


def proposal_view(proposal_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ProposalButton(proposal_id, "approve"))
    view.add_item(ProposalButton(proposal_id, "reject"))
    return view


async def decide(
    bot: Attachment,
    proposal_id: int,
    user: discord.abc.User,
    channel: Any,
    *,
    form: ApprovalForm,
    via: str,
    message_id: int | None = None,
    emoji: str | None = None,
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
            message_id=message_id,
            emoji=emoji,
        )
    except UserError as exc:
        return str(exc)


async def emergency_rollback(bot: Attachment, run_id: int, user: discord.abc.User) -> str:
    if not bot.authorize(user, action="rollback_now", run_id=run_id):
        return "Only allow-listed developers can roll back."
    try:
        await bot.services.improve.runs.get(run_id)  # a run that does not exist, said before anything else
        return await bot.services.deploy.emergency_rollback(run_id, user_id=user.id)
    except UserError as exc:
        return str(exc)


def _decides(verdict: str, how: str) -> bool:
    """Whether a message read as `verdict`, about a proposal by `how`, is a decision on it."""
    return verdict != "none" and (how != "named" or verdict == "object")


class Ship(commands.Cog):
    def __init__(self, bot: Attachment) -> None:
        self.bot = bot
        self.deploy = bot.services.deploy

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ProposalButton, RollbackButton)
        self.deploy.reporter = self
        self.deploy.roles_of = self.roles_of
        self.deploy.sources = DiscordSources(self.bot)
        self.deploy.reloader = Reloader(self.bot)
        cluster = self.bot.services.cluster
        if cluster.shared:  # the leader resumes watches and deploys, whichever process it is
            self.deploy.in_background(self._ready_for_deploys())
            return
        await self.deploy.resume_watches()
        self.deploy.in_background(self._continue_deploys())

    async def _continue_deploys(self) -> None:
        await self.bot.wait_until_ready()  # it reports in the run's channel and reloads cogs
        if self.deploy.resume_gate is not None:
            await self.deploy.resume_gate()
        await self.deploy.announce_resumed_watches()
        await self.deploy.continue_interrupted_deploys()

    async def _ready_for_deploys(self) -> None:
        await self.bot.wait_until_ready()
        self.bot.services.cluster.deploy_ready.set()

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ProposalButton, RollbackButton)
        if self.deploy.reporter is self:
            self.deploy.reporter = None
            self.deploy.roles_of = None
            self.deploy.sources = None

    async def roles_of(self, user_id: int) -> list[int] | None:
        """The user's roles as Discord has them now (fetched, not cached); None if not a member."""
        guild_id = self.bot.services.settings.discord.dev_guild_id
        for guild in self.bot.guilds:
            if guild_id is not None and guild.id != guild_id:
                continue
            try:
                member = await guild.fetch_member(user_id)
            except discord.NotFound:
                continue
            return [role.id for role in member.roles]
        return None

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

    async def notify(self, run: Run, text: str) -> None:
        channel = self.bot.run_channel(run.channel_id)
        if channel is not None:
            await channel.send(text[:2000], allowed_mentions=discord.AllowedMentions.none())

    async def _say(self, channel_id: int, text: str | None) -> None:
        channel = self.bot.get_channel(channel_id)
        if text and isinstance(channel, discord.abc.Messageable):
            await channel.send(text[:2000], allowed_mentions=discord.AllowedMentions.none())

    # -- signals --------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        form = reaction_form(str(payload.emoji))
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
        text = await decide(
            self.bot,
            proposal_id,
            user,
            channel,
            form=form,
            via="reaction",
            message_id=payload.message_id,
            emoji=normalise(str(payload.emoji)),
        )
        await channel.send(addressed(user, text)[:2000], allowed_mentions=discord.AllowedMentions.none())

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        if reaction_form(str(payload.emoji)) is None:
            return
        text = await self.deploy.withdraw(
            message_id=payload.message_id,
            user_id=payload.user_id,
            emoji=normalise(str(payload.emoji)),
            why="reaction_removed",
        )
        await self._say(payload.channel_id, text)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self._say(
            payload.channel_id, await self.deploy.withdraw(message_id=payload.message_id, why="deleted")
        )

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        content = payload.data.get("content")
        if content is None:  # an embed or flag update, not an edit of the words
            return
        await self._say(payload.channel_id, await self.deploy.message_edited(payload.message_id, content))

    async def _proposal_of(self, message: discord.Message) -> tuple[int | None, str]:
        """The proposal a message is about, and how: "words" (a reply to its message, or in the thread
        started from it) or "named" (it names a run that is still to merge); (None, "") otherwise."""
        approvals = self.deploy.approvals
        ref = message.reference
        if ref is not None and ref.message_id is not None:
            proposal_id = await approvals.proposal_for_message(ref.message_id)
            if proposal_id is not None:
                return proposal_id, "words"
        if isinstance(message.channel, discord.Thread):  # a thread started from a message has its id
            proposal_id = await approvals.proposal_for_message(message.channel.id)
            if proposal_id is not None:
                return proposal_id, "words"
        for run_id in run_references(message.content):  # `concerns` tests these three ways, in order
            run = await self.bot.services.improve.runs.find(run_id)
            if run is not None and run.proposal_id is not None:
                return run.proposal_id, "named"
        return None, ""

    async def answers(self, message: discord.Message) -> bool:
        """Whether this message is a decision on a proposal this cog answers (an approval, a rejection,
        an objection): other cogs then leave it alone — one message, one answer."""
        if message.author.bot:
            return False
        proposal_id, how = await self._proposal_of(message)
        return proposal_id is not None and _decides(read_approval(message.content).verdict, how)

    def concerns(self, message: discord.Message) -> bool:
        """Whether `on_message` has anything to do with `message`: a person's, which may be about a
        proposal (`_proposal_of`'s three ways: a reply, in a thread, naming a run)."""
        if message.author.bot:
            return False
        ref = message.reference
        return (
            (ref is not None and ref.message_id is not None)
            or isinstance(message.channel, discord.Thread)
            or bool(run_references(message.content))
        )

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if not self.concerns(message):
            return
        proposal_id, how = await self._proposal_of(message)
        if proposal_id is None:
            return
        reading = read_approval(message.content)
        if not _decides(reading.verdict, how):
            return  # naming a run only ever holds it: approving and rejecting take a reply
        if reading.holds:  # an objection, or not a clear decision: it holds the merge for its author
            decision = await self.deploy.hold(
                proposal_id=proposal_id,
                user_id=message.author.id,
                user_name=message.author.display_name,
                role_ids=role_ids(message.author),
                is_bot=message.author.bot,
                channel_id=message.channel.id,
                parent_channel_id=_parent(message.channel),
                message_id=message.id,
                text=message.content,
                via=how,
            )
            if how == "named" and decision.status != "held":
                return  # a run named in passing, by someone it does not concern: no answer
            await message.reply(
                decision.message[:2000], mention_author=False, allowed_mentions=discord.AllowedMentions.none()
            )
            return
        assert reading.form is not None
        async with message.channel.typing():  # a merge re-verifies and reloads: show it is under way
            text = await decide(
                self.bot,
                proposal_id,
                message.author,
                message.channel,
                form=reading.form,
                via="words",
                message_id=message.id,
            )
        await message.reply(text[:2000], mention_author=False)

    @app_commands.command(
        name="rollback", description="Roll back a deployed run (now: revert and reload at once)."
    )
    @app_commands.describe(run_id="the run to roll back", now="emergency: revert and reload without approval")
    async def rollback(self, interaction: discord.Interaction[Any], run_id: int, now: bool = False) -> None:
        user = interaction.user
        if interaction.channel_id not in self.bot.services.settings.discord.dev_channel_ids:
            # The same rule as /fix: a rollback's proposal can only be approved in a dev channel.
            await interaction.response.send_message("Ask me that in the dev channel.", ephemeral=True)
            return
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


async def setup(bot: commands.Bot) -> None:
    await add_surface_cog(bot, Ship(attached(bot)))
