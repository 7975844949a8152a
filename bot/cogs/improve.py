"""Self-improvement in Discord: /investigate, /fix, /runs, /run, /cancel, /pause, /resume, /budget,
plain words addressed to the bot in a dev channel, and the status message of each run.

Words are understood in two steps. The word grammar (bot/improve/intent.py) is the fast path. A
message it cannot place, said to the bot in a dev channel by an allow-listed developer, is decided by
the chat model with a structured tool call (bot/chat/route.py: fix, investigate or chat, and which
command or incident); with no model — no key, or its API failing — the bot asks one short question
("Is this about `/quiz`? Reply fix or investigate."), as is a vague complaint ("/convert seems off"),
with [Investigate] [Fix] [No] buttons (persistent) acting on the message it answers, or a reply ("fix").
Candidates come in order of evidence, to the question and the model; a target only guessed goes to it."""

from __future__ import annotations

import asyncio
import contextlib
import io
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from mendbot.improve.intent import Intent, parse_intent
from mendbot.improve.runs import TERMINAL_STATES, Run, RunKind
from mendbot.kernel.errors import UserError
from mendbot.kernel.log import get_logger
from mendbot.kernel.money import usd
from mendbot.runtime.attachment import Attachment, add_surface_cog, attached, role_ids, takes_no_words
from mendbot.runtime.run_text import proposal_message, run_detail, state_shown, status_text
from mendbot.trust.grammar import read_approval

from ._asking import (
    AskButton,
    ask_question,
    ask_view,
    asked_about,
    bug_question,
    model_decision,
    offered_parts,
    question_replied,
)
from .ship import proposal_view

if TYPE_CHECKING:
    from mendbot.improve.evidence.target import Target

_log = get_logger(__name__)


# States in which the run waits for people, not for the bot: no typing indicator then.
_WAITING = frozenset({"awaiting_approval", "watching", "interrupted"})


