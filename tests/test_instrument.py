"""The instrumentor on a bot mendbot did not build: an AutoShardedBot with its own Context, `on_message`,
`process_commands`, `on_command_error` and `tree.error`, run in the virtual Discord. Its handlers answer
as they always did; mendbot records what failed; taking mendbot off puts every method back."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import pytest
from discord.app_commands import AppCommandError as AppError
from discord.ext import commands

from mendbot.runtime.attachment import attach, attached, detach
from mendbot.runtime.instrument import instrument, recording_of, uninstrument
from mendbot.runtime.services import build_services
from mendbot.tools.world import VirtualWorld, virtual_world
from tests.harness.discord import make_settings, reply_text
from tests.harness.sql import stored


class ShopContext(commands.Context["Shop"]):
    """The bot's own Context: its commands read `ctx.shop`."""

    @property
    def shop(self) -> str:
        return "corner shop"


class Shop(commands.AutoShardedBot):
    """A bot someone else wrote: its own Context, message handling and error replies."""

    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(command_prefix="?", intents=intents)
        self.seen: list[str] = []
        self.tree_error: Any = None

    async def get_context(self, origin: Any, /, *, cls: Any = ShopContext) -> Any:
        return await super().get_context(origin, cls=cls)

    async def on_message(self, message: discord.Message, /) -> None:
        if message.author.bot:
            return
        self.seen.append(f"on_message {message.content}")
        await self.process_commands(message)

    async def process_commands(self, message: discord.Message, /) -> None:
        ctx = await self.get_context(message)
        self.seen.append(f"context {type(ctx).__name__}")
        await self.invoke(ctx)

    async def on_command_error(self, context: commands.Context[Any], exception: Exception, /) -> None:
        await context.send(f"The shop is closed: {type(getattr(exception, 'original', exception)).__name__}")

    async def setup_hook(self) -> None:
        @self.command(name="price")
        async def price(ctx: ShopContext, item: str) -> None:
            await ctx.send(f"{item} costs {100 // len(item.strip('x'))} at the {ctx.shop}")

        @self.tree.command(name="refund", description="Refund an order")
        async def refund(interaction: discord.Interaction[Any], order: int) -> None:
            await interaction.response.send_message(f"refunded {1000 // order}")

        @self.tree.error
        async def tree_error(interaction: discord.Interaction[Any], error: AppError) -> None:
            await interaction.response.send_message("Refunds are down, sorry.")

        self.tree_error = tree_error


@pytest.fixture
async def shop_world(tmp_path: Path) -> AsyncIterator[tuple[VirtualWorld, Shop]]:
    settings = make_settings(tmp_path / "data")
    services = await build_services(settings, watch_prompts=False)
    shop = Shop()
    mend = attach(shop, services)
    try:
        async with virtual_world(mend) as world:
            yield world, shop
    finally:
        await services.aclose()


async def _failures(world: VirtualWorld) -> list[tuple[str, str]]:
    await world.quiesce()
    await world.bot.services.recorder.flush()
    query = "SELECT kind, error_type FROM actions WHERE ok = 0 ORDER BY id"
    rows = stored(world.bot.services.settings, query)
    return [(row["kind"], row["error_type"]) for row in rows]


def _said(world: VirtualWorld) -> list[str]:
    me = world.client.user
    return [m.content for m in world.general.history() if me is not None and m.author.id == me.id]


async def test_the_bots_own_error_reply_is_sent_and_the_failure_recorded(
    shop_world: tuple[VirtualWorld, Shop],
) -> None:
    """A prefix command failing in a bot with its own `on_command_error`: its reply, and only it, is sent
    (through its own on_message, process_commands and Context); mendbot records the failure."""
    world, shop = shop_world
    await world.users["alice"].send(world.general, "?price apple")
    await world.users["alice"].send(world.general, "?price xxx")
    assert _said(world) == ["apple costs 20 at the corner shop", "The shop is closed: ZeroDivisionError"]
    assert shop.seen[:2] == ["on_message ?price apple", "context ShopContext"]
    assert await _failures(world) == [("command:price", "ZeroDivisionError")]


