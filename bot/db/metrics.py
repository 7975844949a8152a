"""Figures for `/metrics` that live in the database: runs by state and total run spend.

Written once in the SQL both engines share (`mendbot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from mendbot.db import core
from mendbot.db.core import Connection

__all__ = ["run_spend", "runs_by_state"]

_RUNS_BY_STATE = "SELECT state, count(*) AS count FROM runs GROUP BY state"
_RUN_SPEND = "SELECT coalesce(sum(cost_usd), 0) FROM run_events"


async def runs_by_state(db: Connection) -> dict[str, int]:
    return {str(row["state"]): int(row["count"]) for row in await core.rows(db, _RUNS_BY_STATE)}


async def run_spend(db: Connection) -> float:
    """USD spent by all runs so far (the sum of their events' costs)."""
    return float(await core.scalar(db, _RUN_SPEND) or 0.0)
