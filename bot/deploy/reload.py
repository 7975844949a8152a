"""Swap changed code into the running bot: reload cogs, reload prompts, or restart.

`classify` sorts changed repository paths by what it takes to apply them: a cog
(`cogs/x.py` or `cogs/x/…`) is an extension to reload, a prompt (`prompts/**/*.md`) goes to
the prompt registry, and anything the running process has already imported for good
(`bot/`, `pyproject.toml`, a shared `cogs/_helper.py`) needs a graceful restart.
`Reloader.apply` carries a plan out and returns a per-module report; `render` turns it into
the ✅/❌ lines posted in chat.

discord.py's `reload_extension` keeps the old version when the new one fails to import or
set up, so a broken cog never takes a working command down. Unloading an extension removes
its app commands from the tree, the dev guild's copies included; the reloaded ones are copied
to the dev guild again here, and synced with Discord only when what Discord would be told
changed (a fix inside a command body needs no API call). Python's import finders cache
directory listings, so a new cog file is only found after `importlib.invalidate_caches()`,
and a `.pyc` is trusted by the source's mtime in whole seconds, so the cached bytecode of a
reloaded module is removed first.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.machinery
import importlib.util
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any, Protocol

import discord
import msgspec
from discord import app_commands
from discord.ext import commands

from mendbot.kernel.log import get_logger
from mendbot.kernel.prompts import PromptError, PromptRegistry

__all__ = [
    "ModuleResult",
    "Plan",
    "ReloadReport",
    "ReloadTarget",
    "Reloader",
    "classify",
    "classify_by_extensions",
    "render",
]

_log = get_logger(__name__)

EXTENSION_PACKAGES = ("cogs",)
PROMPTS_DIR = "prompts"
# Files whose change the running process cannot pick up without starting again.
RESTART_FILES = frozenset({"pyproject.toml"})
RESTART_DIRS = frozenset({"bot"})


class Plan(msgspec.Struct):
    """What a set of changed files takes to apply."""

    extensions: list[str] = msgspec.field(default_factory=list)  # extension module names, e.g. "cogs.dice"
    # repository paths, e.g. "prompts/chat/persona.md"
    prompts: list[str] = msgspec.field(default_factory=list)
    restart: bool = False
    other: list[str] = msgspec.field(default_factory=list)  # changed files that need nothing (tests, docs)
    restart_paths: list[str] = msgspec.field(default_factory=list)  # the files that call for the restart

    @property
    def empty(self) -> bool:
        return not (self.extensions or self.prompts or self.restart)


class ModuleResult(msgspec.Struct, frozen=True):
    name: str
    ok: bool
    error: str | None = None
    action: str = "reloaded"  # reloaded | loaded | unloaded | removed | commands synced


class ReloadReport(msgspec.Struct):
    results: list[ModuleResult] = msgspec.field(default_factory=list)
    restart_requested: bool = False
    restart_reason: str = ""

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)


def classify(changed_files: Iterable[str], *, extension_packages: Sequence[str] = EXTENSION_PACKAGES) -> Plan:
    """Sort repository-relative paths (as `git diff --name-only` prints them) into a Plan."""
    plan = Plan()
    for raw in changed_files:
        path = PurePosixPath(raw.replace("\\", "/"))
        parts = path.parts
        if not parts or "__pycache__" in parts:
            continue
        top = parts[0]
        if top in extension_packages and len(parts) >= 2:
            module = parts[1].removesuffix(".py")
            is_module = len(parts) > 2 or parts[1].endswith(".py")
            if not is_module:
                plan.other.append(raw)
            elif module.startswith("_"):
                # cogs/__init__.py or a shared helper: every cog that imported it holds the old
                # version, so only a fresh process applies it everywhere.
                plan.restart = True
                plan.restart_paths.append(raw)
            else:
                name = f"{top}.{module}"
                if name not in plan.extensions:
                    plan.extensions.append(name)
        elif top == PROMPTS_DIR and path.suffix == ".md":
            plan.prompts.append(raw)
        elif (top in RESTART_DIRS and path.suffix == ".py") or raw in RESTART_FILES:
            plan.restart = True
            plan.restart_paths.append(raw)
        else:
            plan.other.append(raw)
    return plan


def classify_by_extensions(changed_files: Iterable[str], extension_files: Mapping[str, str]) -> Plan:
    """Sort the changed paths of a bot mendbot is attached to, whatever its layout, into a Plan.

    `extension_files` maps each loaded extension's file (`cogs/fun.py`), or its package directory with a
    trailing slash (`src/shop/extensions/orders/`), to the extension's name. A changed file that is one
    of them, or inside one, reloads that extension; any other Python file — the bot's main module, its
    Bot class, a helper its extensions imported — is held by the running process for good: restart.
    Anything else (docs, data, tests' fixtures) needs nothing.
    """
    plan = Plan()
    for raw in changed_files:
        path = raw.replace("\\", "/")
        if "__pycache__" in path.split("/"):
            continue
        name = extension_files.get(path) or next(
            (
                ext
                for prefix, ext in extension_files.items()
                if prefix.endswith("/") and path.startswith(prefix)
            ),
            None,
        )
        if name is not None:
            if name not in plan.extensions:
                plan.extensions.append(name)
        elif path.endswith(".py"):
            plan.restart = True
            plan.restart_paths.append(raw)
        else:
            plan.other.append(raw)
    return plan


def render(report: ReloadReport) -> str:
    """The report for chat: one ✅/❌ line per module, then the restart notice."""
    lines = []
    for result in report.results:
        if result.ok:
            lines.append(f"✅ {result.name} {result.action}")
        else:
            lines.append(f"❌ {result.name} — {result.error}")
    if report.restart_requested:
        reason = f" ({report.restart_reason})" if report.restart_reason else ""
        lines.append(f"🔁 restarting{reason}: finishing what is running first, back in a few seconds")
    return "\n".join(lines) if lines else "Nothing to reload."


def _summary(exc: BaseException) -> str:
    """`SyntaxError: invalid syntax (dice.py, line 3)` for the error under discord.py's wrapper."""
    cause = exc.__cause__ if isinstance(exc, commands.ExtensionError) and exc.__cause__ else exc
    return f"{type(cause).__name__}: {cause}"


class ReloadTarget(Protocol):
    """What a reload needs of the running bot: its extensions, its command tree and prompts, and a way
    to ask for a restart. The runtime's bot (`mendbot.runtime.app.MendBot`) is one; deploys know no more."""

    extension_failures: dict[str, str]
    extension_names: list[str]

    @property
    def extensions(self) -> Mapping[str, ModuleType]: ...

    @property
    def tree(self) -> app_commands.CommandTree[Any]: ...

    @property
    def dev_guild_id(self) -> int | None: ...

    @property
    def prompts(self) -> PromptRegistry: ...

    async def load_extension(self, name: str, *, package: str | None = None) -> None: ...

    async def reload_extension(self, name: str, *, package: str | None = None) -> None: ...

    async def unload_extension(self, name: str, *, package: str | None = None) -> None: ...

    def request_restart(self, reason: str) -> object: ...

    async def sync_app_commands(self, guild_id: int) -> list[app_commands.AppCommand]: ...


class Reloader:
    """Applies plans to one running bot; share one instance between the deploy path and the watcher."""

    def __init__(self, bot: ReloadTarget, *, prompts_dir: str = PROMPTS_DIR) -> None:
        self.bot = bot
        self._prompts_dir = prompts_dir
        # Source file → st_mtime_ns when it was last applied (None: applied as deleted). The
        # hand-edit watcher sees the files a deploy just wrote and must not apply them twice.
        self._applied: dict[Path, int | None] = {}
        # One swap of the running code at a time: two reloads of one extension interleaved at
        # their awaits fail with "already loaded", and a deploy's freshly written files must not
        # be taken for hand edits before the deploy has applied them.
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def applying(self) -> AsyncIterator[Callable[[Plan], Awaitable[ReloadReport]]]:
        """Exclusive use of the running code; files written and applied inside are one step.

        A deploy writes the live checkout and applies it inside; the hand-edit watcher decides
        what is fresh inside, so it sees the deploy's files only once they are applied.
        """
        async with self._lock:
            yield self._apply

    def classify(self, changed_files: Iterable[str]) -> Plan:
        """What the changed files take to apply to this bot: by its own extensions when it says which
        files they are (`plan_for`, a bot mendbot is attached to), else by mendbot's layout."""
        plan_for: Callable[[Iterable[str]], Plan] | None = getattr(self.bot, "plan_for", None)
        return plan_for(changed_files) if plan_for is not None else classify(changed_files)

    async def apply(self, plan: Plan) -> ReloadReport:
        """Reload, load or unload the plan's extensions, reload its prompts, then ask for a restart."""
        async with self.applying() as apply:
            return await apply(plan)

    async def _apply(self, plan: Plan) -> ReloadReport:
        report = ReloadReport()
        if plan.extensions:
            importlib.invalidate_caches()
            guild = self._dev_guild()
            before = self._command_payload(guild) if guild is not None else ""
            for name in plan.extensions:
                report.results.append(await self._extension(name))
            if guild is not None:
                sync = await self._refresh_commands(guild, before)
                if sync is not None:
                    report.results.append(sync)
        for path in plan.prompts:
            report.results.append(self._prompt(path))
        if plan.restart:
            reason = ", ".join(plan.restart_paths[:5]) or "a restart was asked for"
            if len(plan.restart_paths) > 5:
                reason += f" and {len(plan.restart_paths) - 5} more"
            report.restart_requested = True
            report.restart_reason = f"{reason} changed" if plan.restart_paths else reason
            self.bot.request_restart(report.restart_reason)
        for result in report.results:
            if not result.ok:
                _log.error("reload failed", module=result.name, error=result.error)
        return report

    def already_applied(self, path: Path) -> bool:
        """Whether this file, as it is on disk now, was already applied (by a deploy or an earlier event)."""
        path = path.resolve()
        if path not in self._applied:
            return False
        return self._applied[path] == _mtime(path)

    # -- extensions -----------------------------------------------------------------------------

    async def _extension(self, name: str) -> ModuleResult:
        bot = self.bot
        loaded = name in bot.extensions
        exists = _find_spec(name) is not None
        sources = _extension_sources(name)  # before an unload forgets where the module was
        if not loaded and not exists:
            bot.extension_failures.pop(name, None)
            self._remember(sources)
            return ModuleResult(name, ok=True, action="removed")
        action = "reloaded" if loaded and exists else "loaded" if exists else "unloaded"
        _drop_bytecode(sources)
        started = time.perf_counter()
        try:
            if action == "reloaded":
                await bot.reload_extension(name)
            elif action == "loaded":
                await bot.load_extension(name)
            else:
                await bot.unload_extension(name)
        except Exception as exc:
            if loaded:
                error = f"{_summary(exc)} (the previous version keeps serving)"
            else:
                error = _summary(exc)
                bot.extension_failures[name] = error
            _log.warning("extension not applied", extension=name, error=error, exc_info=exc.__cause__ or exc)
            return ModuleResult(name, ok=False, error=error, action=action)
        finally:
            self._remember([*sources, *_extension_sources(name)])
        bot.extension_failures.pop(name, None)
        if action == "loaded" and name not in bot.extension_names:
            bot.extension_names.append(name)
        elif action == "unloaded" and name in bot.extension_names:
            bot.extension_names.remove(name)
        _log.info(
            "extension applied",
            extension=name,
            action=action,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return ModuleResult(name, ok=True, action=action)

    def _dev_guild(self) -> discord.Object | None:
        guild_id = self.bot.dev_guild_id
        return discord.Object(guild_id) if guild_id is not None else None

    def _command_payload(self, guild: discord.Object) -> str:
        """What Discord would be told about the dev guild's commands; a change calls for a sync."""
        tree = self.bot.tree
        tree.copy_global_to(guild=guild)
        payload = [command.to_dict(tree) for command in tree.get_commands(guild=guild)]
        return json.dumps(
            sorted(payload, key=lambda p: (p["name"], p.get("type", 1))), sort_keys=True, default=str
        )

    async def _refresh_commands(self, guild: discord.Object, before: str) -> ModuleResult | None:
        """Copy the reloaded commands to the dev guild; sync with Discord only if they changed."""
        after = self._command_payload(guild)
        if after == before:
            return None
        try:
            await self.bot.sync_app_commands(guild.id)
        except (discord.HTTPException, app_commands.AppCommandError) as exc:
            return ModuleResult("app commands", ok=False, error=_summary(exc), action="synced")
        return ModuleResult("app commands", ok=True, action="synced")

    # -- prompts --------------------------------------------------------------------------------

    def _prompt(self, repo_path: str) -> ModuleResult:
        registry = self.bot.prompts
        relative = PurePosixPath(repo_path)
        if relative.parts and relative.parts[0] == self._prompts_dir:
            relative = PurePosixPath(*relative.parts[1:])
        path = registry.root / relative
        key = relative.with_suffix("").as_posix()
        try:
            registry.get(key)
        except PromptError:
            existed = False
        else:
            existed = True
        error = registry.reload_path(path)
        self._remember([path])
        name = f"prompt {key}"
        if error is not None:
            kept = (
                " (the previous version keeps serving)" if existed and "previous version" not in error else ""
            )
            return ModuleResult(name, ok=False, error=error + kept)
        return ModuleResult(name, ok=True, action="reloaded" if path.exists() else "removed")

    def _remember(self, paths: Iterable[Path]) -> None:
        for path in paths:
            resolved = path.resolve()
            self._applied[resolved] = _mtime(resolved)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """The module's spec as the files are now — unlike importlib.util.find_spec, never from sys.modules."""
    parent = name.rpartition(".")[0]
    try:
        search = importlib.import_module(parent).__path__ if parent else None
    except (ImportError, AttributeError):
        return None
    return importlib.machinery.PathFinder.find_spec(name, search)


def _drop_bytecode(sources: Iterable[Path]) -> None:
    """Remove cached bytecode: a .pyc is trusted by source mtime in whole seconds and size, so a
    same-size edit saved within a second of the last import would otherwise reload the old code."""
    for source in sources:
        with contextlib.suppress(OSError, ValueError):
            Path(importlib.util.cache_from_source(str(source))).unlink()


def _extension_sources(name: str) -> list[Path]:
    """The files an extension is made of (a package: every .py under it)."""
    spec = _find_spec(name)
    if spec is None or spec.origin is None:
        module = sys.modules.get(name)
        origin = getattr(getattr(module, "__spec__", None), "origin", None)
        return [Path(origin)] if origin else []
    origin = Path(spec.origin)
    if origin.name == "__init__.py":
        return sorted(origin.parent.rglob("*.py"))
    return [origin]
