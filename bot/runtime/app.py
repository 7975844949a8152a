"""MendBot: the discord.py Bot that wires services, loads every cog and owns the one error path.

Cogs are discovered in the `cogs` package and loaded one by one; a cog that fails to load is
logged, remembered and reported in the dev channel once the bot is ready, and the rest of the
bot boots. `close()` stops taking work, unloads cogs and waits for in-flight handlers.

`request_restart()` is the graceful restart a deploy asks for when code the process cannot
reload changed: new commands and interactions are refused with a short notice, in-flight
handlers and self-improvement runs get `deploy.drain_timeout_s` to finish (runs still going
then are stopped as interrupted, resumable), the bot closes, and `__main__` exits with
`deploy.restart_exit_code` for the supervisor (or re-executes itself).

A Discord HTTP error raised by a handler (403, 404, 5xx) — or a locked or full database met by a
write outside the retry helper — is not a bug: the one error path
records it as a failed action marked `environment` (which the anomaly rules skip), opens or
counts an environment incident saying what the bot needs, and answers the user where it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import math
import pkgutil
import time
import weakref
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import discord
import structlog
import yarl
from discord import app_commands
from discord.ext import commands, tasks

from bot.db import handlers as handler_queries
from bot.db.retry import SAVE_FAILED, storage_fault
from bot.kernel.errors import EnvironmentProblem, describe, discord_problem, error_channel_id, unwrap
from bot.kernel.log import bind_context, get_logger
from bot.kernel.prompts import PromptRegistry
from bot.observe.capture import (
    HandlerCapture,
    install_reply_hooks,
    interaction_invocation,
    message_invocation,
    start_capture,
)
from bot.observe.handlers import cog_handlers
from bot.observe.sampler import SlowSampler
from bot.runtime.services import Services

__all__ = [
    "RESTART_NOTICE",
    "SHUTDOWN_NOTICE",
    "CommandSyncFailed",
    "MendBot",
    "ShardState",
    "bot_intents",
    "discover_extensions",
]

_log = get_logger(__name__)

RESTART_NOTICE = "I'm restarting to apply an update — try again in a few seconds."
SHUTDOWN_NOTICE = "I'm shutting down — try again in a little while."


def _event_ids(args: tuple[Any, ...]) -> dict[str, Any]:
    """Guild, channel, user and message ids from a listener's first argument, where it has them."""
    if not args:
        return {}
    first = args[0]
    if isinstance(first, discord.Message):
        return {
            "guild_id": first.guild.id if first.guild else None,
            "channel_id": first.channel.id,
            "user_id": first.author.id,
            "message_id": first.id,
        }
    if isinstance(first, discord.RawReactionActionEvent):
        return {
            "guild_id": first.guild_id,
            "channel_id": first.channel_id,
            "user_id": first.user_id,
            "message_id": first.message_id,
        }
    if isinstance(first, discord.Interaction):
        return {"guild_id": first.guild_id, "channel_id": first.channel_id, "user_id": first.user.id}
    return {}


def _environment_extra(error: BaseException | None, problem: EnvironmentProblem | None) -> dict[str, Any]:
    """What an action record says about an environment failure (no fingerprint: it is no bug)."""
    if problem is None or error is None:
        return {}
    original = unwrap(error)
    return {"environment": problem.kind, "error": f"{type(original).__name__}: {original}"[:500]}


def bot_intents() -> discord.Intents:
    """The gateway intents mendbot asks for: the defaults plus Message Content (privileged)."""
    intents = discord.Intents.default()
    intents.message_content = True
    return intents


class CommandSyncFailed(Exception):
    """Discord refused the slash-command sync at start (a wrong guild id, a payload it rejects)."""

    def __init__(self, guild_id: int, error: discord.HTTPException) -> None:
        super().__init__(f"command sync to guild {guild_id} failed: {error.status} {error.text}")
        self.guild_id = guild_id
        self.error = error


def role_ids(user: discord.abc.User) -> list[int]:
    """The user's role ids in the guild (none for a plain User, e.g. in DMs)."""
    return [role.id for role in getattr(user, "roles", [])]


