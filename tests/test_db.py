"""Database: WAL mode, the schema brought to the head once, one writer transaction at a time on the
shared connection. (How the history is applied, adopted and rolled back: tests/test_db_history.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiosqlite
import pytest

from mendbot.db import runs
from mendbot.db.connection import open_database, transaction
from mendbot.db.migrate import head_revision


async def _scalar(db: aiosqlite.Connection, sql: str) -> object:
    async with db.execute(sql) as cursor:
        row = await cursor.fetchone()
    return None if row is None else row[0]


async def test_migrations_apply_once_in_wal_mode(tmp_path: Path) -> None:
    """A new database is at the head of the history, in WAL mode; reopening keeps its rows."""
    path = tmp_path / "m.db"
    db = await open_database(path)
    assert await _scalar(db, "PRAGMA journal_mode") == "wal"
    assert await _scalar(db, "SELECT version_num FROM alembic_version") == head_revision()
    await db.execute(
        "INSERT INTO chat_messages (channel_id, author_id, author_name, role, content, created_at)"
        " VALUES (1, 2, 'a', 'user', 'kept', 'now')"
    )
    await db.close()
    db = await open_database(path)
    async with db.execute("SELECT content FROM chat_messages") as cursor:
        assert [row[0] for row in await cursor.fetchall()] == ["kept"]
    await db.close()


async def test_a_rolled_back_transaction_does_not_take_another_coroutines_write_with_it(
    tmp_path: Path,
) -> None:
    """A write another coroutine sends while a transaction is open waits for it to end: when that
    transaction rolls back, the other coroutine's row is still saved."""
    db = await open_database(tmp_path / "m.db")
    try:
        theirs: asyncio.Task[None] | None = None
        with pytest.raises(RuntimeError, match="half-way"):
            async with transaction(db):
                await runs.set_setting(db, "mine", 1)
                theirs = asyncio.create_task(runs.set_setting(db, "theirs", 2))
                await asyncio.sleep(0)  # a yield, not a wait: `theirs` sends its statement now
                await runs.get_setting(db, "mine")  # queued behind it on the connection's thread
                raise RuntimeError("failed half-way")
        assert theirs is not None
        await theirs
        assert await runs.get_setting(db, "theirs") == 2
        assert await runs.get_setting(db, "mine") is None
    finally:
        await db.close()


async def test_concurrent_run_inserts_and_transitions_each_commit_whole(tmp_path: Path) -> None:
    """Runs created and moved on by many coroutines at once on one connection all land, each with
    its events, and nothing fails with "cannot start a transaction within a transaction"."""
    db = await open_database(tmp_path / "m.db")
    try:

        async def one(n: int) -> None:
            run_id = await runs.insert(
                db,
                {
                    "kind": "fix",
                    "state": "queued",
                    "requester_id": n,
                    "description": f"run {n}",
                    "slug": "s",
                    "created_at": float(n),
                    "updated_at": float(n),
                },
                actor="test",
                detail=None,
            )
            await runs.set_setting(db, f"note-{n}", n)
            moved = await runs.transition(
                db,
                run_id,
                expected_state="queued",
                values={"state": "observing"},
                ts=float(n),
                actor="test",
                event="started",
                detail=None,
                cost_usd=0.5,
            )
            assert moved

        await asyncio.gather(*(one(n) for n in range(20)))
        assert await _scalar(db, "SELECT count(*) FROM runs WHERE state = 'observing'") == 20
        assert await _scalar(db, "SELECT count(*) FROM run_events") == 40
        assert await _scalar(db, "SELECT count(*) FROM settings_kv WHERE key LIKE 'note-%'") == 20
    finally:
        await db.close()
