"""The recorder: the journal first, then the database from it (in order, each record once, through
locks, refusals and restarts), journal rotation, retention in batches beside the store, `action()`."""

from __future__ import annotations

import asyncio
import functools
import json
import signal
import sqlite3
import sys
import weakref
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from mendbot.db import action_writes, open_database
from mendbot.db import actions as action_queries
from mendbot.db.records import ActionRecord
from mendbot.db.retry import RetryPolicy, StorageHealth
from mendbot.observe.journal import Journal, journal_line
from mendbot.observe.recorder import ActionRecorder
from tests.harness.storage import hold_write_lock

pytestmark = pytest.mark.engines

ROOT = Path(__file__).resolve().parent.parent


def _recorder(
    tmp_path: Path,
    now: list[datetime],
    *,
    queue_size: int = 10_000,
    ndjson_max_bytes: int = 20_000_000,
    ndjson_backups: int = 3,
    attempts: int = 5,
    storage: StorageHealth | None = None,
) -> ActionRecorder:
    return ActionRecorder(
        database=tmp_path / "m.db",
        ndjson_path=tmp_path / "logs" / "actions.ndjson",
        repo_root=ROOT,
        clock=lambda: now[0],
        queue_size=queue_size,
        ndjson_max_bytes=ndjson_max_bytes,
        ndjson_backups=ndjson_backups,
        retry=RetryPolicy(attempts=attempts, backoff_s=0.02),
        storage=storage,
        busy_timeout_ms=20,
    )


async def _count(path: Path) -> int:
    db = await open_database(path)
    try:
        async with db.execute("SELECT count(*) FROM actions") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0
    finally:
        await db.close()


async def test_ndjson_rotates_and_keeps_every_record(tmp_path: Path) -> None:
    """Past the size limit the journal rotates to .1, .2 (older ones go once stored); no record is lost
    from SQLite."""
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    recorder = _recorder(tmp_path, now, ndjson_max_bytes=10_000, ndjson_backups=2)
    writer = asyncio.create_task(recorder.run_writer())
    for batch in range(10):
        for _ in range(50):
            recorder.record("task:x", "test", ok=True, duration_ms=1, extra={"batch": batch})
        await recorder.flush()
    recorder.record("task:x", "test", ok=True, duration_ms=1, extra={"batch": "last"})
    await recorder.close()
    await writer
    logs = tmp_path / "logs"
    assert sorted(p.name for p in logs.iterdir()) == [
        "actions.journal",
        "actions.ndjson",
        "actions.ndjson.1",
        "actions.ndjson.2",
    ]
    last = json.loads((logs / "actions.ndjson").read_text().splitlines()[-1])
    assert last["extra"] == {"batch": "last"} and last["seq"] > 0
    assert await _count(tmp_path / "m.db") == 501


async def test_retention_prunes_only_old_records(tmp_path: Path) -> None:
    """Records older than the retention are deleted; newer ones stay."""
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    recorder = _recorder(tmp_path, now)
    writer = asyncio.create_task(recorder.run_writer())
    recorder.record("task:old", "test", ok=True, duration_ms=1)
    now[0] += timedelta(days=10)
    recorder.record("task:new", "test", ok=True, duration_ms=1)
    await recorder.flush()
    assert await recorder.prune(retention_days=7) == 1
    await recorder.close()
    await writer
    assert await _count(tmp_path / "m.db") == 1


