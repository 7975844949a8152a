"""Queries for `claims`: the files each run may change (see bot/improve/agent/claims.py).

Written once in the SQL both engines share (`mendbot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from mendbot.db import core
from mendbot.db.core import Connection

__all__ = ["add", "delete_for_run", "delete_unless_in_states", "for_run", "held_in_states"]

_FOR_RUN = "SELECT path FROM claims WHERE run_id = :run_id ORDER BY created_at, path"
_HELD_IN_STATES = """
    SELECT claims.run_id, claims.path FROM claims JOIN runs ON runs.id = claims.run_id
    WHERE runs.state IN (:states) ORDER BY claims.run_id, claims.path"""
_DELETE_FOR_RUN = "DELETE FROM claims WHERE run_id = :run_id"
_DELETE_UNLESS_IN_STATES = """
    DELETE FROM claims WHERE run_id NOT IN (SELECT id FROM runs WHERE state IN (:states))"""


@functools.cache
def _add(count: int) -> str:
    """One multi-row insert of `count` paths (`path_0`, `path_1`, …) that skips paths already held."""
    rows = ", ".join(f"(:run_id, :path_{i}, :why, :now)" for i in range(count))
    return f"""
    INSERT INTO claims (run_id, path, why, created_at) VALUES {rows}
    ON CONFLICT (run_id, path) DO NOTHING"""


async def add(db: Connection, run_id: int, paths: list[str], why: str, now: float) -> None:
    """Record `paths` as claimed by `run_id`, all or none (paths it already holds are kept as they were).

    One statement, so no transaction of its own: the connection is shared, and a BEGIN here could
    meet another writer's open one.
    """
    if not paths:
        return
    await core.execute(
        db,
        _add(len(paths)),
        run_id=run_id,
        why=why,
        now=now,
        **{f"path_{i}": path for i, path in enumerate(paths)},
    )


async def for_run(db: Connection, run_id: int) -> list[str]:
    """The paths `run_id` holds, in the order they were claimed."""
    return [str(row["path"]) for row in await core.rows(db, _FOR_RUN, run_id=run_id)]


async def held_in_states(db: Connection, states: Iterable[str]) -> list[tuple[int, str]]:
    """(run id, path) of every claim whose run is in one of `states`, oldest run first."""
    found = await core.rows(db, _HELD_IN_STATES, states=sorted(states))
    return [(int(row["run_id"]), str(row["path"])) for row in found]


async def delete_for_run(db: Connection, run_id: int) -> int:
    """Release everything `run_id` holds; returns how many paths."""
    return await core.execute(db, _DELETE_FOR_RUN, run_id=run_id)


async def delete_unless_in_states(db: Connection, states: Iterable[str]) -> int:
    """Release the claims of every run not in one of `states`; returns how many paths."""
    return await core.execute(db, _DELETE_UNLESS_IN_STATES, states=sorted(states))
