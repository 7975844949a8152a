"""Storage faults are environment incidents, never data loss: a locked database (another process
holding SQLite's write lock) and a full disk (a small tmpfs), injected for real under the running bot."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest

from mendbot.db import approvals as approval_queries
from mendbot.db import open_database
from mendbot.db import runs as queries
from mendbot.db.retry import RetryPolicy, StorageHealth, StorageUnavailable, Writes, has_room, probe, retrying
from mendbot.deploy.approval import ApprovalService
from mendbot.improve.runs import RunService
from mendbot.kernel.settings import Settings
from mendbot.runtime.app import discover_extensions
from mendbot.runtime.health import HealthServer
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_bot, make_settings, reply_text, running_world
from tests.harness.repo import copy_of_bot
from tests.harness.sql import sql
from tests.harness.storage import fill_disk, hold_write_lock, small_disk
from tests.test_approval import ALICE
from tests.test_approval import World as ApprovalWorld
from tests.test_approval import _settings as approval_settings
from tests.test_approval import clock as approval_clock

# SQLite's own write lock and a full disk under its file (PostgreSQL's faults: tests/test_db_retry.py).
pytestmark = pytest.mark.sqlite

SAVE_FAILED = "I couldn't save that — try again in a moment."
# Small bounds so a test waits fractions of a second, not the production defaults' seconds.
FAST_STORAGE = {
    "busy_timeout_ms": 50,
    "write_attempts": 2,
    "batch_attempts": 2,
    "retry_backoff_s": 0.05,
    "probe_interval_s": 3600,  # recovery is seen through real writes in these tests, not the probe
}


def _settings(data: Path, **storage: Any) -> Settings:
    return make_settings(
        data, storage={**FAST_STORAGE, **storage}, observe={"announce_new_fingerprints": False}
    )


@pytest.fixture
async def locked_world(tmp_path: Path) -> AsyncIterator[VirtualWorld]:
    async with running_world(_settings(tmp_path / "data")) as world:
        yield world


@pytest.fixture
def tmpfs_data(tmp_path: Path) -> Iterator[Path]:
    """A data directory on a small tmpfs of its own (a real disk to fill); skipped where mounting is
    not allowed."""
    data = tmp_path / "data"
    disk = small_disk(data)
    try:
        disk.__enter__()
    except PermissionError as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield data
    finally:
        disk.__exit__(None, None, None)


def _rows(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as db:
        return db.execute(sql).fetchall()


def _storage_announcements(world: VirtualWorld) -> list[discord.Message]:
    return [
        message
        for message in bot_messages(world, world.dev)
        if message.embeds and "Storage incident" in (message.embeds[0].title or "")
    ]


async def _remind(world: VirtualWorld, text: str) -> str:
    result = await world.users["alice"].slash(world.general, "remind", when="10m", text=text)
    return reply_text(result)


async def _accounted(world: VirtualWorld) -> None:
    """Every action record is in the database: none waits, none was shed."""
    recorder = world.bot.services.recorder
    await asyncio.wait_for(world.bot.services.storage.wait_writable(), 30)
    await recorder.flush()
    stored = _rows(world.bot.services.settings.db_path, "SELECT count(*) FROM actions")[0][0]
    assert stored == recorder.written == recorder.recorded
    assert (recorder.waiting, sum(recorder.shed.values())) == (0, 0)


async def test_remind_while_the_database_is_locked_past_the_bound_is_not_saved_and_said_so(
    locked_world: VirtualWorld,
) -> None:
    """Locked longer than the retry bound: /remind answers "I couldn't save that", saves nothing,
    and one storage incident (no fix buttons) is announced for two failed saves."""
    world = locked_world
    db_path = world.bot.services.settings.db_path
    async with hold_write_lock(db_path):
        assert await _remind(world, "stretch") == SAVE_FAILED
        assert await _remind(world, "drink water") == SAVE_FAILED
        await world.quiesce()
        announcements = _storage_announcements(world)
        assert len(announcements) == 1
        embed = announcements[0].embeds[0]
        assert "locked" in (embed.description or "")
        assert any(f.name == "Needs" and "write lock" in (f.value or "") for f in embed.fields)
        assert announcements[0].components == [] and announcements[0].reactions == []
        assert world.bot.services.health()["storage_fault"] == "locked"
    assert _rows(db_path, "SELECT count(*) FROM reminders") == [(0,)]


async def test_storage_incident_clears_when_a_write_succeeds_again(locked_world: VirtualWorld) -> None:
    """Once the lock is gone, the next save works and the same announcement is edited to say storage
    is writable again; the incident is then saved as resolved."""
    world = locked_world
    db_path = world.bot.services.settings.db_path
    async with hold_write_lock(db_path):
        assert await _remind(world, "stretch") == SAVE_FAILED
        await world.quiesce()
    assert "Okay" in await _remind(world, "after the lock")
    await world.quiesce()
    [announcement] = _storage_announcements(world)  # the same message, edited
    embed = announcement.embeds[0]
    assert "resolved" in (embed.title or "")
    assert "writable again" in (embed.description or "")
    assert world.bot.services.health()["storage_fault"] is None
    assert _rows(db_path, "SELECT text FROM reminders") == [("after the lock",)]
    assert _rows(db_path, "SELECT kind, category, state FROM incidents") == [
        ("storage", "environment", "resolved")
    ]


async def test_a_lock_released_within_the_bound_saves_the_reminder(tmp_path: Path) -> None:
    """A lock that clears while the save is still retrying costs a retry, not the reminder, and opens
    no incident."""
    settings = _settings(tmp_path / "data", write_attempts=20, retry_backoff_s=0.05)
    async with running_world(settings) as world:
        storage = world.bot.services.storage
        async with hold_write_lock(settings.db_path) as holder:
            saving = asyncio.ensure_future(_remind(world, "stretch"))
            await asyncio.wait_for(storage.wait_for_retry(), 30)
            assert holder.stdin is not None
            holder.stdin.close()  # the other process lets go while the save is retrying
            answer = await saving
        assert "Okay" in answer
        await world.quiesce()
        assert _rows(settings.db_path, "SELECT text FROM reminders") == [("stretch",)]
        assert storage.given_up == 0 and _storage_announcements(world) == []


async def test_action_records_under_a_lock_wait_in_the_journal_and_all_arrive(
    locked_world: VirtualWorld,
) -> None:
    """Records whose database write keeps meeting a lock wait in the journal — /health and /incidents
    say how many — and every one of them is in the database once the lock goes."""
    world = locked_world
    server = HealthServer(world.bot, "127.0.0.1", 0)
    port = await server.start()
    try:
        async with hold_write_lock(world.bot.services.settings.db_path):
            for _ in range(3):
                await world.users["alice"].slash(world.general, "roll", notation="2d6")
            await world.quiesce()
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/health") as response,
            ):
                health = await response.json()
            listed = reply_text(await world.users["alice"].slash(world.dev, "incidents"))
    finally:
        await server.stop()
    assert health["actions_waiting"] >= 3 and health["actions_shed"] == 0
    assert health["storage_fault"] == "locked" and health["storage_writes_given_up"] >= 1
    assert "wait for the database (none is lost)" in listed
    await world.quiesce()
    await _accounted(world)
    with sqlite3.connect(world.bot.services.settings.db_path) as db:
        assert db.execute("SELECT count(*) FROM actions WHERE kind = 'command:roll'").fetchone()[0] == 3


async def test_fix_requests_on_a_storage_incident_are_answered_as_environment(
    locked_world: VirtualWorld,
) -> None:
    """A "fix this" reply to the storage announcement and /fix incident=N both answer that it is an
    environment problem; no run is started."""
    world = locked_world
    db_path = world.bot.services.settings.db_path
    alice = world.users["alice"]
    async with hold_write_lock(db_path):
        assert await _remind(world, "stretch") == SAVE_FAILED
        await world.quiesce()
        [announcement] = _storage_announcements(world)
        await alice.send(world.dev, "fix this", reply_to=announcement)
        await world.quiesce()
        replies = [m.content for m in bot_messages(world, world.dev) if "environment problem" in m.content]
        assert len(replies) == 1 and "write lock" in replies[0]
    assert "Okay" in await _remind(world, "after")
    await world.quiesce()
    [(incident_id,)] = _rows(db_path, "SELECT id FROM incidents")
    result = await alice.slash(world.dev, "fix", description="the database", incident=incident_id)
    assert "environment problem" in reply_text(result)
    assert _rows(db_path, "SELECT count(*) FROM runs") == [(0,)]


async def test_a_full_disk_loses_nothing_silently_and_is_one_incident(tmpfs_data: Path) -> None:
    """With data/ on a full disk (a real tmpfs): /remind says it was not saved, lost action records are
    counted, one storage incident says the disk is full; after space is freed saving works and the
    incident clears."""
    settings = _settings(tmpfs_data)
    async with running_world(settings) as world:
        await world.quiesce()
        filler = fill_disk(tmpfs_data)
        # SQLite writes into WAL space the file already has, and reuses it once a checkpoint has
        # copied it back, so how many saves still fit on a full disk depends on where the WAL
        # stood: save until one is refused (4 MB of them would overflow the whole disk).
        answers: list[str] = []
        while SAVE_FAILED not in answers and len(answers) < 4000:
            answers.append(await _remind(world, f"note {len(answers)}" + "x" * 900))
        await world.quiesce()
        assert SAVE_FAILED in answers
        [announcement] = _storage_announcements(world)
        assert "disk is full" in (announcement.embeds[0].description or "")
        assert world.bot.services.health()["storage_fault"] == "full"
        saved_before = {text for (text,) in _rows(settings.db_path, "SELECT text FROM reminders")}
        # Every "Okay" was really saved; every "couldn't save" was not.
        for n, answer in enumerate(answers):
            assert (f"note {n}" + "x" * 900 in saved_before) == answer.startswith("⏰ Okay")
        filler.unlink()
        assert "Okay" in await _remind(world, "after the disk was freed")
        for _ in range(2):
            await world.users["alice"].slash(world.general, "roll", notation="2d6")
        await world.quiesce()
        assert world.bot.services.health()["storage_fault"] is None
        assert "writable again" in (_storage_announcements(world)[0].embeds[0].description or "")
        await _accounted(world)


async def test_a_write_that_fits_on_a_still_full_disk_does_not_end_the_fault(tmpfs_data: Path) -> None:
    """On a full disk SQLite still fits small writes into WAL space its files already hold. Such a
    write does not clear the "disk is full" fault (it would announce a recovery that is not one and
    flap the incident); the first write once there is room again does."""
    db = await open_database(tmpfs_data / "mendbot.db", busy_timeout_ms=50)
    health = StorageHealth(room=has_room(tmpfs_data))
    once = RetryPolicy(attempts=1)
    try:
        for n in range(50):  # grow the WAL, then copy it back: its space is there to reuse
            await queries.set_setting(db, f"padding {n}", "x" * 4000)
        await sql(db, "PRAGMA wal_checkpoint(PASSIVE)")
        filler = fill_disk(tmpfs_data)
        with pytest.raises(StorageUnavailable):
            await retrying(
                lambda: queries.set_setting(db, "big", "y" * 2_000_000),
                what="big",
                policy=once,
                health=health,
            )
        assert health.state.fault == "full"
        await retrying(lambda: probe(db, 1.0), what="storage probe", policy=once, health=health)
        assert await queries.get_setting(db, "storage_probe") == 1.0  # it really went through…
        assert health.state.fault == "full"  # …and the disk is still full
        filler.unlink()
        await retrying(lambda: probe(db, 2.0), what="storage probe", policy=once, health=health)
        assert health.state.fault is None
    finally:
        await db.close()


def test_room_is_the_file_systems_free_space(tmp_path: Path) -> None:
    assert has_room(tmp_path, need=1)()
    assert not has_room(tmp_path, need=1 << 62)()
    assert has_room(tmp_path / "not there")()  # cannot tell: a write that went through decides


async def test_a_quiet_bot_notices_storage_is_writable_again(tmp_path: Path) -> None:
    """With no writes after the lock goes, the probe's own small write clears the storage incident."""
    settings = _settings(tmp_path / "data", probe_interval_s=0.05)
    async with running_world(settings) as world:
        storage = world.bot.services.storage
        async with hold_write_lock(settings.db_path):
            assert await _remind(world, "stretch") == SAVE_FAILED
            await world.quiesce()
            assert storage.failing
        await asyncio.wait_for(storage.wait_writable(), 30)  # nothing but the probe writes now
        await world.quiesce()
        [announcement] = _storage_announcements(world)
        assert "writable again" in (announcement.embeds[0].description or "")


