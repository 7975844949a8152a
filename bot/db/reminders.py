"""Queries for the `reminders` table.

Written once in the SQL both engines share (`mendbot.db.core`), so they run on SQLite and PostgreSQL.
Times are stored as ISO 8601 text, which sorts the same on both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from mendbot.db import core
from mendbot.db.core import Connection

__all__ = ["Reminder", "claim", "insert", "mark_failed", "pending"]


class Reminder(msgspec.Struct, frozen=True):
    id: int
    guild_id: int | None
    channel_id: int
    user_id: int
    text: str
    due_at: datetime


_INSERT = """
    INSERT INTO reminders (guild_id, channel_id, user_id, text, created_at, due_at)
    VALUES (:guild_id, :channel_id, :user_id, :text, :created_at, :due_at)
    RETURNING id"""
_PENDING = "SELECT * FROM reminders WHERE fired_at IS NULL ORDER BY due_at"
_CLAIM = "UPDATE reminders SET fired_at = :fired_at WHERE id = :reminder_id AND fired_at IS NULL"
_MARK_FAILED = "UPDATE reminders SET failed = :reason WHERE id = :reminder_id"


def _row(row: dict[str, Any]) -> Reminder:
    return Reminder(
        id=row["id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        user_id=row["user_id"],
        text=row["text"],
        due_at=datetime.fromisoformat(row["due_at"]),
    )


async def insert(
    db: Connection,
    *,
    guild_id: int | None,
    channel_id: int,
    user_id: int,
    text: str,
    created_at: datetime,
    due_at: datetime,
) -> Reminder:
    reminder_id = await core.scalar(
        db,
        _INSERT,
        guild_id=guild_id,
        channel_id=channel_id,
        user_id=user_id,
        text=text,
        created_at=created_at.isoformat(),
        due_at=due_at.isoformat(),
    )
    return Reminder(int(reminder_id), guild_id, channel_id, user_id, text, due_at)


async def pending(db: Connection) -> list[Reminder]:
    return [_row(row) for row in await core.rows(db, _PENDING)]


async def claim(db: Connection, reminder_id: int, at: datetime) -> bool:
    """Mark a reminder fired; True only for the one caller that claimed it first."""
    return await core.execute(db, _CLAIM, reminder_id=reminder_id, fired_at=at.isoformat()) == 1


async def mark_failed(db: Connection, reminder_id: int, reason: str) -> None:
    await core.execute(db, _MARK_FAILED, reminder_id=reminder_id, reason=reason[:500])
