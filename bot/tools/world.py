"""The playground's virtual Discord: one guild with `#dev` and `#general` and the users from config, the
real bot connected to it, and the playground's rules for time and runs (`virtual_world`).

`mendbot.tools.playground` drives it line by line; the test harness builds the same world.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import simcord
from discord.ext import commands

from mendbot.runtime.attachment import Attachment, attached

if TYPE_CHECKING:
    from mendbot.runtime.app import MendBot

__all__ = ["VIRTUAL_ONLY_S", "WORLD_FILE", "VirtualWorld", "WorldClock", "virtual_world"]

WORLD_FILE = "playground-world.json"  # in the data directory: when the world was first created

GUILD_NAME = "mendbot-playground"
CHANNELS = ("dev", "general")


@dataclass
class VirtualWorld:
    env: simcord.Env
    # MendBot, or mendbot's attachment on a bot someone else wrote, which answers for it alike (its
    # services, and the bot's user, channels and cogs).
    bot: MendBot
    guild: simcord.GuildHandle
    channels: dict[str, simcord.ChannelHandle]
    users: dict[str, simcord.MemberActor]
    clock: WorldClock | None = None  # the services' clock, when the world keeps it (the playground)

    def working(self) -> contextlib.AbstractContextManager[None]:
        """While a line of the playground runs: the clock runs with real time (`WorldClock`)."""
        return self.clock.line() if self.clock is not None else contextlib.nullcontext()

    @property
    def dev(self) -> simcord.ChannelHandle:
        return self.channels["dev"]

    @property
    def general(self) -> simcord.ChannelHandle:
        return self.channels["general"]

    async def quiesce(self) -> None:
        """Wait until the bot and its services have finished everything they started."""
        await self.env.settle()
        await self.bot.services.quiesce()
        await self.env.settle()

    async def restart(self, bot: MendBot) -> None:
        """Replace the running bot with a new one; the virtual world (and database) stays."""
        old = self.bot
        bot.services.recorder.without_windows()
        up = _gate_resumed_deploys(self.env, bot)
        await self.env.restart_bot(bot)
        _without_simcord_listeners(bot)
        up.set()
        self.bot = bot
        await old.services.aclose()
        await bot.sync_app_commands(self.guild.id)
        await bot.report_boot_problems()
        await self.env.settle()

    @property
    def client(self) -> commands.Bot | commands.AutoShardedBot:
        """The discord.py bot in the world (the bot itself, when mendbot is attached to another)."""
        return attached(self.bot).bot

    def channel_of(self, message_id: int) -> simcord.ChannelHandle | None:
        for channel in self.all_channels():
            if any(message.id == message_id for message in channel.history()):
                return channel
        return None

    def all_channels(self) -> list[simcord.ChannelHandle]:
        found: list[simcord.ChannelHandle] = []
        for channel in self.channels.values():
            found.append(channel)
            found.extend(channel.threads)
        return found


class WorldClock:
    """The playground's one clock: the virtual Discord's, whichever task asks — and it runs with real time
    while the bot works.

    discord.py's `utcnow` (the services' default clock) reads the virtual clock only inside work the
    virtual Discord counts as the bot's; a background writer or a run in the background would read the
    wall clock, and an incident stamped ahead of "now" showed "Since: in 0s". Built before the world
    (the services take it), bound to it when it exists.

    The virtual clock stands still while the bot waits for the next line, and moves with `wait`; while a
    line is being run (`line()`) or a run works in the background (`working`), it moves with real time
    as it is read, so what took seconds reads as seconds — a run's status, its stages on `/run N`, its
    timeline's "ago" on the dashboard — instead of 0 s for forty seconds of work. Timers it passes
    meanwhile fire at the virtual Discord's next settle.
    """

    def __init__(self) -> None:
        self._env: simcord.Env | None = None
        self.working: Callable[[], bool] = lambda: False  # a run at work in the background
        self._lines = 0  # lines being run now
        self._since: float | None = None  # real time (perf_counter) the clock has moved to while working

    def bind(self, env: simcord.Env) -> None:
        self._env = env

    def __call__(self) -> datetime:
        if self._env is None:
            return datetime.now(UTC)
        self._catch_up(self._env)
        return self._env.now()

    def _catch_up(self, env: simcord.Env) -> None:
        """Move the virtual clock on by the real time passed since it was last read while working."""
        now = time.perf_counter()  # real time: simcord makes time.monotonic the virtual clock in bot work
        if not (self._lines or self.working()):
            self._since = None  # idle: the time until the next line is nobody's work
            return
        if self._since is not None and now > self._since:
            env.backend.advance_clock(now - self._since)
        self._since = now

    @contextmanager
    def line(self) -> Iterator[None]:
        """A line of the playground is being run: the time it takes is the bot's work."""
        if self._env is not None:
            self._catch_up(self._env)  # what a run did in the background until now
        if self._since is None:
            self._since = time.perf_counter()
        self._lines += 1
        try:
            yield
        finally:
            if self._env is not None:
                self._catch_up(self._env)
            self._lines -= 1


