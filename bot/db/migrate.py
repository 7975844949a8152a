"""Bringing a database to the head of the migration history, on SQLite or PostgreSQL.

The history is Alembic's (`bot/db/history/`), run without `alembic.ini` on a connection this
module opens a transaction on, so an upgrade commits whole or not at all. Three kinds of SQLite
file arrive here:

- an empty one gets a copy of a database at the head, made once per process from the history's
  snapshot (`history/fresh.sql`: the head's schema as SQL, dumped from the history by `python -m
  mendbot.db.history`; ~3 ms) while the snapshot carries the digest of the history's files as
  they are, else by running the history (~0.25 s with Alembic's import: paid by every smoke load and
  replay, which start on an empty file); a stale snapshot is slower, never wrong;
- one made before the history moved to Alembic (`PRAGMA user_version` 1..13, no
  `alembic_version`) gets its remaining hand-written SQL migrations (`bot/db/migrations/`), is
  stamped at the baseline revision, which is exactly the schema those left, and then goes on
  through the history — all in the same transaction;
- one at the head is left alone, told cheaply: its `alembic_version` row against the revision
  no other revision file revises (read from the files' text), without loading SQLAlchemy or
  Alembic at all.

A PostgreSQL database at the head is told the same way, over one psycopg connection (~3 ms,
where loading Alembic and its environment to find nothing to do costs ~0.12 s of CPU in every
process that opens the database: each bot, worker and writer on that engine).
"""

from __future__ import annotations

import functools
import hashlib
import re
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

if TYPE_CHECKING:
    from importlib.abc import Traversable

    from sqlalchemy.engine import Connection

__all__ = [
    "BASELINE",
    "HISTORY",
    "INCREMENTAL_VACUUM",
    "SNAPSHOT",
    "MigrationError",
    "current_snapshot",
    "dump_snapshot",
    "head_revision",
    "history_digest",
    "legacy_migrations",
    "postgresql_revision",
    "sqlite_revision",
    "upgrade_postgresql",
    "upgrade_sqlite",
]

BASELINE = "0013"  # the revision that stands for the hand-written SQL migrations 0001..0013
_HERE = Path(__file__).parent  # a directory on disk: importlib.resources cost a start ~2 ms
HISTORY: Traversable = _HERE / "history"

SNAPSHOT = "fresh.sql"  # in the history directory
# A new SQLite file frees the pages retention empties (`PRAGMA incremental_vacuum`, bot/db/action_writes.py)
# instead of keeping them for later rows; the mode can only be chosen before the first table.
INCREMENTAL_VACUUM = "PRAGMA auto_vacuum=INCREMENTAL"
_SNAPSHOT_HEADER = "-- mendbot schema at the head of the history with sha256 "
_LEGACY_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_REVISION_NAME = re.compile(r"^v(\d{4})_[a-z0-9_]+\.py$")
_REVISION_LINE = re.compile(r"^revision(?:: str)? = \"([^\"]+)\"$", re.MULTILINE)
_DOWN_REVISION_LINE = re.compile(r"^down_revision(?:: str \| None)? = \"([^\"]+)\"$", re.MULTILINE)


class MigrationError(Exception):
    """A migration could not be applied; the database was left unchanged."""


def legacy_migrations() -> list[tuple[int, str, str]]:
    """(number, file name, SQL) for every hand-written SQL migration, in order."""
    found = []
    for entry in (_HERE / "migrations").iterdir():
        match = _LEGACY_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [number for number, _, _ in found]
    if numbers != list(range(1, len(numbers) + 1)) or numbers[-1:] != [int(BASELINE)]:
        raise MigrationError(f"the SQL migrations are not numbered 1..{BASELINE} without gaps: {numbers}")
    return found


def head_revision(history: Traversable = HISTORY) -> str:
    """The newest revision, read from the revision files' own `revision`/`down_revision` lines
    (a test holds Alembic to agree): the one no other file revises. A revision id need not be the
    number in its file's name (`v0015_topic.py` may be revision "v0015_topic")."""
    revisions: dict[str, str | None] = {}
    for entry in history.joinpath("versions").iterdir():
        if not _REVISION_NAME.match(entry.name):
            continue
        text = entry.read_text(encoding="utf-8")
        revision = _REVISION_LINE.search(text)
        down = _DOWN_REVISION_LINE.search(text)
        if revision is not None:
            revisions[revision.group(1)] = down.group(1) if down is not None else None
    heads = sorted(set(revisions) - set(revisions.values()))
    if not heads:
        raise MigrationError(f"no revisions in {history}")
    return heads[-1]