def discover_extensions(package: str = "cogs") -> list[str]:
    """Every module of the cogs package whose name does not start with `_`."""
    module = importlib.import_module(package)
    return sorted(
        f"{package}.{info.name}"
        for info in pkgutil.iter_modules(module.__path__)
        if not info.name.startswith("_")
    )


class MendTree(app_commands.CommandTree["MendBot"]):
    """Command tree that stamps each interaction so handlers can be timed and drained."""

    async def interaction_check(self, interaction: discord.Interaction[MendBot]) -> bool:
        if not self.client.accepting:
            await interaction.response.send_message(self.client.not_accepting_notice, ephemeral=True)
            return False
        interaction.extras["started"] = time.perf_counter()
        self.client.begin_capture(interaction.extras, "app", interaction_invocation(interaction))
        # Each interaction runs in its own task, so this binding lasts exactly as long as it.
        structlog.contextvars.bind_contextvars(
            guild_id=interaction.guild_id, channel_id=interaction.channel_id, user_id=interaction.user.id
        )
        task = asyncio.current_task()
        if task is not None:
            self.client.track_inflight(task)
        return True

    async def on_error(
        self, interaction: discord.Interaction[MendBot], error: app_commands.AppCommandError
    ) -> None:
        await self.client.handle_interaction_error(interaction, error)


@dataclass(frozen=True)
class ShardState:
    """One gateway shard this process runs, as /health and /metrics show it."""

    id: int
    connected: bool  # READY (or RESUMED) seen and no disconnect since
    latency_s: float | None  # heartbeat round trip; None before the first acknowledged heartbeat


