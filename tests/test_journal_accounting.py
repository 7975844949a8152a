"""Every action record accounted for: what the bot answered is stored, waiting, shed (counted) or
unreadable (counted) — through a short write on a full disk, a journal line cut or not JSON, the journal
deleted or truncated under the running bot, its segments deleted while it was stopped and a start with
the clock an hour behind. Real files (a real tmpfs for the full disk), real SQLite and PostgreSQL, the
real bot on the virtual Discord."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import discord
import orjson
import pytest
from structlog.testing import capture_logs

from mendbot.db.records import ActionRecord
from mendbot.db.retry import RetryPolicy
from mendbot.kernel.settings import Settings
from mendbot.observe.journal import Journal, journal_line, line_seq
from mendbot.observe.recorder import ActionRecorder
from mendbot.runtime.metrics import Metrics
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_settings, reply_text, running_world
from tests.harness.sql import stored
from tests.harness.storage import fill_disk, hold_write_lock, small_disk

pytestmark = pytest.mark.engines

ROOT = Path(__file__).resolve().parent.parent
FAST_STORAGE = {
    "busy_timeout_ms": 50,
    "write_attempts": 2,
    "batch_attempts": 2,
    "retry_backoff_s": 0.05,
    "probe_interval_s": 3600,
}


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A directory on a small tmpfs of its own (skipped where mounting is not allowed)."""
    disk = small_disk(tmp_path / "disk", size="1m")
    try:
        path = disk.__enter__()
    except PermissionError as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield path
    finally:
        disk.__exit__(None, None, None)


def _settings(data: Path, **observe: object) -> Settings:
    return make_settings(data, storage=FAST_STORAGE, observe={"announce_new_fingerprints": False, **observe})


async def _roll(world: VirtualWorld) -> None:
    result = await world.users["alice"].slash(world.general, "roll", notation="2d6")
    assert "2d6" in reply_text(result)


def _rolls_stored(settings: Settings) -> int:
    [(count,)] = stored(settings, "SELECT count(*) FROM actions WHERE kind = 'command:roll'")
    return int(count)


def _journal_lines(settings: Settings) -> list[bytes]:
    """Every line of every segment of the journal, oldest first."""
    journal = Journal(settings.log_dir / "actions.ndjson", 1 << 30, 100)
    return [line for segment in journal.segments() for line in segment.read_bytes().splitlines()]


def _records_note(world: VirtualWorld) -> list[discord.Message]:
    return [
        message
        for message in bot_messages(world, world.dev)
        if message.embeds and (message.embeds[0].title or "").endswith(": records")
    ]


# -- a short write ------------------------------------------------------------------------------------


@pytest.mark.sqlite
def test_a_short_write_on_a_full_disk_leaves_nothing_of_the_batch_and_fails(tiny_disk: Path) -> None:
    """The disk fills while the journal's last page still has room for part of a batch: the kernel
    takes that part and says so (a short write). The append fails as a whole — nothing of the batch is
    left in the file — and once there is room again the batch goes in whole, each line on its own."""
    journal = Journal(tiny_disk / "actions.ndjson", 1 << 30, 3)
    journal.append([journal_line(1, {"kind": "task:first"})])
    before = (tiny_disk / "actions.ndjson").read_bytes()
    filler = fill_disk(tiny_disk)
    batch = [journal_line(seq, {"kind": "task:x", "pad": "x" * 900}) for seq in range(2, 12)]
    with pytest.raises(OSError) as refused:
        journal.append(batch)
    assert refused.value.errno == errno.ENOSPC
    assert (tiny_disk / "actions.ndjson").read_bytes() == before
    assert journal.appended == 1
    filler.unlink()
    journal.append(batch)
    journal.append([journal_line(12, {"kind": "task:last"})])
    lines = (tiny_disk / "actions.ndjson").read_bytes().splitlines()
    assert [orjson.loads(line)["seq"] for line in lines] == list(range(1, 13))


@pytest.fixture
def full_log_disk(tmp_path: Path) -> Iterator[Path]:
    """The data directory with its logs/ on a small tmpfs of its own; the database stays on the roomy
    disk (or on PostgreSQL)."""
    data = tmp_path / "data"
    disk = small_disk(data / "logs", size="4m")
    try:
        disk.__enter__()
    except PermissionError as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield data
    finally:
        disk.__exit__(None, None, None)


