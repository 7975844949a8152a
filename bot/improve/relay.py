"""How a run on a worker reaches the chat: through the database (`improve.run_on: workers`).

On the worker, `DatabaseReporter` is the run's `RunReporter`: each status update and the final report
becomes a run event ("progress", "report") followed by `NOTIFY mendbot_runs`. On the bot,
`RunEventRelay` LISTENs on a connection of its own and hands every new such event, in the order
written and each once, to the bot's real reporter (the Improve cog). It reads the events from the
database — a notification only says "look" — after every (re)connection too, from the last event it
relayed (kept in `settings_kv`, so a restart of the bot loses nothing either).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mendbot.db import runs as queries
from mendbot.db.core import Connection
from mendbot.db.queue import listening
from mendbot.improve.runs import Run, RunService
from mendbot.kernel.log import get_logger

if TYPE_CHECKING:
    from mendbot.improve.progress import RunReporter

__all__ = ["PROGRESS_EVENT", "REPORT_EVENT", "DatabaseReporter", "RunEventRelay"]

PROGRESS_EVENT = "progress"
REPORT_EVENT = "report"
_RELAYED = (PROGRESS_EVENT, REPORT_EVENT)
_LAST_RELAYED_KEY = "run_relay.last_event_id"
# Ids are taken when an event is inserted but become visible at commit: two workers' events can
# appear out of id order. Each catch-up looks this many ids behind the last one relayed, skipping
# those it relayed already, so a late commit is still relayed (once).
_LOOK_BACK = 200

_log = get_logger(__name__)


class DatabaseReporter:
    """A worker's `RunReporter`: progress and reports stored as run events, and the bot woken."""

    def __init__(self, db: Connection, runs: RunService, actor: str) -> None:
        self._db = db
        self._runs = runs
        self._actor = actor

    async def progress(self, run: Run, lines: list[str]) -> None:
        await self._runs.event(run.id, PROGRESS_EVENT, actor=self._actor, detail={"lines": lines})
        await queries.notify_run(self._db, run.id)

    async def report(self, run: Run, text: str, *, diff: str | None = None) -> None:
        detail = {"text": text} if diff is None else {"text": text, "diff": diff}
        await self._runs.event(run.id, REPORT_EVENT, actor=self._actor, detail=detail)
        await queries.notify_run(self._db, run.id)


class RunEventRelay:
    """The bot's side: relays the workers' progress and reports to `reporter()` (a daemon: `run`)."""

    def __init__(
        self,
        url: str,
        db: Connection,
        runs: RunService,
        reporter: Callable[[], RunReporter | None],
        *,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._url = url
        self._db = db
        self._runs = runs
        self._reporter = reporter  # read on each event: the cog sets improve.reporter once it loads
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._lock = asyncio.Lock()
        self.last_event_id: int | None = None
        self._relayed: set[int] = set()  # ids relayed within the look-back window
        self._floor = 0  # the mark this relay started from: what is below it was relayed before
        self.connections = 0  # how many times the LISTEN connection was (re)established
        self.listening = asyncio.Event()  # set once listening and caught up

    async def run(self) -> None:
        """Listen, relay, and reconnect with a growing delay whenever the connection is lost."""
        import psycopg  # only a bot on PostgreSQL relays: SQLite never loads the driver

        delay = self._backoff_s
        # Where to go on from is read from the database at each start: after a spell as follower
        # another process's relay has moved it on.
        self.last_event_id = None
        while True:
            try:
                async with listening(self._url) as payloads:
                    self.connections += 1
                    delay = self._backoff_s
                    await self.catch_up()  # what was written while no one listened
                    # Only now: on a first start the catch-up fixes where "news" begins, and an event
                    # written before that would count as history.
                    self.listening.set()
                    async for _ in payloads:
                        await self.catch_up()
                raise psycopg.OperationalError("the LISTEN connection ended")
            except Exception as exc:  # lost connection or database trouble: retry, never give up
                self.listening.clear()
                _log.warning("run_relay_disconnected", error=f"{type(exc).__name__}: {exc}", retry_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff_s)

    async def catch_up(self) -> int:
        """Relay every progress/report event written since the last one relayed; how many."""
        relayed = 0
        async with self._lock:
            if self.last_event_id is None:
                stored = await queries.get_setting(self._db, _LAST_RELAYED_KEY)
                # First start: what happened before this relay existed is history, not news.
                self.last_event_id = (
                    int(stored) if stored is not None else await queries.last_event_id(self._db)
                )
                await queries.set_setting(self._db, _LAST_RELAYED_KEY, self.last_event_id)
                self._floor = self.last_event_id
            while True:
                start = max(self.last_event_id - _LOOK_BACK, self._floor)
                found = await queries.events_after(self._db, start, _RELAYED, limit=500)
                events = [event for event in found if int(event["id"]) not in self._relayed]
                reporter = self._reporter()
                if not events or reporter is None:  # no chat side yet: the events wait for it
                    break
                for event in events:
                    await self._deliver(reporter, event)
                    self._relayed.add(int(event["id"]))
                    self.last_event_id = max(self.last_event_id, int(event["id"]))
                    await queries.set_setting(self._db, _LAST_RELAYED_KEY, self.last_event_id)
                    relayed += 1
                floor = self.last_event_id - _LOOK_BACK
                self._relayed = {event_id for event_id in self._relayed if event_id > floor}
        return relayed

    async def _deliver(self, reporter: RunReporter, event: dict[str, Any]) -> None:
        run = await self._runs.get(int(event["run_id"]))
        detail = event["detail"]
        try:
            if event["event"] == PROGRESS_EVENT:
                await reporter.progress(run, [str(line) for line in detail.get("lines", [])])
            else:
                diff = detail.get("diff")
                await reporter.report(
                    run, str(detail.get("text", "")), diff=diff if isinstance(diff, str) else None
                )
        except Exception:  # as in-process: a chat failure is logged, never retried into a duplicate
            _log.exception("relayed report failed", run_id=run.id, event_id=event["id"])