class Improve(commands.Cog):
    def __init__(self, bot: Attachment) -> None:
        self.bot = bot
        self.improve = bot.services.improve
        self._typing: dict[int, asyncio.Task[None]] = {}  # run id → "mendbot is typing…" in its channel

    async def cog_load(self) -> None:
        self.improve.reporter = self
        self.bot.add_dynamic_items(AskButton)

    async def cog_unload(self) -> None:
        if self.improve.reporter is self:
            self.improve.reporter = None
        for run_id in list(self._typing):
            self._stop_typing(run_id)

    def _keep_typing(self, run: Run, channel: discord.abc.Messageable) -> None:
        """While a run works, its channel shows the bot typing (discord.py renews it every few seconds)."""
        if run.state in TERMINAL_STATES or run.state in _WAITING:
            self._stop_typing(run.id)
            return
        task = self._typing.get(run.id)
        if task is not None and not task.done():
            return

        async def typing() -> None:
            with contextlib.suppress(discord.HTTPException):
                async with channel.typing():
                    await asyncio.Event().wait()  # until cancelled by _stop_typing

        self._typing[run.id] = asyncio.get_running_loop().create_task(typing())

    def _stop_typing(self, run_id: int) -> None:
        task = self._typing.pop(run_id, None)
        if task is not None:
            task.cancel()

    # -- RunReporter ----------------------------------------------------------------------------

    async def progress(self, run: Run, lines: list[str]) -> None:
        channel = self.bot.run_channel(run.channel_id)
        if channel is None:
            return
        self._keep_typing(run, channel)
        text = status_text(run, lines, self.bot.services.clock().timestamp())
        if run.status_message_id is not None:
            try:
                await channel.get_partial_message(run.status_message_id).edit(content=text)  # type: ignore[attr-defined]
                return
            except discord.NotFound:
                pass  # deleted, or a resumed run's message from a world gone since: post a new one
        message = await channel.send(text)
        await self.improve.runs.update(run.id, status_message_id=message.id)

    async def report(self, run: Run, text: str, *, diff: str | None = None) -> None:
        self._stop_typing(run.id)
        channel = self.bot.run_channel(run.channel_id)
        if channel is None:
            return
        proposal = run.proposal_id if run.state == "awaiting_approval" else None
        if proposal is None:
            message = await channel.send(text[:2000])
        else:  # the proposal's message: approvals (✅, buttons, "ship it" replies) attach to it
            signin = self.bot.services.dashboard
            content, attached = proposal_message(
                run.id, text, diff, signin.base_url if signin is not None else None
            )
            files = [discord.File(io.BytesIO(attached[1]), filename=attached[0])] if attached else []
            message = await channel.send(content, view=proposal_view(proposal), files=files)
            await self.bot.services.deploy.approvals.register_message(
                proposal, message.channel.id, message.id
            )
        await self.improve.runs.event(run.id, "reported", actor="bot", detail={"message_id": message.id})

    # -- shared ---------------------------------------------------------------------------------

    def _in_dev(self, channel_id: int | None) -> bool:
        return channel_id in self.bot.services.settings.discord.dev_channel_ids

    def _allowed(self, user: discord.abc.User, action: str, **context: Any) -> bool:
        return self.bot.authorize(user, action, **context)

    async def start(
        self,
        *,
        user: discord.abc.User,
        channel_id: int | None,
        kind: RunKind,
        description: str,
        incident_id: int | None,
        security: bool = False,
        via: str = "slash",
        fingerprint: str | None = None,
        target_kind: str | None = None,
    ) -> str:
        """Authorise and start a run; returns what to tell the user."""
        if not self._allowed(user, kind, incident_id=incident_id, via=via):
            return f"Sorry {user.display_name}, only allow-listed developers can ask me to {kind}."
        if security and not self._allowed(user, "security", via=via):
            return "Only allow-listed developers can start a run with the security flag."
        refusal = await self.bot.services.incidents.refusal_for(incident_id=incident_id)
        if refusal is not None:
            return refusal
        try:
            run, joined = await self.improve.request_or_join(
                kind=kind,
                requester_id=user.id,
                channel_id=channel_id,
                incident_id=incident_id,
                description=description,
                security=security,
                fingerprint=fingerprint,
                target_kind=target_kind,
            )
        except UserError as exc:
            return str(exc)
        if joined:
            return f"Run #{run.id} is already on it ({state_shown(run.state)})."
        target = f" incident #{incident_id}" if incident_id else (f" `{target_kind}`" if target_kind else "")
        return f"On it: run #{run.id} will {kind}{target}. I'll keep its status message up to date."

    # -- slash commands -------------------------------------------------------------------------

    @app_commands.command(name="investigate", description="Investigate a problem (read-only) and report.")
    @app_commands.describe(description="what is wrong", incident="the incident number, if any")
    async def investigate(
        self, interaction: discord.Interaction[Any], description: str, incident: int | None = None
    ) -> None:
        await self._slash_start(interaction, "investigate", description, incident, False)

    @app_commands.command(name="fix", description="Investigate, fix and propose a tested change.")
    @app_commands.describe(
        description="what is wrong",
        incident="the incident number, if any",
        security="allow changes to protected paths (needs the security approval)",
    )
    async def fix(
        self,
        interaction: discord.Interaction[Any],
        description: str,
        incident: int | None = None,
        security: bool = False,
    ) -> None:
        await self._slash_start(interaction, "fix", description, incident, security)

    async def _slash_start(
        self,
        interaction: discord.Interaction[Any],
        kind: RunKind,
        description: str,
        incident: int | None,
        security: bool,
    ) -> None:
        if not self._in_dev(interaction.channel_id):
            await interaction.response.send_message("Ask me that in the dev channel.", ephemeral=True)
            return
        text = await self.start(
            user=interaction.user,
            channel_id=interaction.channel_id,
            kind=kind,
            description=description,
            incident_id=incident,
            security=security,
        )
        await interaction.response.send_message(text)

    @app_commands.command(name="runs", description="Recent self-improvement runs.")
    async def list_runs(self, interaction: discord.Interaction[Any]) -> None:
        runs = await self.improve.runs.list_recent(10)
        lines = [
            f"**#{r.id}** {r.kind} {state_shown(r.state)} {usd(r.cost_usd)} — {r.description[:80]}"
            for r in runs
        ] or ["No runs yet."]
        await interaction.response.send_message("\n".join(lines)[:2000])

    @app_commands.command(name="run", description="Show a run, or resume an interrupted one.")
    @app_commands.describe(run_id="the run number (see /runs)", action="show it (default) or resume it")
    async def show_run(
        self,
        interaction: discord.Interaction[Any],
        run_id: int,
        action: Literal["show", "resume", "redo"] = "show",
    ) -> None:
        if action == "redo":
            await interaction.response.send_message(await self.redo(interaction.user, run_id))
            return
        if action == "resume":
            if not self._allowed(interaction.user, "resume_run", run_id=run_id):
                await interaction.response.send_message(
                    "Only allow-listed developers can resume runs.", ephemeral=True
                )
                return
            current = await self.improve.runs.get(run_id)
            if current.state == "interrupted" and current.interrupted_from == "merging":
                await interaction.response.defer(thinking=True)
                text = await self.bot.services.deploy.resume_deploy(
                    run_id, actor=f"user:{interaction.user.id}"
                )
                await interaction.followup.send(text[:2000])
                return
            run = await self.improve.resume_run(run_id, interaction.user.id)
            await interaction.response.send_message(f"Resuming run #{run.id}.")
            return
        await interaction.response.send_message(await run_detail(self.bot.services, run_id))

    @app_commands.command(name="cancel", description="Cancel a run.")
    @app_commands.describe(run_id="the run number (see /runs)")
    async def cancel(self, interaction: discord.Interaction[Any], run_id: int) -> None:
        if not self._allowed(interaction.user, "cancel", run_id=run_id):
            await interaction.response.send_message(
                "Only allow-listed developers can cancel runs.", ephemeral=True
            )
            return
        await interaction.response.defer(thinking=True)
        run = await self.improve.cancel(run_id, interaction.user.id)
        await interaction.followup.send(f"Run #{run.id} is now {state_shown(run.state)}.")

    @app_commands.command(name="pause", description="Stop starting runs and interrupt running ones.")
    async def pause(self, interaction: discord.Interaction[Any]) -> None:
        if not self._allowed(interaction.user, "pause"):
            await interaction.response.send_message(
                "Only allow-listed developers can pause me.", ephemeral=True
            )
            return
        await interaction.response.defer(thinking=True)
        stopped = await self.improve.pause(interaction.user.id)
        await interaction.followup.send(
            f"⏸ Self-improvement paused; {stopped} running run(s) stopped. `/resume` to continue."
        )

    @app_commands.command(name="resume", description="Allow runs again after /pause.")
    async def resume(self, interaction: discord.Interaction[Any]) -> None:
        if not self._allowed(interaction.user, "resume"):
            await interaction.response.send_message(
                "Only allow-listed developers can resume me.", ephemeral=True
            )
            return
        await self.improve.resume(interaction.user.id)
        await interaction.response.send_message("▶️ Self-improvement resumed.")

    @app_commands.command(name="budget", description="Self-improvement spend and limits.")
    async def budget(self, interaction: discord.Interaction[Any]) -> None:
        report = await self.improve.policy.budget()
        active, reason = await self.bot.services.devmode.active()
        dev = f"**Dev mode:** on — {reason}; autonomous runs wait." if active else "**Dev mode:** off."
        await interaction.response.send_message(f"{report.render()[: 1999 - len(dev)]}\n{dev}")

    # -- plain words ----------------------------------------------------------------------------

    def _addressed_in_dev(self, message: discord.Message) -> bool:
        """Said to the bot (mentioned, or replying to it) in a dev channel, by a person."""
        me = self.bot.user
        if me is None or message.author.bot or not self._in_dev(message.channel.id):
            return False
        ref = message.reference
        replied = (
            isinstance(ref.resolved, discord.Message) and ref.resolved.author.id == me.id if ref else False
        )
        return me in message.mentions or replied

    def _words(self, message: discord.Message) -> str:
        me = self.bot.user
        assert me is not None
        return message.content.replace(me.mention, " ").replace(f"<@!{me.id}>", " ")

    def request_intent(self, message: discord.Message) -> Intent | None:
        """The improvement request in a message addressed to the bot in a dev channel, if any."""
        if not self._addressed_in_dev(message):
            return None
        intent = parse_intent(self._words(message), self.loaded_kinds())
        return intent if intent.kind != "none" else None

    def undecided(self, message: discord.Message) -> bool:
        """A message the grammar could not place, said to the bot in a dev channel by an allow-listed
        developer: the model decides what it asks for, or the bot asks (never chatted past)."""
        if not self._addressed_in_dev(message) or self.request_intent(message) is not None:
            return False
        author = message.author  # (a bare mention has nothing to place)
        if not parse_intent(self._words(message)).text:
            return False
        return self.bot.services.access.is_allowed(author.id, role_ids(author), is_bot=author.bot)

    def claims(self, message: discord.Message) -> bool:
        """Whether this cog answers the message (the chat cog then stays out): a request in words, a
        reply to one of its questions, or a developer's message the grammar could not place."""
        if not self._addressed_in_dev(message):
            return False
        ref = message.reference
        replied = ref.resolved if ref is not None and isinstance(ref.resolved, discord.Message) else None
        asked = asked_about(replied) is not None
        return asked or self.request_intent(message) is not None or self.undecided(message)

    def loaded_kinds(self) -> set[str]:
        """The kinds of the loaded commands, as the recorder names them (`app:x`, `command:x`)."""
        return {f"command:{c.qualified_name}" for c in self.bot.walk_commands()} | {
            f"app:{c.qualified_name}" for c in self.bot.tree.walk_commands()
        }

    def concerns(self, message: discord.Message) -> bool:
        """Whether `on_message` has anything to do with `message` (said to mendbot in a dev channel)."""
        return self._addressed_in_dev(message)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if not self.concerns(message):
            return
        intent = self.request_intent(message)
        question = await question_replied(message, self.bot.user)
        if question is not None and (intent is None or intent.kind in ("fix", "investigate")):
            async with message.channel.typing():
                answer = await self._answer(message.author, message.channel, question, intent)
            await message.reply(answer[:2000], mention_author=False)
            return
        if intent is None:
            ctx = await self.bot.get_context(message)
            if self.undecided(message) and (not ctx.valid or takes_no_words(ctx)):
                ship = self.bot.surface_cog("Ship")
                if ship is not None and await ship.answers(message):
                    return  # a decision on a proposal ("wait", "ship it later"): the approval flow's
                await self._decide(message)
            return
        async with message.channel.typing():  # finding "this" can take a moment: show it is heard
            reply = await self._handle_words(message, intent)
        if reply:
            await message.reply(reply, mention_author=False)

    async def _decide(self, message: discord.Message) -> None:
        """A developer's message the grammar could not place: the chat model decides with its tool call
        what it asks for; with no model (no key, or its API failing), one short question."""
        text = parse_intent(self._words(message)).text
        async with message.channel.typing():
            target = await self._target(message, text)
            kinds = offered_parts(target, await self._known_kinds())
            decision = await model_decision(self.bot, message, text, list(kinds))
            chat = self.bot.get_cog("Chat")
            if decision is not None and decision.action == "chat" and chat is not None:
                await chat.answer(message)
                return
            if decision is None or decision.action == "chat":
                question = bug_question(target)
                if decision is None and self.bot.services.chat.model_away() is not None:
                    question = (
                        f"I can't reach the model's API right now, so I can't tell what you mean. {question}"
                    )
                await message.reply(question, view=ask_view(message.id), mention_author=False)
                return
            named = [kinds[decision.command]] if decision.command in kinds else None
            target = await self._target(message, text, named=named, incident_id=decision.incident)
            reply = await self._start_on(
                message.author, message, decision.action, text, target, security=False
            )
        await message.reply(reply[:2000], mention_author=False)

    async def _known_kinds(self) -> set[str]:
        from mendbot.improve.evidence.target import known_kinds_in  # with the source index, read on first use

        return self.loaded_kinds() | await known_kinds_in(self.bot.services.db, self._roots())

    def _roots(self) -> tuple[Any, ...]:  # the checkouts whose code runs here
        return (self.bot.services.settings.repo_dir, self.bot.recorder.repo_root)

    async def _target(
        self,
        message: discord.Message,
        text: str,
        *,
        named: list[str] | None = None,
        incident_id: int | None = None,
    ) -> Target:
        """What the words are about (bot/improve/evidence/target.py): the incident replied to or chosen, a
        kind named, or the best match among what was recorded and what the code handles."""
        from mendbot.improve.evidence.target import resolve_target  # with the source index, read on first use

        return await resolve_target(
            self.bot.services.db,
            text,
            replied_incident_id=incident_id or self._replied_incident(message),
            known_kinds=await self._known_kinds(),
            now=self.bot.services.clock().timestamp(),
            named=named,
            roots=self._roots(),
        )

    async def _start_on(
        self,
        user: discord.abc.User,
        message: discord.Message,
        kind: RunKind,
        description: str,
        target: Target,
        *,
        security: bool,
    ) -> str:
        """Start the run on a resolved target (or ask which one, when it is ambiguous)."""
        if target.ambiguous:
            return target.question()
        incident_id = target.incident_ids[0] if target.incident_ids else None
        return await self.start(
            user=user,
            channel_id=message.channel.id,
            kind=kind,
            description=description,
            incident_id=incident_id,
            security=security,
            via="words",
            fingerprint=target.fingerprint if incident_id is None else None,
            target_kind=target.kind if incident_id is None else None,
        )

    async def _request_from_words(
        self, user: discord.abc.User, message: discord.Message, kind: RunKind, intent: Intent
    ) -> str:
        """Resolve what the words are about (a guess: the model's pick) and start the run (or ask)."""
        target = await self._target(message, intent.text)
        if target.guess and not target.ambiguous:
            kinds = offered_parts(target, await self._known_kinds())
            decision = await model_decision(self.bot, message, intent.text, list(kinds))
            chosen = kinds.get(decision.command or "") if decision is not None else None
            if chosen is not None and chosen != target.kind:
                target = await self._target(message, intent.text, named=[chosen])
        return await self._start_on(user, message, kind, intent.text, target, security=intent.security)

    async def answer_question(
        self, interaction: discord.Interaction[Any], message_id: int, action: str
    ) -> str:
        """A click on [Investigate] / [Fix] / [No] under the question about `message_id`."""
        if action == "no":
            return "OK, leaving it."
        kind: RunKind = "fix" if action == "fix" else "investigate"
        return await self._answer(interaction.user, interaction.channel, message_id, Intent(kind, action))

    async def _answer(
        self, user: discord.abc.User, channel: Any, message_id: int, answer: Intent | None
    ) -> str:
        """The answer to a question of ours about `message_id` — a button, or a reply in words: fix or
        investigate what that message was about; anything else leaves it."""
        if answer is None or answer.kind not in ("fix", "investigate"):
            return "OK, leaving it."
        try:
            original = await channel.fetch_message(message_id)
        except (discord.NotFound, AttributeError):
            return "I can't find the message that question was about any more."
        intent = parse_intent(self._words(original))
        kind: RunKind = "fix" if answer.kind == "fix" else "investigate"
        return await self._request_from_words(user, original, kind, intent)

    async def _handle_words(self, message: discord.Message, intent: Intent) -> str | None:
        user = message.author
        if intent.kind in ("cancel", "pause") and await self._objects_to_a_proposal(message):
            return None  # "stop", "hold off" replying to a proposal hold it: bot/cogs/ship.py answers
        if intent.kind in ("investigate", "fix") and not intent.certain:
            question = ask_question(intent, await self._known_kinds())
            await message.reply(question, view=ask_view(message.id), mention_author=False)
            return None
        if intent.kind in ("investigate", "fix"):
            ref = message.reference
            refusal = await self.bot.services.incidents.refusal_for(
                message_id=ref.message_id if ref is not None else None
            )
            if refusal is not None:  # "fix this" on an environment incident: nothing to change in code
                return refusal
            return await self._request_from_words(user, message, intent.kind, intent)
        if intent.kind == "status":
            runs = await self.improve.runs.active()
            if not runs:
                return "Nothing running. `/runs` lists recent runs."
            return "\n".join(f"#{r.id} {r.kind} {state_shown(r.state)} {usd(r.cost_usd)}" for r in runs)
        if intent.kind == "cancel":
            if not self._allowed(user, "cancel", via="words"):
                return "Only allow-listed developers can cancel runs."
            run_id = intent.run_id or next((r.id for r in await self.improve.runs.active()), None)
            if run_id is None:
                return "Nothing is running."
            run = await self.improve.cancel(run_id, user.id)
            return f"Run #{run.id} is now {state_shown(run.state)}."
        if intent.kind in ("pause", "resume"):
            if not self._allowed(user, intent.kind, via="words"):
                return f"Only allow-listed developers can {intent.kind} me."
            if intent.kind == "pause":
                stopped = await self.improve.pause(user.id)
                return f"⏸ Paused; {stopped} running run(s) stopped."
            await self.improve.resume(user.id)
            return "▶️ Resumed."
        if intent.kind == "redo":
            run_id = intent.run_id or await self._replied_run(message)
            if run_id is None:
                return "Reply `redo` to the run's message, or use `/run <id> action:redo`."
            return await self.redo(user, run_id)
        if intent.kind in ("approve", "reject"):
            ref = message.reference
            approvals = self.bot.services.deploy.approvals
            if (
                ref is not None
                and ref.message_id is not None
                and await approvals.proposal_for_message(ref.message_id)
            ):
                return None  # a reply to a proposal: the approval flow (bot/cogs/ship.py) answers it
            verb, words = ("ship", "ship it") if intent.kind == "approve" else ("reject", "don't ship")
            return (
                f"There's nothing to {verb} here: reply **{words}** to a proposal's message "
                "(or press its button). `/runs` lists runs awaiting approval."
            )
        if intent.kind == "rollback":
            return (
                "To roll back a deployed run use `/rollback <run>` (`now=true` reverts and reloads at once)."
            )
        return None

    async def redo(self, user: discord.abc.User, run_id: int) -> str:
        """Run again on the same target from the current main (allow-listed); the reply for chat."""
        if not self._allowed(user, "redo", run_id=run_id):
            return "Only allow-listed developers can redo runs."
        try:
            run, joined = await self.improve.redo(run_id, user.id)
        except UserError as exc:
            return str(exc)
        if joined:
            return f"Run #{run.id} is already on it ({state_shown(run.state)})."
        return f"🔁 Run #{run.id} redoes run #{run_id} on the current main; its proposal replaces the old."

    async def _objects_to_a_proposal(self, message: discord.Message) -> bool:
        """A reply to a proposal's message that the approval grammar reads as holding it."""
        ref = message.reference
        if ref is None or ref.message_id is None or not read_approval(message.content).holds:
            return False
        return await self.bot.services.deploy.approvals.proposal_for_message(ref.message_id) is not None

    async def _replied_run(self, message: discord.Message) -> int | None:
        ref = message.reference
        if ref is None or ref.message_id is None:
            return None
        proposal_id = await self.bot.services.deploy.approvals.proposal_for_message(ref.message_id)
        if proposal_id is not None:
            return (await self.bot.services.deploy.forge.get(proposal_id)).run_id
        run = await self.improve.runs.for_message(ref.message_id)
        return run.id if run is not None else None

    def _replied_incident(self, message: discord.Message) -> int | None:
        ref = message.reference
        if ref is None or ref.message_id is None:
            return None
        incident = self.bot.services.incidents.by_message(ref.message_id)
        return incident.id if incident is not None else None


async def setup(bot: commands.Bot) -> None:
    await add_surface_cog(bot, Improve(attached(bot)))