async def test_approvals_and_run_transitions_under_a_lock_are_all_or_nothing(tmp_path: Path) -> None:
    """An approval or a run transition that meets a lock past the bound raises "I couldn't save that"
    and leaves nothing half-saved (no approval row, the run in its old state, no event); once the lock
    goes the same approval goes through."""
    repo = copy_of_bot(tmp_path / "repo")
    data = tmp_path / "data"
    db = await open_database(data / "mendbot.db", busy_timeout_ms=50)
    storage = StorageHealth()
    writes = Writes(RetryPolicy(attempts=2, backoff_s=0.01), storage)
    runs = RunService(db, approval_clock, writes=writes)
    service = ApprovalService(db, runs, approval_settings(data, repo), approval_clock, writes=writes)
    world = ApprovalWorld(repo, db, runs, service, data)
    try:
        run, proposal = await world.propose()
        events_before = len(await runs.events(run.id))
        async with hold_write_lock(data / "mendbot.db"):
            with pytest.raises(StorageUnavailable, match="couldn't save that"):
                await world.decide(proposal, ALICE)
            with pytest.raises(StorageUnavailable):
                await runs.transition(run.id, "cancelled", actor="user:1")
        assert await approval_queries.for_proposal(db, proposal.id) == []
        assert (await runs.get(run.id)).state == "awaiting_approval"
        assert len(await runs.events(run.id)) == events_before
        assert storage.given_up == 2
        assert (await world.decide(proposal, ALICE)).status == "ready"
        assert storage.state.fault is None
    finally:
        await db.close()