async def test_the_trees_own_error_handler_answers_and_the_failure_is_recorded(
    shop_world: tuple[VirtualWorld, Shop],
) -> None:
    """An app command failing in a bot whose `@tree.error` was set after mendbot attached: the bot's
    handler answers as before, and the failure is recorded as `app:refund`."""
    world, _ = shop_world
    result = await world.users["alice"].slash(world.general, "refund", order=0)
    assert reply_text(result) == "Refunds are down, sorry."
    assert await _failures(world) == [("app:refund", "ZeroDivisionError")]


async def test_detaching_puts_every_method_back(shop_world: tuple[VirtualWorld, Shop]) -> None:
    """After `detach` nothing of mendbot is on the bot: its methods are its class's again, its tree's
    `on_error` is its own, mendbot's listeners are gone, and its commands still answer as before."""
    world, shop = shop_world
    await world.users["alice"].slash(world.general, "refund", order=2)  # mendbot's on_error back on top
    assert await detach(shop) is not None
    wrapped = ("invoke", "_schedule_event", "_run_event", "add_cog", "remove_cog", "load_extension")
    for name in (*wrapped, "reload_extension"):
        assert name not in shop.__dict__, name
    assert "_call" not in shop.tree.__dict__
    assert shop.tree.on_error is shop.tree_error
    assert all(getattr(f, "__self__", None) is not world.bot for fs in shop.extra_events.values() for f in fs)
    await world.users["alice"].send(world.general, "?price xxx")
    assert _said(world)[-1] == "The shop is closed: ZeroDivisionError"
    assert await _failures(world) == []  # nothing recorded once detached


