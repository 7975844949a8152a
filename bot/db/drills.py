"""Fire drills in storage: the `drills` table, and what the other queries leave out for drills.

A drill is a row from its start to its end (`begin`, `reached`, `end`): the stage it saw happen last,
its incident, run and proposal. At most one row is unfinished — `unfinished` is 1 until the drill ends
and UNIQUE — so `begin` starts a drill only if none is under way, in one statement, on SQLite or
PostgreSQL, whichever process asks. A stop (a crash, a restart) leaves the row unfinished; the next
start finds it (`unfinished`) and ends it as interrupted.

A drill's records are told apart by kind (`mendbot.kernel.drills`): its actions and incidents have a
`drill:` kind, and a run is a drill's when its incident is. The audit and the spending reports use
these conditions so that a drill never counts as the bot's own failures or spend; what drills cost
is reported apart (`drill_spent_since`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from mendbot.db import core
from mendbot.db.core import Connection
from mendbot.kernel.drills import DRILL_KIND_PREFIX

__all__ = [
    "DrillRow",
    "begin",
    "drill_spent_since",
    "end",
    "latest",
    "not_drill_kind",
    "not_drill_run",
    "reached",
    "unfinished",
]


class DrillRow(msgspec.Struct, frozen=True):
    """A stored drill."""

    id: int
    number: int
    process: str | None
    started_at: float
    stage: str
    incident_id: int | None
    run_id: int | None
    proposal_id: int | None
    ended_at: float | None
    outcome: str | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> DrillRow:
        return cls(**{name: row[name] for name in cls.__struct_fields__})


_COLUMNS = "id, number, process, started_at, stage, incident_id, run_id, proposal_id, ended_at, outcome"
# The next number, never below `floor` (the last number of drills counted before this table); nothing
# when another drill is unfinished. SQLite reads `INSERT … SELECT … ON CONFLICT` only with a WHERE.
_BEGIN = f"""
    INSERT INTO drills (number, unfinished, process, started_at, stage)
    SELECT CASE WHEN coalesce(max(number), 0) > CAST(:floor AS BIGINT) THEN max(number)
                ELSE CAST(:floor AS BIGINT) END + 1,
           1, CAST(:process AS TEXT), CAST(:now AS DOUBLE PRECISION), ''
    FROM drills WHERE 1 = 1
    ON CONFLICT (unfinished) DO NOTHING
    RETURNING {_COLUMNS}"""
_UNFINISHED = f"SELECT {_COLUMNS} FROM drills WHERE unfinished IS NOT NULL"
_LATEST = f"SELECT {_COLUMNS} FROM drills ORDER BY number DESC LIMIT 1"
_END = """
    UPDATE drills
    SET unfinished = NULL, ended_at = :now, outcome = :outcome, stage = coalesce(CAST(:stage AS TEXT), stage)
    WHERE id = :id AND unfinished IS NOT NULL"""


async def begin(db: Connection, *, process: str | None, now: float, floor: int = 0) -> DrillRow | None:
    """Start drill number max+1 (at least `floor`+1); None when another drill is still unfinished."""
    found = await core.first(db, _BEGIN, process=process, now=now, floor=floor)
    return DrillRow.of(found) if found is not None else None


async def unfinished(db: Connection) -> DrillRow | None:
    """The drill under way (or left unfinished by a stop), if any."""
    found = await core.first(db, _UNFINISHED)
    return DrillRow.of(found) if found is not None else None


async def latest(db: Connection) -> DrillRow | None:
    """The drill started last, finished or not."""
    found = await core.first(db, _LATEST)
    return DrillRow.of(found) if found is not None else None


async def reached(db: Connection, drill_id: int, stage: str, **records: int | None) -> None:
    """The drill saw `stage` happen; `records` (incident_id, run_id, proposal_id) it now knows."""
    known = {name: value for name, value in records.items() if value is not None}
    unknown = set(known) - {"incident_id", "run_id", "proposal_id"}
    if unknown:
        raise ValueError(f"not a drill's record: {sorted(unknown)}")
    sets = "".join(f", {name} = :{name}" for name in sorted(known))
    await core.execute(
        db, f"UPDATE drills SET stage = :stage{sets} WHERE id = :id", id=drill_id, stage=stage, **known
    )


async def end(db: Connection, drill_id: int, *, outcome: str, now: float, stage: str | None = None) -> bool:
    """End the drill (`outcome`: ok, missed, stopped, failed, interrupted); False if it had ended."""
    return await core.execute(db, _END, id=drill_id, outcome=outcome, now=now, stage=stage) == 1


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
