"""Queries for `runs`, `run_events` and the `settings_kv` switches the run policy keeps.

Written once as SQLAlchemy Core statements (`bot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Executable, bindparam, func, literal_column, select

from bot.db import core
from bot.db.connection import transaction
from bot.db.core import Connection
from bot.db.drills import not_drill_run
from bot.db.schema import run_events, runs, settings_kv

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

_ADD_EVENT = sa.insert(run_events).values(
    run_id=bindparam("run_id"),
    ts=bindparam("ts"),
    actor=bindparam("actor"),
    event=bindparam("event"),
    state=bindparam("state"),
    detail=bindparam("detail"),
    cost_usd=bindparam("cost_usd"),
)
_BY_ID = select(runs).where(runs.c.id == bindparam("run_id"))
_RECENT = select(runs).order_by(runs.c.id.desc()).limit(bindparam("limit"))
_IN_STATES = select(runs).where(runs.c.state.in_(bindparam("states", expanding=True))).order_by(runs.c.id)
_BUSY = (
    select(runs.c.id, runs.c.state)
    .where(runs.c.state.in_(bindparam("states", expanding=True)))
    .order_by(runs.c.id)
)
_CREATED_SINCE = (
    select(runs.c.requester_id, runs.c.created_at)
    .where(runs.c.created_at > bindparam("since"))
    .order_by(runs.c.created_at)
)
_CREATED_SINCE_BY_ORIGIN = _CREATED_SINCE.where(runs.c.origin == bindparam("origin"))
# Fire drills' spend is reported apart (bot/db/drills.py), never as the bot's own.
_SPENT_SINCE = (
    select(func.coalesce(func.sum(run_events.c.cost_usd), 0))
    .select_from(run_events.join(runs, runs.c.id == run_events.c.run_id))
    .where(run_events.c.ts >= bindparam("since"), not_drill_run())
)
_SPENT_SINCE_BY_ORIGIN = _SPENT_SINCE.where(runs.c.origin == bindparam("origin"))
_FOR_INCIDENT = select(runs).where(runs.c.incident_id == bindparam("incident_id")).order_by(runs.c.id)
_EVENTS = select(run_events).where(run_events.c.run_id == bindparam("run_id")).order_by(run_events.c.id)
_EVENTS_AFTER = (
    select(run_events)
    .where(run_events.c.id > bindparam("after"), run_events.c.event.in_(bindparam("names", expanding=True)))
    .order_by(run_events.c.id)
    .limit(bindparam("limit"))
)
_LAST_EVENT_ID = select(func.coalesce(func.max(run_events.c.id), 0))
_EXECUTORS = (
    select(run_events.c.run_id, run_events.c.detail)
    .where(run_events.c.event == "executor", run_events.c.run_id.in_(bindparam("run_ids", expanding=True)))
    .order_by(run_events.c.id)
)
# The channel on which a worker says "run N has news" (PostgreSQL only; see bot.improve.relay).
RUNS_CHANNEL = "mendbot_runs"
_NOTIFY = select(func.pg_notify(RUNS_CHANNEL, bindparam("payload")))
_GET_SETTING = select(settings_kv.c.value).where(settings_kv.c.key == bindparam("key"))
_DELETE_SETTING = settings_kv.delete().where(settings_kv.c.key == bindparam("key"))


@functools.cache
def _set_setting(dialect: str) -> Executable:
    upsert = core.insert_for(dialect, settings_kv)
    upsert = upsert.values(key=bindparam("key"), value=bindparam("value"))
    return upsert.on_conflict_do_update(
        index_elements=[settings_kv.c.key], set_={"value": upsert.excluded.value}
    )


def _reported_message_id(dialect: str) -> Any:
    """The `message_id` of a "reported" event's JSON detail, as an integer, on each engine."""
    if dialect == "postgresql":
        return literal_column("(run_events.detail::jsonb ->> 'message_id')::bigint")
    return func.json_extract(run_events.c.detail, "$.message_id")


@functools.cache
def _by_message(dialect: str) -> Executable:
    status = select(runs.c.id).where(runs.c.status_message_id == bindparam("message_id"))
    reported = select(run_events.c.run_id).where(
        run_events.c.event == "reported", _reported_message_id(dialect) == bindparam("message_id")
    )
    return sa.union_all(status, reported).limit(1)


@functools.cache
def _insert(names: tuple[str, ...]) -> Executable:
    return sa.insert(runs).values({name: bindparam(name) for name in names}).returning(runs.c.id)


@functools.cache
def _transition(names: tuple[str, ...]) -> Executable:
    return (
        sa.update(runs)
        .where(runs.c.id == bindparam("run_id"), runs.c.state == bindparam("expected_state"))
        .values(
            {**{name: bindparam(name) for name in names}, "cost_usd": runs.c.cost_usd + bindparam("add_cost")}
        )
    )


@functools.cache
def _update(names: tuple[str, ...]) -> Executable:
    return (
        sa.update(runs)
        .where(runs.c.id == bindparam("run_id"))
        .values({name: bindparam(name) for name in names})
    )


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
    await core.execute(db, _set_setting(core.dialect(db)), key=key, value=json.dumps(value))


async def delete_setting(db: Connection, key: str) -> None:
    await core.execute(db, _DELETE_SETTING, key=key)


async def by_message(db: Connection, message_id: int) -> int | None:
    """The run a chat message stands for: its status message, or a report the bot posted about it."""
    found = await core.scalar(db, _by_message(core.dialect(db)), message_id=message_id)
    return int(found) if found is not None else None
