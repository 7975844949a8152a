"""The database is watched, not only written: a database file deleted, replaced or moved under the
running bot, a full disk under the action log, and a storage incident whose row cannot be written
are announced — and /incidents and /health say what was announced. The real bot on the virtual
Discord; the faults injected for real on the file system."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import discord
import pytest

from mendbot.db.identity import FileIdentity
from mendbot.kernel.settings import Settings
from mendbot.runtime.app import discover_extensions
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_bot, make_settings, reply_text, running_world
from tests.harness.storage import fill_disk, hold_write_lock, small_disk

pytestmark = pytest.mark.sqlite

FAST_STORAGE = {
    "busy_timeout_ms": 50,
    "write_attempts": 2,
    "batch_attempts": 2,
    "retry_backoff_s": 0.05,
    "probe_interval_s": 3600,
}


def _settings(data: Path, **storage: Any) -> Settings:
    return make_settings(
        data, storage={**FAST_STORAGE, **storage}, observe={"announce_new_fingerprints": False}
    )


def _storage_announcements(world: VirtualWorld) -> list[discord.Message]:
    return [
        message
        for message in bot_messages(world, world.dev)
        if message.embeds and "Storage incident" in (message.embeds[0].title or "")
    ]


async def _roll(world: VirtualWorld) -> str:
    return reply_text(await world.users["alice"].slash(world.general, "roll", notation="2d6"))


async def _settled(world: VirtualWorld) -> None:
    """Quiet twice: a fault seen at the flush that ends the first is announced during the second."""
    await world.quiesce()
    await world.quiesce()


def _delete_database(db_path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)


async def test_a_deleted_database_is_announced_on_the_next_flush_with_what_is_lost_and_kept(
    tmp_path: Path,
) -> None:
    """The database files deleted while the bot runs: the next actions' flush sees it, one storage
    incident says the file was deleted, what is lost and that the action log keeps the actions;
    /health and /incidents say the same. /roll goes on answering."""
    settings = _settings(tmp_path / "data")
    async with running_world(settings) as world:
        assert "2d6" in await _roll(world)
        await world.quiesce()
        _delete_database(settings.db_path)
        for _ in range(3):
            assert "2d6" in await _roll(world)
        await _settled(world)
        [announcement] = _storage_announcements(world)
        embed = announcement.embeds[0]
        description = embed.description or ""
        assert "deleted" in description and "lost when I stop" in description
        assert str(settings.log_dir / "actions.ndjson") in description
        needs = next(f.value or "" for f in embed.fields if f.name == "Needs")
        assert str(settings.db_path) in needs and "backup" in needs
        health = world.bot.services.health()
        # A connection opened after the deletion (retention's) may have made a new, empty file there.
        assert health["storage_fault"] in ("deleted", "replaced")
        listed = reply_text(await world.users["alice"].slash(world.dev, "incidents"))
        assert "🔥 storage — " in listed and "deleted" in listed
        # The action log holds what the database missed.
        logged = (settings.log_dir / "actions.ndjson").read_text().count('"kind":"command:roll"')
        assert logged == 4


@pytest.mark.parametrize("how", ["deleted", "replaced by an old copy"])
async def test_a_lost_database_gets_every_action_record_back_at_the_next_start(
    tmp_path: Path, how: str
) -> None:
    """The database deleted — or replaced by a copy taken earlier (a backup put back) — while the bot
    runs and records: after a restart the database holds every action record of both runs, each once,
    filled from the action journal, and the bot says in #dev what it restored."""
    settings = _settings(tmp_path / "data")
    async with running_world(settings) as world:
        for _ in range(3):
            assert "2d6" in await _roll(world)
        await world.quiesce()
        copy = settings.db_path.with_name("backup.db")
        with sqlite3.connect(settings.db_path) as source, sqlite3.connect(copy) as target:
            source.backup(target)
        for _ in range(2):
            assert "2d6" in await _roll(world)
        await world.quiesce()
        _delete_database(settings.db_path)
        if how != "deleted":
            copy.replace(settings.db_path)
        for _ in range(4):
            assert "2d6" in await _roll(world)
        await _settled(world)
        recorded = world.bot.services.recorder.recorded
        await world.restart(await make_bot(settings, discover_extensions()))
        await world.quiesce()
        recorder = world.bot.services.recorder
        with sqlite3.connect(settings.db_path) as db:
            rolls = db.execute("SELECT count(*) FROM actions WHERE kind = 'command:roll'").fetchone()[0]
            everything = db.execute("SELECT count(*) FROM actions").fetchone()[0]
        assert rolls == 9
        assert everything == recorded + recorder.recorded  # each once
        assert recorder.recovery is not None and recorder.recovery.new_database == (how == "deleted")
        [notice] = [m.content for m in bot_messages(world, world.dev) if m.content.startswith("📥")]
        assert (
            f"{recorder.recovery.count} record(s)" in notice or f"{recorder.recovery.count} action" in notice
        )
        assert str(settings.log_dir / "actions.ndjson") in notice


