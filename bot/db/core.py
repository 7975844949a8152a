"""Queries written once, as the SQL that SQLite and PostgreSQL share, run on either engine.

A statement is plain SQL with named parameters — `SELECT * FROM runs WHERE id = :run_id` — run on
the bot's connection with the values of one call: `await rows(db, _BY_ID, run_id=5)`. Both engines
speak the same SQL for nearly everything the bot asks (`INSERT … ON CONFLICT … DO UPDATE`,
`RETURNING`, `coalesce`, `||`); where they differ (JSON, full-text search, index hints, integer
division) a query module builds each engine's text from `dialect(db)`. A list (or tuple) value
goes where `IN (:ids)` or `NOT IN (:ids)` names it, and an empty one works as SQL means it to
(nothing is in an empty list).

The text is the same for both, translated once per statement: SQLite reads `:name` itself and gets
a list as one parameter per item; for psycopg each `:name` becomes `%(name)s`, a `%` becomes `%%`,
`::` casts stay, and a list is one array (`= ANY(…)`, `<> ALL(…)`).

No library stands between: statements built with SQLAlchemy cost every process ~14 MB and ~0.1 s of
CPU at start for strings that never change. `schema.py` and the Alembic history still describe the
tables, and only a migration loads them.

Each engine has its connection class with the same two abilities — `execute(sql, params)` and
`transaction()` (one task's transaction at a time, see `mendbot.db.connection`) — so `transaction(db)`
groups statements on either:

- SQLite: `mendbot.db.connection.Database`, the aiosqlite connection every service already shares;
- PostgreSQL: `PostgresDatabase`, a psycopg connection (`open_postgresql`).
"""

from __future__ import annotations

import asyncio
import functools
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import aiosqlite

from mendbot.db.action_writes import is_postgresql
from mendbot.db.connection import Database, open_database

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "Connection",
    "PostgresDatabase",
    "connect",
    "dialect",
    "execute",
    "execute_all",
    "first",
    "indexed_by",
    "open_postgresql",
    "rows",
    "scalar",
]

# What the translation looks at: quoted text (kept as it is), `IN (:name)` (a list's place), a `::`
# cast, a `:name` parameter, a `%`.
_TOKENS = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|(?P<op>(?:\bNOT\s+)?\bIN)\s*\(\s*:(?P<list>\w+)\s*\)|::|:(?P<name>\w+)|%""",
    re.IGNORECASE,
)
# A list's items are passed to SQLite as `name__0`, `name__1`, … (no query names a parameter so).
_ITEM = "{}__{}"


@functools.lru_cache(maxsize=1024)
def _render(sql: str, postgresql: bool, lists: tuple[tuple[str, int], ...]) -> str:
    """`sql` for one engine, given the list parameters and their sizes (their names alone on
    PostgreSQL, where a list is one array: `= ANY(…)`, `<> ALL(…)`)."""
    sizes = dict(lists)

    def one(name: str) -> str:
        if name in sizes:
            raise ValueError(f"list parameter :{name} outside `IN (:{name})`: {sql}")
        return f"%({name})s" if postgresql else f":{name}"

    def replace(token: re.Match[str]) -> str:
        text, name, listed = token.group(0), token.group("name"), token.group("list")
        if name is not None:
            return one(name)
        if listed is not None:
            if listed not in sizes:
                return f"{token.group('op')} ({one(listed)})"
            if postgresql:
                negated = token.group("op").upper().startswith("NOT")
                return f"{'<> ALL' if negated else '= ANY'}(%({listed})s)"
            items = ", ".join(f":{_ITEM.format(listed, n)}" for n in range(sizes[listed]))
            return f"{token.group('op')} ({items})"  # SQLite takes an empty list: `IN ()`
        return text.replace("%", "%%") if postgresql and text[0] in "%'" else text

    return _TOKENS.sub(replace, sql)


def _bound(sql: str, params: Mapping[str, Any], postgresql: bool) -> tuple[str, dict[str, Any]]:
    """The engine's text and the values to bind. A list (or tuple) is one array on PostgreSQL and one
    value per item on SQLite."""
    lists = tuple((name, len(value)) for name, value in params.items() if isinstance(value, list | tuple))
    if not lists:
        return _render(sql, postgresql, ()), dict(params)
    if postgresql:
        shape = tuple((name, 0) for name, _ in lists)
        arrays = {name: list(value) if isinstance(value, tuple) else value for name, value in params.items()}
        return _render(sql, True, shape), arrays
    values = {name: value for name, value in params.items() if not isinstance(value, list | tuple)}
    for name, _ in lists:
        values.update({_ITEM.format(name, n): item for n, item in enumerate(params[name])})
    return _render(sql, False, lists), values


def _sqlite_run(
    sql: str, params: Mapping[str, Any], conn: sqlite3.Connection
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


def _sqlite_run_all(bound: list[tuple[str, dict[str, Any]]], conn: sqlite3.Connection) -> None:
    """On the connection's thread: each statement in order, for its effect."""
    for text, values in bound:
        conn.execute(text, values).close()


