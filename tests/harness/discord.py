"""The virtual Discord for tests: the real MendBot in simcord, built the way `mendbot play` builds it.

Tests talk to it through `VirtualWorld` (guild, `dev`/`general` channels, `users["alice"]`) and
simcord's actors (`send`, `slash`, `react`, `click`); this module is the one place that knows
how to assemble it, so the simulator can be swapped without touching tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import discord
import simcord

from mendbot.kernel.settings import Settings, load_settings
from mendbot.runtime.app import MendBot, discover_extensions
from mendbot.runtime.services import build_services
from mendbot.tools.playground import VirtualWorld, WorldClock, virtual_world
from tests.harness.postgres import bot_database

__all__ = ["bot_down", "bot_messages", "make_bot", "make_settings", "reply_text", "running_world"]


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test: its own data dir, no health port, nothing read from .env or config.yaml.

    repo_dir defaults to the (non-git) parent of data_dir, so no test touches the live checkout;
    tests of self-improvement pass a `copy_of_bot()` repository. `improve.autonomy` is off and
    `observe.retention_days` is ten years unless given.
    """
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "repo_dir": data_dir.parent,
        "health": {"enabled": False},
        "deploy": {"watch_hand_edits": False},
        "_env_file": None,
    }
    if (url := bot_database(data_dir)) is not None:
        values["database"] = {"url": url}  # MENDBOT_TEST_DATABASE=postgresql (tests/conftest.py)
    values.update(overrides)
    # The bot's own runs (improve.autonomy, default investigate) would start on every error incident
    # a test provokes and use up its scripted model turns: off unless a test asks for a level.
    # settle() fast-forwards the virtual clock through the timers due within its timeout, the stuck-run
    # watchdog's sweep among them: a run waiting on the sandbox (its checks, the proof) is swept as
    # stuck after enough turns of it — the more, the busier the machine. The watchdog has its own tests
    # (they sweep with explicit times); elsewhere it never takes a run for stuck unless a test asks.
    values["improve"] = {"autonomy": "off", "stuck_timeout_s": 1e12, **dict(values.get("improve") or {})}
    # The retention daemon is started outside simcord's clock scope, so it reads the wall clock while
    # the world's starts at 2026-01-01: with the default 14 days it deleted records a test had seeded
    # in virtual time whenever it ran after the seed. Retention is tested with explicit clocks
    # (tests/test_recorder.py); here it keeps ten years unless a test asks.
    values["observe"] = {"retention_days": 3650, **dict(values.get("observe") or {})}
    return load_settings(**values)


async def make_bot(
    settings: Settings,
    extensions: Sequence[str] | None = None,
    prompts_dir: Path | None = None,
    clock: WorldClock | None = None,
) -> MendBot:
    if clock is None:
        services = await build_services(settings, watch_prompts=False, prompts_dir=prompts_dir)
    else:
        services = await build_services(settings, clock=clock, watch_prompts=False, prompts_dir=prompts_dir)
    return MendBot(services, extensions=extensions)


@asynccontextmanager
async def running_world(
    settings: Settings,
    *,
    extra_extensions: Sequence[str] = (),
    without: Sequence[str] = (),
    prompts_dir: Path | None = None,
    settle_timeout: float = 30.0,
    real_clock: bool = False,
    playground: bool = False,
) -> AsyncIterator[VirtualWorld]:
    """A booted bot in a fresh virtual guild; closes bot and services afterwards.

    Its virtual clock starts at simcord's fixed 2026-01-01 00:00 UTC (dates in tests stay
    deterministic) unless `real_clock`, as in the playground.

    `without` leaves extensions out (e.g. `cogs.dice` when `tests.fixtures.buggy_dice` replaces it).
    `playground` applies the playground's rules, as `mendbot play` does: one clock (the virtual one, for
    every service), long timers only on `wait`, runs in the background.

    `settle_timeout` is not only a ceiling on waiting for the bot: simcord also runs the bot's timers that
    fall due within it while it settles (at 60 s, a deploy's 60 s watch window ran out inside a step and a
    ship-gate test failed every time), so raising it changes what a test sees.
    """
    extensions = [name for name in discover_extensions() if name not in without]
    clock = WorldClock() if playground else None
    bot = await make_bot(settings, [*extensions, *extra_extensions], prompts_dir, clock=clock)
    current = bot
    try:
        async with virtual_world(
            bot, settle_timeout=settle_timeout, real_clock=real_clock, clock=clock, playground=playground
        ) as world:
            try:
                yield world
            finally:
                current = world.bot
    finally:
        await bot.services.aclose()
        await current.services.aclose()


@asynccontextmanager
async def bot_down(world: VirtualWorld) -> AsyncIterator[None]:
    """Discord goes on while the bot is not connected: what users do inside the block (edit, delete,
    react, unreact) changes the virtual Discord, and no gateway event of it reaches the bot — as for a
    bot that is down, since Discord does not replay to a new session what the old one missed.

    Follow it with `world.restart(...)` for "changed while the bot was down", or go on with the same
    bot for "changed during a gateway outage". simcord 3.2.1 delivers gateway events to the bot through
    one subscriber it keeps in `Env._gateway_feed` (checked here, so an upgrade that changes it fails
    loudly); it is taken off the backend's subscribers for the block and put back after, unless the
    bot was replaced meanwhile.
    """
    env = world.env
    feed: Any = getattr(env, "_gateway_feed", None)
    subscribers = env.backend.subscribers
    if feed is None or feed not in subscribers:
        raise RuntimeError("simcord's gateway feed changed: update tests/harness/discord.py bot_down")
    await world.quiesce()
    subscribers.remove(feed)
    try:
        yield
    finally:
        same_bot = getattr(env, "_gateway_feed", None) is feed
        if same_bot and feed not in subscribers:
            subscribers.append(feed)


def reply_text(result: simcord.InteractionResult) -> str:
    """The content of an interaction's first response (fails the test when there was none)."""
    assert result.response is not None, "the bot did not respond to the interaction"
    return result.response.content


def bot_messages(world: VirtualWorld, channel: Any) -> list[discord.Message]:
    """Messages the bot sent in a channel, oldest first."""
    me = world.bot.user
    return [m for m in channel.history() if me is not None and m.author.id == me.id]