async def test_a_success_is_taken_in_a_moment_later_and_before_the_failure_after_it(tmp_path: Path) -> None:
    """On the event loop a success reaches the subscribers a moment after it is recorded, not in its
    handler's time, stamped with when it was recorded; a failure recorded after it takes it in first, in
    order, and the moment's own timer takes in the rest; a flush takes in what is kept."""
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    recorder = _recorder(tmp_path, now)
    seen: list[ActionRecord] = []
    recorder.subscribe(seen.append)
    assert recorder.record("command:a", "test", ok=True, duration_ms=1, extra={"n": 1}) is None
    assert seen == []
    failed = recorder.record("command:b", "test", ok=False, duration_ms=1, error=ValueError("no"))
    assert [r.kind for r in seen] == ["command:a", "command:b"] and failed is seen[-1]
    recorder.record("command:c", "test", ok=True, duration_ms=1)
    recorded_at = now[0].timestamp()
    now[0] += timedelta(hours=1)
    taken = asyncio.Event()
    recorder.subscribe(lambda record: taken.set())
    await asyncio.wait_for(taken.wait(), 10)  # nothing of the test's takes it in: the timer does
    assert [r.kind for r in seen] == ["command:a", "command:b", "command:c"]
    assert seen[-1].ts == recorded_at
    recorder.record("command:d", "test", ok=True, duration_ms=1)
    writer = asyncio.create_task(recorder.run_writer())
    await recorder.flush()
    assert [r.kind for r in seen][-1] == "command:d"
    await recorder.close()
    await writer
    assert await _count(tmp_path / "m.db") == 4


async def test_a_success_recorded_later_is_worked_out_when_taken_in(tmp_path: Path) -> None:
    """`record_later` (a listener's success): its fields are worked out when it is taken in, not in its
    handler's time, but it is stamped with when it was recorded and taken in in order with the others; one
    whose fields cannot be worked out is logged and the rest go on; off the loop it is recorded at once,
    after what was kept before it."""
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    recorder = _recorder(tmp_path, now)
    seen: list[ActionRecord] = []
    recorder.subscribe(seen.append)
    asked: list[str] = []

    def fields(name: str) -> dict[str, object]:
        asked.append(name)
        if name == "broken":
            raise RuntimeError("the recording's own bug")
        return {"invocation": {"name": name}, "user_id": 7}

    recorded_at = now[0].timestamp()
    recorder.record("command:a", "test", ok=True, duration_ms=1)
    for name in ("first", "broken", "last"):
        recorder.record_later(
            f"listener:{name}", "Cog", duration_ms=2, fields=functools.partial(fields, name)
        )
    now[0] += timedelta(hours=1)
    assert asked == [] and seen == []
    recorder.take_in()
    assert asked == ["first", "broken", "last"]
    assert [r.kind for r in seen] == ["command:a", "listener:first", "listener:last"]
    first = seen[1]
    assert (first.invocation, first.user_id, first.ts, first.ok) == ({"name": "first"}, 7, recorded_at, True)

    def off_the_loop() -> None:
        recorder.record_later("listener:thread", "Cog", duration_ms=1, fields=lambda: {"user_id": 8})

    recorder.record_later("listener:kept", "Cog", duration_ms=1, fields=dict)
    await asyncio.to_thread(off_the_loop)  # what was kept before it goes first
    assert [r.kind for r in seen[-2:]] == ["listener:kept", "listener:thread"] and seen[-1].user_id == 8
    writer = asyncio.create_task(recorder.run_writer())
    await recorder.close()
    await writer
    assert await _count(tmp_path / "m.db") == 5


async def test_without_windows_a_success_is_taken_in_at_the_next_turn(tmp_path: Path) -> None:
    """`without_windows` (a virtual world's): a success reaches the subscribers at the loop's next turn,
    not after a moment for more, and goes on to the database with no wait for a fuller batch."""
    recorder = _recorder(tmp_path, [datetime.now(UTC)])
    recorder.without_windows()
    seen: list[ActionRecord] = []
    recorder.subscribe(seen.append)
    writer = asyncio.create_task(recorder.run_writer())
    assert recorder.record("command:a", "test", ok=True, duration_ms=1) is None
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [r.kind for r in seen] == ["command:a"]
    await recorder.flush()
    await recorder.close()
    await writer
    assert await _count(tmp_path / "m.db") == 1


