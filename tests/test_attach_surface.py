"""mendbot's own cogs on a bot it attaches to come up once that bot has connected, and what arrives for
them before is kept for them (bot/runtime/held_events.py); the bot's own calls are answered at once.

A bot written here, in this process, with real discord.py against the loopback Discord: a first life
syncs mendbot's commands to the dev guild (Discord keeps them across restarts), and in the second, the
test holds mendbot's cogs back (`add_surface` given a gate) while members call `/runs`, mention mendbot
in #dev and press a proposal's button — all of it answered once the cogs are up, or answered with why
not when they cannot come up."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import discord
import msgspec
import pytest
from discord.ext import commands

from mendbot.kernel.settings import Settings
from mendbot.runtime.attachment import SURFACE, Attachment
from mendbot.runtime.held_events import SURFACE_EVENTS, HeldEvents
from mendbot.runtime.services import NotMendingYet, build_services
from mendbot.runtime.standalone import attach_to
from mendbot.trust.loopback_discord import DiscordDouble
from mendbot.trust.loopback_discord_model import message_text
from tests.harness.discord import make_settings
from tests.harness.repo import git

ALICE = "alice"


class Host(commands.Bot):
    """A bot of its own: `!echo <words>` and `/add a b`."""

    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(command_prefix="!", intents=intents, guild_ready_timeout=0.05)

    async def setup_hook(self) -> None:
        @self.command()
        async def echo(ctx: commands.Context[Any], *, words: str) -> None:
            await ctx.send(words)

        @self.tree.command(name="add", description="Add two numbers")
        async def add(interaction: discord.Interaction[Any], a: int, b: int) -> None:
            await interaction.response.send_message(str(a + b))

        await self.tree.sync()


@pytest.fixture
async def discord_api() -> AsyncIterator[DiscordDouble]:
    async with DiscordDouble() as double:
        with double.pointed_at():
            yield double


def _settings(tmp_path: Path, double: DiscordDouble) -> Settings:
    repo = tmp_path / "host"
    repo.mkdir(exist_ok=True)
    if not (repo / ".git").exists():
        (repo / "bot.py").write_text("# the host bot\n")
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "host")
    return make_settings(
        repo / ".mendbot",
        repo_dir=repo,
        discord_token=double.token,
        discord={"dev_guild_id": double.guild.id, "dev_channel_ids": [double.guild.channel("dev").id]},
        access={"allowed_user_ids": [int(double.member(ALICE)["id"])]},
        bot={"entry": ["python", "bot.py"], "token_env": "HOST_TOKEN"},
    )


async def _add_cogs(bot: commands.Bot) -> None:
    """What the `mendbot` extension adds: its cogs."""
    for name in SURFACE:
        await importlib.import_module(f"mendbot.cogs.{name}").setup(bot)


async def _start(
    double: DiscordDouble,
    settings: Settings,
    add: Callable[[], Awaitable[None]] | None = None,
    bot: Host | None = None,
) -> tuple[Host, Attachment, asyncio.Task[None]]:
    """A Host (or `bot`) attached before it connects (as at its login), its cogs added by `add` (by
    default as the extension does), started on the double and ready."""
    bot = bot or Host()
    mend = await attach_to(bot, settings, restart_at_exit=False)
    await mend.add_surface(add or (lambda: _add_cogs(bot)))
    task = asyncio.create_task(bot.start(double.token))
    await asyncio.wait_for(bot.wait_until_ready(), timeout=30)
    return bot, mend, task


class NarrowHost(Host):
    """A Host whose `add_cog` override takes no `guild`: the signature many bots copy."""

    def __init__(self) -> None:
        super().__init__()
        self.added: list[str] = []

    async def add_cog(self, cog: commands.Cog, /, *, override: bool = False) -> None:  # type: ignore[override]
        self.added.append(cog.qualified_name)
        await super().add_cog(cog, override=override)


async def _stop(bot: Host, task: asyncio.Task[None]) -> None:
    await bot.close()
    await asyncio.wait_for(task, timeout=30)


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(3000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 30 s")


async def _first_life(double: DiscordDouble, settings: Settings) -> dict[str, Any]:
    """mendbot's commands synced to the dev guild, as a bot's earlier run left them, and a proposal's
    message with its Approve button in #dev (the message)."""
    bot, _, task = await _start(double, settings)
    try:
        await _until(lambda: "runs" in {c["name"] for c in double.synced.get(str(double.guild.id), [])})
        view = discord.ui.View(timeout=None)
        view.add_item(discord.ui.Button(label="Approve", custom_id="proposal:999:approve"))
        dev = bot.get_channel(double.guild.channel("dev").id)
        assert isinstance(dev, discord.TextChannel)
        sent = await dev.send("Proposal #999", view=view)
        posted = double.channel_messages(double.guild.channel("dev"))
        return next(message for message in posted if message["id"] == str(sent.id))
    finally:
        await _stop(bot, task)