# Timers of the bot due this far ahead or more fire only when `wait` moves the clock past them.
VIRTUAL_ONLY_S = 2.0


@asynccontextmanager
async def virtual_world(
    bot: MendBot | Attachment,
    *,
    settle_timeout: float = 30.0,
    real_clock: bool = True,
    clock: WorldClock | None = None,
    playground: bool = False,
    state_dir: Path | None = None,
) -> AsyncIterator[VirtualWorld]:
    """Run `bot` in a fresh virtual Discord wired to its settings (dev channel, allow-list).

    The clock starts at the real time; `real_clock=False` keeps simcord's fixed start (2026-01-01
    00:00 UTC), which tests use to pin dates and times of day. `clock`, the services' clock, is bound
    to the virtual one.

    `playground` applies the playground's rules (README, "The local playground"): the clock moves only
    with `wait` — a reminder, a watch window, dev mode's end happen when `wait` passes them, never by
    themselves after that much real time — and runs work in the background while every line is answered.

    With `state_dir` the world's ids are the same in every session on that directory (see
    `_same_ids_as_before`), so what the bot stored about it (reminders, runs, proposals) still applies.
    """
    mend = attached(bot)
    client = mend.bot  # the discord.py bot: MendBot, or the one mendbot is attached to
    settings = mend.services.settings
    # Each step waits out the bot's every timer; the recording's, tuning for a live bot's load, would
    # cost each message ~50 ms of real waiting.
    mend.services.recorder.without_windows()
    # Env.start/shutdown rather than `simcord.run`: its clock context cannot span the two
    # halves of an async fixture, which pytest runs in different contexts.
    # Without a configured count, discord.py would ask Discord's /gateway/bot for one at connect; the
    # virtual Discord has no such call (simcord logs in without connecting) and wants the count up
    # front, so it plays what Discord recommends for a bot in a guild or two: one shard.
    sharded = isinstance(client, commands.AutoShardedBot)
    shard_count = 1 if sharded and client.shard_count is None else None
    env = simcord.Env(client, check_errors=False, settle_timeout=settle_timeout, shard_count=shard_count)
    if clock is not None:
        clock.bind(env)
        if playground:  # a run's work in the background takes the time it takes on the clock too

            def working() -> bool:
                mending = mend.services.mending
                return mending is not None and mending.improve.working

            clock.working = working
    if playground:
        _fire_long_timers_only_on_wait(env)
        if settings.bot is not None:
            _own_background_waits_parked(env, settings.repo_dir)
        mend.services.improve.background_runs = True
    # The world exists before the bot connects, as on Discord: when it is ready, the dev channel is
    # there and configured (a restarted bot reports a continued deploy or watch there at once).
    with _same_ids_as_before(env, state_dir):
        guild = env.create_guild(name=GUILD_NAME)
        channels = {name: guild.create_text_channel(name) for name in CHANNELS}
        users = {
            user.name: guild.add_member(env.create_user(user.name)) for user in settings.playground.users
        }
    _name_the_bot(env, mend, client)
    if real_clock:
        _start_clock_now(env)
    up = _gate_resumed_deploys(env, mend)
    settings.discord.dev_guild_id = guild.id
    settings.discord.dev_channel_ids = [channels["dev"].id]
    settings.access.allowed_user_ids = [
        users[user.name].id for user in settings.playground.users if user.allowed
    ]
    await env.start()
    _without_simcord_listeners(client)
    up.set()
    world: VirtualWorld | None = None
    try:
        await mend.sync_app_commands(guild.id)
        await mend.report_boot_problems()
        world = VirtualWorld(env, cast("MendBot", bot), guild, channels, users, clock if playground else None)
        await env.settle()
        yield world
    finally:
        await (attached(world.bot).bot if world is not None else client).close()
        await env.shutdown()