async def test_action_block_records_failure_and_reraises(tmp_path: Path) -> None:
    """`with recorder.action(...)` records a raised error as a failure and lets it propagate."""
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    recorder = _recorder(tmp_path, now)
    seen: list[ActionRecord] = []
    recorder.subscribe(seen.append)
    with pytest.raises(KeyError), recorder.action("agent:run", "improve", run_id=7) as pending:
        pending.cost_usd = 0.25
        raise KeyError("missing")
    with recorder.action("agent:run", "improve", run_id=8):
        pass
    recorder.take_in()  # a success is taken in a moment after it is recorded
    assert [(r.ok, r.error_type, r.cost_usd, r.run_id) for r in seen] == [
        (False, "KeyError", 0.25, 7),
        (True, None, 0.0, 8),
    ]


async def _started(recorder: ActionRecorder) -> None:
    """Wait until the writer has its database open (one record written)."""
    recorder.record("task:start", "test", ok=True, duration_ms=1)
    await recorder.flush()
    assert recorder.written == 1


async def test_a_batch_that_meets_a_lock_is_kept_and_written_once_the_lock_goes(tmp_path: Path) -> None:
    """A batch written while another process holds the write lock is retried, not discarded: once
    the lock is released every record is stored and nothing is counted as dropped."""
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    storage = StorageHealth()
    recorder = _recorder(tmp_path, now, attempts=1000, storage=storage)
    writer = asyncio.create_task(recorder.run_writer())
    await _started(recorder)
    async with hold_write_lock(tmp_path / "m.db") as holder:
        for _ in range(20):
            recorder.record("task:x", "test", ok=True, duration_ms=1)
        await asyncio.wait_for(storage.wait_for_retry(), 30)
        assert holder.stdin is not None
        holder.stdin.close()
        await recorder.flush()
    await recorder.close()
    await writer
    assert (recorder.written, sum(recorder.shed.values()), recorder.write_errors) == (21, 0, 0)
    assert await _count(tmp_path / "m.db") == 21
    assert storage.given_up == 0


async def test_a_lock_that_outlasts_the_attempts_is_announced_and_loses_nothing(tmp_path: Path) -> None:
    """Past its attempts under a lock, the store reports storage as failing (StorageHealth, once) and
    keeps the records in the journal; once the lock goes every one of them is in the database, and
    storage is writable again."""
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    storage = StorageHealth()
    recorder = _recorder(tmp_path, now, attempts=2, storage=storage)
    writer = asyncio.create_task(recorder.run_writer())
    await _started(recorder)
    async with hold_write_lock(tmp_path / "m.db"):
        for _ in range(7):
            recorder.record("task:x", "test", ok=True, duration_ms=1)
        await asyncio.wait_for(storage.wait_failing(), 30)
        assert storage.state.fault == "locked" and recorder.waiting == 7
    recorder.record("task:y", "test", ok=True, duration_ms=1)
    await asyncio.wait_for(storage.wait_writable(), 30)
    await recorder.flush()
    await recorder.close()
    await writer
    assert (recorder.written, recorder.waiting, sum(recorder.shed.values())) == (9, 0, 0)
    assert storage.given_up == 1 and storage.state.fault is None
    assert await _count(tmp_path / "m.db") == 9


async def test_a_record_the_database_refuses_is_passed_over_and_counted(tmp_path: Path) -> None:
    """A record the database cannot take for what it holds (an id past SQLite's 64 bits) fails its
    batch for a reason retrying cannot fix: the batch goes again record by record, that one is passed
    over and counted (it stays in the journal), and the others are stored."""
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    storage = StorageHealth()
    recorder = _recorder(tmp_path, now, attempts=50, storage=storage)
    writer = asyncio.create_task(recorder.run_writer())
    await _started(recorder)
    recorder.record("task:x", "test", ok=True, duration_ms=1)
    recorder.record("task:huge", "test", ok=True, duration_ms=1, user_id=2**70)
    recorder.record("task:x", "test", ok=True, duration_ms=1)
    await recorder.close()
    await writer
    assert (recorder.written, recorder.unstorable, recorder.write_errors) == (3, 1, 0)
    assert storage.retried == 0 and storage.state.fault is None
    journal = (tmp_path / "logs" / "actions.ndjson").read_text()
    assert '"kind":"task:huge"' in journal and str(2**70) in journal


