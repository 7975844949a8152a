"""What the replay's launcher reports from inside the bot under proof, as the observer reads it: the
exceptions the checkout's code raised (`Raised`), the state of that watch (`Watch`), and the reports
themselves (`Reports`) — handlers started and ended, task iterations run, members' events the bot is done
with — with the way to ask the launcher a question. The launcher is `mendbot.trust.replay_launch`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

from mendbot.kernel.waits import wait_for

__all__ = ["Raised", "Reports", "Watch"]


@dataclass(frozen=True)
class Raised:
    """An exception the checkout's code raised during a call, as the launcher's watch saw it: its type,
    the innermost frame of the repository it was raised in, and the frame that caught it (the last frame
    it reached; `caught_in_repo` False means it left the bot's code: the framework, or mendbot's runner
    of handlers, took it)."""

    error_type: str
    file: str
    function: str
    line: int
    caught_file: str
    caught_function: str
    caught_in_repo: bool
    frames: tuple[str, ...] = ()  # the repository files it passed through

    @property
    def caught_where_raised(self) -> bool:
        return self.caught_in_repo and (self.caught_file, self.caught_function) == (self.file, self.function)


@dataclass(frozen=True)
class Watch:
    """The state of the launcher's exception watch over a whole replay."""

    on: bool = False  # the launcher connected and armed it
    tampered: str | None = None  # the code under test tried to turn it off ("sys.settrace")
    lost: bool = False  # its reports stopped before the replay ended (the connection closed, overflow)

    @property
    def trusted(self) -> bool:
        return self.on and self.tampered is None and not self.lost

    def problem(self) -> str | None:
        if self.tampered is not None:
            return f"the code under test tried to turn off the replay's watch ({self.tampered})"
        if self.lost:
            return "the replay's watch of raised exceptions stopped reporting before the replay ended"
        if not self.on:
            return "the replay's watch of raised exceptions did not start"
        return None


class Reports:
    """The launcher as it reports: one JSON line per step of a raised exception, per start and end of a
    replayed handler, per task iteration run; and the way to ask it for one (`ask`)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []  # raised exceptions, step by step
        self.marks: list[dict[str, Any]] = []  # handlers started and ended
        self.answers: dict[int, dict[str, Any]] = {}  # a task iteration or a loops question, by its id
        self.hello = False
        self.tampered: str | None = None
        self.lost = False
        self.open = False
        self.last = 0.0  # when the last report came in (the observer's clock)
        self.writers: list[asyncio.StreamWriter] = []
        self.done = asyncio.Event()
        self.hello_seen = asyncio.Event()
        self.steady = asyncio.Event()  # the bot is as a call will find it (its guilds, mendbot's cogs)
        self.moved = asyncio.Event()  # set at every mark or answer (waiters clear it)
        self.settled: set[str] = set()  # the members' events the bot has done all it does for
        self.settling = asyncio.Event()  # set at every one of those (its waiter clears it)
        self._asks = itertools.count(1)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open = True
        self.writers.append(writer)
        try:
            while line := await reader.readline():
                self.last = time.monotonic()
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self._take(event if isinstance(event, dict) else {})
        finally:
            self.open = False
            writer.close()
            self.done.set()

    def _take(self, event: dict[str, Any]) -> None:
        kind = event.get("e")
        if kind == "hello":
            self.hello = True
            self.hello_seen.set()
        elif kind == "steady":
            self.steady.set()
        elif kind == "tamper":
            self.tampered = str(event.get("what"))[:80]
        elif kind == "overflow":
            self.lost = True
        elif kind == "raise":
            self.events.append(event)
        elif kind in ("start", "end"):
            self.marks.append(event)
            self.moved.set()
        elif kind in ("iteration", "loops"):
            self.answers[int(event.get("id") or 0)] = event
            self.moved.set()
        elif kind == "settled":
            self.settled.add(str(event.get("k")))
            self.settling.set()
            self.moved.set()

    async def ask(self, question: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        """Ask the launcher (run a task's iteration, say which loops run) and wait for its answer."""
        if not self.writers:
            return None
        number = next(self._asks)
        self.writers[-1].write((json.dumps({**question, "id": number}) + "\n").encode())
        await self.writers[-1].drain()
        deadline = time.monotonic() + timeout_s
        while number not in self.answers and time.monotonic() < deadline:
            await self.wait_moved(deadline - time.monotonic())
        return self.answers.get(number)

    async def until_settled(self, key: str) -> None:
        """Until the launcher says the bot has done all that the member's event `key` (`MESSAGE_CREATE:<id>`,
        `INTERACTION_CREATE:<id>`, `MESSAGE_REACTION_ADD:<message id>`) made it do; forever if it never
        says (a bot whose own task factory replaced the launcher's)."""
        while key not in self.settled:
            self.settling.clear()
            await self.settling.wait()

    async def wait_moved(self, timeout_s: float) -> None:
        self.moved.clear()
        with contextlib.suppress(TimeoutError):
            await wait_for(self.moved.wait(), max(0.0, timeout_s))

    def started(self, names: list[str], since: float) -> bool:
        return any(m["e"] == "start" and m.get("q") in names and m["t"] >= since for m in self.marks)

    def ended(self, names: list[str], since: float) -> float | None:
        """When the last of `names` that started since `since` ended (None: one has not ended yet)."""
        started = [m for m in self.marks if m["e"] == "start" and m.get("q") in names and m["t"] >= since]
        if not started:
            return None
        ends = [m["t"] for m in self.marks if m["e"] == "end" and m.get("q") in names and m["t"] >= since]
        return max(ends) if len(ends) >= len(started) else None

    async def close(self, stop_timeout_s: float) -> None:
        """Stop reading: the launcher's connection ends with the replay (its process is gone by now)."""
        for writer in self.writers:
            writer.close()
        if self.writers:
            with contextlib.suppress(TimeoutError):
                await wait_for(self.done.wait(), stop_timeout_s)

    def watch(self, *, stopped: bool) -> Watch:
        """The watch's state; `stopped`: the replay is over (a connection closed before is a loss)."""
        return Watch(self.hello, self.tampered, self.lost or (self.hello and not self.open and not stopped))

    def raised_between(self, start: float, end: float) -> tuple[Raised, ...]:
        """The exceptions first raised in the window [start, end), each with where it went."""
        chains: dict[int, list[dict[str, Any]]] = {}
        for event in self.events:
            chains.setdefault(int(event.get("id", 0)), []).append(event)
        found = []
        for steps in chains.values():
            first, last = steps[0], steps[-1]
            if not start <= float(first.get("t", 0.0)) < end:
                continue
            found.append(
                Raised(
                    error_type=str(first.get("type")),
                    file=str(first.get("file")),
                    function=str(first.get("func")),
                    line=int(first.get("line") or 0),
                    caught_file=str(last.get("file")),
                    caught_function=str(last.get("func")),
                    caught_in_repo=bool(last.get("repo")),
                    frames=tuple(dict.fromkeys(str(s.get("file")) for s in steps if s.get("repo"))),
                )
            )
        return tuple(found)