async def test_mendbots_commands_stay_in_the_dev_guild_of_a_bot_that_overrides_add_cog(
    tmp_path: Path, discord_api: DiscordDouble
) -> None:
    """mendbot's cogs go through a bot's own `add_cog(self, cog, /, *, override=False)`, and their slash
    commands are in the dev guild only: the bot's own global sync carries none of them."""
    bot = NarrowHost()
    _, _, task = await _start(discord_api, _settings(tmp_path, discord_api), bot=bot)
    try:
        guild = discord.Object(discord_api.guild.id)
        await _until(lambda: "fix" in {c["name"] for c in discord_api.synced.get(str(guild.id), [])})
        assert {"improve", "ship", "incidents", "dashboard"} <= set(bot.added)
        assert bot.tree.get_command("fix") is None and bot.tree.get_command("fix", guild=guild) is not None
        await bot.tree.sync()  # the bot's own global sync, as its `!sync` would
        synced_globally = {command["name"] for command in discord_api.synced["global"]}
        assert "add" in synced_globally and not synced_globally & {"fix", "runs", "dashboard", "incidents"}
    finally:
        await _stop(bot, task)


def test_every_event_mendbots_cogs_listen_for_is_held_for_them() -> None:
    """An event a cog of mendbot's listens for, arriving before the cogs are up, is kept for it: none is
    missing from what is held."""
    heard = set()
    for name in SURFACE:
        module = importlib.import_module(f"mendbot.cogs.{name}")
        for _, cog in inspect.getmembers(module, inspect.isclass):
            if issubclass(cog, commands.Cog) and cog.__module__ == module.__name__:
                heard |= {event.removeprefix("on_") for event, _ in cog.__cog_listeners__}
    assert heard and heard <= SURFACE_EVENTS, heard - SURFACE_EVENTS


async def test_what_is_held_is_bounded_and_the_holds_come_off_as_they_went_on() -> None:
    """Past its bound the oldest held event goes (counted), only events mendbot's cogs listen for are
    kept, and releasing puts the bot's connection, tree and view store back as they were."""
    bot = Host()
    state: Any = bot._connection
    dispatch = state.dispatch
    held = HeldEvents(bot, limit=3)
    held.install()
    for n in range(5):
        state.dispatch("raw_message_delete", n)
    state.dispatch("typing", "not for mendbot")
    assert [args for _, args, _ in held.events] == [(2,), (3,), (4,)] and held.dropped == 2
    held.release([])
    assert state.dispatch == dispatch and "dispatch_view" not in vars(state._view_store)
    assert "_from_interaction" not in vars(bot.tree) and not held.events
    await bot.close()


async def test_an_interaction_the_hold_cannot_read_goes_to_the_bot_as_it_came() -> None:
    """An app command whose kind the hold cannot tell (a type discord.py does not know) is never kept from
    the bot: it goes to the tree as it came, and the hold keeps nothing."""
    bot = Host()
    reached: list[Any] = []
    tree: Any = bot.tree
    tree._from_interaction = reached.append  # where the bot's tree takes it
    held = HeldEvents(bot, limit=3)
    held.install()
    state: Any = bot._connection
    strange = types.SimpleNamespace(data={"name": "fix", "type": 99, "guild_id": "1"})
    state._command_tree._from_interaction(strange)
    assert reached == [strange] and not held.commands
    held.release([])
    await bot.close()


async def test_the_self_improvement_half_is_built_when_asked_and_held_for_until_then(tmp_path: Path) -> None:
    """Services built without their self-improvement half answer for it only once it is built (once,
    however many ask), report their health meanwhile, and close either way."""
    services = await build_services(make_settings(tmp_path / "data"), watch_prompts=False, mending=False)
    try:
        with pytest.raises(NotMendingYet):
            _ = services.improve
        assert services.health()["improvement_paused"] is None
        first, second = await asyncio.gather(services.complete(), services.complete())
        assert first is second is services.mending
        assert services.improve is first.improve and services.health()["improvement_paused"] is False
    finally:
        await services.aclose()
    unbuilt = await build_services(make_settings(tmp_path / "other"), watch_prompts=False, mending=False)
    await unbuilt.aclose()  # never built: closes all the same
    assert unbuilt.mending is None and unbuilt.closed