async def test_a_journal_line_that_is_not_a_record_is_passed_over_and_the_rest_stored(tmp_path: Path) -> None:
    """Filling a new database from the journal, a line that parses but is not a record (fields missing,
    a value of the wrong type, a field no record has) is passed over; every record around it is stored."""
    whole = ActionRecord(ts=1.0, kind="task:kept", source="test", ok=True, duration_ms=1.0).fields()
    lines = [
        journal_line(1, whole),
        journal_line(2, {"kind": "task:half", "ok": True}),
        journal_line(3, {**whole, "kind": "task:odd", "ok": "maybe"}),
        journal_line(4, {**whole, "kind": "task:odd", "colour": "red"}),
        journal_line(5, whole),
    ]
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "actions.ndjson").write_bytes(b"".join(lines))
    recorder = _recorder(tmp_path, [datetime(2026, 1, 1, tzinfo=UTC)])
    writer = asyncio.create_task(recorder.run_writer())
    recorder.record("task:start", "test", ok=True, duration_ms=1)
    await recorder.flush()
    await recorder.close()
    await writer
    db = await open_database(tmp_path / "m.db")
    try:
        async with db.execute("SELECT kind FROM actions ORDER BY id") as cursor:
            assert [row[0] for row in await cursor.fetchall()] == ["task:kept", "task:kept", "task:start"]
    finally:
        await db.close()


def _expired_rows(db_path: Path, count: int, ts: float) -> None:
    """`count` rows at `ts`, inserted straight into the table (setup for retention tests)."""
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO actions (ts, kind, source, ok, duration_ms) VALUES (?, 'task:old', 'test', 1, 1)",
            [(ts + n / 1000,) for n in range(count)],
        )
        db.execute("COMMIT")
    finally:
        db.close()


async def test_no_record_is_lost_while_a_prune_runs(tmp_path: Path) -> None:
    """Records written while retention deletes thousands of rows in batches all arrive; only old rows go."""
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    recorder = _recorder(tmp_path, now)
    writer = asyncio.create_task(recorder.run_writer())
    recorder.record("task:first", "test", ok=True, duration_ms=1)
    await recorder.flush()
    _expired_rows(tmp_path / "m.db", 5000, now[0].timestamp() - 30 * 86400)
    produced = 0

    async def produce() -> None:
        nonlocal produced
        for _ in range(60):
            for _ in range(10):
                recorder.record("task:new", "test", ok=True, duration_ms=1)
                produced += 1
            await asyncio.sleep(0)

    producer = asyncio.create_task(produce())
    pruned = await recorder.prune(retention_days=7, batch=200)
    await producer
    await recorder.flush()
    await recorder.close()
    await writer
    assert pruned == 5000
    assert not recorder.shed
    assert await _count(tmp_path / "m.db") == 1 + produced


def test_one_prune_batch_deletes_only_the_oldest_expired_rows(tmp_path: Path) -> None:
    """A retention batch removes at most its limit, oldest first, and never a row inside the retention."""
    asyncio.run(_migrated(tmp_path / "m.db"))
    _expired_rows(tmp_path / "m.db", 300, 1000.0)
    _expired_rows(tmp_path / "m.db", 5, 5000.0)
    conn = action_writes.open_writer(tmp_path / "m.db", 1000)
    try:
        assert action_writes.prune_oldest(conn, 2000.0, 100) == 100
        assert conn.execute("SELECT min(ts) FROM actions").fetchone()[0] >= 1000.1
        assert action_writes.prune_oldest(conn, 2000.0, 1000) == 200
        assert action_writes.prune_oldest(conn, 2000.0, 1000) == 0
        assert conn.execute("SELECT count(*) FROM actions").fetchone()[0] == 5
    finally:
        conn.close()


