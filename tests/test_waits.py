"""`wait_for` never loses the cancellation of the task awaiting, whenever it comes (bot/kernel/waits.py)."""

from __future__ import annotations

import asyncio

import pytest

from mendbot.kernel.waits import wait_for


async def _woken(event: asyncio.Event) -> int:
    """A loop that awaits the event with a time limit and goes round again on a wake or a timeout, as
    the product's pollers do. How many times it woke."""
    woken = 0
    while True:
        try:
            await wait_for(event.wait(), 30)
        except TimeoutError:
            continue
        event.clear()
        woken += 1


@pytest.mark.parametrize("steps", range(6))
async def test_a_cancellation_that_comes_as_the_awaited_ends_stops_the_task(steps: int) -> None:
    """The event is set, then `steps` turns of the loop later the task is cancelled: the task ends
    cancelled (on 3.11 asyncio's own wait_for handed back the event's result at one of these turns,
    the loop went round again and the task never ended)."""
    event = asyncio.Event()
    task = asyncio.create_task(_woken(event))
    await asyncio.sleep(0)  # the task waits for the event
    event.set()
    for _ in range(steps):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert done, "the cancelled task did not end: its cancellation was lost"
    assert task.cancelled()


async def test_it_times_out_and_returns_what_it_awaited() -> None:
    assert await wait_for(asyncio.sleep(0, result="done"), 5) == "done"
    with pytest.raises(TimeoutError):
        await wait_for(asyncio.Event().wait(), 0.01)
    assert await wait_for(asyncio.sleep(0, result=1), None) == 1
