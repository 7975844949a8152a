"""Figures for `/metrics` that live in the database: runs by state and total run spend."""

from __future__ import annotations

import aiosqlite

__all__ = ["run_spend", "runs_by_state"]


async def runs_by_state(db: aiosqlite.Connection) -> dict[str, int]:
    async with db.execute("SELECT state, COUNT(*) FROM runs GROUP BY state") as cursor:
        return {str(row[0]): int(row[1]) for row in await cursor.fetchall()}


async def run_spend(db: aiosqlite.Connection) -> float:
    """USD spent by all runs so far (the sum of their events' costs)."""
    async with db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM run_events") as cursor:
        row = await cursor.fetchone()
    return float(row[0]) if row is not None else 0.0
