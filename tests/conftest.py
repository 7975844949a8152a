"""Shared fixtures: test settings in a temp dir, a running virtual world, a PostgreSQL database."""

from __future__ import annotations

import atexit
import functools
import gc
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import structlog

from tests.harness import wheel
from tests.harness.logs import logging_restored
from tests.harness.postgres import (
    PostgresServer,
    TestDatabases,
    migrated_template,
    start_postgres,
    use_databases,
)

if TYPE_CHECKING:
    from mendbot.db import core
    from mendbot.kernel.settings import Settings
    from mendbot.tools.playground import VirtualWorld

# The bot is imported by the fixtures that build one, not here: a project check the pipeline runs
# with pytest (`tests/fixtures/check_*.py`, in the sandbox) loads this file and needs none of it —
# importing the whole bot cost each such run ~0.6 s of CPU.

# One session runs each test on the engines it needs (`pytest_generate_tests`): every test on SQLite,
# and on PostgreSQL the ones where the engines differ. `MENDBOT_TEST_DATABASE=sqlite` or `=postgresql`
# keeps one engine's share only. Tests marked `sqlite` exercise the SQLite file itself.
ENGINES = ("sqlite", "postgresql")
ONLY = os.environ.get("MENDBOT_TEST_DATABASE", "")
if ONLY not in ("", *ENGINES):
    raise pytest.UsageError(f"MENDBOT_TEST_DATABASE must be sqlite or postgresql, not {ONLY!r}")

# Never let a developer's own configuration or secrets leak into a test run.
for _name in ("DISCORD_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GITHUB_TOKEN"):
    os.environ.pop(_name, None)
os.environ["MENDBOT_CONFIG"] = os.devnull
# Parsed YAML documents (bot/kernel/yamldoc.py) go to a cache of this session's own, not the user's.
os.environ["XDG_CACHE_HOME"] = _cache = tempfile.mkdtemp(prefix="mendbot-test-cache-")
atexit.register(shutil.rmtree, _cache, ignore_errors=True)

# Test processes log through structlog's default pipeline (a bot process configures its own, which
# formats tracebacks as plain text). Its console renderer draws each traceback with rich when rich is
# installed (import-linter brings it): ~70 ms of CPU per logged failure, half a minute for a storm
# test. Plain tracebacks say the same.
structlog.configure(
    processors=[
        *structlog.get_config()["processors"][:-1],
        structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
    ]
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    from tests.harness.discord import make_settings

    return make_settings(tmp_path / "data")


@pytest.fixture
async def world(settings: Settings) -> AsyncIterator[VirtualWorld]:
    from tests.harness.discord import running_world

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
def _no_config_outlives_its_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """`load_settings(config_file)` names its file in MENDBOT_CONFIG for the processes the bot starts.
    A test's file must not outlive the test: every later test of its worker ran on it (one naming a
    PostgreSQL database that does not exist failed 39 tests that ran after it)."""
    monkeypatch.setenv("MENDBOT_CONFIG", os.devnull)


@pytest.fixture(autouse=True)
def _no_logging_outlives_its_test() -> Iterator[None]:
    """A test that starts mendbot in its own process configures logging as a bot does; the suite's
    comes back after it (`tests/harness/logs.py`)."""
    with logging_restored():
        yield


@pytest.fixture(autouse=True)
def _engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """The engine a test's bots (`make_settings`) run on: SQLite, or on PostgreSQL a database of
    their own each (`pytest_generate_tests` says which engines a test runs on)."""
    engine: str = getattr(request, "param", "sqlite")
    if engine != "postgresql":
        yield engine
        return
    databases = TestDatabases(
        request.getfixturevalue("postgres_server"), request.getfixturevalue("_bot_template")
    )
    use_databases(databases)
    try:
        yield engine
    finally:
        use_databases(None)
        databases.drop_all()


# Where the engines differ — storage (every query module, the schema's history, retries), the run
# queue and its claims, leadership and the cluster, the recorder's writes — tests are marked
# `engines` and run on both; so does every test asking for a PostgreSQL database itself (one asking
# for `postgres_url` or `postgres_server` only there: it is on PostgreSQL whatever its bots run on).
# Everything else reaches storage through those same queries and runs once, on SQLite.
_ENGINE_FIXTURES = frozenset({"postgres_url", "postgres_server", "engine_db"})
_POSTGRES_ONLY = frozenset({"postgres_url", "postgres_server"})


def engines_for(definition: pytest.Item, fixturenames: Iterable[str]) -> list[str]:
    """The engines a test runs on, in this session."""
    names = set(fixturenames)
    on_postgres = definition.get_closest_marker("sqlite") is None and (
        definition.get_closest_marker("engines") is not None or bool(_ENGINE_FIXTURES & names)
    )
    if _POSTGRES_ONLY & names:
        wanted = ["postgresql"]
    else:
        wanted = ["sqlite", "postgresql"] if on_postgres else ["sqlite"]
    return [engine for engine in wanted if ONLY in ("", engine)]


def pytest_configure(config: pytest.Config) -> None:
    wheel.start_session()  # before xdist starts the workers, which inherit the session's name


def pytest_sessionfinish(session: pytest.Session) -> None:
    wheel.end_session()  # in the process that named the session, its workers all done by now


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    engines = engines_for(metafunc.definition, metafunc.fixturenames)
    if engines and engines != ["sqlite"]:  # none: deselected below
        metafunc.parametrize("_engine", engines, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the tests with no engine left (`MENDBOT_TEST_DATABASE`), and hand out the slow ones
    first: parallel workers then finish together instead of waiting on a long test started last."""
    kept = [item for item in items if _engine_of(item) is not None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if _engine_of(item) is None])
    seconds = _recorded_durations()
    kept.sort(key=lambda item: -_expected_s(item, seconds))  # stable: the rest keeps its order
    items[:] = kept


# How long the slow tests took in a whole run (`make durations` writes it): the longest are handed out
# first. A test missing from it counts as quick, or as 10 s if it drives the Claude Code CLI.
_DURATIONS = Path(__file__).with_name("durations.txt")


def _recorded_durations() -> dict[str, float]:
    try:
        lines = _DURATIONS.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    found = {}
    for line in lines:
        value, _, nodeid = line.partition(" ")
        if nodeid and not line.startswith("#"):
            found[nodeid] = float(value)
    return found


def _expected_s(item: pytest.Item, seconds: dict[str, float]) -> float:
    return seconds.get(item.nodeid, 10.0 if item.get_closest_marker("cli") is not None else 0.0)


def _engine_of(item: pytest.Item) -> str | None:
    """The engine this item runs on, or None if this session runs it on none."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    engine = str(params.get("_engine", params.get("engine_db", "sqlite")))
    return engine if engine in engines_for(item, getattr(item, "fixturenames", ())) else None


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
    """The bot's connection, its schema at the head, once on each engine: for queries written once for
    both (`mendbot.db.core`), which must behave the same on both."""
    from mendbot.db import core, open_database

    if request.param == "sqlite":
        connection: core.Connection = await open_database(tmp_path / "m.db")
    else:
        connection = await core.open_postgresql(request.getfixturevalue("postgres_url"))
    try:
        yield connection
    finally:
        await connection.close()


def pytest_collection_finish(session: pytest.Session) -> None:
    """The test modules and everything they imported live as long as the worker: frozen, the garbage
    collector's full passes stop walking them again and again."""
    gc.collect()
    gc.freeze()
