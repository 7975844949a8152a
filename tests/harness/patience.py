"""A test's deadline for something that comes well within it on a quiet machine, stretched by how busy the
machine is while the test waits.

A deadline in a test ends a test that hangs; it does not time the product. With a second whole suite
running beside this one, the load average reached 15 on 2 cores and a playground run that takes 20 s quiet
took over two minutes: the deadlines failed with nothing wrong. `within(awaitable, seconds)` waits
`seconds`, and on for as long as the load average per core says the wait only had that share of the
machine — looked at again whenever the deadline so far passes, at most `_MOST` times `seconds` in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["within"]

T = TypeVar("T")

_MOST = 5.0


def _stretch() -> float:
    """How many times longer a wait takes now than on a quiet machine, by the load average per core."""
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    return min(_MOST, max(1.0, load))


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """`awaitable`'s result, or TimeoutError once `seconds` (stretched by the machine's load) have passed
    without it; the awaitable is cancelled then."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(awaitable)
    begun = loop.time()
    try:
        while True:
            left = begun + seconds * _stretch() - loop.time()
            if left <= 0:
                raise TimeoutError
            done, _ = await asyncio.wait({task}, timeout=left)
            if done:
                return task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