async def _migrated(path: Path) -> None:
    await (await open_database(path)).close()


async def test_retention_daemon_prunes_at_once_in_the_background(tmp_path: Path) -> None:
    """The retention daemon prunes as soon as it starts, not only after its first interval."""
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    await _migrated(tmp_path / "m.db")
    _expired_rows(tmp_path / "m.db", 1000, now[0].timestamp() - 30 * 86400)
    recorder = _recorder(tmp_path, now)
    writer = asyncio.create_task(recorder.run_writer())
    daemon = asyncio.create_task(recorder.prune_every(retention_days=7, interval_s=3600))
    try:
        for _ in range(3000):  # the daemon works in the background: look until it is done, 30 s at most
            if not await _count(tmp_path / "m.db"):
                break
            await asyncio.sleep(0.01)
        assert await _count(tmp_path / "m.db") == 0
    finally:
        daemon.cancel()
        await recorder.close()
        await writer


async def test_a_batch_over_one_statement_is_written_whole_and_counts_each_failure(tmp_path: Path) -> None:
    """A batch larger than one INSERT is written whole; a fingerprint repeated in it counts each time."""
    db = await open_database(tmp_path / "m.db")
    try:
        records = [
            ActionRecord(
                ts=float(n),
                kind="command:roll",
                source="test",
                ok=n % 1000 != 0,
                duration_ms=1.0,
                fingerprint=None if n % 1000 else "fp-same",
                extra={"n": n},
            )
            for n in range(2500)
        ]
        await action_queries.insert_many(db, records)
        async with db.execute("SELECT count(DISTINCT extra), max(ts) FROM actions") as cursor:
            assert tuple(await cursor.fetchone() or ()) == (2500, 2499.0)
        async with db.execute("SELECT count, first_seen, last_seen FROM fingerprints") as cursor:
            assert [tuple(row) for row in await cursor.fetchall()] == [(3, 0.0, 2000.0)]
    finally:
        await db.close()


async def test_a_recorded_action_is_a_whole_valid_record(tmp_path: Path) -> None:
    """The recorder builds records without validation (`ActionRecord.trusted`): each must still
    carry every field, with the types validation would give, and dump as a validated one does."""
    recorder = _recorder(tmp_path, [datetime(2026, 1, 1, tzinfo=UTC)])
    try:
        raise ValueError("bad input")
    except ValueError as exc:
        error = exc
    record = recorder.record(
        "command:roll", "Dice", ok=False, duration_ms=1.23456, error=error, user_id=7, extra={"via": "slash"}
    )
    assert record is not None  # a failure is taken in at once
    assert set(record.fields()) == set(ActionRecord.__struct_fields__)
    validated = ActionRecord.validated(msgspec.json.decode(msgspec.json.encode(record)))
    assert validated == record
    assert msgspec.json.encode(validated) == msgspec.json.encode(record)


async def test_the_wal_stays_small_while_the_writer_writes(tmp_path: Path) -> None:
    """The store truncates the write-ahead log between its batches once it passes 4 MB, so the WAL does
    not grow with what is written (it holds at most that and one batch)."""
    recorder = ActionRecorder(
        database=tmp_path / "m.db",
        ndjson_path=tmp_path / "logs" / "actions.ndjson",
        repo_root=ROOT,
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )
    writer = asyncio.create_task(recorder.run_writer())
    wal = tmp_path / "m.db-wal"
    largest = 0
    for n in range(30_000):
        recorder.record("command:roll", "Dice", ok=True, duration_ms=1.0, extra={"n": n, "pad": "x" * 200})
        if n % 1000 == 999:
            await recorder.flush()
            largest = max(largest, wal.stat().st_size)
    await recorder.close()
    await writer

    assert largest < 8_000_000  # ~12 MB of rows went through it
    assert await _count(tmp_path / "m.db") == 30_000


