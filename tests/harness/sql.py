"""Plain SQL in tests, on whichever engine the bot under test runs (SQLite or PostgreSQL).

Tests check what the bot stored with a hand-written query:

- `await sql(db, "... WHERE a = :a", a=1)` on the bot's own connection (through `mendbot.db.core`), and
  `await insert(db, "table", a=1, b=2)` to store a row the way a test sets the scene;
- `stored(settings, "... WHERE a = ?", 1)` from outside, on a connection of its own to the bot's
  SQLite file or PostgreSQL database, as the tests always read the SQLite file directly.

Rows read like `sqlite3.Row`: by position, by column name, `dict(row)`, and equal to tuples.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any, SupportsIndex, overload

from mendbot.db import core
from mendbot.db.action_writes import is_postgresql
from mendbot.db.schema import metadata
from mendbot.kernel.settings import Settings

__all__ = ["Row", "dump", "insert", "sql", "sql_value", "stored", "stored_bytes"]


class Row(tuple[Any, ...]):
    """A result row: a tuple that also answers to its column names."""

    _names: tuple[str, ...]

    def __new__(cls, names: tuple[str, ...], values: tuple[Any, ...]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    @overload
    def __getitem__(self, key: SupportsIndex) -> Any: ...
    @overload
    def __getitem__(self, key: slice) -> tuple[Any, ...]: ...
    @overload
    def __getitem__(self, key: str) -> Any: ...
    def __getitem__(self, key: SupportsIndex | slice | str) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names.index(key))
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


async def sql(db: core.Connection, text: str, **params: Any) -> list[tuple[Any, ...]]:
    """The rows of one statement, each as a tuple in column order."""
    return [tuple(row.values()) for row in await core.rows(db, text, **params)]


async def sql_value(db: core.Connection, text: str, **params: Any) -> Any:
    """The first column of the first row (None when there is none)."""
    return await core.scalar(db, text, **params)


async def insert(db: core.Connection, table: str, **values: Any) -> int:
    """Store one row of `values` in `table`; its `id`."""
    columns = ", ".join(values)
    places = ", ".join(f":{name}" for name in values)
    statement = f"INSERT INTO {table} ({columns}) VALUES ({places}) RETURNING id"
    return int(await core.scalar(db, statement, **values))


def stored(settings: Settings, text: str, *args: Any) -> list[Row]:
    """The rows of one statement (`?` placeholders) on the bot's database, read from outside it."""
    target = settings.database_target
    if is_postgresql(target):
        import psycopg

        with psycopg.connect(str(target), autocommit=True) as conn, conn.cursor() as cursor:
            # Every literal `%` doubled; `?` → `%s` outside quoted strings.
            parts = re.split(r"('[^']*')", text.replace("%", "%%"))
            query = "".join(part if part.startswith("'") else part.replace("?", "%s") for part in parts)
            cursor.execute(query, args)
            if cursor.description is None:
                return []
            names = tuple(column.name for column in cursor.description)
            return [Row(names, tuple(values)) for values in cursor.fetchall()]
    with sqlite3.connect(target) as db:
        found = db.execute(text, args)
        if found.description is None:
            return []
        names = tuple(column[0] for column in found.description)
        return [Row(names, tuple(values)) for values in found.fetchall()]


def dump(settings: Settings) -> str:
    """Every row of every table of the bot's database, as text (to search for what must not be there)."""
    lines = []
    for table in metadata.sorted_tables:
        lines += [f"{table.name}: {row!r}" for row in stored(settings, f"SELECT * FROM {table.name}")]
    return "\n".join(lines)


def stored_bytes(settings: Settings) -> bytes:
    """All the bot's database holds: the SQLite files byte for byte (freed pages and the WAL too),
    or every row of the PostgreSQL database as text."""
    if settings.database.url is not None:
        return dump(settings).encode()
    return b"".join(path.read_bytes() for path in settings.data_dir.glob("mendbot.db*"))