class Listening(commands.Cog):
    """A cog reading every message, as mendbot's own do to find the ones for mendbot."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        self.heard.append(message.content)
        if message.content == "boom":
            raise RuntimeError("the listener broke")


async def test_a_cog_recorded_only_when_it_fails_hears_every_message(
    shop_world: tuple[VirtualWorld, Shop],
) -> None:
    """A cog marked `failures_only` (mendbot's own, on a bot it did not build) hears every message a
    person writes, not those a bot writes (each of mendbot's listeners leaves those alone); its successes
    are not the bot's actions and are not recorded, its failure is, by its name."""
    world, shop = shop_world
    cog = Listening()
    attached(shop).failures_only.add(cog)
    await shop.add_cog(cog)
    await world.users["alice"].send(world.general, "hello")
    await world.users["alice"].send(world.general, "boom")
    await world.users["alice"].send(world.general, "?price apple")
    assert _said(world) == ["apple costs 20 at the corner shop"]
    assert cog.heard == ["hello", "boom", "?price apple"]  # not the bot's own reply: no task for it
    await world.quiesce()
    await world.bot.services.recorder.flush()
    query = "SELECT source, ok, error_type FROM actions WHERE kind = 'listener:on_message' ORDER BY id"
    rows = stored(world.bot.services.settings, query)
    assert [(row["source"], row["ok"], row["error_type"]) for row in rows] == [
        ("Listening", 0, "RuntimeError")
    ]


class Counting(commands.Cog):
    """A cog counting the commands run, and listening to an event of the bot's own with a plain object."""

    class Tally:  # no text of its own: its default one names a memory address
        pass

    class Grumpy:
        @property
        def id(self) -> int:
            raise RuntimeError("not telling")

    def __init__(self) -> None:
        self.grumbled = 0

    @commands.Cog.listener()
    async def on_command(self, ctx: commands.Context[Any]) -> None:
        ctx.bot.dispatch("tally", Counting.Tally())
        ctx.bot.dispatch("grumble", Counting.Grumpy())

    @commands.Cog.listener()
    async def on_tally(self, tally: Counting.Tally) -> None:
        pass

    @commands.Cog.listener()
    async def on_grumble(self, grumpy: Counting.Grumpy) -> None:
        self.grumbled += 1


async def test_a_commands_listener_is_recorded_with_the_call_it_ran_for(
    shop_world: tuple[VirtualWorld, Shop],
) -> None:
    """An `on_command` listener's run is recorded with the member's message that called the command, who
    and where — the same call twice, the same invocation twice; a listener given an object with no text of
    its own is recorded with its class, not a text naming a memory address (a call never seen before on
    every run), and so is one whose id raises, its listener run all the same."""
    world, shop = shop_world
    counting = Counting()
    await shop.add_cog(counting)
    for _ in range(2):
        await world.users["alice"].send(world.general, "?price apple")
    await world.quiesce()
    await world.bot.services.recorder.flush()
    query = (
        "SELECT kind, invocation, user_id, channel_id FROM actions"
        " WHERE kind IN ('listener:on_command', 'listener:on_tally', 'listener:on_grumble') ORDER BY id"
    )
    rows = stored(world.bot.services.settings, query)
    commands_ran = [row for row in rows if row["kind"] == "listener:on_command"]
    tallies = [row for row in rows if row["kind"] == "listener:on_tally"]
    assert len(commands_ran) == 2 and len(tallies) == 2
    asked = json.loads(commands_ran[0]["invocation"])
    assert asked["options"] == {"content": "?price apple", "author": world.users["alice"].id}
    assert asked["caller"]["user"] == world.users["alice"].id
    assert asked["caller"]["channel"] == world.general.id
    assert (commands_ran[0]["user_id"], commands_ran[0]["channel_id"]) == (
        world.users["alice"].id,
        world.general.id,
    )
    assert commands_ran[0]["invocation"] == commands_ran[1]["invocation"]
    assert json.loads(tallies[0]["invocation"])["options"] == {"arg": "Counting.Tally"}
    assert tallies[0]["invocation"] == tallies[1]["invocation"]
    assert counting.grumbled == 2
    grumbles = [json.loads(row["invocation"]) for row in rows if row["kind"] == "listener:on_grumble"]
    assert [grumble["options"] for grumble in grumbles] == [{"arg": "Counting.Grumpy"}] * 2


class Proofreading(commands.Cog):
    """A cog of the bot's own reading every message, its replies too, and tripping on one of them."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        self.heard.append(message.content)
        if message.author.bot and message.content.startswith("pear"):
            raise LookupError("no pears in the catalogue")
        if message.content == "price?":
            raise commands.UserInputError("say ?price and the item")


async def test_a_listener_on_a_bots_own_message_is_recorded_when_it_fails(
    shop_world: tuple[VirtualWorld, Shop],
) -> None:
    """The bot's listeners run on its own replies as ever; a run on one of them is recorded when it fails
    (with what it failed on), not when it went well: nothing a replay could send again, and half of
    every listener's runs. Every run's watch ends, recorded or not, a user's mistake too."""
    world, shop = shop_world
    cog = Proofreading()
    await shop.add_cog(cog)
    sampler = attached(shop).sampler
    sampler.start()  # as on a connected bot: each handler's run is watched while it runs
    try:
        for said in ("hello", "price?", "?price apple", "?price pear"):
            await world.users["alice"].send(world.general, said)
        await world.quiesce()
        assert sampler.watching == 0  # every run's capture ended, recorded or not
    finally:
        sampler.stop()
    assert _said(world) == [
        "say ?price and the item",
        "apple costs 20 at the corner shop",
        "pear costs 25 at the corner shop",
    ]
    assert sorted(cog.heard) == sorted(["hello", "price?", "?price apple", "?price pear", *_said(world)])
    await world.bot.services.recorder.flush()
    query = "SELECT ok, error_type, invocation, extra FROM actions WHERE kind = 'listener:on_message'"
    rows = stored(world.bot.services.settings, query)
    heard = sorted(
        (
            row["ok"],
            row["error_type"],
            json.loads(row["invocation"])["options"]["content"]
            if row["invocation"]
            else json.loads(row["extra"])["user_error"],
        )
        for row in rows
    )
    assert heard == [
        (0, "LookupError", "pear costs 25 at the corner shop"),
        (1, None, "?price apple"),
        (1, None, "?price pear"),
        (1, None, "hello"),
        (1, None, "say ?price and the item"),  # a user's mistake: answered, recorded as such
    ]


class Particular(commands.Cog):
    """A cog of mendbot's kind: its `on_message` asks `concerns` first."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    def concerns(self, message: discord.Message) -> bool:
        return message.content.startswith("mendbot")

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if self.concerns(message):
            self.heard.append(message.content)


async def test_a_mendbot_cog_is_handed_only_the_messages_that_can_concern_it(
    shop_world: tuple[VirtualWorld, Shop],
) -> None:
    """mendbot's cogs name what can concern them (`concerns`, asked first by their `on_message`): no
    task is made for the rest, which are most of a busy bot's messages. The bot's own listeners are
    scheduled as ever."""
    world, shop = shop_world
    cog, everything = Particular(), Listening()
    mend = attached(shop)
    mend.message_filters[cog] = cog.concerns
    await shop.add_cog(cog)
    await shop.add_cog(everything)
    scheduled: list[str] = []
    original = shop._schedule_event

    def counting(coro: Any, event_name: str, *args: Any, **kwargs: Any) -> Any:
        task = original(coro, event_name, *args, **kwargs)
        if task is not None and event_name == "on_message":
            scheduled.append(type(getattr(coro, "__self__", None)).__name__)
        return task

    shop._schedule_event = counting  # type: ignore[method-assign]
    await world.users["alice"].send(world.general, "hello")
    await world.users["alice"].send(world.general, "mendbot, fix this")
    await world.quiesce()
    assert cog.heard == ["mendbot, fix this"]
    assert everything.heard == ["hello", "mendbot, fix this"]
    assert scheduled.count("Particular") == 1
    assert scheduled.count("Listening") >= 2  # the bot's own replies too: it hears everything
    assert "Attachment" not in scheduled  # the recording's own bookkeeping makes no task


class Slotted:
    """A listener's owner that cannot be weakly referenced (`__slots__` without `__weakref__`)."""

    __slots__ = ("heard",)

    def __init__(self) -> None:
        self.heard: list[str] = []

    async def on_message(self, message: discord.Message) -> None:
        self.heard.append(message.content)


class Unsure(Particular):
    """A cog whose test of a message fails."""

    def concerns(self, message: discord.Message) -> bool:
        raise RuntimeError("cannot tell")

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        self.heard.append(message.content)


async def test_a_message_is_handed_over_when_whether_it_concerns_cannot_be_told(
    shop_world: tuple[VirtualWorld, Shop],
) -> None:
    """The filter never costs a listener its message: an owner that cannot be weakly referenced, and a
    cog whose test raises, are handed it as discord.py would."""
    world, shop = shop_world
    slotted, unsure = Slotted(), Unsure()
    shop.add_listener(slotted.on_message, "on_message")
    attached(shop).message_filters[unsure] = unsure.concerns
    await shop.add_cog(unsure)
    await world.users["alice"].send(world.general, "hello")
    await world.quiesce()
    assert "hello" in slotted.heard
    assert "hello" in unsure.heard


async def test_the_recordings_bookkeeping_is_done_when_the_event_is_dispatched(
    shop_world: tuple[VirtualWorld, Shop],
) -> None:
    """Who was seen, and a command that completed, are taken at dispatch, not in a task of their own:
    the completed command's record is kept before `dispatch` returns, and taken in with the others of
    that moment (no task has run in between)."""
    world, shop = shop_world
    contexts: list[commands.Context[Any]] = []
    made = shop.get_context

    async def keeping(origin: Any, /, **kwargs: Any) -> Any:
        contexts.append(await made(origin, **kwargs))
        return contexts[-1]

    shop.get_context = keeping  # type: ignore[method-assign]
    records: list[str] = []
    world.bot.services.recorder.subscribe(lambda record: records.append(record.kind))
    await world.users["alice"].send(world.general, "?price apple")
    await world.quiesce()
    assert records.count("command:price") == 1
    shop.dispatch("command_completion", contexts[-1])  # as discord.py does once a command returned
    world.bot.services.recorder.take_in()  # what its timer would do a moment later
    assert records.count("command:price") == 2


async def test_a_listener_is_in_flight_while_it_runs_and_not_once_it_has_ended(
    shop_world: tuple[VirtualWorld, Shop],
) -> None:
    """A listener's task is in flight (what a restart's drain waits for) while the listener runs, and is
    not once it has ended — returned or raised."""
    world, shop = shop_world
    recording = recording_of(shop)
    assert recording is not None
    running: list[bool] = []

    async def counting(message: discord.Message) -> None:
        if message.author.bot:
            return
        running.append(asyncio.current_task() in recording._inflight)
        if message.content == "boom":
            raise LookupError("boom")

    shop.add_listener(counting, "on_message")
    await world.users["alice"].send(world.general, "hello")
    await world.users["alice"].send(world.general, "boom")
    await world.quiesce()
    assert running == [True, True]
    assert not recording._inflight, recording._inflight
    assert ("listener:on_message", "LookupError") in await _failures(world)


def test_instrumenting_keeps_signatures_and_is_idempotent(tmp_path: Path) -> None:
    """The wrapped methods keep their signatures and `__wrapped__`; instrumenting twice changes nothing,
    and uninstrumenting returns the recording and leaves the class's methods."""

    class Recording:  # instrument() needs only what its wrappers call: none is called here
        sampler = type("Sampler", (), {"skip": staticmethod(lambda *functions: None)})()

        def observe_cog(self, cog: Any) -> None: ...

        run_command = run_event = scheduling_event = adding_cog = removing_cog = staticmethod(_noop)
        loading_extension = reloading_extension = staticmethod(_noop)
        on_command_completion = on_command_error = on_app_command_completion = staticmethod(_noop)
        on_message = on_interaction = on_raw_reaction_add = staticmethod(_noop)

    shop = Shop()
    recording: Any = Recording()
    instrument(shop, recording)
    wrapped = shop.invoke
    assert inspect.signature(shop.invoke) == inspect.signature(Shop.invoke.__get__(shop))
    assert shop.invoke.__wrapped__ == Shop.invoke.__get__(shop)  # type: ignore[attr-defined]
    instrument(shop, recording)
    assert shop.invoke is wrapped and recording_of(shop) is recording
    assert uninstrument(shop) is recording and uninstrument(shop) is None
    assert "invoke" not in shop.__dict__ and recording_of(shop) is None


async def _noop(*_: Any) -> None:
    return None


def test_a_cog_of_the_bots_own_is_never_taken_for_mendbots() -> None:
    """A `cogs/help.py` the bot wrote is its own (a suspect like any other); mendbot's, written on its
    runtime, is mendbot's."""
    from mendbot.observe.handlers import is_mendbots_own

    theirs = "from discord.ext import commands\n\nclass Help(commands.Cog): ...\n"
    mine = (Path(__file__).resolve().parent.parent / "cogs" / "help.py").read_text()
    assert not is_mendbots_own("cogs/help.py", theirs)
    assert is_mendbots_own("cogs/help.py", mine) and is_mendbots_own("cogs/help.py")
    assert not is_mendbots_own("cogs/fun.py", mine)
