"""The bot's stored data as the replay starts from it, and what each side did to it.

A replay that rebuilds the bot's state by sending the recorded calls through the branch's own code proves
nothing about the data the failure met: a change that fixes only how new data is saved, leaving the stored
row that fails as it is, passes such a replay. So the replay of mendbot's own bot starts from a copy of the
live bot's stored data as it is now (`snapshot`): a database made at the installed schema's head holding
the live database's cog rows (`mendbot.db.cog_rows`, the store cogs keep their state in), and the JSON files
at the top of its data directory. Each side gets its own copy, where the live bot keeps it (the data
directory's own path), and writes to it as it runs. A bot mendbot is attached to gets a copy of the data
files its mendbot.yaml names (`bot.data_files`: its SQLite and JSON state) as they are in its live
checkout, written into each side's checkout before each start; what each side left there is read by
`mendbot.improve.proof.host_data` (every table's rows by key, every key of a JSON file's objects).

After both sides ran the same calls, `data_changes` compares them with the copy they started from: a
stored row or file that the branch deleted, or rewrote into another shape (its keys or the types of its
values changed: `{"amount": "12.50"}` made `{"cents": 1250}`), where the base left it as it was, is a
**data change** — the failure made to vanish by changing the data it met, which the proof shows and never
proves. A value that only changed (a balance paid into) is no data change. This reads files the code under
proof wrote, so it can only take a proof away (a change written to hide its writes brings the proof back to
what the replay alone shows), and it reads them as hostile data: a private copy of the database, with no
trusted schema, one table of it read (for a bot mendbot is attached to, bounded as `host_data` says). A
file made unreadable (not SQLite or JSON any more) is a data change too; a side whose state could not be
read at all (its bot did not end when asked, so nothing it wrote came back) is one when it is the branch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mendbot.db import core
from mendbot.db.core import Connection
from mendbot.improve.proof.host_data import ReadInPart, State, Unreadable, read_files

__all__ = [
    "DATABASE",
    "BotData",
    "State",
    "Unreadable",
    "data_changes",
    "read_state",
    "snapshot",
    "unreadable",
]

DATABASE = "mendbot.db"
_MAX_ROWS = 5000
_MAX_FILE_BYTES = 1_000_000
_ROWS = 'SELECT table_name, "key", value, written_by, writer, written_at FROM cog_rows LIMIT :limit'
_INSERT = (
    'INSERT INTO cog_rows (table_name, "key", value, written_by, writer, written_at) '
    "VALUES (?, ?, ?, ?, ?, ?)"
)

_MAX_DEPTH = 20  # a value's shape is followed this deep


@dataclass
class BotData:
    """One side's copy of the bot's data: the snapshot it starts from, where the live bot keeps it (the path
    the copy is mounted at; None for a bot mendbot is attached to, whose `files` are written into its
    checkout), and — once the side has run — the state it left (`after`), or why it could not be read
    (`unread`)."""

    snapshot: Path
    inside: str | None
    after: State | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    unread: str | None = None

    def state(self, root: Path) -> State:
        """The stored data under `root` (the snapshot, or what a side left) as this bot keeps it."""
        return read_state(root) if self.inside is not None else read_files(root, self.files)


async def snapshot(db: Connection, data_dir: Path, into: Path) -> None:
    """The live bot's stored data copied into `into`: its cog rows in a database at the installed
    schema's head (`DATABASE`), and the JSON files at the top of `data_dir`."""
    from mendbot.db.connection import open_database

    rows = await core.rows(db, _ROWS, limit=_MAX_ROWS)
    copy = await open_database(into / DATABASE)  # the folder is made with it
    try:
        await copy.executemany(
            _INSERT,
            [
                (r["table_name"], r["key"], r["value"], r["written_by"], r["writer"], r["written_at"])
                for r in rows
            ],
        )
    finally:
        await copy.close()
    await asyncio.to_thread(_copy_files, data_dir, into)


