"""The SQLite connection: WAL mode, foreign keys, numbered migrations applied at start-up.

Migrations are `bot/db/migrations/NNNN_name.sql`. All pending ones run in one transaction and
`PRAGMA user_version` records the last applied number, so a failed migration leaves the
database exactly as it was.
"""

from __future__ import annotations

import re
import sqlite3
from importlib import resources
from pathlib import Path

import aiosqlite

__all__ = ["MigrationError", "migrations", "open_database"]

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(Exception):
    """A migration could not be applied; the database was left unchanged."""


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
    db = await aiosqlite.connect(path, isolation_level=None)
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
