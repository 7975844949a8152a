"""Queries for the `chat_messages` table: the per-channel history the chat model sees.

Written once as SQLAlchemy Core statements (`bot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy import bindparam, select

from bot.db import core
from bot.db.core import Connection
from bot.db.schema import chat_messages

__all__ = ["ChatLine", "add", "recent"]


@dataclass(frozen=True, slots=True)
class ChatLine:
    author_name: str
    role: Literal["user", "assistant"]
    content: str


_ADD = sa.insert(chat_messages).values(
    channel_id=bindparam("channel_id"),
    message_id=bindparam("message_id"),
    author_id=bindparam("author_id"),
    author_name=bindparam("author_name"),
    role=bindparam("role"),
    content=bindparam("content"),
    created_at=bindparam("created_at"),
)
_RECENT = (
    select(chat_messages.c.author_name, chat_messages.c.role, chat_messages.c.content)
    .where(chat_messages.c.channel_id == bindparam("channel_id"))
    .order_by(chat_messages.c.id.desc())
    .limit(bindparam("limit"))
)


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
