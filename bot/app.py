"""MendBot: the discord.py Bot that wires services, loads every cog and owns the one error path.

Cogs are discovered in the `cogs` package and loaded one by one; a cog that fails to load is
logged, remembered and reported in the dev channel once the bot is ready, and the rest of the
bot boots. `close()` stops taking work, unloads cogs and waits for in-flight handlers.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import time
import traceback
from collections.abc import Sequence
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import describe
from bot.log import bind_context, get_logger
from bot.services import Services

__all__ = ["MendBot", "discover_extensions"]

_log = get_logger(__name__)


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
        interaction.extras["started"] = time.perf_counter()
        task = asyncio.current_task()
        if task is not None:
            self.client.track_inflight(task)
        return True

    async def on_error(
        self, interaction: discord.Interaction[MendBot], error: app_commands.AppCommandError
    ) -> None:
        await self.client.handle_interaction_error(interaction, error)


class MendBot(commands.Bot):
    def __init__(
        self,
        services: Services,
        *,
        extensions: Sequence[str] | None = None,
        intents: discord.Intents | None = None,
    ) -> None:
        if intents is None:
            intents = discord.Intents.default()
            intents.message_content = True
        prefix = services.settings.discord.command_prefix
        super().__init__(
            command_prefix=commands.when_mentioned_or(prefix),
            intents=intents,
            tree_cls=MendTree,
            help_command=commands.DefaultHelpCommand(),
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
        )
        self.services = services
        self.extension_names = list(extensions) if extensions is not None else discover_extensions()
        self.extension_failures: dict[str, str] = {}
        self._inflight: set[asyncio.Task[Any]] = set()
        self._boot_reported = False
        self.accepting = True

    # -- start-up -----------------------------------------------------------------------------

    async def setup_hook(self) -> None:
        await self.load_extensions()
        guild_id = self.services.settings.discord.dev_guild_id
        if guild_id is not None:
            await self.sync_app_commands(guild_id)

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
        _log.info("ready", user=str(self.user), guilds=len(self.guilds), cogs=sorted(self.cogs))
        await self.report_boot_problems()

    async def report_boot_problems(self) -> None:
        """Tell the dev channel which extensions failed to load (once, when it is reachable)."""
        if self._boot_reported or not self.extension_failures:
            return
        lines = "\n".join(f"• `{name}` — {error}" for name, error in self.extension_failures.items())
        sent = await self.send_dev(
            f"⚠️ I started, but {len(self.extension_failures)} extension(s) failed to load "
            f"and are not serving:\n{lines}"
        )
        self._boot_reported = bool(sent)

    async def send_dev(self, content: str | None = None, **kwargs: Any) -> list[discord.Message]:
        """Post in every configured dev channel; returns the messages sent."""
        sent = []
        for channel_id in self.services.settings.discord.dev_channel_ids:
            channel = self.get_channel(channel_id)
            if isinstance(channel, discord.abc.Messageable):
                sent.append(await channel.send(content, **kwargs))
            else:
                _log.warning("dev channel not reachable", channel_id=channel_id)
        return sent

    # -- the one error path ---------------------------------------------------------------------

    async def handle_interaction_error(self, interaction: discord.Interaction[Any], error: Exception) -> None:
        text, is_bug = describe(error)
        command = interaction.command.qualified_name if interaction.command else "?"
        with bind_context(
            guild_id=interaction.guild_id, channel_id=interaction.channel_id, user_id=interaction.user.id
        ):
            if is_bug:
                _log.error("app command failed", command=command, exc_info=error)
            if text is None:
                return
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)

    async def on_command_error(
        self, context: commands.Context[Any], exception: commands.CommandError
    ) -> None:
        if context.command is not None and context.command.has_error_handler():
            return
        text, is_bug = describe(exception)
        with bind_context(
            guild_id=context.guild.id if context.guild else None,
            channel_id=context.channel.id,
            user_id=context.author.id,
        ):
            if is_bug:
                _log.error(
                    "command failed",
                    command=context.command and context.command.qualified_name,
                    exc_info=exception,
                )
            if text is not None:
                await context.reply(text, mention_author=False)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        _log.error("listener failed", listener=event_method, error=traceback.format_exc(limit=-5))

    # -- draining ------------------------------------------------------------------------------

    def track_inflight(self, task: asyncio.Task[Any]) -> None:
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _run_event(self, coro: Any, event_name: str, *args: Any, **kwargs: Any) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.track_inflight(task)
        await super()._run_event(coro, event_name, *args, **kwargs)

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

    async def close(self) -> None:
        self.accepting = False
        left = await self.drain()
        if left:
            _log.warning("closing with handlers still running", count=left)
        for name in list(self.extensions):
            try:
                await self.unload_extension(name)
            except Exception:
                _log.exception("extension failed to unload", extension=name)
        await super().close()
