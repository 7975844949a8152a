"""The write side of `actions` and `fingerprints`: journaled records in batches, retention, the store's size.

The recorder's store thread runs this (bot/observe/recorder.py), on a connection of its own, so it
imports nothing of the bot but the standard library and orjson (and psycopg, for PostgreSQL). A record
arrives as `(seq, row)`: its sequence number in the action journal (bot/observe/journal.py) and its
row (`row()` of an `ActionRecord`'s fields: plain values, the nested ones as JSON text), which the
recorder builds as it records — a tuple of strings and numbers, which the garbage collector soon stops
looking at, where a queue of field dicts would make every collection walk them.
`open_action_store` gives the store for a database: a SQLite
file (`SqliteActionStore`) or a PostgreSQL URL (`PostgresActionStore`, which COPYs batches in and drops
whole days of the time-partitioned table for retention).

**Exactly once.** `journal_positions` holds, per journal, the sequence number of the last record the
database has taken, changed in the same transaction as the records: a batch inserts only what is past
it, so a stretch of the journal read twice — after a restart, a lock, a deleted database — inserts
nothing twice. A record the database refuses for what it is (not for a lock or a full disk) is passed
over by `skip`, counted by the caller, and stays in the journal.

**Bounded disk.** Retention deletes a bounded batch per `prune` step; on SQLite each step then gives the
pages it emptied back to the file system (`PRAGMA incremental_vacuum`: new files are made with
`auto_vacuum=INCREMENTAL`, bot/db/migrate.py) and truncates the write-ahead log (`wal_checkpoint
(TRUNCATE)`), so the files never hold more than the batch's log on top of what they held. A file from
before that mode is switched by one VACUUM once a prune has left it small enough that the VACUUM's own
log fits under the caller's ceiling. On PostgreSQL whole expired days are dropped (their disk is free at
once); what is deleted row by row — the day the cutoff falls in, the default partition, a table that is
not partitioned — is vacuumed when the prune ends.

A batch is inserted as a few multi-row `INSERT … VALUES (…), (…)` statements rather than one
`executemany`, which crosses from SQLite back into Python once per row; one statement per 1,024 rows
crosses once. A success's row leaves out the columns only failures, samples, runs and costs fill
(lean rows: 11 values to bind instead of 20); a batch's lean rows go in before its others, so within a
batch ids follow that order (`ts` is the order of time, as for records read back from the journal).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import orjson

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "ActionStore",
    "Journaled",
    "PostgresActionStore",
    "PruneStep",
    "Row",
    "SqliteActionStore",
    "Statement",
    "batch_statements",
    "is_postgresql",
    "open_action_store",
    "open_writer",
    "prune_oldest",
    "row",
    "write_statements",
]

_COLUMNS = (
    "ts, kind, source, ok, duration_ms, guild_id, channel_id, user_id, message_id, cost_usd,"
    " error_type, error_message, fingerprint, frames, run_id, extra, invocation, reply, samples, process"
)
# Most records are a success with nothing in the columns a failure, a sampled handler, a run or a shared
# database fill: their rows leave those out (NULL, and cost_usd its default 0) — binding 9 NULLs to every
# row was a third of SQLite's work. The first eight columns are the same in both.
_LEAN_COLUMNS = "ts, kind, source, ok, duration_ms, guild_id, channel_id, user_id, extra, invocation, reply"
_LEAN = 11  # values in a lean row
_SHAPES = {20: _COLUMNS, _LEAN: _LEAN_COLUMNS}
# Rows per INSERT: at most 1,024 (20,480 parameters, under SQLite's default limit of 32,766), the rest of a
# batch in powers of two: a dozen statements of their own sizes, each prepared once (a statement of
# hundreds of rows takes a millisecond to prepare, and a batch of any size would need one of its own).
_CHUNK = 1024

Statement = tuple[str, tuple[object, ...]]
Row = tuple[object, ...]  # `row()`: the values of `_COLUMNS` (or, lean, of `_LEAN_COLUMNS`), in order
Journaled = tuple[int, Row]  # (sequence number in the journal, the record's row)
# Where `row()` puts the values the fingerprint count needs.
_TS, _KIND, _ERROR_TYPE, _FINGERPRINT = 0, 1, 10, 12
_encode = json.JSONEncoder(default=str).encode
_POSITION = "SELECT seq FROM journal_positions WHERE journal = ?"
_REWIND = "UPDATE journal_positions SET seq = ?, updated_at = ? WHERE journal = ?"
_SET_POSITION = (
    "INSERT INTO journal_positions (journal, seq, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (journal) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at"
)


def row(record: Mapping[str, Any]) -> Row:
    """A record's row (its field dict, as `ActionRecord.fields()` gives it or a journal line holds it):
    lean when the columns only failures, samples, runs and costs fill are empty."""
    frames, samples, process = record["frames"], record["samples"], record.get("process")
    if (
        record["ok"]
        and not frames
        and not samples
        and process is None
        and record["message_id"] is None
        and record["error_type"] is None
        and record["error_message"] is None
        and record["fingerprint"] is None
        and record["run_id"] is None
        and record["cost_usd"] == 0
    ):
        return (
            record["ts"],
            record["kind"],
            record["source"],
            1,
            record["duration_ms"],
            record["guild_id"],
            record["channel_id"],
            record["user_id"],
            _json(record["extra"]),
            _json(record["invocation"]),
            _json(record["reply"]),
        )
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
        _json(frames) if frames else None,
        record["run_id"],
        _json(record["extra"]),
        _json(record["invocation"]),
        _json(record["reply"]),
        _json(samples) if samples else None,
        process,
    )


def _json(value: object) -> str | None:
    """A nested field's JSON text (orjson; `json` for what orjson refuses); None for an empty one."""
    if not value:
        return None
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:  # orjson.JSONEncodeError: a key that is not a string, an int past 64 bits
        return _encode(value)


