"""Queries for `handlers`: which function handles each kind (`app:convert` → cogs/convert.py).

Written once as SQLAlchemy Core statements (`bot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import Executable, bindparam, select

from bot.db import core
from bot.db.core import Connection
from bot.db.schema import handlers

__all__ = ["HandlerLocation", "for_kinds", "kinds", "replace_cog"]


@dataclass(frozen=True, slots=True)
class HandlerLocation:
    """Where a kind is handled: the file (relative to the repository) and the function in it."""

    kind: str
    path: str
    qualname: str
    line: int
    cog: str


_DELETE_COG = handlers.delete().where(handlers.c.cog == bindparam("cog"))
_FOR_KINDS = (
    select(handlers.c.kind, handlers.c.path, handlers.c.qualname, handlers.c.line, handlers.c.cog)
    .where(handlers.c.kind.in_(bindparam("kinds", expanding=True)))
    .order_by(handlers.c.kind, handlers.c.path, handlers.c.qualname)
)
_KINDS = select(handlers.c.kind).distinct()


@functools.cache
def _store(dialect: str) -> Executable:
    """Insert one location, replacing the row already there for its (kind, path, qualname)."""
    upsert = core.insert_for(dialect, handlers)
    upsert = upsert.values(
        kind=bindparam("kind"),
        path=bindparam("path"),
        qualname=bindparam("qualname"),
        line=bindparam("line"),
        cog=bindparam("cog"),
        updated_at=bindparam("updated_at"),
    )
    return upsert.on_conflict_do_update(
        index_elements=[handlers.c.kind, handlers.c.path, handlers.c.qualname],
        set_={
            "line": upsert.excluded.line,
            "cog": upsert.excluded.cog,
            "updated_at": upsert.excluded.updated_at,
        },
    )


async def replace_cog(db: Connection, cog: str, locations: Sequence[HandlerLocation], now: float) -> None:
    """Forget what `cog` handled and store `locations` instead.

    No explicit transaction: this runs on the shared connection, where another coroutine may
    hold one; a reader between the statements sees the cog without some of its handlers, which
    only means "no map yet".
    """
    await core.execute(db, _DELETE_COG, cog=cog)
    store = _store(core.dialect(db))
    for h in locations:
        await core.execute(
            db, store, kind=h.kind, path=h.path, qualname=h.qualname, line=h.line, cog=cog, updated_at=now
        )


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
