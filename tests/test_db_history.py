"""The schema's history: both engines reach the same head, old SQLite files are adopted whole, a
failing upgrade changes nothing, and PostgreSQL's own parts (partitions, tsvector search) work."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from mendbot.db.connection import open_database
from mendbot.db.migrate import (
    BASELINE,
    HISTORY,
    SNAPSHOT,
    MigrationError,
    _upgrade_sqlite,
    current_snapshot,
    head_revision,
    legacy_migrations,
    upgrade_postgresql,
    upgrade_sqlite,
)
from mendbot.db.schema import metadata

pytestmark = pytest.mark.engines

DAY = 1_767_225_600.0  # 2026-01-01 00:00 UTC


# --- helpers -------------------------------------------------------------------------------------


def _legacy_sqlite(path: Path, version: int) -> None:
    """A database built the way the bot built it before Alembic: SQL migrations 1..version."""
    script = "\n".join(sql for number, _, sql in legacy_migrations() if number <= version)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
    conn.close()


@contextmanager
def _sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _normal(sql: str | None) -> str:
    return re.sub(r"\s+", " ", sql or "").strip()


def _affinity(declared: str) -> str:
    """SQLite's column affinity for a declared type (https://sqlite.org/datatype3.html §3.1)."""
    t = declared.upper()
    if "INT" in t:
        return "INTEGER"
    if any(word in t for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if not t or "BLOB" in t:
        return "BLOB"
    if any(word in t for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _checks(sql: str) -> list[str]:
    """Every CHECK expression in a CREATE TABLE statement, whitespace-normalised."""
    found = []
    for match in re.finditer(r"CHECK\s*\(", sql):
        depth, start = 1, match.end()
        for i in range(start, len(sql)):
            depth += {"(": 1, ")": -1}.get(sql[i], 0)
            if depth == 0:
                found.append(re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", _normal(sql[start:i]))))
                break
    return sorted(found)


def _sqlite_schema(conn: sqlite3.Connection) -> dict[str, Any]:
    """What a query can tell apart in a SQLite schema: columns (affinity, nullability, default,
    key), foreign keys, checks, indexes (columns, uniqueness, partial WHERE), views, triggers."""
    shape: dict[str, Any] = {}
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall()
    for kind, name, table, sql in rows:
        if table == "alembic_version" or (name.startswith("search_index_") and kind == "table"):
            continue  # the history's own bookkeeping; FTS5's shadow tables follow from search_index
        if kind == "table" and sql.startswith("CREATE VIRTUAL TABLE"):
            shape[f"virtual {name}"] = _normal(sql)
        elif kind == "table":
            columns = [
                # A key column's NOT NULL changes nothing for INTEGER keys (the rowid) and only
                # forbids what SQLite's old quirk allowed for TEXT keys (a NULL key).
                (c[1], _affinity(c[2]), bool(c[3]) or c[5] > 0, c[4], c[5])
                for c in conn.execute(f"PRAGMA table_xinfo({name})")
            ]
            foreign = sorted((f[3], f[2], f[4]) for f in conn.execute(f"PRAGMA foreign_key_list({name})"))
            shape[f"table {name}"] = (columns, foreign, _checks(sql))
        elif kind == "index":
            info = {i[1]: (i[2], i[3]) for i in conn.execute(f"PRAGMA index_list({table})")}
            columns = [c[2] for c in conn.execute(f"PRAGMA index_info({name})")]
            where = _normal(sql).partition(" WHERE ")[2] if sql else ""
            shape[f"index {name}"] = (table, columns, info[name], where)
        else:
            shape[f"{kind} {name}"] = _normal(sql)
    return shape


def _sqlite_master(path: Path) -> set[tuple[str, str, str]]:
    with _sqlite(path) as conn:
        return {
            (kind, name, _normal(sql))
            for kind, name, sql in conn.execute("SELECT type, name, sql FROM sqlite_master")
            if not name.startswith(("alembic_version", "sqlite_autoindex_alembic_version"))
        }


def _scalar(conn: sqlite3.Connection, sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    return None if row is None else row[0]


def _incident(summary: str, error_type: str, *, message_id: int | None = None) -> dict[str, Any]:
    return {
        "rule": "new_failure",
        "rules": "[]",
        "level": "error",
        "kind": "command:roll",
        "fingerprint": "f1",
        "state": "open",
        "summary": summary,
        "first_seen": DAY,
        "last_seen": DAY,
        "count": 1,
        "user_ids": "[]",
        "sample": json.dumps({"error_type": error_type, "error_message": "boom", "frames": ["a.py:1:f"]}),
        "updated_at": DAY,
        "message_id": message_id,
    }


def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> int:
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    cursor = conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(row.values()))
    return int(cursor.lastrowid or 0)


def _fill_legacy(conn: sqlite3.Connection) -> None:
    """Rows in the tables every version from 5 on has, written as that code wrote them."""
    _insert(conn, "incidents", _incident("dice rolls crash", "ZeroDivisionError", message_id=2**62))
    _insert(conn, "fingerprints", {"fingerprint": "f1", "kind": "command:roll", "error_type": "KeyError",
                                   "first_seen": DAY, "last_seen": DAY, "count": 1})  # fmt: skip
    _insert(conn, "actions", {"ts": DAY, "kind": "command:roll", "source": "command", "ok": 0,
                              "duration_ms": 1.5, "user_id": 2**60, "fingerprint": "f1"})  # fmt: skip
    run = _insert(conn, "runs", {"kind": "fix", "state": "queued", "requester_id": 2**61, "description": "d",
                                 "slug": "s", "created_at": DAY, "updated_at": DAY})  # fmt: skip
    _insert(conn, "run_events", {"run_id": run, "ts": DAY, "actor": "system", "event": "created",
                                 "state": "queued"})  # fmt: skip
    _insert(conn, "approvals", {"proposal_id": 1, "run_id": run, "user_id": 7, "sha": "abc",
                                "form": "approve", "via": "reaction", "created_at": DAY})  # fmt: skip


_NUMBER = r"^v?(\d{4}).*$"  # revision ids: "0014", then "v0015_topic"


def _copy_history(tmp_path: Path, broken_upgrade: str) -> Path:
    """The shipped history plus a revision after the head whose upgrade is `broken_upgrade`."""
    history = tmp_path / "history"
    shutil.copytree(Path(str(HISTORY)), history, ignore=shutil.ignore_patterns("__pycache__"))
    head = head_revision()
    newest = max(int(entry.name[1:5]) for entry in (history / "versions").glob("v[0-9][0-9][0-9][0-9]_*.py"))
    number = f"{newest + 1:04d}"
    (history / "versions" / f"v{number}_broken.py").write_text(
        f'"""Broken."""\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
        f'revision = "{number}"\ndown_revision = "{head}"\nbranch_labels = None\ndepends_on = None\n\n\n'
        f"def upgrade() -> None:\n{broken_upgrade}\n",
        encoding="utf-8",
    )
    return history


_BROKEN = '    op.create_table("half_done", sa.Column("x", sa.Integer))\n    op.execute("THIS IS NOT SQL")'


def _pg_engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def _broad(column_type: sa.types.TypeEngine[Any]) -> type:
    return column_type.python_type


# --- SQLite --------------------------------------------------------------------------------------


async def test_history_brings_an_empty_sqlite_file_to_the_head(tmp_path: Path) -> None:
    """A new SQLite file is stamped at the head and has every table of the metadata."""
    await (await open_database(tmp_path / "new.db")).close()
    with _sqlite(tmp_path / "new.db") as conn:
        assert _scalar(conn, "SELECT version_num FROM alembic_version") == head_revision()
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert set(metadata.tables) | {"search_index"} <= tables


async def test_a_fresh_sqlite_file_has_the_legacy_schema(tmp_path: Path) -> None:
    """A file made by the history has the tables, columns, keys, checks, indexes (partial ones
    too), views, FTS5 table and triggers that the SQL migrations 0001–0013 made, and then the
    revisions after the baseline made on it."""
    _legacy_sqlite(tmp_path / "legacy.db", 13)
    await (await open_database(tmp_path / "legacy.db")).close()  # the revisions after the baseline
    await (await open_database(tmp_path / "new.db")).close()
    with _sqlite(tmp_path / "legacy.db") as legacy, _sqlite(tmp_path / "new.db") as new:
        assert _sqlite_schema(new) == _sqlite_schema(legacy)
        assert _scalar(new, "PRAGMA user_version") == 13


@pytest.mark.parametrize("legacy", [True, False], ids=["adopted file", "new file"])
async def test_a_run_can_be_stored_as_rolled_back(tmp_path: Path, legacy: bool) -> None:
    """`rolled_back` is a state the runs table takes, in a file adopted from the SQL migrations (whose
    check is a column's) as in a new one; a state that is none is still refused."""
    if legacy:
        _legacy_sqlite(tmp_path / "m.db", 13)
    await (await open_database(tmp_path / "m.db")).close()
    insert = (
        "INSERT INTO runs (kind, state, requester_id, description, slug, created_at, updated_at) "
        "VALUES ('fix', ?, 1, 'd', 's', 0, 0)"
    )
    with _sqlite(tmp_path / "m.db") as conn:
        conn.execute(insert, ("rolled_back",))
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(insert, ("undone",))
        assert _scalar(conn, "PRAGMA integrity_check") == "ok"


@pytest.mark.parametrize("legacy", [True, False], ids=["adopted file", "new file"])
async def test_a_proof_can_be_stored_as_tested(tmp_path: Path, legacy: bool) -> None:
    """`tested` is a verdict the proofs table takes, in a file adopted from the SQL migrations as in a
    new one; a verdict that is none is still refused."""
    if legacy:
        _legacy_sqlite(tmp_path / "m.db", 13)
    await (await open_database(tmp_path / "m.db")).close()
    insert = (
        "INSERT INTO proofs (run_id, stage, sha, base_sha, verdict, reason, items, overhead_s, created_at) "
        "VALUES (1, 'verify', 'a', 'b', ?, 'r', '[]', 0, 0)"
    )
    with _sqlite(tmp_path / "m.db") as conn:
        conn.execute(insert, ("tested",))
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(insert, ("likely",))
        assert _scalar(conn, "PRAGMA integrity_check") == "ok"


async def test_a_fresh_sqlite_file_numbers_rows_like_the_legacy_one(tmp_path: Path) -> None:
    """Integer keys are still the rowid: an insert without an id gets the next one."""
    db = await open_database(tmp_path / "new.db")
    try:
        await db.execute("INSERT INTO settings_kv (key, value) VALUES ('k', '1')")
        for _ in range(2):
            await db.execute("INSERT INTO dev_mode (ts, user_id, active) VALUES (1, 2, 1)")
        async with db.execute("SELECT id, rowid FROM dev_mode ORDER BY id") as cursor:
            assert [tuple(row) for row in await cursor.fetchall()] == [(1, 1), (2, 2)]
    finally:
        await db.close()


@pytest.mark.parametrize("version", [13, 5])
async def test_a_legacy_sqlite_file_with_rows_is_adopted(tmp_path: Path, version: int) -> None:
    """A file the SQL migrations left at `version`, with rows, keeps every row, gets the rest of
    the SQL migrations, is stamped at the head and has exactly the schema objects of a legacy file
    at 13 brought to the head."""
    _legacy_sqlite(tmp_path / "reference.db", 13)
    await (await open_database(tmp_path / "reference.db")).close()  # and the revisions since
    path = tmp_path / "old.db"
    _legacy_sqlite(path, version)
    with _sqlite(path) as conn:
        _fill_legacy(conn)
    await (await open_database(path)).close()
    assert _sqlite_master(path) == _sqlite_master(tmp_path / "reference.db")
    with _sqlite(path) as conn:
        assert _scalar(conn, "SELECT version_num FROM alembic_version") == head_revision()
        assert _scalar(conn, "PRAGMA user_version") == int(BASELINE)
        assert _scalar(conn, "SELECT message_id FROM incidents") == 2**62
        assert _scalar(conn, "SELECT user_id FROM actions") == 2**60
        assert _scalar(conn, "SELECT count(*) FROM run_events") == 1
        assert conn.execute("SELECT form, source, stale FROM approvals").fetchall() == [("approve", "", 0)]
        assert _scalar(conn, "SELECT origin FROM runs") == "requested"
        assert _scalar(conn, "SELECT category FROM incidents") == "code"


async def test_search_finds_an_incident_stored_after_adoption(tmp_path: Path) -> None:
    """On an adopted file the FTS5 triggers still index new incidents and old ones stay found."""
    path = tmp_path / "old.db"
    _legacy_sqlite(path, 13)
    with _sqlite(path) as conn:
        _fill_legacy(conn)
    db = await open_database(path)
    try:
        cursor = await db.execute(
            "INSERT INTO incidents (rule, rules, level, kind, state, summary, first_seen, last_seen,"
            " count, user_ids, sample, updated_at) VALUES ('r', '[]', 'error', 'k', 'open',"
            " 'reminders never fire', 1, 1, 1, '[]', '{\"error_type\": \"TimeoutError\"}', 1)"
        )
        new_id = int(cursor.lastrowid or 0)
        async with db.execute("SELECT rowid FROM search_index WHERE search_index MATCH 'fire'") as cursor:
            assert [row[0] for row in await cursor.fetchall()] == [new_id * 2]
        async with db.execute("SELECT rowid FROM search_index WHERE search_index MATCH 'zero division'") as c:
            assert [row[0] for row in await c.fetchall()] == [2]
    finally:
        await db.close()


async def test_a_failing_adoption_leaves_the_file_unchanged(tmp_path: Path) -> None:
    """When a legacy SQL migration fails during adoption, the file keeps its version, its schema
    and its rows, and is not stamped."""
    path = tmp_path / "old.db"
    _legacy_sqlite(path, 5)
    with _sqlite(path) as conn:
        _fill_legacy(conn)
        conn.execute("CREATE TABLE dev_mode (made_by_hand TEXT)")  # 0007 creates dev_mode
    before = _sqlite_master(path)
    with pytest.raises(MigrationError, match="0007_audit_devmode"):
        await open_database(path)
    assert _sqlite_master(path) == before
    with _sqlite(path) as conn:
        assert _scalar(conn, "PRAGMA user_version") == 5
        assert _scalar(conn, "SELECT count(*) FROM approvals") == 1
        assert _scalar(conn, "SELECT name FROM sqlite_master WHERE name = 'alembic_version'") is None


async def test_a_failing_revision_leaves_the_sqlite_file_unchanged(tmp_path: Path) -> None:
    """A new revision that fails half-way applies none of itself and the revision stays."""
    path = tmp_path / "m.db"
    await (await open_database(path)).close()
    before = _sqlite_master(path)
    history = _copy_history(tmp_path, _BROKEN)
    with _sqlite(path) as conn, pytest.raises(MigrationError, match="THIS IS NOT SQL"):
        upgrade_sqlite(conn, history=history)
    assert _sqlite_master(path) == before
    with _sqlite(path) as conn:
        assert _scalar(conn, "SELECT version_num FROM alembic_version") == head_revision()


async def test_a_file_from_a_newer_history_is_refused_unchanged(tmp_path: Path) -> None:
    """A file at a revision this code does not know (a newer bot's) is not re-stamped or touched."""
    path = tmp_path / "m.db"
    await (await open_database(path)).close()
    with _sqlite(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    before = _sqlite_master(path)
    with pytest.raises(MigrationError, match="9999"):
        await open_database(path)
    assert _sqlite_master(path) == before
    with _sqlite(path) as conn:
        assert _scalar(conn, "SELECT version_num FROM alembic_version") == "9999"


async def test_a_failing_revision_on_a_fresh_file_leaves_it_empty(tmp_path: Path) -> None:
    """A history that cannot reach its head leaves a new file without any table."""
    history = _copy_history(tmp_path, _BROKEN)
    with _sqlite(tmp_path / "new.db") as conn, pytest.raises(MigrationError):
        upgrade_sqlite(conn, history=history)
    assert _sqlite_master(tmp_path / "new.db") == set()


def test_an_up_to_date_file_is_opened_without_loading_alembic(tmp_path: Path) -> None:
    """Opening a file already at the head imports neither Alembic nor SQLAlchemy."""
    path = tmp_path / "m.db"
    code = (
        "import asyncio, sys\nfrom mendbot.db import open_database\n"
        f"async def main():\n    await (await open_database({str(path)!r})).close()\n"
        "asyncio.run(main())\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'sqlalchemy'}))"
    )
    root = Path(__file__).resolve().parents[1]
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert first.stdout.strip() == "[]"  # the new file was made from the history's snapshot
    assert again.stdout.strip() == "[]"


def _schema(conn: sqlite3.Connection) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    objects = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall()
    revision = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    return objects, revision, int(conn.execute("PRAGMA user_version").fetchone()[0])


def test_the_snapshot_was_written_from_the_history_as_it_is() -> None:
    """After a change to the history, `python -m mendbot.db.history` writes its snapshot again; until then
    every new SQLite file is made by running the whole history (~0.25 s a process)."""
    assert current_snapshot() is not None, f"{SNAPSHOT} is stale: run `python -m mendbot.db.history`"


def test_a_file_made_from_the_snapshot_is_the_one_the_history_makes(tmp_path: Path) -> None:
    """Tables, columns, constraints, indexes, triggers, full-text search, revision and user_version."""
    by_history = sqlite3.connect(tmp_path / "history.db", isolation_level=None)
    _upgrade_sqlite(by_history, 0, HISTORY)
    by_snapshot = sqlite3.connect(tmp_path / "snapshot.db", isolation_level=None)
    upgrade_sqlite(by_snapshot)
    assert _schema(by_snapshot) == _schema(by_history)
    by_snapshot.execute(
        "INSERT INTO search_index (rowid, summary, kind, error_type, message, frames)"
        " VALUES (1, ?, '', '', '', '')",
        ("the disk is on fire",),
    )
    found = by_snapshot.execute("SELECT rowid FROM search_index WHERE search_index MATCH 'fire'").fetchall()
    assert found == [(1,)]


def test_a_history_changed_after_its_snapshot_runs_in_full(tmp_path: Path) -> None:
    """A snapshot whose digest is not the history's is not used: the history runs, to its own head."""
    history = _copy_history(tmp_path, '    op.create_table("added_later", sa.Column("x", sa.Integer))')
    assert (history / SNAPSHOT).exists() and current_snapshot(history) is None
    with _sqlite(tmp_path / "new.db") as conn:
        upgrade_sqlite(conn, history=history)
        assert _scalar(conn, "SELECT name FROM sqlite_master WHERE name = 'added_later'") == "added_later"
        assert _scalar(conn, "SELECT version_num FROM alembic_version") != head_revision()


def test_the_head_read_from_file_names_is_alembics_head() -> None:
    """The cheap head (read from the files' text) is Alembic's one head, and every revision's file
    is numbered one after the file of the revision it revises; its id is that number or the file's
    name (`v0015_topic`)."""
    script = ScriptDirectory(str(HISTORY))
    assert script.get_heads() == [head_revision()]
    revisions = list(script.walk_revisions())
    numbers = {revision.revision: int(Path(revision.path).name[1:5]) for revision in revisions}
    for revision in revisions:
        name = Path(revision.path).name
        assert name.startswith(f"v{revision.revision}_") or name == f"{revision.revision}.py"
        if revision.revision == BASELINE:
            assert revision.down_revision is None
        else:
            assert isinstance(revision.down_revision, str)
            assert numbers[revision.revision] == numbers[revision.down_revision] + 1


def test_the_sqlite_head_matches_the_metadata(tmp_path: Path) -> None:
    """Alembic finds no difference between the metadata and a SQLite file at the head."""
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    upgrade_sqlite(conn)
    conn.close()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.connect() as connection:
        diff = compare_metadata(_comparing(connection), metadata)
    engine.dispose()
    assert diff == []


def _comparing(connection: sa.Connection) -> MigrationContext:
    def only_ours(name: str | None, kind: str, parent: Any) -> bool:
        return kind != "table" or name in metadata.tables

    return MigrationContext.configure(connection, opts={"include_name": only_ours, "compare_type": True})


# --- PostgreSQL ----------------------------------------------------------------------------------


def test_history_brings_an_empty_postgresql_database_to_the_head(postgres_url: str) -> None:
    """An empty PostgreSQL database is stamped at the head and has every table of the metadata."""
    upgrade_postgresql(postgres_url)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (head_revision(),)
        tables = {
            row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        partitioned = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'actions'").fetchone()
    assert set(metadata.tables) | {"search_index", "actions_default"} <= tables | {"actions"}
    assert partitioned == ("p",)


def test_a_postgresql_database_at_the_head_is_upgraded_without_loading_alembic(postgres_url: str) -> None:
    """A process that finds the database at the head imports no Alembic (the first one, which found
    it empty, ran the history); the database is left at the head."""
    code = (
        "import sys\nfrom mendbot.db.migrate import upgrade_postgresql\n"
        f"upgrade_postgresql({postgres_url!r})\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'sqlalchemy'}))"
    )
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert first.stdout.strip() == "['alembic', 'sqlalchemy']"
    assert again.stdout.strip() == "[]"
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (head_revision(),)


def test_a_database_url_libpq_cannot_read_fails_without_showing_its_password() -> None:
    """libpq quotes the part of a URL it cannot parse; a password with a stray `%` is such a part. The
    error says what is wrong and hides the password (after the user or as a query parameter) in both
    its written and decoded forms, in its traceback too."""
    for url in (
        "postgresql://bob:s3cr%zzet-0001@127.0.0.1:1/mendbot",
        "postgresql://bob:s3cr%41%zz-0002@127.0.0.1:1/mendbot",
        "postgresql://bob@127.0.0.1:1/mendbot?password=s3cr%zz-0003",
    ):
        with pytest.raises(MigrationError, match="reading the revision") as failed:
            upgrade_postgresql(url)
        shown = "".join(traceback.format_exception(failed.value))  # as a log would show it
        assert "percent-encoded" in shown and "***" in shown
        assert "s3cr" not in shown


def test_both_heads_have_the_same_tables_and_columns(postgres_url: str, tmp_path: Path) -> None:
    """SQLite and PostgreSQL at the head: same tables, same columns in the same order, same
    nullability and the same broad types (int, float, str)."""
    upgrade_postgresql(postgres_url)
    with _sqlite(tmp_path / "m.db") as conn:
        upgrade_sqlite(conn)

    def describe(engine: sa.Engine) -> dict[str, list[tuple[str, bool, type]]]:
        inspector = sa.inspect(engine)
        found = {
            table: [(c["name"], c["nullable"], _broad(c["type"])) for c in inspector.get_columns(table)]
            for table in metadata.tables
        }
        engine.dispose()
        return found

    sqlite_head = describe(sa.create_engine(f"sqlite:///{tmp_path / 'm.db'}"))
    postgresql_head = describe(_pg_engine(postgres_url))
    assert sqlite_head == postgresql_head
    assert sqlite_head["incidents"][-3:] == [
        ("category", False, str),
        ("need", True, str),
        ("autonomy", True, str),
    ]


def test_the_postgresql_head_matches_the_metadata(postgres_url: str) -> None:
    """Alembic finds no difference between the metadata and a PostgreSQL database at the head."""
    upgrade_postgresql(postgres_url)
    engine = _pg_engine(postgres_url)
    with engine.connect() as connection:
        diff = compare_metadata(_comparing(connection), metadata)
    engine.dispose()
    assert diff == []


def test_a_failing_revision_leaves_the_postgresql_database_unchanged(
    postgres_url: str, tmp_path: Path
) -> None:
    """A new revision that fails half-way on PostgreSQL applies none of itself."""
    upgrade_postgresql(postgres_url)
    history = _copy_history(tmp_path, _BROKEN)
    with pytest.raises(MigrationError, match="THIS IS NOT SQL"):
        upgrade_postgresql(postgres_url, history=history)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (head_revision(),)
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)


def _pg_action(conn: psycopg.Connection[Any], ts: float) -> str:
    row = conn.execute(
        "INSERT INTO actions (ts, kind, source, ok, duration_ms)"
        " VALUES (%s, 'command:roll', 'command', 1, 2.0) RETURNING tableoid::regclass::text",
        (ts,),
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_an_action_lands_in_the_partition_of_its_day(postgres_url: str) -> None:
    """With daily partitions made ahead, an action is stored in its UTC day's partition; an action
    on a day without one goes to the default partition."""
    upgrade_postgresql(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT actions_add_daily_partitions(%s, 2)", (DAY + 5,)).fetchone() == (2,)
        assert _pg_action(conn, DAY + 3600) == "actions_20260101"
        assert _pg_action(conn, DAY + 86400 + 1) == "actions_20260102"
        assert _pg_action(conn, DAY + 5 * 86400) == "actions_default"


def test_a_day_already_in_the_default_partition_is_not_carved_out(postgres_url: str) -> None:
    """Making partitions skips a day whose rows already sit in the default partition, and keeps them."""
    upgrade_postgresql(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert _pg_action(conn, DAY + 60) == "actions_default"
        assert conn.execute("SELECT actions_add_daily_partitions(%s, 2)", (DAY,)).fetchone() == (1,)
        assert conn.execute("SELECT tableoid::regclass::text FROM actions").fetchall() == [
            ("actions_default",)
        ]
        assert _pg_action(conn, DAY + 86400 + 60) == "actions_20260102"


def test_retention_drops_whole_days_before_the_cutoff(postgres_url: str) -> None:
    """Dropping partitions before a cutoff removes the days that end by then and nothing else."""
    upgrade_postgresql(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SELECT actions_add_daily_partitions(%s, 3)", (DAY,))
        for day in range(3):
            _pg_action(conn, DAY + day * 86400 + 10)
        _pg_action(conn, DAY + 9 * 86400)  # default partition
        assert conn.execute("SELECT actions_drop_partitions_before(%s)", (DAY + 2 * 86400,)).fetchone() == (
            2,
        )
        kept = conn.execute("SELECT tableoid::regclass::text FROM actions ORDER BY ts").fetchall()
    assert kept == [("actions_20260103",), ("actions_default",)]


def test_tsvector_search_finds_an_incident_by_a_word_of_its_summary(postgres_url: str) -> None:
    """An incident stored on PostgreSQL is found by a (stemmed) word of its summary, at row 2*id."""
    upgrade_postgresql(postgres_url)
    row = _incident("dice rolls crash the bot", "ZeroDivisionError")
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        incident = conn.execute(
            f"INSERT INTO incidents ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))}) RETURNING id",
            tuple(row.values()),
        ).fetchone()
        assert incident is not None
        found = conn.execute(
            "SELECT rid FROM search_index WHERE document @@ websearch_to_tsquery('english', 'rolling')"
        ).fetchall()
    assert found == [(incident[0] * 2,)]


def test_tsvector_search_finds_a_failure_by_the_words_of_its_error_type(postgres_url: str) -> None:
    """A distinct failure is indexed with its error type split at capitals and the newest action's
    message, at row 2*search_failures.id+1; an update re-indexes it at the next power of ten."""
    upgrade_postgresql(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO actions (ts, kind, source, ok, duration_ms, fingerprint, error_message)"
            " VALUES (%s, 'command:roll', 'command', 0, 1, 'f1', 'the roller exploded')",
            (DAY,),
        )
        conn.execute(
            "INSERT INTO fingerprints (fingerprint, kind, error_type, first_seen, last_seen, count)"
            " VALUES ('f1', 'command:roll', 'ZeroDivisionError', %s, %s, 1)",
            (DAY, DAY),
        )
        search_id = conn.execute("SELECT id FROM search_failures WHERE fingerprint = 'f1'").fetchone()
        assert search_id is not None

        def matches(words: str) -> list[tuple[int]]:
            return conn.execute(
                "SELECT rid FROM search_index WHERE document @@ websearch_to_tsquery('english', %s)", (words,)
            ).fetchall()

        assert matches("zero division") == [(search_id[0] * 2 + 1,)]
        assert matches("roller") == [(search_id[0] * 2 + 1,)]
        conn.execute("UPDATE fingerprints SET error_type = 'KeyError' WHERE fingerprint = 'f1'")
        assert matches("zero division") == []
        assert matches("key") == [(search_id[0] * 2 + 1,)]