@functools.lru_cache(maxsize=64)
def _insert_actions_sql(rows: int, width: int) -> str:
    values = f"({', '.join('?' * width)})"
    return f"INSERT INTO actions ({_SHAPES[width]}) VALUES {', '.join([values] * rows)}"


@functools.lru_cache(maxsize=64)
def _upsert_fingerprints_sql(rows: int) -> str:
    # Rows of one statement are applied in order, so a fingerprint twice in a batch counts twice.
    return (
        "INSERT INTO fingerprints (fingerprint, kind, error_type, first_seen, last_seen, count)"
        f" VALUES {', '.join(['(?, ?, ?, ?, ?, 1)'] * rows)}"
        " ON CONFLICT (fingerprint) DO UPDATE SET last_seen = excluded.last_seen, count = count + 1"
    )


def _chunks(count: int) -> list[tuple[int, int]]:
    """(start, size) of the statements for `count` rows: chunks of `_CHUNK`, then powers of two."""
    found = []
    start = 0
    while count - start >= _CHUNK:
        found.append((start, _CHUNK))
        start += _CHUNK
    size = _CHUNK
    while start < count:
        size //= 2
        if count - start >= size:
            found.append((start, size))
            start += size
    return found


def _by_shape(rows: Sequence[Row]) -> list[list[Row]]:
    """The lean rows, then the full ones (within a batch, ids follow that order; time is `ts`)."""
    lean = [one for one in rows if len(one) == _LEAN]
    full = [one for one in rows if len(one) != _LEAN] if len(lean) != len(rows) else []
    return [shape for shape in (lean, full) if shape]