async def test_with_the_journals_disk_full_every_answered_roll_is_stored_once_and_journaled_whole(
    full_log_disk: Path,
) -> None:
    """/roll answered while the journal's disk fills and after it has room again: every roll is in the
    database once and in the journal once, each on a line of its own that reads back (a short write
    left half a line, and the next batch was glued to it), and none waits or is shed."""
    settings = _settings(full_log_disk)
    async with running_world(settings) as world:
        recorder = world.bot.services.recorder
        await _roll(world)
        await world.quiesce()
        filler = fill_disk(settings.log_dir)
        rolls = 1
        for _ in range(200):
            await _roll(world)
            rolls += 1
            await world.quiesce()
            if recorder.journal_errors:
                break
        assert recorder.journal_errors
        filler.unlink()
        for _ in range(2):
            await _roll(world)
            rolls += 1
        await asyncio.wait_for(world.bot.services.storage.wait_writable(), 30)
        await world.quiesce()
        await world.quiesce()
        assert _rolls_stored(settings) == rolls
        journaled = [orjson.loads(line) for line in _journal_lines(settings)]  # every line reads back
        assert sum(1 for record in journaled if record["kind"] == "command:roll") == rolls
        health = world.bot.services.health()
        assert (health["actions_waiting"], health["actions_shed"], health["actions_unreadable"]) == (0, 0, 0)


async def test_records_shed_on_a_full_journal_disk_are_said_in_dev_health_and_metrics(
    full_log_disk: Path,
) -> None:
    """The journal's disk full and more successes than `queue_size` waiting for it: those shed are
    counted by kind, and #dev (one records incident, edited as the count grows), /health and /metrics
    all say how many."""
    settings = _settings(full_log_disk, queue_size=10)
    async with running_world(settings) as world:
        await world.quiesce()
        recorder = world.bot.services.recorder
        fill_disk(settings.log_dir)
        for n in range(60):
            recorder.record("task:busy", "test", ok=True, duration_ms=1, extra={"n": n, "pad": "x" * 500})
            if n == 0:  # its append fails: the journal is failing now, not slow (which has more room)
                await asyncio.wait_for(world.bot.services.storage.wait_failing(), 30)
            await asyncio.sleep(0)
        await world.quiesce()  # the journal tried again: the shed are told, and the incident edited
        await world.quiesce()
        shed = recorder.shed["task:busy"]  # the bot's own records (its posts seen) may be shed too
        assert shed >= 40
        assert world.bot.services.health()["actions_shed"] == sum(recorder.shed.values())
        await Metrics(world.bot).render()
        text = (await Metrics(world.bot).render()).decode()
        assert f'mendbot_action_records_shed_total{{kind="task:busy"}} {float(shed)}' in text
        [note] = _records_note(world)
        assert f"`task:busy` {shed}" in (note.embeds[0].description or "")


# -- lines that cannot be read --------------------------------------------------------------------------


def _fields(kind: str) -> dict[str, object]:
    return ActionRecord(ts=1_800_000_000.0, kind=kind, source="test", ok=True, duration_ms=1.0).fields()


def _recorder(tmp_path: Path, database: Path | str) -> ActionRecorder:
    return ActionRecorder(
        database=database,
        ndjson_path=tmp_path / "logs" / "actions.ndjson",
        repo_root=ROOT,
        clock=lambda: datetime(2027, 1, 15, tzinfo=UTC),
        retry=RetryPolicy(attempts=3, backoff_s=0.02),
        busy_timeout_ms=50,
    )


