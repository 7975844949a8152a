"""Storage faults for tests, injected for real: another process holding SQLite's write lock, a full disk.

`hold_write_lock(db)` starts a separate Python process that opens the database and holds
`BEGIN EXCLUSIVE` until the block ends (or `seconds` pass). `small_disk(path)` mounts a tmpfs of
a few megabytes there (root only; the caller skips otherwise) and `fill_disk(dir)` takes every
free byte with a filler file, which the caller deletes to give the space back.

`old_actions(database, count, start, span_s)` fills `actions` with `count` rows spread over `span_s`
seconds from `start`, made by one statement in the database (a million in seconds, where recording
them would take minutes): the rows retention tests delete.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

__all__ = ["fill_disk", "hold_write_lock", "old_actions", "small_disk"]

_HOLDER = """
import select, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
select.select([sys.stdin], [], [], float(sys.argv[2]))  # until stdin closes or the time is up
db.execute("ROLLBACK")
print("released", flush=True)
"""


@asynccontextmanager
async def hold_write_lock(db_path: Path, seconds: float = 10.0) -> AsyncIterator[asyncio.subprocess.Process]:
    """Another process holds the database's write lock for the block (at most `seconds`)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLDER,
        str(db_path),
        str(seconds),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        assert (await asyncio.wait_for(process.stdout.readline(), 30)).strip() == b"locked"
        yield process
    finally:
        process.stdin.close()
        await asyncio.wait_for(process.wait(), 30)


@contextmanager
def small_disk(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` for the block; PermissionError where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        raise PermissionError(mounted.stderr.decode(errors="replace").strip() or "mount failed")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(directory: Path) -> Path:
    """Write a filler file until the file system is full; returns it (delete it to free the space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return filler


# Six kinds, one failure in twenty (with one of 50 fingerprints), 40 users: rows like the bot's.
_ROWS = """
INSERT INTO actions (ts, kind, source, ok, duration_ms, guild_id, channel_id, user_id, fingerprint, extra)
SELECT {start} + i * {step}, 'command:k' || (i % 6), 'test', CASE WHEN i % 20 = 0 THEN 0 ELSE 1 END,
       1.0 + (i % 97) / 10.0, 1100000000000000000, 1100000000000000010 + i % 5, 1100000000000001000 + i % 40,
       CASE WHEN i % 20 = 0 THEN 'fp' || (i % 50) END, '{{"via":"slash"}}'
FROM {numbers}
"""
# 0 … 999,999 from six joins of ten digits (SQLite has no generate_series by default; a recursive
# count is slower), cut to the count asked for.
_SQLITE_NUMBERS = (
    "(WITH d(x) AS (VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9))"
    " SELECT a.x + 10 * b.x + 100 * c.x + 1000 * e.x + 10000 * f.x + 100000 * g.x AS i"
    " FROM d AS g, d AS f, d AS e, d AS c, d AS b, d AS a WHERE i < {count})"
)


def old_actions(
    database: Path | str, count: int, start: float, span_s: float, *, partitioned: bool = True
) -> None:
    """`count` rows (at most a million) in `actions`, from `start` over `span_s` seconds (on PostgreSQL
    into their days' partitions, made first; with `partitioned=False` into the default partition, as
    rows of a day nobody made a partition for). A SQLite file must not be open elsewhere meanwhile."""
    step = span_s / max(count, 1)
    if str(database).startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(str(database), autocommit=True) as conn:
            if partitioned:
                days = int(span_s // 86400) + 2
                conn.execute("SELECT actions_add_daily_partitions(%s, %s)", (start, days))
            numbers = f"generate_series(0, {int(count) - 1}) AS i"
            conn.execute(_ROWS.format(start=float(start), step=float(step), numbers=numbers).encode())
            conn.execute("ANALYZE actions")
        return
    import sqlite3

    if count > 1_000_000:
        raise ValueError("at most a million rows at once")
    db = sqlite3.connect(database, isolation_level=None)
    try:
        # Straight into the file (nobody else has it open yet): not a whole copy in the WAL first.
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("PRAGMA synchronous=OFF")
        numbers = _SQLITE_NUMBERS.format(count=int(count))
        # The indexes made again after the rows, in one sorted pass each: a third of the time.
        indexes = [
            (name, sql)
            for name, sql in db.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'actions'"
                " AND sql IS NOT NULL"
            )
        ]
        db.execute("BEGIN")
        for name, _ in indexes:
            db.execute(f'DROP INDEX "{name}"')
        db.execute(_ROWS.format(start=float(start), step=float(step), numbers=numbers))
        for _, sql in indexes:
            db.execute(sql)
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()
