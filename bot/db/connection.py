"""The SQLite connection: WAL mode, foreign keys, the schema brought to the head at start-up.

The schema and its history live in `bot/db/schema.py` and `bot/db/history/` (see
`mendbot.db.migrate`): a pending upgrade runs in one transaction, so a failed one leaves the database
exactly as it was, and a database already at the head costs one small query.

Services share one connection, and SQLite has one transaction per connection: a statement another
coroutine sends between a `BEGIN` and its `COMMIT` would join that transaction (and vanish with it
on a rollback). `transaction()` therefore makes the connection its task's alone until it ends:
every other task's statement waits for the `COMMIT` or `ROLLBACK`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from mendbot.db.migrate import MigrationError, upgrade_sqlite

__all__ = ["Database", "MigrationError", "open_database", "transaction"]

_T = TypeVar("_T")


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

    async def run_sync(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """`fn(connection)` on the connection's own thread, queued like any statement."""
        result: _T = await self._execute(fn, self._conn)
        return result


def transaction(db: Any) -> AbstractAsyncContextManager[None]:
    """`BEGIN` … `COMMIT` on `db`, rolled back on any exception, with no other task's statement in it.

    `db` is a connection from `open_database()` (SQLite) or `mendbot.db.core.open_postgresql()`.
    """
    begin = getattr(db, "transaction", None)
    if begin is None:
        raise TypeError("transactions need a connection from open_database() or open_postgresql()")
    result: AbstractAsyncContextManager[None] = begin()
    return result


async def open_database(path: Path | str, *, busy_timeout_ms: int = 5000) -> aiosqlite.Connection:
    """Open (creating if needed) the database and bring its schema up to date.

    `busy_timeout_ms` is how long a statement waits for another connection's write lock before
    failing with "database is locked" (which `mendbot.db.retry` then retries within its bound).
    """
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = Database(lambda: sqlite3.connect(path, isolation_level=None))
    await db
    # One script, so no statement is left open: SQLAlchemy registers SQL functions on this
    # connection when it migrates it, which SQLite refuses while a statement is active.
    await db.executescript(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
        f" PRAGMA busy_timeout={int(busy_timeout_ms)};"
    )
    try:
        await db.run_sync(upgrade_sqlite)
    except BaseException:
        await db.close()
        raise
    # After the upgrade: SQLAlchemy, which runs it on this connection, expects plain tuples.
    db.row_factory = sqlite3.Row
    return db
