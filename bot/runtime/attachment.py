"""mendbot attached to a bot: its recording, its services, and what mendbot's own cogs ask of it.

`attach(bot, services)` is the one way mendbot comes to a bot — mendbot's own sample bot
(bot/runtime/app.py) as much as one someone else wrote, reached by `mendbot attach -- python bot.py`
or by `await bot.load_extension("mendbot")` (bot/attach). It builds an `Attachment` and instruments
the bot instance with it (bot/runtime/instrument.py); `detach(bot)` takes it off again.

The Attachment is mendbot's side of the bot. mendbot's chat surface (the cogs announcing incidents,
taking "fix this", "ship it", `/runs`, `/dashboard`, …) is given it instead of the bot: it has the
services, the allow-list check, the dev channel, the reload target a deploy needs (the bot's
extensions, its command tree, a restart), and for everything else it is the bot (an attribute it does
not have is the bot's), so those cogs read `self.bot.user` or `self.bot.services` alike.

A restart a deploy asks for, on a bot mendbot did not build, stops taking work, drains what is in
flight and the runs, and closes the bot: its program then ends, and the runner that started it
(`mendbot attach`) starts it again or exits with the restart code for a supervisor. mendbot's own bot
brings its own restart (`MendBot.request_restart`).

On a bot about to connect, mendbot's self-improvement half and its cogs come up once the bot has its
gateway session (`start_surface`), not before: the bot's own start waits only for the recording.
What arrives for those cogs meanwhile is held for them (bot/runtime/held_events.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from mendbot.kernel import startgc
from mendbot.kernel.log import get_logger
from mendbot.kernel.prompts import PromptRegistry
from mendbot.kernel.uncommitted import not_on_main, unseen_line
from mendbot.kernel.waits import wait_for
from mendbot.observe.recorder import Recovery, recovery_notice
from mendbot.runtime.held_events import HeldEvents
from mendbot.runtime.instrument import instrument, recording_of, uninstrument
from mendbot.runtime.recording import Host, Recording, takes_no_words
from mendbot.runtime.services import Services
from mendbot.scale.leader import shares_database

if TYPE_CHECKING:
    from mendbot.deploy.reload import Plan

__all__ = [
    "SURFACE",
    "Attachment",
    "NotAttached",
    "add_surface_cog",
    "attach",
    "attached",
    "detach",
    "role_ids",
    "takes_no_words",
]

_log = get_logger(__name__)

# mendbot's own cogs, which every bot it is attached to gets (modules of the `cogs` package).
SURFACE = ("improve", "incidents", "ship", "audit", "dashboard", "drill", "devmode")


class NotAttached(LookupError):
    """A bot mendbot is not attached to, asked for its attachment."""


def role_ids(user: discord.abc.User) -> list[int]:
    """The user's role ids in the guild (none for a plain User, e.g. in DMs)."""
    return [role.id for role in getattr(user, "roles", [])]


