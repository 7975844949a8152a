"""Queries for the self-audit: aggregates of a period's actions, incidents, runs and spend.

Everything is aggregated by the database; Python gets one row per kind and day, per kind, per
fingerprint or per run state. Times are unix seconds, periods half-open `[start, end)`, days
are UTC days since the epoch. On SQLite the big queries name their index (`INDEXED BY`, migration
0006): without statistics SQLite would pick an index that reads every row of the table, which is
ten times slower on a million actions — and an index that vanished should fail loudly here.
PostgreSQL's planner has statistics and picks them itself.

Written once in the SQL both engines share (`mendbot.db.core`); per engine differ only the hint and
the day of a time (SQLite truncates a REAL cast to INTEGER, PostgreSQL rounds it: `floor` there).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from mendbot.db import core
from mendbot.db.core import Connection
from mendbot.db.drills import not_drill_kind, not_drill_run

__all__ = [
    "FingerprintCount",
    "IncidentCounts",
    "KindDay",
    "RunCount",
    "incident_counts",
    "kind_counts",
    "kind_days",
    "percentile",
    "run_counts",
    "run_spend_by_day",
    "top_fingerprints",
]


@dataclass(frozen=True)
class KindDay:
    kind: str
    day: int  # UTC days since 1970-01-01
    actions: int
    failures: int
    cost_usd: float


@dataclass(frozen=True)
class FingerprintCount:
    fingerprint: str
    kind: str
    error_type: str | None
    message: str | None  # the newest failure's message in the period
    count: int
    first_seen: float | None  # when this failure was first seen at all


@dataclass(frozen=True)
class IncidentCounts:
    opened: int
    resolved: int
    regressed: int  # deployed fixes whose watch saw the failure come back
    open_now: int


@dataclass(frozen=True)
class RunCount:
    kind: str
    state: str
    runs: int
    cost_usd: float


# Fire drills' records (bot/db/drills.py) are never the bot's own failures, runs or spend.
_OPENED = f"""
    SELECT count(*) FROM incidents
    WHERE first_seen >= :start AND first_seen < :end AND {not_drill_kind("kind")}"""
_RESOLVED = f"""
    SELECT count(*) FROM incidents
    WHERE {not_drill_kind("kind")} AND state = 'resolved' AND closed_at >= :start AND closed_at < :end"""
_OWN_RUNS = f"SELECT id FROM runs WHERE {not_drill_run()}"
_REGRESSED = f"""
    SELECT count(DISTINCT run_id) FROM run_events
    WHERE run_id IN ({_OWN_RUNS}) AND event = 'transition' AND state = 'regressed'
        AND ts >= :start AND ts < :end"""
_OPEN_NOW = f"""
    SELECT count(*) FROM incidents WHERE state IN ('open', 'acknowledged') AND {not_drill_kind("kind")}"""
_RUN_COUNTS = f"""
    SELECT kind, state, count(*) AS n, sum(cost_usd) AS cost FROM runs
    WHERE created_at >= :start AND created_at < :end AND {not_drill_run()}
    GROUP BY kind, state ORDER BY kind, state"""


def _day(dialect: str, ts: str) -> str:
    """The UTC day (since the epoch) of a time."""
    days = f"floor({ts} / 86400)" if dialect == "postgresql" else f"{ts} / 86400"
    return f"CAST({days} AS BIGINT)"


@functools.cache
def _kind_days(dialect: str) -> str:
    # SUM of a comparison is SQLite's; PostgreSQL sums no boolean.
    return f"""
    SELECT kind, {_day(dialect, "ts")} AS day, count(*) AS actions,
        sum(CASE WHEN ok = 0 THEN 1 ELSE 0 END) AS failures, sum(cost_usd) AS cost
    FROM actions {core.indexed_by(dialect, "actions_ts_audit")}
    WHERE ts >= :start AND ts < :end AND {not_drill_kind("kind")}
    GROUP BY kind, {_day(dialect, "ts")}"""


@functools.cache
def _kind_counts(dialect: str) -> str:
    return f"""
    SELECT kind, count(*) AS n FROM actions {core.indexed_by(dialect, "actions_ts_audit")}
    WHERE ts >= :start AND ts < :end AND {not_drill_kind("kind")}
    GROUP BY kind"""


@functools.cache
def _percentile(dialect: str) -> str:
    return f"""
    SELECT duration_ms FROM actions {core.indexed_by(dialect, "actions_kind_ts")}
    WHERE kind = :kind AND ts >= :start AND ts < :end
    ORDER BY duration_ms LIMIT 1 OFFSET :offset"""


@functools.cache
def _top_fingerprints(dialect: str) -> str:
    return f"""
    SELECT f.fingerprint, coalesce(g.kind, f.kind) AS kind, g.error_type, g.first_seen, f.n,
        (SELECT m.error_message FROM actions AS m
         WHERE m.fingerprint = f.fingerprint AND m.ts >= :start AND m.ts < :end
         ORDER BY m.ts DESC LIMIT 1) AS message
    FROM (
        SELECT fingerprint, max(kind) AS kind, count(*) AS n
        FROM actions {core.indexed_by(dialect, "actions_failures_ts")}
        WHERE ts >= :start AND ts < :end AND fingerprint IS NOT NULL AND {not_drill_kind("kind")}
        GROUP BY fingerprint ORDER BY n DESC, fingerprint LIMIT :limit
    ) AS f
    LEFT OUTER JOIN fingerprints AS g ON g.fingerprint = f.fingerprint
    ORDER BY f.n DESC, f.fingerprint"""


@functools.cache
def _run_spend_by_day(dialect: str) -> str:
    return f"""
    SELECT {_day(dialect, "ts")} AS day, sum(cost_usd) AS cost FROM run_events
    WHERE ts >= :start AND ts < :end AND cost_usd != 0 AND run_id IN ({_OWN_RUNS})
    GROUP BY {_day(dialect, "ts")}"""


async def kind_days(db: Connection, start: float, end: float) -> list[KindDay]:
    """Actions, failures and spend per kind and UTC day in `[start, end)`."""
    found = await core.rows(db, _kind_days(core.dialect(db)), start=start, end=end)
    return [
        KindDay(row["kind"], int(row["day"]), row["actions"], int(row["failures"]), float(row["cost"]))
        for row in found
    ]


async def kind_counts(db: Connection, start: float, end: float) -> dict[str, int]:
    """Actions per kind in `[start, end)`."""
    found = await core.rows(db, _kind_counts(core.dialect(db)), start=start, end=end)
    return {row["kind"]: row["n"] for row in found}


async def percentile(db: Connection, kind: str, start: float, end: float, rank: int) -> float | None:
    """The `rank`-th smallest duration (1-based) of a kind's actions in `[start, end)`."""
    if rank < 1:
        return None
    found = await core.scalar(
        db, _percentile(core.dialect(db)), kind=kind, start=start, end=end, offset=rank - 1
    )
    return float(found) if found is not None else None


