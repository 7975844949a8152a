"""Queries for `claims`: the files each run may change (see bot/improve/claims.py).

Written once as SQLAlchemy Core statements (`bot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from sqlalchemy import Executable, bindparam, select

from bot.db import core
from bot.db.core import Connection
from bot.db.schema import claims, runs

__all__ = ["add", "delete_for_run", "delete_unless_in_states", "for_run", "held_in_states"]

_FOR_RUN = (
    select(claims.c.path)
    .where(claims.c.run_id == bindparam("run_id"))
    .order_by(claims.c.created_at, claims.c.path)
)
_HELD_IN_STATES = (
    select(claims.c.run_id, claims.c.path)
    .join(runs, runs.c.id == claims.c.run_id)
    .where(runs.c.state.in_(bindparam("states", expanding=True)))
    .order_by(claims.c.run_id, claims.c.path)
)
_DELETE_FOR_RUN = claims.delete().where(claims.c.run_id == bindparam("run_id"))
_DELETE_UNLESS_IN_STATES = claims.delete().where(
    claims.c.run_id.not_in(select(runs.c.id).where(runs.c.state.in_(bindparam("states", expanding=True))))
)


@functools.cache
def _add(dialect: str, count: int) -> Executable:
    """One multi-row insert of `count` paths (`path_0`, `path_1`, …) that skips paths already held."""
    insert = core.insert_for(dialect, claims)
    rows: list[dict[str, object]] = [
        {
            "run_id": bindparam("run_id"),
            "path": bindparam(f"path_{i}"),
            "why": bindparam("why"),
            "created_at": bindparam("now"),
        }
        for i in range(count)
    ]
    return insert.values(rows).on_conflict_do_nothing(index_elements=[claims.c.run_id, claims.c.path])


async def add(db: Connection, run_id: int, paths: list[str], why: str, now: float) -> None:
    """Record `paths` as claimed by `run_id`, all or none (paths it already holds are kept as they were).

    One statement, so no transaction of its own: the connection is shared, and a BEGIN here could
    meet another writer's open one.
    """
    if not paths:
        return
    await core.execute(
        db,
        _add(core.dialect(db), len(paths)),
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