def sqlite_revision(conn: sqlite3.Connection) -> str | None:
    """The Alembic revision a SQLite database is at, or None before it has one."""
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return None if row is None else str(row[0])


def upgrade_sqlite(conn: sqlite3.Connection, *, history: Traversable = HISTORY) -> None:
    """Bring the database on `conn` (autocommit mode: `isolation_level=None`) to the head.

    Blocking: call it on the thread that owns `conn`. On failure nothing is changed and
    `MigrationError` says which step failed.
    """
    revision = sqlite_revision(conn)
    if revision == head_revision(history):
        return
    # Only a file without a revision can be from before Alembic; one with a revision goes on from
    # it (or fails, unchanged, on a revision this code does not know: a newer bot's file).
    legacy_version = int(conn.execute("PRAGMA user_version").fetchone()[0]) if revision is None else 0
    try:
        if revision is None and legacy_version == 0 and _is_empty(conn):
            _copy_fresh_image(conn, _fresh_sqlite_image(str(history)))
        else:
            if _is_empty(conn):  # its header is written already (WAL mode): a VACUUM of nothing applies it
                conn.execute(INCREMENTAL_VACUUM)
                conn.execute("VACUUM")
            _upgrade_sqlite(conn, legacy_version, history)
    except MigrationError:
        raise
    except Exception as exc:
        raise MigrationError(f"upgrading the database to {head_revision(history)} failed: {exc}") from exc


def postgresql_revision(url: str) -> str | None:
    """The Alembic revision the PostgreSQL database at `url` is at, or None before it has one."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except psycopg.errors.UndefinedTable:
            return None
    return None if row is None else str(row[0])


def upgrade_postgresql(url: str, *, history: Traversable = HISTORY) -> None:
    """Bring the PostgreSQL database at `url` to the head, in one transaction.

    Processes sharing the database start together: each upgrade first takes a transaction-level
    advisory lock, so one migrates and the others then find the head (two creating `alembic_version`
    at once would fail one of them). A database already at the head is only read: an upgrade
    commits whole, so a row at the head means the schema is there."""
    try:
        if postgresql_revision(url) == head_revision(history):
            return
    except Exception as exc:
        # libpq quotes what it cannot parse, a password with a stray `%` included.
        reason = _without_password(str(exc), url)
        raise MigrationError(f"reading the revision of the PostgreSQL database failed: {reason}") from None
    from sqlalchemy import create_engine, text

    engine = create_engine(_with_driver(url))
    try:
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            _run_history(connection, history, stamp=None)
    except Exception as exc:
        raise MigrationError(f"upgrading {engine.url.render_as_string()} failed: {exc}") from exc
    finally:
        engine.dispose()


def _without_password(text: str, url: str) -> str:
    """`text` with each password of `url` (as written, and decoded) replaced by `***`."""
    # Here, not at the top: the action writer imports this module and never needs the settings' models.
    from mendbot.kernel.sections import url_passwords

    for password in url_passwords(url):
        for form in (password, unquote(password)):
            text = text.replace(form, "***")
    return text


def _with_driver(url: str) -> str:
    """`postgresql://…` means psycopg 3 here (SQLAlchemy's default would be psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _upgrade_sqlite(conn: sqlite3.Connection, legacy_version: int, history: Traversable) -> None:
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import StaticPool

    # The engine borrows `conn` (StaticPool, never disposed: the caller keeps and closes it).
    # pysqlite leaves transactions to us in autocommit mode, so BEGIN is ours and DDL is inside it.
    engine = create_engine("sqlite://", creator=lambda: conn, poolclass=StaticPool)

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            stamp = None
            if legacy_version:
                _apply_legacy(conn, legacy_version)
                stamp = BASELINE
            _run_history(connection, history, stamp=stamp)
            transaction.commit()
        except BaseException:
            # SQLite may have ended the transaction itself (SQLITE_FULL does).
            if conn.in_transaction:
                transaction.rollback()
            raise


def _is_empty(conn: sqlite3.Connection) -> bool:
    return int(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]) == 0