def batch_statements(rows: Sequence[Row]) -> list[Statement]:
    """The statements that insert a batch of rows (`row()`) and count their fingerprints."""
    statements: list[Statement] = []
    for shape in _by_shape(rows):
        width = len(shape[0])
        for start, size in _chunks(len(shape)):
            chunk = shape[start : start + size]
            statements.append((_insert_actions_sql(size, width), tuple(itertools.chain.from_iterable(chunk))))
    failures = [r for r in rows if len(r) != _LEAN and r[_FINGERPRINT]]
    for start, size in _chunks(len(failures)):
        chunk = failures[start : start + size]
        params = tuple(
            value for r in chunk for value in (r[_FINGERPRINT], r[_KIND], r[_ERROR_TYPE], r[_TS], r[_TS])
        )
        statements.append((_upsert_fingerprints_sql(size), params))
    return statements


def open_writer(path: Path, busy_timeout_ms: int, *, autocheckpoint: bool = True) -> sqlite3.Connection:
    """A plain connection for the action store, set up like `open_database`'s; the schema is already
    migrated by then.

    `autocheckpoint=False`: this connection's commits never copy the WAL back into the database
    (SQLite runs that inside whichever commit crosses 1,000 pages); the store does it between batches.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    if not autocheckpoint:
        conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


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


class PruneStep(msgspec.Struct, frozen=True):
    """One retention step: rows removed, whether more may be left, how long it took, the bytes the
    store's files held at their largest during it (before its log was truncated) and after it."""

    removed: int
    more: bool
    took_s: float
    peak_bytes: int
    size_bytes: int


# -- the stores the recorder's store thread uses ----------------------------------------------------


class ActionStore(Protocol):
    """Where journaled records go, and from where retention removes them."""

    def position(self, journal: str) -> int:
        """The sequence number of the last record of `journal` the database holds (0: none)."""

    def write(self, journal: str, records: Sequence[Journaled]) -> int:
        """The records past the journal's position (in sequence order) and their fingerprint counts,
        and the new position, in one transaction; how many were inserted."""

    def skip(self, journal: str, seq: int) -> None:
        """Move the journal's position past a record the database refuses."""

    def rewind(self, journal: str, seq: int) -> None:
        """Move the journal's position back to `seq`: the journal ends there (its newer segments were
        deleted or replaced), and what it numbers from there on is new."""

    def tidy(self, wal_limit: int) -> None:
        """Between batches: truncate the write-ahead log once it has grown past `wal_limit` bytes."""

    def prune(self, before_ts: float, limit: int) -> PruneStep:
        """One bounded step of retention."""

    def finish_prune(self, ceiling: int) -> None:
        """After the last step: whatever frees the rest of the disk without passing `ceiling` bytes."""

    def size(self) -> int:
        """Bytes the store takes on disk."""

    def close(self) -> None: ...


def is_postgresql(database: str | Path) -> bool:
    return str(database).startswith(("postgresql://", "postgres://"))


def open_action_store(database: str | Path, busy_timeout_ms: int) -> ActionStore:
    """The store for a SQLite file's path or a PostgreSQL URL."""
    if is_postgresql(database):
        return PostgresActionStore(str(database))
    return SqliteActionStore(Path(database), busy_timeout_ms)


