"""Where a slow handler's time goes: a watchdog thread samples its stack while it runs long.

A latency incident's actions all succeeded, so they carry no traceback; what finds the cause is
the stack the handler was in while it was slow. Handlers register their capture
(bot/observe/capture.py) when they start; a daemon thread sleeps until the oldest one passes
`threshold_ms`, then every `interval_ms` takes one sample of each handler still running (up to
`_MAX_SAMPLES_PER_HANDLER` each):

- if the handler's task is the one the event loop is running right now, the handler is
  blocking the loop (a sync call, a CPU-bound loop): the sample is the loop thread's current
  Python stack, as `faulthandler` writes it;
- otherwise the task is suspended in an `await`: the sample is its coroutine chain
  (`cr_await`), which says what it is waiting on.

Only in-repo frames are kept ("file:line:function", innermost last) and counted per distinct
stack. The thread only reads frames; it never touches the loop's objects otherwise. The loop
thread's stack is read by C code in one go under the GIL (`faulthandler.dump_traceback`, the way its
own watchdog dumps other threads), never by walking `f_back` from `sys._current_frames()` in Python:
the loop thread runs between those steps, and on CPython 3.11 a step could hand back an object that
was never a frame (seen once in a full test run: a function), which ended the sampling thread. A
sample that fails anyway is dropped and counted (`samples_failed`); the thread goes on. Nothing is
sampled while every handler is fast.

Registering a handler must not wake the thread: a wake is a switch of the interpreter's lock to another
thread in the middle of the handler, and on a busy bot it was most of what watching cost a command. So
the thread is woken only from its idle wait (nothing registered), and once woken it looks again at
least every `threshold_ms` while handlers come and go, going idle only after a whole threshold with none:
a handler registered meanwhile has its due time after every earlier one's, which the thread's next look
(at most `threshold_ms` away) sees.
"""

from __future__ import annotations

import asyncio
import faulthandler
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from mendbot.kernel.log import get_logger
from mendbot.observe.capture import HandlerCapture
from mendbot.observe.fingerprint import relative_path, root_prefixes

__all__ = ["SlowSampler", "coroutine_chain", "thread_frames"]

_log = get_logger(__name__)
_MAX_DEPTH = 64
_MAX_SAMPLES_PER_HANDLER = 500
# faulthandler's dump: a header per thread, then one line per frame, most recent first.
_THREAD = re.compile(r"^(?:Current thread|Thread) 0x([0-9a-f]+) \(most recent call first\):$")
_FRAME = re.compile(r'^  File "(.*)", line (\d+|\?\?\?) in (.*)$')
# What faulthandler writes for a character outside ASCII (`\xe9`, `\u0142`, `\U0001f3b2`).
_ESCAPED = re.compile(r"\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|U([0-9a-f]{8}))")


def thread_frames(dump: str, thread: int) -> list[tuple[str, int, str]]:
    """(file, line, function) of thread `thread`'s frames in a `faulthandler` dump, innermost first
    (line 0 where faulthandler did not know it)."""
    frames: list[tuple[str, int, str]] = []
    inside = False
    for line in dump.splitlines():
        header = _THREAD.match(line)
        if header is not None:
            if inside:
                break
            inside = int(header.group(1), 16) == thread
        elif inside and (frame := _FRAME.match(line)) is not None and len(frames) < _MAX_DEPTH:
            path, number, function = (_unescaped(frame.group(n)) for n in (1, 2, 3))
            frames.append((path, int(number) if number.isdigit() else 0, function))
    return frames