async def test_a_storage_incident_open_at_shutdown_is_cleared_after_the_restart(tmp_path: Path) -> None:
    """A storage incident still open when the bot stopped is not left open for good: after a restart
    the first write that works — the action records that waited in the journal, stored at start —
    clears it and edits its announcement."""
    # Action batches are given up at once while the lock is held, and the action writer is stopped
    # before the lock goes: the stop is simulated as coming before any write could work again (a
    # batch written in between would rightly clear the incident before the restart).
    settings = _settings(tmp_path / "data", batch_attempts=1)
    async with running_world(settings) as world:
        services = world.bot.services
        async with hold_write_lock(settings.db_path):
            assert await _remind(world, "stretch") == SAVE_FAILED
            await world.quiesce()
            await services.recorder.close()
        assert services.storage.failing  # nothing has written through since the lock went…
        services.incidents.on_storage(services.storage.state)  # …but the incident row now can be
        await world.quiesce()
        assert _rows(settings.db_path, "SELECT state FROM incidents") == [("open",)]
        await world.restart(await make_bot(settings, discover_extensions()))
        assert "Okay" in await _remind(world, "after the restart")
        await world.quiesce()
        assert _rows(settings.db_path, "SELECT state FROM incidents") == [("resolved",)]
        [announcement] = _storage_announcements(world)
        assert "writable again" in (announcement.embeds[0].description or "")