def _without_simcord_listeners(bot: Any) -> None:
    """Take off the `on_command_error` listener simcord adds to collect errors for its own checks (off
    here: `check_errors=False`). A listener of that event is the bot answering its failed commands
    itself, which the bot in the world does not: mendbot answers them (bot/runtime/recording.py)."""
    for listener in list(bot.extra_events.get("on_command_error", [])):
        if str(getattr(listener, "__module__", "")).startswith("simcord"):
            bot.remove_listener(listener, "on_command_error")


def _gate_resumed_deploys(env: simcord.Env, bot: MendBot | Attachment) -> asyncio.Event:
    """Interrupted deploys go on once the bot is connected (set the event then), as bot work the next
    settle waits for — not inside the connect, whose settle simcord bounds at a fixed 5 s."""
    up = asyncio.Event()

    async def connected() -> None:
        await env.external_wait(up.wait(), reason="the bot is connecting")

    bot.services.deploy.resume_gate = connected
    return up


@contextmanager
def _same_ids_as_before(env: simcord.Env, state_dir: Path | None) -> Iterator[None]:
    """Create the world's guild, channels and users with the ids they had in the first session here.

    simcord gives an object the snowflake of the clock's instant and its order at that instant, and
    creates nothing else while the world is set up: with the clock at the instant the first session
    created the world (kept in `playground-world.json`) and the same order of creation, the ids come
    out the same. A reminder set yesterday is then delivered to the same #general, for the same alice.
    """
    clock = env.backend.clock
    if state_dir is None or not hasattr(clock, "_epoch"):
        yield
        return
    path = state_dir / WORLD_FILE
    try:
        origin = datetime.fromisoformat(json.loads(path.read_text())["created"])
    except (OSError, ValueError, KeyError, TypeError):
        origin = datetime.now(UTC).replace(microsecond=0)
        path.write_text(json.dumps({"created": origin.isoformat()}) + "\n")
    before = clock._epoch
    clock._epoch = origin
    try:
        yield
    finally:
        clock._epoch = before


def _name_the_bot(env: simcord.Env, mend: Attachment, client: Any) -> None:
    """The virtual Discord's bot user goes by the bot's name — mendbot for mendbot's own, a bot's class
    for one mendbot is attached to (its repository's name for a plain `commands.Bot`) — not simcord's
    "TestBot", which its messages, mentions and records (the dashboard's "who") would carry."""
    if mend.services.settings.bot is None:
        name = "mendbot"
    elif type(client) in (commands.Bot, commands.AutoShardedBot):
        name = mend.services.settings.repo_dir.resolve().name or "bot"
    else:
        name = type(client).__name__
    user = env.backend.bot_user
    user.name = user.global_name = name


def _start_clock_now(env: simcord.Env) -> None:
    """Start the virtual clock at the real time instead of simcord's fixed date in the past.

    Timestamps the bot stores (reminders, incidents, runs) then make sense next to real ones, and
    "in 10m" means ten minutes from now. simcord 3.2.1 has no option for it; its clock keeps the
    start instant in `_epoch` (checked by tests/test_playground.py, so an upgrade that renames it
    fails loudly there).
    """
    clock = env.backend.clock
    if not hasattr(clock, "_epoch"):
        raise RuntimeError("simcord's clock changed: update _start_clock_now")
    clock._epoch = datetime.now(UTC)