_KILLED_SCRIPT = """
import asyncio, sys
from datetime import UTC, datetime
from pathlib import Path
from mendbot.observe.recorder import ActionRecorder

async def main() -> None:
    tmp = Path(sys.argv[1])
    recorder = ActionRecorder(database=tmp / "m.db", ndjson_path=tmp / "logs" / "actions.ndjson",
                              repo_root=tmp, clock=lambda: datetime.now(UTC), busy_timeout_ms=20)
    asyncio.create_task(recorder.run_writer())
    for n in range(500):
        recorder.record("task:x", "test", ok=n % 10 != 0, duration_ms=1, extra={"n": n})
    while recorder.journaled < 500:
        await asyncio.sleep(0.01)
    print("written", recorder.written, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_records_kept_turn_after_turn_go_to_the_journal_in_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records kept one loop turn after another, within the hand-over interval, reach the journal thread
    together — one append, not one a turn (each hand-over wakes the thread, and a busy bot woke it for
    every command) — and a flush hands over what waits at once."""
    recorder = _recorder(tmp_path, [datetime.now(UTC)])
    writer = asyncio.create_task(recorder.run_writer())
    await recorder.flush()
    appends: list[int] = []
    append = Journal.append

    def counted(journal: Journal, lines: list[bytes]) -> None:
        appends.append(len(lines))
        append(journal, lines)

    monkeypatch.setattr(Journal, "append", counted)
    for _ in range(20):
        recorder.record("command:roll", "dice", ok=True, duration_ms=1.0)
        await asyncio.sleep(0)  # a turn of the loop between records, as between commands
    await recorder.flush()
    await recorder.close()
    await writer
    assert sum(appends) == 20 and len(appends) <= 2
    assert await _count(tmp_path / "m.db") == 20


async def test_what_a_killed_bot_journaled_is_stored_at_the_next_start(tmp_path: Path) -> None:
    """kill -9 of a bot whose database was locked: its records were in the journal, not the database;
    the next start stores every one of them, once, and says so (`recovery`)."""
    await _migrated(tmp_path / "m.db")
    async with hold_write_lock(tmp_path / "m.db", seconds=60):
        bot = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _KILLED_SCRIPT, str(tmp_path), cwd=ROOT, stdout=asyncio.subprocess.PIPE
        )
        assert bot.stdout is not None
        said = b""
        while not said.startswith(b"written "):  # its log's lines (storage failing) come first
            said = await asyncio.wait_for(bot.stdout.readline(), 60)
            assert said, "the bot ended without saying what it wrote"
        assert int(said.split()[1]) == 0  # journaled, none stored
        bot.send_signal(signal.SIGKILL)
        await bot.wait()
    recorder = _recorder(tmp_path, [datetime.now(UTC)])
    writer = asyncio.create_task(recorder.run_writer())
    await recorder.flush()
    assert recorder.recovery is not None and recorder.recovery.count == 500
    await recorder.close()
    await writer
    db = sqlite3.connect(tmp_path / "m.db")
    try:
        found = db.execute("SELECT count(*), count(DISTINCT extra), sum(ok) FROM actions").fetchone()
    finally:
        db.close()
    assert found == (500, 500, 450)


