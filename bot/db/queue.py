"""PostgreSQL-only plumbing of the run queue: procrastinate's schema, and listening for run news.

Procrastinate's schema is procrastinate's own, versioned with its package; it is applied as it ships,
once, when a bot or worker with `improve.run_on: workers` starts — not copied into our migration
history, which would fork it, and not created at all for deployments that never use workers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mendbot.db.runs import RUNS_CHANNEL

__all__ = ["ensure_queue_schema", "listening"]

# Any fixed number: the advisory lock that serialises processes creating the schema together.
_SCHEMA_LOCK = 0x6D656E64


async def ensure_queue_schema(url: str) -> bool:
    """Create procrastinate's tables unless they exist; True when this call created them.

    Under an advisory lock: a bot and its workers starting together must not both create them.
    """
    # The driver and procrastinate load here, on PostgreSQL only: a SQLite start never pays for them.
    import psycopg
    from procrastinate.schema import SchemaManager

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
        try:
            found = await (await conn.execute("SELECT to_regclass('procrastinate_jobs')")).fetchone()
            if found is not None and found[0] is not None:
                return False
            async with conn.transaction():
                await conn.execute(SchemaManager.get_schema())
            return True
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))


@asynccontextmanager
async def listening(url: str) -> AsyncIterator[AsyncIterator[str]]:
    """A connection of its own LISTENing on the runs channel: yields the stream of payloads (run
    ids as text). The stream ends with an exception when the connection is lost."""
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(RUNS_CHANNEL)))

        async def payloads() -> AsyncIterator[str]:
            async for notify in conn.notifies():
                yield notify.payload

        yield payloads()
