"""The self-audit: asked for a period, and when it looks by itself.

`AuditService.report(period, commands)` is the `AuditReport` on the period up to now
(`mendbot.observe.audit_report`, loaded with the first audit, says what it holds);
`AuditService.highest_impact(period)` names the one item most worth fixing — the hook an autonomous
`propose` level starts a run from. Rendering lives in `audit_render` (text) and `audit_charts` (PNG).

`AuditSchedule` fires a callback at each time `audit.schedule` (cron syntax, read by croniter in
`audit.timezone`) names. It is one task sleeping on the event loop until the next fire time of
the bot's clock — no thread, no polling — so a virtual clock drives it in tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from mendbot.db import core
from mendbot.features.reminders import ReminderError, parse_delay
from mendbot.kernel.errors import UserError
from mendbot.kernel.log import get_logger
from mendbot.kernel.sections import AuditConfig

if TYPE_CHECKING:
    from mendbot.observe.audit_report import AuditFinding, AuditReport

__all__ = ["AuditError", "AuditSchedule", "AuditService", "parse_period"]

_log = get_logger(__name__)


class AuditError(UserError):
    """An audit that cannot be made as asked; the message says what works."""


def parse_period(text: str, max_hours: int) -> timedelta:
    """`24h`, `7d`, `1d12h` → a timedelta of at least an hour and at most `max_hours`."""
    try:
        period = parse_delay(text)
    except ReminderError:
        period = timedelta(0)
    if not timedelta(hours=1) <= period <= timedelta(hours=max_hours):
        raise AuditError(
            f"`{text[:30]}` isn't a period I can audit: use e.g. `24h` or `7d` "
            f"(at least 1h, at most {max_hours // 24}d — older records are not kept)."
        )
    return period


class AuditService:
    """Audits over their own database connection: a report reads for seconds on a large table, and
    the bot's shared connection (one thread, one statement at a time) must keep serving meanwhile."""

    def __init__(self, database: Path | str, config: AuditConfig, clock: Callable[[], datetime]) -> None:
        self._database = database  # the SQLite file or PostgreSQL URL
        self.config = config
        self._clock = clock
        self.schedule = AuditSchedule(config.schedule, config.timezone, clock)

    @property
    def default_period(self) -> timedelta:
        return timedelta(hours=self.config.period_hours)

    async def report(self, period: timedelta, commands: Collection[str] = ()) -> AuditReport:
        """Audit the `period` up to now, now included; `commands` are the loaded bot's command kinds."""
        from mendbot.observe.audit_report import read_report  # with the queries, at the first audit

        # Periods are half-open; an action stamped this very instant (a clock that stands still between
        # events, as the playground's does) belongs to the audit asked for now.
        end = self._clock() + timedelta(microseconds=1)
        db = await core.connect(self._database)  # SQLite in WAL mode: reads alongside the bot's writes
        try:
            return await read_report(db, self.config, end - period, end, commands)
        finally:
            await db.close()

    async def highest_impact(self, period: timedelta | None = None) -> AuditFinding | None:
        """The item most worth fixing over `period` (default: the configured one), for a proposal."""
        return (await self.report(period or self.default_period)).highest_impact()


class AuditSchedule:
    """Calls back at every fire time of a cron expression, on the bot's clock."""

    def __init__(self, expression: str | None, timezone: str, clock: Callable[[], datetime]) -> None:
        self.expression = expression
        self._timezone = timezone
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.next_at: datetime | None = None

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire time strictly after `after` (UTC), or None without a schedule."""
        if not self.expression:
            return None
        # Loaded only when a schedule is configured: croniter (~1 MiB with dateutil), zoneinfo (~3 ms).
        from zoneinfo import ZoneInfo

        from croniter import croniter

        nxt = croniter(self.expression, after.astimezone(ZoneInfo(self._timezone))).get_next(datetime)
        assert isinstance(nxt, datetime)
        return nxt.astimezone(UTC)

    def start(self, fire: Callable[[], Awaitable[None]]) -> bool:
        """Start calling `fire` at each fire time; False when no schedule is configured."""
        self.stop()
        if not self.expression:
            return False
        self._task = asyncio.get_running_loop().create_task(self._run(fire), name="audit-schedule")
        return True

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.next_at = None

    async def _run(self, fire: Callable[[], Awaitable[None]]) -> None:
        while True:
            due = self.next_fire(self._clock())
            if due is None:
                return
            self.next_at = due
            # The loop's timer and the clock can disagree by a hair: wake until the clock agrees.
            while (delay := (due - self._clock()).total_seconds()) > 0:  # noqa: ASYNC110 - a timer, not a flag
                await asyncio.sleep(delay)
            _log.info("scheduled audit due", due=due.isoformat())
            try:
                await fire()
            except Exception:
                # One failed audit must not end the schedule: the next fire time gets its chance.
                _log.exception("scheduled audit failed", due=due.isoformat())
