"""Queries for `incidents` and `incident_requests`."""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

__all__ = ["active_or_recent", "add_request", "by_id", "insert", "list_by_state", "remove_request", "update"]

_FIELDS = (
    "rule",
    "rules",
    "level",
    "kind",
    "fingerprint",
    "state",
    "summary",
    "first_seen",
    "last_seen",
    "count",
    "user_ids",
    "sample",
    "channel_id",
    "message_id",
    "updated_at",
    "closed_at",
    "closed_by",
    "category",
    "need",
    "autonomy",
)


def _encode(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for key in ("rules", "user_ids", "sample"):
        if key in out and not isinstance(out[key], str):
            out[key] = json.dumps(out[key])
    return out


def decode(row: aiosqlite.Row) -> dict[str, Any]:
    values = dict(row)
    for key in ("rules", "user_ids", "sample"):
        values[key] = json.loads(values[key])
    return values


async def insert(db: aiosqlite.Connection, values: dict[str, Any]) -> int:
    encoded = _encode(values)
    names = [name for name in _FIELDS if name in encoded]
    cursor = await db.execute(
        f"INSERT INTO incidents ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        [encoded[name] for name in names],
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


async def update(db: aiosqlite.Connection, incident_id: int, values: dict[str, Any]) -> None:
    encoded = _encode(values)
    names = [name for name in _FIELDS if name in encoded]
    await db.execute(
        f"UPDATE incidents SET {', '.join(f'{name} = ?' for name in names)} WHERE id = ?",
        [*(encoded[name] for name in names), incident_id],
    )


async def active_or_recent(db: aiosqlite.Connection, closed_after: float) -> list[dict[str, Any]]:
    """Open, acknowledged and muted incidents, and those resolved after `closed_after`."""
    async with db.execute(
        "SELECT * FROM incidents WHERE state != 'resolved' OR closed_at >= ? ORDER BY id", (closed_after,)
    ) as cursor:
        return [decode(row) for row in await cursor.fetchall()]


async def by_id(db: aiosqlite.Connection, incident_id: int) -> dict[str, Any] | None:
    async with db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)) as cursor:
        row = await cursor.fetchone()
    return decode(row) if row is not None else None


async def list_by_state(
    db: aiosqlite.Connection, states: tuple[str, ...], limit: int = 25
) -> list[dict[str, Any]]:
    marks = ", ".join("?" * len(states))
    async with db.execute(
        f"SELECT * FROM incidents WHERE state IN ({marks}) ORDER BY last_seen DESC LIMIT ?", (*states, limit)
    ) as cursor:
        return [decode(row) for row in await cursor.fetchall()]


async def add_request(
    db: aiosqlite.Connection, *, incident_id: int, user_id: int, action: str, via: str, at: float
) -> bool:
    """Record a 🔍/🛠 request; False when this user already asked for this."""
    cursor = await db.execute(
        "INSERT OR IGNORE INTO incident_requests (incident_id, user_id, action, via, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (incident_id, user_id, action, via, at),
    )
    return cursor.rowcount == 1


async def remove_request(db: aiosqlite.Connection, *, incident_id: int, user_id: int, action: str) -> None:
    await db.execute(
        "DELETE FROM incident_requests WHERE incident_id = ? AND user_id = ? AND action = ?",
        (incident_id, user_id, action),
    )