async def test_a_reminder_due_while_the_database_is_locked_fires_once_afterwards(tmp_path: Path) -> None:
    """A reminder that comes due while its claim cannot be written is not lost or doubled: it waits,
    and fires exactly once when the claim can be saved."""
    settings = _settings(tmp_path / "data", probe_interval_s=60)
    async with running_world(settings) as world:
        assert "Okay" in await _remind(world, "stretch")

        def fired() -> int:
            return sum("reminder: stretch" in m.content for m in bot_messages(world, world.general))

        async with hold_write_lock(settings.db_path):
            await world.env.advance_time(601)
            assert fired() == 0
        await world.env.advance_time(61)
        assert fired() == 1
        await world.env.advance_time(3600)
        assert fired() == 1


async def test_a_save_outside_the_retry_helper_is_answered_the_same_and_is_no_bug(
    locked_world: VirtualWorld,
) -> None:
    """A command whose write meets the lock without the retry helper (/incident N acknowledge) still
    answers "I couldn't save that" and becomes the storage incident, not a code incident with 🛠."""
    world = locked_world
    # An incident to acknowledge (opened through the service, as the error path would).
    world.bot.services.incidents.environment("env:test", kind="test", summary="a test incident", need="n")
    await world.quiesce()
    [(incident_id,)] = _rows(world.bot.services.settings.db_path, "SELECT id FROM incidents")
    async with hold_write_lock(world.bot.services.settings.db_path):
        result = await world.users["alice"].slash(
            world.dev, "incident", incident_id=incident_id, action="acknowledge"
        )
        assert reply_text(result) == SAVE_FAILED
        await world.quiesce()
        assert len(_storage_announcements(world)) == 1
        assert world.bot.services.health()["storage_fault"] == "locked"
    codes = [i for i in world.bot.services.incidents.active() if i.category == "code"]
    assert codes == []


