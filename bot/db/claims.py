"""Queries for `claims`: the files each run may change (see bot/improve/claims.py)."""

from __future__ import annotations

from collections.abc import Iterable

import aiosqlite

__all__ = ["add", "delete_for_run", "delete_unless_in_states", "for_run", "held_in_states"]


def _marks(values: Iterable[object]) -> str:
    return ", ".join("?" for _ in values)


async def add(db: aiosqlite.Connection, run_id: int, paths: list[str], why: str, now: float) -> None:
    """Record `paths` as claimed by `run_id`, all or none (paths it already holds are kept as they were).

    One statement, so no transaction of its own: the connection is shared, and a BEGIN here could
    meet another writer's open one.
    """
    if not paths:
        return
    rows = [value for path in paths for value in (run_id, path, why, now)]
    values = ", ".join(["(?, ?, ?, ?)"] * len(paths))
    await db.execute(f"INSERT OR IGNORE INTO claims (run_id, path, why, created_at) VALUES {values}", rows)


async def for_run(db: aiosqlite.Connection, run_id: int) -> list[str]:
    """The paths `run_id` holds, in the order they were claimed."""
    async with db.execute(
        "SELECT path FROM claims WHERE run_id = ? ORDER BY created_at, path", (run_id,)
    ) as cursor:
        return [str(row[0]) for row in await cursor.fetchall()]


async def held_in_states(db: aiosqlite.Connection, states: Iterable[str]) -> list[tuple[int, str]]:
    """(run id, path) of every claim whose run is in one of `states`, oldest run first."""
    states = sorted(states)
    async with db.execute(
        "SELECT c.run_id, c.path FROM claims c JOIN runs r ON r.id = c.run_id"
        f" WHERE r.state IN ({_marks(states)}) ORDER BY c.run_id, c.path",
        states,
    ) as cursor:
        return [(int(row[0]), str(row[1])) for row in await cursor.fetchall()]


async def delete_for_run(db: aiosqlite.Connection, run_id: int) -> int:
    """Release everything `run_id` holds; returns how many paths."""
    cursor = await db.execute("DELETE FROM claims WHERE run_id = ?", (run_id,))
    return cursor.rowcount


async def delete_unless_in_states(db: aiosqlite.Connection, states: Iterable[str]) -> int:
    """Release the claims of every run not in one of `states`; returns how many paths."""
    states = sorted(states)
    cursor = await db.execute(
        f"DELETE FROM claims WHERE run_id NOT IN (SELECT id FROM runs WHERE state IN ({_marks(states)}))",
        states,
    )
    return cursor.rowcount
