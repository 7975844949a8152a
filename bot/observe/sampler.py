"""Where a slow handler's time goes: a watchdog thread samples its stack while it runs long.

A latency incident's actions all succeeded, so they carry no traceback; what finds the cause is
the stack the handler was in while it was slow. Handlers register their capture
(bot/observe/capture.py) when they start; a daemon thread sleeps until the oldest one passes
`threshold_ms`, then every `interval_ms` takes one sample of each handler still running:

- if the handler's task is the one the event loop is running right now, the handler is
  blocking the loop (a sync call, a CPU-bound loop): the sample is the loop thread's current
  Python stack (`sys._current_frames`);
- otherwise the task is suspended in an `await`: the sample is its coroutine chain
  (`cr_await`), which says what it is waiting on.

Only in-repo frames are kept ("file:line:function", innermost last) and counted per distinct
stack. The thread only reads frames (the GIL makes that safe in CPython); it never touches the
loop's objects otherwise. Nothing is sampled while every handler is fast.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from bot.observe.capture import HandlerCapture
from bot.observe.fingerprint import relative_path, root_prefixes

__all__ = ["SlowSampler"]

_MAX_DEPTH = 64
_MAX_SAMPLES_PER_HANDLER = 500


class SlowSampler:
    def __init__(
        self, roots: tuple[Path, ...], *, threshold_ms: float = 50.0, interval_ms: float = 5.0
    ) -> None:
        self._prefixes = root_prefixes(roots)
        self.threshold_s = threshold_ms / 1000
        self.interval_s = interval_ms / 1000
        self._active: dict[int, HandlerCapture] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.samples_taken = 0
        # The bot's own dispatch functions (file, name): on every handler's stack, evidence of none.
        self._machinery: set[tuple[str, str]] = set()

    def skip(self, *functions: Any) -> None:
        """Leave these functions' frames out of the samples (the runtime's dispatch around handlers)."""
        for function in functions:
            code = getattr(function, "__code__", None)
            if code is not None:
                self._machinery.add((code.co_filename, code.co_name))

    # -- on the event loop ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the watchdog for the running event loop (idempotent)."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="mendbot-slow-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread = self._thread
        if thread is None:
            return
        with self._wake:
            self._stopping = True
            self._wake.notify()
        thread.join(timeout=2)
        self._thread = None

    def watch(self, capture: HandlerCapture) -> None:
        if self._thread is None:
            return
        with self._wake:
            self._active[id(capture)] = capture
            self._wake.notify()

    def unwatch(self, capture: HandlerCapture) -> None:
        if self._thread is None:
            return
        with self._wake:
            self._active.pop(id(capture), None)

    # -- on the watchdog thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                if not self._active:
                    self._wake.wait()
                    continue
                now = time.perf_counter()
                oldest = min(capture.started for capture in self._active.values())
                due = oldest + self.threshold_s - now
                if due > 0:
                    self._wake.wait(timeout=due)
                    continue
                slow = [c for c in self._active.values() if now - c.started >= self.threshold_s]
            for capture in slow:
                if capture.sampled < _MAX_SAMPLES_PER_HANDLER:
                    self._sample(capture)
            time.sleep(self.interval_s)

    def _sample(self, capture: HandlerCapture) -> None:
        task = capture.task
        if task is None or task.done():
            return
        running = asyncio.current_task(self._loop) if self._loop is not None else None
        frames: list[tuple[str, int, str]]
        if running is task and self._loop_thread is not None:
            frames = list(reversed(list(self._frame_chain(self._loop_frame(self._loop_thread)))))
        else:
            frames = list(self._coroutine_chain(task))
        stack = tuple(
            f"{path}:{line}:{function}"
            for path, line, function in (self._in_repo(frame) for frame in frames)
            if path is not None
        )
        capture.sampled += 1
        self.samples_taken += 1
        if stack:
            capture.stacks[stack] += 1

    @staticmethod
    def _loop_frame(thread: int) -> FrameType | None:
        """The loop thread's current frame, read with the collector paused.

        `sys._current_frames()` holds the interpreter's thread-list lock while it builds its dict. A
        collection started there runs Python code (weakref callbacks, finalizers), which gives up the
        GIL; a thread that ends meanwhile takes the GIL and waits for that lock, and the whole process
        hangs for good (CPython gh-106883, on 3.11 before 3.11.9, fixed there the same way; 3.12 and
        later collect only between bytecodes). A collector someone else paused stays paused.
        """
        collecting = gc.isenabled()
        if collecting:
            gc.disable()
        try:
            return sys._current_frames().get(thread)
        finally:
            if collecting:
                gc.enable()

    def _in_repo(self, frame: tuple[str, int, str]) -> tuple[str | None, int, str]:
        filename, line, function = frame
        if (filename, function) in self._machinery:
            return None, line, function
        return relative_path(filename, self._prefixes), line, function

    @staticmethod
    def _frame_chain(frame: FrameType | None) -> Iterator[tuple[str, int, str]]:
        """Innermost first, as `f_back` walks."""
        depth = 0
        while frame is not None and depth < _MAX_DEPTH:
            yield frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name
            frame = frame.f_back
            depth += 1

    @staticmethod
    def _coroutine_chain(task: asyncio.Task[Any]) -> Iterator[tuple[str, int, str]]:
        """Outermost first: the task's coroutine, then whatever each one awaits."""
        awaitable: Any = task.get_coro()
        depth = 0
        while awaitable is not None and depth < _MAX_DEPTH:
            frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
            if frame is None:
                return
            yield frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name
            awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
            depth += 1
