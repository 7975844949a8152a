"""Long-lived background loops of services (writers, watchers, servers).

Each daemon runs in a fresh contextvars context: no request's bound log context (guild,
user, run id) leaks into it, and test harnesses that track "work caused by an event" do not
mistake a daemon's idle wait for unfinished work.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any

from bot.kernel.log import get_logger

__all__ = ["Daemons"]

_log = get_logger(__name__)


class Daemons:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def start(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        if name in self._tasks and not self._tasks[name].done():
            coro.close()
            raise RuntimeError(f"daemon {name} is already running")
        task = asyncio.get_running_loop().create_task(coro, name=name, context=contextvars.Context())
        task.add_done_callback(self._finished)
        self._tasks[name] = task
        return task

    def running(self) -> list[str]:
        return sorted(name for name, task in self._tasks.items() if not task.done())

    @staticmethod
    def _finished(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            _log.error("daemon crashed", daemon=task.get_name(), exc_info=task.exception())

    async def stop_all(self, timeout: float = 5.0) -> None:
        tasks = [task for task in self._tasks.values() if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        self._tasks.clear()