def _pg_rows(url: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [tuple(row) for row in conn.execute(sql, params).fetchall()]


async def test_actions_go_to_postgresql_in_their_days_partition(postgres_url: str, tmp_path: Path) -> None:
    """Given a PostgreSQL URL, the writer migrates it, COPYs each batch into the day's partition and
    counts every failure of a fingerprint, twice in one batch included."""
    now = [datetime(2026, 3, 4, 12, tzinfo=UTC)]
    recorder = ActionRecorder(
        database=postgres_url,
        ndjson_path=tmp_path / "logs" / "actions.ndjson",
        repo_root=ROOT,
        clock=lambda: now[0],
    )
    writer = asyncio.create_task(recorder.run_writer())
    error = ZeroDivisionError("division by zero")
    recorder.record("command:roll", "Dice", ok=False, duration_ms=2.5, error=error, user_id=7)
    recorder.record("command:roll", "Dice", ok=False, duration_ms=1.5, error=error, user_id=8)
    recorder.record("command:roll", "Dice", ok=True, duration_ms=1.0, extra={"via": "slash"})
    await recorder.flush()
    await recorder.close()
    await writer

    rows = _pg_rows(
        postgres_url,
        "SELECT tableoid::regclass::text, ok, user_id, extra, cost_usd FROM actions ORDER BY ok, user_id",
    )
    assert rows == [
        ("actions_20260304", 0, 7, None, 0.0),
        ("actions_20260304", 0, 8, None, 0.0),
        ("actions_20260304", 1, None, '{"via":"slash"}', 0.0),
    ]
    [(count, kind)] = _pg_rows(postgres_url, "SELECT count, kind FROM fingerprints")
    assert (count, kind) == (2, "command:roll")
    assert (recorder.written, sum(recorder.shed.values())) == (3, 0)
    assert len((tmp_path / "logs" / "actions.ndjson").read_text().splitlines()) == 3


async def test_retention_on_postgresql_drops_whole_days_and_trims_the_rest(
    postgres_url: str, tmp_path: Path
) -> None:
    """Retention drops each expired day's partition whole, deletes what is older than the cutoff in
    the day it falls in, and every record written meanwhile arrives."""
    now = [datetime(2026, 3, 10, 12, tzinfo=UTC)]
    recorder = ActionRecorder(
        database=postgres_url,
        ndjson_path=tmp_path / "logs" / "actions.ndjson",
        repo_root=ROOT,
        clock=lambda: now[0],
    )
    writer = asyncio.create_task(recorder.run_writer())
    recorder.record("task:first", "test", ok=True, duration_ms=1)
    await recorder.flush()
    import psycopg

    day = 86400.0
    cutoff = now[0].timestamp() - 7 * day  # 2026-03-03 12:00
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SELECT actions_add_daily_partitions(%s, 3)", (cutoff - 2 * day,))
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO actions (ts, kind, source, ok, duration_ms)"
                " VALUES (%s, 'task:old', 'test', 1, 1)",
                [(cutoff - 2 * day + n * 60.0,) for n in range(3 * 24 * 60)],  # one a minute, 3 days
            )
    produced = 0

    async def produce() -> None:
        nonlocal produced
        for _ in range(50):
            recorder.record("task:new", "test", ok=True, duration_ms=1)
            produced += 1
            await asyncio.sleep(0)

    producer = asyncio.create_task(produce())
    pruned = await recorder.prune(retention_days=7, batch=100)
    await producer
    await recorder.flush()
    await recorder.close()
    await writer

    # Rows from 1 March 12:00 to 4 March 12:00, the cutoff 3 March 12:00: 1 and 2 March are dropped
    # whole (half a day and a day), 3 March loses its first half.
    assert pruned == 2 * 24 * 60
    left = _pg_rows(postgres_url, "SELECT min(ts), count(*) FROM actions WHERE kind = 'task:old'")
    assert left == [(cutoff, 24 * 60)]
    days = {name for (name,) in _pg_rows(postgres_url, "SELECT tableoid::regclass::text FROM actions")}
    assert "actions_20260301" not in days and "actions_20260302" not in days
    tables = {name for (name,) in _pg_rows(postgres_url, "SELECT relname FROM pg_class WHERE relkind = 'r'")}
    assert {"actions_20260301", "actions_20260302"}.isdisjoint(tables)
    assert _pg_rows(postgres_url, "SELECT count(*) FROM actions WHERE kind <> 'task:old'") == [
        (1 + produced,)
    ]
    assert not recorder.shed


