"""Recording under load and retention at scale, on SQLite and on PostgreSQL: 100,000 records recorded as
fast as the loop can go and 20,000 a second for a minute all reach the database, each once; a prune of a
million expired rows while records keep being written holds the store's files under their size before
it plus the margin, and leaves them smaller."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mendbot.db import open_database
from mendbot.observe.recorder import ActionRecorder
from tests.harness.storage import old_actions

pytestmark = pytest.mark.engines

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0
MB = 1 << 20


@pytest.fixture
def database(_engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """A SQLite file's path, or the URL of an empty PostgreSQL database."""
    if _engine == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return tmp_path / "m.db"


def _postgresql(database: Path | str) -> bool:
    return str(database).startswith("postgresql://")


def _recorder(database: Path | str, tmp_path: Path) -> ActionRecorder:
    """A recorder with the product's defaults (queue, batches, retries, margin)."""
    return ActionRecorder(
        database=database,
        ndjson_path=tmp_path / "logs" / "actions.ndjson",
        repo_root=ROOT,
        clock=lambda: datetime.now(UTC),
    )


def _query(database: Path | str, sql: str) -> tuple[int, ...]:
    if _postgresql(database):
        import psycopg

        with psycopg.connect(str(database)) as conn:
            row = conn.execute(sql).fetchone()
    else:
        import sqlite3

        with sqlite3.connect(database) as conn:
            row = conn.execute(sql).fetchone()
    assert row is not None
    return tuple(int(value or 0) for value in row)


def _produced(database: Path | str) -> tuple[int, ...]:
    """(rows of kind task:load, how many distinct `n`): every record once means both equal."""
    number = "(extra::jsonb ->> 'n')" if _postgresql(database) else "json_extract(extra, '$.n')"
    return _query(
        database, f"SELECT count(*), count(DISTINCT {number}) FROM actions WHERE kind = 'task:load'"
    )


def _accounted(recorder: ActionRecorder) -> str:
    """Where records that did not reach the database went, as the recorder counts them."""
    return (
        f"waiting in the journal {recorder.waiting}, shed {dict(recorder.shed)}, "
        f"unreadable or missing in the journal {recorder.unreadable}"
    )


def _record(recorder: ActionRecorder, n: int) -> None:
    """One of the load's records: one in twenty a failure (fingerprinted), the rest as a command's."""
    if n % 20:
        recorder.record("task:load", "test", ok=True, duration_ms=1.5, user_id=n % 40, extra={"n": n})
    else:
        error = ZeroDivisionError("division by zero")
        recorder.record("task:load", "test", ok=False, duration_ms=1.5, error=error, extra={"n": n})


async def test_a_burst_of_100000_records_as_fast_as_the_loop_can_all_reach_the_database(
    database: Path | str, tmp_path: Path
) -> None:
    """100,000 records recorded in one go — the loop never yields between them, so the database cannot
    keep up while they come: every one of them is in the database afterwards, once, none shed."""
    recorder = _recorder(database, tmp_path)
    writer = asyncio.create_task(recorder.run_writer())
    await recorder.flush()
    for n in range(100_000):
        _record(recorder, n)
    await recorder.flush()
    await recorder.close()
    await writer
    assert _produced(database) == (100_000, 100_000), _accounted(recorder)
    assert not recorder.shed


async def test_20000_records_a_second_for_a_minute_all_reach_the_database(
    database: Path | str, tmp_path: Path
) -> None:
    """1,200,000 records offered at 20,000 a second, a little every millisecond as handlers would:
    every one of them is in the database afterwards, once, none shed."""
    total, per_s = 1_200_000, 20_000
    recorder = _recorder(database, tmp_path)
    writer = asyncio.create_task(recorder.run_writer())
    await recorder.flush()
    started = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - started) * per_s))
        for n in range(sent, due):
            _record(recorder, n)
        sent = max(sent, due)
        await asyncio.sleep(0.001)
    await recorder.flush()
    await recorder.close()
    await writer
    assert _produced(database) == (total, total), _accounted(recorder)
    assert not recorder.shed


def _store_bytes(database: Path | str) -> Callable[[], int]:
    """How to read what the store takes on disk: the SQLite file with its WAL and shared memory, or the
    PostgreSQL database's size."""
    if _postgresql(database):
        import psycopg

        conn = psycopg.connect(str(database), autocommit=True)

        def pg_size() -> int:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            return int(row[0]) if row else 0

        return pg_size
    files = [Path(f"{database}{suffix}") for suffix in ("", "-wal", "-shm")]

    def file_size() -> int:
        total = 0
        for path in files:
            with suppress(FileNotFoundError):
                total += os.stat(path).st_size
        return total

    return file_size


@contextmanager
def _largest(measure: Callable[[], int], every_s: float) -> Iterator[list[int]]:
    """The largest `measure()` seen, sampled on a thread every `every_s` while the block runs."""
    largest = [measure()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(every_s):
            largest[0] = max(largest[0], measure())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield largest
    finally:
        done.set()
        sampler.join()
        largest[0] = max(largest[0], measure())


async def test_pruning_a_million_rows_keeps_the_store_under_its_size_plus_the_margin(
    database: Path | str, tmp_path: Path
) -> None:
    """A million expired rows (on PostgreSQL five days in their partitions and part in the default one)
    pruned while records are written at 1,000 a second: the store's files never pass their size before
    the prune plus the margin (5 %, at least 4 MB), end smaller than they began, and every record written
    meanwhile is there."""
    now = time.time()
    if _postgresql(database):
        from mendbot.db.migrate import upgrade_postgresql

        await asyncio.to_thread(upgrade_postgresql, str(database))
        await asyncio.to_thread(old_actions, database, 900_000, now - 30 * DAY, 5 * DAY)
        # Rows of a day without a partition land in the default one, from which they can only be deleted.
        await asyncio.to_thread(old_actions, database, 100_000, now - 40 * DAY, DAY, partitioned=False)
    else:
        await (await open_database(database)).close()
        await asyncio.to_thread(old_actions, database, 1_000_000, now - 30 * DAY, 5 * DAY)
    measure = _store_bytes(database)
    recorder = _recorder(database, tmp_path)
    writer = asyncio.create_task(recorder.run_writer())
    await recorder.flush()
    produced = 0
    done = asyncio.Event()

    async def produce() -> None:
        nonlocal produced
        begun = time.perf_counter()
        while not done.is_set():
            due = int((time.perf_counter() - begun) * 1000)
            while produced < due:
                _record(recorder, produced)
                produced += 1
            await asyncio.sleep(0.001)

    producer = asyncio.create_task(produce())
    await asyncio.sleep(0.3)
    before = await asyncio.to_thread(measure)
    with _largest(measure, 0.002 if not _postgresql(database) else 0.02) as largest:
        pruned = await recorder.prune(retention_days=14)
    after = await asyncio.to_thread(measure)
    done.set()
    await producer
    await recorder.flush()
    await recorder.close()
    await writer
    assert pruned == 1_000_000
    assert largest[0] <= before + max(before * 0.05, 4 * MB), (before, largest[0])
    assert after < before / 2, (before, after)
    assert _produced(database) == (produced, produced)
