"""Queries for `actions` and `fingerprints`: batched inserts, retention, samples."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from bot.db.connection import transaction
from bot.observe.records import ActionRecord

__all__ = [
    "CallText",
    "by_ids",
    "insert_many",
    "known_fingerprints",
    "prune",
    "recent_calls",
    "recent_failures",
    "row_to_record",
    "slowest_sampled",
]

_COLUMNS = (
    "ts, kind, source, ok, duration_ms, guild_id, channel_id, user_id, message_id, cost_usd,"
    " error_type, error_message, fingerprint, frames, run_id, extra, invocation, reply, samples"
)
_COUNT = 19


def _row(record: ActionRecord) -> tuple[object, ...]:
    return (
        record.ts,
        record.kind,
        record.source,
        int(record.ok),
        record.duration_ms,
        record.guild_id,
        record.channel_id,
        record.user_id,
        record.message_id,
        record.cost_usd,
        record.error_type,
        record.error_message,
        record.fingerprint,
        json.dumps(record.frames) if record.frames else None,
        record.run_id,
        json.dumps(record.extra, default=str) if record.extra else None,
        _json(record.invocation),
        _json(record.reply),
        _json(record.samples),
    )


def _json(value: object) -> str | None:
    return json.dumps(value, default=str) if value else None


async def insert_many(db: aiosqlite.Connection, records: Sequence[ActionRecord]) -> None:
    """Insert a batch of records and update the fingerprint table, in one transaction."""
    failures = [r for r in records if r.fingerprint]
    async with transaction(db):
        await db.executemany(
            f"INSERT INTO actions ({_COLUMNS}) VALUES ({', '.join('?' * _COUNT)})", [_row(r) for r in records]
        )
        if failures:
            await db.executemany(
                "INSERT INTO fingerprints (fingerprint, kind, error_type, first_seen, last_seen, count)"
                " VALUES (?, ?, ?, ?, ?, 1)"
                " ON CONFLICT (fingerprint) DO UPDATE SET last_seen = excluded.last_seen, count = count + 1",
                [(r.fingerprint, r.kind, r.error_type, r.ts, r.ts) for r in failures],
            )


async def prune(db: aiosqlite.Connection, before_ts: float) -> int:
    cursor = await db.execute("DELETE FROM actions WHERE ts < ?", (before_ts,))
    return cursor.rowcount


async def known_fingerprints(db: aiosqlite.Connection) -> set[str]:
    async with db.execute("SELECT fingerprint FROM fingerprints") as cursor:
        return {row[0] for row in await cursor.fetchall()}


def row_to_record(row: aiosqlite.Row) -> ActionRecord:
    return ActionRecord(
        ts=row["ts"],
        kind=row["kind"],
        source=row["source"],
        ok=bool(row["ok"]),
        duration_ms=row["duration_ms"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        user_id=row["user_id"],
        message_id=row["message_id"],
        cost_usd=row["cost_usd"],
        error_type=row["error_type"],
        error_message=row["error_message"],
        fingerprint=row["fingerprint"],
        frames=json.loads(row["frames"]) if row["frames"] else [],
        run_id=row["run_id"],
        extra=json.loads(row["extra"]) if row["extra"] else {},
        invocation=json.loads(row["invocation"]) if row["invocation"] else None,
        reply=json.loads(row["reply"]) if row["reply"] else None,
        samples=json.loads(row["samples"]) if row["samples"] else None,
    )


async def recent_failures(
    db: aiosqlite.Connection, *, kind: str | None, fingerprint: str | None, since: float, limit: int = 5
) -> list[ActionRecord]:
    """The newest failing actions of a fingerprint (or else of a kind) since a time."""
    if fingerprint is not None:
        where, arg = "fingerprint = ?", fingerprint
    else:
        where, arg = "kind = ? AND ok = 0", kind or ""
    async with db.execute(
        f"SELECT * FROM actions WHERE {where} AND ts >= ? ORDER BY ts DESC LIMIT ?", (arg, since, limit)
    ) as cursor:
        return [row_to_record(row) for row in await cursor.fetchall()]


@dataclass(frozen=True, slots=True)
class CallText:
    """A recorded call reduced to what a complaint is matched against: its invocation and reply."""

    id: int
    ts: float
    user_id: int | None
    text: str  # the invocation and reply JSON, lower-cased


async def recent_calls(
    db: aiosqlite.Connection, kinds: Sequence[str], *, since: float, limit: int
) -> list[CallText]:
    """The newest calls of these kinds since a time, as text (no record is built: this is scanned)."""
    found: list[CallText] = []
    for kind in dict.fromkeys(kinds):
        async with db.execute(
            "SELECT id, ts, user_id, lower(coalesce(invocation, '') || ' ' || coalesce(reply, ''))"
            " FROM actions WHERE kind = ? AND ts >= ? ORDER BY ts DESC LIMIT ?",
            (kind, since, limit),
        ) as cursor:
            found += [CallText(*row) for row in await cursor.fetchall()]
    found.sort(key=lambda call: call.ts, reverse=True)
    return found[:limit]


async def by_ids(db: aiosqlite.Connection, ids: Sequence[int]) -> list[ActionRecord]:
    """Records by id, in the order asked."""
    if not ids:
        return []
    async with db.execute(
        f"SELECT * FROM actions WHERE id IN ({', '.join('?' * len(ids))})", tuple(ids)
    ) as cursor:
        rows = {row["id"]: row_to_record(row) for row in await cursor.fetchall()}
    return [rows[i] for i in ids if i in rows]


async def slowest_sampled(
    db: aiosqlite.Connection, kinds: Sequence[str], *, since: float, limit: int
) -> list[ActionRecord]:
    """The slowest actions of these kinds since a time that carry stack samples, slowest first."""
    if not kinds:
        return []
    marks = ", ".join("?" * len(kinds))
    async with db.execute(
        f"SELECT * FROM actions INDEXED BY actions_sampled_kind_ts WHERE kind IN ({marks}) AND ts >= ?"
        " AND samples IS NOT NULL ORDER BY duration_ms DESC LIMIT ?",
        (*kinds, since, limit),
    ) as cursor:
        return [row_to_record(row) for row in await cursor.fetchall()]
