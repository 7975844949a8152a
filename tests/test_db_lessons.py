"""The lesson queries, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from mendbot.db import core, lessons

pytestmark = pytest.mark.engines


def _lesson(**values: object) -> dict[str, object]:
    return {
        "run_id": 1,
        "fingerprint": "fp-roll",
        "files": ["cogs/dice.py"],
        "root_cause": "off by one",
        "fix_commit": "abc123",
        "outcome": "resolved",
        "created_at": 100.0,
        **values,
    }


async def test_an_inserted_lesson_is_found_by_fingerprint_with_its_files_decoded(
    engine_db: core.Connection,
) -> None:
    """insert() returns the new id; by_fingerprint() gives the row back with `files` as a list."""
    lesson_id = await lessons.insert(engine_db, _lesson(files=("cogs/dice.py", "bot/roll.py")))
    [found] = await lessons.by_fingerprint(engine_db, "fp-roll", 5)
    assert (found["id"], found["files"], found["fix_commit"]) == (
        lesson_id,
        ["cogs/dice.py", "bot/roll.py"],
        "abc123",
    )


async def test_lessons_by_fingerprint_are_newest_first_and_limited(engine_db: core.Connection) -> None:
    """by_fingerprint() orders by time then id, newest first, keeps `limit`, and skips other fingerprints."""
    old = await lessons.insert(engine_db, _lesson(created_at=100.0))
    tie_first = await lessons.insert(engine_db, _lesson(created_at=200.0))
    tie_second = await lessons.insert(engine_db, _lesson(created_at=200.0))
    await lessons.insert(engine_db, _lesson(fingerprint="fp-other", created_at=300.0))
    assert [r["id"] for r in await lessons.by_fingerprint(engine_db, "fp-roll", 10)] == [
        tie_second,
        tie_first,
        old,
    ]
    assert len(await lessons.by_fingerprint(engine_db, "fp-roll", 2)) == 2


async def test_a_lesson_without_fingerprint_or_commit_is_stored(engine_db: core.Connection) -> None:
    """NULL fingerprint and fix commit are kept; such a lesson is found by its files only."""
    lesson_id = await lessons.insert(engine_db, _lesson(fingerprint=None, fix_commit=None))
    [found] = await lessons.by_files(engine_db, ["cogs/dice.py"], 5)
    assert (found["id"], found["fingerprint"], found["fix_commit"]) == (lesson_id, None, None)


async def test_lessons_are_found_by_any_of_their_files(engine_db: core.Connection) -> None:
    """by_files() matches a lesson naming any of the files (exact, case included), newest first."""
    dice = await lessons.insert(engine_db, _lesson(files=["cogs/dice.py"], created_at=100.0))
    both = await lessons.insert(engine_db, _lesson(files=["bot/roll.py", "cogs/dice.py"], created_at=200.0))
    await lessons.insert(engine_db, _lesson(files=["cogs/shop.py"], created_at=300.0))
    await lessons.insert(engine_db, _lesson(files=[], created_at=400.0))
    found = await lessons.by_files(engine_db, ["cogs/dice.py", "bot/roll.py"], 10)
    assert [r["id"] for r in found] == [both, dice]
    assert await lessons.by_files(engine_db, ["COGS/DICE.PY"], 10) == []
    assert len(await lessons.by_files(engine_db, ["cogs/dice.py"], 1)) == 1


async def test_by_files_leaves_out_the_excluded_ids(engine_db: core.Connection) -> None:
    """by_files() skips `exclude_ids`; an empty exclusion list leaves out nothing."""
    first = await lessons.insert(engine_db, _lesson())
    second = await lessons.insert(engine_db, _lesson())
    assert [r["id"] for r in await lessons.by_files(engine_db, ["cogs/dice.py"], 10, [second])] == [first]
    assert [r["id"] for r in await lessons.by_files(engine_db, ["cogs/dice.py"], 10, [])] == [second, first]


async def test_by_files_with_no_files_finds_nothing(engine_db: core.Connection) -> None:
    """by_files() with an empty file list returns no lessons."""
    await lessons.insert(engine_db, _lesson())
    assert await lessons.by_files(engine_db, [], 10) == []
