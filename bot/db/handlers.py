"""Queries for `handlers`: which function handles each kind (`app:convert` → cogs/convert.py).

Written once in the SQL both engines share (`mendbot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import msgspec

from mendbot.db import core
from mendbot.db.core import Connection

__all__ = ["HandlerLocation", "every", "for_kinds", "kinds", "replace_cog"]


class HandlerLocation(msgspec.Struct, frozen=True):
    """Where a kind is handled: the file (relative to the repository) and the function in it."""

    kind: str
    path: str
    qualname: str
    line: int
    cog: str


_DELETE_COG = "DELETE FROM handlers WHERE cog = :cog"
_FOR_KINDS = """
    SELECT kind, path, qualname, line, cog FROM handlers WHERE kind IN (:kinds)
    ORDER BY kind, path, qualname"""
_KINDS = "SELECT DISTINCT kind FROM handlers"
_EVERY = "SELECT kind, path, qualname, line, cog FROM handlers ORDER BY kind, path, qualname"
# One location, replacing the row already there for its (kind, path, qualname).
_STORE = """
    INSERT INTO handlers (kind, path, qualname, line, cog, updated_at)
    VALUES (:kind, :path, :qualname, :line, :cog, :updated_at)
    ON CONFLICT (kind, path, qualname) DO UPDATE
    SET line = excluded.line, cog = excluded.cog, updated_at = excluded.updated_at"""


async def replace_cog(db: Connection, cog: str, locations: Sequence[HandlerLocation], now: float) -> None:
    """Forget what `cog` handled and store `locations` instead.

    No explicit transaction: this runs on the shared connection, where another coroutine may
    hold one; on PostgreSQL a reader between the statements sees the cog without some of its handlers
    (on SQLite they go in one hand-over), which only means "no map yet".
    """
    stores = [(_STORE, {**msgspec.structs.asdict(h), "cog": cog, "updated_at": now}) for h in locations]
    await core.execute_all(db, [(_DELETE_COG, {"cog": cog}), *stores])


async def for_kinds(db: Connection, kinds: Collection[str]) -> list[HandlerLocation]:
    """The handlers of these kinds, in a stable order."""
    if not kinds:
        return []
    found = await core.rows(db, _FOR_KINDS, kinds=list(kinds))
    return [
        HandlerLocation(row["kind"], row["path"], row["qualname"], row["line"], row["cog"]) for row in found
    ]


async def kinds(db: Connection) -> set[str]:
    """Every kind some loaded handler answers."""
    return {str(row["kind"]) for row in await core.rows(db, _KINDS)}


async def every(db: Connection) -> list[HandlerLocation]:
    """Every handler of every loaded cog, in a stable order (what words or a change can lead to)."""
    return [
        HandlerLocation(row["kind"], row["path"], row["qualname"], row["line"], row["cog"])
        for row in await core.rows(db, _EVERY)
    ]
