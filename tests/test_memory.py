"""Memory: lessons written by finished runs, recalled by fingerprint first, then by shared files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import pytest

from mendbot.db import open_database
from mendbot.improve.memory import Lesson, Memory

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


@pytest.fixture
async def memory(tmp_path: Path) -> AsyncIterator[Memory]:
    db: aiosqlite.Connection = await open_database(tmp_path / "memory.db")
    yield Memory(db, lambda: NOW)
    await db.close()


def lesson(run_id: int, fingerprint: str | None, files: list[str], at: float) -> Lesson:
    return Lesson(
        run_id=run_id,
        fingerprint=fingerprint,
        files=files,
        root_cause=f"cause {run_id}",
        fix_commit=f"sha{run_id}",
        outcome="resolved",
        created_at=at,
    )


async def test_recall_by_fingerprint_newest_first(memory: Memory) -> None:
    """Lessons with the same fingerprint come back newest first."""
    await memory.write(lesson(1, "fp-roll", ["cogs/dice.py"], 100))
    await memory.write(lesson(2, "fp-other", ["bot/x.py"], 200))
    await memory.write(lesson(3, "fp-roll", ["cogs/dice.py"], 300))
    recalled = await memory.recall("fp-roll", [])
    assert [item.run_id for item in recalled] == [3, 1]
    assert recalled[0] == lesson(3, "fp-roll", ["cogs/dice.py"], 300)


async def test_recall_by_file_overlap_after_fingerprint_matches(memory: Memory) -> None:
    """Fingerprint matches come first, then lessons sharing any file, without duplicates, up to the limit."""
    await memory.write(lesson(1, "fp-a", ["bot/features/reminders.py", "cogs/remind.py"], 100))
    await memory.write(lesson(2, None, ["./cogs/dice.py"], 200))
    await memory.write(lesson(3, "fp-b", ["cogs/dice.py", "bot/features/dice.py"], 300))
    await memory.write(lesson(4, "fp-c", ["README.md"], 400))
    recalled = await memory.recall("fp-a", ["cogs/dice.py", "cogs/remind.py"])
    assert [item.run_id for item in recalled] == [1, 3, 2]
    assert recalled[2].files == ["cogs/dice.py"]
    assert [item.run_id for item in await memory.recall("fp-a", ["cogs/dice.py"], limit=2)] == [1, 3]
    assert await memory.recall(None, ["nothing.py"]) == []


async def test_write_stamps_lessons_without_a_time(memory: Memory) -> None:
    """A lesson written without created_at is stamped with the clock."""
    await memory.write(Lesson(7, None, ["a.py"], "why", None, "failed"))
    [recalled] = await memory.recall(None, ["a.py"])
    assert recalled.created_at == NOW.timestamp()
