"""Rows cogs keep remember the action that wrote them; a failing action's reads name that writer."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import pytest

from mendbot.db import cog_rows, provenance
from mendbot.db.connection import open_database
from mendbot.db.records import ActionRecord
from mendbot.observe.capture import start_capture
from mendbot.observe.recorder import ActionRecorder

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_database(tmp_path / "m.db")
    yield connection
    await connection.close()


async def _store_score(db: aiosqlite.Connection) -> None:
    """What a /score command does: one row, written inside its own action."""
    start_capture("app:score")
    await cog_rows.put(db, "scores", "7", {"name": "alice", "points": "7"})


async def _in_new_action(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run as a handler runs: in a task of its own context."""
    return await asyncio.get_running_loop().create_task(coroutine, context=contextvars.Context())


async def test_a_row_remembers_who_wrote_it_and_a_read_notes_that(db: aiosqlite.Connection) -> None:
    """A row written by app:score, read by app:leaders: the reader's scope holds the row with its
    writer's kind and the code that asked for the write."""
    await _in_new_action(_store_score(db))

    async def leaders() -> list[dict[str, Any]]:
        start_capture("app:leaders")
        assert await cog_rows.all_rows(db, "scores") == {"7": {"name": "alice", "points": "7"}}
        scope = provenance.current()
        assert scope is not None and scope.kind == "app:leaders"
        return scope.reads

    (read,) = await _in_new_action(leaders())
    assert read["table"] == "scores" and read["row"] == "7" and read["written_by"] == "app:score"
    assert any(frame.endswith(":_store_score") and "test_db_cog_rows.py" in frame for frame in read["writer"])


async def test_outside_an_action_nothing_is_noted_and_the_writer_is_unknown(db: aiosqlite.Connection) -> None:
    """A write and a read outside any action: the row has no writer kind and no read is kept."""

    async def outside() -> None:
        await cog_rows.put(db, "notes", "a", [1, 2])
        assert await cog_rows.get(db, "notes", "a") == [1, 2]
        assert provenance.current() is None

    await _in_new_action(outside())

    async def inside() -> list[dict[str, Any]]:
        start_capture("app:notes")
        await cog_rows.get(db, "notes", "a")
        scope = provenance.current()
        assert scope is not None
        return scope.reads

    (read,) = await _in_new_action(inside())
    assert read["written_by"] is None
    assert await cog_rows.delete(db, "notes", "a") and await cog_rows.get(db, "notes", "a") is None


async def test_a_failing_action_records_the_rows_it_read_with_their_writers(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """The failure's record carries `read_rows`, the writer's frames relative to the repository."""
    recorder = ActionRecorder(
        database=tmp_path / "r.db",
        ndjson_path=tmp_path / "logs" / "actions.ndjson",
        repo_root=ROOT,
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )
    await _in_new_action(_store_score(db))
    records: list[ActionRecord] = []
    recorder.subscribe(records.append)

    async def leaders() -> tuple[dict[str, Any], dict[str, Any]]:
        start_capture("app:leaders")
        rows = await cog_rows.all_rows(db, "scores")
        recorder.record("app:leaders", "Scores", ok=True, duration_ms=1.0)
        try:
            sum(row["points"] for row in rows.values())
        except TypeError as error:
            recorder.record("app:leaders", "Scores", ok=False, duration_ms=1.0, error=error)
            ok, failed = records  # the success taken in before the failure
            return failed.extra, ok.extra
        raise AssertionError("the bad row did not fail")

    extra, ok_extra = await _in_new_action(leaders())
    (read,) = extra["read_rows"]
    assert read["written_by"] == "app:score" and read["row"] == "7"  # not hidden as a secret-named key
    assert any(frame.startswith("tests/test_db_cog_rows.py:") for frame in read["writer"]), read
    assert "read_rows" not in ok_extra  # only failures carry them
