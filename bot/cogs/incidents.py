"""Incidents in Discord: announcements in #dev, 🔍/🛠 reactions and buttons, /incidents, /incident."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from mendbot.improve.runs import RunKind, state_label
from mendbot.kernel.errors import UserError
from mendbot.kernel.log import get_logger
from mendbot.observe.incident import Incident
from mendbot.observe.kind_words import kind_words
from mendbot.runtime.attachment import Attachment, add_surface_cog, attached
from mendbot.runtime.people import addressed

ACTIONS: dict[str, RunKind] = {"🔍": "investigate", "🛠": "fix", "🛠️": "fix"}
_COLOURS = {
    "notice": discord.Colour.blue(),
    "warning": discord.Colour.orange(),
    "error": discord.Colour.red(),
}
_ICONS = {"notice": "🆕", "warning": "🐢", "error": "🔥"}

_log = get_logger(__name__)


_ENVIRONMENT_ICONS = {"storage": "🗄️", "records": "📥"}


def render_environment(incident: Incident) -> discord.Embed:
    """An environment incident: what is wrong, what it needs; no 🔍/🛠 — code can't fix it."""
    icon = _ENVIRONMENT_ICONS.get(incident.kind, "🌐")
    number = f" #{incident.id}" if incident.id is not None else ""
    what = "Storage incident" if incident.kind == "storage" else "Environment incident"
    state = "" if incident.state == "open" else f" — {incident.state}"
    embed = discord.Embed(
        title=f"{icon} {what}{number}: {incident.kind}{state}",
        description=incident.summary,
        colour=discord.Colour.dark_grey()
        if incident.state in ("resolved", "muted")
        else _COLOURS.get(incident.level, discord.Colour.red()),
    )
    embed.add_field(name="Since", value=_when(incident.first_seen, "R"))
    embed.add_field(name="Seen", value=f"{incident.count} time{'s' * (incident.count != 1)}")
    if incident.need:
        embed.add_field(name="Needs", value=incident.need[:1000], inline=False)
    if incident.sample.get("error_message"):
        embed.add_field(name="Error", value=f"`{str(incident.sample['error_message'])[:300]}`", inline=False)
    embed.set_footer(text="environment problem, not a code bug: nothing for the code agent to fix")
    return embed


def render(incident: Incident) -> discord.Embed:
    """The announcement: what broke, since when, how often, who, a sample, how to act."""
    if incident.category == "environment":
        return render_environment(incident)
    sample = incident.sample
    state = "" if incident.state == "open" else f" — {incident.state}"
    embed = discord.Embed(
        title=f"{_ICONS[incident.level]} Incident #{incident.id}: {kind_words(incident.kind)}{state}",
        description=incident.summary,
        colour=discord.Colour.dark_grey()
        if incident.state in ("resolved", "muted")
        else _COLOURS[incident.level],
    )
    embed.add_field(name="Since", value=_when(incident.first_seen, "R"))
    users = len(incident.user_ids)
    embed.add_field(
        name="Seen",
        value=f"{incident.count} time{'s' * (incident.count != 1)}, {users} user{'s' * (users != 1)}",
    )
    if sample.get("error_type"):
        message = (sample.get("error_message") or "")[:300]
        embed.add_field(name="Sample error", value=f"`{sample['error_type']}: {message}`", inline=False)
    if sample.get("frames"):
        embed.add_field(
            name="Where", value="\n".join(f"`{frame}`" for frame in sample["frames"]), inline=False
        )
    if incident.autonomy:  # what the bot did about it by itself: "Investigating — run #7", then the cause
        embed.add_field(name="On my own", value=incident.autonomy[:1024], inline=False)
    embed.set_footer(text=f"rules: {', '.join(incident.rules)} · 🔍 investigate · 🛠 fix")
    return embed


class IncidentButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"incident:(?P<id>\d+):(?P<action>investigate|fix)",
):
    """🔍 Investigate / 🛠 Fix; persistent, so it works on announcements from before a restart."""

    def __init__(self, incident_id: int, action: RunKind) -> None:
        label, emoji = ("Investigate", "🔍") if action == "investigate" else ("Fix", "🛠")
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=f"incident:{incident_id}:{action}",
            )
        )
        self.incident_id = incident_id
        self.action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> IncidentButton:
        return cls(int(match["id"]), "fix" if match["action"] == "fix" else "investigate")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot = attached(interaction.client)
        text = await request_action(bot, self.incident_id, interaction.user, self.action, "button")
        await interaction.response.send_message(text, ephemeral=True)


