"""Full-text search and the incident/failure look-ups behind it behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mendbot.db import actions as action_queries
from mendbot.db import core
from mendbot.db import search as queries
from mendbot.db.records import ActionRecord
from tests.harness.sql import insert, sql

pytestmark = pytest.mark.engines


async def _incident(
    db: core.Connection,
    *,
    kind: str = "command:roll",
    fingerprint: str | None = None,
    state: str = "open",
    last_seen: float = 100.0,
    summary: str = "roll keeps failing",
    error_type: str = "ZeroDivisionError",
    message: str = "division by zero",
) -> int:
    sample = {"error_type": error_type, "error_message": message, "frames": ["cogs/dice.py:3:roll"]}
    values: dict[str, Any] = {
        "rule": "repeat",
        "rules": "[]",
        "level": "error",
        "kind": kind,
        "fingerprint": fingerprint,
        "state": state,
        "summary": summary,
        "first_seen": last_seen,
        "last_seen": last_seen,
        "count": 1,
        "user_ids": "[]",
        "sample": json.dumps(sample),
        "updated_at": last_seen,
    }
    return await insert(db, "incidents", **values)


async def _failures(db: core.Connection, *specs: tuple[str, str, str, str, float]) -> None:
    """Failing actions as (fingerprint, kind, error type, message, ts): their fingerprints are indexed."""
    await action_queries.insert_many(
        db,
        [
            ActionRecord(
                ts=ts,
                kind=kind,
                source="test",
                ok=False,
                duration_ms=1.0,
                error_type=error_type,
                error_message=message,
                fingerprint=fingerprint,
                frames=["cogs/x.py:1:f"],
            )
            for fingerprint, kind, error_type, message, ts in specs
        ],
    )


async def test_search_finds_incidents_and_failures_by_any_word(engine_db: core.Connection) -> None:
    """Any of the words matches; an incident and a distinct failure both come back, with their message."""
    incident_id = await _incident(engine_db)
    await _failures(engine_db, ("fp-remind", "command:remind", "ValueError", "invalid duration", 50.0))
    hits = await queries.search(engine_db, ["division", "duration"])
    assert {hit.incident["id"] for hit in hits if hit.incident} == {incident_id}
    [failure_hit] = [hit for hit in hits if hit.failure]
    assert failure_hit.failure is not None and failure_hit.failure.fingerprint == "fp-remind"
    assert (failure_hit.message, failure_hit.last_seen, failure_hit.failure.count) == (
        "invalid duration",
        50.0,
        1,
    )
    assert all(hit.relevance > 0 for hit in hits)


async def test_search_ranks_an_error_type_match_above_a_message_match(engine_db: core.Connection) -> None:
    """A word in an incident's error type ranks above the same word only in another's message."""
    in_message = await _incident(engine_db, error_type="KeyError", message="overflow happened")
    in_error_type = await _incident(engine_db, error_type="OverflowError", message="boom")
    hits = await queries.search(engine_db, ["overflow"])
    assert [hit.incident["id"] for hit in hits if hit.incident] == [in_error_type, in_message]
    assert hits[0].relevance > hits[1].relevance


async def test_search_matches_stems_and_split_error_types(engine_db: core.Connection) -> None:
    """ "rolling" finds "roll", and "zero" finds a ZeroDivisionError (indexed split into words)."""
    incident_id = await _incident(engine_db, summary="roll failed", message="oops")
    for words in (["rolling"], ["zero"]):
        assert [hit.incident["id"] for hit in await queries.search(engine_db, words) if hit.incident] == [
            incident_id
        ]


async def test_search_follows_incident_updates(engine_db: core.Connection) -> None:
    """An incident whose sample changes is found by its new words and no longer by the old ones."""
    incident_id = await _incident(engine_db, message="division by zero")
    sample = json.dumps({"error_type": "OverflowError", "error_message": "math range error", "frames": []})
    await sql(
        engine_db, "UPDATE incidents SET sample = :sample WHERE id = :id", sample=sample, id=incident_id
    )
    assert [hit.incident["id"] for hit in await queries.search(engine_db, ["overflow"]) if hit.incident] == [
        incident_id
    ]
    assert await queries.search(engine_db, ["division"]) == []


async def test_search_without_words_or_matches_finds_nothing(engine_db: core.Connection) -> None:
    """No words, empty words, quotes and unmatched words give no hits and no error."""
    await _incident(engine_db)
    for words in ([], [""], ['"'], ["weather"], ['div"ision OR']):
        assert await queries.search(engine_db, words) == [], words


async def test_search_is_limited(engine_db: core.Connection) -> None:
    """At most `limit` hits come back."""
    for n in range(3):
        await _incident(engine_db, last_seen=100.0 + n)
    assert len(await queries.search(engine_db, ["division"], limit=2)) == 2


async def test_failure_kinds_are_of_fingerprints_and_incidents(engine_db: core.Connection) -> None:
    """failure_kinds is the union of failed kinds and incident kinds, each once."""
    assert await queries.failure_kinds(engine_db) == set()
    await _incident(engine_db, kind="command:roll")
    await _failures(engine_db, ("fp", "command:roll", "E", "m", 1.0), ("fp2", "task:audit", "E", "m", 1.0))
    assert await queries.failure_kinds(engine_db) == {"command:roll", "task:audit"}


async def test_latest_incidents_of_kinds_skip_resolved_unless_asked(engine_db: core.Connection) -> None:
    """Newest last_seen first, limited; resolved ones only with active_only=False; no kinds, none."""
    old = await _incident(engine_db, last_seen=1.0)
    resolved = await _incident(engine_db, last_seen=3.0, state="resolved")
    new = await _incident(engine_db, last_seen=2.0, kind="app:roll")
    await _incident(engine_db, last_seen=4.0, kind="command:other")
    kinds = ["command:roll", "app:roll"]
    assert [i["id"] for i in await queries.latest_incidents_of_kinds(engine_db, kinds)] == [new, old]
    found = await queries.latest_incidents_of_kinds(engine_db, kinds, active_only=False, limit=2)
    assert [i["id"] for i in found] == [resolved, new]
    assert found[0]["sample"]["error_type"] == "ZeroDivisionError"  # decoded
    assert await queries.latest_incidents_of_kinds(engine_db, []) == []


async def test_latest_failures_of_kinds_newest_first(engine_db: core.Connection) -> None:
    """Distinct failures of the kinds, most recently seen first, limited; no kinds, none."""
    await _failures(
        engine_db,
        ("a", "command:roll", "E", "m", 1.0),
        ("b", "command:roll", "E", "m", 3.0),
        ("c", "command:other", "E", "m", 5.0),
        ("d", "app:roll", "E", "m", 2.0),
    )
    found = await queries.latest_failures_of_kinds(engine_db, ["command:roll", "app:roll"], limit=2)
    assert [f.fingerprint for f in found] == ["b", "d"]
    assert await queries.latest_failures_of_kinds(engine_db, []) == []


async def test_failure_by_fingerprint(engine_db: core.Connection) -> None:
    """failure() returns the fingerprint's row, or None for an unknown one."""
    await _failures(
        engine_db, ("fp", "command:roll", "KeyError", "m", 1.0), ("fp", "command:roll", "KeyError", "m", 2.0)
    )
    assert await queries.failure(engine_db, "fp") == queries.Failure(
        "fp", "command:roll", "KeyError", 1.0, 2.0, 2
    )
    assert await queries.failure(engine_db, "nope") is None


