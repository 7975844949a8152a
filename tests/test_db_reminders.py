"""The reminder queries, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mendbot.db import core, reminders
from tests.harness.sql import sql_value

pytestmark = pytest.mark.engines

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CHANNEL = 1_100_000_000_000_002_000  # Discord ids: 64 bits
USER = 1_100_000_000_000_003_000


async def _insert(
    db: core.Connection, text: str, due_in_s: float, guild_id: int | None = None
) -> reminders.Reminder:
    return await reminders.insert(
        db,
        guild_id=guild_id,
        channel_id=CHANNEL,
        user_id=USER,
        text=text,
        created_at=NOW,
        due_at=NOW + timedelta(seconds=due_in_s),
    )


async def test_an_inserted_reminder_is_pending_with_its_values(engine_db: core.Connection) -> None:
    """insert() returns the reminder with its new id; pending() reads it back the same."""
    reminder = await _insert(engine_db, "stretch", 60, guild_id=1_100_000_000_000_004_000)
    assert reminder.id > 0
    assert await reminders.pending(engine_db) == [reminder]


async def test_pending_reminders_come_soonest_first(engine_db: core.Connection) -> None:
    """pending() orders by due time, whatever the insertion order; a NULL guild (a DM) is kept."""
    late = await _insert(engine_db, "late", 120)
    soon = await _insert(engine_db, "soon", 30)
    assert [r.text for r in await reminders.pending(engine_db)] == ["soon", "late"]
    assert soon.guild_id is None and late.id != soon.id


async def test_only_the_first_claim_wins_and_a_claimed_reminder_is_no_longer_pending(
    engine_db: core.Connection,
) -> None:
    """claim() is True once, then False; the claimed reminder leaves pending()."""
    reminder = await _insert(engine_db, "stretch", 60)
    assert await reminders.claim(engine_db, reminder.id, NOW) is True
    assert await reminders.claim(engine_db, reminder.id, NOW) is False
    assert await reminders.pending(engine_db) == []


async def test_claiming_a_missing_reminder_is_false(engine_db: core.Connection) -> None:
    """claim() of an id that does not exist changes nothing and returns False."""
    assert await reminders.claim(engine_db, 12345, NOW) is False


async def test_a_failure_reason_is_stored_cut_to_500_characters(engine_db: core.Connection) -> None:
    """mark_failed() stores the reason, at most 500 characters of it."""
    reminder = await _insert(engine_db, "stretch", 60)
    await reminders.mark_failed(engine_db, reminder.id, "x" * 600)
    failed = await sql_value(engine_db, "SELECT failed FROM reminders WHERE id = :id", id=reminder.id)
    assert failed == "x" * 500
