"""`wait_for`: an await with a time limit that never loses the cancellation of the task awaiting.

On Python 3.11, `asyncio.wait_for` runs what it awaits as a task of its own; when the waiting task is
cancelled just as that one ends (an event set, a process exited, a connect failed), it hands back the
result or the error in place of the `CancelledError` (bpo-42130, fixed in 3.12). A loop that awaits that
way and goes round again on a result or a `TimeoutError` then never stops, and whoever cancelled it and
awaits it — a shutdown, a `stop()` — waits for ever. This `wait_for` awaits in the caller's own task
under `asyncio.timeout`, as 3.12's does: a cancellation always comes out as `CancelledError`. The
product uses this one (`asyncio.wait_for` is banned in bot/ by the linter's configuration).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")


async def wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:
    """`await awaitable`, raising TimeoutError after `timeout` seconds (None: no limit)."""
    async with asyncio.timeout(timeout):
        return await awaitable