class Attachment(Recording):
    """mendbot's side of one bot: the recording of its handlers, the services, the dev channel, and
    the reload target deploys use. Attributes it does not have are the bot's."""

    def __init__(
        self,
        bot: Host,
        services: Services,
        *,
        restart: Callable[[str], object] | None = None,
        extension_names: list[str] | None = None,
        owns_services: bool = False,
    ) -> None:
        super().__init__(bot, services)
        self._restart = restart
        self._extension_names = extension_names
        self.owns_services = owns_services  # closed with the bot (a bot mendbot did not build)
        self._restart_task: asyncio.Task[None] | None = None
        self._restarted = asyncio.Event()  # set once a requested restart has drained and closed the bot
        self._boot_reported = False
        self._ready_seen = False
        # mendbot's own cogs: added by `add_surface`, at once when the self-improvement half is built,
        # else by `start_surface` once the bot has connected; what arrives for them meanwhile is held.
        self.surface_cogs: list[commands.Cog] = []
        self._surface: Callable[[], Awaitable[None]] | None = None
        self._surface_started = False
        self._surface_up = asyncio.Event()  # set once they are added (or could not be)
        self.held: HeldEvents | None = None
        if services.mending is not None:
            self._surface_up.set()

    def __getattr__(self, name: str) -> Any:
        # Only reached for what the attachment does not have: the bot's user, channels, tree, cogs, ...
        if name.startswith("__") or name == "bot":
            raise AttributeError(name)
        return getattr(self.bot, name)

    # -- what mendbot's cogs ask -------------------------------------------------------------------

    @property
    def dev_guild_id(self) -> int | None:
        """The guild mendbot's slash commands are synced to at start (and after a reload)."""
        return self.services.settings.discord.dev_guild_id

    @property
    def prompts(self) -> PromptRegistry:
        return self.services.prompts

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
        channel = self.bot.get_channel(channel_id)
        if isinstance(channel, discord.abc.Messageable):
            return channel
        if channel is None and shares_database(self.services.settings):
            return self.bot.get_partial_messageable(channel_id)
        return None

    def surface_cog(self, name: str) -> Any:
        """One of mendbot's own cogs by its name (`Improve`), in lower case on a bot mendbot did not build."""
        return self.bot.get_cog(name) or self.bot.get_cog(name.lower())

    def report_recovery(self, recovery: Recovery) -> None:
        """Called once the action store has taken from the journal what the database did not have."""
        text = recovery_notice(recovery, self.services.settings.log_dir / "actions.ndjson")
        if not self.bot.is_ready():
            self.services.boot_notices.append(text)  # posted with the others once the bot is ready
            return
        self.track_inflight(asyncio.get_running_loop().create_task(self.send_dev(text)))

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

    # -- mendbot's own cogs ------------------------------------------------------------------------

    async def add_surface(self, add: Callable[[], Awaitable[None]]) -> None:
        """Add mendbot's cogs with `add`: now if the self-improvement half is built, else once the bot
        has connected (`start_surface`)."""
        if self.services.mending is not None:
            await add()
        else:
            self._surface = add

    async def surfaced(self) -> None:
        """Until mendbot's own cogs are added to the bot (or could not be): from then on mendbot changes
        nothing of the bot's cogs, which a command of the bot's that walks `bot.cogs` across an await
        could otherwise see change under it."""
        await self._surface_up.wait()

    def hold_for_surface(self) -> None:
        """Until mendbot's cogs are added, keep what arrives for them (bot/runtime/held_events.py)."""
        bot: Any = self.bot
        self.held = HeldEvents(bot, limit=self.services.settings.observe.queue_size)
        self.held.install()

    async def start_surface(self) -> None:
        """The bot has connected: mendbot's self-improvement half is built, its cogs are added and handed
        what was held for them, and its commands are synced to the dev guild. If the half or its cogs
        cannot start, the bot runs on without them: said in #dev, and a held interaction answered so."""
        if self._surface_started:
            return
        self._surface_started = True
        held = self.held
        try:
            with startgc.frozen_after():
                await self.services.complete()
                if self._surface is not None:
                    await self._surface()
        except Exception as exc:
            # Said in #dev and to whoever waited: an error's text may carry a value of the bot's secrets.
            why = self.services.redactor.text(f"{type(exc).__name__}: {exc}", 300)
            _log.exception("mendbot's self-improvement could not start: the bot runs without it")
            self.extension_failures["mendbot"] = why
            if held is not None:
                await held.fail(f"⚠️ mendbot could not start here ({why}); its developers have been told.")
        else:
            if held is not None:
                held.release(self.surface_cogs)
        finally:
            self.held = None
            if self.services.mending is not None:
                self.services.hand_over_held()
            self._surface_up.set()
        await self.sync_dev_guild()

    async def report_boot_problems(self) -> None:
        """Tell the dev channel, once it is reachable, which extensions failed to load, what the start
        found (runs a stop interrupted, a drill it ended) and changes no run will see: a file written
        but never committed serves, and every run starts from main without it. Looked for here, once
        ready, since git takes a while and the bot need not wait for it to connect."""
        await self.surfaced()  # what the self-improvement half's start found is said too
        if self._boot_reported:
            return
        notices = list(self.services.boot_notices)
        if (unseen := unseen_line(await not_on_main(self.services.settings.repo_dir.resolve()))) is not None:
            notices.append(unseen)
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

    async def sync_dev_guild(self) -> None:
        """mendbot's commands (and the bot's, copied) synced to the dev guild, once: a bot mendbot did
        not build, connected (its extensions loaded)."""
        guild_id = self.dev_guild_id
        if self._ready_seen or guild_id is None:
            return
        self._ready_seen = True
        try:
            await self.sync_app_commands(guild_id)
        except Exception as exc:  # the bot starts all the same; its own commands are its business
            error = f"{exc.status} {exc.text}" if isinstance(exc, discord.HTTPException) else repr(exc)
            _log.error("command sync to the dev guild failed", guild=guild_id, error=error)

    async def on_ready(self) -> None:
        """A bot mendbot did not build, ready: extensions that failed to load told in the dev channel."""
        await self.report_boot_problems()

    async def release_daemons(self) -> None:
        """The bot has its gateway session: the services' background work, held while it started, runs
        (bot/kernel/daemons.py)."""
        self.services.daemons.release()

    # -- the reload target (bot/deploy/reload.py) --------------------------------------------------

    @property
    def extension_names(self) -> list[str]:
        """The bot's extensions (what it loads; mendbot's own extension is not among them)."""
        if self._extension_names is None:
            self._extension_names = [name for name in self.bot.extensions if name != "mendbot"]
        return self._extension_names

    @extension_names.setter
    def extension_names(self, names: list[str]) -> None:
        self._extension_names = names

    async def load_extension(self, name: str, *, package: str | None = None) -> None:
        await self.bot.load_extension(name, package=package)

    async def reload_extension(self, name: str, *, package: str | None = None) -> None:
        await self.bot.reload_extension(name, package=package)

    async def unload_extension(self, name: str, *, package: str | None = None) -> None:
        await self.bot.unload_extension(name, package=package)

    @property
    def extensions(self) -> Mapping[str, ModuleType]:
        return self.bot.extensions

    @property
    def tree(self) -> app_commands.CommandTree[Any]:
        return self.bot.tree

    def extension_files(self) -> dict[str, str]:
        """Each loaded extension of the bot by its file in the repository (a package: its directory,
        with a trailing slash): what a change to that file reloads."""
        root = self.services.settings.repo_dir.resolve()
        found: dict[str, str] = {}
        for name, module in self.bot.extensions.items():
            file = getattr(module, "__file__", None)
            if not file:
                continue
            path = Path(file).resolve()
            if not path.is_relative_to(root):
                continue  # mendbot's own, or installed: not the repository's
            relative = path.relative_to(root).as_posix()
            found[relative.removesuffix("__init__.py") if path.name == "__init__.py" else relative] = name
        return found

    def plan_for(self, changed_files: Iterable[str]) -> Plan:
        """What a merged change takes to apply: on mendbot's own bot by its layout (`cogs/`, `bot/`), on
        another bot by its own extensions (anything else of Python restarts it)."""
        from mendbot.deploy.reload import classify, classify_by_extensions  # with the first deploy

        if self.services.settings.bot is None:
            return classify(changed_files)
        return classify_by_extensions(changed_files, self.extension_files())

    async def sync_app_commands(self, guild_id: int) -> list[app_commands.AppCommand]:
        """Copy global commands to the dev guild and sync there, so they show up at once."""
        guild = discord.Object(guild_id)
        self.bot.tree.copy_global_to(guild=guild)
        return await self.bot.tree.sync(guild=guild)

    def request_restart(self, reason: str) -> object:
        """Stop taking new work now; drain and close in the background (the bot's own restart when it
        brings one). Idempotent; returns the task that closes."""
        if self._restart is not None:
            return self._restart(reason)
        if self._restart_task is None:
            self.restart_requested = reason
            self.accepting = False
            _log.warning("restart requested", reason=reason)
            self._restart_task = asyncio.get_running_loop().create_task(self._drain_and_close())
        return self._restart_task

    async def drain_for_restart(self) -> None:
        """Let handlers and runs finish within `deploy.drain_timeout_s`; runs still going then stop where
        they are (resumable). Never raises: a restart closes the bot whatever happened here."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.services.settings.deploy.drain_timeout_s
        try:
            # Listeners still run while draining (a reply to "ship it" must not be lost), so
            # handlers that started after the first wait are waited for as well.
            while self.inflight and (remaining := deadline - loop.time()) > 0:
                await self.drain(remaining)
            improve = (await self.services.complete()).improve  # built by now: a deploy asked
            try:
                await wait_for(improve.quiesce(), timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                _log.warning("runs still going at the drain timeout: stopping them (resumable)")
            await improve.shutdown()
            if self.inflight:
                _log.warning(
                    "restarting with handlers still running",
                    count=self.inflight,
                    waiting_in=self.waiting_in(),
                )
        except Exception:
            _log.exception("draining for the restart failed: closing anyway")

    async def _drain_and_close(self) -> None:
        try:
            await self.drain_for_restart()
            await self.bot.close()
        finally:
            self._restarted.set()

    async def wait_for_restart(self) -> str:
        """Return once a restart this attachment was asked for has drained and closed the bot; the
        reason."""
        await self._restarted.wait()
        return self.restart_requested or ""

    # -- closing ---------------------------------------------------------------------------------

    async def closed(self) -> None:
        """The bot has closed: the sampler stops, and services mendbot built for it close."""
        self.sampler.stop()
        self.accepting = False
        self.keeping_handler_map = False
        if self.owns_services:
            await self.services.aclose()


async def add_surface_cog(bot: Host, cog: commands.Cog) -> None:
    """Add one of mendbot's own cogs: its slash commands in the dev guild only, when one is configured
    (the bot's users elsewhere never see `/fix` or `/runs`). They are scoped as discord.py's own
    `app_commands.guilds` does, on the cog's commands, and the cog added with a plain `add_cog(cog)`: a
    bot's override of `add_cog` (often `(self, cog, /, *, override=False)`) takes no `guild`. On a bot
    mendbot did not build its name is
    in lower case: bots commonly name their cogs so and look each one in `bot.cogs` up again by
    `get_cog(name.lower())` (a help command listing them), which would find nothing for `Improve`.
    There too its listeners, which read every message to find the few for mendbot, are recorded only
    when they fail: they are mendbot's, not the bot's under repair. A cog with a `concerns(message)`
    test is handed only the messages it passes."""
    mend = attached(bot)
    mend.surface_cogs.append(cog)
    concerns = getattr(cog, "concerns", None)
    if concerns is not None:  # its `on_message` is handed only the messages that can concern it
        mend.message_filters[cog] = concerns
    if mend.services.settings.bot is not None:
        cog.__cog_name__ = cog.__cog_name__.lower()
        mend.failures_only.add(cog)  # mendbot's own, not the bot's: its listeners recorded when they fail
    guild_id = mend.dev_guild_id
    if guild_id is not None:
        in_dev_guild = app_commands.guilds(guild_id)
        group = cog.__cog_app_commands_group__
        for command in [group] if group is not None else cog.get_app_commands():
            in_dev_guild(command)
    await bot.add_cog(cog)


def attached(bot: Any) -> Attachment:
    """mendbot's attachment on `bot` (the bot itself when given an attachment)."""
    if isinstance(bot, Attachment):
        return bot
    recording = recording_of(bot)
    if not isinstance(recording, Attachment):
        raise NotAttached(f"mendbot is not attached to {type(bot).__name__}")
    return recording


def attach(
    bot: Host,
    services: Services,
    *,
    restart: Callable[[str], object] | None = None,
    extension_names: list[str] | None = None,
    owns_services: bool = False,
) -> Attachment:
    """Attach mendbot to `bot` (instrument it); attaching twice returns the first attachment."""
    recording = recording_of(bot)
    if isinstance(recording, Attachment):
        return recording
    attachment = Attachment(
        bot, services, restart=restart, extension_names=extension_names, owns_services=owns_services
    )
    instrument(bot, attachment)
    services.recorder.on_recovery(attachment.report_recovery)
    if services.daemons.holding:
        bot.add_listener(attachment.release_daemons, "on_connect")
    if services.mending is None:
        attachment.hold_for_surface()
    return attachment


async def detach(bot: Host) -> Attachment | None:
    """Take mendbot off `bot`; the attachment taken off (None: it was not attached)."""
    recording = uninstrument(bot)
    return recording if isinstance(recording, Attachment) else None
