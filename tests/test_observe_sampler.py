"""The slow-handler sampler: where a handler's time went, whether it blocks the loop or awaits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

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


async def test_a_handler_blocking_the_loop_is_sampled_at_the_blocking_line() -> None:
    """time.sleep in a handler: the loop thread's stack, innermost at the sleeping line."""
    sampler = SlowSampler((ROOT,), threshold_ms=20, interval_ms=5)
    sampler.start()
    try:
        innermost = await asyncio.create_task(_handler(sampler, None))
    finally:
        sampler.stop()
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
