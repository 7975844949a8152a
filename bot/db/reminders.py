"""Queries for the `reminders` table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aiosqlite

__all__ = ["Reminder", "claim", "insert", "mark_failed", "pending"]


@dataclass(frozen=True, slots=True)
class Reminder:
    id: int
    guild_id: int | None
    channel_id: int
    user_id: int
    text: str
    due_at: datetime


def _row(row: aiosqlite.Row) -> Reminder:
    return Reminder(
        id=row["id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        user_id=row["user_id"],
        text=row["text"],
        due_at=datetime.fromisoformat(row["due_at"]),
    )


async def insert(
    db: aiosqlite.Connection,
    *,
    guild_id: int | None,
    channel_id: int,
    user_id: int,
    text: str,
    created_at: datetime,
    due_at: datetime,
) -> Reminder:
    cursor = await db.execute(
        "INSERT INTO reminders (guild_id, channel_id, user_id, text, created_at, due_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (guild_id, channel_id, user_id, text, created_at.isoformat(), due_at.isoformat()),
    )
    assert cursor.lastrowid is not None
    return Reminder(cursor.lastrowid, guild_id, channel_id, user_id, text, due_at)


async def pending(db: aiosqlite.Connection) -> list[Reminder]:
    async with db.execute("SELECT * FROM reminders WHERE fired_at IS NULL ORDER BY due_at") as cursor:
        return [_row(row) for row in await cursor.fetchall()]


async def claim(db: aiosqlite.Connection, reminder_id: int, at: datetime) -> bool:
    """Mark a reminder fired; True only for the one caller that claimed it first."""
    cursor = await db.execute(
        "UPDATE reminders SET fired_at = ? WHERE id = ? AND fired_at IS NULL", (at.isoformat(), reminder_id)
    )
    return cursor.rowcount == 1


async def mark_failed(db: aiosqlite.Connection, reminder_id: int, reason: str) -> None:
    await db.execute("UPDATE reminders SET failed = ? WHERE id = ?", (reason[:500], reminder_id))
