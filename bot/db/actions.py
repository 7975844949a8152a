"""Queries that read `actions` and `fingerprints`: evidence, samples, replays.

The write side (the action writer's batched inserts, retention, checkpoints) is
`bot.db.action_writes`, which the writer process runs without importing the rest of the bot.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from bot.db.action_writes import batch_statements
from bot.db.connection import transaction
from bot.observe.records import ActionRecord

__all__ = [
    "CallText",
    "by_ids",
    "insert_many",
    "known_fingerprints",
    "recent_calls",
    "recent_failures",
    "row_to_record",
    "slowest_sampled",
]


async def insert_many(db: aiosqlite.Connection, records: Sequence[ActionRecord]) -> None:
    """Insert a batch of records and update the fingerprint table, in one transaction."""
    async with transaction(db):
        for sql, params in batch_statements([record.fields() for record in records]):
            await db.execute(sql, params)


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
        where, arg = "actions WHERE fingerprint = ?", fingerprint
    else:
        # The failures' own index: the kind's rows would be walked newest first until enough failed.
        where, arg = "actions INDEXED BY actions_kind_failures_ts WHERE kind = ? AND ok = 0", kind or ""
    async with db.execute(
        f"SELECT * FROM {where} AND ts >= ? ORDER BY ts DESC LIMIT ?", (arg, since, limit)
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