async def _code_incident(world: VirtualWorld) -> int:
    """Five failures of one command, as its handler would record them: one code incident, saved."""
    with world.env.time_context():
        for _ in range(5):
            world.bot.services.recorder.record(
                "command:alpha", "test", ok=False, duration_ms=1, error=RuntimeError("alpha broke")
            )
    await world.quiesce()
    [(incident_id,)] = _rows(world.bot.services.settings.db_path, "SELECT id FROM incidents")
    return int(incident_id)


async def test_an_incident_change_that_meets_a_lock_is_saved_once_it_goes(tmp_path: Path) -> None:
    """A code incident's change (here the bot's own note) that meets another writer's lock is
    retried, not lost: saved when the lock goes, the announcement updated, nothing logged as failed."""
    settings = _settings(tmp_path / "data", write_attempts=20, retry_backoff_s=0.05)
    async with running_world(settings) as world:
        services = world.bot.services
        incident_id = await _code_incident(world)
        async with hold_write_lock(settings.db_path) as holder:
            await services.incidents.annotate(incident_id, "🔍 Run #7 — looked into it")
            await asyncio.wait_for(services.storage.wait_for_retry(), 30)
            assert holder.stdin is not None
            holder.stdin.close()
        await world.quiesce()
        [announcement] = [
            m for m in bot_messages(world, world.dev) if m.embeds and "#1" in (m.embeds[0].title or "")
        ]
        shown = [field.value for field in announcement.embeds[0].fields if field.name == "On my own"]
    assert _rows(settings.db_path, "SELECT autonomy FROM incidents") == [("🔍 Run #7 — looked into it",)]
    assert shown == ["🔍 Run #7 — looked into it"]
    assert services.storage.given_up == 0


async def test_an_incident_change_given_up_under_a_lock_is_saved_when_storage_works_again(
    tmp_path: Path,
) -> None:
    """Past the bound the change stays in memory (and on Discord) as unsaved; the first write that
    succeeds afterwards brings it to the database."""
    settings = _settings(tmp_path / "data")
    async with running_world(settings) as world:
        services = world.bot.services
        incident_id = await _code_incident(world)
        async with hold_write_lock(settings.db_path):
            await services.incidents.annotate(incident_id, "🔍 Run #7 — looked into it")
            await world.quiesce()
            assert services.storage.failing
            assert _rows(settings.db_path, f"SELECT autonomy FROM incidents WHERE id = {incident_id}") == [
                (None,)
            ]
        assert "Okay" in await _remind(world, "after the lock")  # a write that goes through
        await world.quiesce()
    assert _rows(settings.db_path, f"SELECT autonomy FROM incidents WHERE id = {incident_id}") == [
        ("🔍 Run #7 — looked into it",)
    ]