async def test_a_queued_record_is_not_kept_alive_by_the_queue(tmp_path: Path) -> None:
    """Waiting for the journal, the recorder holds a record's line and row, not the record: no
    subscriber, no caller holding it, and the record object is gone (fewer survivors, fewer full
    collections); what is written is the same."""
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    recorder = _recorder(tmp_path, now)
    made: list[weakref.ref[ActionRecord]] = []
    recorder.subscribe(lambda record: made.append(weakref.ref(record)))
    recorder.record("task:x", "test", ok=True, duration_ms=1, extra={"n": 1})
    recorder.take_in()
    assert len(made) == 1
    assert made[0]() is None
    writer = asyncio.create_task(recorder.run_writer())
    await recorder.flush()
    await recorder.close()
    await writer
    db = await open_database(tmp_path / "m.db")
    try:
        async with db.execute("SELECT kind, extra FROM actions") as cursor:
            assert [tuple(row) for row in await cursor.fetchall()] == [("task:x", '{"n":1}')]
    finally:
        await db.close()


@pytest.fixture
def database(_engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """A SQLite file's path, or the URL of an empty PostgreSQL database, brought to the head."""
    if _engine == "postgresql":
        from mendbot.db.migrate import upgrade_postgresql

        url: str = request.getfixturevalue("postgres_url")
        upgrade_postgresql(url)
        return url
    asyncio.run(_migrated(tmp_path / "m.db"))
    return tmp_path / "m.db"


def _journaled(first: int, last: int) -> list[tuple[int, tuple[object, ...]]]:
    return [
        (
            seq,
            action_writes.row(
                ActionRecord(ts=1_000.0 + seq, kind="task:x", source="test", ok=True, duration_ms=1).fields()
            ),
        )
        for seq in range(first, last + 1)
    ]


def test_a_stretch_of_the_journal_stored_twice_is_inserted_once(database: Path | str) -> None:
    """The store inserts only records past the journal's position and moves it in the same transaction:
    a stretch written again — whole, or overlapping what is stored — inserts nothing twice; another
    journal's records (another process) have a position of their own."""
    store = action_writes.open_action_store(database, 1000)
    try:
        assert store.write("journal-a", _journaled(1, 6)) == 6
        assert store.write("journal-a", _journaled(4, 10)) == 4
        assert store.write("journal-a", _journaled(1, 10)) == 0
        assert store.position("journal-a") == 10
        assert store.write("journal-b", _journaled(1, 3)) == 3
        store.skip("journal-a", 12)
        assert store.write("journal-a", _journaled(11, 13)) == 1
    finally:
        store.close()
    if action_writes.is_postgresql(database):
        [(count,)] = _pg_rows(str(database), "SELECT count(*) FROM actions")
    else:
        with sqlite3.connect(database) as db:
            (count,) = db.execute("SELECT count(*) FROM actions").fetchone()
    assert count == 10 + 3 + 1


@pytest.mark.sqlite
async def test_a_file_from_before_incremental_vacuum_is_switched_once_a_prune_leaves_it_small(
    tmp_path: Path,
) -> None:
    """A database file made before incremental vacuum keeps its freed pages for later rows (it never
    grows past its size meanwhile); once a prune leaves so little that one VACUUM fits under the
    margin, that VACUUM switches it and the file shrinks to what it holds."""
    path = tmp_path / "m.db"
    await _migrated(path)
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("PRAGMA auto_vacuum=NONE")
        db.execute("VACUUM")
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    _expired_rows(path, 60_000, now[0].timestamp() - 30 * 86400)
    before = path.stat().st_size
    recorder = _recorder(tmp_path, now)
    writer = asyncio.create_task(recorder.run_writer())
    recorder.record("task:fresh", "test", ok=True, duration_ms=1)
    await recorder.flush()
    assert await recorder.prune(retention_days=7) == 60_000
    await recorder.close()
    await writer
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        assert db.execute("SELECT kind FROM actions").fetchall() == [("task:fresh",)]
    assert recorder.last_prune is not None
    assert recorder.last_prune.peak_bytes <= recorder.last_prune.ceiling_bytes
    assert path.stat().st_size < before / 4