async def top_fingerprints(db: Connection, start: float, end: float, limit: int) -> list[FingerprintCount]:
    """The fingerprints that failed most often in `[start, end)`, most first."""
    found = await core.rows(db, _top_fingerprints(core.dialect(db)), start=start, end=end, limit=limit)
    return [
        FingerprintCount(
            fingerprint=row["fingerprint"],
            kind=row["kind"],
            error_type=row["error_type"],
            message=row["message"],
            count=row["n"],
            first_seen=row["first_seen"],
        )
        for row in found
    ]


async def _count(db: Connection, sql: str, **params: Any) -> int:
    return int(await core.scalar(db, sql, **params) or 0)


async def incident_counts(db: Connection, start: float, end: float) -> IncidentCounts:
    """Incidents first seen, resolved and regressed in `[start, end)`, and those open now."""
    return IncidentCounts(
        opened=await _count(db, _OPENED, start=start, end=end),
        resolved=await _count(db, _RESOLVED, start=start, end=end),
        regressed=await _count(db, _REGRESSED, start=start, end=end),
        open_now=await _count(db, _OPEN_NOW),
    )


async def run_counts(db: Connection, start: float, end: float) -> list[RunCount]:
    """Runs created in `[start, end)` by kind and the state they are in now, with their cost."""
    return [
        RunCount(row["kind"], row["state"], row["n"], float(row["cost"]))
        for row in await core.rows(db, _RUN_COUNTS, start=start, end=end)
    ]


async def run_spend_by_day(db: Connection, start: float, end: float) -> dict[int, float]:
    """What runs cost per UTC day in `[start, end)`, from their events (model requests and more)."""
    found = await core.rows(db, _run_spend_by_day(core.dialect(db)), start=start, end=end)
    return {int(row["day"]): float(row["cost"]) for row in found}
