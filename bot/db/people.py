"""Queries for `people`: the name each person goes by, as the bot last saw them.

Written once in the SQL both engines share (`mendbot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from mendbot.db import core
from mendbot.db.core import Connection

__all__ = ["names", "remember"]

_REMEMBER = """
    INSERT INTO people (user_id, name, seen_at) VALUES (:user_id, :name, :at)
    ON CONFLICT (user_id) DO UPDATE SET name = excluded.name, seen_at = excluded.seen_at"""
_NAMES = "SELECT user_id, name FROM people"


async def remember(db: Connection, *, user_id: int, name: str, at: float) -> None:
    """Keep `name` as the one `user_id` goes by (the newest seen wins)."""
    await core.execute(db, _REMEMBER, user_id=user_id, name=name, at=at)


async def names(db: Connection) -> dict[int, str]:
    """Every remembered person's name, by user id (one row per person who ever used the bot)."""
    return {int(row["user_id"]): str(row["name"]) for row in await core.rows(db, _NAMES)}