def _unescaped(text: str) -> str:
    return _ESCAPED.sub(lambda m: chr(int(next(g for g in m.groups() if g is not None), 16)), text)


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
        self._idle = False  # the thread waits without a deadline: a handler registered must wake it
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.samples_taken = 0
        self.samples_failed = 0
        self.wakeups = 0  # how often the thread woke to look at the handlers
        self._dump: IO[bytes] | None = None  # where the loop thread's stack is written (the thread's own)
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
        self._dump = tempfile.TemporaryFile(prefix="mendbot-stack-")  # noqa: SIM115 (the thread's, until stop)
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
        if self._dump is not None and not thread.is_alive():
            self._dump.close()
            self._dump = None

    def watch(self, capture: HandlerCapture) -> None:
        """Register a handler. Its entry is set without the lock (one dictionary item: atomic under the
        interpreter's lock), which is taken only to wake an idle thread; `_run` looks once more after
        going idle, so a handler registered as it does is not missed."""
        if self._thread is None:
            return
        self._active[id(capture)] = capture
        if self._idle:
            with self._wake:
                if self._idle:
                    self._idle = False
                    self._wake.notify()

    def unwatch(self, capture: HandlerCapture) -> None:
        if self._thread is None:
            return
        self._active.pop(id(capture), None)

    @property
    def watching(self) -> int:
        """How many handlers are watched now: none once every handler that ran has ended."""
        return len(self._active)

    def _live(self) -> list[HandlerCapture]:
        """The handlers that may still be sampled (a copy taken in one step: the loop changes the
        dictionary without the lock)."""
        return [c for c in list(self._active.values()) if c.sampled < _MAX_SAMPLES_PER_HANDLER]

    # -- on the watchdog thread ---------------------------------------------------------------------

    def _run(self) -> None:
        lingered = False  # looked once more a threshold after the last handler went
        while True:
            with self._wake:
                self.wakeups += 1
                if self._stopping:
                    return
                # A handler sampled as often as it may be is left alone: no wake-ups for it.
                live = self._live()
                if not live:
                    if lingered:
                        self._idle = True
                        if not self._live():  # else one was registered after the look above: not idle
                            self._wake.wait()
                        self._idle = False
                        lingered = False
                    else:
                        self._wake.wait(timeout=self.threshold_s)
                        lingered = True
                    continue
                lingered = False
                now = time.perf_counter()
                due = min(capture.started for capture in live) + self.threshold_s - now
                if due > 0:
                    self._wake.wait(timeout=due)
                    continue
                slow = [c for c in live if now - c.started >= self.threshold_s]
            for capture in slow:
                try:
                    self._sample(capture)
                except Exception:  # one bad sample must not end sampling for the process's life
                    self.samples_failed += 1
                    if self.samples_failed == 1:
                        _log.exception("a stack sample failed; sampling goes on")
            time.sleep(self.interval_s)

    def _sample(self, capture: HandlerCapture) -> None:
        task = capture.task
        if task is None or task.done():
            return
        running = asyncio.current_task(self._loop) if self._loop is not None else None
        frames: list[tuple[str, int, str]]
        if running is task and self._loop_thread is not None:
            frames = list(reversed(self._loop_stack(self._loop_thread)))
        else:
            frames = list(coroutine_chain(task))
        stack = tuple(
            f"{path}:{line}:{function}"
            for path, line, function in (self._in_repo(frame) for frame in frames)
            if path is not None
        )
        capture.sampled += 1
        self.samples_taken += 1
        if stack:
            capture.add_stack(stack)

    def _loop_stack(self, thread: int) -> list[tuple[str, int, str]]:
        """The loop thread's Python stack, innermost first, as faulthandler writes it (module
        docstring): C code walks every thread's frames while the loop thread waits for the GIL, and
        allocates nothing, so no collection can start in it either."""
        dump = self._dump
        if dump is None:
            return []
        dump.seek(0)
        dump.truncate()
        faulthandler.dump_traceback(dump, all_threads=True)
        dump.seek(0)
        return thread_frames(dump.read().decode("ascii", "replace"), thread)

    def _in_repo(self, frame: tuple[str, int, str]) -> tuple[str | None, int, str]:
        filename, line, function = frame
        if (filename, function) in self._machinery:
            return None, line, function
        return relative_path(filename, self._prefixes), line, function


def coroutine_chain(task: asyncio.Task[Any], *, into_tasks: bool = False) -> Iterator[tuple[str, int, str]]:
    """Outermost first: the task's coroutine, then whatever each one awaits, as (file, line, function);
    with `into_tasks`, on into the task the innermost one awaits, if it awaits one."""
    depth = 0
    while True:
        awaitable: Any = task.get_coro()
        while awaitable is not None and depth < _MAX_DEPTH:
            frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
            if frame is None:
                break
            yield frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name
            awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
            depth += 1
        waiting = getattr(task, "_fut_waiter", None)  # what the task is suspended on (asyncio's own)
        if not into_tasks or not isinstance(waiting, asyncio.Task) or depth >= _MAX_DEPTH:
            return
        task = waiting