class MendBot(commands.AutoShardedBot):
    """The bot: discord.py's AutoShardedBot, so one process can run every shard of a large bot.

    Shards come from `discord.shard_count` / `discord.shard_ids`; with neither set, discord.py asks
    Discord for its recommended count at each start (one for any bot under ~1,000 servers), so a
    growing bot never meets the gateway's "sharding required" close code.
    """

    def __init__(
        self,
        services: Services,
        *,
        extensions: Sequence[str] | None = None,
        intents: discord.Intents | None = None,
        **options: Any,
    ) -> None:
        if intents is None:
            intents = bot_intents()
        config = services.settings.discord
        options.setdefault("shard_count", config.shard_count)
        options.setdefault("shard_ids", list(config.shard_ids) if config.shard_ids is not None else None)
        super().__init__(
            command_prefix=commands.when_mentioned_or(config.command_prefix),
            intents=intents,
            tree_cls=MendTree,
            help_command=commands.DefaultHelpCommand(),
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
            **options,
        )
        self.services = services
        if extensions is None:
            extensions = config.extensions if config.extensions is not None else discover_extensions()
        self.extension_names = list(extensions)
        self.extension_failures: dict[str, str] = {}
        self._inflight: set[asyncio.Task[Any]] = set()
        self._started: weakref.WeakKeyDictionary[commands.Context[Any], float] = weakref.WeakKeyDictionary()
        self._boot_reported = False
        self.accepting = True
        self.restart_requested: str | None = None  # the reason, once a restart was asked for
        self._restart_task: asyncio.Task[None] | None = None
        self._restarted = asyncio.Event()  # set once a requested restart has drained and closed
        self._drained = False  # the restart already drained within its timeout: close() need not wait
        self._setup_done = False
        # Per shard: READY or RESUMED seen and no disconnect since (what /health/ready reports).
        self._shard_sessions: dict[int, bool] = {}
        self._closed = asyncio.Event()
        self._closing: asyncio.Future[None] | None = None
        self._captures: weakref.WeakKeyDictionary[commands.Context[Any], HandlerCapture] = (
            weakref.WeakKeyDictionary()
        )
        install_reply_hooks()
        recorder = services.recorder
        self.sampler = SlowSampler(
            (recorder.repo_root, *recorder.more_roots), threshold_ms=services.settings.observe.latency.min_ms
        )

    # -- start-up -----------------------------------------------------------------------------

    async def setup_hook(self) -> None:
        # A login retried after a network failure runs this again: the cogs are loaded once.
        if not self._setup_done:
            self.sampler.start()
            self.services.prompts.set_error_callback(self._report_prompt_error)
            await self.load_extensions()
            self._setup_done = True
        guild_id = self.services.settings.discord.dev_guild_id
        if guild_id is not None:
            try:
                await self.sync_app_commands(guild_id)
            except discord.HTTPException as exc:
                if exc.status >= 500 or exc.status == 429:
                    raise  # Discord's outage, not our request: the start is retried
                raise CommandSyncFailed(guild_id, exc) from exc

    async def launch_shard(self, gateway: yarl.URL, shard_id: int, *, initial: bool = False) -> None:
        # discord.py retries a shard that cannot connect every 5 s by calling this again, and never
        # looks whether the bot was closed meanwhile: SIGTERM during a gateway outage at start would
        # wait forever. A closed bot launches nothing, so `connect()` returns.
        if self.is_closed():
            return
        await super().launch_shard(gateway, shard_id, initial=initial)

    async def load_extensions(self) -> dict[str, str]:
        """Load every extension; one that fails is recorded and skipped, never fatal."""
        for name in self.extension_names:
            try:
                await self.load_extension(name)
            except Exception as exc:
                cause = exc.__cause__ or exc
                summary = f"{type(cause).__name__}: {cause}"
                self.extension_failures[name] = summary
                _log.error("extension failed to load", extension=name, error=summary, exc_info=cause)
            else:
                self.extension_failures.pop(name, None)
        return dict(self.extension_failures)

    async def sync_app_commands(self, guild_id: int) -> list[app_commands.AppCommand]:
        """Copy global commands to the dev guild and sync there, so they show up at once."""
        guild = discord.Object(guild_id)
        self.tree.copy_global_to(guild=guild)
        return await self.tree.sync(guild=guild)

    async def on_ready(self) -> None:
        _log.info(
            "ready",
            user=str(self.user),
            guilds=len(self.guilds),
            shards=self.running_shard_ids,
            cogs=sorted(self.cogs),
        )
        await self.report_boot_problems()

    async def on_shard_ready(self, shard_id: int) -> None:
        self._shard_sessions[shard_id] = True

    async def on_shard_resumed(self, shard_id: int) -> None:
        self._shard_sessions[shard_id] = True
        _log.info("gateway session resumed", shard=shard_id)

    async def on_shard_disconnect(self, shard_id: int) -> None:
        if self._shard_sessions.get(shard_id) and not self.is_closed():
            _log.warning("gateway disconnected: reconnecting", shard=shard_id)
        self._shard_sessions[shard_id] = False

    @property
    def dev_guild_id(self) -> int | None:
        """The guild slash commands are synced to at start (and after a reload)."""
        return self.services.settings.discord.dev_guild_id

    @property
    def prompts(self) -> PromptRegistry:
        return self.services.prompts

    @property
    def running_shard_ids(self) -> list[int]:
        """The shards this process runs: the configured ones, else all of the count (once known:
        without `shard_count`, Discord names it when the bot connects)."""
        if self.shard_ids is not None:
            return sorted(self.shard_ids)
        return list(range(self.shard_count)) if self.shard_count is not None else []

    @property
    def gateway_connected(self) -> bool:
        """Every shard this process runs has a session: READY or RESUMED seen, no disconnect since."""
        shard_ids = self.running_shard_ids
        return bool(shard_ids) and all(self._shard_sessions.get(shard_id, False) for shard_id in shard_ids)

    def shard_states(self) -> list[ShardState]:
        """Each shard this process runs: connected or not, and its heartbeat latency."""
        states = []
        for shard_id in self.running_shard_ids:
            shard = self.get_shard(shard_id)
            latency = shard.latency if shard is not None else math.inf
            states.append(
                ShardState(
                    shard_id,
                    self._shard_sessions.get(shard_id, False),
                    latency if math.isfinite(latency) else None,
                )
            )
        return states

    async def wait_closed(self) -> None:
        """Return once `close()` has finished."""
        await self._closed.wait()

    async def report_boot_problems(self) -> None:
        """Tell the dev channel which extensions failed to load (once, when it is reachable)."""
        notices = list(self.services.boot_notices)
        if self.extension_failures:
            lines = "\n".join(f"• `{name}` — {error}" for name, error in self.extension_failures.items())
            notices.insert(
                0,
                f"⚠️ I started, but {len(self.extension_failures)} extension(s) failed to load "
                f"and are not serving:\n{lines}",
            )
        if self._boot_reported or not notices:
            return
        sent = await self.send_dev("\n".join(notices)[:2000])
        self._boot_reported = bool(sent)

    def authorize(self, user: discord.abc.User, action: str, **context: Any) -> bool:
        """The allow-list check for a Discord user; a refusal is recorded (Services.authorize)."""
        return self.services.authorize(user.id, role_ids(user), is_bot=user.bot, action=action, **context)

    def run_channel(self, channel_id: int | None) -> discord.abc.Messageable | None:
        """Where a run reports: the channel it was asked in, else (none, or gone — deleted, or from an
        earlier playground world) the first dev channel: a report is never dropped for want of one."""
        dev_id = next(iter(self.services.settings.discord.dev_channel_ids), None)
        for candidate in (channel_id, dev_id):
            channel = self.channel_by_id(candidate) if candidate else None
            if channel is not None:
                return channel
        return None

    def channel_by_id(self, channel_id: int) -> discord.abc.Messageable | None:
        """The channel to post in: the cached one, else — on a shared database, where the channel's
        guild may be another process's shard — one reached by id over REST, which any process can."""
        channel = self.get_channel(channel_id)
        if isinstance(channel, discord.abc.Messageable):
            return channel
        if channel is None and self.services.cluster.shared:
            return self.get_partial_messageable(channel_id)
        return None

    def _report_prompt_error(self, message: str) -> None:
        """Called by the prompt watcher (a daemon) when an edited prompt fails validation."""
        if self.is_closed():
            return
        task = self.loop.create_task(self.send_dev(f"⚠️ Prompt not reloaded: {message}"))
        task.add_done_callback(self._inflight.discard)
        self._inflight.add(task)

    async def send_dev(self, content: str | None = None, **kwargs: Any) -> list[discord.Message]:
        """Post in every configured dev channel; returns the messages sent."""
        sent = []
        for channel_id in self.services.settings.discord.dev_channel_ids:
            channel = self.channel_by_id(channel_id)
            if channel is not None:
                sent.append(await channel.send(content, **kwargs))
            else:
                _log.warning("dev channel not reachable", channel_id=channel_id)
        return sent

    # -- the one error path, which is also where every handled event is recorded ----------------

    @property
    def recorder(self) -> Any:
        return self.services.recorder

    async def process_commands(self, message: discord.Message, /) -> None:
        """Prefix commands, except words said to the bot by mention that ask for improvement work.

        "@mendbot roll back run 2" begins with the name of `roll`: by mention it is a request the
        improvement flow answers (cogs/improve.py), and answering it with dice as well would be
        a second, wrong reply. With the configured prefix ("!roll back") it stays a command.
        """
        if message.author.bot:
            return
        ctx = await self.get_context(message)
        if ctx.valid and ctx.prefix != self.services.settings.discord.command_prefix:
            improve = self.get_cog("Improve")
            if improve is not None and improve.request_intent(message) is not None:  # type: ignore[attr-defined]
                return
        await self.invoke(ctx)

    async def invoke(self, ctx: commands.Context[Any], /) -> None:
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
                },
            )
            self._captures[ctx] = capture
            self.sampler.watch(capture)
        structlog.contextvars.bind_contextvars(
            guild_id=ctx.guild.id if ctx.guild else None, channel_id=ctx.channel.id, user_id=ctx.author.id
        )
        await super().invoke(ctx)

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

    def begin_capture(self, extras: dict[str, Any], kind: str, invocation: dict[str, Any]) -> None:
        """Open the capture of an interaction's handler (its task) and start watching it."""
        capture = start_capture(f"{kind}:{invocation['name'].lstrip('/')}", invocation)
        extras["capture"] = capture
        self.sampler.watch(capture)

    def _end_capture(self, capture: HandlerCapture | None) -> dict[str, Any]:
        """The record fields a finished handler's capture fills in."""
        if capture is None:
            return {}
        self.sampler.unwatch(capture)
        capture.closed = True
        return {
            "invocation": capture.invocation,
            "reply": capture.reply_digest(),
            "samples": capture.samples(),
        }

    def _record_command(
        self,
        ctx: commands.Context[Any],
        error: BaseException | None,
        problem: EnvironmentProblem | None = None,
    ) -> None:
        if ctx.command is None:
            return
        capture = self._captures.pop(ctx, None)
        if capture is None and ctx.interaction is not None:
            capture = ctx.interaction.extras.get("capture")
        text, is_bug = describe(error) if error is not None else (None, False)
        is_bug = is_bug and problem is None
        self.recorder.record(
            f"command:{ctx.command.qualified_name}",
            ctx.command.cog_name or "bot",
            ok=not is_bug and problem is None,
            duration_ms=self._command_elapsed_ms(ctx),
            error=unwrap(error) if is_bug and error is not None else None,
            extra={
                "via": "slash" if ctx.interaction else "prefix",
                **_environment_extra(error, problem),
                **({"user_error": text} if error is not None and not is_bug and problem is None else {}),
            },
            **self._end_capture(capture),
            **self._command_ids(ctx),
        )

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
            channel = self.get_channel(channel_id) or channel
        problem = discord_problem(error, channel)
        if problem is None:
            return None
        _log.warning("discord refused a call", kind=problem.kind, need=problem.need, error=str(original))
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

    async def on_command_completion(self, ctx: commands.Context[Any]) -> None:
        self._record_command(ctx, None)

    async def on_command_error(
        self, context: commands.Context[Any], exception: commands.CommandError, /
    ) -> None:
        problem = self.environment_problem(exception, context.channel, context.author.id)
        self._record_command(context, exception, problem)
        if context.command is not None and context.command.has_error_handler():
            return
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

    def _record_interaction(
        self,
        interaction: discord.Interaction[Any],
        error: BaseException | None,
        problem: EnvironmentProblem | None = None,
    ) -> None:
        command = interaction.command
        name = command.qualified_name if command is not None else "unknown"
        started = interaction.extras.get("started")
        text, is_bug = describe(error) if error is not None else (None, False)
        is_bug = is_bug and problem is None
        extra = _environment_extra(error, problem) or (
            {"user_error": text} if error is not None and not is_bug else None
        )
        self.recorder.record(
            f"app:{name}",
            getattr(getattr(command, "binding", None), "qualified_name", None) or "bot",
            ok=not is_bug and problem is None,
            duration_ms=(time.perf_counter() - started) * 1000 if started is not None else 0.0,
            error=unwrap(error) if is_bug and error is not None else None,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            extra=extra,
            **self._end_capture(interaction.extras.get("capture")),
        )

    async def on_app_command_completion(
        self,
        interaction: discord.Interaction[Any],
        command: app_commands.Command[Any, ..., Any] | app_commands.ContextMenu,
    ) -> None:
        if isinstance(command, commands.hybrid.HybridAppCommand):
            return  # recorded through the command_completion / command_error path
        self._record_interaction(interaction, None)

    async def handle_interaction_error(self, interaction: discord.Interaction[Any], error: Exception) -> None:
        problem = self.environment_problem(error, interaction.channel, interaction.user.id)
        self._record_interaction(interaction, error, problem)
        text, is_bug = describe(error)
        if problem is not None:
            text, is_bug = problem.reply, False
        command = interaction.command.qualified_name if interaction.command else "?"
        with bind_context(
            guild_id=interaction.guild_id, channel_id=interaction.channel_id, user_id=interaction.user.id
        ):
            if is_bug:
                _log.error("app command failed", command=command, exc_info=unwrap(error))
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

    async def _run_event(
        self, coro: Callable[..., Coroutine[Any, Any, Any]], event_name: str, *args: Any, **kwargs: Any
    ) -> None:
        """discord.py's listener runner, timed and recorded (the bot's own handlers are not)."""
        task = asyncio.current_task()
        if task is not None:
            self.track_inflight(task)
        owner = getattr(coro, "__self__", None)
        if owner is self:  # on_message/on_ready etc. of the bot itself: commands record themselves
            await super()._run_event(coro, event_name, *args, **kwargs)
            return
        started = time.perf_counter()
        ids = _event_ids(args)
        source = getattr(owner, "qualified_name", None) or getattr(coro, "__qualname__", "listener")
        capture = start_capture(f"listener:{event_name}", message_invocation(event_name, args))
        self.sampler.watch(capture)
        try:
            await coro(*args, **kwargs)
        except asyncio.CancelledError:
            self.sampler.unwatch(capture)
        except Exception as exc:
            text, is_bug = describe(exc)
            if not is_bug:  # a user's mistake (`cancel run 3` with no run 3) is a reply, not an incident
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
            channel = self.get_channel(ids["channel_id"]) if ids.get("channel_id") else None
            problem = self.environment_problem(exc, channel, ids.get("user_id"))
            self.recorder.record(
                f"listener:{event_name}",
                source,
                ok=False,
                error=None if problem else exc,
                duration_ms=(time.perf_counter() - started) * 1000,
                extra=_environment_extra(exc, problem) or None,
                **self._end_capture(capture),
                **ids,
            )
            with contextlib.suppress(asyncio.CancelledError):
                await self.on_error(event_name, *args, **kwargs)
        else:
            self.recorder.record(
                f"listener:{event_name}",
                source,
                ok=True,
                duration_ms=(time.perf_counter() - started) * 1000,
                **self._end_capture(capture),
                **ids,
            )

    async def _answer_event(self, args: tuple[Any, ...], text: str) -> None:
        """Tell the person behind a listener's event what was wrong with their request."""
        first = args[0] if args else None
        try:
            if isinstance(first, discord.Message):
                await first.reply(text[:2000], mention_author=False)
            elif isinstance(first, discord.RawReactionActionEvent):
                channel = self.get_channel(first.channel_id)
                if isinstance(channel, discord.abc.Messageable):
                    await channel.send(
                        f"<@{first.user_id}> {text}"[:2000], allowed_mentions=discord.AllowedMentions.none()
                    )
        except discord.HTTPException:
            _log.warning("could not answer a user's mistake", exc_info=True)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        _log.exception("listener failed", listener=event_method)

    async def add_cog(self, cog: commands.Cog, /, **kwargs: Any) -> None:
        for name in dir(cog):
            loop = getattr(cog, name, None)
            if isinstance(loop, tasks.Loop):
                self._instrument_loop(cog, loop)
        await super().add_cog(cog, **kwargs)
        await self._store_handlers(cog.qualified_name, cog)

    async def remove_cog(self, name: str, /, **kwargs: Any) -> commands.Cog | None:
        removed = await super().remove_cog(name, **kwargs)
        if removed is not None:
            await self._store_handlers(removed.qualified_name, None)
        return removed

    async def _store_handlers(self, cog_name: str, cog: commands.Cog | None) -> None:
        """Keep the kind → handler map (evidence for faults without a traceback) in step with the cogs."""
        recorder = self.recorder
        try:
            found = cog_handlers(cog, (recorder.repo_root, *recorder.more_roots)) if cog is not None else []
            await handler_queries.replace_cog(self.services.db, cog_name, found, time.time())
        except Exception:
            _log.exception("storing the handler map failed", cog=cog_name)

    def _instrument_loop(self, cog: commands.Cog, loop: tasks.Loop[Any]) -> None:
        """Record each iteration of a cog's tasks.loop; a failure goes through the error path."""
        body = loop.coro
        kind = f"task:{body.__name__}"
        recorder = self.recorder
        sampler = self.sampler

        @functools.wraps(body)
        async def recorded(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            capture = start_capture(kind, {"name": kind, "options": {"iteration": loop.current_loop}})
            sampler.watch(capture)
            try:
                result = await body(*args, **kwargs)
            except Exception as exc:
                problem = self.environment_problem(exc)
                # discord.py retries only its reconnect exceptions; anything else ends the loop for good.
                retried = loop.reconnect and isinstance(exc, getattr(loop, "_valid_exception", ()))
                recorder.record(
                    kind,
                    cog.qualified_name,
                    ok=False,
                    error=None if problem else exc,
                    duration_ms=(time.perf_counter() - started) * 1000,
                    extra={
                        **_environment_extra(exc, problem),
                        **({"loop_stopped": True} if not retried else {}),
                    }
                    or None,
                    **self._end_capture(capture),
                )
                _log.error("task iteration failed", task=kind, stopped=not retried, exc_info=exc)
                raise
            except BaseException:
                sampler.unwatch(capture)
                raise
            recorder.record(
                kind,
                cog.qualified_name,
                ok=True,
                duration_ms=(time.perf_counter() - started) * 1000,
                **self._end_capture(capture),
            )
            return result

        loop.coro = recorded

    # -- draining ------------------------------------------------------------------------------

    def track_inflight(self, task: asyncio.Task[Any]) -> None:
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    @property
    def inflight(self) -> int:
        current = asyncio.current_task()
        return sum(1 for task in self._inflight if task is not current and not task.done())

    async def drain(self, timeout: float = 10.0) -> int:
        """Wait for in-flight handlers; returns how many were still running at the timeout."""
        current = asyncio.current_task()
        pending = [task for task in self._inflight if task is not current and not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        return sum(1 for task in pending if not task.done())

    @property
    def not_accepting_notice(self) -> str:
        return RESTART_NOTICE if self.restart_requested is not None else SHUTDOWN_NOTICE

    def request_restart(self, reason: str) -> asyncio.Task[None]:
        """Stop taking new work now; drain and close in the background. Idempotent.

        Returns at once: the caller is usually an in-flight handler (a deploy reporting in
        chat) that the drain waits for. Await the returned task to wait for the close.
        """
        if self._restart_task is not None:
            return self._restart_task
        self.restart_requested = reason
        self.accepting = False
        _log.warning("restart requested", reason=reason)
        self._restart_task = asyncio.get_running_loop().create_task(
            self._drain_for_restart(), name="mendbot-restart"
        )
        return self._restart_task

    async def wait_for_restart(self) -> str:
        """Return once a requested restart has drained and closed the bot; the reason."""
        await self._restarted.wait()
        return self.restart_requested or ""

    async def _drain_for_restart(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.services.settings.deploy.drain_timeout_s
        try:
            # Listeners still run while draining (a reply to "ship it" must not be lost), so
            # handlers that started after the first wait are waited for as well.
            while self.inflight and (remaining := deadline - loop.time()) > 0:
                await self.drain(remaining)
            improve = self.services.improve
            try:
                await asyncio.wait_for(improve.quiesce(), timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                _log.warning("runs still going at the drain timeout: stopping them (resumable)")
            await improve.shutdown()
            if self.inflight:
                _log.warning("restarting with handlers still running", count=self.inflight)
        except Exception:
            _log.exception("draining for the restart failed: closing anyway")
        self._drained = True
        try:
            await self.close()
        finally:
            self._restarted.set()

    async def close(self) -> None:
        """Drain, unload every cog and disconnect; a second caller (a signal arriving while the
        playground ends, say) waits for the close already under way instead of racing it."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close_once())
        await asyncio.shield(self._closing)

    async def _close_once(self) -> None:
        self.sampler.stop()
        self.accepting = False
        left = await self.drain(0.0 if self._drained else 10.0)
        if left:
            _log.warning("closing with handlers still running", count=left)
        for name in list(self.extensions):
            try:
                await self.unload_extension(name)
            except Exception:
                _log.exception("extension failed to unload", extension=name)
        if not isinstance(self.loop, asyncio.AbstractEventLoop):
            # Never logged in (a smoke load, a start that failed first): AutoShardedClient.close()
            # needs the event queue that logging in (or `async with`) sets up, so set it up now.
            await self.__aenter__()
        try:
            await super().close()
        finally:
            self._shard_sessions.clear()
            self._closed.set()