async def test_lines_cut_or_not_json_are_logged_and_counted_and_the_rest_is_stored(
    tmp_path: Path, database: Path | str
) -> None:
    """Filling a new database from the journal: a line cut short, a line that is not JSON and a record
    that is not in the journal at all (its number skipped) are each logged and counted as unreadable;
    every record around them is stored."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "actions.journal").write_text('{"id": "j", "counted_from": 1}\n')
    lines = [
        journal_line(1, _fields("task:kept")),
        journal_line(2, _fields("task:cut"))[:30] + b"\n",
        b'{"seq":3,"kind":"task:garbled",}}}\n',
        journal_line(4, _fields("task:kept")),
        journal_line(6, _fields("task:kept")),  # 5 is gone
    ]
    (tmp_path / "logs" / "actions.ndjson").write_bytes(b"".join(lines))
    recorder = _recorder(tmp_path, database)
    writer = asyncio.create_task(recorder.run_writer())
    with capture_logs() as logs:
        recorder.record("task:start", "test", ok=True, duration_ms=1)
        await recorder.flush()
    await recorder.close()
    await writer
    rows = stored_rows(database, "SELECT kind FROM actions ORDER BY id")
    assert rows == ["task:kept", "task:kept", "task:kept", "task:start"]
    assert recorder.health()["actions_unreadable"] == 3
    said = [entry for entry in logs if entry["log_level"] in ("warning", "error")]
    seqs = {entry.get("seq") for entry in said}
    assert {2, 3} <= seqs and any(entry.get("missing") == 1 for entry in said)


def stored_rows(database: Path | str, query: str) -> list[object]:
    if str(database).startswith("postgresql"):
        import psycopg

        with psycopg.connect(str(database)) as conn:
            return [row[0] for row in conn.execute(query).fetchall()]
    import sqlite3

    with sqlite3.connect(database) as db:
        return [row[0] for row in db.execute(query).fetchall()]


@pytest.fixture
def database(_engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """A SQLite file's path, or the URL of an empty PostgreSQL database (brought to the head by the
    recorder)."""
    if _engine == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return tmp_path / "m.db"


async def test_an_unreadable_line_is_said_in_dev_and_shown_by_health_and_metrics(tmp_path: Path) -> None:
    """Rolls, a stop, one of their lines cut in the journal, and the database without them (as after a
    restore from an older backup): at the next start the rest are restored, and #dev, /health and
    /metrics say one action record could not be read."""
    settings = _settings(tmp_path / "data")
    async with running_world(settings) as world:
        for _ in range(3):
            await _roll(world)
    journal = settings.log_dir / "actions.ndjson"
    lines = journal.read_bytes().splitlines(keepends=True)
    rolls = [n for n, line in enumerate(lines) if b'"kind":"command:roll"' in line]
    lines[rolls[1]] = lines[rolls[1]][:40] + b"\n"
    journal.write_bytes(b"".join(lines))
    stored(settings, "DELETE FROM actions")
    stored(settings, "DELETE FROM journal_positions")
    async with running_world(settings) as world:
        await world.quiesce()
        assert _rolls_stored(settings) == 2
        assert world.bot.services.health()["actions_unreadable"] == 1
        await Metrics(world.bot).render()  # the state read, as a scrape does
        text = (await Metrics(world.bot).render()).decode()
        assert "mendbot_action_records_unreadable_total 1.0" in text
        [note] = _records_note(world)
        description = note.embeds[0].description or ""
        assert "1 unreadable" in description and str(journal) in description


# -- the journal deleted or truncated under the running bot -------------------------------------------------


def _delete_journal(settings: Settings) -> None:
    for path in settings.log_dir.iterdir():
        if path.name.startswith("actions."):
            path.unlink()


def _truncate_journal(settings: Settings) -> None:
    os.truncate(settings.log_dir / "actions.ndjson", 0)


@pytest.mark.parametrize("lose", [_delete_journal, _truncate_journal], ids=["deleted", "truncated"])
async def test_a_journal_lost_under_the_running_bot_loses_nothing_and_replays_nothing_twice(
    tmp_path: Path, lose: object
) -> None:
    """The journal (its segments and its identity file) deleted, or its file cut to nothing, while the
    bot runs: the identity is written again with the next record, and after a restart the database
    holds each of the nine rolls once — no record read back twice — and #dev is not told that the
    database held none of them."""
    assert callable(lose)
    settings = _settings(tmp_path / "data")
    async with running_world(settings) as world:
        for _ in range(3):
            await _roll(world)
        await world.quiesce()
        lose(settings)
        for _ in range(3):
            await _roll(world)
        await world.quiesce()
        assert (settings.log_dir / "actions.journal").exists()
    async with running_world(settings) as world:
        for _ in range(3):
            await _roll(world)
        await world.quiesce()
        assert world.bot.services.recorder.recovery is None
        assert not [m for m in bot_messages(world, world.dev) if "held none" in m.content]
    assert _rolls_stored(settings) == 9


async def _record_busy(world: VirtualWorld, count: int, tag: str) -> None:
    """`count` records, five at a time, each five journaled before the next (with `queue_size` 10, ten
    recorded in one go would wait for the journal past it, and be shed)."""
    recorder = world.bot.services.recorder
    for n in range(count):
        recorder.record("task:busy", "test", ok=True, duration_ms=1, extra={"n": n, "tag": tag})
        if n % 5 == 4:
            await recorder.flush()


async def _while_locked(world: VirtualWorld, settings: Settings, count: int, tag: str) -> None:
    """`count` records while the database is locked: past `queue_size` they live only in the journal."""
    async with hold_write_lock(settings.db_path):
        await _record_busy(world, count, tag)
    await _writable(world)


async def _writable(world: VirtualWorld) -> None:
    """The lock is gone: wait until the store has written again (the storage incident is over)."""
    await asyncio.wait_for(world.bot.services.storage.wait_writable(), 30)
    await world.quiesce()


@pytest.mark.sqlite
async def test_records_let_go_from_memory_and_then_lost_with_the_journal_are_counted(tmp_path: Path) -> None:
    """With the database locked past the memory the store keeps (`queue_size`), records live only in the
    journal; the journal deleted then, they are gone: counted as unreadable, not left waiting forever —
    every record this process made is stored, waiting, shed or unreadable, exactly."""
    settings = _settings(tmp_path / "data", queue_size=10)
    async with running_world(settings) as world:
        await world.quiesce()
        recorder = world.bot.services.recorder
        async with hold_write_lock(settings.db_path):
            await _record_busy(world, 30, "lost")
            _delete_journal(settings)
        await _writable(world)
        await recorder.flush()
        health = recorder.health()
        [(stored_busy,)] = stored(settings, "SELECT count(*) FROM actions WHERE kind = 'task:busy'")
        [(stored_all,)] = stored(settings, "SELECT count(*) FROM actions")
        assert (health["actions_waiting"], health["actions_shed"]) == (0, 0)
        assert health["actions_recorded"] == stored_all + health["actions_unreadable"]
        assert stored_busy >= 10 and health["actions_unreadable"] >= 10  # the ten kept in memory


@pytest.mark.sqlite
async def test_records_read_back_from_a_journal_cut_to_nothing_under_the_store_are_all_stored(
    tmp_path: Path,
) -> None:
    """The store read records back from the journal once; the journal is then cut to nothing and more
    records go only to it (the database locked past `queue_size` again): the store reads them from the
    start of the shortened file, not from where it stood in the longer one."""
    settings = _settings(tmp_path / "data", queue_size=10)
    async with running_world(settings) as world:
        await world.quiesce()
        await _while_locked(world, settings, 40, "before")
        await world.quiesce()
        _truncate_journal(settings)
        await _while_locked(world, settings, 20, "after")
        await world.quiesce()
        [(busy,)] = stored(settings, "SELECT count(*) FROM actions WHERE kind = 'task:busy'")
        assert busy == 60
        health = world.bot.services.health()
        assert (health["actions_waiting"], health["actions_shed"], health["actions_unreadable"]) == (0, 0, 0)


# -- segments deleted while stopped, and a clock an hour behind --------------------------------------------


async def test_after_segments_deleted_while_stopped_a_start_an_hour_behind_stores_every_roll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rolls, a stop, the journal's segments deleted, then a start with the wall clock an hour behind:
    every roll after the start is stored — where the journal's numbers come from never depends on the
    clock, and never falls behind what the database holds — and the ones before were stored already."""
    settings = _settings(tmp_path / "data", ndjson_max_bytes=10_000)
    async with running_world(settings) as world:
        for _ in range(30):
            await _roll(world)
    assert len(list(settings.log_dir.glob("actions.ndjson*"))) > 1
    for segment in settings.log_dir.glob("actions.ndjson*"):
        segment.unlink()
    behind_ns = 3600 * 10**9
    real_ns, real_s = time.time_ns, time.time
    monkeypatch.setattr(time, "time_ns", lambda: real_ns() - behind_ns)
    monkeypatch.setattr(time, "time", lambda: real_s() - 3600)
    async with running_world(settings) as world:
        for _ in range(3):
            await _roll(world)
        await world.quiesce()
        assert world.bot.services.health()["actions_waiting"] == 0
        [note] = _records_note(world)  # what the deleted segments held and the database lacked is said
        assert "deleted or replaced while I was stopped" in (note.embeds[0].description or "")
    assert _rolls_stored(settings) == 33
    seqs = [line_seq(line) or 0 for line in _journal_lines(settings)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and 0 not in seqs
