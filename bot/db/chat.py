"""Queries for the `chat_messages` table: the per-channel history the chat model sees."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import aiosqlite

__all__ = ["ChatLine", "add", "recent"]


@dataclass(frozen=True, slots=True)
class ChatLine:
    author_name: str
    role: Literal["user", "assistant"]
    content: str


async def add(
    db: aiosqlite.Connection,
    *,
    channel_id: int,
    message_id: int | None,
    author_id: int,
    author_name: str,
    role: Literal["user", "assistant"],
    content: str,
    at: datetime,
) -> None:
    await db.execute(
        "INSERT INTO chat_messages"
        " (channel_id, message_id, author_id, author_name, role, content, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (channel_id, message_id, author_id, author_name, role, content, at.isoformat()),
    )


async def recent(db: aiosqlite.Connection, channel_id: int, limit: int) -> list[ChatLine]:
    """The last `limit` lines of a channel, oldest first."""
    async with db.execute(
        "SELECT author_name, role, content FROM chat_messages WHERE channel_id = ? ORDER BY id DESC LIMIT ?",
        (channel_id, limit),
    ) as cursor:
        rows = list(await cursor.fetchall())
    return [ChatLine(row["author_name"], row["role"], row["content"]) for row in reversed(rows)]
