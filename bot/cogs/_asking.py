"""Words the improvement cog (bot/cogs/improve.py) will not act on alone: the chat model's decision on a
developer's message the word grammar could not place (`model_decision`, bot/chat/route.py), and the
questions asked instead — about a vague complaint ("Investigate /convert: “seems off”?") or, with no
model, about that message ("Is this about `/quiz`? Reply fix or investigate.") — with their
[Investigate] [Fix] [No] buttons, persistent across restarts, whose custom ids name the message asked
about, so a reply in words to the question finds it too. Not an extension: its name starts with `_`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import discord

from mendbot.chat.route import Decision, OpenIncident
from mendbot.improve.intent import Intent, command_names_in
from mendbot.kernel.log import get_logger
from mendbot.runtime.attachment import Attachment, attached

if TYPE_CHECKING:
    from mendbot.improve.evidence.target import Target

__all__ = [
    "AskButton",
    "ask_question",
    "ask_view",
    "asked_about",
    "bug_question",
    "model_decision",
    "offered_parts",
    "question_replied",
    "spoken",
]

_log = get_logger(__name__)


def spoken(kind: str) -> str:
    """How a person writes a kind: `/quiz`, `!roll`, a context menu's name ("Save quote": only those
    may have capitals), or the kind itself."""
    family, _, name = kind.partition(":")
    if family == "app" and name != name.lower():
        return name
    return {"app": f"/{name}", "command": f"!{name}"}.get(family, name)


def bug_question(target: Target) -> str:
    """ "Is this about `/quiz`? Reply fix or investigate." — what the bot asks, with no model, about a
    message it could not place: its best guess at what the message is about, if it has one, and the
    next candidates in order of evidence ("Or: `wish` task, `!birthday`.")."""
    if target.incident_ids and target.kind:
        about = f"incident #{target.incident_ids[0]} (`{spoken(target.kind)}`)"
    elif target.kind:
        about = f"`{spoken(target.kind)}`"
    else:
        return "Is this a bug report? Reply fix or investigate."
    others = [c.kind for c in target.candidates if c.kind and c.kind != target.kind]
    also = list(dict.fromkeys(others))[:2]
    more = f" Or: {', '.join(f'`{spoken(kind)}`' for kind in also)}." if also else ""
    return f"Is this about {about}?{more} Reply fix or investigate."


def offered_parts(target: Target, known: Collection[str]) -> dict[str, str]:
    """The parts of the bot the model may name (as people write them → the kind): the candidates the
    evidence found first, then every known kind — the model is shown a bounded list."""
    found = [c.kind for c in target.candidates if c.kind] + ([target.kind] if target.kind else [])
    ordered = list(dict.fromkeys([*found, *sorted(known)]))
    return {spoken(kind): kind for kind in ordered}


_ASK_ID = re.compile(r"^ask:(\d+):")


def asked_about(message: discord.Message | None) -> int | None:
    """The id of the message a question of ours (its [Investigate] [Fix] [No] buttons) asks about."""
    for row in getattr(message, "components", None) or []:
        for child in getattr(row, "children", []):
            custom_id: str = getattr(child, "custom_id", None) or ""
            match = _ASK_ID.match(custom_id)
            if match is not None:
                return int(match[1])
    return None


def ask_question(intent: Intent, kinds: set[str]) -> str:
    """ "Investigate /convert: “gives odd results”?" — one line, the request quoted."""
    named = command_names_in(intent.text, kinds)
    said = " ".join(intent.text.split())
    said = said if len(said) <= 120 else said[:119].rstrip() + "…"
    subject = f"{spoken(named[0])}: " if named else ""
    return f"Investigate {subject}“{said}”?"


_ASK_LABELS: dict[str, tuple[str, discord.ButtonStyle]] = {
    "investigate": ("Investigate", discord.ButtonStyle.primary),
    "fix": ("Fix", discord.ButtonStyle.success),
    "no": ("No", discord.ButtonStyle.secondary),
}


class AskButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"ask:(?P<message>\d+):(?P<action>investigate|fix|no)",
):
    """[Investigate] [Fix] [No] under a question about a vague complaint; persistent across restarts."""

    def __init__(self, message_id: int, action: str) -> None:
        label, style = _ASK_LABELS[action]
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=f"ask:{message_id}:{action}"))
        self.message_id = message_id
        self.action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> AskButton:
        return cls(int(match["message"]), match["action"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot = attached(interaction.client)
        cog = bot.surface_cog("Improve")
        if cog is None:
            await interaction.response.send_message("Self-improvement is not loaded.", ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        text = await cog.answer_question(interaction, self.message_id, self.action)
        await interaction.followup.send(text[:2000])


def ask_view(message_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in ("investigate", "fix", "no"):
        view.add_item(AskButton(message_id, action))
    return view


async def question_replied(message: discord.Message, me: discord.abc.User | None) -> int | None:
    """The message a question of ours asks about, when this message replies to that question."""
    ref = message.reference
    if ref is None or ref.message_id is None:
        return None
    replied = ref.resolved if isinstance(ref.resolved, discord.Message) else None
    if replied is None:
        with contextlib.suppress(discord.HTTPException, AttributeError):
            replied = await message.channel.fetch_message(ref.message_id)
    if replied is None or me is None or replied.author.id != me.id:
        return None
    return asked_about(replied)


async def model_decision(
    bot: Attachment, message: discord.Message, text: str, commands: list[str]
) -> Decision | None:
    """What the chat model's tool call says the message asks for, given the commands and the open code
    incidents; None with no key, no call, or the model's API failing (its environment incident opened)."""
    incidents = [
        OpenIncident(i.id, i.kind, i.summary)
        for i in bot.services.incidents.active()
        if i.id is not None and i.category == "code"
    ]
    try:
        return await bot.services.chat.decide(
            text=text,
            commands=commands,
            incidents=incidents,
            channel_id=message.channel.id,
            user_id=message.author.id,
            message_id=message.id,
        )
    except Exception as exc:  # recorded by the chat service as the environment's failure: ask instead
        bot.environment_problem(exc, message.channel, message.author.id)
        _log.warning("the model could not decide: asking", error=f"{type(exc).__name__}: {exc}")
        return None
