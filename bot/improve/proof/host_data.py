"""What the data files of a bot mendbot is attached to hold, read as the proof compares them.

A bot someone else wrote keeps its state in files of its checkout (mendbot.yaml's `bot.data_files`): a
SQLite database, a JSON file. Each side of its replay starts from a copy of them as they are on the live
bot (`mendbot.trust.host_start.snapshot_data`); once both sides ran the same calls, `read_files` says
what each left, as `mendbot.improve.proof.bot_data.data_changes` compares it:

- a **SQLite file**: every table's rows by primary key (the rowid when it has none), each row's shape —
  its column names and the type of each value (a text that holds a JSON object or array, by that JSON's
  shape: `{"amount": "12.50"}` made `{"cents": 1250}` is another shape though both are text);
- a **JSON file**: an entry for every key of its objects, down to `_JSON_DEPTH` levels, each with its
  value's shape (the keys and the types of its leaves; a list, the shapes of its items).

The files were written by the code under proof: read as hostile data. A database is read from a private
copy (with its write-ahead log, whose last writes the bot may not have moved into the file, or the
journal that undoes a transaction it did not finish), with its
schema untrusted (`trusted_schema` off, no statement of it run), bounded work, and at most `_MAX_TABLES`
tables, `_MAX_COLUMNS` columns of each, `_MAX_ROWS` rows and `_MAX_BYTES` bytes of values read; a JSON
file of at most `_MAX_BYTES`. What is past a bound is left unread, and the file is marked as read in part
(a row missing from it is then not called deleted). A file that is neither a SQLite nor a JSON file, or
too large to read, is said to be so (`Unreadable`), never a crash.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ReadInPart", "State", "Unreadable", "read_files"]

# A stored row or file by where it is ("data/bank.db accounts/7", "data/brews.json 7/cups") → its value.
State = dict[str, Any]

_MAX_ROWS = 5000  # rows and JSON entries read, in all (bot_data's bound on cog rows)
_MAX_BYTES = 1_000_000  # of a JSON file; of the keys and JSON texts read from a database
_MAX_DATABASE_BYTES = 64 * 1024 * 1024  # a database (with its log) larger than this is not copied to be read
_MAX_TABLES = 100
_MAX_COLUMNS = 100
_MAX_KEY_CHARS = 100  # of each primary key value
_MAX_JSON_TEXT = 4096  # a text value longer than this is a text, whatever it holds
_JSON_DEPTH = 4  # a JSON file's objects split into entries down to this many keys
_STEPS = 50_000  # the database's work, in thousands of virtual machine instructions
_SQLITE_HEADER = b"SQLite format 3\x00"
# A sample of each SQLite type, so that a row's shape (`bot_data._shape`) says the type of each value.
_SAMPLE: dict[str, Any] = {"integer": 0, "real": 0.0, "text": "", "blob": b"", "null": None}
# A key's value (a text or blob cut short), and a value's type with its text when that may be JSON.
_KEY = "CASE WHEN typeof({c}) IN ('text', 'blob') THEN substr({c}, 1, {n}) ELSE {c} END"
_VALUE = (
    "typeof({c}), CASE WHEN typeof({c}) = 'text' AND length(CAST({c} AS BLOB)) <= {n}"
    " AND substr(ltrim({c}), 1, 1) IN ('{{', '[') THEN {c} END"
)


class Unreadable(str):
    """A data file that cannot be read as SQLite or JSON, and why ("not a SQLite or JSON file")."""


@dataclass(frozen=True)
class ReadInPart:
    """The value of the entry `"{name} …"`: past a bound, some rows or entries of the file `name` were
    not read."""

    name: str


class _Budget:
    """What is left to read of the bounds shared by every file of one read."""

    def __init__(self) -> None:
        self.rows = _MAX_ROWS

    def take(self) -> bool:
        self.rows -= 1
        return self.rows >= 0


def read_files(root: Path, names: list[str] | tuple[str, ...]) -> State:
    """The state of each data file `names` (repository paths) under `root`: a SQLite file's rows, a JSON
    file's entries, and an entry for the file itself (its kind, or why it cannot be read). A file that
    is not there has no entry."""
    state: State = {}
    budget = _Budget()
    for name in names:
        path = root / name
        if not path.resolve().is_relative_to(root.resolve()) or not (path.is_file() or path.is_symlink()):
            continue
        if path.is_symlink() or not path.is_file():
            state[name] = Unreadable("a link, not a file")
            continue
        try:
            with path.open("rb") as file:
                head = file.read(len(_SQLITE_HEADER))
        except OSError:
            state[name] = Unreadable("cannot be opened")
            continue
        if head == _SQLITE_HEADER:
            state.update(_database(name, path, budget))
        else:
            state.update(_json_file(name, path, budget))
    return state


def _database(name: str, path: Path, budget: _Budget) -> State:
    """A SQLite file's rows, read from a private copy of it and of its write-ahead log."""
    logs = {suffix: Path(f"{path}{suffix}") for suffix in ("-wal", "-journal")}
    logs = {suffix: log for suffix, log in logs.items() if log.is_file() and not log.is_symlink()}
    if path.stat().st_size + sum(log.stat().st_size for log in logs.values()) > _MAX_DATABASE_BYTES:
        return {name: Unreadable(f"larger than {_MAX_DATABASE_BYTES // 2**20} MB: not read")}
    with tempfile.TemporaryDirectory(prefix="mendbot-data-read-") as scratch:
        copy = Path(scratch) / "read.db"
        shutil.copyfile(path, copy)
        for suffix, log in logs.items():  # its last writes, or what undoes one it did not finish
            shutil.copyfile(log, Path(f"{copy}{suffix}"))
        try:
            return _rows(name, copy, budget)
        except (sqlite3.Error, ValueError, OverflowError, MemoryError):
            return {name: Unreadable("not a readable SQLite file")}


