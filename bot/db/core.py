"""Queries written once, as SQLAlchemy Core statements, run on SQLite or PostgreSQL.

The query modules are moving from hand-written SQLite to statements built on `bot.db.schema`'s
tables (`runs.py` first). A statement is a module constant with named `bindparam`s, compiled once
per engine (compiling costs ~1 ms; the compiled form is kept) and run on the bot's connection with
the values of one call: `await rows(db, _RECENT, limit=5)`. `expanding=True` parameters take
lists (`IN`). Each engine has its connection class with the same two abilities — `execute(sql,
params)` and `transaction()` (one task's transaction at a time, see `bot.db.connection`) — so
`transaction(db)` groups statements on either:

- SQLite: `bot.db.connection.Database`, the aiosqlite connection every service already shares;
- PostgreSQL: `PostgresDatabase`, a psycopg connection (`open_postgresql`).
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import aiosqlite
import sqlalchemy as sa
from sqlalchemy import ColumnElement, FromClause, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import quoted_name
from sqlalchemy.sql.expression import Executable

from bot.db.action_writes import is_postgresql
from bot.db.connection import Database, open_database

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "Connection",
    "PostgresDatabase",
    "connect",
    "dialect",
    "execute",
    "first",
    "indexed",
    "insert_for",
    "open_postgresql",
    "rows",
    "scalar",
]

_SQLITE = sqlite.dialect()
_POSTGRESQL = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]


@functools.lru_cache(maxsize=1024)
def _compiled(statement: Executable, dialect: Dialect) -> SQLCompiler:
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    assert isinstance(compiled, SQLCompiler)
    return compiled


def _sqlite_run(
    sql: str, params: Sequence[Any], conn: sqlite3.Connection
) -> tuple[list[dict[str, Any]], int]:
    """On the connection's thread, in one go: the statement and all its rows. Fetched apart, an
    `INSERT … RETURNING` would stay open between the two hand-overs, and another task's statement
    would run inside its implicit transaction."""
    cursor = conn.execute(sql, params)
    try:
        found = [dict(row) for row in cursor.fetchall()] if cursor.description else []
        return found, cursor.rowcount
    finally:
        cursor.close()


async def _run(db: Connection, statement: Executable, params: Mapping[str, Any]) -> Any:
    """(rows as dicts, rowcount) of one statement on `db`."""
    if isinstance(db, PostgresDatabase):
        state = _compiled(statement, _POSTGRESQL).construct_expanded_state(dict(params))
        return await db.run(state.statement, state.parameters)
    if isinstance(db, Database):
        state = _compiled(statement, _SQLITE).construct_expanded_state(dict(params))
        return await db.run_sync(functools.partial(_sqlite_run, state.statement, state.positional_parameters))
    raise TypeError(f"not a connection from open_database() or open_postgresql(): {db!r}")


def insert_for(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into `table` in the engine's own form, which has `on_conflict_do_update` and
    `on_conflict_do_nothing` (upserts are written once per engine with them)."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def indexed(dialect: str, table: Table, index: str) -> tuple[FromClause, Mapping[str, ColumnElement[Any]]]:
    """`table` and its columns, read through `index` on SQLite (`INDEXED BY`, where its planner
    would pick a worse plan); the plain table elsewhere. SQLAlchemy's SQLite compiler renders no
    table hints, so the hinted table is named verbatim and its columns unqualified."""
    if dialect != "sqlite":
        return table, {column.name: column for column in table.c}
    hinted = sa.table(quoted_name(f"{table.name} INDEXED BY {index}", quote=False))
    return hinted, {column.name: sa.column(column.name) for column in table.c}


def dialect(db: Connection) -> str:
    """Which engine `db` is on ("sqlite" or "postgresql"), for the few statements that differ."""
    return "postgresql" if isinstance(db, PostgresDatabase) else "sqlite"


async def rows(db: Connection, statement: Executable, **params: Any) -> list[dict[str, Any]]:
    """Every row the statement returns, as a dict by column name."""
    found, _ = await _run(db, statement, params)
    return list(found)


async def first(db: Connection, statement: Executable, **params: Any) -> dict[str, Any] | None:
    found, _ = await _run(db, statement, params)
    return found[0] if found else None


async def scalar(db: Connection, statement: Executable, **params: Any) -> Any:
    """The first column of the first row, or None when there is none."""
    found, _ = await _run(db, statement, params)
    return next(iter(found[0].values())) if found else None


async def execute(db: Connection, statement: Executable, **params: Any) -> int:
    """Run a statement for its effect; how many rows it changed."""
    _, count = await _run(db, statement, params)
    return int(count)


class PostgresDatabase:
    """A psycopg connection on which a transaction holds off every other task's statements, as
    `bot.db.connection.Database` does on SQLite (so code written for one behaves the same on the
    other).

    A server restart or a dropped connection fails the statements under way (a storage fault that
    `bot.db.retry` retries); the next statement outside a transaction connects again.
    """

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        reconnect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]] | None = None,
    ) -> None:
        self._conn = conn
        self._reconnect = reconnect
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None

    async def _usable(self) -> psycopg.AsyncConnection[Any]:
        """The connection, made again first if the last one was lost (never inside a transaction:
        its statements must not go on outside it)."""
        if (self._conn.broken or self._conn.closed) and self._reconnect is not None and self._owner is None:
            lost, self._conn = self._conn, await self._reconnect()
            await lost.close()
        return self._conn

    async def run(
        self, sql: str, params: Mapping[str, Any] | Sequence[Any]
    ) -> tuple[list[dict[str, Any]], int]:
        while self._owner is not None and self._owner is not asyncio.current_task():
            async with self._lock:
                pass
        async with (await self._usable()).cursor() as cursor:
            await cursor.execute(sql, params)
            names = [column.name for column in cursor.description] if cursor.description else []
            found = [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()] if names else []
            return found, cursor.rowcount

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if self._owner is task:
            raise RuntimeError("a transaction is already open in this task")
        async with self._lock:
            conn = await self._usable()
            self._owner = task
            try:
                async with conn.transaction():
                    yield
            finally:
                self._owner = None

    async def close(self) -> None:
        await self._conn.close()


# The bot's connection on either engine: from `open_database()` or from `open_postgresql()`.
Connection: TypeAlias = aiosqlite.Connection | PostgresDatabase


async def open_postgresql(url: str, *, lock_timeout_ms: int = 5000) -> PostgresDatabase:
    """Connect to the PostgreSQL database at `url` and bring its schema to the head.

    `lock_timeout_ms` is how long a statement waits for another session's lock before failing
    (SQLSTATE 55P03, which `bot.db.retry` retries within its bound), as `busy_timeout` on SQLite.
    """
    import psycopg

    from bot.db.migrate import upgrade_postgresql

    await asyncio.to_thread(upgrade_postgresql, url)

    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            url, autocommit=True, options=f"-c lock_timeout={int(lock_timeout_ms)}"
        )

    return PostgresDatabase(await connect(), reconnect=connect)


async def connect(target: Path | str, *, timeout_ms: int = 5000) -> Connection:
    """The bot's connection to `target` — a PostgreSQL URL or an SQLite file — with its schema at
    the head. `timeout_ms` bounds the wait for another writer's lock on either engine."""
    if is_postgresql(target):
        return await open_postgresql(str(target), lock_timeout_ms=timeout_ms)
    return await open_database(target, busy_timeout_ms=timeout_ms)
