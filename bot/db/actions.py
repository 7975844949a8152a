"""Queries for `actions` and `fingerprints`: batched inserts, retention, samples.

A batch is inserted as a few multi-row `INSERT … VALUES (…), (…)` statements rather than one
`executemany`: `executemany` releases and re-takes the GIL around every row, and on a busy event
loop each re-take waits a whole switch interval (5 ms), so the writer thread stalled to a few
rows a second. One statement per 1,000 rows gives the GIL back once. (Handing SQLite one JSON
array to take apart with `json_each` holds the GIL even less, but costs SQLite twice the CPU
per row: measured, it lost.) `batch_statements` builds the statements and their parameters —
pure CPU, which the recorder runs off the event loop.
"""

from __future__ import annotations

import functools
import itertools
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from bot.db.connection import transaction
from bot.observe.records import ActionRecord

__all__ = [
    "CallText",
    "Statement",
    "batch_statements",
    "by_ids",
    "checkpoint",
    "insert_many",
    "insert_statements",
    "known_fingerprints",
    "open_writer",
    "prune_oldest",
    "recent_calls",
    "recent_failures",
    "row_to_record",
    "slowest_sampled",
    "write_statements",
]

_COLUMNS = (
    "ts, kind, source, ok, duration_ms, guild_id, channel_id, user_id, message_id, cost_usd,"
    " error_type, error_message, fingerprint, frames, run_id, extra, invocation, reply, samples"
)
_COUNT = 19
# Rows per INSERT: 19,000 parameters, under SQLite's default limit of 32,766.
_CHUNK = 1000

Statement = tuple[str, tuple[object, ...]]
# `json.dumps(…, default=str)` builds a new encoder on every call; the writer encodes a few per row.
_encode = json.JSONEncoder(default=str).encode


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
        _encode(record.frames) if record.frames else None,
        record.run_id,
        _encode(record.extra) if record.extra else None,
        _json(record.invocation),
        _json(record.reply),
        _json(record.samples),
    )


def _json(value: object) -> str | None:
    return _encode(value) if value else None


@functools.lru_cache(maxsize=64)
def _insert_actions_sql(rows: int) -> str:
    values = f"({', '.join('?' * _COUNT)})"
    return f"INSERT INTO actions ({_COLUMNS}) VALUES {', '.join([values] * rows)}"


@functools.lru_cache(maxsize=64)
def _upsert_fingerprints_sql(rows: int) -> str:
    # Rows of one statement are applied in order, so a fingerprint twice in a batch counts twice.
    return (
        "INSERT INTO fingerprints (fingerprint, kind, error_type, first_seen, last_seen, count)"
        f" VALUES {', '.join(['(?, ?, ?, ?, ?, 1)'] * rows)}"
        " ON CONFLICT (fingerprint) DO UPDATE SET last_seen = excluded.last_seen, count = count + 1"
    )


def batch_statements(records: Sequence[ActionRecord]) -> list[Statement]:
    """The statements that insert a batch of records and count their fingerprints."""
    statements: list[Statement] = []
    for start in range(0, len(records), _CHUNK):
        chunk = records[start : start + _CHUNK]
        params = tuple(itertools.chain.from_iterable(map(_row, chunk)))
        statements.append((_insert_actions_sql(len(chunk)), params))
    failures = [r for r in records if r.fingerprint]
    for start in range(0, len(failures), _CHUNK):
        chunk = failures[start : start + _CHUNK]
        params = tuple(value for r in chunk for value in (r.fingerprint, r.kind, r.error_type, r.ts, r.ts))
        statements.append((_upsert_fingerprints_sql(len(chunk)), params))
    return statements


async def insert_many(db: aiosqlite.Connection, records: Sequence[ActionRecord]) -> None:
    """Insert a batch of records and update the fingerprint table, in one transaction."""
    await insert_statements(db, batch_statements(records))


async def insert_statements(db: aiosqlite.Connection, statements: Sequence[Statement]) -> None:
    """Run a batch's statements (from `batch_statements`) in one transaction."""
    async with transaction(db):
        for sql, params in statements:
            await db.execute(sql, params)


def open_writer(path: Path, busy_timeout_ms: int, *, autocheckpoint: bool = True) -> sqlite3.Connection:
    """A plain connection for the recorder's writer thread (which alone uses it), set up like
    `open_database`'s; the schema is already migrated by then.

    `autocheckpoint=False`: this connection's commits never copy the WAL back into the database
    (SQLite runs that inside whichever commit crosses 1,000 pages: tens of milliseconds the
    writer would stand still); `checkpoint()` on another connection does it instead.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    if not autocheckpoint:
        conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


def checkpoint(conn: sqlite3.Connection) -> tuple[int, int]:
    """Copy what the WAL holds back into the database without waiting on or blocking writers
    (a passive checkpoint); (frames in the WAL, frames checkpointed)."""
    _, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(frames), int(copied)


def write_statements(conn: sqlite3.Connection, statements: Sequence[Statement]) -> None:
    """`insert_statements` on the writer thread's plain connection."""
    conn.execute("BEGIN")
    try:
        for sql, params in statements:
            conn.execute(sql, params)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLITE_FULL may already have rolled back
            conn.execute("ROLLBACK")
        raise


def prune_oldest(conn: sqlite3.Connection, before_ts: float, limit: int) -> int:
    """Delete at most `limit` of the oldest records older than `before_ts`; returns how many.

    The oldest rows come from the ts index, so one batch costs the same however many rows are
    expired, and the write lock is held for one batch only.
    """
    cursor = conn.execute(
        "DELETE FROM actions WHERE id IN (SELECT id FROM actions WHERE ts < ? ORDER BY ts LIMIT ?)",
        (before_ts, limit),
    )
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