def _rows(name: str, database: Path, budget: _Budget) -> State:
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("PRAGMA trusted_schema = OFF")
        connection.execute("PRAGMA cell_size_check = ON")
        steps = [0]

        def work() -> int:
            steps[0] += 1
            return 1 if steps[0] > _STEPS else 0

        connection.set_progress_handler(work, 1000)
        tables = [
            str(row[0])
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY name LIMIT ?",
                (_MAX_TABLES + 1,),
            )
        ]
        state: State = {name: {"sqlite": True}}
        whole = len(tables) <= _MAX_TABLES
        spent = 0
        for table in tables[:_MAX_TABLES]:
            try:
                rows, read, complete = _table(connection, table, budget, _MAX_BYTES - spent)
            except sqlite3.Error as exc:
                if "interrupted" in str(exc):
                    whole = False
                    break
                continue  # a table that cannot be read as one (a virtual table of a module not here)
            spent += read
            whole = whole and complete
            state.update({f"{name} {table}/{key}": shape for key, shape in rows.items()})
            if not complete:
                break
        if not whole:
            state[f"{name} …"] = ReadInPart(name)
        return state
    finally:
        connection.close()


def _table(
    connection: sqlite3.Connection, table: str, budget: _Budget, bytes_left: int
) -> tuple[dict[str, dict[str, Any]], int, bool]:
    """One table's rows by key, each a sample of its values' types; the bytes read, and whether it was
    read whole."""
    info = connection.execute("SELECT name, pk FROM pragma_table_info(?)", (table,)).fetchall()
    columns = [str(column) for column, _ in info][:_MAX_COLUMNS]
    keys = [str(column) for column, pk in sorted(info, key=lambda row: row[1]) if pk] or ["rowid"]
    if not columns:
        return {}, 0, True
    key_values = ", ".join(_KEY.format(c=_quoted(key), n=_MAX_KEY_CHARS) for key in keys)
    values = ", ".join(_VALUE.format(c=_quoted(column), n=_MAX_JSON_TEXT) for column in columns)
    order = ", ".join(_quoted(key) for key in keys)
    query = f"SELECT {key_values}, {values} FROM {_quoted(table)} ORDER BY {order}"
    found: dict[str, dict[str, Any]] = {}
    spent = 0
    for row in connection.execute(query):
        if not budget.take():
            return found, spent, False
        key = ",".join(_key_text(value) for value in row[: len(keys)])
        sample: dict[str, Any] = {}
        for index, column in enumerate(columns):
            kind, text = row[len(keys) + 2 * index : len(keys) + 2 * index + 2]
            sample[column] = _SAMPLE.get(str(kind), "")
            if isinstance(text, str):
                spent += len(text)
                with contextlib.suppress(ValueError, RecursionError):
                    sample[column] = json.loads(text)
        spent += len(key)
        if spent > bytes_left:
            return found, spent, False
        found[key] = sample
    return found, spent, True


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _key_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _json_file(name: str, path: Path, budget: _Budget) -> State:
    """A JSON file's entries: the file itself, then every key of its objects down to `_JSON_DEPTH`."""
    if path.stat().st_size > _MAX_BYTES:
        return {name: Unreadable(f"larger than {_MAX_BYTES // 1000} kB: not read")}
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return {name: Unreadable("not a SQLite or JSON file")}
    state: State = {name: {"json": _container(value)}}
    whole = _entries(name, value, (), state, budget)
    if not whole:
        state[f"{name} …"] = ReadInPart(name)
    return state


def _entries(name: str, value: Any, path: tuple[str, ...], state: State, budget: _Budget) -> bool:
    """The entries of `value`'s keys under `path` into `state`; False when the bound cut it short."""
    if not isinstance(value, dict):
        return True
    for key, inner in value.items():
        if not budget.take():
            return False
        where = (*path, str(key))
        if isinstance(inner, dict) and len(where) < _JSON_DEPTH:
            state[f"{name} {'/'.join(where)}"] = {}
            if not _entries(name, inner, where, state, budget):
                return False
        else:
            state[f"{name} {'/'.join(where)}"] = inner
    return True


def _container(value: Any) -> Any:
    """What the file holds at its top: an object without its keys (each is an entry of its own), or the
    value itself (a list: the shapes of its items)."""
    return {} if isinstance(value, dict) else value
