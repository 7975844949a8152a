"""Database: WAL mode, migrations applied once, a failing migration changes nothing."""

from __future__ import annotations

from pathlib import Path

import aiosqlite
import pytest

from bot.db import connection
from bot.db.connection import MigrationError, open_database


async def _scalar(db: aiosqlite.Connection, sql: str) -> object:
    async with db.execute(sql) as cursor:
        row = await cursor.fetchone()
    return None if row is None else row[0]


async def test_migrations_apply_once_in_wal_mode(tmp_path: Path) -> None:
    """A new database gets every migration, in WAL mode; reopening applies nothing again."""
    path = tmp_path / "m.db"
    db = await open_database(path)
    assert await _scalar(db, "PRAGMA journal_mode") == "wal"
    assert await _scalar(db, "PRAGMA user_version") == len(connection.migrations())
    await db.execute(
        "INSERT INTO chat_messages (channel_id, author_id, author_name, role, content, created_at)"
        " VALUES (1, 2, 'a', 'user', 'kept', 'now')"
    )
    await db.close()
    db = await open_database(path)
    async with db.execute("SELECT content FROM chat_messages") as cursor:
        assert [row[0] for row in await cursor.fetchall()] == ["kept"]
    await db.close()


async def test_failing_migration_leaves_database_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a new migration fails half-way, none of it is applied and the version stays."""
    path = tmp_path / "m.db"
    await (await open_database(path)).close()
    shipped = connection.migrations()
    broken = (
        len(shipped) + 1,
        f"{len(shipped) + 1:04d}_broken.sql",
        "CREATE TABLE half_done (x INTEGER);\nTHIS IS NOT SQL;",
    )
    monkeypatch.setattr(connection, "migrations", lambda: [*shipped, broken])
    with pytest.raises(MigrationError, match="broken"):
        await open_database(path)
    monkeypatch.undo()
    db = await open_database(path)
    assert await _scalar(db, "SELECT name FROM sqlite_master WHERE name = 'half_done'") is None
    assert await _scalar(db, "PRAGMA user_version") == len(shipped)
    await db.close()
