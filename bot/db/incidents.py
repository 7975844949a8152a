"""Queries for `incidents` and `incident_requests`.

Written once in the SQL both engines share (`mendbot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import aiosqlite

from mendbot.db import core
from mendbot.db.core import Connection

__all__ = [
    "active_or_recent",
    "add_request",
    "by_id",
    "fingerprint",
    "insert",
    "list_by_state",
    "remove_request",
    "update",
]

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

_ACTIVE_OR_RECENT = """
    SELECT * FROM incidents WHERE state != 'resolved' OR closed_at >= :closed_after ORDER BY id"""
_BY_ID = "SELECT * FROM incidents WHERE id = :incident_id"
_FINGERPRINT = "SELECT fingerprint FROM incidents WHERE id = :incident_id"
_LIST_BY_STATE = "SELECT * FROM incidents WHERE state IN (:states) ORDER BY last_seen DESC LIMIT :limit"
_REMOVE_REQUEST = """
    DELETE FROM incident_requests
    WHERE incident_id = :incident_id AND user_id = :user_id AND action = :action"""
# Only the same user asking for the same thing again is ignored (SQLite's former INSERT OR IGNORE
# also hid a broken constraint; ON CONFLICT, the statement both engines have, does not).
_ADD_REQUEST = """
    INSERT INTO incident_requests (incident_id, user_id, action, via, created_at)
    VALUES (:incident_id, :user_id, :action, :via, :at)
    ON CONFLICT (incident_id, user_id, action) DO NOTHING"""


@functools.cache
def _insert(names: tuple[str, ...]) -> str:
    values = ", ".join(f":{name}" for name in names)
    return f"INSERT INTO incidents ({', '.join(names)}) VALUES ({values}) RETURNING id"


@functools.cache
def _update(names: tuple[str, ...]) -> str:
    """(The names are _FIELDS', never a caller's.)"""
    assignments = ", ".join(f"{name} = :{name}" for name in names)
    return f"UPDATE incidents SET {assignments} WHERE id = :incident_id"


def _encode(values: dict[str, Any]) -> dict[str, Any]:
    out = {name: values[name] for name in _FIELDS if name in values}
    for key in ("rules", "user_ids", "sample"):
        if key in out and not isinstance(out[key], str):
            out[key] = json.dumps(out[key])
    return out


def decode(row: Mapping[str, Any] | aiosqlite.Row) -> dict[str, Any]:
    """An incident row with its JSON columns (`rules`, `user_ids`, `sample`) decoded."""
    values = dict(row)
    for key in ("rules", "user_ids", "sample"):
        values[key] = json.loads(values[key])
    return values


async def insert(db: Connection, values: dict[str, Any]) -> int:
    encoded = _encode(values)
    return int(await core.scalar(db, _insert(tuple(encoded)), **encoded))


async def update(db: Connection, incident_id: int, values: dict[str, Any]) -> None:
    encoded = _encode(values)
    if not encoded:
        return  # nothing to set
    await core.execute(db, _update(tuple(encoded)), incident_id=incident_id, **encoded)


async def active_or_recent(db: Connection, closed_after: float) -> list[dict[str, Any]]:
    """Open, acknowledged and muted incidents, and those resolved after `closed_after`."""
    return [decode(row) for row in await core.rows(db, _ACTIVE_OR_RECENT, closed_after=closed_after)]


async def by_id(db: Connection, incident_id: int) -> dict[str, Any] | None:
    row = await core.first(db, _BY_ID, incident_id=incident_id)
    return decode(row) if row is not None else None


async def fingerprint(db: Connection, incident_id: int) -> str | None:
    """The fingerprint an incident is about (None: a kind-wide incident, or no such incident)."""
    found = await core.scalar(db, _FINGERPRINT, incident_id=incident_id)
    return str(found) if found is not None else None


async def list_by_state(db: Connection, states: tuple[str, ...], limit: int = 25) -> list[dict[str, Any]]:
    """Incidents in any of `states`, most recently seen first, at most `limit` of them."""
    return [decode(row) for row in await core.rows(db, _LIST_BY_STATE, states=list(states), limit=limit)]


async def add_request(
    db: Connection, *, incident_id: int, user_id: int, action: str, via: str, at: float
) -> bool:
    """Record a 🔍/🛠 request; False when this user already asked for this."""
    added = await core.execute(
        db,
        _ADD_REQUEST,
        incident_id=incident_id,
        user_id=user_id,
        action=action,
        via=via,
        at=at,
    )
    return added == 1


async def remove_request(db: Connection, *, incident_id: int, user_id: int, action: str) -> None:
    await core.execute(db, _REMOVE_REQUEST, incident_id=incident_id, user_id=user_id, action=action)
