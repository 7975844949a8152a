"""Storage faults on PostgreSQL are told apart from bugs, and a write that meets a lock is retried."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from mendbot.db import core
from mendbot.db import runs as queries
from mendbot.db.connection import transaction
from mendbot.db.retry import RetryPolicy, StorageHealth, retrying, storage_fault
from tests.harness.sql import sql

pytestmark = pytest.mark.engines


def _raised(url: str, *statements: str) -> BaseException:
    """The error the last of `statements` raises on a fresh connection to `url`."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements[:-1]:
            conn.execute(statement)
        try:
            conn.execute(statements[-1])
        except psycopg.Error as exc:
            return exc
    raise AssertionError("the statement did not fail")


def test_postgresql_faults_are_named_by_their_sqlstate(postgres_url: str) -> None:
    """A read-only server, a lock past its timeout and a killed session are storage faults; a bug is none."""
    assert (
        storage_fault(
            _raised(postgres_url, "SET default_transaction_read_only = on", "CREATE TABLE t (x int)")
        )
        == "readonly"
    )
    with psycopg.connect(postgres_url, autocommit=True) as holder:
        holder.execute("CREATE TABLE held (x int)")
        with holder.transaction():
            holder.execute("LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
            locked = _raised(postgres_url, "SET lock_timeout = 50", "SELECT * FROM held")
    assert storage_fault(locked) == "locked"
    assert storage_fault(_raised(postgres_url, "SELECT pg_terminate_backend(pg_backend_pid())")) == "io"
    assert storage_fault(_raised(postgres_url, "SELEKT 1")) is None


async def test_a_write_that_meets_a_lock_is_retried_until_it_goes(postgres_url: str) -> None:
    """Another session's lock past lock_timeout fails the write, `retrying` tries again, and once the
    lock is released the write is saved — nothing given up."""
    db = await core.open_postgresql(postgres_url, lock_timeout_ms=50)
    health = StorageHealth()
    try:
        await queries.set_setting(db, "paused", False)
        holder = await psycopg.AsyncConnection.connect(postgres_url, autocommit=True)
        async with holder.transaction():
            await holder.execute("LOCK TABLE settings_kv IN ACCESS EXCLUSIVE MODE")
            write = asyncio.create_task(
                retrying(
                    lambda: queries.set_setting(db, "paused", True),
                    what="the pause",
                    policy=RetryPolicy(attempts=100, backoff_s=0.02, max_backoff_s=0.05),
                    health=health,
                )
            )
            await asyncio.wait_for(health.wait_for_retry(), 30)
            assert not write.done()
        await holder.close()
        await write
        assert await queries.get_setting(db, "paused") is True
        assert health.retried >= 1 and health.given_up == 0
    finally:
        await db.close()


@pytest.mark.parametrize("code", ["53100", "08006", "57P01"])
def test_every_fault_class_maps(code: str) -> None:
    """Disk full, a broken connection and a server shutdown map to a fault, by their SQLSTATE alone."""
    error = psycopg.errors.lookup(code)("from the server")
    assert storage_fault(error) in {"full", "io"}


async def test_a_lost_connection_is_made_again_and_the_write_goes_through(postgres_url: str) -> None:
    """The server ends the bot's session (a restart, a failover, an idle cut): the write under way
    fails as a storage fault, its retry connects again and saves it, and transactions work again."""
    db = await core.open_postgresql(postgres_url)
    health = StorageHealth()
    try:
        await queries.set_setting(db, "paused", False)
        [pid] = await sql(db, "SELECT pg_backend_pid()")
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", pid)
        await retrying(
            lambda: queries.set_setting(db, "paused", True),
            what="the pause",
            policy=RetryPolicy(attempts=3, backoff_s=0.01),
            health=health,
        )
        assert health.retried == 1 and health.given_up == 0
        async with transaction(db):
            await queries.set_setting(db, "paused", False)
        assert await queries.get_setting(db, "paused") is False
        assert await sql(db, "SELECT pg_backend_pid()") != [pid]
    finally:
        await db.close()
