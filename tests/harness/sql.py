"""Plain SQL in tests, on whichever engine the bot under test runs (SQLite or PostgreSQL).

Tests check what the bot stored with a hand-written query; `sql(db, "... WHERE a = :a", a=1)`
runs it through `bot.db.core` on the bot's own connection and returns the rows as tuples.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bot.db import core

__all__ = ["sql", "sql_value"]


async def sql(db: core.Connection, text: str, **params: Any) -> list[tuple[Any, ...]]:
    """The rows of one statement, each as a tuple in column order."""
    return [tuple(row.values()) for row in await core.rows(db, sa.text(text), **params)]


async def sql_value(db: core.Connection, text: str, **params: Any) -> Any:
    """The first column of the first row (None when there is none)."""
    return await core.scalar(db, sa.text(text), **params)
