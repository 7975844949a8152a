"""The chat history queries, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mendbot.db import chat, core
from mendbot.db.chat import ChatLine

pytestmark = pytest.mark.engines

CHANNEL = 1_100_000_000_000_002_000  # Discord ids: 64 bits
OTHER_CHANNEL = 1_100_000_000_000_002_001
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


async def _add(db: core.Connection, channel_id: int, content: str, message_id: int | None = None) -> None:
    await chat.add(
        db,
        channel_id=channel_id,
        message_id=message_id,
        author_id=1_100_000_000_000_003_000,
        author_name="alice",
        role="user",
        content=content,
        at=AT,
    )


async def test_an_empty_channel_has_no_history(engine_db: core.Connection) -> None:
    """recent() on a channel with no lines is empty."""
    assert await chat.recent(engine_db, CHANNEL, 10) == []


async def test_recent_returns_the_last_lines_of_one_channel_oldest_first(engine_db: core.Connection) -> None:
    """recent() keeps the newest `limit` lines of the channel asked for, in the order they were said."""
    for content in ("one", "two", "three"):
        await _add(engine_db, CHANNEL, content, message_id=1_200_000_000_000_000_000)
    await _add(engine_db, OTHER_CHANNEL, "elsewhere")
    assert await chat.recent(engine_db, CHANNEL, 2) == [
        ChatLine("alice", "user", "two"),
        ChatLine("alice", "user", "three"),
    ]


async def test_a_line_without_a_message_id_is_kept(engine_db: core.Connection) -> None:
    """A line with a NULL message id (the bot's own reply before it is sent) is stored and read back."""
    await chat.add(
        engine_db,
        channel_id=CHANNEL,
        message_id=None,
        author_id=1,
        author_name="mendbot",
        role="assistant",
        content="hello",
        at=AT,
    )
    assert await chat.recent(engine_db, CHANNEL, 5) == [ChatLine("mendbot", "assistant", "hello")]
