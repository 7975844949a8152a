"""Dev mode: while a developer works on the bot by hand, the bot does not start work of its own.

It is on when someone switched it on with `/devmode on [duration]` (persisted in `dev_mode`, so
it survives a restart; a duration ends it on the bot's clock, with nothing to wake up), and
whenever the live checkout has uncommitted edits to tracked files — the same test the deploy
uses before it fast-forwards (`Merger.live_checkout_problem`). `DevMode.active()` answers
`(on, why)`; autonomous runs consult it and say why they wait. Requested runs ignore it: a
developer who asks for a run in dev mode means it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import msgspec

from mendbot.db import devmode as queries
from mendbot.db.core import Connection
from mendbot.features.reminders import ReminderError, parse_delay
from mendbot.kernel.errors import UserError
from mendbot.kernel.git import git
from mendbot.kernel.log import get_logger

__all__ = ["DevMode", "DevModeError", "DevModeState", "DevModeStatus", "parse_duration"]

_log = get_logger(__name__)
_MAX = timedelta(days=30)
_SHOWN_FILES = 5


class DevModeError(UserError):
    """A dev mode request that cannot be done as asked; the message says what works."""


def parse_duration(text: str) -> timedelta:
    """`30m`, `2h`, `1d` → a timedelta of at least a minute and at most 30 days."""
    try:
        duration = parse_delay(text)
    except ReminderError:
        duration = timedelta(0)
    if not timedelta(minutes=1) <= duration <= _MAX:
        raise DevModeError(
            f"`{text[:30]}` isn't a duration for dev mode: use e.g. `30m`, `2h` or `1d` (at most 30d), "
            "or none to stay on until `/devmode off`."
        )
    return duration


class DevModeState(NamedTuple):
    active: bool
    reason: str


class DevModeStatus(msgspec.Struct, frozen=True):
    """Everything that makes dev mode on or off right now."""

    manual_by: int | None  # who switched it on, while that switch is in force
    manual_since: datetime | None
    manual_until: datetime | None
    hand_edits: list[str]  # tracked files with uncommitted changes in the live checkout

    @property
    def active(self) -> bool:
        return self.manual_by is not None or bool(self.hand_edits)

    @property
    def reason(self) -> str:
        reasons = []
        if self.manual_by is not None:
            until = f" until {self.manual_until:%Y-%m-%d %H:%M} UTC" if self.manual_until else ""
            reasons.append(f"<@{self.manual_by}> switched dev mode on{until}")
        if self.hand_edits:
            shown = ", ".join(self.hand_edits[:_SHOWN_FILES])
            more = len(self.hand_edits) - _SHOWN_FILES
            shown += f" and {more} more" if more > 0 else ""
            reasons.append(f"the live checkout has uncommitted hand edits ({shown})")
        return "; ".join(reasons) or "dev mode is off"


class DevMode:
    def __init__(self, db: Connection, repo_root: Path, clock: Callable[[], datetime]) -> None:
        self._db = db
        self.repo_root = repo_root
        self._clock = clock

    async def active(self) -> DevModeState:
        """(on, why): the question an autonomous run asks before it starts."""
        status = await self.status()
        return DevModeState(status.active, status.reason)

    async def status(self) -> DevModeStatus:
        now = self._clock().timestamp()
        switch = await queries.latest(self._db)
        manual = switch is not None and switch.active and (switch.until is None or now < switch.until)
        return DevModeStatus(
            manual_by=switch.user_id if manual and switch is not None else None,
            manual_since=_time(switch.ts) if manual and switch is not None else None,
            manual_until=_time(switch.until) if manual and switch is not None else None,
            hand_edits=await self.hand_edits(),
        )

    async def switch(self, user_id: int, *, on: bool, duration: str | None = None) -> DevModeStatus:
        """Switch dev mode on (for `duration`, else until switched off) or off; returns the new status."""
        if duration is not None and not on:
            raise DevModeError("A duration goes with `/devmode on`, e.g. `/devmode on 2h`.")
        now = self._clock()
        until = now + parse_duration(duration) if duration is not None else None
        await queries.insert(
            self._db,
            ts=now.timestamp(),
            user_id=user_id,
            active=on,
            until=until.timestamp() if until is not None else None,
        )
        _log.info("dev mode switched", user_id=user_id, on=on, until=until.isoformat() if until else None)
        return await self.status()

    async def hand_edits(self) -> list[str]:
        """Tracked files with uncommitted changes in the live checkout (none if it is not a git checkout)."""
        result = await git(self.repo_root, "status", "--porcelain", "--untracked-files=no", check=False)
        if result.code != 0 or result.timed_out:
            _log.debug("dev mode cannot read the live checkout", repo_root=str(self.repo_root))
            return []
        return [line[3:] for line in result.output.splitlines() if line.strip()]


def _time(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None