class SqliteActionStore:
    """Multi-row INSERTs; retention deletes the oldest expired rows a batch at a time and gives their
    pages back."""

    def __init__(self, path: Path, busy_timeout_ms: int) -> None:
        self.path = path
        self._conn = open_writer(path, busy_timeout_ms, autocheckpoint=False)
        self._files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        self._wal = self._files[1]

    def position(self, journal: str) -> int:
        row = self._conn.execute(_POSITION, (journal,)).fetchone()
        return int(row[0]) if row else 0

    def write(self, journal: str, records: Sequence[Journaled]) -> int:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")  # the write lock first: the position read is the one written on
        try:
            row = conn.execute(_POSITION, (journal,)).fetchone()
            position = int(row[0]) if row else 0
            fresh = [row for seq, row in records if seq > position]
            for sql, params in batch_statements(fresh):
                conn.execute(sql, params)
            last = records[-1][0]
            if last > position:
                conn.execute(_SET_POSITION, (journal, last, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLITE_FULL may already have rolled back
                conn.execute("ROLLBACK")
            raise
        return len(fresh)

    def skip(self, journal: str, seq: int) -> None:
        self._conn.execute(
            "INSERT INTO journal_positions (journal, seq, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (journal) DO UPDATE SET seq = max(seq, excluded.seq),"
            " updated_at = excluded.updated_at",
            (journal, seq, time.time()),
        )

    def rewind(self, journal: str, seq: int) -> None:
        self._conn.execute(_REWIND, (seq, time.time(), journal))

    def tidy(self, wal_limit: int) -> None:
        if _bytes(self._wal) > wal_limit:
            self._truncate_wal()

    def _truncate_wal(self) -> bool:
        """Copy the WAL back and truncate it; False when a reader kept it from finishing (busy)."""
        busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy

    def prune(self, before_ts: float, limit: int) -> PruneStep:
        started = time.perf_counter()
        removed = prune_oldest(self._conn, before_ts, limit)
        if removed and self._incremental():
            (free,) = self._conn.execute("PRAGMA freelist_count").fetchone()
            if free:
                # A script: stepped to its end. Through execute() SQLite frees one page per step, and
                # Python's sqlite3 steps a statement that returns no row once.
                self._conn.executescript(f"PRAGMA incremental_vacuum({int(free)});")
        peak = self.size()
        self._truncate_wal()
        return PruneStep(removed, removed == limit, time.perf_counter() - started, peak, self.size())

    def _incremental(self) -> bool:
        return int(self._conn.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2

    def finish_prune(self, ceiling: int) -> None:
        """A file from before incremental vacuum is switched to it by one VACUUM, when the VACUUM's own
        log (as large as what the file holds) fits under `ceiling` beside the file."""
        if self._incremental():
            return
        page_size, pages, free = (
            int(self._conn.execute(f"PRAGMA {name}").fetchone()[0])
            for name in ("page_size", "page_count", "freelist_count")
        )
        if self.size() + (pages - free) * page_size > ceiling:
            return
        self._conn.execute("PRAGMA temp_store=MEMORY")  # the copy is small: not a second one on disk
        try:
            self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._conn.execute("VACUUM")
        finally:
            self._conn.execute("PRAGMA temp_store=DEFAULT")
        self._truncate_wal()

    def size(self) -> int:
        return sum(_bytes(path) for path in self._files)

    def close(self) -> None:
        self._conn.close()


def _bytes(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


# Partitions are UTC days; the store makes those of a batch's days (and a few ahead), so a day's rows
# land in its own partition (which retention drops whole) rather than the default one (from which it
# can only delete).
_DAYS_AHEAD = 3
_COPY_ACTIONS = {width: f"COPY actions ({columns}) FROM STDIN" for width, columns in _SHAPES.items()}
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
    oldest whole day first, then deletes what is left before the cutoff a batch at a time, and
    vacuums the tables it deleted from when it is done."""

    def __init__(self, url: str) -> None:
        import psycopg

        self._conn: psycopg.Connection[Any] = psycopg.connect(url, autocommit=True)
        self._days: set[int] = set()  # UTC days (ts // 86400) whose partitions were made
        self._trimmed: set[str] = set()  # tables rows were deleted from: vacuumed at the end

    def position(self, journal: str) -> int:
        row = self._conn.execute(
            "SELECT seq FROM journal_positions WHERE journal = %s", (journal,)
        ).fetchone()
        return int(row[0]) if row else 0

    def write(self, journal: str, records: Sequence[Journaled]) -> int:
        with self._conn.transaction(), self._conn.cursor() as cursor:
            row = cursor.execute(
                "SELECT seq FROM journal_positions WHERE journal = %s FOR UPDATE", (journal,)
            ).fetchone()
            position = int(row[0]) if row else 0
            fresh = [row for seq, row in records if seq > position]
            if fresh:
                self._add_days(cursor, fresh)
                for shape in _by_shape(fresh):
                    with cursor.copy(_COPY_ACTIONS[len(shape[0])]) as copy:
                        for one in shape:
                            copy.write_row(one)
                failures = [
                    (one[_FINGERPRINT], one[_KIND], one[_ERROR_TYPE], one[_TS], one[_TS])
                    for one in fresh
                    if len(one) != _LEAN and one[_FINGERPRINT]
                ]
                if failures:
                    cursor.executemany(_UPSERT_FINGERPRINT, failures)
            last = records[-1][0]
            if last > position:
                self._set_position(cursor, journal, last)
        return len(fresh)

    def _add_days(self, cursor: psycopg.Cursor[Any], rows: Sequence[Row]) -> None:
        """Partitions for every day of the batch (a replayed stretch may be days old) and the days after
        the newest."""
        days = {int(float(one[_TS]) // 86400) for one in rows} - self._days  # type: ignore[arg-type]
        if not days:
            return
        newest = max(days)
        for day in sorted(days):
            ahead = _DAYS_AHEAD if day == newest else 1
            cursor.execute("SELECT actions_add_daily_partitions(%s, %s)", (day * 86400.0, ahead))
        self._days |= days | {newest + n for n in range(_DAYS_AHEAD)}

    @staticmethod
    def _set_position(cursor: psycopg.Cursor[Any], journal: str, seq: int) -> None:
        cursor.execute(
            "INSERT INTO journal_positions (journal, seq, updated_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (journal) DO UPDATE SET seq = greatest(journal_positions.seq, excluded.seq),"
            " updated_at = excluded.updated_at",
            (journal, seq, time.time()),
        )

    def skip(self, journal: str, seq: int) -> None:
        with self._conn.transaction(), self._conn.cursor() as cursor:
            self._set_position(cursor, journal, seq)

    def rewind(self, journal: str, seq: int) -> None:
        self._conn.execute(_REWIND.replace("?", "%s"), (seq, time.time(), journal))

    def tidy(self, wal_limit: int) -> None:
        """The server manages its own log."""

    def prune(self, before_ts: float, limit: int) -> PruneStep:
        started = time.perf_counter()
        with self._conn.transaction(), self._conn.cursor() as cursor:
            day = cursor.execute(_EXPIRED_DAYS, (before_ts,)).fetchone()
            if day is not None:
                # Counted for the log before it goes; dropping takes a moment, however many rows.
                rows = cursor.execute(f'SELECT count(*) FROM "{day[0]}"').fetchone()
                cursor.execute(f'DROP TABLE "{day[0]}"')
                self._days.clear()  # a replayed record of that day must make it again
                removed, more = int(rows[0]) if rows else 0, True
            else:
                # The rest: the day the cutoff falls in, the default partition, or a plain table.
                cursor.execute(
                    "DELETE FROM actions WHERE (id, ts) IN"
                    " (SELECT id, ts FROM actions WHERE ts < %s ORDER BY ts LIMIT %s)"
                    " RETURNING tableoid::regclass::text",
                    (before_ts, limit),
                )
                self._trimmed.update(table for (table,) in cursor.fetchall())
                removed = cursor.rowcount
                more = removed == limit
        size = self.size()
        return PruneStep(removed, more, time.perf_counter() - started, size, size)

    def finish_prune(self, ceiling: int) -> None:
        """VACUUM what rows were deleted from: their space is reused, and an emptied end is given back."""
        trimmed, self._trimmed = self._trimmed, set()
        for table in sorted(trimmed):
            self._conn.execute(f"VACUUM {_quoted(table)}")

    def size(self) -> int:
        row = self._conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._conn.close()


def _quoted(name: str) -> str:
    """A table name as `regclass::text` gives it (quoted where it must be), made safe to splice in."""
    if name.startswith('"'):
        return name
    return '"' + name.replace('"', '""') + '"'