@functools.cache
def _fresh_sqlite_image(history: str) -> bytes:
    """An empty database brought to the head by the history at `history`, serialized."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        conn.execute(INCREMENTAL_VACUUM)  # before any table: the copy made from it keeps the mode
        snapshot = current_snapshot(Path(history))
        if snapshot is not None:
            conn.executescript(snapshot)  # one transaction: the dump's BEGIN … COMMIT
        else:
            _upgrade_sqlite(conn, 0, Path(history))
        return conn.serialize()
    finally:
        conn.close()


def history_digest(history: Traversable = HISTORY) -> str:
    """sha256 of what the history runs: env.py and every file Alembic loads from versions/, by name."""
    versions = sorted(
        (entry for entry in history.joinpath("versions").iterdir() if entry.name.endswith(".py")),
        key=lambda entry: entry.name,
    )
    digest = hashlib.sha256()
    for entry in (history.joinpath("env.py"), *versions):
        digest.update(entry.name.encode() + b"\0" + entry.read_bytes() + b"\0")
    return digest.hexdigest()


def current_snapshot(history: Traversable = HISTORY) -> str | None:
    """The snapshot's SQL if it was dumped from the history exactly as its files are now, else None."""
    entry = history.joinpath(SNAPSHOT)
    try:
        text = entry.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    first = text.split("\n", 1)[0]
    return text if first == _SNAPSHOT_HEADER + history_digest(history) else None


def dump_snapshot(history: Traversable = HISTORY) -> str:
    """The snapshot of `history`: the SQL of an empty database the history brought to the head."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        _upgrade_sqlite(conn, 0, Path(str(history)))
        # Each object's own CREATE, in the order they were made; not the tables SQLite makes itself
        # (sqlite_sequence, a full-text index's shadow tables), which their CREATE makes again.
        made_by_sqlite = {
            name for (name,) in conn.execute("SELECT name FROM pragma_table_list WHERE type = 'shadow'")
        }
        statements = [
            f"{sql};"
            for name, sql in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
            )
            if name not in made_by_sqlite and not name.startswith("sqlite_")
        ]
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        (user_version,) = conn.execute("PRAGMA user_version").fetchone()
    finally:
        conn.close()
    body = "\n".join(
        [
            *statements,
            f"INSERT INTO alembic_version (version_num) VALUES ('{revision}');",
            f"PRAGMA user_version = {int(user_version)};",
        ]
    )
    return (
        f"{_SNAPSHOT_HEADER}{history_digest(history)}\n"
        "-- Written by `python -m mendbot.db.history`; used only while that digest matches.\n"
        f"BEGIN;\n{body}\nCOMMIT;\n"
    )


def _copy_fresh_image(conn: sqlite3.Connection, image: bytes) -> None:
    # One backup step copies every page in one write transaction: all of it lands or none.
    source = sqlite3.connect(":memory:")
    try:
        source.deserialize(image)
        source.backup(conn)
    finally:
        source.close()


def _apply_legacy(conn: sqlite3.Connection, version: int) -> None:
    pending = [(name, sql) for number, name, sql in legacy_migrations() if number > version]
    for name, sql in pending:
        try:
            for statement in _statements(sql):
                conn.execute(statement)
        except sqlite3.Error as exc:
            raise MigrationError(f"applying {name} failed: {exc}") from exc
    conn.execute(f"PRAGMA user_version = {int(BASELINE)}")


def _statements(script: str) -> list[str]:
    """The statements of a SQL script (triggers hold `;` inside them; SQLite knows where they end).

    One at a time because `executescript` would commit the transaction they belong to.
    """
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip() and not pending.strip().startswith("--"):
        statements.append(pending.strip())
    return [s for s in statements if s.rstrip(";").strip()]


# The advisory lock key of PostgreSQL migrations (a fixed signed 64-bit number: "mendbot:migrate").
_MIGRATION_LOCK = int.from_bytes(b"mendbot:migrate"[:8], "big", signed=True)

# Alembic runs a migration through proxies it installs in its own modules' globals: two runs at
# once in one process (threads: the bot's connection and the action writer's, as `to_thread`)
# remove each other's. Each run holds this lock; it is process-wide because the proxies are.
_ALEMBIC = threading.Lock()


def _run_history(connection: Connection, history: Traversable, *, stamp: str | None) -> None:
    """Stamp (an adopted file) at `stamp`, then upgrade to the head, inside the caller's transaction."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(history))
    config.attributes["connection"] = connection
    with _ALEMBIC:
        if stamp is not None:
            command.stamp(config, stamp)
        command.upgrade(config, "head")
