"""The garbage collector is paused while a process starts the bot, and always on once it runs."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mendbot.kernel import startgc
from mendbot.kernel.settings import Settings
from mendbot.trust.loopback_discord import DiscordDouble
from tests.harness.discord import running_world
from tests.harness.hosts import LiveHost, host_repo, write_config


@pytest.fixture(autouse=True)
def _collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    startgc.resume()
    (gc.enable if was else gc.disable)()


def test_paused_stops_collection_for_the_block_and_restores_it() -> None:
    gc.enable()
    with startgc.paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_resume_ends_the_pause_early_and_the_block_end_leaves_it_on() -> None:
    gc.enable()
    with startgc.paused():
        startgc.resume()
        assert gc.isenabled()
        startgc.resume()  # twice is harmless
    assert gc.isenabled()


def test_what_start_up_made_is_frozen_when_collection_resumes() -> None:
    """What was made while the collector was paused is frozen when it resumes: its first collections
    after the pause walked every one of those objects, each generation in turn, on a bot's first commands."""
    gc.enable()
    frozen = gc.get_freeze_count()
    with startgc.paused():
        made = [[n] for n in range(1000)]  # containers the collector tracks, made during the pause
    assert gc.get_freeze_count() >= frozen + len(made)


def test_a_part_built_later_is_made_without_collection_and_frozen_after() -> None:
    """mendbot's self-improvement half, built once an attached bot has connected: no collection while it
    is made (an error too ends the block), and what it made is frozen as start-up's is."""
    gc.enable()
    frozen = gc.get_freeze_count()
    with startgc.frozen_after():
        assert not gc.isenabled()
        made = [[n] for n in range(1000)]
    assert gc.isenabled() and gc.get_freeze_count() >= frozen + len(made)
    with pytest.raises(RuntimeError), startgc.frozen_after():
        raise RuntimeError("the half could not be built")
    assert gc.isenabled()
    gc.disable()
    frozen = gc.get_freeze_count()
    with startgc.frozen_after():
        made = [[n] for n in range(1000)]
    assert not gc.isenabled() and gc.get_freeze_count() < frozen + len(made)  # the caller's pause is theirs


def test_a_collector_the_caller_turned_off_stays_off() -> None:
    gc.disable()
    with startgc.paused():
        startgc.resume()
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_the_pause_ends_on_an_error_too() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), startgc.paused():
        raise RuntimeError("start-up failed")
    assert gc.isenabled()


async def test_a_started_bot_runs_with_the_collector(settings: Settings) -> None:
    """`mendbot` pauses the collector for its whole command: the bot's start-up must end the pause,
    or a bot that runs for weeks would never collect a cycle."""
    gc.enable()
    with startgc.paused():
        async with running_world(settings) as world:
            assert world.bot.is_ready()
            assert gc.isenabled()


def test_a_pause_nothing_ends_is_ended_at_the_latest_after_its_time() -> None:
    """`mendbot attach` cannot know when a program will run its bot, if ever: the pause ends then."""
    gc.enable()
    with startgc.paused():
        startgc.resume_at_the_latest(0.05)
        assert not gc.isenabled()
        for _ in range(200):  # the timer's thread, within 2 s
            if gc.isenabled():
                break
            time.sleep(0.01)
        assert gc.isenabled()


_BUILT = '''"""A bot that says whether the garbage collector runs while it is built and once it is ready."""
import gc
import os

import discord
from discord.ext import commands


class Said(commands.Bot):
    async def setup_hook(self):
        print("built: collecting", gc.isenabled(), flush=True)

    async def on_ready(self):
        print("ready: collecting", gc.isenabled(), flush=True)


Said(command_prefix="!", intents=discord.Intents.default()).run(os.environ["SAID_TOKEN"], log_handler=None)
'''


async def test_an_attached_program_is_built_without_collections_and_runs_with_them(tmp_path: Path) -> None:
    """`mendbot attach` keeps the collector paused while the program builds its bot (as `mendbot run`
    does for its own), and the bot runs with it once logged in."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "bot.py").write_text(_BUILT)
    repo = host_repo(tmp_path, "said", source)
    async with DiscordDouble() as double:
        write_config(repo, double, ["python", "bot.py"], bot={"token_env": "SAID_TOKEN"})
        async with await LiveHost.start(double, repo, "SAID_TOKEN") as bot:
            for _ in range(500):
                if "ready: collecting" in bot.output():
                    break
                await asyncio.sleep(0.02)
            said = bot.output()
    assert "built: collecting False" in said
    assert "ready: collecting True" in said
