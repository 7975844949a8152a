"""Reminders: persisted in SQLite, scheduled in memory, fired exactly once — also across restarts.

Each pending reminder gets one task that sleeps until it is due. A reminder is claimed in the
database (`fired_at` set where it was NULL) before it is delivered, so a restart, a reload or
two schedulers can never deliver it twice.

Saving goes through `mendbot.db.retry`: a locked or full database is retried within a bound, and
when it still fails the user is told "I couldn't save that — try again in a moment" (the row was
never written, so nothing is half-saved). A claim that cannot be written leaves the reminder
pending and tries again later: a storage fault delays a reminder, it never loses one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from mendbot.db import reminders as queries
from mendbot.db.core import Connection
from mendbot.db.reminders import Reminder
from mendbot.db.retry import StorageUnavailable, Writes
from mendbot.kernel.errors import UserError
from mendbot.kernel.log import get_logger

__all__ = ["MAX_DELAY", "Reminder", "ReminderError", "ReminderService", "parse_delay"]

MAX_DELAY = timedelta(days=365)
_PART = re.compile(r"(\d+)\s*(w|d|h|m|s)", re.IGNORECASE)
_UNIT = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_log = get_logger(__name__)

Deliver = Callable[[Reminder, bool], Awaitable[None]]


class ReminderError(UserError, ValueError):
    """The request cannot become a reminder; the message says why and what works."""


def parse_delay(text: str) -> timedelta:
    """`10m`, `1h30m`, `2d`, `90s`, `1w` → a timedelta."""
    compact = text.replace(" ", "").lower()
    parts = _PART.findall(compact)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != compact:
        raise ReminderError(f"`{text[:30]}` isn't a duration. Try `10m`, `1h30m`, `2d` or `90s`.")
    # Bounds are checked on the integer: a timedelta of 99999999999999 days overflows.
    seconds = sum(int(n) * _UNIT[u] for n, u in parts)
    if seconds <= 0:
        raise ReminderError("The reminder has to be at least one second away.")
    if seconds > MAX_DELAY.total_seconds():
        raise ReminderError("I can remind you at most a year ahead.")
    return timedelta(seconds=seconds)


class ReminderService:
    def __init__(
        self,
        db: Connection,
        clock: Callable[[], datetime],
        *,
        writes: Writes | None = None,
        claim_retry_s: float = 30.0,
    ) -> None:
        self._db = db
        self._clock = clock
        self._writes = writes or Writes()
        self._claim_retry_s = claim_retry_s
        self._deliver: Deliver | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}

    async def start(self, deliver: Deliver) -> int:
        """Schedule every pending reminder (overdue ones fire at once); returns how many."""
        self._deliver = deliver
        pending = await queries.pending(self._db)
        for reminder in pending:
            self._schedule(reminder)
        return len(pending)

    def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
        self._deliver = None

    async def create(
        self, *, guild_id: int | None, channel_id: int, user_id: int, when: str, text: str
    ) -> Reminder:
        text = text.strip()
        if not text:
            raise ReminderError("Tell me what to remind you of.")
        if len(text) > 1000:
            raise ReminderError("Keep the reminder under 1000 characters.")
        now = self._clock()
        due_at = now + parse_delay(when)
        reminder = await self._writes(
            lambda: queries.insert(
                self._db,
                guild_id=guild_id,
                channel_id=channel_id,
                user_id=user_id,
                text=text,
                created_at=now,
                due_at=due_at,
            ),
            what="reminder",
        )
        if self._deliver is not None:
            self._schedule(reminder)
        return reminder

    @property
    def scheduled(self) -> int:
        return len(self._tasks)

    def _schedule(self, reminder: Reminder) -> None:
        task = asyncio.create_task(self._fire_when_due(reminder), name=f"reminder-{reminder.id}")
        self._tasks[reminder.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(reminder.id, None))

    async def _fire_when_due(self, reminder: Reminder) -> None:
        delay = (reminder.due_at - self._clock()).total_seconds()
        late = delay < -60
        if delay > 0:
            await asyncio.sleep(delay)
        while True:
            try:
                claimed = await self._writes(
                    lambda: queries.claim(self._db, reminder.id, self._clock()), what="reminder claim"
                )
                break
            except StorageUnavailable:
                _log.warning("reminder not claimed: storage failing, trying later", reminder_id=reminder.id)
                await asyncio.sleep(self._claim_retry_s)
        if not claimed:
            return
        deliver = self._deliver
        if deliver is None:
            return
        try:
            await deliver(reminder, late)
        except Exception as exc:
            await queries.mark_failed(self._db, reminder.id, f"{type(exc).__name__}: {exc}")
            _log.error("reminder delivery failed", reminder_id=reminder.id, exc_info=exc)
            raise
