"""The write side of `actions` and `fingerprints`: batched inserts, retention, checkpoints.

This is what the action writer process runs (`bot.observe.writer`), so it imports nothing but the
standard library: the process starts in a few tens of milliseconds and carries no copy of the bot.
A record arrives as the plain dict of an `ActionRecord`'s fields.

A batch is inserted as a few multi-row `INSERT … VALUES (…), (…)` statements rather than one
`executemany`, which crosses from SQLite back into Python once per row; one statement per 1,000
rows crosses once. (Handing SQLite one JSON array to take apart with `json_each` costs SQLite
twice the CPU per row: measured, it lost.)
"""

from __future__ import annotations

import functools
import itertools
import json
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "Statement",
    "batch_statements",
    "checkpoint",
    "open_writer",
    "prune_oldest",
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
# `json.dumps(…, default=str)` builds a new encoder on every call; a row encodes a few values.
_encode = json.JSONEncoder(default=str).encode


def _row(record: Mapping[str, Any]) -> tuple[object, ...]:
    return (
        record["ts"],
        record["kind"],
        record["source"],
        int(record["ok"]),
        record["duration_ms"],
        record["guild_id"],
        record["channel_id"],
        record["user_id"],
        record["message_id"],
        record["cost_usd"],
        record["error_type"],
        record["error_message"],
        record["fingerprint"],
        _json(record["frames"]),
        record["run_id"],
        _json(record["extra"]),
        _json(record["invocation"]),
        _json(record["reply"]),
        _json(record["samples"]),
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


def batch_statements(records: Sequence[Mapping[str, Any]]) -> list[Statement]:
    """The statements that insert a batch of records (field dicts) and count their fingerprints."""
    statements: list[Statement] = []
    for start in range(0, len(records), _CHUNK):
        chunk = records[start : start + _CHUNK]
        params = tuple(itertools.chain.from_iterable(map(_row, chunk)))
        statements.append((_insert_actions_sql(len(chunk)), params))
    failures = [r for r in records if r["fingerprint"]]
    for start in range(0, len(failures), _CHUNK):
        chunk = failures[start : start + _CHUNK]
        params = tuple(
            value for r in chunk for value in (r["fingerprint"], r["kind"], r["error_type"], r["ts"], r["ts"])
        )
        statements.append((_upsert_fingerprints_sql(len(chunk)), params))
    return statements


def open_writer(path: Path, busy_timeout_ms: int, *, autocheckpoint: bool = True) -> sqlite3.Connection:
    """A plain connection for the action writer, set up like `open_database`'s; the schema is
    already migrated by then.

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
    """Run a batch's statements (from `batch_statements`) in one transaction on a plain connection."""
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