async def test_a_replaced_database_is_seen_by_the_probe_even_when_nothing_is_written(
    tmp_path: Path,
) -> None:
    """Another file put in the database's place while the bot is quiet: the watch on the probe's
    schedule announces it as replaced, without any write."""
    settings = _settings(tmp_path / "data", probe_interval_s=0.05)
    async with running_world(settings) as world:
        await world.quiesce()
        storage = world.bot.services.storage
        copy = settings.db_path.with_name("copy.db")
        shutil.copyfile(settings.db_path, copy)
        copy.replace(settings.db_path)
        await asyncio.wait_for(storage.wait_failing(), 30)
        await world.quiesce()
        [announcement] = _storage_announcements(world)
        assert "replaced" in (announcement.embeds[0].description or "")
        assert storage.state.fault == "replaced"


async def test_a_write_into_the_deleted_file_does_not_end_the_fault(tmp_path: Path) -> None:
    """Every write still goes through into the deleted file: none of them clears the incident."""
    settings = _settings(tmp_path / "data")
    async with running_world(settings) as world:
        _delete_database(settings.db_path)
        await _roll(world)
        await _settled(world)
        assert world.bot.services.storage.state.fault in ("deleted", "replaced")
        result = await world.users["alice"].slash(world.general, "remind", when="10m", text="stretch")
        assert "Okay" in reply_text(result)  # saved — into the lost file
        await _settled(world)
        assert world.bot.services.storage.state.fault in ("deleted", "replaced")
        [announcement] = _storage_announcements(world)
        assert "writable again" not in (announcement.embeds[0].description or "")


def _put_another_file_at(path: Path) -> None:
    other = path.with_name("other")
    other.write_text("x")
    other.replace(path)


def test_file_identity_tells_deleted_replaced_and_moved(tmp_path: Path) -> None:
    """In place: nothing; deleted, replaced by another file, renamed away: each said as such."""
    path = tmp_path / "db"
    changes: list[tuple[Callable[[], object], str]] = [
        (path.unlink, "deleted"),
        (lambda: _put_another_file_at(path), "replaced"),
        (lambda: path.rename(tmp_path / "elsewhere"), "moved"),
    ]
    for change, expected in changes:
        path.write_text("data")
        watched = FileIdentity.of(path)
        try:
            assert watched.check() is None
            change()
            problem = watched.check()
            assert problem is not None and problem[0] == expected and str(path) in problem[1]
        finally:
            path.unlink(missing_ok=True)


async def test_incidents_lists_the_storage_incident_while_the_database_is_locked(tmp_path: Path) -> None:
    """While the lock keeps the storage incident's row from being written, /incidents lists the
    incident that was announced — never "No open incidents"."""
    settings = _settings(tmp_path / "data")
    async with running_world(settings) as world, hold_write_lock(settings.db_path):
        answer = reply_text(await world.users["alice"].slash(world.general, "remind", when="1m", text="x"))
        assert "couldn't save" in answer
        await world.quiesce()
        assert len(_storage_announcements(world)) == 1
        listed = reply_text(await world.users["alice"].slash(world.dev, "incidents"))
        assert "No open incidents" not in listed
        assert "🔥 storage — " in listed and "locked" in listed
        assert world.bot.services.health()["incidents_active"] == 1


