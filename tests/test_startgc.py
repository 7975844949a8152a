"""The garbage collector is paused while a process starts the bot, and always on once it runs."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bot.kernel import startgc
from bot.kernel.settings import Settings
from tests.harness.discord import running_world


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
