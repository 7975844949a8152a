"""Queries for the self-audit: aggregates of a period's actions, incidents, runs and spend.

Everything is aggregated by the database; Python gets one row per kind and day, per kind, per
fingerprint or per run state. Times are unix seconds, periods half-open `[start, end)`, days
are UTC days since the epoch. On SQLite the big queries name their index (`INDEXED BY`, migration
0006): without statistics SQLite would pick an index that reads every row of the table, which is
ten times slower on a million actions — and an index that vanished should fail loudly here.
PostgreSQL's planner has statistics and picks them itself.

Written once as SQLAlchemy Core statements (`bot.db.core`); per engine differ only the hint and
the day of a time (SQLite truncates a REAL cast to INTEGER, PostgreSQL rounds it: `floor` there).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import BigInteger, ColumnElement, Executable, bindparam, case, func, literal_column, select

from bot.db import core
from bot.db.core import Connection
from bot.db.drills import not_drill_kind, not_drill_run
from bot.db.schema import actions, incidents, run_events, runs
from bot.db.schema import fingerprints as fingerprints_table

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
_OPENED = select(func.count()).where(
    incidents.c.first_seen >= bindparam("start"),
    incidents.c.first_seen < bindparam("end"),
    not_drill_kind(incidents.c.kind),
)
_RESOLVED = select(func.count()).where(
    not_drill_kind(incidents.c.kind),
    incidents.c.state == "resolved",
    incidents.c.closed_at >= bindparam("start"),
    incidents.c.closed_at < bindparam("end"),
)
_REGRESSED = select(func.count(run_events.c.run_id.distinct())).where(
    run_events.c.run_id.in_(select(runs.c.id).where(not_drill_run())),
    run_events.c.event == "transition",
    run_events.c.state == "regressed",
    run_events.c.ts >= bindparam("start"),
    run_events.c.ts < bindparam("end"),
)
_OPEN_NOW = select(func.count()).where(
    incidents.c.state.in_(["open", "acknowledged"]), not_drill_kind(incidents.c.kind)
)
_RUN_COUNTS = (
    select(runs.c.kind, runs.c.state, func.count().label("n"), func.sum(runs.c.cost_usd).label("cost"))
    .where(runs.c.created_at >= bindparam("start"), runs.c.created_at < bindparam("end"), not_drill_run())
    .group_by(runs.c.kind, runs.c.state)
    .order_by(runs.c.kind, runs.c.state)
)


def _day(dialect: str, ts: ColumnElement[Any]) -> ColumnElement[int]:
    """The UTC day (since the epoch) of a time: a literal divisor, so GROUP BY repeats it exactly."""
    days = ts.op("/")(literal_column("86400"))
    return sa.cast(func.floor(days) if dialect == "postgresql" else days, BigInteger)


@functools.cache
def _kind_days(dialect: str) -> Executable:
    table, c = core.indexed(dialect, actions, "actions_ts_audit")
    day = _day(dialect, c["ts"])
    return (
        select(
            c["kind"],
            day.label("day"),
            func.count().label("actions"),
            # SUM of a comparison is SQLite's; PostgreSQL sums no boolean.
            func.sum(case((c["ok"] == 0, 1), else_=0)).label("failures"),
            func.sum(c["cost_usd"]).label("cost"),
        )
        .select_from(table)
        .where(c["ts"] >= bindparam("start"), c["ts"] < bindparam("end"), not_drill_kind(c["kind"]))
        .group_by(c["kind"], day)
    )


@functools.cache
def _kind_counts(dialect: str) -> Executable:
    table, c = core.indexed(dialect, actions, "actions_ts_audit")
    return (
        select(c["kind"], func.count().label("n"))
        .select_from(table)
        .where(c["ts"] >= bindparam("start"), c["ts"] < bindparam("end"), not_drill_kind(c["kind"]))
        .group_by(c["kind"])
    )


@functools.cache
def _percentile(dialect: str) -> Executable:
    table, c = core.indexed(dialect, actions, "actions_kind_ts")
    return (
        select(c["duration_ms"])
        .select_from(table)
        .where(c["kind"] == bindparam("kind"), c["ts"] >= bindparam("start"), c["ts"] < bindparam("end"))
        .order_by(c["duration_ms"])
        .limit(1)
        .offset(bindparam("offset"))
    )


@functools.cache
def _top_fingerprints(dialect: str) -> Executable:
    table, c = core.indexed(dialect, actions, "actions_failures_ts")
    n = func.count().label("n")
    counted = (
        select(c["fingerprint"], func.max(c["kind"]).label("kind"), n)
        .select_from(table)
        .where(
            c["ts"] >= bindparam("start"),
            c["ts"] < bindparam("end"),
            c["fingerprint"].is_not(None),
            not_drill_kind(c["kind"]),
        )
        .group_by(c["fingerprint"])
        .order_by(n.desc(), c["fingerprint"])
        .limit(bindparam("limit"))
        .subquery("f")
    )
    newest = actions.alias("m")
    message = (
        select(newest.c.error_message)
        .where(
            newest.c.fingerprint == counted.c.fingerprint,
            newest.c.ts >= bindparam("start"),
            newest.c.ts < bindparam("end"),
        )
        .order_by(newest.c.ts.desc())
        .limit(1)
        .scalar_subquery()
    )
    known = fingerprints_table.alias("g")
    return (
        select(
            counted.c.fingerprint,
            func.coalesce(known.c.kind, counted.c.kind).label("kind"),
            known.c.error_type,
            known.c.first_seen,
            counted.c.n,
            message.label("message"),
        )
        .select_from(counted.outerjoin(known, known.c.fingerprint == counted.c.fingerprint))
        .order_by(counted.c.n.desc(), counted.c.fingerprint)
    )


@functools.cache
def _run_spend_by_day(dialect: str) -> Executable:
    day = _day(dialect, run_events.c.ts)
    return (
        select(day.label("day"), func.sum(run_events.c.cost_usd).label("cost"))
        .where(
            run_events.c.ts >= bindparam("start"),
            run_events.c.ts < bindparam("end"),
            run_events.c.cost_usd != 0,
            run_events.c.run_id.in_(select(runs.c.id).where(not_drill_run())),
        )
        .group_by(day)
    )


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


async def _count(db: Connection, statement: Executable, **params: Any) -> int:
    return int(await core.scalar(db, statement, **params) or 0)


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
