"""The SQLite connection: WAL mode, foreign keys, numbered migrations applied at start-up.

Migrations are `bot/db/migrations/NNNN_name.sql`. All pending ones run in one transaction and
`PRAGMA user_version` records the last applied number, so a failed migration leaves the
database exactly as it was.

Services share one connection, and SQLite has one transaction per connection: a statement another
coroutine sends between a `BEGIN` and its `COMMIT` would join that transaction (and vanish with it
on a rollback). `transaction()` therefore makes the connection its task's alone until it ends:
every other task's statement waits for the `COMMIT` or `ROLLBACK`.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

__all__ = ["Database", "MigrationError", "migrations", "open_database", "transaction"]

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(Exception):
    """A migration could not be applied; the database was left unchanged."""


class Database(aiosqlite.Connection):
    """An aiosqlite connection on which a transaction holds off every other task's statements."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._transaction_lock = asyncio.Lock()
        self._transaction_owner: asyncio.Task[Any] | None = None

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # Every call (statements, cursor fetches, close) funnels through here. The check and the
        # queueing that follows happen without an await in between, and the worker thread runs
        # calls in queue order: nothing checked before a BEGIN can run after it.
        while self._transaction_owner is not None and self._transaction_owner is not asyncio.current_task():
            async with self._transaction_lock:
                pass
        return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """See `transaction()`."""
        task = asyncio.current_task()
        if self._transaction_owner is task:
            raise RuntimeError("a transaction is already open in this task")
        async with self._transaction_lock:
            self._transaction_owner = task
            try:
                await self.execute("BEGIN")
                try:
                    yield
                    await self.execute("COMMIT")
                except BaseException:
                    # SQLite may already have rolled back (SQLITE_FULL does): a second ROLLBACK
                    # would raise "no transaction is active" and hide the real error.
                    if self.in_transaction:
                        await self.execute("ROLLBACK")
                    raise
            finally:
                self._transaction_owner = None


def transaction(db: aiosqlite.Connection) -> AbstractAsyncContextManager[None]:
    """`BEGIN` … `COMMIT` on `db`, rolled back on any exception, with no other task's statement in it."""
    if not isinstance(db, Database):
        raise TypeError("transactions need a connection from open_database()")
    return db.transaction()


def migrations() -> list[tuple[int, str, str]]:
    """(number, file name, SQL) for every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("bot.db").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [number for number, _, _ in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise MigrationError(f"migrations are not numbered 1..N without gaps: {numbers}")
    return found


async def open_database(path: Path | str, *, busy_timeout_ms: int = 5000) -> aiosqlite.Connection:
    """Open (creating if needed) the database and bring its schema up to date.

    `busy_timeout_ms` is how long a statement waits for another connection's write lock before
    failing with "database is locked" (which `bot.db.retry` then retries within its bound).
    """
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = await Database(lambda: sqlite3.connect(path, isolation_level=None))
    db.row_factory = sqlite3.Row
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=NORMAL")
    await db.execute("PRAGMA foreign_keys=ON")
    await db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    try:
        await _migrate(db)
    except BaseException:
        await db.close()
        raise
    return db


async def _migrate(db: aiosqlite.Connection) -> None:
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    current = int(row[0]) if row else 0
    pending = [(n, name, sql) for n, name, sql in migrations() if n > current]
    if not pending:
        return
    script = "\n".join(f"-- {name}\n{sql}" for _, name, sql in pending)
    last = pending[-1][0]
    try:
        await db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {last};\nCOMMIT;")
    except sqlite3.Error as exc:
        if db.in_transaction:
            await db.execute("ROLLBACK")
        names = ", ".join(name for _, name, _ in pending)
        raise MigrationError(f"applying {names} failed: {exc}") from exc
