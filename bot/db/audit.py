"""Queries for the self-audit: aggregates of a period's actions, incidents, runs and spend.

Everything is aggregated by SQLite; Python gets one row per kind and day, per kind, per
fingerprint or per run state. Times are unix seconds, periods half-open `[start, end)`, days
are UTC days since the epoch. The big queries name their index (`INDEXED BY`, migration 0006):
without statistics SQLite would pick an index that reads every row of the table, which is ten
times slower on a million actions — and an index that vanished should fail loudly here.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

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


async def kind_days(db: aiosqlite.Connection, start: float, end: float) -> list[KindDay]:
    """Actions, failures and spend per kind and UTC day in `[start, end)`."""
    async with db.execute(
        "SELECT kind, CAST(ts / 86400 AS INTEGER) AS day, COUNT(*) AS actions, SUM(ok = 0) AS failures,"
        " SUM(cost_usd) AS cost FROM actions INDEXED BY actions_ts_audit"
        " WHERE ts >= ? AND ts < ? GROUP BY kind, day",
        (start, end),
    ) as cursor:
        return [
            KindDay(row["kind"], row["day"], row["actions"], row["failures"], float(row["cost"]))
            for row in await cursor.fetchall()
        ]


async def kind_counts(db: aiosqlite.Connection, start: float, end: float) -> dict[str, int]:
    """Actions per kind in `[start, end)`."""
    async with db.execute(
        "SELECT kind, COUNT(*) FROM actions INDEXED BY actions_ts_audit"
        " WHERE ts >= ? AND ts < ? GROUP BY kind",
        (start, end),
    ) as cursor:
        return {row[0]: row[1] for row in await cursor.fetchall()}


async def percentile(
    db: aiosqlite.Connection, kind: str, start: float, end: float, rank: int
) -> float | None:
    """The `rank`-th smallest duration (1-based) of a kind's actions in `[start, end)`."""
    if rank < 1:
        return None
    async with db.execute(
        "SELECT duration_ms FROM actions INDEXED BY actions_kind_ts"
        " WHERE kind = ? AND ts >= ? AND ts < ? ORDER BY duration_ms LIMIT 1 OFFSET ?",
        (kind, start, end, rank - 1),
    ) as cursor:
        row = await cursor.fetchone()
    return float(row[0]) if row is not None else None


async def top_fingerprints(
    db: aiosqlite.Connection, start: float, end: float, limit: int
) -> list[FingerprintCount]:
    """The fingerprints that failed most often in `[start, end)`, most first."""
    async with db.execute(
        "SELECT f.fingerprint, coalesce(g.kind, f.kind) AS kind, g.error_type, g.first_seen, f.n,"
        " (SELECT m.error_message FROM actions AS m WHERE m.fingerprint = f.fingerprint"
        "  AND m.ts >= :start AND m.ts < :end ORDER BY m.ts DESC LIMIT 1) AS message"
        " FROM (SELECT fingerprint, max(kind) AS kind, COUNT(*) AS n"
        "       FROM actions INDEXED BY actions_failures_ts"
        "       WHERE ts >= :start AND ts < :end AND fingerprint IS NOT NULL"
        "       GROUP BY fingerprint ORDER BY n DESC, fingerprint LIMIT :limit) AS f"
        " LEFT JOIN fingerprints AS g ON g.fingerprint = f.fingerprint"
        " ORDER BY f.n DESC, f.fingerprint",
        {"start": start, "end": end, "limit": limit},
    ) as cursor:
        return [
            FingerprintCount(
                fingerprint=row["fingerprint"],
                kind=row["kind"],
                error_type=row["error_type"],
                message=row["message"],
                count=row["n"],
                first_seen=row["first_seen"],
            )
            for row in await cursor.fetchall()
        ]


async def _count(db: aiosqlite.Connection, sql: str, args: tuple[object, ...]) -> int:
    async with db.execute(sql, args) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row is not None else 0


async def incident_counts(db: aiosqlite.Connection, start: float, end: float) -> IncidentCounts:
    """Incidents first seen, resolved and regressed in `[start, end)`, and those open now."""
    return IncidentCounts(
        opened=await _count(
            db, "SELECT COUNT(*) FROM incidents WHERE first_seen >= ? AND first_seen < ?", (start, end)
        ),
        resolved=await _count(
            db,
            "SELECT COUNT(*) FROM incidents WHERE state = 'resolved' AND closed_at >= ? AND closed_at < ?",
            (start, end),
        ),
        regressed=await _count(
            db,
            "SELECT COUNT(DISTINCT run_id) FROM run_events"
            " WHERE event = 'transition' AND state = 'regressed' AND ts >= ? AND ts < ?",
            (start, end),
        ),
        open_now=await _count(
            db, "SELECT COUNT(*) FROM incidents WHERE state IN ('open', 'acknowledged')", ()
        ),
    )


async def run_counts(db: aiosqlite.Connection, start: float, end: float) -> list[RunCount]:
    """Runs created in `[start, end)` by kind and the state they are in now, with their cost."""
    async with db.execute(
        "SELECT kind, state, COUNT(*) AS n, SUM(cost_usd) AS cost FROM runs"
        " WHERE created_at >= ? AND created_at < ? GROUP BY kind, state ORDER BY kind, state",
        (start, end),
    ) as cursor:
        return [
            RunCount(row["kind"], row["state"], row["n"], float(row["cost"]))
            for row in await cursor.fetchall()
        ]


async def run_spend_by_day(db: aiosqlite.Connection, start: float, end: float) -> dict[int, float]:
    """What runs cost per UTC day in `[start, end)`, from their events (model requests and more)."""
    async with db.execute(
        "SELECT CAST(ts / 86400 AS INTEGER) AS day, SUM(cost_usd) FROM run_events"
        " WHERE ts >= ? AND ts < ? AND cost_usd != 0 GROUP BY day",
        (start, end),
    ) as cursor:
        return {row[0]: float(row[1]) for row in await cursor.fetchall()}
