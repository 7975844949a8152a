"""Incidents: what the detector's signals become, deduplicated, persisted and announced.

One storm is one incident and one announcement: a signal attaches to an active incident with
the same fingerprint (else, for kind-wide rules, the same kind), escalating its level and
adding its rule; an incident resolved less than `cooldown_s` ago is reopened rather than
announced again. Failing actions that match an incident update it ("seen 37 times, 4
users") and the announcement is edited in place — one edit in flight per incident, so a storm
coalesces instead of queueing hundreds of edits.

In-memory state changes synchronously as records arrive; the database and Discord are
updated by tasks, so recording never waits for either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import aiosqlite

from bot.db import actions as action_queries
from bot.db import incidents as queries
from bot.errors import UserError
from bot.log import get_logger
from bot.observe.detector import Signal
from bot.observe.records import ActionRecord
from bot.settings import ObserveConfig

__all__ = ["Announcer", "Incident", "IncidentError", "IncidentService"]

_log = get_logger(__name__)
_LEVELS = {"notice": 0, "warning": 1, "error": 2}
_MAX_USERS = 1000
State = Literal["open", "acknowledged", "resolved", "muted"]


class IncidentError(UserError):
    """An incident operation that cannot be done; the message says why."""


@dataclass
class Incident:
    rule: str
    rules: list[str]
    level: str
    kind: str
    fingerprint: str | None
    state: State
    summary: str
    first_seen: float
    last_seen: float
    count: int
    user_ids: set[int]
    sample: dict[str, Any]
    id: int | None = None
    channel_id: int | None = None
    message_id: int | None = None
    closed_at: float | None = None
    closed_by: int | None = None
    dirty: bool = False
    flushing: bool = False
    created: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def active(self) -> bool:
        return self.state != "resolved"

    def row(self, now: float) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "rules": self.rules,
            "level": self.level,
            "kind": self.kind,
            "fingerprint": self.fingerprint,
            "state": self.state,
            "summary": self.summary,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "count": self.count,
            "user_ids": sorted(self.user_ids)[:_MAX_USERS],
            "sample": self.sample,
            "channel_id": self.channel_id,
            "message_id": self.message_id,
            "updated_at": now,
            "closed_at": self.closed_at,
            "closed_by": self.closed_by,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Incident:
        incident = cls(
            rule=row["rule"],
            rules=row["rules"],
            level=row["level"],
            kind=row["kind"],
            fingerprint=row["fingerprint"],
            state=row["state"],
            summary=row["summary"],
            first_seen=row["first_seen"],
            last_seen=row["last_seen"],
            count=row["count"],
            user_ids=set(row["user_ids"]),
            sample=row["sample"],
            id=row["id"],
            channel_id=row["channel_id"],
            message_id=row["message_id"],
            closed_at=row["closed_at"],
            closed_by=row["closed_by"],
        )
        incident.created.set()
        return incident


class Announcer(Protocol):
    """Posts and edits incident announcements (the Discord side lives in a cog)."""

    async def announce(self, incident: Incident) -> tuple[int, int] | None: ...

    async def update(self, incident: Incident) -> None: ...


def _sample(record: ActionRecord) -> dict[str, Any]:
    return {
        "kind": record.kind,
        "error_type": record.error_type,
        "error_message": record.error_message,
        "frames": record.frames[-3:],
        "duration_ms": record.duration_ms,
        "ts": record.ts,
    }


class IncidentService:
    def __init__(
        self, db: aiosqlite.Connection, config: ObserveConfig, clock: Callable[[], datetime]
    ) -> None:
        self._db = db
        self._config = config
        self._clock = clock
        self._incidents: list[Incident] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.announcer: Announcer | None = None

    def now(self) -> float:
        return self._clock().timestamp()

    async def load(self) -> int:
        """Load active and recently resolved incidents; returns how many are active."""
        rows = await queries.active_or_recent(self._db, self.now() - self._config.cooldown_s)
        self._incidents = [Incident.from_row(row) for row in rows]
        return sum(1 for incident in self._incidents if incident.active)

    # -- fed by the recorder, synchronously -----------------------------------------------------

    def observe(self, record: ActionRecord) -> None:
        """Count a failing action against the active incident it belongs to, if any."""
        if record.ok:
            return
        incident = self._match(record.fingerprint, record.kind, active_only=True)
        if incident is None:
            return
        incident.count += 1
        incident.last_seen = record.ts
        if record.user_id is not None and len(incident.user_ids) < _MAX_USERS:
            incident.user_ids.add(record.user_id)
        incident.sample = _sample(record)
        self._changed(incident)

    def on_signal(self, signal: Signal) -> None:
        horizon = self.now() - self._config.cooldown_s  # forget incidents resolved long ago
        self._incidents = [i for i in self._incidents if i.active or (i.closed_at or 0) >= horizon]
        incident = self._match(signal.fingerprint, signal.kind, active_only=False)
        if incident is None:
            self._open(signal)
            return
        if signal.rule not in incident.rules:
            incident.rules.append(signal.rule)
        if _LEVELS[signal.level] > _LEVELS[incident.level]:
            incident.level = signal.level
            incident.summary = signal.summary
        if incident.state == "resolved":  # back within the cooldown: reopen, don't re-announce
            incident.state = "open"
            incident.closed_at = incident.closed_by = None
            incident.summary = signal.summary
        self._changed(incident)

    def _match(self, fingerprint: str | None, kind: str, *, active_only: bool) -> Incident | None:
        horizon = self.now() - self._config.cooldown_s
        candidates = [
            incident
            for incident in reversed(self._incidents)
            if incident.active or (not active_only and (incident.closed_at or 0) >= horizon)
        ]
        if fingerprint is not None:
            for incident in candidates:
                if incident.fingerprint == fingerprint:
                    return incident
        for incident in candidates:
            if incident.kind == kind and (incident.fingerprint is None or "error_rate" in incident.rules):
                return incident
        return None

    # -- persistence and announcements, in tasks ------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _open(self, signal: Signal) -> None:
        incident = Incident(
            rule=signal.rule,
            rules=[signal.rule],
            level=signal.level,
            kind=signal.kind,
            fingerprint=signal.fingerprint,
            state="open",
            summary=signal.summary,
            first_seen=signal.sample.ts,
            last_seen=signal.sample.ts,
            count=signal.count,
            user_ids={signal.sample.user_id} if signal.sample.user_id is not None else set(),
            sample=_sample(signal.sample),
        )
        self._incidents.append(incident)
        self._spawn(self._create(incident))

    async def _create(self, incident: Incident) -> None:
        try:
            incident.id = await queries.insert(self._db, incident.row(self.now()))
            _log.warning(
                "incident opened",
                incident_id=incident.id,
                kind=incident.kind,
                rule=incident.rule,
                summary=incident.summary,
            )
            if self.announcer is not None:
                where = await self.announcer.announce(incident)
                if where is not None:
                    incident.channel_id, incident.message_id = where
                    await queries.update(
                        self._db, incident.id, {"channel_id": where[0], "message_id": where[1]}
                    )
        finally:
            incident.created.set()
        if incident.dirty:
            self._changed(incident)

    def _changed(self, incident: Incident) -> None:
        incident.dirty = True
        if incident.created.is_set() and not incident.flushing:
            incident.flushing = True  # claimed now, so a burst of changes spawns one flush
            self._spawn(self._flush(incident))

    async def _flush(self, incident: Incident) -> None:
        """Write and re-announce until no change is left; one flush per incident at a time."""
        incident.flushing = True
        try:
            while incident.dirty and incident.id is not None:
                incident.dirty = False
                await queries.update(self._db, incident.id, incident.row(self.now()))
                if self.announcer is not None and incident.message_id is not None:
                    await self.announcer.update(incident)
        finally:
            incident.flushing = False

    async def quiesce(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- queries and commands -------------------------------------------------------------------

    def active(self) -> list[Incident]:
        return sorted(
            (i for i in self._incidents if i.active and i.id is not None),
            key=lambda incident: incident.last_seen,
            reverse=True,
        )

    def get(self, incident_id: int) -> Incident:
        for incident in self._incidents:
            if incident.id == incident_id:
                return incident
        raise IncidentError(f"There is no open incident #{incident_id}. `/incidents` lists them.")

    async def fetch(self, incident_id: int) -> Incident:
        """An incident by id, including resolved ones that are no longer in memory."""
        try:
            return self.get(incident_id)
        except IncidentError:
            row = await queries.by_id(self._db, incident_id)
            if row is None:
                raise IncidentError(f"There is no incident #{incident_id}.") from None
            return Incident.from_row(row)

    def by_message(self, message_id: int) -> Incident | None:
        return next((i for i in self._incidents if i.message_id == message_id), None)

    async def samples(self, incident: Incident, limit: int = 5) -> list[ActionRecord]:
        return await action_queries.recent_failures(
            self._db,
            kind=incident.kind,
            fingerprint=incident.fingerprint,
            since=incident.first_seen,
            limit=limit,
        )

    async def set_state(self, incident_id: int, state: State, user_id: int) -> Incident:
        incident = self.get(incident_id) if state != "open" else await self.fetch(incident_id)
        if incident.state == state:
            raise IncidentError(f"Incident #{incident_id} is already {state}.")
        incident.state = state
        if state == "resolved":
            incident.closed_at, incident.closed_by = self.now(), user_id
        _log.info("incident state changed", incident_id=incident_id, state=state, user_id=user_id)
        assert incident.id is not None
        await queries.update(self._db, incident.id, incident.row(self.now()))
        self._changed(incident)  # the announcement shows the new state
        return incident

    async def withdraw_request(self, incident_id: int, user_id: int, action: str) -> None:
        await queries.remove_request(self._db, incident_id=incident_id, user_id=user_id, action=action)

    async def request(self, incident_id: int, user_id: int, action: str, via: str) -> bool:
        """Record a 🔍/🛠 request on an incident; False if the same user already asked."""
        await self.fetch(incident_id)
        return await queries.add_request(
            self._db, incident_id=incident_id, user_id=user_id, action=action, via=via, at=self.now()
        )
