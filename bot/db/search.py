"""Queries behind "what does 'this' mean": full-text search over incidents and distinct failures.

`search_index` (migration 0004) is one FTS5 table holding every incident (row 2*id) and every
fingerprint (row 2*search_failures.id+1), kept in sync by triggers; see the migration for why.
Nothing here reads `actions`, so resolving a request costs the same with a million rows stored.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from bot.db import incidents as incident_queries

__all__ = [
    "Failure",
    "SearchHit",
    "failure",
    "failure_kinds",
    "incident_for_failure",
    "incidents_for_failures",
    "latest_failures_of_kinds",
    "latest_incidents_of_kinds",
    "match_expression",
    "search",
]

# bm25 column weights: summary, kind, error_type, message, frames.
_WEIGHTS = "1.0, 2.0, 3.0, 2.0, 1.0"


@dataclass(frozen=True, slots=True)
class Failure:
    """One distinct failure (a `fingerprints` row)."""

    fingerprint: str
    kind: str
    error_type: str | None
    first_seen: float
    last_seen: float
    count: int


@dataclass(frozen=True, slots=True)
class SearchHit:
    """An incident or a distinct failure matching the words, with bm25 relevance (higher: better)."""

    relevance: float
    incident: dict[str, Any] | None = None  # decoded incidents row
    failure: Failure | None = None
    message: str | None = None  # the indexed error message

    @property
    def last_seen(self) -> float:
        if self.incident is not None:
            return float(self.incident["last_seen"])
        assert self.failure is not None
        return self.failure.last_seen


def match_expression(words: Iterable[str]) -> str:
    """An FTS5 query matching any of the words; each is quoted, so none is read as syntax."""
    quoted = ['"' + word.replace('"', '""') + '"' for word in dict.fromkeys(words) if word]
    return " OR ".join(quoted)


def _failure(row: aiosqlite.Row) -> Failure:
    return Failure(
        fingerprint=row["fingerprint"],
        kind=row["kind"],
        error_type=row["error_type"],
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        count=row["count"],
    )


async def search(db: aiosqlite.Connection, words: Iterable[str], limit: int = 50) -> list[SearchHit]:
    """Incidents and failures matching any of the words, best bm25 first."""
    expression = match_expression(words)
    if not expression:
        return []
    async with db.execute(
        f"SELECT rowid, -bm25(search_index, {_WEIGHTS}) AS relevance, message FROM search_index"
        f" WHERE search_index MATCH ? ORDER BY bm25(search_index, {_WEIGHTS}) LIMIT ?",
        (expression, limit),
    ) as cursor:
        ranked = [(int(row[0]), float(row[1]), row[2]) for row in await cursor.fetchall()]
    incident_ids = [rowid // 2 for rowid, _, _ in ranked if rowid % 2 == 0]
    failure_ids = [rowid // 2 for rowid, _, _ in ranked if rowid % 2 == 1]
    incidents: dict[int, dict[str, Any]] = {}
    failures: dict[int, Failure] = {}
    if incident_ids:
        marks = ", ".join("?" * len(incident_ids))
        async with db.execute(f"SELECT * FROM incidents WHERE id IN ({marks})", incident_ids) as cursor:
            incidents = {row["id"]: incident_queries.decode(row) for row in await cursor.fetchall()}
    if failure_ids:
        marks = ", ".join("?" * len(failure_ids))
        async with db.execute(
            "SELECT s.id AS search_id, g.* FROM search_failures AS s"
            f" JOIN fingerprints AS g ON g.fingerprint = s.fingerprint WHERE s.id IN ({marks})",
            failure_ids,
        ) as cursor:
            failures = {row["search_id"]: _failure(row) for row in await cursor.fetchall()}
    hits = []
    for rowid, relevance, message in ranked:
        if rowid % 2 == 0 and rowid // 2 in incidents:
            hits.append(SearchHit(relevance, incident=incidents[rowid // 2], message=message))
        elif rowid % 2 == 1 and rowid // 2 in failures:
            hits.append(SearchHit(relevance, failure=failures[rowid // 2], message=message))
    return hits


async def failure_kinds(db: aiosqlite.Connection) -> set[str]:
    """Every kind that has failed or had an incident (both tables are small)."""
    async with db.execute("SELECT kind FROM fingerprints UNION SELECT kind FROM incidents") as cursor:
        return {row[0] for row in await cursor.fetchall()}


async def latest_incidents_of_kinds(
    db: aiosqlite.Connection, kinds: Collection[str], *, active_only: bool = True, limit: int = 5
) -> list[dict[str, Any]]:
    """Incidents of these kinds, newest `last_seen` first; only unresolved ones by default."""
    if not kinds:
        return []
    marks = ", ".join("?" * len(kinds))
    state = " AND state != 'resolved'" if active_only else ""
    async with db.execute(
        f"SELECT * FROM incidents WHERE kind IN ({marks}){state} ORDER BY last_seen DESC LIMIT ?",
        (*kinds, limit),
    ) as cursor:
        return [incident_queries.decode(row) for row in await cursor.fetchall()]


async def latest_failures_of_kinds(
    db: aiosqlite.Connection, kinds: Collection[str], limit: int = 5
) -> list[Failure]:
    """Distinct failures of these kinds, most recently seen first."""
    if not kinds:
        return []
    marks = ", ".join("?" * len(kinds))
    async with db.execute(
        f"SELECT * FROM fingerprints WHERE kind IN ({marks}) ORDER BY last_seen DESC LIMIT ?",
        (*kinds, limit),
    ) as cursor:
        return [_failure(row) for row in await cursor.fetchall()]


async def failure(db: aiosqlite.Connection, fingerprint: str) -> Failure | None:
    async with db.execute("SELECT * FROM fingerprints WHERE fingerprint = ?", (fingerprint,)) as cursor:
        row = await cursor.fetchone()
    return _failure(row) if row is not None else None


async def incident_for_failure(
    db: aiosqlite.Connection, fingerprint: str, kind: str
) -> dict[str, Any] | None:
    """The newest incident opened for this fingerprint, else an unresolved kind-wide one of its kind."""
    found = await incidents_for_failures(db, [(fingerprint, kind)])
    return found.get(fingerprint)


async def incidents_for_failures(
    db: aiosqlite.Connection, failures: Collection[tuple[str, str]]
) -> dict[str, dict[str, Any]]:
    """`incident_for_failure` for many (fingerprint, kind) pairs in two queries."""
    if not failures:
        return {}
    fingerprints = sorted({fingerprint for fingerprint, _ in failures})
    by_print: dict[str, dict[str, Any]] = {}
    async with db.execute(
        f"SELECT * FROM incidents WHERE fingerprint IN ({', '.join('?' * len(fingerprints))})"
        " ORDER BY last_seen",
        fingerprints,
    ) as cursor:
        for row in await cursor.fetchall():
            by_print[row["fingerprint"]] = incident_queries.decode(row)  # the newest comes last
    kinds = sorted({kind for fingerprint, kind in failures if fingerprint not in by_print})
    by_kind: dict[str, dict[str, Any]] = {}
    if kinds:
        async with db.execute(
            f"SELECT * FROM incidents WHERE kind IN ({', '.join('?' * len(kinds))})"
            " AND fingerprint IS NULL AND state != 'resolved' ORDER BY last_seen",
            kinds,
        ) as cursor:
            for row in await cursor.fetchall():
                by_kind[row["kind"]] = incident_queries.decode(row)
    found = {}
    for fingerprint, kind in failures:
        incident = by_print.get(fingerprint) or by_kind.get(kind)
        if incident is not None:
            found[fingerprint] = incident
    return found