async def test_incident_for_failure_prefers_its_own_then_an_active_kind_wide_one(
    engine_db: core.Connection,
) -> None:
    """The newest incident of the fingerprint, else an unresolved kind-wide one of the kind, else none."""
    await _incident(engine_db, fingerprint="fp", last_seen=1.0)
    own = await _incident(engine_db, fingerprint="fp", last_seen=2.0, state="resolved")
    kind_wide = await _incident(engine_db, kind="command:remind", last_seen=3.0)
    await _incident(engine_db, kind="command:remind", last_seen=4.0, state="resolved")
    await _incident(engine_db, kind="command:ping", last_seen=4.0, state="resolved")
    found = await queries.incident_for_failure(engine_db, "fp", "command:remind")
    assert found is not None and found["id"] == own
    found = await queries.incident_for_failure(engine_db, "other", "command:remind")
    assert found is not None and found["id"] == kind_wide
    assert await queries.incident_for_failure(engine_db, "other", "command:ping") is None


async def test_incidents_for_failures_answers_each_pair(engine_db: core.Connection) -> None:
    """Many pairs at once: only those with an incident are keyed; no pairs, no query."""
    own = await _incident(engine_db, fingerprint="fp")
    kind_wide = await _incident(engine_db, kind="command:remind")
    found = await queries.incidents_for_failures(
        engine_db, [("fp", "command:roll"), ("x", "command:remind"), ("y", "command:ping")]
    )
    assert {fingerprint: incident["id"] for fingerprint, incident in found.items()} == {
        "fp": own,
        "x": kind_wide,
    }
    assert await queries.incidents_for_failures(engine_db, []) == {}
