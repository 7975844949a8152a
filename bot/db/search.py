"""Queries behind "what does 'this' mean": full-text search over incidents and distinct failures.

`search_index` holds every incident (row 2*id) and every fingerprint (row 2*search_failures.id+1),
kept in sync by triggers the baseline revision makes on each engine: on SQLite an FTS5 table ranked
by bm25, on PostgreSQL a table of weighted `tsvector` documents ranked by `ts_rank`. The two scales
differ; callers only compare relevances of one search with each other. Nothing here reads
`actions`, so resolving a request costs the same with a million rows stored.

Written once in the SQL both engines share (`mendbot.db.core`); only the ranked match differs per engine.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from mendbot.db import core
from mendbot.db import incidents as incident_queries
from mendbot.db.core import Connection

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

# bm25 column weights: summary, kind, error_type, message, frames. (On PostgreSQL the documents
# carry the weights instead: summary and error type A, kind B, message C, frames D.)
_WEIGHTS = (1.0, 2.0, 3.0, 2.0, 1.0)

_INCIDENTS_BY_IDS = "SELECT * FROM incidents WHERE id IN (:ids)"
_FAILURES_BY_SEARCH_IDS = """
    SELECT search_failures.id AS search_id, fingerprints.*
    FROM search_failures JOIN fingerprints ON fingerprints.fingerprint = search_failures.fingerprint
    WHERE search_failures.id IN (:ids)"""
_FAILURE_KINDS = "SELECT kind FROM fingerprints UNION SELECT kind FROM incidents"
_LATEST_INCIDENTS_OF_KINDS = """
    SELECT * FROM incidents WHERE kind IN (:kinds) ORDER BY last_seen DESC LIMIT :limit"""
_LATEST_ACTIVE_INCIDENTS_OF_KINDS = """
    SELECT * FROM incidents WHERE kind IN (:kinds) AND state != 'resolved'
    ORDER BY last_seen DESC LIMIT :limit"""
_LATEST_FAILURES_OF_KINDS = """
    SELECT * FROM fingerprints WHERE kind IN (:kinds) ORDER BY last_seen DESC LIMIT :limit"""
_FAILURE = "SELECT * FROM fingerprints WHERE fingerprint = :fingerprint"
_INCIDENTS_OF_FINGERPRINTS = "SELECT * FROM incidents WHERE fingerprint IN (:fingerprints) ORDER BY last_seen"
_ACTIVE_KIND_WIDE_INCIDENTS = """
    SELECT * FROM incidents WHERE kind IN (:kinds) AND fingerprint IS NULL AND state != 'resolved'
    ORDER BY last_seen"""
# (rid, relevance, message) of the documents matching `expression`, most relevant first; each
# engine's search_index is its own (see the baseline revision). bm25 takes the FTS5 table itself as
# its first argument, and ranks better matches lower.
_BM25 = f"bm25(search_index, {', '.join(str(weight) for weight in _WEIGHTS)})"
_RANKED = {
    "sqlite": f"""
    SELECT rowid AS rid, -{_BM25} AS relevance, message FROM search_index
    WHERE search_index MATCH :expression ORDER BY {_BM25} LIMIT :limit""",
    "postgresql": """
    SELECT rid, ts_rank(document, query) AS relevance, message
    FROM search_index, websearch_to_tsquery('english', :expression) AS query
    WHERE document @@ query ORDER BY relevance DESC, rid LIMIT :limit""",
}


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


def _websearch_expression(words: Iterable[str]) -> str:
    """The same query for PostgreSQL's `websearch_to_tsquery`: each word a quoted phrase, any of
    them. A quote cannot be escaped there, so one inside a word becomes a space."""
    quoted = ['"' + word.replace('"', " ") + '"' for word in dict.fromkeys(words) if word.strip('" ')]
    return " or ".join(quoted)


def _failure(row: Mapping[str, Any]) -> Failure:
    return Failure(
        fingerprint=row["fingerprint"],
        kind=row["kind"],
        error_type=row["error_type"],
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        count=row["count"],
    )


def _incident(row: dict[str, Any]) -> dict[str, Any]:
    # `decode` reads its row as a mapping: a dict serves as well as an aiosqlite.Row.
    return incident_queries.decode(cast(Any, row))


async def search(db: Connection, words: Iterable[str], limit: int = 50) -> list[SearchHit]:
    """Incidents and failures matching any of the words, most relevant first."""
    dialect = core.dialect(db)
    words = list(words)
    expression = _websearch_expression(words) if dialect == "postgresql" else match_expression(words)
    if not expression:
        return []
    ranked = [
        (int(row["rid"]), float(row["relevance"]), row["message"])
        for row in await core.rows(db, _RANKED[dialect], expression=expression, limit=limit)
    ]
    incident_ids = [rowid // 2 for rowid, _, _ in ranked if rowid % 2 == 0]
    failure_ids = [rowid // 2 for rowid, _, _ in ranked if rowid % 2 == 1]
    found_incidents: dict[int, dict[str, Any]] = {}
    failures: dict[int, Failure] = {}
    if incident_ids:
        found_incidents = {
            row["id"]: _incident(row) for row in await core.rows(db, _INCIDENTS_BY_IDS, ids=incident_ids)
        }
    if failure_ids:
        failures = {
            row["search_id"]: _failure(row)
            for row in await core.rows(db, _FAILURES_BY_SEARCH_IDS, ids=failure_ids)
        }
    hits = []
    for rowid, relevance, message in ranked:
        if rowid % 2 == 0 and rowid // 2 in found_incidents:
            hits.append(SearchHit(relevance, incident=found_incidents[rowid // 2], message=message))
        elif rowid % 2 == 1 and rowid // 2 in failures:
            hits.append(SearchHit(relevance, failure=failures[rowid // 2], message=message))
    return hits


async def failure_kinds(db: Connection) -> set[str]:
    """Every kind that has failed or had an incident (both tables are small)."""
    return {row["kind"] for row in await core.rows(db, _FAILURE_KINDS)}


async def latest_incidents_of_kinds(
    db: Connection, kinds: Collection[str], *, active_only: bool = True, limit: int = 5
) -> list[dict[str, Any]]:
    """Incidents of these kinds, newest `last_seen` first; only unresolved ones by default."""
    if not kinds:
        return []
    statement = _LATEST_ACTIVE_INCIDENTS_OF_KINDS if active_only else _LATEST_INCIDENTS_OF_KINDS
    return [_incident(row) for row in await core.rows(db, statement, kinds=list(kinds), limit=limit)]


async def latest_failures_of_kinds(db: Connection, kinds: Collection[str], limit: int = 5) -> list[Failure]:
    """Distinct failures of these kinds, most recently seen first."""
    if not kinds:
        return []
    return [
        _failure(row)
        for row in await core.rows(db, _LATEST_FAILURES_OF_KINDS, kinds=list(kinds), limit=limit)
    ]


async def failure(db: Connection, fingerprint: str) -> Failure | None:
    row = await core.first(db, _FAILURE, fingerprint=fingerprint)
    return _failure(row) if row is not None else None


async def incident_for_failure(db: Connection, fingerprint: str, kind: str) -> dict[str, Any] | None:
    """The newest incident opened for this fingerprint, else an unresolved kind-wide one of its kind."""
    found = await incidents_for_failures(db, [(fingerprint, kind)])
    return found.get(fingerprint)


async def incidents_for_failures(
    db: Connection, failures: Collection[tuple[str, str]]
) -> dict[str, dict[str, Any]]:
    """`incident_for_failure` for many (fingerprint, kind) pairs in two queries."""
    if not failures:
        return {}
    fingerprints_asked = sorted({fingerprint for fingerprint, _ in failures})
    by_print: dict[str, dict[str, Any]] = {}
    for row in await core.rows(db, _INCIDENTS_OF_FINGERPRINTS, fingerprints=fingerprints_asked):
        by_print[row["fingerprint"]] = _incident(row)  # the newest comes last
    kinds = sorted({kind for fingerprint, kind in failures if fingerprint not in by_print})
    by_kind: dict[str, dict[str, Any]] = {}
    if kinds:
        for row in await core.rows(db, _ACTIVE_KIND_WIDE_INCIDENTS, kinds=kinds):
            by_kind[row["kind"]] = _incident(row)
    found = {}
    for fingerprint, kind in failures:
        incident = by_print.get(fingerprint) or by_kind.get(kind)
        if incident is not None:
            found[fingerprint] = incident
    return found
