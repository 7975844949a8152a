"""What the queries leave out for fire drills: their actions, incidents and the runs on those incidents.

A drill's records are told apart by kind (`bot.kernel.drills`): its actions and incidents have a
`drill:` kind, and a run is a drill's when its incident is. The audit and the spending reports use
these conditions so that a drill never counts as the bot's own failures or spend; what drills cost
is reported apart (`drill_spent_since`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, func, or_, select

from bot.db import core
from bot.db.core import Connection
from bot.db.schema import incidents, run_events, runs
from bot.kernel.drills import DRILL_KIND_PREFIX

__all__ = ["drill_spent_since", "not_drill_kind", "not_drill_run"]

_LIKE = DRILL_KIND_PREFIX + "%"


def _drill_incidents() -> Select[Any]:
    return select(incidents.c.id).where(incidents.c.kind.like(_LIKE))


def not_drill_kind(kind: ColumnElement[Any]) -> ColumnElement[bool]:
    """An action's or incident's kind that is not a drill's."""
    return ~kind.like(_LIKE)


def not_drill_run(incident_id: ColumnElement[Any] = runs.c.incident_id) -> ColumnElement[bool]:
    """A run (by its incident id column) that is not on a drill's incident."""
    # NOT IN with a NULL left side is NULL, not true: a run without an incident is named apart.
    return or_(incident_id.is_(None), incident_id.not_in(_drill_incidents()))


_DRILL_SPENT_SINCE = (
    select(func.coalesce(func.sum(run_events.c.cost_usd), 0))
    .select_from(run_events.join(runs, runs.c.id == run_events.c.run_id))
    .where(run_events.c.ts >= bindparam("since"), runs.c.incident_id.in_(_drill_incidents()))
)


async def drill_spent_since(db: Connection, since: float) -> float:
    """What runs on drill incidents have cost at or after `since`."""
    return float(await core.scalar(db, _DRILL_SPENT_SINCE, since=since) or 0.0)
