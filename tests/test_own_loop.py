"""`on_own_loop`: a coroutine on an event loop of its own in a worker thread, whose cancellation reaches
into that thread — its `finally` runs there and the thread ends — instead of leaving it running."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mendbot.kernel.own_loop import on_own_loop


async def test_the_result_comes_back_from_another_thread() -> None:
    """The coroutine runs in a thread other than the caller's and its result is returned."""
    caller = threading.get_ident()

    async def work() -> int:
        await asyncio.sleep(0)
        return threading.get_ident()

    assert await on_own_loop(work()) != caller


async def test_an_error_inside_is_raised_to_the_caller() -> None:
    """What the coroutine raises, the caller gets."""

    async def broken() -> None:
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        await on_own_loop(broken())


async def test_cancelling_the_caller_cancels_the_work_in_its_thread() -> None:
    """Cancelled while the work waits: the work sees CancelledError in its thread, runs its cleanup, and
    its thread is free again — nothing is left running for the process's exit to wait on."""
    started, cleaned = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []

    async def long_work() -> None:
        threads.append(threading.current_thread())
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.set()

    task = asyncio.ensure_future(on_own_loop(long_work(), stop_within_s=30))
    await asyncio.to_thread(started.wait, 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()  # ran in the work's thread before the caller's cancellation returned
    assert threads and threads[0] is not threading.current_thread()