def recording_notice(recorder: Any) -> str | None:
    """What /incidents says about action records that are not in the database: shed because even the
    journal could not keep up (lost, counted by kind), or waiting in the journal for the database."""
    lines = []
    if recorder.shed:
        kinds = ", ".join(f"`{kind}` {count}" for kind, count in recorder.shed.most_common(5))
        failures = f"; {recorder.shed_failures} of them failures" if recorder.shed_failures else ""
        lines.append(
            f"⚠️ {sum(recorder.shed.values())} action record(s) were shed: the action journal could not "
            f"keep up ({kinds}{failures})."
        )
    if recorder.unreadable:
        lines.append(
            f"⚠️ {recorder.unreadable} action record(s) could not be read back from the action journal "
            "(a line cut short or not a record, or gone with the journal)."
        )
    if recorder.waiting:
        lines.append(f"⏳ {recorder.waiting} action record(s) wait for the database (none is lost).")
    return "\n".join(lines) or None


def _when(ts: float, style: Literal["R", "T"]) -> str:
    return discord.utils.format_dt(datetime.fromtimestamp(ts, tz=UTC), style)


def _view(incident_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(IncidentButton(incident_id, "investigate"))
    view.add_item(IncidentButton(incident_id, "fix"))
    return view


async def request_action(
    bot: Attachment, incident_id: int, user: discord.abc.User, action: RunKind, via: str
) -> str:
    """An allow-listed user's 🔍/🛠 on an announcement starts a run; anyone else is refused (and recorded)."""
    services = bot.services
    if not bot.authorize(user, action=action, incident_id=incident_id, via=via):
        return f"Sorry {user.display_name}, only allow-listed developers can ask me to {action}."
    try:
        incident = await services.incidents.fetch(incident_id)
        refusal = services.incidents.refusal(incident)
        if refusal is not None:
            return refusal
        await services.improve.ensure_ready(action)
        if not await services.incidents.request(incident_id, user.id, action, via):
            return f"You already asked me to {action} incident #{incident_id}."
        try:
            run, joined = await services.improve.request_or_join(
                kind=action,
                requester_id=user.id,
                channel_id=incident.channel_id,
                incident_id=incident_id,
                description=f"{kind_words(incident.kind)}: {incident.summary}",
            )
        except UserError:
            await services.incidents.withdraw_request(incident_id, user.id, action)  # so they can ask again
            raise
    except UserError as exc:
        return str(exc)
    if joined:
        return f"Run #{run.id} is already on it ({state_label(run.state)})."
    return f"On it: run #{run.id} will {action} incident #{incident_id} (requested by {user.display_name})."


def _nonce(incident: Incident) -> str:
    """The announcement's nonce: Discord answers a second post with the same one (within minutes)
    with the first message, so a leader that died between posting and storing the message id does
    not make its successor announce the incident twice. The first-seen time tells apart incidents
    of the same number in another database."""
    return f"i{incident.id}-{int(incident.first_seen)}"[:25]


class Incidents(commands.Cog):
    def __init__(self, bot: Attachment) -> None:
        self.bot = bot
        self.incidents = bot.services.incidents

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(IncidentButton)
        self.incidents.announcer = self

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(IncidentButton)
        if self.incidents.announcer is self:
            self.incidents.announcer = None

    # -- Announcer ------------------------------------------------------------------------------

    async def announce(self, incident: Incident) -> tuple[int, int] | None:
        # Before the bot is ready no channel is known: a change at start (storage writable again once the
        # action records that waited are stored) would be posted into nothing.
        await self.bot.wait_until_ready()
        once = {"nonce": _nonce(incident)} if incident.id is not None else {}
        if incident.category == "environment":  # nothing to investigate or fix in code: no buttons
            sent = await self.bot.send_dev(embed=render(incident), **once)
            return (sent[0].channel.id, sent[0].id) if sent else None
        assert incident.id is not None
        sent = await self.bot.send_dev(embed=render(incident), view=_view(incident.id), **once)
        if not sent:
            return None
        message = sent[0]
        try:
            for emoji in ("🔍", "🛠"):
                await message.add_reaction(emoji)
        except discord.HTTPException as exc:
            # Posted is announced: its id must be stored, or the next leader would announce it again.
            # The buttons offer the same actions.
            _log.warning("announcement reactions not added", incident_id=incident.id, error=str(exc))
        return message.channel.id, message.id

    async def update(self, incident: Incident) -> tuple[int, int] | None:
        """Edit the announcement in place; one that is gone (deleted on Discord, or from a playground
        session before this one) is posted again, and where it went is returned to be stored."""
        if incident.channel_id is None or incident.message_id is None:
            return None
        await self.bot.wait_until_ready()
        channel = self.bot.channel_by_id(incident.channel_id)
        if not isinstance(channel, discord.abc.Messageable) or not hasattr(channel, "get_partial_message"):
            return await self._announce_again(incident, "its channel is gone")
        try:
            await channel.get_partial_message(incident.message_id).edit(embed=render(incident))
        except discord.NotFound:
            return await self._announce_again(incident, "its message is gone")
        except discord.HTTPException as exc:  # not allowed to edit it, Discord failing: next change
            _log.warning(
                "announcement not updated", incident_id=incident.id, error=f"{exc.status} {exc.text}"
            )
        return None

    async def _announce_again(self, incident: Incident, why: str) -> tuple[int, int] | None:
        _log.info("announcement posted again", incident_id=incident.id, why=why)
        incident.message_id = None  # a new post, not the old one's nonce echoed back
        return await self.announce(incident)

    # -- reactions on announcements ---------------------------------------------------------------

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        action = ACTIONS.get(str(payload.emoji))
        if action is None or payload.user_id == getattr(self.bot.user, "id", None):
            return
        incident = self.incidents.by_message(payload.message_id)
        if incident is None or incident.id is None:
            return
        user = (
            payload.member or self.bot.get_user(payload.user_id) or await self.bot.fetch_user(payload.user_id)
        )
        text = await request_action(self.bot, incident.id, user, action, "reaction")
        channel = self.bot.get_channel(payload.channel_id)
        if isinstance(channel, discord.abc.Messageable):
            await channel.send(addressed(user, text)[:2000], allowed_mentions=discord.AllowedMentions.none())

    # -- commands -------------------------------------------------------------------------------

    @app_commands.command(name="incidents", description="List open incidents.")
    async def list_incidents(self, interaction: discord.Interaction[Any]) -> None:
        # Newest first: the incident opened last leads, however recently an older one was seen again.
        # A storage incident whose row cannot be written yet has no number: it is the newest.
        active = sorted(
            self.incidents.active(), key=lambda i: i.id if i.id is not None else float("inf"), reverse=True
        )
        lines = [
            (f"**#{i.id}**" if i.id is not None else "**(not saved yet)**")
            + f" {_ICONS[i.level]} {kind_words(i.kind)} — {i.summary} · seen {i.count}× · {i.state}"
            + (" · environment" if i.category == "environment" else "")
            for i in active
        ] or ["No open incidents. 🎉"]
        notice = recording_notice(self.bot.services.recorder)
        if notice:
            lines.append(notice)
        await interaction.response.send_message("\n".join(lines)[:2000])

    @app_commands.command(
        name="incident", description="Show an incident, or acknowledge, mute or resolve it."
    )
    @app_commands.describe(incident_id="the incident number", action="what to do (default: show)")
    async def incident(
        self,
        interaction: discord.Interaction[Any],
        incident_id: int,
        action: Literal["show", "acknowledge", "mute", "resolve", "reopen"] = "show",
    ) -> None:
        if action == "show":
            incident = await self.incidents.fetch(incident_id)
            samples = await self.incidents.samples(incident)
            embed = render(incident)
            for record in samples:
                when = _when(record.ts, "T")
                where = record.frames[-1] if record.frames else record.kind
                who = self.bot.services.people.name(record.user_id) or f"user {record.user_id}"
                embed.add_field(
                    name=f"{when} · {who}",
                    value=f"`{record.error_type}: {(record.error_message or '')[:150]}`\n`{where}`",
                    inline=False,
                )
            await interaction.response.send_message(embed=embed)
            return
        user = interaction.user
        if not self.bot.authorize(user, action=action, incident_id=incident_id, via="slash"):
            await interaction.response.send_message(
                f"Sorry, only allow-listed developers can {action} incidents.", ephemeral=True
            )
            return
        state = {"acknowledge": "acknowledged", "mute": "muted", "resolve": "resolved", "reopen": "open"}[
            action
        ]
        incident = await self.incidents.set_state(incident_id, state, user.id)  # type: ignore[arg-type]
        await interaction.response.send_message(f"Incident #{incident.id} is now {incident.state}.")


async def setup(bot: commands.Bot) -> None:
    await add_surface_cog(bot, Incidents(attached(bot)))
