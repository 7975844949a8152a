"""A coroutine on an event loop of its own, in a worker thread, that its caller can still cancel.

Some work must not share the bot's loop: the incident replay (bot/improve/proof/replay.py) times what a bot
in the sandbox answers, and the bot's own load must not stretch those times. Handed to
`loop.run_in_executor`, such a coroutine cannot be stopped: cancelling the await leaves the thread
running, and the interpreter waits for the thread before the process can exit — a SIGTERM during a
replay took 27.8 s to end the process. `on_own_loop` cancels the coroutine inside its thread when the
await is cancelled (its `finally` blocks run there: subprocesses stopped, files removed) and waits a
bounded time for it to end.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["on_own_loop"]

T = TypeVar("T")


class _OwnLoop:
    """The thread's side: the loop, the task on it, and whether the caller has given up on it."""

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self._coro = coro
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False

    def run(self) -> Any:
        loop = asyncio.SelectorEventLoop()
        try:
            with self._lock:
                if self._cancelled:  # cancelled before the thread got here: never start it
                    self._coro.close()
                    raise asyncio.CancelledError
                self._task = task = loop.create_task(self._coro)
                self._loop = loop
            return loop.run_until_complete(task)
        finally:
            with self._lock:
                self._loop = None
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._loop is not None and self._task is not None:
                self._loop.call_soon_threadsafe(self._task.cancel)


async def on_own_loop(coro: Coroutine[Any, Any, T], *, stop_within_s: float = 15.0) -> T:
    """`coro`'s result, run to completion on a new event loop in a worker thread (with a context of its
    own: nothing of the caller's context variables reaches it). Cancelled, it cancels `coro` in its
    thread and waits up to `stop_within_s` for it to unwind before raising CancelledError."""
    own = _OwnLoop(coro)
    future = asyncio.get_running_loop().run_in_executor(None, contextvars.Context().run, own.run)
    try:
        result: T = await asyncio.shield(future)
        return result
    except asyncio.CancelledError:
        own.cancel()
        await asyncio.wait([future], timeout=stop_within_s)
        if future.done() and not future.cancelled():
            future.exception()  # its own ending (the cancellation, or what it raised): seen, not logged
        raise
