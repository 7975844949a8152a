"""Incidents: what the detector's signals become, deduplicated, persisted and announced.

One storm is one incident and one announcement: a signal attaches to an active incident with the same
fingerprint (else, for kind-wide rules, the same kind), escalating its level and adding its rule; an
incident resolved less than `cooldown_s` ago is reopened rather than announced again. Failing actions
that match an incident update it ("seen 37 times, 4 users": `counted_as` says which, a handler's timeout
on a call to another service being that service's) and the announcement is edited in place — one edit
in flight per incident, so a storm coalesces instead of queueing hundreds of edits.

In-memory state changes synchronously as records arrive; the database and Discord are
updated by tasks, so recording never waits for either.

An incident's `category` is "code" (a rule fired on the bot's own failures: 🔍/🛠 offered) or
"environment": something outside the code — a locked or full database, Discord refusing a call
for a missing permission, a deleted message, an outage. Environment incidents are opened by
`environment()` with a `need` ("I need Send Messages in #general"), announced without fix
buttons, refused by every fix/investigate path (`refusal()`), and cleared by
`clear_environment()` when the condition is over. A storage incident is announced even while
its own row cannot be written; the row is written once storage works again.

A code incident that opens, or whose level rises, is handed to `on_raised` (never a reopening):
that is where the bot's own runs start (bot/improve/autonomy.py), and `annotate()` is how it says
in the announcement what it did ("Investigating — run #7", then the root cause).

The incident itself, and the Announcer that posts it, are in bot/observe/incident.py.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mendbot.db import actions as action_queries
from mendbot.db import incidents as queries
from mendbot.db.core import Connection
from mendbot.db.records import ActionRecord
from mendbot.db.retry import Fault, StorageState, StorageUnavailable, Writes, storage_fault
from mendbot.kernel.errors import UserError
from mendbot.kernel.log import get_logger
from mendbot.kernel.sections import ObserveConfig
from mendbot.observe.detector import Signal
from mendbot.observe.incident import _MAX_USERS, Announcer, Incident, State
from mendbot.observe.outbound import counted_as
from mendbot.observe.storage_words import is_fault, record_loss_words, storage_words

if TYPE_CHECKING:
    from mendbot.observe.recorder import RecordLoss

__all__ = ["IncidentError", "IncidentService"]

_log = get_logger(__name__)
_LEVELS = {"notice": 0, "warning": 1, "error": 2}
_MAX_RECURRED = 10_000  # failures kept for a resolved incident (a storm reopens it long before)
# What a state change may change (a reopening counts the failures since): put back if it is not saved.
_STATE_CHANGES = ("state", "closed_at", "closed_by", "count", "last_seen", "user_ids", "sample", "recurred")
STORAGE_KEY = "env:storage"
RECORDS_KEY = "env:records"


class IncidentError(UserError):
    """An incident operation that cannot be done; the message says why."""


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
        self,
        db: Connection,
        config: ObserveConfig,
        clock: Callable[[], datetime],
        *,
        database: Path | str | None = None,
        writes: Writes | None = None,
        action_log: Path | None = None,
    ) -> None:
        self._action_log = action_log  # the NDJSON copy of every action record, named in storage incidents
        self._db = db
        self._writes = writes or Writes()  # a locked database is waited out, not a lost change
        self._database = database  # the SQLite file or PostgreSQL URL, named in storage incidents
        self._config = config
        self._clock = clock
        self._incidents: list[Incident] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._announcer: Announcer | None = None
        # Announced incidents that changed while no announcer was there (the cog not loaded yet at a
        # start: storage that works again clears its incident before): updated once one is.
        self._not_shown: list[Incident] = []
        # Told, synchronously, when a code incident opens or its level rises — never when it reopens:
        # the bot's own runs start from here (bot/improve/autonomy.py).
        self.on_raised: Callable[[Incident], None] | None = None

    def now(self) -> float:
        return self._clock().timestamp()

    async def load(self) -> int:
        """Load active and recently resolved incidents; returns how many are active."""
        rows = await queries.active_or_recent(self._db, self.now() - self._config.cooldown_s)
        self._incidents = [Incident.from_row(row) for row in rows]
        return sum(1 for incident in self._incidents if incident.active)

    async def refresh(self) -> None:
        """Take in what other processes sharing the database wrote (PostgreSQL: bot/scale/cluster.py).

        Incidents opened elsewhere are added; one changed elsewhere after this process last wrote
        it (resolved by a follower's command, announced by the leader) is replaced by the stored
        row — unless this process has a change of its own in flight, which is written next.
        """
        if any(incident.id is None and not incident.created.is_set() for incident in self._incidents):
            return  # an insert of ours in flight: its row must not come back as another incident
        rows = await queries.active_or_recent(self._db, self.now() - self._config.cooldown_s)
        known: dict[int | None, Incident] = {i.id: i for i in self._incidents if i.id is not None}
        for row in rows:
            stored = Incident.from_row(row)
            mine = known.get(stored.id)
            if mine is None:
                self._incidents.append(stored)
            elif not (mine.dirty or mine.flushing) and stored.saved_at > mine.saved_at:
                mine.take(stored)

    async def announce_unannounced(self) -> int:
        """Announce stored code incidents that have no announcement yet; returns how many.

        A leader that died between an incident's row and its announcement left one such: the
        next leader announces it (once: the announcement's message id is stored with the row).
        """
        announced = 0
        for incident in list(self._incidents):
            if incident.category != "code" or not incident.active or incident.id is None:
                continue
            if incident.message_id is not None or self.announcer is None:
                continue
            # The row decides, not this process's copy: a copy taken before the previous leader's
            # announcement was stored does not have it.
            stored = await queries.by_id(self._db, incident.id)
            if stored is not None and stored.get("message_id") is not None:
                incident.channel_id, incident.message_id = stored["channel_id"], stored["message_id"]
                continue
            where = await self.announcer.announce(incident)
            if where is not None:
                await self._announced(incident, where)
                announced += 1
        return announced

    async def _announced(self, incident: Incident, where: tuple[int, int]) -> None:
        """Store where the incident was announced, as a change of its row (newer `updated_at`), so
        every process's next refresh takes it in."""
        incident.channel_id, incident.message_id = where
        if incident.id is not None:
            await self._write(
                incident, {"channel_id": where[0], "message_id": where[1], "updated_at": self.now()}
            )

    def open_storage_fault(self) -> Fault | None:
        """The fault of a storage incident still open from before a restart (None if there is none)."""
        for incident in self._incidents:
            if incident.category == "environment" and incident.fingerprint == STORAGE_KEY and incident.active:
                fault = incident.sample.get("fault")
                return fault if is_fault(fault) else "io"
        return None

    # -- fed by the recorder, synchronously -----------------------------------------------------

    def observe(self, record: ActionRecord) -> None:
        """Count a failing action against the active incident it belongs to, if any; one that belongs
        to an incident resolved within the cooldown is kept for it, and counted if it reopens."""
        if record.ok or record.extra.get("environment"):
            return  # environment failures belong to environment incidents, opened by `environment()`
        incident = self._match(*counted_as(record), active_only=True)
        if incident is None:
            resolved = self._match(*counted_as(record), active_only=False)
            if resolved is not None and len(resolved.recurred) < _MAX_RECURRED:
                resolved.recurred.append(record)
            return
        self._count(incident, record)
        self._changed(incident)

    @staticmethod
    def _count(incident: Incident, record: ActionRecord) -> None:
        incident.count += 1
        incident.last_seen = max(incident.last_seen, record.ts)
        if record.user_id is not None and len(incident.user_ids) < _MAX_USERS:
            incident.user_ids.add(record.user_id)
        incident.sample = _sample(record)

    def _reopen(self, incident: Incident) -> None:
        """Open a resolved incident again, counting the failures seen since it was resolved: the one
        place a reopening changes state, so its count and last seen follow whatever reopened it (a
        rule firing again, the watch, a person)."""
        incident.state = "open"
        incident.closed_at = incident.closed_by = None
        for record in incident.recurred:
            self._count(incident, record)
        incident.recurred = []

    def on_signal(self, signal: Signal) -> None:
        horizon = self.now() - self._config.cooldown_s  # forget incidents resolved long ago
        self._incidents = [i for i in self._incidents if i.active or (i.closed_at or 0) >= horizon]
        incident = self._match(signal.fingerprint, signal.kind, active_only=False)
        if incident is None:
            self._raised(self._open(signal))
            return
        if signal.rule not in incident.rules:
            incident.rules.append(signal.rule)
        raised = _LEVELS[signal.level] > _LEVELS[incident.level]
        if raised:
            incident.level = signal.level
            incident.summary = signal.summary
        reopened = incident.state == "resolved"
        if reopened:  # back within the cooldown: reopen, don't re-announce
            self._reopen(incident)
            incident.summary = signal.summary
        self._changed(incident)
        if raised and not reopened:
            self._raised(incident)

    def _raised(self, incident: Incident) -> None:
        if self.on_raised is not None:
            self.on_raised(incident)

    def _match(self, fingerprint: str | None, kind: str, *, active_only: bool) -> Incident | None:
        horizon = self.now() - self._config.cooldown_s
        candidates = [
            incident
            for incident in reversed(self._incidents)
            if incident.category == "code"
            and (incident.active or (not active_only and (incident.closed_at or 0) >= horizon))
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
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("incident bookkeeping failed", exc_info=exc)

    def _open(self, signal: Signal) -> Incident:
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
        return incident

    async def _create(self, incident: Incident) -> None:
        try:
            await self._insert(incident)
            _log.warning(
                "incident opened",
                incident_id=incident.id,
                kind=incident.kind,
                rule=incident.rule,
                summary=incident.summary,
                announced=self.announcer is not None,  # the dev channel says so: not again in the playground
            )
            if self.announcer is not None:
                where = await self.announcer.announce(incident)
                if where is not None:
                    await self._announced(incident, where)
        finally:
            incident.created.set()
        if incident.dirty:
            self._changed(incident)

    async def _insert(self, incident: Incident) -> None:
        """Give the incident its row (and id). An environment incident whose storage is failing
        stays in memory and is announced anyway; its row is written when storage works again."""
        row = incident.row(self.now())
        try:
            incident.id = await queries.insert(self._db, row)
            incident.saved_at = row["updated_at"]
        except Exception as exc:
            if incident.category != "environment" or storage_fault(exc) is None:
                raise
            _log.warning("environment incident not saved yet", kind=incident.kind, error=str(exc))

    async def _write(self, incident: Incident, values: dict[str, Any]) -> bool:
        """Update the incident's row; False when storage is failing (the incident is marked
        unsaved and written again when storage works). A code incident's write is retried first;
        an environment incident's is not, since it is how storage trouble gets reported."""
        incident_id = incident.id
        assert incident_id is not None
        saved_at = values.get("updated_at", incident.saved_at)
        try:
            if incident.category == "environment":
                await queries.update(self._db, incident_id, values)
            else:
                await self._writes(lambda: queries.update(self._db, incident_id, values), what="incident")
        except StorageUnavailable as exc:
            _log.warning(
                "incident not saved yet: storage is failing", incident_id=incident_id, error=str(exc)
            )
        except Exception as exc:
            if incident.category != "environment" or storage_fault(exc) is None:
                raise
            _log.warning("environment incident not saved yet", incident_id=incident_id, error=str(exc))
        else:
            incident.unsaved = False
            incident.saved_at = saved_at
            return True
        incident.unsaved = True
        return False

    @property
    def announcer(self) -> Announcer | None:
        """Who posts and edits announcements (the Incidents cog, while it is loaded)."""
        return self._announcer

    @announcer.setter
    def announcer(self, announcer: Announcer | None) -> None:
        self._announcer = announcer
        if announcer is not None:
            missed, self._not_shown = self._not_shown, []
            for incident in missed:
                self._changed(incident)
            # Environment incidents opened before anyone could post them (records the journal could not
            # give back, read at start before the cogs loaded); one still being created posts itself.
            for incident in self._incidents:
                waiting = incident.active and incident.message_id is None and incident.created.is_set()
                if incident.category == "environment" and waiting:
                    self._spawn(self._announce_late(incident))

    async def _announce_late(self, incident: Incident) -> None:
        announcer = self._announcer
        if announcer is None or incident.message_id is not None:
            return
        where = await announcer.announce(incident)
        if where is not None:
            await self._announced(incident, where)

    def _changed(self, incident: Incident) -> None:
        incident.dirty = True
        if incident.created.is_set() and not incident.flushing:
            incident.flushing = True  # claimed now, so a burst of changes spawns one flush
            self._spawn(self._flush(incident))

    async def _flush(self, incident: Incident) -> None:
        """Write and re-announce until no change is left; one flush per incident at a time."""
        incident.flushing = True
        try:
            while incident.dirty:
                incident.dirty = False
                if incident.id is None and incident.category == "environment":
                    await self._insert(incident)
                saved = incident.id is not None and await self._write(incident, incident.row(self.now()))
                if incident.message_id is not None:
                    if self.announcer is not None:
                        where = await self.announcer.update(incident)
                        if where is not None:  # posted again: its old message was gone
                            await self._announced(incident, where)
                    elif incident not in self._not_shown:
                        self._not_shown.append(incident)
                if not saved:
                    break  # storage is failing: the next change (storage writable again) saves it
        finally:
            incident.flushing = False

    async def quiesce(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- environment incidents ------------------------------------------------------------------

    def environment(
        self,
        key: str,
        *,
        kind: str,
        summary: str,
        need: str,
        level: str = "error",
        sample: dict[str, Any] | None = None,
        user_id: int | None = None,
    ) -> Incident:
        """Open (or count again) the environment incident for `key`; announced once, updated in place."""
        now = self.now()
        incident = next(
            (i for i in self._incidents if i.category == "environment" and i.fingerprint == key and i.active),
            None,
        )
        if incident is not None:
            incident.count += 1
            incident.last_seen = now
            if user_id is not None and len(incident.user_ids) < _MAX_USERS:
                incident.user_ids.add(user_id)
            incident.summary, incident.need = summary, need
            self._changed(incident)
            return incident
        incident = Incident(
            rule="environment",
            rules=["environment"],
            level=level,
            kind=kind,
            fingerprint=key,
            state="open",
            summary=summary,
            first_seen=now,
            last_seen=now,
            count=1,
            user_ids={user_id} if user_id is not None else set(),
            sample=sample or {},
            category="environment",
            need=need,
        )
        self._incidents.append(incident)
        self._spawn(self._create(incident))
        return incident

    def clear_environment(self, key: str, note: str) -> Incident | None:
        """The condition behind `key` is over: resolve its incident (the announcement says so)."""
        incident = next(
            (i for i in self._incidents if i.category == "environment" and i.fingerprint == key and i.active),
            None,
        )
        if incident is None:
            return None
        incident.state = "resolved"
        incident.closed_at = self.now()
        incident.summary = f"{incident.summary}\n✅ {note}"
        _log.warning("environment incident cleared", incident_id=incident.id, kind=incident.kind, note=note)
        self._changed(incident)
        return incident

    def on_storage(self, state: StorageState) -> None:
        """StorageHealth listener: a storage fault is one storage incident, cleared when writes work."""
        if state.fault is None:
            self.clear_environment(STORAGE_KEY, "Storage is writable again: writes are going through.")
            for incident in self._incidents:
                if incident.unsaved:
                    self._changed(incident)
            return
        path = str(self._database) if self._database is not None else "the database"
        log = str(self._action_log) if self._action_log is not None else "data/logs/actions.ndjson"
        summary, need = storage_words(state.fault, path, log)
        self.environment(
            STORAGE_KEY,
            kind="storage",
            summary=summary,
            need=need,
            sample={"fault": state.fault, "error_message": state.detail, "ts": state.since},
        )

    def on_record_loss(self, loss: RecordLoss) -> None:
        """ActionRecorder listener: records shed or unreadable are one environment incident, updated in
        place as the counts grow (they never go back: it stays open)."""
        shed = loss.shed
        summary, need = record_loss_words(
            shed, loss.shed_failures, loss.unreadable, str(loss.journal), loss.rewound
        )
        sample = {"shed": sum(shed.values()), "unreadable": loss.unreadable}
        self.environment(
            RECORDS_KEY, kind="records", summary=summary, need=need, level="warning", sample=sample
        )

    @staticmethod
    def refusal(incident: Incident) -> str | None:
        """What to answer a fix/investigate request on an environment incident (None: go ahead)."""
        if incident.category != "environment":
            return None
        name = f"Incident #{incident.id}" if incident.id is not None else "That incident"
        return (
            f"{name} is an environment problem ({incident.kind}), not a bug in my code: a code change "
            f"can't fix it. What it needs: {incident.need or incident.summary}"
        )

    async def refusal_for(self, incident_id: int | None = None, message_id: int | None = None) -> str | None:
        """`refusal()` for an incident named by id or by its announcement; None if it is not one."""
        incident: Incident | None = None
        if message_id is not None:
            incident = self.by_message(message_id)
        elif incident_id is not None:
            try:
                incident = await self.fetch(incident_id)
            except IncidentError:
                return None
        return self.refusal(incident) if incident is not None else None

    # -- queries and commands -------------------------------------------------------------------

    def active(self) -> list[Incident]:
        """Open incidents, newest seen first — an environment incident too while storage keeps its row
        from being written (a storage incident is announced then: what is listed must agree)."""
        return sorted(
            (i for i in self._incidents if i.active and (i.id is not None or i.category == "environment")),
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
        before = {name: copy.copy(getattr(incident, name)) for name in _STATE_CHANGES}
        if state == "open" and incident.state == "resolved":
            self._reopen(incident)
        incident.state = state
        if state == "resolved":
            incident.closed_at, incident.closed_by = self.now(), user_id
        row = incident.row(self.now())
        try:
            await self._writes(lambda: queries.update(self._db, incident_id, row), what="incident state")
        except StorageUnavailable:
            for name, value in before.items():  # not changed: "try again"
                setattr(incident, name, value)
            raise
        incident.saved_at = row["updated_at"]
        _log.info("incident state changed", incident_id=incident_id, state=state, user_id=user_id)
        self._changed(incident)  # the announcement shows the new state
        return incident

    async def annotate(self, incident_id: int, note: str) -> None:
        """Say in the incident's announcement what the bot did about it by itself; persisted with it."""
        incident = next((i for i in self._incidents if i.id == incident_id), None)
        if incident is not None:
            incident.autonomy = note
            self._changed(incident)  # written and re-announced by the incident's one flush
            return
        values = {"autonomy": note, "updated_at": self.now()}
        await self._writes(lambda: queries.update(self._db, incident_id, values), what="incident note")
        row = await queries.by_id(self._db, incident_id)
        if row is not None and row["message_id"] is not None and self.announcer is not None:
            where = await self.announcer.update(Incident.from_row(row))
            if where is not None:
                moved = {"channel_id": where[0], "message_id": where[1], "updated_at": self.now()}
                await self._writes(lambda: queries.update(self._db, incident_id, moved), what="incident")

    async def withdraw_request(self, incident_id: int, user_id: int, action: str) -> None:
        await queries.remove_request(self._db, incident_id=incident_id, user_id=user_id, action=action)

    async def request(self, incident_id: int, user_id: int, action: str, via: str) -> bool:
        """Record a 🔍/🛠 request on an incident; False if the same user already asked."""
        await self.fetch(incident_id)
        return await queries.add_request(
            self._db, incident_id=incident_id, user_id=user_id, action=action, via=via, at=self.now()
        )