@pytest.fixture
def full_log_disk(tmp_path: Path) -> Iterator[Path]:
    """The data directory with its logs/ on a small tmpfs of its own (skipped where mounting is not
    allowed); the database stays on the roomy disk."""
    data = tmp_path / "data"
    logs = data / "logs"
    disk = small_disk(logs, size="4m")
    try:
        disk.__enter__()
    except PermissionError as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield data
    finally:
        disk.__exit__(None, None, None)


async def test_a_full_disk_under_the_action_log_is_a_storage_incident(full_log_disk: Path) -> None:
    """The action journal cannot be appended to (its disk is full) while the database has room: one
    storage incident says the disk is full, and the database's own successful writes do not clear it
    while the journal's disk has no room. The records wait in memory meanwhile: once there is room
    again every /roll is journaled and stored, and the incident clears."""
    settings = _settings(full_log_disk)
    async with running_world(settings) as world:
        filler = fill_disk(settings.log_dir)
        recorder = world.bot.services.recorder
        rolls = 0
        # A few small lines may still fit in the last free bytes: roll until an append is refused.
        for _ in range(200):
            assert "2d6" in await _roll(world)
            rolls += 1
            await world.quiesce()
            if recorder.journal_errors:
                break
        await _settled(world)
        [announcement] = _storage_announcements(world)
        assert "disk is full" in (announcement.embeds[0].description or "")
        assert recorder.journal_errors >= 1 and recorder.waiting >= 1
        assert world.bot.services.health()["storage_fault"] == "full"
        filler.unlink()
        await _roll(world)
        rolls += 1
        await asyncio.wait_for(world.bot.services.storage.wait_writable(), 30)
        await _settled(world)
        assert world.bot.services.health()["storage_fault"] is None
        assert "writable again" in (_storage_announcements(world)[0].embeds[0].description or "")
        assert (recorder.waiting, sum(recorder.shed.values())) == (0, 0)
        with sqlite3.connect(settings.db_path) as db:
            stored = db.execute("SELECT count(*) FROM actions WHERE kind = 'command:roll'").fetchone()[0]
        assert stored == rolls


async def test_with_the_journal_full_successes_past_the_queue_are_shed_by_kind_and_failures_kept(
    full_log_disk: Path,
) -> None:
    """The journal's disk full: records wait in memory, and past `queue_size` successes are shed —
    counted by kind, said by /incidents — while every failure is kept; once there is room again every
    record kept is journaled and stored."""
    settings = make_settings(
        full_log_disk,
        storage={**FAST_STORAGE},
        observe={"announce_new_fingerprints": False, "queue_size": 20},
    )
    async with running_world(settings) as world:
        await world.quiesce()
        recorder = world.bot.services.recorder
        filler = fill_disk(settings.log_dir)
        for n in range(200):
            recorder.record("task:busy", "test", ok=True, duration_ms=1, extra={"pad": "x" * 500})
            if n == 0:  # its append fails: the journal is failing now, not slow (which has more room)
                await asyncio.wait_for(world.bot.services.storage.wait_failing(), 30)
            if n % 20 == 0:
                error = KeyError(f"missing {n}")
                recorder.record("task:broken", "test", ok=False, duration_ms=1, error=error)
            await asyncio.sleep(0)
        await world.quiesce()
        assert recorder.shed_failures == 0
        shed = recorder.shed["task:busy"]
        assert shed >= 150
        listed = reply_text(await world.users["alice"].slash(world.dev, "incidents"))
        assert f"`task:busy` {shed}" in listed
        filler.unlink()
        await asyncio.wait_for(world.bot.services.storage.wait_writable(), 30)
        await _settled(world)
        assert recorder.waiting == 0
        with sqlite3.connect(settings.db_path) as db:
            stored = dict(db.execute("SELECT kind, count(*) FROM actions GROUP BY kind").fetchall())
        assert stored["task:broken"] == 10
        assert stored["task:busy"] == 200 - shed
