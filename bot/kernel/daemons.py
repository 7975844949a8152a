"""Long-lived background loops of services (writers, watchers, servers).

Each daemon runs in a fresh contextvars context: no request's bound log context (guild,
user, run id) leaks into it, and test harnesses that track "work caused by an event" do not
mistake a daemon's idle wait for unfinished work.

A bot starting holds its daemons (`hold`) until it has its gateway session (`release`, from
`on_connect`): the action store catching up from its journal, the retention prune and the watchers
then do not compete with the imports, the cogs and the handshake for the one event loop and the GIL
(after a busy hour that was ~40–110 ms of a start). Records made meanwhile wait in memory, as they
do between two hand-overs; a start that never connects is released after `at_most_s` all the same.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any

from mendbot.kernel.log import get_logger

__all__ = ["Daemons"]

_log = get_logger(__name__)


class Daemons:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._released: asyncio.Event | None = None  # set: held daemons run (None: never held)
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def holding(self) -> bool:
        """Whether daemons started now wait for `release()`."""
        return self._released is not None and not self._released.is_set()

    def hold(self, at_most_s: float) -> None:
        """Daemons started from now on wait for `release()`, or for `at_most_s` seconds at most."""
        if self._released is None:
            self._released = asyncio.Event()
            self._deadline = asyncio.get_running_loop().call_later(at_most_s, self.release)

    def release(self) -> None:
        """Held daemons run from now on (idempotent)."""
        if self._released is not None and not self._released.is_set():
            self._released.set()
            if self._deadline is not None:
                self._deadline.cancel()
            _log.debug("daemons released", held=len(self._tasks))

    async def _once_released(self, coro: Coroutine[Any, Any, Any]) -> Any:
        assert self._released is not None
        try:
            await self._released.wait()
        except BaseException:
            coro.close()  # stopped before it ran: it never will
            raise
        return await coro

    def start(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        if name in self._tasks and not self._tasks[name].done():
            coro.close()
            raise RuntimeError(f"daemon {name} is already running")
        if self.holding:
            coro = self._once_released(coro)
        task = asyncio.get_running_loop().create_task(coro, name=name, context=contextvars.Context())
        task.add_done_callback(self._finished)
        self._tasks[name] = task
        return task

    async def finished(self, name: str) -> None:
        """Wait for daemon `name` to end, if it runs (a one-off job; a loop never ends)."""
        task = self._tasks.get(name)
        if task is not None and not task.done():
            await asyncio.wait({task})

    def running(self) -> list[str]:
        return sorted(name for name, task in self._tasks.items() if not task.done())

    @staticmethod
    def _finished(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            _log.error("daemon crashed", daemon=task.get_name(), exc_info=task.exception())

    async def stop_all(self, timeout: float = 5.0) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        tasks = [task for task in self._tasks.values() if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        self._tasks.clear()
