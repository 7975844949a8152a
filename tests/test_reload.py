"""Deploy reload: classify changes, swap cogs and prompts into the running bot, restart gracefully.

Cog files edited here live in a temporary package (`reloadable_cogs`) put on sys.path, never in
the repository's own `cogs/`, which the test process imports from the live checkout.
"""

from __future__ import annotations

import asyncio
import os
import py_compile
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import discord
import pytest
from structlog.testing import capture_logs

from mendbot.__main__ import exit_code, should_reexec
from mendbot.deploy.reload import ModuleResult, Plan, Reloader, ReloadReport, classify, render
from mendbot.deploy.watcher import HandEditWatcher
from mendbot.kernel.settings import Settings
from mendbot.runtime.recording import RESTART_NOTICE
from mendbot.runtime.services import installed_prompts
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, reply_text, running_world
from tests.harness.repo import git

PACKAGE = "reloadable_cogs"
HELLO = f"{PACKAGE}.hello"

COG = """
import discord
from discord import app_commands
from discord.ext import commands


class {cls}(commands.Cog):
    @app_commands.command(name="{command}", description="Say something.")
    async def {command}(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("{reply}")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog({cls}())
"""


def cog_source(reply: str, *, command: str = "hello", cls: str = "Hello") -> str:
    return COG.format(reply=reply, command=command, cls=cls)