def _copy_files(data_dir: Path, into: Path) -> None:
    for found in sorted(data_dir.glob("*.json")) if data_dir.is_dir() else []:
        if found.is_file() and not found.is_symlink() and found.stat().st_size <= _MAX_FILE_BYTES:
            shutil.copyfile(found, into / found.name)


def read_state(root: Path) -> State:
    """The stored rows and JSON files of a data directory (hostile: read defensively, never trusted)."""
    state: State = {}
    database = root / DATABASE
    if database.is_file() and not database.is_symlink():
        with contextlib.suppress(sqlite3.Error, ValueError):
            state.update(_rows(database))
    for found in sorted(root.glob("*.json")):
        if not found.is_file() or found.is_symlink() or found.stat().st_size > _MAX_FILE_BYTES:
            continue
        try:
            state[found.name] = json.loads(found.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            state[found.name] = Unreadable("not a JSON file")
    return state


def _rows(database: Path) -> State:
    """The cog rows of a database the bot under proof wrote: read from a private copy of it and of its
    write-ahead log (the bot may have stopped before moving its last writes into the file)."""
    with tempfile.TemporaryDirectory(prefix="mendbot-data-read-") as scratch:
        for suffix in ("", "-wal"):
            source = Path(f"{database}{suffix}")
            if source.is_file() and not source.is_symlink():
                shutil.copyfile(source, Path(scratch) / f"{DATABASE}{suffix}")
        return _read_rows(Path(scratch) / DATABASE)


def _read_rows(database: Path) -> State:
    connection = sqlite3.connect(database)
    try:
        connection.execute("PRAGMA trusted_schema = OFF")
        connection.execute("PRAGMA cell_size_check = ON")
        kind = connection.execute("SELECT type FROM sqlite_master WHERE name = 'cog_rows'").fetchone()
        if kind is None or kind[0] != "table":
            return {}
        found: State = {}
        query = 'SELECT table_name, "key", value FROM cog_rows LIMIT ?'
        for table, key, value in connection.execute(query, (_MAX_ROWS,)):
            try:
                found[f"cog_rows {table}/{key}"] = json.loads(value)
            except (TypeError, ValueError):
                found[f"cog_rows {table}/{key}"] = "<unreadable>"
        return found
    finally:
        connection.close()


def _shape(value: Any, depth: int = 0) -> Any:
    """A value's shape: its keys and the types of its leaves (a changed number keeps its shape)."""
    if depth > _MAX_DEPTH:
        return "deeper"
    if isinstance(value, dict):
        return {str(key): _shape(inner, depth + 1) for key, inner in value.items()}
    if isinstance(value, list):
        return ["list", sorted({json.dumps(_shape(inner, depth + 1), sort_keys=True) for inner in value})]
    if isinstance(value, Unreadable):
        return f"unreadable: {value}"
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def data_changes(before: State, base: State | None, branch: State | None) -> list[str]:
    """What the branch did to the data both sides started from that the base did not: rows and files it
    deleted, rewrote into another shape, or left unreadable. [] when either side's state is unknown. A row
    missing from a file the branch's state was read only in part of may lie past the bound: not counted."""
    if base is None or branch is None:
        return []
    cut = [value.name for value in branch.values() if isinstance(value, ReadInPart)]
    changes = []
    for where, value in before.items():
        if isinstance(value, ReadInPart):
            continue
        if where not in branch and where in base:
            if not any(where.startswith(f"{name} ") for name in cut):
                changes.append(f"deletes {where}")
        elif (
            where in branch
            and where in base
            and _shape(branch[where]) != _shape(value)
            and _shape(base[where]) == _shape(value)
        ):
            found = branch[where]
            changes.append(
                f"leaves {where} unreadable ({found})"
                if isinstance(found, Unreadable)
                else f"rewrites {where} into another shape"
            )
    return changes


def unreadable(before: State) -> dict[str, str]:
    """The data files of `before` that could not be read, and why (compared by whether they are there)."""
    return {where: str(value) for where, value in before.items() if isinstance(value, Unreadable)}
