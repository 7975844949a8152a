"""The write side of `actions` and `fingerprints`: batched inserts, retention, checkpoints.

This is what the action writer process runs (`bot.observe.writer`), so it imports nothing but the
standard library (and psycopg, for PostgreSQL): the process starts in a few tens of milliseconds
and carries no copy of the bot. A record arrives as the plain dict of an `ActionRecord`'s fields.
`open_action_store` gives the store for a database: a SQLite file (`SqliteActionStore`) or a
PostgreSQL URL (`PostgresActionStore`, which COPYs batches in and drops whole days of the
time-partitioned table for retention).

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
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "ActionStore",
    "PostgresActionStore",
    "SqliteActionStore",
    "Statement",
    "batch_statements",
    "checkpoint",
    "is_postgresql",
    "open_action_store",
    "open_writer",
    "prune_oldest",
    "write_statements",
]

_COLUMNS = (
    "ts, kind, source, ok, duration_ms, guild_id, channel_id, user_id, message_id, cost_usd,"
    " error_type, error_message, fingerprint, frames, run_id, extra, invocation, reply, samples, process"
)
_COUNT = 20
# Rows per INSERT: 20,000 parameters, under SQLite's default limit of 32,766.
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
        record.get("process"),
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


# -- the stores the writer process uses ------------------------------------------------------------


class ActionStore(Protocol):
    """Where the writer process puts records and from where retention removes them."""

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """The batch and its fingerprint counts, in one transaction."""

    def prune(self, before_ts: float, limit: int) -> tuple[int, bool]:
        """One bounded step of retention: (rows removed, whether more may be left)."""

    def close(self) -> None: ...


def is_postgresql(database: str | Path) -> bool:
    return str(database).startswith(("postgresql://", "postgres://"))


def open_action_store(database: str | Path, busy_timeout_ms: int) -> ActionStore:
    """The store for a SQLite file's path or a PostgreSQL URL."""
    if is_postgresql(database):
        return PostgresActionStore(str(database))
    return SqliteActionStore(Path(database), busy_timeout_ms)


class SqliteActionStore:
    """Multi-row INSERTs; retention deletes the oldest expired rows a batch at a time."""

    def __init__(self, path: Path, busy_timeout_ms: int) -> None:
        self._conn = open_writer(path, busy_timeout_ms, autocheckpoint=False)

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        write_statements(self._conn, batch_statements(records))

    def prune(self, before_ts: float, limit: int) -> tuple[int, bool]:
        deleted = prune_oldest(self._conn, before_ts, limit)
        return deleted, deleted == limit

    def close(self) -> None:
        self._conn.close()


# Partitions are UTC days; the writer keeps this many ahead, so a day's rows never land in the
# default partition (from which retention can only delete, not drop).
_DAYS_AHEAD = 3
_COPY_ACTIONS = f"COPY actions ({_COLUMNS}) FROM STDIN"
_UPSERT_FINGERPRINT = (
    "INSERT INTO fingerprints (fingerprint, kind, error_type, first_seen, last_seen, count)"
    " VALUES (%s, %s, %s, %s, %s, 1)"
    " ON CONFLICT (fingerprint) DO UPDATE SET last_seen = excluded.last_seen,"
    " count = fingerprints.count + 1"
)
_EXPIRED_DAYS = """
SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
WHERE i.inhparent = 'actions'::regclass AND c.relname ~ '^actions_[0-9]{8}$'
  AND extract(epoch FROM to_date(substr(c.relname, 9), 'YYYYMMDD')) + 86400 <= %s
ORDER BY c.relname LIMIT 1
"""


class PostgresActionStore:
    """COPY for the rows (PostgreSQL's bulk path), one upsert per failure for the fingerprints
    (in order, so a fingerprint twice in a batch counts twice, as on SQLite); retention drops the
    oldest whole day first, then deletes what is left before the cutoff a batch at a time."""

    def __init__(self, url: str) -> None:
        import psycopg

        self._conn: psycopg.Connection[Any] = psycopg.connect(url, autocommit=True)
        self._partitioned_until = 0.0

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        newest = max(record["ts"] for record in records)
        if newest >= self._partitioned_until:
            self._add_days(newest)
        failures = [
            (r["fingerprint"], r["kind"], r["error_type"], r["ts"], r["ts"])
            for r in records
            if r["fingerprint"]
        ]
        with self._conn.transaction(), self._conn.cursor() as cursor:
            with cursor.copy(_COPY_ACTIONS) as copy:
                for record in records:
                    copy.write_row(_row(record))
            if failures:
                cursor.executemany(_UPSERT_FINGERPRINT, failures)

    def _add_days(self, ts: float) -> None:
        """Partitions for the day of `ts` and the days after it."""
        self._conn.execute("SELECT actions_add_daily_partitions(%s, %s)", (ts, _DAYS_AHEAD))
        self._partitioned_until = (ts // 86400 + _DAYS_AHEAD - 1) * 86400

    def prune(self, before_ts: float, limit: int) -> tuple[int, bool]:
        with self._conn.transaction(), self._conn.cursor() as cursor:
            day = cursor.execute(_EXPIRED_DAYS, (before_ts,)).fetchone()
            if day is not None:
                # Counted for the log before it goes; dropping takes a moment, however many rows.
                rows = cursor.execute(f'SELECT count(*) FROM "{day[0]}"').fetchone()
                cursor.execute(f'DROP TABLE "{day[0]}"')
                return int(rows[0]) if rows else 0, True
            cursor.execute(
                "DELETE FROM actions WHERE (id, ts) IN"
                " (SELECT id, ts FROM actions WHERE ts < %s ORDER BY ts LIMIT %s)",
                (before_ts, limit),
            )
            return cursor.rowcount, cursor.rowcount == limit

    def close(self) -> None:
        self._conn.close()