def _fire_long_timers_only_on_wait(env: simcord.Env) -> None:
    """Timers the bot sets `VIRTUAL_ONLY_S` or more ahead lose their real-time fallback.

    simcord arms each timer of the bot twice: on the virtual clock (fired by `advance_time`) and on the
    wall clock, which, when it fires first, also moves the virtual clock to the timer's instant — so
    `/remind 1m` fired after a minute of real time and a deploy's watch ended by itself. Without the
    wall-clock half, only `wait` reaches them; the bot's own short pauses still run in real time.
    simcord 3.2.1 has no option for it: `Env._schedule_timer` is wrapped before the loop is hooked (the
    rule is pinned by tests/test_playground_session.py, so an upgrade that changes it fails there).
    """
    original = getattr(env, "_schedule_timer", None)
    if original is None:
        raise RuntimeError("simcord's timers changed: update _fire_long_timers_only_on_wait")

    def schedule(record: Any, callback: Any, args: Any, context: Any) -> None:
        original(record, callback, args, context)
        real = record.real_handle
        if real is not None and record.when - env._virtual_time >= VIRTUAL_ONLY_S:
            real.cancel()
            record.real_handle = None

    env._schedule_timer = schedule  # type: ignore[method-assign,assignment]


# A task of the bot's own waiting this long on one future that nothing of Discord's will resolve (an
# asyncio server's `serve_forever`, a queue consumer between items) is waiting on the world outside.
OUTSIDE_WAIT_S = 1.0
# The bots whose own background tasks may park that way: each bot's repository (a path prefix) and when
# each of its tasks began waiting on its current future. Weak: a bot closed and dropped leaves nothing.
_OWN_CODE: weakref.WeakKeyDictionary[Any, tuple[str, weakref.WeakKeyDictionary[Any, tuple[int, float]]]]
_OWN_CODE = weakref.WeakKeyDictionary()


def _own_background_waits_parked(env: simcord.Env, root: Path) -> None:
    """Let the virtual Discord settle beside the bot's own long-lived background tasks.

    simcord settles when every task of the bot's is done or parked on a wait it recognises (a
    `tasks.loop` interval, a `wait_for`, a view). A real bot often starts a task of its own that waits
    on something else for good — a local socket server's `serve_forever`, a consumer's `queue.get()` —
    and no line of the playground was ever answered ("bot did not settle"). A task whose coroutine is
    the bot's own code (under `root`: never a handler discord.py runs, never mendbot's) and that has
    waited on the same future for `OUTSIDE_WAIT_S` of real time counts as parked. simcord 3.2.1 has no
    option for it: the settle's `_is_parked` is wrapped, once per process (pinned by
    tests/test_playground_session.py, so an upgrade that changes it fails there)."""
    import simcord.env as simcord_env

    _OWN_CODE[env.bot] = (str(root.resolve()) + os.sep, weakref.WeakKeyDictionary())
    original = getattr(simcord_env, "_is_parked", None)
    if original is None:
        raise RuntimeError("simcord's settling changed: update _own_background_waits_parked")
    if getattr(original, "mendbot_own_waits", False):
        return

    def parked(state: Any, task: asyncio.Task[Any], deadline: float) -> bool:
        if original(state, task, deadline):
            return True
        own = _OWN_CODE.get(state.bot)
        waiter = getattr(task, "_fut_waiter", None)
        code = getattr(task.get_coro(), "cr_code", None)
        if own is None or waiter is None or isinstance(waiter, asyncio.Task) or code is None:
            return False
        prefix, waiting = own
        if not os.path.abspath(code.co_filename).startswith(prefix):
            return False
        now = time.perf_counter()  # real time: simcord's monotonic is virtual in the bot's work
        since = waiting.get(task)
        if since is None or since[0] != id(waiter):
            waiting[task] = (id(waiter), now)
            return False
        return now - since[1] >= OUTSIDE_WAIT_S

    parked.mendbot_own_waits = True  # type: ignore[attr-defined]
    simcord_env._is_parked = parked  # type: ignore[attr-defined,assignment]