@pytest.fixture
def cog_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path holding the package `reloadable_cogs` with `hello.py` (/hello → v1)."""
    root = tmp_path / "live"
    package = root / PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "hello.py").write_text(cog_source("hello v1"))
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
        del sys.modules[name]


async def say(world: VirtualWorld, command: str) -> str:
    result = await world.users["alice"].slash(world.general, command)
    return reply_text(result)


# -- classify -------------------------------------------------------------------------------------


def test_classify_sorts_changed_paths_by_what_applying_them_takes() -> None:
    """Cogs become extensions, prompts go to the registry, core code and dependencies need a restart."""
    plan = classify(
        [
            "cogs/dice.py",
            "cogs/games/board.py",
            "cogs/games/__init__.py",
            "prompts/chat/persona.md",
            "README.md",
            "tests/test_dice.py",
            "cogs/__pycache__/dice.cpython-311.pyc",
        ]
    )
    assert plan.extensions == ["cogs.dice", "cogs.games"]
    assert plan.prompts == ["prompts/chat/persona.md"]
    assert not plan.restart
    assert plan.other == ["README.md", "tests/test_dice.py"]


@pytest.mark.parametrize(
    "path", ["bot/runtime/app.py", "bot/improve/service.py", "pyproject.toml", "cogs/_shared.py"]
)
def test_classify_asks_for_a_restart_for_code_the_process_cannot_reload(path: str) -> None:
    """The core, the dependencies and a helper every cog imports are applied by a restart."""
    plan = classify(["cogs/dice.py", path])
    assert plan.restart
    assert plan.restart_paths == [path]


def test_render_lists_each_module_with_its_outcome() -> None:
    """One ✅/❌ line per module, and the restart notice last."""
    text = render(
        ReloadReport(
            results=[
                ModuleResult("cogs.dice", ok=True),
                ModuleResult("cogs.chat", ok=False, error="SyntaxError: invalid syntax (chat.py, line 3)"),
            ],
            restart_requested=True,
            restart_reason="bot/runtime/app.py changed",
        )
    )
    assert text.splitlines() == [
        "✅ cogs.dice reloaded",
        "❌ cogs.chat — SyntaxError: invalid syntax (chat.py, line 3)",
        "🔁 restarting (bot/runtime/app.py changed): finishing what is running first, back in a few seconds",
    ]


# -- extensions -------------------------------------------------------------------------------------


async def test_reloaded_cog_answers_with_the_new_code(settings: Settings, cog_root: Path) -> None:
    """An edited cog reloaded in the running bot answers with its new code at once."""
    async with running_world(settings, extra_extensions=[HELLO]) as world:
        assert await say(world, "hello") == "hello v1"
        (cog_root / PACKAGE / "hello.py").write_text(cog_source("hello v2"))
        report = await Reloader(world.bot).apply(Plan(extensions=[HELLO]))
        assert render(report) == f"✅ {HELLO} reloaded"
        assert await say(world, "hello") == "hello v2"


async def test_a_same_size_edit_in_the_same_second_is_not_served_from_stale_bytecode(
    settings: Settings, cog_root: Path
) -> None:
    """Cached bytecode is trusted by mtime seconds and size; a reload must not run the old code."""
    hello = cog_root / PACKAGE / "hello.py"
    py_compile.compile(str(hello), doraise=True)  # what an import writes unless bytecode is off
    before = hello.stat()
    async with running_world(settings, extra_extensions=[HELLO]) as world:
        hello.write_text(cog_source("hello v2"))
        os.utime(hello, ns=(before.st_atime_ns, before.st_mtime_ns))  # saved within the same second
        assert hello.stat().st_size == before.st_size
        report = await Reloader(world.bot).apply(Plan(extensions=[HELLO]))
        assert render(report) == f"✅ {HELLO} reloaded"
        assert await say(world, "hello") == "hello v2"


async def test_a_cog_that_fails_to_import_keeps_the_old_version_serving(
    settings: Settings, cog_root: Path
) -> None:
    """A change that raises on import is reported ❌ and the previous version keeps answering."""
    async with running_world(settings, extra_extensions=[HELLO]) as world:
        (cog_root / PACKAGE / "hello.py").write_text(
            cog_source("hello v2") + '\nraise RuntimeError("broken on import")\n'
        )
        report = await Reloader(world.bot).apply(Plan(extensions=[HELLO]))
        assert not report.ok
        text = render(report)
        assert text.startswith(f"❌ {HELLO} — RuntimeError: broken on import")
        assert "previous version keeps serving" in text
        assert await say(world, "hello") == "hello v1"
        roll = await world.users["alice"].slash(world.general, "roll", notation="2d6")
        assert reply_text(roll).startswith("🎲")
        assert HELLO in world.bot.extensions


async def test_a_syntax_error_is_reported_with_file_and_line(settings: Settings, cog_root: Path) -> None:
    """A cog that does not compile is reported with the SyntaxError, and /hello still answers."""
    async with running_world(settings, extra_extensions=[HELLO]) as world:
        (cog_root / PACKAGE / "hello.py").write_text("def broken(:\n")
        report = await Reloader(world.bot).apply(Plan(extensions=[HELLO]))
        assert report.results[0].error is not None
        assert report.results[0].error.startswith("SyntaxError:")
        assert "hello.py" in report.results[0].error
        assert await say(world, "hello") == "hello v1"


async def test_a_new_cog_file_is_loaded_and_a_deleted_one_unloaded(
    settings: Settings, cog_root: Path
) -> None:
    """A new cog module is loaded and its command synced; deleting it removes the command."""
    async with running_world(settings, extra_extensions=[HELLO]) as world:
        alice = world.users["alice"]
        wave = cog_root / PACKAGE / "wave.py"
        wave.write_text(cog_source("👋", command="wave", cls="Wave"))
        reloader = Reloader(world.bot)
        plan = classify([f"{PACKAGE}/wave.py"], extension_packages=[PACKAGE])
        report = await reloader.apply(plan)
        assert render(report).splitlines() == [f"✅ {PACKAGE}.wave loaded", "✅ app commands synced"]
        assert await say(world, "wave") == "👋"
        wave.unlink()
        report = await reloader.apply(plan)
        assert render(report).splitlines() == [f"✅ {PACKAGE}.wave unloaded", "✅ app commands synced"]
        assert "wave" not in alice.available_commands(world.general)
        assert world.bot.tree.get_command("wave", guild=discord.Object(world.guild.id)) is None
        assert await say(world, "hello") == "hello v1"


async def test_a_new_cog_that_fails_to_load_is_recorded_as_not_serving(
    settings: Settings, cog_root: Path
) -> None:
    """A new cog whose setup fails is ❌ and listed among the extension failures."""
    async with running_world(settings) as world:
        (cog_root / PACKAGE / "bad.py").write_text("async def setup(bot):\n    raise ValueError('nope')\n")
        report = await Reloader(world.bot).apply(Plan(extensions=[f"{PACKAGE}.bad"]))
        assert render(report) == f"❌ {PACKAGE}.bad — ValueError: nope"
        assert f"{PACKAGE}.bad" in world.bot.extension_failures


async def test_reloading_the_dice_cog_keeps_roll_working(world: VirtualWorld) -> None:
    """Reloading a real cog (cogs.dice) in place leaves /roll and !roll answering, no sync needed."""
    report = await Reloader(world.bot).apply(classify(["cogs/dice.py"]))
    assert render(report) == "✅ cogs.dice reloaded"
    roll = await world.users["alice"].slash(world.general, "roll", notation="1d4")
    assert reply_text(roll).startswith("🎲 `1d4`")
    await world.users["alice"].send(world.general, "!roll 1d4")
    assert bot_messages(world, world.general)[-1].content.startswith("🎲 `1d4`")


# -- prompts ----------------------------------------------------------------------------------------


async def test_prompt_changes_reload_and_an_invalid_one_keeps_the_previous(
    settings: Settings, tmp_path: Path
) -> None:
    """A changed prompt is reloaded; one with invalid front matter is ❌ and the old text stays."""
    prompts = tmp_path / "prompts"
    shutil.copytree(installed_prompts(), prompts)
    persona = prompts / "chat" / "persona.md"
    async with running_world(settings, prompts_dir=prompts) as world:
        registry = world.bot.services.prompts
        reloader = Reloader(world.bot)
        persona.write_text("---\nkind: persona\n---\nYou are a terse pirate.\n")
        report = await reloader.apply(classify(["prompts/chat/persona.md"]))
        assert render(report) == "✅ prompt chat/persona reloaded"
        assert registry.get("chat/persona").body == "You are a terse pirate.\n"
        persona.write_text("---\nkind: nonsense\n---\nBroken.\n")
        report = await reloader.apply(classify(["prompts/chat/persona.md"]))
        assert render(report).startswith("❌ prompt chat/persona — chat/persona: kind:")
        assert "previous version keeps serving" in render(report)
        assert registry.get("chat/persona").body == "You are a terse pirate.\n"


# -- restart ----------------------------------------------------------------------------------------


async def test_a_restart_drains_refuses_new_work_politely_and_exits_26(settings: Settings) -> None:
    """A change needing a restart: new work is refused, in-flight work finishes, then exit code 26."""
    settings.deploy.drain_timeout_s = 5
    async with running_world(settings) as world:
        bot = world.bot
        alice = world.users["alice"]
        assert exit_code(bot, settings) == 0
        release = asyncio.Event()
        finished: list[str] = []

        async def handler_in_flight() -> None:
            await release.wait()
            finished.append("done")

        bot.track_inflight(asyncio.create_task(handler_in_flight()))
        report = await Reloader(bot).apply(classify(["bot/runtime/app.py"]))
        assert report.restart_requested
        assert bot.restart_requested == "bot/runtime/app.py changed"
        assert "🔁 restarting (bot/runtime/app.py changed)" in render(report)
        assert not bot.accepting

        refused = await alice.slash(world.general, "roll", notation="2d6")
        assert reply_text(refused) == RESTART_NOTICE
        assert refused.response is not None and refused.response.ephemeral
        await alice.send(world.general, "!roll 2d6")
        assert bot_messages(world, world.general)[-1].content == RESTART_NOTICE
        assert not bot.is_closed()  # still draining: the handler has not finished

        release.set()
        reason = await asyncio.wait_for(bot.wait_for_restart(), timeout=5)
        assert reason == "bot/runtime/app.py changed"
        assert finished == ["done"]
        assert bot.is_closed()
        assert bot.extensions == {}
        assert exit_code(bot, settings) == 26


async def test_a_restart_does_not_wait_past_the_drain_timeout(settings: Settings) -> None:
    """A handler that never finishes holds the restart only for deploy.drain_timeout_s, and the warning
    says where it was waiting (through the task it awaits)."""
    settings.deploy.drain_timeout_s = 0.2

    async def looking_up_the_weather() -> None:
        await asyncio.Event().wait()

    async def weather_handler() -> None:
        await asyncio.ensure_future(looking_up_the_weather())

    async with running_world(settings) as world:
        bot = world.bot
        stuck = asyncio.create_task(weather_handler())
        bot.track_inflight(stuck)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with capture_logs() as logs:
            await asyncio.wait_for(bot.request_restart("test"), timeout=5)
        assert loop.time() - started < 2
        assert bot.is_closed()
        (warning,) = [log for log in logs if log["event"] == "restarting with handlers still running"]
        (where,) = warning["waiting_in"]
        assert "looking_up_the_weather" in where and "weather_handler" in where, where
        stuck.cancel()


def test_restart_reexecs_only_without_a_supervisor(settings: Settings) -> None:
    """Exit 26 under a supervisor; re-exec `run` (and the interactive playground) without one."""
    unsupervised: dict[str, str] = {}
    supervised = {"MENDBOT_SUPERVISED": "1"}
    assert should_reexec(26, settings, command="run", interactive=False, environ=unsupervised)
    assert should_reexec(26, settings, command="play", interactive=True, environ=unsupervised)
    assert not should_reexec(26, settings, command="play", interactive=False, environ=unsupervised)
    assert not should_reexec(26, settings, command="run", interactive=False, environ=supervised)
    assert not should_reexec(0, settings, command="run", interactive=False, environ=unsupervised)
    assert not should_reexec(78, settings, command="run", interactive=False, environ=unsupervised)


# -- the hand-edit watcher ---------------------------------------------------------------------------


async def test_hand_edit_watcher_applies_a_saved_cog_and_reports_it(
    settings: Settings, cog_root: Path
) -> None:
    """Saving a cog file on disk reloads it in the running bot (real inotify) and reports ✅."""
    async with running_world(settings, extra_extensions=[HELLO]) as world:
        reports: asyncio.Queue[str] = asyncio.Queue()
        watcher = HandEditWatcher(
            cog_root, Reloader(world.bot), reports.put, extension_packages=[PACKAGE], debounce_ms=100
        )
        stop = asyncio.Event()
        task = asyncio.create_task(watcher.run(stop))
        try:
            await asyncio.sleep(0)  # one turn of the loop: the watcher's first step watches its roots
            (cog_root / PACKAGE / "hello.py").write_text(cog_source("hello v3"))
            text = await asyncio.wait_for(reports.get(), timeout=10)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=5)
        assert text == f"✏️ Hand edit on disk:\n✅ {HELLO} reloaded"
        assert await say(world, "hello") == "hello v3"


async def test_hand_edit_watcher_skips_files_a_deploy_already_applied(
    settings: Settings, cog_root: Path
) -> None:
    """The files a deploy wrote and applied are not applied (or reported) a second time."""
    async with running_world(settings, extra_extensions=[HELLO]) as world:
        reports: list[str] = []

        async def report(text: str) -> None:
            reports.append(text)

        reloader = Reloader(world.bot)
        watcher = HandEditWatcher(cog_root, reloader, report, extension_packages=[PACKAGE])
        hello = cog_root / PACKAGE / "hello.py"
        hello.write_text(cog_source("hello v2"))
        await reloader.apply(classify([f"{PACKAGE}/hello.py"], extension_packages=[PACKAGE]))
        assert await watcher.apply_changes([hello]) is None
        hello.write_text(cog_source("hello v3"))
        assert await watcher.apply_changes([hello]) == f"✏️ Hand edit on disk:\n✅ {HELLO} reloaded"
        assert len(reports) == 1


async def test_two_reloads_of_one_cog_at_once_both_succeed(settings: Settings, cog_root: Path) -> None:
    """A deploy and a hand edit reloading the same cog together never fail with "already loaded"."""
    async with running_world(settings, extra_extensions=[HELLO]) as world:
        (cog_root / PACKAGE / "hello.py").write_text(cog_source("hello v2"))
        reloader = Reloader(world.bot)
        reports = await asyncio.gather(*(reloader.apply(Plan(extensions=[HELLO])) for _ in range(3)))
        assert [render(report) for report in reports] == [f"✅ {HELLO} reloaded"] * 3
        assert await say(world, "hello") == "hello v2"


async def test_a_hand_edit_event_during_a_deploy_waits_and_sees_the_deploys_files_applied(
    settings: Settings, cog_root: Path
) -> None:
    """The watcher waits while a deploy writes and applies files, then finds nothing fresh to report."""
    async with running_world(settings, extra_extensions=[HELLO]) as world:
        reports: list[str] = []

        async def report(text: str) -> None:
            reports.append(text)

        reloader = Reloader(world.bot)
        watcher = HandEditWatcher(cog_root, reloader, report, extension_packages=[PACKAGE])
        hello = cog_root / PACKAGE / "hello.py"
        async with reloader.applying() as apply:
            hello.write_text(cog_source("hello v2"))  # the deploy's fast-forward
            seen = asyncio.create_task(watcher.apply_changes([hello]))  # the watcher's event
            await asyncio.sleep(0.2)
            assert not seen.done()
            await apply(classify([f"{PACKAGE}/hello.py"], extension_packages=[PACKAGE]))
        assert await seen is None
        assert reports == []
        assert await say(world, "hello") == "hello v2"


async def test_a_hand_edit_to_the_core_is_reported_never_restarted(
    settings: Settings, tmp_path: Path
) -> None:
    """Editing bot/ by hand says a restart is needed and keeps the bot running."""
    root = tmp_path / "live"
    (root / "bot" / "runtime").mkdir(parents=True)
    (root / "bot" / "runtime" / "app.py").write_text("# edited\n")
    async with running_world(settings) as world:
        reports: list[str] = []

        async def report(text: str) -> None:
            reports.append(text)

        watcher = HandEditWatcher(root, Reloader(world.bot), report)
        text = await watcher.apply_changes([root / "bot" / "runtime" / "app.py"])
        assert text is not None
        assert "`bot/runtime/app.py` changed on disk: restart mendbot to apply it" in text
        assert world.bot.accepting
        assert world.bot.restart_requested is None
        assert await watcher.apply_changes([root / "README.md"]) is None


async def test_a_hand_edit_main_does_not_have_says_runs_will_not_see_it(
    settings: Settings, cog_root: Path
) -> None:
    """A hand edit reloaded from a file that differs from main says so, since every run starts from
    main; once committed, the next reload says nothing of it."""
    git(cog_root, "init", "-q", "-b", "main")
    git(cog_root, "add", "-A")
    git(cog_root, "commit", "-q", "-m", "hello")
    async with running_world(settings, extra_extensions=[HELLO]) as world:
        watcher = HandEditWatcher(cog_root, Reloader(world.bot), _ignore, extension_packages=[PACKAGE])
        hello = cog_root / PACKAGE / "hello.py"
        hello.write_text(cog_source("hello v2"))
        edited = await watcher.apply_changes([hello])
        git(cog_root, "commit", "-q", "-am", "v2")
        hello.write_text(cog_source("hello v2"))  # saved again, as committed
        committed = await watcher.apply_changes([hello])
    assert edited == (
        f"✏️ Hand edit on disk:\n✅ {HELLO} reloaded\n⚠️ `{PACKAGE}/hello.py` is not committed: runs start "
        "from main and will not see it. Commit it to `main` for a fix to work on it."
    )
    assert committed == f"✏️ Hand edit on disk:\n✅ {HELLO} reloaded"


async def _ignore(_: str) -> None:
    return None
