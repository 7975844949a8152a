"""The handler side of a bot mendbot is attached to: how every command, interaction, listener and task
is run and recorded.

`Recording` holds what recording one bot instance needs — whatever its class: mendbot's own sample bot
(bot/runtime/app.py) or a bot someone else wrote. It subclasses nothing of discord.py: the instrumentor
(bot/runtime/instrument.py) wraps the bot instance's own methods (`invoke`, `_run_event`, its command
tree's `_call` and `on_error`, `add_cog`, `load_extension`, …) and adds listeners of its own, and each
wrapper calls the method here with the bot's original. While the bot takes no work (restarting or
shutting down) a command or interaction is refused with a short notice; otherwise each handler —
command, interaction, listener, an iteration of a cog's tasks.loop — is tracked in flight so a restart
can drain it, captured, timed and recorded as an action, and a failure takes the one error path: a bug
is recorded, logged and, unless the bot has an error handler of its own (which answers as it always
did), answered briefly; a user's mistake is answered. It stays whole: commands, listeners and entry
points share one admission, one in-flight set and one error path, and read best side by side (the
command tree's part is bot/runtime/tree_recording.py).

A Discord HTTP error raised by a handler (403, 404, 5xx), the model's API failing (unreachable,
401/403, 429, 5xx/529) — or a locked or full database met by a write outside the retry helper — is
not a bug: the one error path records it as a failed action marked `environment` (which the anomaly
rules skip), opens or counts an environment incident saying what the bot needs, and answers the user
where it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands, tasks

from mendbot.db import handlers as handler_queries
from mendbot.db.retry import SAVE_FAILED, storage_fault
from mendbot.kernel.errors import (
    EnvironmentProblem,
    describe,
    discord_problem,
    environment_extra,
    error_channel_id,
    model_problem,
    unwrap,
)
from mendbot.kernel.log import bind_context, bind_for_task, get_logger
from mendbot.observe.capture import (
    HandlerCapture,
    captured_fields,
    event_ids,
    install_reply_hooks,
    message_caller,
    message_invocation,
    start_capture,
)
from mendbot.observe.handlers import cog_handlers
from mendbot.observe.sampler import SlowSampler, coroutine_chain
from mendbot.runtime.entry_points import OwnHandler, failed_part
from mendbot.runtime.hooks import instrument_cog_hook, instrument_loop, record_extension
from mendbot.runtime.services import Services

__all__ = ["OURS", "OWN_ON_ERROR", "RESTART_NOTICE", "SHUTDOWN_NOTICE", "Host", "Recording", "takes_no_words"]

_log = get_logger(__name__)

# Set on mendbot's own listeners and wrappers on a bot: never recorded as the bot's, never its handlers.
OURS = "__mendbot__"
# Where the instrumentor keeps a command tree's own `on_error` set on the instance (`@tree.error`).
OWN_ON_ERROR = "__mendbot_own_on_error__"

RESTART_NOTICE = "I'm restarting to apply an update — try again in a few seconds."
SHUTDOWN_NOTICE = "I'm shutting down — try again in a little while."


def takes_no_words(ctx: commands.Context[Any]) -> bool:
    """A command that takes no arguments, followed by words it would ignore: said by mention, those
    words are about the command, not an invocation of it."""
    command = ctx.command
    if command is None or command.clean_params or isinstance(command, commands.Group):
        return False
    return bool(ctx.view.buffer[ctx.view.index :].strip())


Invoke = Callable[[commands.Context[Any]], Awaitable[None]]
# A bot mendbot records: any discord.py bot (AutoShardedBot is a Bot's sibling, not its subclass).
Host = commands.Bot | commands.AutoShardedBot


class Recording:
    """One bot instance's handlers admitted, tracked, recorded and, when they fail, taken through the
    one error path; the instrumentor routes the bot's own methods here."""

    def __init__(self, bot: Host, services: Services) -> None:
        self.bot = bot
        self.services = services
        services.people.client = bot  # names people go by, asked of the client first
        self._inflight: set[asyncio.Task[Any]] = set()
        self._started: weakref.WeakKeyDictionary[commands.Context[Any], float] = weakref.WeakKeyDictionary()
        self.accepting = True
        self.restart_requested: str | None = None  # the reason, once a restart was asked for
        self.extension_failures: dict[str, str] = {}  # extension → why it did not load (what serves not)
        # Off once mendbot's services have closed with the bot: discord.py's close then removes every cog,
        # which is no change of the bot's handlers to store (and the database is gone).
        self.keeping_handler_map = True
        self._captures: weakref.WeakKeyDictionary[commands.Context[Any], HandlerCapture] = (
            weakref.WeakKeyDictionary()
        )
        # Cogs whose listeners are recorded only when they fail: mendbot's own, on a bot it did not build
        # (bot/runtime/attachment.py's `add_surface_cog`). They read every message to find the ones
        # for mendbot, and their successes say nothing about the bot under repair.
        self.failures_only: weakref.WeakSet[commands.Cog] = weakref.WeakSet()
        # mendbot's own cogs' test of whether a message can concern them (their `on_message` asks it
        # first): a message that cannot is not handed to them at all (`scheduling_event`).
        self.message_filters: weakref.WeakKeyDictionary[commands.Cog, Callable[[discord.Message], bool]] = (
            weakref.WeakKeyDictionary()
        )
        self._inline: dict[str, Callable[..., None]] = {
            "on_message": self.saw_message,
            "on_interaction": self.saw_interaction,
            "on_raw_reaction_add": self.saw_reaction,
            "on_command_completion": self.command_completed,
            "on_app_command_completion": self.app_command_completed,
        }
        install_reply_hooks()
        recorder = services.recorder
        self.sampler = SlowSampler(
            (recorder.repo_root, *recorder.more_roots), threshold_ms=services.settings.observe.latency.min_ms
        )
        # Around every handler: no evidence of where its time went.
        self.sampler.skip(self.run_command, self.run_event, self.run_entry)

    # -- the one error path, which is also where every handled event is recorded ----------------

    @property
    def recorder(self) -> Any:
        return self.services.recorder

    def _claimed_by_mention(self, ctx: commands.Context[Any]) -> bool:
        """Words said to the bot by mention that ask for improvement work, though they begin like a
        prefix command.

        "@mendbot roll back run 2" begins with the name of `roll`: by mention it is a request the
        improvement flow answers (bot/cogs/improve.py), and answering it with dice as well would be a
        second, wrong reply. With the bot's own prefix ("!roll back") it stays a command.
        """
        user = self.bot.user
        if not ctx.valid or ctx.interaction is not None or user is None:
            return False
        if (ctx.prefix or "").strip() not in (f"<@{user.id}>", f"<@!{user.id}>"):
            return False
        improve: Any = self.bot.get_cog("Improve") or self.bot.get_cog("improve")  # (on another's bot)
        if improve is None:
            return False
        if improve.request_intent(ctx.message) is not None:
            return True
        return takes_no_words(ctx) and bool(improve.claims(ctx.message))  # "cmdstats falls over here"

    async def run_command(self, original: Invoke, ctx: commands.Context[Any], /) -> None:
        """The bot's `invoke` (its own, whatever it does), admitted, captured and timed; a check or an
        error handler failing is recorded."""
        if self._claimed_by_mention(ctx):
            return
        if not self.accepting and ctx.command is not None:
            await ctx.reply(self.not_accepting_notice, mention_author=False)
            return
        self._started[ctx] = time.perf_counter()
        if ctx.command is not None and ctx.interaction is None:
            capture = start_capture(
                f"command:{ctx.command.qualified_name}",
                {
                    "name": f"{ctx.prefix or ''}{ctx.invoked_with or ctx.command.qualified_name}",
                    "options": {"text": ctx.message.content[:200]},
                    "caller": message_caller(ctx.message),
                },
            )
            self._captures[ctx] = capture
            self.sampler.watch(capture)
        bind_for_task(
            guild_id=ctx.guild.id if ctx.guild else None, channel_id=ctx.channel.id, user_id=ctx.author.id
        )
        try:
            await original(ctx)
        except Exception as exc:
            if ctx.command is None:
                raise
            # discord.py hands a command's failure to its error handlers: what comes out here is a
            # check that raised instead of refusing, or an error handler (the command's `.error`, the
            # cog's `cog_command_error`) failing in turn.
            check = failed_part(exc)
            self._record_command(ctx, exc, handler=check is None)
            _log.error(
                "command check failed" if check else "command error handler failed",
                command=ctx.command.qualified_name,
                exc_info=unwrap(exc),
            )
            text, _ = describe(exc)
            if text is not None:
                with contextlib.suppress(discord.HTTPException):
                    await ctx.reply(text, mention_author=False)

    def _command_ids(self, ctx: commands.Context[Any]) -> dict[str, Any]:
        return {
            "guild_id": ctx.guild.id if ctx.guild else None,
            "channel_id": ctx.channel.id,
            "user_id": ctx.author.id,
            "message_id": ctx.message.id if ctx.interaction is None else None,
        }

    def _command_elapsed_ms(self, ctx: commands.Context[Any]) -> float:
        started = self._started.pop(ctx, None)
        if started is None and ctx.interaction is not None:
            started = ctx.interaction.extras.get("started")
        return (time.perf_counter() - started) * 1000 if started is not None else 0.0

    def begin_capture(
        self, extras: dict[str, Any], kind: str, name: str, asking: Callable[[], dict[str, Any]]
    ) -> None:
        """Open the capture of an interaction's handler (its task) and start watching it; what it was
        asked is worked out when first read (`HandlerCapture.asked`)."""
        capture = start_capture(f"{kind}:{name}", asking=asking)
        extras["capture"] = capture
        self.sampler.watch(capture)

    def end_capture(self, capture: HandlerCapture | None) -> dict[str, Any]:
        """The record fields a finished handler's capture fills in."""
        if capture is None:
            return {}
        return captured_fields(self.close_capture(capture))

    def close_capture(self, capture: HandlerCapture) -> HandlerCapture:
        """A handler's capture as it finishes: no longer watched, and nothing sent after is its reply."""
        self.sampler.unwatch(capture)
        capture.closed = True
        return capture

    @staticmethod
    def _listener_fields(capture: HandlerCapture, args: tuple[Any, ...]) -> dict[str, Any]:
        return captured_fields(capture) | event_ids(args)

    def _record_command(
        self,
        ctx: commands.Context[Any],
        error: BaseException | None,
        problem: EnvironmentProblem | None = None,
        *,
        handler: bool = False,
    ) -> None:
        """Record a command; `handler`: what failed is its error handler (the error is the handler's)."""
        if ctx.command is None:
            return
        capture = self._captures.pop(ctx, None)
        if capture is None and ctx.interaction is not None:
            capture = ctx.interaction.extras.get("capture")
        text, is_bug = describe(error) if error is not None else (None, False)
        is_bug = is_bug and problem is None
        command = f"command:{ctx.command.qualified_name}"
        part = failed_part(error) if is_bug and error is not None else None
        extra = {
            "via": "slash" if ctx.interaction else "prefix",
            **({"command": command} if part else {}),
            **({"error_handler_failed": True} if handler else {}),
            **environment_extra(error, problem),
            **({"user_error": text} if error is not None and not is_bug and problem is None else {}),
        }
        fields = functools.partial(self._command_fields, ctx, capture and self.close_capture(capture), extra)
        self._record(
            part or command,
            ctx.command.cog_name or "bot",
            self._command_elapsed_ms(ctx),
            unwrap(error) if is_bug and error is not None else None,
            ok=not is_bug and problem is None,
            fields=fields,
        )

    def _record(
        self,
        kind: str,
        source: str,
        duration_ms: float,
        error: BaseException | None,
        *,
        ok: bool,
        fields: Callable[[], dict[str, Any]],
    ) -> None:
        """Record a handler's run: an answer (a success, or a user's mistake answered) is worked out when
        it is taken in a moment later (`ActionRecorder.record_later`), after what the bot is answering
        now — the listeners on a member's message run before the answer of the command it calls is sent,
        and a command's record was built between its answer and the member's next call; a failure at
        once, in its own context (the rows it read)."""
        if ok and error is None:
            self.recorder.record_later(kind, source, duration_ms=duration_ms, fields=fields)
        else:
            self.recorder.record(kind, source, ok=ok, duration_ms=duration_ms, error=error, **fields())

    def _command_fields(
        self, ctx: commands.Context[Any], capture: HandlerCapture | None, extra: dict[str, Any]
    ) -> dict[str, Any]:
        """A command's record fields from its context and its finished capture."""
        asked = captured_fields(capture) if capture else {}
        return {"extra": extra} | asked | self._command_ids(ctx)

    def environment_problem(
        self, error: BaseException | None, channel: Any = None, user_id: int | None = None
    ) -> EnvironmentProblem | None:
        """A Discord HTTP error or a storage fault is the environment's problem: open (or count)
        its incident and say what to answer."""
        if error is None:
            return None
        original = unwrap(error)
        fault = storage_fault(original)
        if fault is not None:
            # A write that did not go through the retry helper met a locked or full database:
            # the same answer and the same storage incident (StorageHealth announces it).
            self.services.storage.failed(fault, str(original))
            return EnvironmentProblem(
                key="env:storage", kind="storage", summary=str(original), need="", reply=SAVE_FAILED
            )
        channel_id = error_channel_id(original)
        if channel_id is not None:
            channel = self.bot.get_channel(channel_id) or channel
        problem = discord_problem(error, channel) or model_problem(error)
        if problem is None:
            return None
        _log.warning(
            "the environment refused a call", kind=problem.kind, need=problem.need, error=str(original)
        )
        self.services.incidents.environment(
            problem.key,
            kind=problem.kind,
            summary=problem.summary,
            need=problem.need,
            level="warning",
            sample={"error_type": type(original).__name__, "error_message": str(original)[:500]},
            user_id=user_id,
        )
        return problem

    # -- who is who: a person who writes, clicks or reacts is someone the bot knows by name -------

    def saw_message(self, message: discord.Message) -> None:
        if not message.author.bot:
            self.services.people.seen(message.author)

    def saw_interaction(self, interaction: discord.Interaction[Any]) -> None:
        self.services.people.seen(interaction.user)

    def saw_reaction(self, payload: discord.RawReactionActionEvent) -> None:
        if payload.member is not None:  # in a guild: the member's name comes with the event
            self.services.people.seen(payload.member)

    def command_completed(self, ctx: commands.Context[Any]) -> None:
        self._record_command(ctx, None)

    # The listeners discord.py is given. `scheduling_event` calls what they call at once instead of
    # scheduling them: each was a task of its own, on every message, for a few dictionary updates.

    async def on_message(self, message: discord.Message) -> None:
        self.saw_message(message)

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        self.saw_interaction(interaction)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        self.saw_reaction(payload)

    async def on_command_completion(self, ctx: commands.Context[Any]) -> None:
        self.command_completed(ctx)

    def answers_command_errors(self, ctx: commands.Context[Any]) -> bool:
        """Whether the bot answers a failed command itself: the command's `.error`, its cog's
        `cog_command_error`, the bot's own `on_command_error` or another listener of it. Then mendbot
        only records; otherwise it answers, as discord.py's default would not."""
        command, cog = ctx.command, ctx.cog
        if (command is not None and command.has_error_handler()) or (
            cog is not None and cog.has_error_handler()
        ):
            return True
        own = getattr(type(self.bot), "on_command_error", None)
        if own is not None and own is not getattr(commands.bot.BotBase, "on_command_error", None):
            return True
        listeners = self.bot.extra_events.get("on_command_error", [])
        return any(getattr(listener, "__self__", None) is not self for listener in listeners)

    async def on_command_error(
        self, context: commands.Context[Any], exception: commands.CommandError, /
    ) -> None:
        problem = self.environment_problem(exception, context.channel, context.author.id)
        self._record_command(context, exception, problem)
        if self.answers_command_errors(context):
            return
        await self._answer_command_error(context, exception, problem)

    async def _answer_command_error(
        self,
        context: commands.Context[Any],
        exception: BaseException,
        problem: EnvironmentProblem | None = None,
    ) -> None:
        """Log a failed command's bug and answer it briefly (what the environment refused: its reply)."""
        text, is_bug = describe(exception)
        if problem is not None:
            text, is_bug = problem.reply, False
        with bind_context(
            guild_id=context.guild.id if context.guild else None,
            channel_id=context.channel.id,
            user_id=context.author.id,
        ):
            if is_bug:
                _log.error(
                    "command failed",
                    command=context.command and context.command.qualified_name,
                    exc_info=unwrap(exception),
                )
            if text is not None:
                try:
                    await context.reply(text, mention_author=False)
                except discord.HTTPException:
                    if problem is None:
                        raise
                    # Where Discord refuses the bot, the answer is refused too: the incident says why.

    def record_interaction(
        self,
        interaction: discord.Interaction[Any],
        error: BaseException | None,
        problem: EnvironmentProblem | None = None,
        entry: tuple[str, str] | None = None,
        *,
        handler: bool = False,
    ) -> None:
        """Record an app command's interaction, or (`entry`: kind and source) a view item's or modal's;
        `handler`: what failed is an error handler (the error is the handler's)."""
        command = interaction.command
        name = command.qualified_name if command is not None else "unknown"
        kind, source = entry or (
            f"app:{name}",
            getattr(getattr(command, "binding", None), "qualified_name", None) or "bot",
        )
        started = interaction.extras.get("started")
        duration_ms = (time.perf_counter() - started) * 1000 if started is not None else 0.0
        text, is_bug = describe(error) if error is not None else (None, False)
        is_bug = is_bug and problem is None
        part = failed_part(error) if is_bug and error is not None and kind.startswith("app:") else None
        extra = environment_extra(error, problem) or (
            {"user_error": text} if error is not None and not is_bug else None
        )
        if part is not None:
            extra, kind = {**(extra or {}), "command": kind}, part
        if handler:
            extra = {**(extra or {}), "error_handler_failed": True}
        capture = interaction.extras.get("capture")
        finished = capture and self.close_capture(capture)
        self._record(
            kind,
            source,
            duration_ms,
            unwrap(error) if is_bug and error is not None else None,
            ok=not is_bug and problem is None,
            fields=functools.partial(self._interaction_fields, interaction, finished, extra),
        )

    @staticmethod
    def _interaction_fields(
        interaction: discord.Interaction[Any], capture: HandlerCapture | None, extra: dict[str, Any] | None
    ) -> dict[str, Any]:
        """An interaction's record fields from it and its finished capture. An entry point that failed
        before a handler ran (a check, a dynamic item's making) has no capture: what the user did is
        still said."""
        asked = captured_fields(capture) if capture else {"invocation": interaction.extras.get("invocation")}
        ids = {
            "guild_id": interaction.guild_id,
            "channel_id": interaction.channel_id,
            "user_id": interaction.user.id,
        }
        return {"extra": extra} | asked | ids

    def app_command_completed(
        self,
        interaction: discord.Interaction[Any],
        command: app_commands.Command[Any, ..., Any] | app_commands.ContextMenu,
    ) -> None:
        if isinstance(command, commands.hybrid.HybridAppCommand):
            return  # recorded through the command_completion / command_error path
        self.record_interaction(interaction, None)

    async def on_app_command_completion(
        self,
        interaction: discord.Interaction[Any],
        command: app_commands.Command[Any, ..., Any] | app_commands.ContextMenu,
    ) -> None:
        self.app_command_completed(interaction, command)

    async def run_entry(
        self,
        kind: str,
        source: str,
        interaction: discord.Interaction[Any],
        invocation: dict[str, Any],
        call: Callable[[], Awaitable[Any]],
        *,
        own_handler: OwnHandler | None = None,
    ) -> None:
        """Run a view item's callback or a modal's submit (bot/runtime/entry_points.py) like a
        command: admitted, tracked, captured, timed, recorded, a failure through the one error path
        (answered by the view's or modal's own `on_error` when it has one)."""
        if not self.accepting:
            if not interaction.response.is_done():
                await interaction.response.send_message(self.not_accepting_notice, ephemeral=True)
            return
        task = asyncio.current_task()
        if task is not None:
            self.track_inflight(task)
        interaction.extras["started"] = time.perf_counter()
        capture = interaction.extras["capture"] = start_capture(kind, invocation)
        self.sampler.watch(capture)
        bind_for_task(
            guild_id=interaction.guild_id, channel_id=interaction.channel_id, user_id=interaction.user.id
        )
        try:
            await call()
        except Exception as exc:
            await self.entry_failed(interaction, exc, (kind, source), own_handler=own_handler)
        except BaseException:
            self.sampler.unwatch(capture)
            raise
        else:
            self.record_interaction(interaction, None, entry=(kind, source))

    async def entry_failed(
        self,
        interaction: discord.Interaction[Any],
        error: Exception,
        entry: tuple[str, str],
        *,
        own_handler: OwnHandler | None = None,
    ) -> None:
        """An entry point failed (a callback, a submit, an `interaction_check`, a dynamic item's
        `from_custom_id`): recorded, and answered by the view's own error handler when it has one —
        as discord.py would call it — else by the one error path. That handler failing in turn is
        recorded under its own name and answered by the one error path."""
        if own_handler is None:
            await self.handle_interaction_error(interaction, error, entry=entry)
            return
        problem = self.environment_problem(error, interaction.channel, interaction.user.id)
        self.record_interaction(interaction, error, problem, entry)
        name, call = own_handler
        try:
            await call(error)
        except Exception as exc:
            family = entry[0].split(":", 1)[0]
            await self.handle_interaction_error(
                interaction, exc, entry=(f"{family}:{name}", entry[1]), handler=True
            )

    async def handle_interaction_error(
        self,
        interaction: discord.Interaction[Any],
        error: Exception,
        entry: tuple[str, str] | None = None,
        *,
        handler: bool = False,
    ) -> None:
        problem = self.environment_problem(error, interaction.channel, interaction.user.id)
        self.record_interaction(interaction, error, problem, entry, handler=handler)
        await self.answer_interaction(interaction, error, problem, entry)

    async def answer_interaction(
        self,
        interaction: discord.Interaction[Any],
        error: Exception,
        problem: EnvironmentProblem | None,
        entry: tuple[str, str] | None = None,
    ) -> None:
        """Log a failed interaction's bug and answer it briefly (an autocomplete with no choices)."""
        text, is_bug = describe(error)
        if problem is not None:
            text, is_bug = problem.reply, False
        command = entry[0] if entry else interaction.command.qualified_name if interaction.command else "?"
        with bind_context(
            guild_id=interaction.guild_id, channel_id=interaction.channel_id, user_id=interaction.user.id
        ):
            if is_bug:
                event = "app command failed" if entry is None else "interaction failed"
                _log.error(event, command=command, exc_info=unwrap(error))
            if interaction.type is discord.InteractionType.autocomplete:
                # An autocomplete can only be answered with choices: none, rather than "failed".
                if not interaction.response.is_done():
                    await interaction.response.autocomplete([])
                return
            if text is None:
                return
            try:
                if interaction.response.is_done():
                    await interaction.followup.send(text, ephemeral=True)
                else:
                    await interaction.response.send_message(text, ephemeral=True)
            except discord.HTTPException:
                if problem is None:
                    raise
                # Where Discord refuses the bot, the answer is refused too: the incident says why.

    def scheduling_event(
        self,
        original: Callable[..., asyncio.Task[None]],
        coro: Callable[..., Coroutine[Any, Any, Any]],
        event_name: str,
        *args: Any,
        **kwargs: Any,
    ) -> asyncio.Task[None] | None:
        """discord.py's scheduling of one listener (its task) — but not for what needs no task:

        - the recording's own bookkeeping listeners (who was seen, a command completed) run at once:
          they only update dictionaries and hand a record over;
        - mendbot's own cogs' `on_message` is not scheduled for a message that cannot concern them
          (their `concerns`: not said to mendbot, not about a proposal) — nor, as the recording's own,
          for a message a bot wrote, and the bot's own replies are half the messages it sees.

        Each would be a task per message that did nothing, competing with the bot's next command."""
        owner = getattr(coro, "__self__", None)
        if owner is self:
            inline = self._inline.get(event_name)
            if inline is not None:
                try:
                    inline(*args, **kwargs)
                except Exception:
                    _log.exception("mendbot's bookkeeping of an event failed", listener=event_name)
                return None
        if event_name == "on_message" and args and owner is not None:
            message = args[0]
            if owner in self.failures_only and getattr(getattr(message, "author", None), "bot", False):
                return None
            if not self._may_concern(owner, message):
                return None
        return original(coro, event_name, *args, **kwargs)

    def _may_concern(self, owner: object, message: Any) -> bool:
        """Whether `owner`'s `on_message` is to be handed `message`: always, but for one of mendbot's
        own cogs whose `concerns` says no. A test that cannot answer (an owner that cannot be weakly
        referenced, a test that raises) hands it over, as discord.py would."""
        try:
            concerns = self.message_filters.get(owner)  # type: ignore[call-overload]
            return concerns is None or concerns(message)
        except Exception:
            return True

    async def run_event(
        self,
        original: Callable[..., Coroutine[Any, Any, None]],
        coro: Callable[..., Coroutine[Any, Any, Any]],
        event_name: str,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """discord.py's listener runner (`original`), timed and recorded: a cog's or a registered
        listener each time it runs (mendbot's own cogs on a bot it did not build, `failures_only`, when
        they fail), the bot's own event methods when they fail (a success of `on_message` says nothing
        its commands do not), mendbot's own listeners never. A listener's run on a message a bot wrote
        is recorded when it fails: the bot's own replies are half the messages its listeners see, and a
        run on one that went well is nothing a replay can send again (members' messages are)."""
        task = asyncio.current_task()
        # In flight while it runs (`drain` waits for it): taken off as it ends rather than by a callback
        # of its task's, which would be one more callback the loop runs for every listener.
        tracked = task if task is not None and task not in self._inflight else None
        if tracked is not None:
            self._inflight.add(tracked)
        try:
            owner = getattr(coro, "__self__", None)
            if owner is self:
                await original(coro, event_name, *args, **kwargs)
                return
            if owner is self.bot:
                await self._run_own_event(coro, event_name, *args, **kwargs)
                return
            started = time.perf_counter()
            quiet = owner in self.failures_only
            about_a_bot = _about_a_bots_message(args)
            capture: HandlerCapture | None = None
            if about_a_bot and not quiet:
                # Recorded only if it fails: what it sends and the rows it reads are kept as for any run, but
                # what it was asked is worked out then, and the slow-handler sampler does not watch it.
                capture = start_capture(f"listener:{event_name}")
            elif not quiet:
                # What it was asked is worked out when its record is taken in (`record_later`), after the
                # answer a command on the same message is giving: the listeners on a member's message run
                # before that answer is sent.
                asking = functools.partial(message_invocation, event_name, args)
                capture = start_capture(f"listener:{event_name}", asking=asking)
                self.sampler.watch(capture)
            try:
                await coro(*args, **kwargs)
            except asyncio.CancelledError:
                self.end_capture(capture)
            except Exception as exc:
                await self._listener_failed(
                    exc,
                    capture,
                    owner=owner,
                    coro=coro,
                    event_name=event_name,
                    started=started,
                    args=args,
                    kwargs=kwargs,
                )
            else:
                if capture is not None and not about_a_bot:
                    name = getattr(owner, "qualified_name", None) or getattr(coro, "__qualname__", "listener")
                    self._record(
                        f"listener:{event_name}",
                        str(name),
                        (time.perf_counter() - started) * 1000,
                        None,
                        ok=True,
                        fields=functools.partial(self._listener_fields, self.close_capture(capture), args),
                    )
                elif capture is not None:
                    capture.closed = True
        finally:
            if tracked is not None:
                self._inflight.discard(tracked)

    async def _listener_failed(
        self,
        exc: Exception,
        capture: HandlerCapture | None,
        *,
        owner: object,
        coro: Callable[..., Coroutine[Any, Any, Any]],
        event_name: str,
        started: float,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """A listener raised: a user's mistake answered, an environment problem recorded and answered,
        a bug recorded and handed to the bot's `on_error`."""
        quiet = owner in self.failures_only
        captured = self.end_capture(capture)
        if captured.get("invocation") is None:
            captured["invocation"] = message_invocation(event_name, args)
        ids = event_ids(args)
        source = getattr(owner, "qualified_name", None) or getattr(coro, "__qualname__", "listener")
        channel = self.bot.get_channel(ids["channel_id"]) if ids.get("channel_id") else None
        problem = self.environment_problem(exc, channel, ids.get("user_id"))
        text, is_bug = describe(exc)
        if problem is None and not is_bug:
            # a user's mistake (`cancel run 3` with no run 3) is a reply, not an incident
            if not quiet:
                self.recorder.record(
                    f"listener:{event_name}",
                    source,
                    ok=True,
                    duration_ms=(time.perf_counter() - started) * 1000,
                    extra={"user_error": text},
                    **ids,
                )
            if text is not None:
                await self._answer_event(args, text)
            return
        self.recorder.record(
            f"listener:{event_name}",
            source,
            ok=False,
            error=None if problem else exc,
            duration_ms=(time.perf_counter() - started) * 1000,
            extra=environment_extra(exc, problem) or None,
            **captured,
            **ids,
        )
        if problem is not None:  # no bug, so no traceback: the incident says what is needed
            await self._answer_event(args, problem.reply)
            return
        with contextlib.suppress(asyncio.CancelledError):
            await self.bot.on_error(event_name, *args, **kwargs)

    async def _answer_event(self, args: tuple[Any, ...], text: str) -> None:
        """Tell the person behind a listener's event what was wrong with their request."""
        first = args[0] if args else None
        try:
            if isinstance(first, discord.Message):
                await first.reply(text[:2000], mention_author=False)
            elif isinstance(first, discord.RawReactionActionEvent):
                channel = self.bot.get_channel(first.channel_id)
                if isinstance(channel, discord.abc.Messageable):
                    await channel.send(
                        f"<@{first.user_id}> {text}"[:2000], allowed_mentions=discord.AllowedMentions.none()
                    )
        except discord.HTTPException:
            _log.warning("could not answer a user's mistake", exc_info=True)

    async def _run_own_event(
        self, coro: Callable[..., Coroutine[Any, Any, Any]], event_name: str, *args: Any, **kwargs: Any
    ) -> None:
        """One of the bot's own event methods (`on_message`, `on_ready`, …), run as discord.py runs it —
        a failure goes to the bot's `on_error` — and recorded only when it fails."""
        started = time.perf_counter()
        try:
            await coro(*args, **kwargs)
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            if event_name == "on_command_error" and len(args) >= 2 and unwrap(exc) is unwrap(args[1]):
                # Its error handler gave the error up (`raise error`): recorded with the command already,
                # and unanswered — the one error path answers it, as for a bot with no handler.
                await self._answer_command_error(args[0], args[1])
                with contextlib.suppress(asyncio.CancelledError):
                    await self.bot.on_error(event_name, *args, **kwargs)
                return
            ids = event_ids(args)
            channel = self.bot.get_channel(ids["channel_id"]) if ids.get("channel_id") else None
            problem = self.environment_problem(exc, channel, ids.get("user_id"))
            self.recorder.record(
                f"listener:{event_name}",
                type(self.bot).__qualname__,
                ok=False,
                error=None if problem else exc,
                duration_ms=(time.perf_counter() - started) * 1000,
                extra=environment_extra(exc, problem) or None,
                invocation=message_invocation(event_name, args),
                **ids,
            )
            with contextlib.suppress(asyncio.CancelledError):
                await self.bot.on_error(event_name, *args, **kwargs)

    def observe_cog(self, cog: commands.Cog) -> None:
        """Record a cog's task loops and its load/unload hooks (before discord.py runs `cog_load`)."""
        for name in dir(cog):
            loop = getattr(cog, name, None)
            if isinstance(loop, tasks.Loop):
                instrument_loop(self, cog, loop)
        for hook in ("cog_load", "cog_unload"):
            instrument_cog_hook(self, cog, hook)

    async def adding_cog(
        self, original: Callable[..., Awaitable[None]], cog: commands.Cog, /, *args: Any, **kwargs: Any
    ) -> None:
        self.observe_cog(cog)
        await original(cog, *args, **kwargs)
        await self._store_handlers(cog.qualified_name, cog)

    async def removing_cog(
        self, original: Callable[..., Awaitable[commands.Cog | None]], name: str, /, *args: Any, **kwargs: Any
    ) -> commands.Cog | None:
        removed = await original(name, *args, **kwargs)
        if removed is not None:
            await self._store_handlers(removed.qualified_name, None)
        return removed

    # -- extensions: what a failed load leaves is an action, an incident and evidence -------------

    async def loading_extension(
        self, original: Callable[..., Awaitable[None]], name: str, /, *args: Any, **kwargs: Any
    ) -> None:
        if name == "mendbot" and name in self.bot.extensions:
            return  # mendbot is loaded once, whichever way in came first (the runner, the bot's own line)
        try:
            await original(name, *args, **kwargs)
        except commands.ExtensionError as exc:
            self.extension_failed(name, exc)
            raise
        self.extension_failures.pop(name, None)

    def extension_failed(self, name: str, exc: commands.ExtensionError) -> None:
        """`name` failed to load: recorded (an incident's evidence), and kept as not serving — also for a
        load mendbot only heard of after it happened (one before it was attached, bot/tools/attach_run.py)."""
        record_extension(self, name, exc)
        if not isinstance(exc, commands.ExtensionAlreadyLoaded):
            cause = exc.__cause__ or exc
            self.extension_failures[name] = f"{type(cause).__name__}: {cause}"

    async def reloading_extension(
        self, original: Callable[..., Awaitable[None]], name: str, /, *args: Any, **kwargs: Any
    ) -> None:
        try:
            await original(name, *args, **kwargs)
        except commands.ExtensionError as exc:
            record_extension(self, name, exc)
            raise

    async def _store_handlers(self, cog_name: str, cog: commands.Cog | None) -> None:
        """Keep the kind → handler map (evidence for faults without a traceback) in step with the cogs."""
        if not self.keeping_handler_map:
            return
        recorder = self.recorder
        try:
            roots = (recorder.repo_root, *recorder.more_roots)
            tree = getattr(self.bot, "tree", None)
            found = cog_handlers(cog, roots, tree) if cog is not None else []
            await handler_queries.replace_cog(self.services.db, cog_name, found, time.time())
        except Exception:
            _log.exception("storing the handler map failed", cog=cog_name)

    # -- in flight ------------------------------------------------------------------------------

    def track_inflight(self, task: asyncio.Task[Any]) -> None:
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def _running(self) -> list[asyncio.Task[Any]]:
        """The handlers in flight, but the task asking."""
        current = asyncio.current_task()
        return [task for task in self._inflight if task is not current and not task.done()]

    @property
    def inflight(self) -> int:
        return len(self._running())

    def waiting_in(self) -> list[str]:
        """Where each handler in flight is waiting: its three innermost frames, each followed by its
        caller (`process.py:107 run_process ← git.py:52 git ← …`) — what a stop past its drain names, so
        that an operator sees what held it."""
        waiting = []
        for task in self._running():
            frames = list(coroutine_chain(task, into_tasks=True))[-3:]
            shown = [f"{os.path.basename(path)}:{line} {function}" for path, line, function in frames]
            waiting.append(" ← ".join(reversed(shown)) or task.get_name())
        return waiting

    async def drain(self, timeout: float = 10.0, *, cancel: bool = False) -> int:
        """Wait up to `timeout` for in-flight handlers (`cancel`: cancel them first and wait for them to
        unwind); how many were still running then."""
        pending = self._running()
        for task in pending if cancel else ():
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        return sum(1 for task in pending if not task.done())

    @property
    def not_accepting_notice(self) -> str:
        return RESTART_NOTICE if self.restart_requested is not None else SHUTDOWN_NOTICE


def _about_a_bots_message(args: tuple[Any, ...]) -> bool:
    """Whether a listener's event is a message a bot wrote (its own reply, most often)."""
    return isinstance(first := args[0] if args else None, discord.Message) and first.author.bot
