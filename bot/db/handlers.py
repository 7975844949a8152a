"""Queries for `handlers`: which function handles each kind (`app:convert` → cogs/convert.py)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import aiosqlite

__all__ = ["HandlerLocation", "for_kinds", "kinds", "replace_cog"]


@dataclass(frozen=True, slots=True)
class HandlerLocation:
    """Where a kind is handled: the file (relative to the repository) and the function in it."""

    kind: str
    path: str
    qualname: str
    line: int
    cog: str


async def replace_cog(
    db: aiosqlite.Connection, cog: str, locations: Sequence[HandlerLocation], now: float
) -> None:
    """Forget what `cog` handled and store `locations` instead.

    No explicit transaction: this runs on the shared connection, where another coroutine may
    hold one; a reader between the two statements sees the cog without handlers, which only
    means "no map yet".
    """
    await db.execute("DELETE FROM handlers WHERE cog = ?", (cog,))
    await db.executemany(
        "INSERT OR REPLACE INTO handlers (kind, path, qualname, line, cog, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(h.kind, h.path, h.qualname, h.line, cog, now) for h in locations],
    )


async def for_kinds(db: aiosqlite.Connection, kinds: Collection[str]) -> list[HandlerLocation]:
    """The handlers of these kinds, in a stable order."""
    if not kinds:
        return []
    marks = ", ".join("?" * len(kinds))
    async with db.execute(
        f"SELECT kind, path, qualname, line, cog FROM handlers WHERE kind IN ({marks})"
        " ORDER BY kind, path, qualname",
        tuple(kinds),
    ) as cursor:
        return [HandlerLocation(*row) for row in await cursor.fetchall()]


async def kinds(db: aiosqlite.Connection) -> set[str]:
    """Every kind some loaded handler answers."""
    async with db.execute("SELECT DISTINCT kind FROM handlers") as cursor:
        return {row[0] for row in await cursor.fetchall()}
