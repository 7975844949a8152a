"""Shared fixtures: test settings in a temp dir, a running virtual world, a PostgreSQL database."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.db import core, open_database
from bot.kernel.settings import Settings
from bot.tools.playground import VirtualWorld
from tests.harness.discord import make_settings, running_world
from tests.harness.postgres import (
    PostgresServer,
    TestDatabases,
    migrated_template,
    start_postgres,
    use_databases,
)

# `MENDBOT_TEST_DATABASE=postgresql pytest` runs the suite with every test bot on PostgreSQL
# (`make test` runs it once on each engine). Tests marked `sqlite` exercise the SQLite file itself.
ENGINE = os.environ.get("MENDBOT_TEST_DATABASE", "sqlite")
if ENGINE not in ("sqlite", "postgresql"):
    raise pytest.UsageError(f"MENDBOT_TEST_DATABASE must be sqlite or postgresql, not {ENGINE!r}")

# Never let a developer's own configuration or secrets leak into a test run.
for _name in ("DISCORD_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GITHUB_TOKEN"):
    os.environ.pop(_name, None)
os.environ["MENDBOT_CONFIG"] = os.devnull


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
async def world(settings: Settings) -> AsyncIterator[VirtualWorld]:
    async with running_world(settings) as world:
        yield world


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole session, stopped (and its data removed) at its end.

    Its data is not under pytest's temporary folder: the server runs as a user of its own, and
    any other pytest session of ours resets that folder to owner-only, which locked it out.
    """
    data = Path(tempfile.mkdtemp(prefix="mendbot-postgres-"))
    remove_data = functools.partial(shutil.rmtree, data, ignore_errors=True)
    server = start_postgres(data / "data")
    if isinstance(server, str):
        # `make test` installs the server (the dev extra): a test that needs it and cannot have it
        # fails, so a run without PostgreSQL never passes for one with it.
        remove_data()
        pytest.fail(server)
    try:
        yield server
    finally:
        server.stop()
        remove_data()


@pytest.fixture(scope="session")
def _bot_template(postgres_server: PostgresServer) -> str:
    return migrated_template(postgres_server)


@pytest.fixture(autouse=True)
def _bot_databases(request: pytest.FixtureRequest) -> Iterator[None]:
    """On the PostgreSQL pass: each test bot (`make_settings`) gets a database of its own."""
    if ENGINE != "postgresql":
        yield
        return
    databases = TestDatabases(
        request.getfixturevalue("postgres_server"), request.getfixturevalue("_bot_template")
    )
    use_databases(databases)
    try:
        yield
    finally:
        use_databases(None)
        databases.drop_all()


# What the PostgreSQL pass runs: the code that differs between engines — storage (every query module,
# the schema's history, retries), the run queue and its claims, leadership and the cluster, the
# recorder's writes — marked `engines` in those test files, plus every test that asks for a
# PostgreSQL database itself. Everything else talks to storage through those same queries and runs
# once, on SQLite.
_ENGINE_FIXTURES = frozenset({"postgres_url", "postgres_server", "engine_db"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each pass runs its share. On PostgreSQL: the tests marked `engines` and those asking for a
    PostgreSQL database, except the tests of the SQLite file itself. On SQLite: everything but the
    tests that ask for `postgres_url` themselves (they run on PostgreSQL whatever the pass, so the
    PostgreSQL pass runs them)."""
    if ENGINE == "postgresql":
        kept, deselected = [], []
        for item in items:
            engines = item.get_closest_marker("engines") is not None
            asks = bool(_ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())))
            if (engines or asks) and item.get_closest_marker("sqlite") is None:
                kept.append(item)
            else:
                deselected.append(item)
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = kept
    else:
        skip = pytest.mark.skip(reason="runs on PostgreSQL whatever the pass: the PostgreSQL pass runs it")
        for item in items:
            if "postgres_url" in getattr(item, "fixturenames", ()):
                item.add_marker(skip)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URI of an empty database of its own on the session's PostgreSQL server."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[core.Connection]:
    """The bot's connection, its schema at the head, once on each engine: for queries written as
    SQLAlchemy Core statements (`bot.db.core`), which must behave the same on both."""
    if request.param == "sqlite":
        connection: core.Connection = await open_database(tmp_path / "m.db")
    else:
        connection = await core.open_postgresql(request.getfixturevalue("postgres_url"))
    try:
        yield connection
    finally:
        await connection.close()
