"""Queries for `runs`, `run_events` and the `settings_kv` switches the run policy keeps.

Written once in the SQL both engines share (`mendbot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

from mendbot.db import core
from mendbot.db.connection import transaction
from mendbot.db.core import Connection
from mendbot.db.drills import not_drill_run

__all__ = [
    "RUNS_CHANNEL",
    "RUN_FIELDS",
    "busy",
    "by_id",
    "by_message",
    "created_since",
    "delete_setting",
    "events",
    "events_after",
    "executors",
    "for_incident",
    "get_setting",
    "in_states",
    "insert",
    "last_event_id",
    "notify_run",
    "recent",
    "set_setting",
    "spent_since",
    "transition",
    "update",
]

RUN_FIELDS = (
    "kind",
    "state",
    "requester_id",
    "channel_id",
    "incident_id",
    "description",
    "slug",
    "security",
    "branch",
    "worktree",
    "base_sha",
    "head_sha",
    "verified_sha",
    "cost_usd",
    "attempts",
    "failure_stage",
    "failure_reason",
    "status_message_id",
    "proposal_id",
    "interrupted_from",
    "origin",
    "created_at",
    "updated_at",
)

_ADD_EVENT = """
    INSERT INTO run_events (run_id, ts, actor, event, state, detail, cost_usd)
    VALUES (:run_id, :ts, :actor, :event, :state, :detail, :cost_usd)"""
_BY_ID = "SELECT * FROM runs WHERE id = :run_id"
_RECENT = "SELECT * FROM runs ORDER BY id DESC LIMIT :limit"
_IN_STATES = "SELECT * FROM runs WHERE state IN (:states) ORDER BY id"
_BUSY = "SELECT id, state FROM runs WHERE state IN (:states) ORDER BY id"
_CREATED_SINCE = "SELECT requester_id, created_at FROM runs WHERE created_at > :since ORDER BY created_at"
_CREATED_SINCE_BY_ORIGIN = """
    SELECT requester_id, created_at FROM runs WHERE created_at > :since AND origin = :origin
    ORDER BY created_at"""
# Fire drills' spend is reported apart (bot/db/drills.py), never as the bot's own.
_SPENT_SINCE = f"""
    SELECT coalesce(sum(run_events.cost_usd), 0) FROM run_events JOIN runs ON runs.id = run_events.run_id
    WHERE run_events.ts >= :since AND {not_drill_run()}"""
_SPENT_SINCE_BY_ORIGIN = f"{_SPENT_SINCE} AND runs.origin = :origin"
_FOR_INCIDENT = "SELECT * FROM runs WHERE incident_id = :incident_id ORDER BY id"
_EVENTS = "SELECT * FROM run_events WHERE run_id = :run_id ORDER BY id"
_EVENTS_AFTER = "SELECT * FROM run_events WHERE id > :after AND event IN (:names) ORDER BY id LIMIT :limit"
_LAST_EVENT_ID = "SELECT coalesce(max(id), 0) FROM run_events"
_EXECUTORS = """
    SELECT run_id, detail FROM run_events WHERE event = 'executor' AND run_id IN (:run_ids) ORDER BY id"""
# The channel on which a worker says "run N has news" (PostgreSQL only; see mendbot.improve.relay).
RUNS_CHANNEL = "mendbot_runs"
_NOTIFY = f"SELECT pg_notify('{RUNS_CHANNEL}', :payload)"
_GET_SETTING = 'SELECT value FROM settings_kv WHERE "key" = :key'
_DELETE_SETTING = 'DELETE FROM settings_kv WHERE "key" = :key'
_SET_SETTING = """
    INSERT INTO settings_kv ("key", value) VALUES (:key, :value)
    ON CONFLICT ("key") DO UPDATE SET value = excluded.value"""
# A run's status message, or the message of a "reported" event about it (its JSON detail's
# `message_id`, read on each engine).
_BY_MESSAGE = {
    dialect: f"""
    SELECT id FROM runs WHERE status_message_id = :message_id
    UNION ALL
    SELECT run_id FROM run_events WHERE event = 'reported' AND {message_id} = :message_id
    LIMIT 1"""
    for dialect, message_id in (
        ("sqlite", "json_extract(detail, '$.message_id')"),
        ("postgresql", "(detail::jsonb ->> 'message_id')::bigint"),
    )
}


@functools.cache
def _insert(names: tuple[str, ...]) -> str:
    values = ", ".join(f":{name}" for name in names)
    return f"INSERT INTO runs ({', '.join(names)}) VALUES ({values}) RETURNING id"


@functools.cache
def _transition(names: tuple[str, ...]) -> str:
    assignments = ", ".join([*_assignments(names), "cost_usd = cost_usd + :add_cost"])
    return f"UPDATE runs SET {assignments} WHERE id = :run_id AND state = :expected_state"


@functools.cache
def _update(names: tuple[str, ...]) -> str:
    return f"UPDATE runs SET {', '.join(_assignments(names))} WHERE id = :run_id"


def _assignments(names: tuple[str, ...]) -> list[str]:
    """`name = :name` for each name (RUN_FIELDS', never a caller's)."""
    return [f"{name} = :{name}" for name in names]


def _fields(values: dict[str, Any]) -> tuple[str, ...]:
    return tuple(name for name in RUN_FIELDS if name in values)


async def _add_event(
    db: Connection,
    run_id: int,
    *,
    ts: float,
    actor: str,
    event: str,
    state: str,
    detail: dict[str, Any] | None,
    cost_usd: float,
) -> None:
    await core.execute(
        db,
        _ADD_EVENT,
        run_id=run_id,
        ts=ts,
        actor=actor,
        event=event,
        state=state,
        detail=json.dumps(detail, default=str) if detail else None,
        cost_usd=cost_usd,
    )


async def insert(db: Connection, values: dict[str, Any], *, actor: str, detail: dict[str, Any] | None) -> int:
    """Insert a run and its "created" event in one transaction; returns the run id."""
    names = _fields(values)
    async with transaction(db):
        run_id = int(await core.scalar(db, _insert(names), **{n: values[n] for n in names}))
        await _add_event(
            db,
            run_id,
            ts=values["created_at"],
            actor=actor,
            event="created",
            state=values["state"],
            detail=detail,
            cost_usd=0.0,
        )
    return run_id


async def transition(
    db: Connection,
    run_id: int,
    *,
    expected_state: str,
    values: dict[str, Any],
    ts: float,
    actor: str,
    event: str,
    detail: dict[str, Any] | None,
    cost_usd: float,
) -> bool:
    """Update a run still in `expected_state`, add `cost_usd` to it and log the event, atomically.

    False (and nothing written) when the run is no longer in `expected_state`.
    """
    names = _fields(values)
    async with transaction(db):
        changed = await core.execute(
            db,
            _transition(names),
            run_id=run_id,
            expected_state=expected_state,
            add_cost=cost_usd,
            **{n: values[n] for n in names},
        )
        if changed != 1:
            return False  # nothing was written: the empty transaction just commits
        state = values.get("state", expected_state)
        await _add_event(
            db, run_id, ts=ts, actor=actor, event=event, state=state, detail=detail, cost_usd=cost_usd
        )
    return True


async def update(db: Connection, run_id: int, values: dict[str, Any]) -> None:
    """Set fields without an event (bookkeeping such as the status message id)."""
    names = _fields(values)
    await core.execute(db, _update(names), run_id=run_id, **{n: values[n] for n in names})


async def by_id(db: Connection, run_id: int) -> dict[str, Any] | None:
    return await core.first(db, _BY_ID, run_id=run_id)


async def recent(db: Connection, limit: int) -> list[dict[str, Any]]:
    return await core.rows(db, _RECENT, limit=limit)


async def in_states(db: Connection, states: Iterable[str]) -> list[dict[str, Any]]:
    """Runs in any of `states`, oldest first."""
    return await core.rows(db, _IN_STATES, states=list(states))


async def busy(db: Connection, states: Iterable[str]) -> list[tuple[int, str]]:
    """(id, state) of runs in any of `states`, oldest first."""
    return [(row["id"], row["state"]) for row in await core.rows(db, _BUSY, states=list(states))]


async def created_since(db: Connection, since: float, origin: str | None = None) -> list[tuple[int, float]]:
    """(requester_id, created_at) of runs created after `since` (of one origin, if given), oldest first."""
    if origin is None:
        found = await core.rows(db, _CREATED_SINCE, since=since)
    else:
        found = await core.rows(db, _CREATED_SINCE_BY_ORIGIN, since=since, origin=origin)
    return [(row["requester_id"], row["created_at"]) for row in found]


async def spent_since(db: Connection, since: float, origin: str | None = None) -> float:
    """Total cost of run events at or after `since` — of runs of one origin, if given; fire drills'
    runs are not counted (bot/db/drills.py)."""
    if origin is None:
        total = await core.scalar(db, _SPENT_SINCE, since=since)
    else:
        total = await core.scalar(db, _SPENT_SINCE_BY_ORIGIN, since=since, origin=origin)
    return float(total or 0.0)


async def for_incident(db: Connection, incident_id: int) -> list[dict[str, Any]]:
    """Every run ever started on `incident_id`, oldest first."""
    return await core.rows(db, _FOR_INCIDENT, incident_id=incident_id)


async def events(db: Connection, run_id: int) -> list[dict[str, Any]]:
    rows = await core.rows(db, _EVENTS, run_id=run_id)
    for row in rows:
        row["detail"] = json.loads(row["detail"]) if row["detail"] else {}
    return rows


async def events_after(
    db: Connection, after: int, names: Iterable[str], limit: int = 200
) -> list[dict[str, Any]]:
    """Events named one of `names` with an id above `after`, in the order they were written."""
    rows = await core.rows(db, _EVENTS_AFTER, after=after, names=list(names), limit=limit)
    for row in rows:
        row["detail"] = json.loads(row["detail"]) if row["detail"] else {}
    return rows


async def last_event_id(db: Connection) -> int:
    """The id of the newest run event (0 when there is none)."""
    return int(await core.scalar(db, _LAST_EVENT_ID) or 0)


async def executors(db: Connection, run_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The latest "executor" event's detail of each run that has one: who executes it."""
    found: dict[int, dict[str, Any]] = {}
    ids = list(run_ids)
    if not ids:
        return found
    for row in await core.rows(db, _EXECUTORS, run_ids=ids):
        found[int(row["run_id"])] = json.loads(row["detail"]) if row["detail"] else {}
    return found


async def notify_run(db: Connection, run_id: int) -> None:
    """Wake the processes listening on RUNS_CHANNEL: run `run_id` has new events (PostgreSQL)."""
    await core.execute(db, _NOTIFY, payload=str(run_id))


async def get_setting(db: Connection, key: str) -> Any:
    """The JSON value stored under `key`, or None."""
    value = await core.scalar(db, _GET_SETTING, key=key)
    return json.loads(value) if value is not None else None


async def set_setting(db: Connection, key: str, value: Any) -> None:
    await core.execute(db, _SET_SETTING, key=key, value=json.dumps(value))


async def delete_setting(db: Connection, key: str) -> None:
    await core.execute(db, _DELETE_SETTING, key=key)


async def by_message(db: Connection, message_id: int) -> int | None:
    """The run a chat message stands for: its status message, or a report the bot posted about it."""
    found = await core.scalar(db, _BY_MESSAGE[core.dialect(db)], message_id=message_id)
    return int(found) if found is not None else None
