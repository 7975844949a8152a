"""The slow-handler sampler: where a handler's time went, whether it blocks the loop or awaits."""

from __future__ import annotations

import asyncio
import faulthandler
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mendbot.observe.capture import start_capture
from mendbot.observe.sampler import SlowSampler, thread_frames

ROOT = Path(__file__).resolve().parent.parent
HERE = "tests/test_observe_sampler.py"


_WAIT_S = 30  # the longest a test waits for the sampler's thread, which a loaded machine may hold back


def _blocking_work(sampled: Callable[[], bool] | None) -> None:
    """Block the loop for 0.15 s, or (given `sampled`) until the sampler has sampled it."""
    deadline = time.monotonic() + (0.15 if sampled is None else _WAIT_S)
    while time.monotonic() < deadline and not (sampled is not None and sampled()):
        time.sleep(0.005)  # the sampled line when the loop is blocked


async def _waiting_work(release: asyncio.Event) -> None:
    await release.wait()  # the sampled line when the handler awaits


def _line(needle: str) -> int:
    return next(n for n, line in enumerate(Path(__file__).read_text().splitlines(), 1) if needle in line)


async def _handler(sampler: SlowSampler, work: object, *, until_sampled: bool = True) -> dict[str, int]:
    """A handler that awaits `work` (an event) or blocks the loop: until it is sampled, or (not
    `until_sampled`) for 0.15 s."""
    capture = start_capture("app:test")
    sampler.watch(capture)
    try:
        if isinstance(work, asyncio.Event):
            await _waiting_work(work)
        else:
            _blocking_work((lambda: bool(capture.stacks)) if until_sampled else None)
    finally:
        sampler.unwatch(capture)
    return {frames[-1]: count for frames, count in (capture.stacks or {}).items()}


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
    assert f"{HERE}:{_line('time.sleep(0.005)')}:_blocking_work" in innermost


async def test_a_handler_awaiting_is_sampled_at_the_await() -> None:
    """A handler suspended in an await: its coroutine chain, innermost at the awaiting line."""
    sampler = SlowSampler((ROOT,), threshold_ms=20, interval_ms=5)
    sampler.start()
    release = asyncio.Event()
    try:
        task = asyncio.create_task(_handler(sampler, release))
        deadline = time.monotonic() + _WAIT_S
        while not sampler.samples_taken and time.monotonic() < deadline:  # noqa: ASYNC110 - the thread counts
            await asyncio.sleep(0.005)
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
        innermost = await asyncio.create_task(_handler(sampler, None, until_sampled=False))
    finally:
        sampler.stop()
    assert innermost == {} and sampler.samples_taken == 0


async def test_fast_handlers_do_not_wake_the_sampler_thread_one_by_one() -> None:
    """A handler registering wakes the watchdog thread only from its idle wait: a stream of fast handlers
    is not a stream of switches to another thread in the middle of each handler."""
    sampler = SlowSampler((ROOT,), threshold_ms=500, interval_ms=5)
    sampler.start()
    try:
        await asyncio.sleep(1.2)  # past a threshold with no handler: the thread waits, idle
        before = sampler.wakeups
        for _ in range(200):
            capture = start_capture("app:test")
            sampler.watch(capture)
            await asyncio.sleep(0.001)  # the loop waits, as a handler awaiting Discord does
            sampler.unwatch(capture)
        woken = sampler.wakeups - before
    finally:
        sampler.stop()
    assert woken <= 20, woken  # once from idle, then a look per threshold: not once per handler
    assert sampler.samples_taken == 0


def _parked(ready: threading.Event, release: threading.Event) -> None:
    ready.set()
    release.wait()  # where the parked thread's dump must say it is


def test_a_faulthandler_dump_reads_as_one_threads_frames_innermost_first() -> None:
    """`thread_frames` picks the asked thread out of faulthandler's dump of all of them, innermost
    first, with the line each frame is at."""
    ready, release = threading.Event(), threading.Event()
    parked = threading.Thread(target=_parked, args=(ready, release))
    parked.start()
    try:
        ready.wait()
        with tempfile.TemporaryFile() as dump:
            faulthandler.dump_traceback(dump, all_threads=True)
            dump.seek(0)
            text = dump.read().decode("ascii")
    finally:
        release.set()
        parked.join()
    assert parked.ident is not None
    frames = thread_frames(text, parked.ident)
    names = [function for _, _, function in frames]
    assert names[0] == "wait" and names.index("_parked") < names.index("run") < names.index("_bootstrap")
    assert frames[names.index("_parked")] == (__file__, _line("release.wait()  # where"), "_parked")
    assert thread_frames(text, 1) == []  # no such thread


def test_a_dump_of_a_path_outside_ascii_reads_back_as_that_path() -> None:
    """faulthandler writes what is not ASCII as escapes; the frame reads with the real characters."""
    dump = (
        "Thread 0x00000000000000aa (most recent call first):\n"
        '  File "/srv/d\\xe9s/cogs/\\u0142\\U0001f3b2.py", line 12 in roll\n'
        '  File "/srv/x.py", line ??? in <module>\n'
    )
    assert thread_frames(dump, 0xAA) == [("/srv/dés/cogs/ł🎲.py", 12, "roll"), ("/srv/x.py", 0, "<module>")]


async def test_the_loop_threads_stack_is_not_walked_frame_by_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """The blocked loop's stack comes from one dump, not from `sys._current_frames()` and `f_back`
    (on CPython 3.11 a step of that walk could hand back an object that was never a frame)."""

    def walked() -> dict[int, object]:
        raise AssertionError("the sampler walked the loop thread's frames")

    monkeypatch.setattr(sys, "_current_frames", walked)
    innermost = await _blocking_handler_sampled()
    assert f"{HERE}:{_line('time.sleep(0.005)')}:_blocking_work" in innermost


class _BrokenTask:
    """A task whose state cannot be read: what a sample that fails looks like from the sampler."""

    def done(self) -> bool:
        raise RuntimeError("unreadable")


async def test_a_sample_that_fails_is_dropped_and_sampling_goes_on() -> None:
    """A failing sample is counted and dropped: the thread lives on and the next slow handler is
    still sampled where it blocks."""
    sampler = SlowSampler((ROOT,), threshold_ms=20, interval_ms=5)
    sampler.start()
    try:
        broken = start_capture("app:broken")
        broken.task = _BrokenTask()  # type: ignore[assignment]
        sampler.watch(broken)
        deadline = time.monotonic() + _WAIT_S
        while not sampler.samples_failed and time.monotonic() < deadline:  # noqa: ASYNC110 - the thread counts
            await asyncio.sleep(0.005)
        sampler.unwatch(broken)
        innermost = await asyncio.create_task(_handler(sampler, None))
    finally:
        sampler.stop()
    assert sampler.samples_failed >= 1
    assert f"{HERE}:{_line('time.sleep(0.005)')}:_blocking_work" in innermost