async def _run(db: Connection, sql: str, params: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """(rows as dicts, rowcount) of one statement on `db`."""
    if isinstance(db, PostgresDatabase):
        return await db.run(*_bound(sql, params, postgresql=True))
    if isinstance(db, Database):
        text, values = _bound(sql, params, postgresql=False)
        return await db.run_sync(functools.partial(_sqlite_run, text, values))
    raise TypeError(f"not a connection from open_database() or open_postgresql(): {db!r}")


def indexed_by(dialect: str, index: str) -> str:
    """`INDEXED BY index` on SQLite (where its planner would pick a worse plan), nothing elsewhere:
    goes right after the table's name."""
    return f"INDEXED BY {index}" if dialect == "sqlite" else ""


def dialect(db: Connection) -> str:
    """Which engine `db` is on ("sqlite" or "postgresql"), for the few statements that differ."""
    return "postgresql" if isinstance(db, PostgresDatabase) else "sqlite"


async def rows(db: Connection, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Every row the statement returns, as a dict by column name."""
    found, _ = await _run(db, sql, params)
    return found


async def first(db: Connection, sql: str, **params: Any) -> dict[str, Any] | None:
    found, _ = await _run(db, sql, params)
    return found[0] if found else None


async def scalar(db: Connection, sql: str, **params: Any) -> Any:
    """The first column of the first row, or None when there is none."""
    found, _ = await _run(db, sql, params)
    return next(iter(found[0].values())) if found else None


async def execute(db: Connection, sql: str, **params: Any) -> int:
    """Run a statement for its effect; how many rows it changed."""
    _, count = await _run(db, sql, params)
    return int(count)


async def execute_all(db: Connection, statements: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """Run statements in order for their effect: on SQLite in one hand-over to the connection's thread
    (a start storing its handler map made one per row, each a wait on that thread), on PostgreSQL one
    after another."""
    if isinstance(db, Database):
        bound = [_bound(sql, params, postgresql=False) for sql, params in statements]
        await db.run_sync(functools.partial(_sqlite_run_all, bound))
        return
    for sql, params in statements:
        await _run(db, sql, params)


class PostgresDatabase:
    """A psycopg connection on which a transaction holds off every other task's statements, as
    `mendbot.db.connection.Database` does on SQLite (so code written for one behaves the same on the
    other).

    A server restart or a dropped connection fails the statements under way (a storage fault that
    `mendbot.db.retry` retries); the next statement outside a transaction connects again.
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
    (SQLSTATE 55P03, which `mendbot.db.retry` retries within its bound), as `busy_timeout` on SQLite.
    """
    import psycopg

    from mendbot.db.migrate import upgrade_postgresql

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
