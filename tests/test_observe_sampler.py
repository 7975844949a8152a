"""The slow-handler sampler: where a handler's time went, whether it blocks the loop or awaits."""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from pathlib import Path
from types import FrameType

import pytest

from bot.observe.capture import start_capture
from bot.observe.sampler import SlowSampler

ROOT = Path(__file__).resolve().parent.parent
HERE = "tests/test_observe_sampler.py"


def _blocking_work() -> None:
    time.sleep(0.15)  # the sampled line when the loop is blocked


async def _waiting_work(release: asyncio.Event) -> None:
    await release.wait()  # the sampled line when the handler awaits


def _line(needle: str) -> int:
    return next(n for n, line in enumerate(Path(__file__).read_text().splitlines(), 1) if needle in line)


async def _handler(sampler: SlowSampler, work: object) -> dict[str, int]:
    capture = start_capture("app:test")
    sampler.watch(capture)
    try:
        if isinstance(work, asyncio.Event):
            await _waiting_work(work)
        else:
            _blocking_work()
    finally:
        sampler.unwatch(capture)
    return {frames[-1]: count for frames, count in capture.stacks.items()}


async def _blocking_handler_sampled() -> dict[str, int]:
    sampler = SlowSampler((ROOT,), threshold_ms=20, interval_ms=5)
    sampler.start()
    try:
        return await asyncio.create_task(_handler(sampler, None))
    finally:
        sampler.stop()


async def test_a_handler_blocking_the_loop_is_sampled_at_the_blocking_line() -> None:
    """time.sleep in a handler: the loop thread's stack, innermost at the sleeping line."""
    innermost = await _blocking_handler_sampled()
    assert f"{HERE}:{_line('time.sleep(0.15)')}:_blocking_work" in innermost


async def test_a_handler_awaiting_is_sampled_at_the_await() -> None:
    """A handler suspended in an await: its coroutine chain, innermost at the awaiting line."""
    sampler = SlowSampler((ROOT,), threshold_ms=20, interval_ms=5)
    sampler.start()
    release = asyncio.Event()
    try:
        task = asyncio.create_task(_handler(sampler, release))
        await asyncio.sleep(0.15)
        release.set()
        innermost = await task
    finally:
        sampler.stop()
    assert f"{HERE}:{_line('await release.wait()')}:_waiting_work" in innermost


async def test_a_fast_handler_is_never_sampled() -> None:
    """Below the threshold nothing is sampled (the watchdog only wakes for slow handlers)."""
    sampler = SlowSampler((ROOT,), threshold_ms=500, interval_ms=5)
    sampler.start()
    try:
        innermost = await asyncio.create_task(_handler(sampler, None))
    finally:
        sampler.stop()
    assert innermost == {} and sampler.samples_taken == 0


async def _collector_at_each_read(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Sample a loop-blocking handler; whether the collector was on at each read of the thread frames."""
    seen: list[bool] = []
    read = sys._current_frames

    def reading() -> dict[int, FrameType]:
        seen.append(gc.isenabled())
        return read()

    monkeypatch.setattr(sys, "_current_frames", reading)
    innermost = await _blocking_handler_sampled()
    assert f"{HERE}:{_line('time.sleep(0.15)')}:_blocking_work" in innermost
    return seen


async def test_the_loop_threads_stack_is_read_with_the_collector_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A collection inside sys._current_frames() can hang the whole process on Python before 3.11.9
    (CPython gh-106883; seen as a test run that never ended): the sampler pauses the collector around
    each read, and turns it back on."""
    assert gc.isenabled()
    seen = await _collector_at_each_read(monkeypatch)
    assert seen and not any(seen)
    assert gc.isenabled()


async def test_a_collector_paused_by_someone_else_stays_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bot pauses the collector while it starts (bot/kernel/startgc.py): sampling must not resume it."""
    gc.disable()
    try:
        seen = await _collector_at_each_read(monkeypatch)
        assert seen and not gc.isenabled()
    finally:
        gc.enable()
