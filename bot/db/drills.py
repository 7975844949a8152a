"""What the queries leave out for fire drills: their actions, incidents and the runs on those incidents.

A drill's records are told apart by kind (`bot.kernel.drills`): its actions and incidents have a
`drill:` kind, and a run is a drill's when its incident is. The audit and the spending reports use
these conditions so that a drill never counts as the bot's own failures or spend; what drills cost
is reported apart (`drill_spent_since`).
"""

from __future__ import annotations

from bot.db import core
from bot.db.core import Connection
from bot.kernel.drills import DRILL_KIND_PREFIX

__all__ = ["drill_spent_since", "not_drill_kind", "not_drill_run"]

_LIKE = f"'{DRILL_KIND_PREFIX}%'"
_DRILL_INCIDENTS = f"SELECT id FROM incidents WHERE kind LIKE {_LIKE}"


def not_drill_kind(kind: str) -> str:
    """The condition that an action's or incident's `kind` (a column) is not a drill's."""
    return f"{kind} NOT LIKE {_LIKE}"


def not_drill_run(incident_id: str = "runs.incident_id") -> str:
    """The condition that a run (by its incident id column) is not on a drill's incident."""
    # NOT IN with a NULL left side is NULL, not true: a run without an incident is named apart.
    return f"({incident_id} IS NULL OR {incident_id} NOT IN ({_DRILL_INCIDENTS}))"


_DRILL_SPENT_SINCE = f"""
    SELECT coalesce(sum(run_events.cost_usd), 0) FROM run_events JOIN runs ON runs.id = run_events.run_id
    WHERE run_events.ts >= :since AND runs.incident_id IN ({_DRILL_INCIDENTS})"""


async def drill_spent_since(db: Connection, since: float) -> float:
    """What runs on drill incidents have cost at or after `since`."""
    return float(await core.scalar(db, _DRILL_SPENT_SINCE, since=since) or 0.0)
