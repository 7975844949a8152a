"""Queries for `runs`, `run_events` and the `settings_kv` switches the run policy keeps."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import aiosqlite

from bot.db.connection import transaction

__all__ = [
    "RUN_FIELDS",
    "busy",
    "by_id",
    "by_message",
    "created_since",
    "delete_setting",
    "events",
    "for_incident",
    "get_setting",
    "in_states",
    "insert",
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


def _marks(values: Iterable[object]) -> str:
    return ", ".join("?" for _ in values)


async def _add_event(
    db: aiosqlite.Connection,
    run_id: int,
    *,
    ts: float,
    actor: str,
    event: str,
    state: str,
    detail: dict[str, Any] | None,
    cost_usd: float,
) -> None:
    await db.execute(
        "INSERT INTO run_events (run_id, ts, actor, event, state, detail, cost_usd)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (run_id, ts, actor, event, state, json.dumps(detail, default=str) if detail else None, cost_usd),
    )


async def insert(
    db: aiosqlite.Connection, values: dict[str, Any], *, actor: str, detail: dict[str, Any] | None
) -> int:
    """Insert a run and its "created" event in one transaction; returns the run id."""
    names = [name for name in RUN_FIELDS if name in values]
    async with transaction(db):
        cursor = await db.execute(
            f"INSERT INTO runs ({', '.join(names)}) VALUES ({_marks(names)})", [values[n] for n in names]
        )
        assert cursor.lastrowid is not None
        run_id = cursor.lastrowid
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
    db: aiosqlite.Connection,
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
    names = [name for name in RUN_FIELDS if name in values]
    assignments = ", ".join([*(f"{name} = ?" for name in names), "cost_usd = cost_usd + ?"])
    async with transaction(db):
        cursor = await db.execute(
            f"UPDATE runs SET {assignments} WHERE id = ? AND state = ?",
            [*(values[n] for n in names), cost_usd, run_id, expected_state],
        )
        if cursor.rowcount != 1:
            return False  # nothing was written: the empty transaction just commits
        state = values.get("state", expected_state)
        await _add_event(
            db, run_id, ts=ts, actor=actor, event=event, state=state, detail=detail, cost_usd=cost_usd
        )
    return True


async def update(db: aiosqlite.Connection, run_id: int, values: dict[str, Any]) -> None:
    """Set fields without an event (bookkeeping such as the status message id)."""
    names = [name for name in RUN_FIELDS if name in values]
    await db.execute(
        f"UPDATE runs SET {', '.join(f'{name} = ?' for name in names)} WHERE id = ?",
        [*(values[n] for n in names), run_id],
    )


async def by_id(db: aiosqlite.Connection, run_id: int) -> dict[str, Any] | None:
    async with db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)) as cursor:
        row = await cursor.fetchone()
    return dict(row) if row is not None else None


async def recent(db: aiosqlite.Connection, limit: int) -> list[dict[str, Any]]:
    async with db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,)) as cursor:
        return [dict(row) for row in await cursor.fetchall()]


async def in_states(db: aiosqlite.Connection, states: Iterable[str]) -> list[dict[str, Any]]:
    """Runs in any of `states`, oldest first."""
    wanted = list(states)
    async with db.execute(
        f"SELECT * FROM runs WHERE state IN ({_marks(wanted)}) ORDER BY id", wanted
    ) as cursor:
        return [dict(row) for row in await cursor.fetchall()]


async def busy(db: aiosqlite.Connection, states: Iterable[str]) -> list[tuple[int, str]]:
    """(id, state) of runs in any of `states`, oldest first."""
    wanted = list(states)
    async with db.execute(
        f"SELECT id, state FROM runs WHERE state IN ({_marks(wanted)}) ORDER BY id", wanted
    ) as cursor:
        return [(row[0], row[1]) for row in await cursor.fetchall()]


async def created_since(
    db: aiosqlite.Connection, since: float, origin: str | None = None
) -> list[tuple[int, float]]:
    """(requester_id, created_at) of runs created after `since` (of one origin, if given), oldest first."""
    async with db.execute(
        "SELECT requester_id, created_at FROM runs WHERE created_at > ? AND (? IS NULL OR origin = ?)"
        " ORDER BY created_at",
        (since, origin, origin),
    ) as cursor:
        return [(row[0], row[1]) for row in await cursor.fetchall()]


async def spent_since(db: aiosqlite.Connection, since: float, origin: str | None = None) -> float:
    """Total cost of run events at or after `since` — of runs of one origin, if given."""
    args: tuple[object, ...] = (since,)
    sql = "SELECT COALESCE(SUM(cost_usd), 0) FROM run_events WHERE ts >= ?"
    if origin is not None:
        sql = (
            "SELECT COALESCE(SUM(e.cost_usd), 0) FROM run_events e JOIN runs r ON r.id = e.run_id"
            " WHERE e.ts >= ? AND r.origin = ?"
        )
        args = (since, origin)
    async with db.execute(sql, args) as cursor:
        row = await cursor.fetchone()
    return float(row[0]) if row is not None else 0.0


async def for_incident(db: aiosqlite.Connection, incident_id: int) -> list[dict[str, Any]]:
    """Every run ever started on `incident_id`, oldest first."""
    async with db.execute("SELECT * FROM runs WHERE incident_id = ? ORDER BY id", (incident_id,)) as cursor:
        return [dict(row) for row in await cursor.fetchall()]


async def events(db: aiosqlite.Connection, run_id: int) -> list[dict[str, Any]]:
    async with db.execute("SELECT * FROM run_events WHERE run_id = ? ORDER BY id", (run_id,)) as cursor:
        rows = [dict(row) for row in await cursor.fetchall()]
    for row in rows:
        row["detail"] = json.loads(row["detail"]) if row["detail"] else {}
    return rows


async def get_setting(db: aiosqlite.Connection, key: str) -> Any:
    """The JSON value stored under `key`, or None."""
    async with db.execute("SELECT value FROM settings_kv WHERE key = ?", (key,)) as cursor:
        row = await cursor.fetchone()
    return json.loads(row[0]) if row is not None else None


async def set_setting(db: aiosqlite.Connection, key: str, value: Any) -> None:
    await db.execute(
        "INSERT INTO settings_kv (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, json.dumps(value)),
    )


async def delete_setting(db: aiosqlite.Connection, key: str) -> None:
    await db.execute("DELETE FROM settings_kv WHERE key = ?", (key,))


async def by_message(db: aiosqlite.Connection, message_id: int) -> int | None:
    """The run a chat message stands for: its status message, or a report the bot posted about it."""
    async with db.execute(
        "SELECT id FROM runs WHERE status_message_id = ?"
        " UNION ALL SELECT run_id FROM run_events"
        " WHERE event = 'reported' AND json_extract(detail, '$.message_id') = ? LIMIT 1",
        (message_id, message_id),
    ) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row is not None else None
