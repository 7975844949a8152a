"""MendBot: the discord.py Bot that wires services, loads every cog, runs the shards and shuts down.

Cogs are discovered in the `cogs` package and loaded one by one; a cog that fails to load is
logged, remembered and reported in the dev channel once the bot is ready, and the rest of the
bot boots. `close()` stops taking work, unloads cogs and waits for in-flight handlers.

`request_restart()` is the graceful restart a deploy asks for when code the process cannot
reload changed: new commands and interactions are refused with a short notice, in-flight
handlers and self-improvement runs get `deploy.drain_timeout_s` to finish (runs still going
then are stopped as interrupted, resumable), the bot closes, and `__main__` exits with
`deploy.restart_exit_code` for the supervisor (or re-executes itself).

MendBot is mendbot's sample bot with mendbot attached to it the way it attaches to any bot
(`attach`, bot/runtime/attachment.py): how each handler is admitted, tracked, recorded and taken
through the one error path is the attachment's part, put on this instance by the instrumentor
(bot/runtime/instrument.py), not something MendBot inherits.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import pkgutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import discord
import msgspec
import yarl
from discord import app_commands
from discord.ext import commands

from mendbot.kernel import startgc
from mendbot.kernel.discord_limits import install_reply_limits
from mendbot.kernel.log import get_logger
from mendbot.kernel.prompts import PromptRegistry
from mendbot.observe.sampler import SlowSampler
from mendbot.runtime.attachment import SURFACE, Attachment, attach, role_ids
from mendbot.runtime.gateway_resume import install_shard_resume
from mendbot.runtime.recording import takes_no_words
from mendbot.runtime.services import Services

__all__ = [
    "SURFACE",
    "CommandSyncFailed",
    "MendBot",
    "ShardState",
    "bot_intents",
    "discover_extensions",
    "role_ids",
    "takes_no_words",
]

_log = get_logger(__name__)

# A stop (SIGTERM, Ctrl-C) gives in-flight handlers this long, then cancels them and waits this much more
# for them to unwind: with the runs' own stop after it, the process is gone within the documented 10 s.
CLOSE_DRAIN_S = 5.0
CLOSE_CANCEL_S = 1.5
# Discord lets each rate-limit bucket of a bot's shards IDENTIFY once per 5 seconds, timed at its end:
# a quarter second more allows for the previous IDENTIFY's way there.
IDENTIFY_SPACING_S = 5.25


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


def discover_extensions(repo_dir: Path | None = None) -> list[str]:
    """mendbot's own cogs (`mendbot.cogs`), then every module of the sample bot's `cogs` package — the
    repository's (`repo_dir`, put first on the import path when it is not there yet) — whose name does
    not start with `_`."""
    if repo_dir is not None and str(repo_dir.resolve()) not in sys.path:
        sys.path.insert(0, str(repo_dir.resolve()))
    return [*_modules_of("mendbot.cogs"), *_modules_of("cogs")]


def _modules_of(package: str) -> list[str]:
    try:
        module = importlib.import_module(package)
    except ModuleNotFoundError as exc:
        if exc.name != package:
            raise
        return []  # no sample bot here: mendbot installed, run outside its repository
    return sorted(
        f"{package}.{info.name}"
        for info in pkgutil.iter_modules(module.__path__)
        if not info.name.startswith("_")
    )


class ShardState(msgspec.Struct, frozen=True):
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
        install_shard_resume()  # a dropped shard resumes after an outage instead of identifying anew
        config = services.settings.discord
        options.setdefault("shard_count", config.shard_count)
        options.setdefault("shard_ids", list(config.shard_ids) if config.shard_ids is not None else None)
        super().__init__(
            command_prefix=commands.when_mentioned_or(config.command_prefix),
            intents=intents,
            help_command=commands.DefaultHelpCommand(),
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
            **options,
        )
        self.services = services
        install_reply_limits()  # every reply within Discord's limits, whoever built it
        if extensions is None:
            extensions = (
                config.extensions
                if config.extensions is not None
                else discover_extensions(services.settings.repo_dir)
            )
        self.extension_names = list(extensions)
        # mendbot on its own sample bot, as on any bot: the recording is put on this instance.
        self.mend: Attachment = attach(
            self, services, restart=self.request_restart, extension_names=self.extension_names
        )
        self._restart_task: asyncio.Task[None] | None = None
        self._restarted = asyncio.Event()  # set once a requested restart has drained and closed
        self._drained = False  # the restart already drained within its timeout: close() need not wait
        self._setup_done = False
        self._logging_in = asyncio.Event()  # set once discord.py's login has set the client up
        self._closed = asyncio.Event()  # set once closing has begun: nothing waits for ready any more
        # Per shard: READY or RESUMED seen and no disconnect since (what /health/ready reports).
        self._shard_sessions: dict[int, bool] = {}
        self._closed = asyncio.Event()
        self._closing: asyncio.Future[None] | None = None
        self._identify_buckets: int | None = None  # Discord's max_concurrency, asked once it matters
        self._identified_at: dict[int, float] = {}  # per shard: when it last sent IDENTIFY

    # -- what the attachment keeps, as this bot's -------------------------------------------------

    @property
    def accepting(self) -> bool:
        return self.mend.accepting

    @accepting.setter
    def accepting(self, value: bool) -> None:
        self.mend.accepting = value

    @property
    def restart_requested(self) -> str | None:
        return self.mend.restart_requested

    @restart_requested.setter
    def restart_requested(self, value: str | None) -> None:
        self.mend.restart_requested = value

    @property
    def extension_failures(self) -> dict[str, str]:
        return self.mend.extension_failures

    @extension_failures.setter
    def extension_failures(self, failures: dict[str, str]) -> None:
        self.mend.extension_failures = failures

    @property
    def recorder(self) -> Any:
        return self.services.recorder

    @property
    def sampler(self) -> SlowSampler:
        return self.mend.sampler

    @property
    def inflight(self) -> int:
        return self.mend.inflight

    @property
    def not_accepting_notice(self) -> str:
        return self.mend.not_accepting_notice

    def track_inflight(self, task: asyncio.Task[Any]) -> None:
        self.mend.track_inflight(task)

    async def drain(self, timeout: float = 10.0, *, cancel: bool = False) -> int:
        """Wait up to `timeout` for in-flight handlers (`cancel`: cancel them first); how many were still
        running then."""
        return await self.mend.drain(timeout, cancel=cancel)

    def environment_problem(
        self, error: BaseException | None, channel: Any = None, user_id: int | None = None
    ) -> Any:
        return self.mend.environment_problem(error, channel, user_id)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        _log.exception("listener failed", listener=event_method)

    # -- start-up -----------------------------------------------------------------------------

    async def setup_hook(self) -> None:
        self._logging_in.set()  # discord.py has set the client up: wait_until_ready may wait now
        # A login retried after a network failure runs this again: the cogs are loaded once.
        if not self._setup_done:
            self.sampler.start()
            self.services.prompts.set_error_callback(self._report_prompt_error)
            await self.load_extensions()
            self._setup_done = True
            startgc.resume()  # built: the garbage collector's pause for start-up ends
        guild_id = self.services.settings.discord.dev_guild_id
        if guild_id is not None:
            try:
                await self.sync_app_commands(guild_id)
            except discord.HTTPException as exc:
                if exc.status >= 500 or exc.status == 429:
                    raise  # Discord's outage, not our request: the start is retried
                raise CommandSyncFailed(guild_id, exc) from exc

    async def wait_until_ready(self) -> None:
        """Wait until the bot is ready, also when asked before login: discord.py raises "Client has not
        been properly initialised" then, and a cog loaded without a login (a smoke load, a check) starts
        background work that waits for ready — it waits for the login instead. A bot closed before it
        was ready ends the wait unready: what waited (an announcement of a cog that failed to load in a
        smoke load) finds no channel, instead of holding the services' close forever."""
        ready = asyncio.ensure_future(self._ready_after_login())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({ready, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in (ready, closed):
                waiting.cancel()
        if ready.done() and not ready.cancelled():
            ready.result()

    async def _ready_after_login(self) -> None:
        await self._logging_in.wait()
        await super().wait_until_ready()

    async def launch_shard(self, gateway: yarl.URL, shard_id: int, *, initial: bool = False) -> None:
        # discord.py retries a shard that cannot connect every 5 s by calling this again, and never
        # looks whether the bot was closed meanwhile: SIGTERM during a gateway outage at start would
        # wait forever. A closed bot launches nothing, so `connect()` returns.
        if self.is_closed():
            return
        await super().launch_shard(gateway, shard_id, initial=initial)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Identify as soon as Discord allows: once per 5 s in each rate-limit bucket of shards
        (`shard_id % max_concurrency`). discord.py's default waits 5 s before every IDENTIFY but the
        first, so a large bot (max_concurrency 16) would start its shards sixteen times slower than
        it may. The first IDENTIFY never waits nor asks; max_concurrency is asked at the second, and
        taken as 1 if Discord cannot say."""
        shard = shard_id or 0
        if self._identified_at and self._identify_buckets is None:
            try:
                self._identify_buckets = max(1, (await self.fetch_session_start_limits()).max_concurrency)
            except (discord.DiscordException, aiohttp.ClientError, OSError) as exc:
                _log.warning("session start limits unknown: one shard identifies per 5 s", error=repr(exc))
                self._identify_buckets = 1
        buckets = self._identify_buckets or 1
        same_bucket = [at for other, at in self._identified_at.items() if other % buckets == shard % buckets]
        last = max(same_bucket, default=None)
        if last is not None:
            await asyncio.sleep(max(0.0, last + IDENTIFY_SPACING_S - time.monotonic()))
        self._identified_at[shard] = time.monotonic()

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
        return await self.mend.sync_app_commands(guild_id)

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
    def serving(self) -> bool:
        """Connected on every shard and taking work: what /health/ready and `mendbot_discord_ready` say
        (the former also asks the database)."""
        return self.is_ready() and self.gateway_connected and self.accepting

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
        await self.mend.report_boot_problems()

    def authorize(self, user: discord.abc.User, action: str, **context: Any) -> bool:
        """The allow-list check for a Discord user; a refusal is recorded (Services.authorize)."""
        return self.mend.authorize(user, action, **context)

    def run_channel(self, channel_id: int | None) -> discord.abc.Messageable | None:
        return self.mend.run_channel(channel_id)

    def channel_by_id(self, channel_id: int) -> discord.abc.Messageable | None:
        return self.mend.channel_by_id(channel_id)

    def _report_prompt_error(self, message: str) -> None:
        """Called by the prompt watcher (a daemon) when an edited prompt fails validation."""
        if self.is_closed():
            return
        self.track_inflight(self.loop.create_task(self.send_dev(f"⚠️ Prompt not reloaded: {message}")))

    async def send_dev(self, content: str | None = None, **kwargs: Any) -> list[discord.Message]:
        """Post in every configured dev channel; returns the messages sent."""
        return await self.mend.send_dev(content, **kwargs)

    # -- restart and shutdown -----------------------------------------------------------------

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
        await self.mend.drain_for_restart()
        self._drained = True
        try:
            await self.close()
        finally:
            self._restarted.set()

    async def close(self) -> None:
        """Drain, unload every cog and disconnect; a second caller (a signal arriving while the
        playground ends, say) waits for the close already under way instead of racing it."""
        self._closed.set()
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close_once())
        await asyncio.shield(self._closing)

    async def _close_once(self) -> None:
        self.sampler.stop()
        self.accepting = False
        # A live replay under way is not waited for: the next start runs it. (A restart a deploy asked
        # for has let it finish within `deploy.drain_timeout_s` already, if it could.)
        self.services.deploy.stopping()
        left = await self.drain(0.0 if self._drained else CLOSE_DRAIN_S)
        if left:
            # Past the drain, what is still running stops where it is, as a kill would stop it — every
            # step is written to be taken up again by the next start — but with its `finally` blocks
            # run: subprocesses and sandboxes end with it, instead of outliving the process's exit.
            _log.warning(
                "closing with handlers still running: stopping them",
                count=left,
                waiting_in=self.mend.waiting_in(),
            )
            await self.drain(CLOSE_CANCEL_S, cancel=True)
        await self.services.deploy.cancel_background(CLOSE_CANCEL_S)
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
