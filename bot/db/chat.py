"""Queries for the `chat_messages` table: the per-channel history the chat model sees.

Written once in the SQL both engines share (`mendbot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from mendbot.db import core
from mendbot.db.core import Connection

__all__ = ["ChatLine", "add", "recent"]


class ChatLine(msgspec.Struct, frozen=True):
    author_name: str
    role: Literal["user", "assistant"]
    content: str


_ADD = """
    INSERT INTO chat_messages (channel_id, message_id, author_id, author_name, role, content, created_at)
    VALUES (:channel_id, :message_id, :author_id, :author_name, :role, :content, :created_at)"""
_RECENT = """
    SELECT author_name, role, content FROM chat_messages WHERE channel_id = :channel_id
    ORDER BY id DESC LIMIT :limit"""


async def add(
    db: Connection,
    *,
    channel_id: int,
    message_id: int | None,
    author_id: int,
    author_name: str,
    role: Literal["user", "assistant"],
    content: str,
    at: datetime,
) -> None:
    await core.execute(
        db,
        _ADD,
        channel_id=channel_id,
        message_id=message_id,
        author_id=author_id,
        author_name=author_name,
        role=role,
        content=content,
        created_at=at.isoformat(),
    )


async def recent(db: Connection, channel_id: int, limit: int) -> list[ChatLine]:
    """The last `limit` lines of a channel, oldest first."""
    rows = await core.rows(db, _RECENT, channel_id=channel_id, limit=limit)
    return [ChatLine(row["author_name"], row["role"], row["content"]) for row in reversed(rows)]