async def test_what_arrives_before_mendbots_cogs_are_up_is_answered_once_they_are(
    tmp_path: Path, discord_api: DiscordDouble
) -> None:
    """While mendbot's cogs are not up, the bot answers its own `!echo` and `/add` at once; `/runs`, a
    mention of mendbot in #dev and a press of a proposal's button wait for them, and are answered
    once they are."""
    settings = _settings(tmp_path, discord_api)
    proposal = await _first_life(discord_api, settings)
    gate = asyncio.Event()
    bot: Host | None = None

    async def gated() -> None:
        await gate.wait()
        assert bot is not None
        await _add_cogs(bot)

    bot, mend, task = await _start(discord_api, settings, gated)
    try:
        general, dev = discord_api.guild.channel("general"), discord_api.guild.channel("dev")
        assert mend.held is not None and bot.get_cog("improve") is None
        said = await discord_api.send_message(general, "!echo still here", author=ALICE)
        echoed = await discord_api.wait_for_message(lambda m: int(m["id"]) > int(said["id"]), channel=general)
        assert message_text(echoed) == "still here"
        added = await discord_api.slash(general, "add", author=ALICE, a=2, b=3)
        assert message_text(await discord_api.response_to(added)) == "5"

        runs = await discord_api.slash(dev, "runs", author=ALICE)
        mention = await discord_api.mention(dev, "something is off with the dice", author=ALICE)
        press = await discord_api.press(proposal, "proposal:999:approve", author=ALICE)
        held = mend.held
        await _until(lambda: (len(held.commands), len(held.components)) == (1, 1))
        assert [event for event, _, _ in held.events if event == "message"]
        assert discord_api._originals.get(runs["token"]) is None  # nothing answered /runs yet

        gate.set()
        assert "run" in message_text(await discord_api.response_to(runs)).lower()
        reply = await discord_api.wait_for_message(
            lambda m: (m.get("message_reference") or {}).get("message_id") == mention["id"], channel=dev
        )
        assert message_text(reply)
        assert message_text(await discord_api.response_to(press)) == "There is no proposal #999."
        assert mend.held is None and bot.get_cog("improve") is not None
    finally:
        gate.set()
        await _stop(bot, task)


async def test_cogs_that_cannot_come_up_answer_what_waited_and_say_so_in_dev(
    tmp_path: Path, discord_api: DiscordDouble
) -> None:
    """mendbot's cogs failing to come up leave the bot running: a held `/runs` is answered with why,
    #dev is told, and the bot's own commands go on."""
    settings = _settings(tmp_path, discord_api)
    await _first_life(discord_api, settings)
    gate = asyncio.Event()

    async def failing() -> None:
        await gate.wait()
        raise RuntimeError("the cogs' database is gone")

    bot, mend, task = await _start(discord_api, settings, failing)
    try:
        general, dev = discord_api.guild.channel("general"), discord_api.guild.channel("dev")
        runs = await discord_api.slash(dev, "runs", author=ALICE)
        held = mend.held
        assert held is not None
        await _until(lambda: len(held.commands) == 1)
        gate.set()
        answer = message_text(await discord_api.response_to(runs))
        assert "mendbot could not start here" in answer and "the cogs' database is gone" in answer
        told = await discord_api.wait_for_message(lambda m: "failed to load" in message_text(m), channel=dev)
        assert "`mendbot` — RuntimeError: the cogs' database is gone" in message_text(told)
        said = await discord_api.send_message(general, "!echo on we go", author=ALICE)
        echoed = await discord_api.wait_for_message(lambda m: int(m["id"]) > int(said["id"]), channel=general)
        assert message_text(echoed) == "on we go"
    finally:
        gate.set()
        await _stop(bot, task)


async def test_the_dashboard_of_an_attached_bot_is_configured_by_its_mendbot_yaml(
    tmp_path: Path, discord_api: DiscordDouble
) -> None:
    """`dashboard.enabled` in an attached bot's mendbot.yaml serves the dashboard: `/dashboard` gives alice
    a link that opens its sign-in page. Without it, `/dashboard` says to set it in mendbot.yaml — the file
    the bot runs from — never in a config.yaml it does not have."""
    import aiohttp

    off = _settings(tmp_path, discord_api)
    bot, _, task = await _start(discord_api, off)
    dev = discord_api.guild.channel("dev")
    try:
        await _until(
            lambda: "dashboard" in {c["name"] for c in discord_api.synced.get(str(discord_api.guild.id), [])}
        )
        said = message_text(
            await discord_api.response_to(await discord_api.slash(dev, "dashboard", author=ALICE))
        )
        assert "mendbot.yaml" in said and "config.yaml" not in said, said
    finally:
        await _stop(bot, task)

    on = msgspec.structs.replace(_settings(tmp_path, discord_api))
    on.dashboard = msgspec.structs.replace(on.dashboard, enabled=True, port=0)
    bot, _, task = await _start(discord_api, on)
    try:
        said = message_text(
            await discord_api.response_to(await discord_api.slash(dev, "dashboard", author=ALICE))
        )
        match = re.search(r"http://\S+/signin\?\S+", said)
        assert match is not None, said
        async with aiohttp.ClientSession() as session, session.get(match.group(0)) as page:
            assert page.status == 200 and 'id="signin"' in await page.text()
    finally:
        await _stop(bot, task)
