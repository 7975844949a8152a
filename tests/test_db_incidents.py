"""The `incidents` and `incident_requests` queries behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from mendbot.db import core
from mendbot.db import incidents as queries

pytestmark = pytest.mark.engines

ALICE, BOB = 1_100_000_000_000_000_001, 1_100_000_000_000_000_002


def _incident(**values: object) -> dict[str, Any]:
    return {
        "rule": "error",
        "rules": ["error"],
        "level": "error",
        "kind": "command:roll",
        "fingerprint": "f1",
        "state": "open",
        "summary": "ZeroDivisionError in roll",
        "first_seen": 100.0,
        "last_seen": 100.0,
        "count": 1,
        "user_ids": [ALICE],
        "sample": {"error_type": "ZeroDivisionError", "message": "division by zero"},
        "updated_at": 100.0,
        **values,
    }


async def test_an_incident_reads_back_with_its_json_decoded(engine_db: core.Connection) -> None:
    """insert() returns the id; by_id() reads the row back, its JSON decoded and its defaults set."""
    incident_id = await queries.insert(engine_db, _incident())
    row = await queries.by_id(engine_db, incident_id)
    assert row is not None
    assert (row["id"], row["rules"], row["user_ids"], row["sample"]["message"]) == (
        incident_id,
        ["error"],
        [ALICE],
        "division by zero",
    )
    assert (row["category"], row["closed_at"], row["message_id"], row["need"]) == ("code", None, None, None)


async def test_an_unknown_incident_is_none(engine_db: core.Connection) -> None:
    """by_id() of an id never stored is None."""
    assert await queries.by_id(engine_db, 404) is None


async def test_already_encoded_json_is_stored_as_given(engine_db: core.Connection) -> None:
    """A JSON column given as a string is stored as it is, not encoded twice."""
    incident_id = await queries.insert(engine_db, _incident(sample='{"message": "raw"}', user_ids="[]"))
    row = await queries.by_id(engine_db, incident_id)
    assert row is not None and (row["sample"], row["user_ids"]) == ({"message": "raw"}, [])


async def test_update_sets_only_the_given_fields(engine_db: core.Connection) -> None:
    """update() changes the fields given, encodes JSON ones, ignores unknown keys, and leaves the rest."""
    incident_id = await queries.insert(engine_db, _incident())
    message_id = 1_300_000_000_000_000_001
    await queries.update(
        engine_db,
        incident_id,
        {"count": 3, "user_ids": [ALICE, BOB], "message_id": message_id, "id": 999, "not_a_column": 1},
    )
    await queries.update(engine_db, incident_id, {})
    row = await queries.by_id(engine_db, incident_id)
    assert row is not None
    assert (row["count"], row["user_ids"], row["message_id"], row["summary"]) == (
        3,
        [ALICE, BOB],
        message_id,
        "ZeroDivisionError in roll",
    )


async def test_active_or_recent_leaves_out_incidents_resolved_long_ago(engine_db: core.Connection) -> None:
    """active_or_recent() keeps unresolved incidents and those closed at or after the cut, oldest first."""
    opened = await queries.insert(engine_db, _incident())
    muted = await queries.insert(engine_db, _incident(state="muted"))
    await queries.insert(engine_db, _incident(state="resolved", closed_at=50.0))
    recent = await queries.insert(engine_db, _incident(state="resolved", closed_at=200.0))
    found = await queries.active_or_recent(engine_db, 200.0)
    assert [row["id"] for row in found] == [opened, muted, recent]
    assert found[0]["sample"]["error_type"] == "ZeroDivisionError"


async def test_list_by_state_is_most_recently_seen_first_up_to_the_limit(engine_db: core.Connection) -> None:
    """list_by_state() keeps the states asked for, newest last_seen first, at most `limit` of them."""
    old = await queries.insert(engine_db, _incident(last_seen=100.0))
    new = await queries.insert(engine_db, _incident(state="acknowledged", last_seen=300.0))
    await queries.insert(engine_db, _incident(state="muted", last_seen=400.0))
    assert [r["id"] for r in await queries.list_by_state(engine_db, ("open", "acknowledged"))] == [new, old]
    assert [r["id"] for r in await queries.list_by_state(engine_db, ("open", "acknowledged"), limit=1)] == [
        new
    ]
    assert await queries.list_by_state(engine_db, ()) == []


async def _ask(db: core.Connection, incident_id: int, user_id: int = ALICE, action: str = "fix") -> bool:
    return await queries.add_request(
        db, incident_id=incident_id, user_id=user_id, action=action, via="reaction", at=1.0
    )


async def test_a_request_is_recorded_once_per_user_and_action(engine_db: core.Connection) -> None:
    """add_request() is True the first time, False for the same user and action again."""
    incident_id = await queries.insert(engine_db, _incident())
    assert await _ask(engine_db, incident_id) is True
    assert await _ask(engine_db, incident_id) is False
    assert await _ask(engine_db, incident_id, action="investigate") is True
    assert await _ask(engine_db, incident_id, user_id=BOB) is True


async def test_a_removed_request_can_be_made_again(engine_db: core.Connection) -> None:
    """remove_request() takes back one user's request (twice is harmless); asking again is recorded."""
    incident_id = await queries.insert(engine_db, _incident())
    await _ask(engine_db, incident_id)
    await _ask(engine_db, incident_id, user_id=BOB)
    for _ in range(2):
        await queries.remove_request(engine_db, incident_id=incident_id, user_id=ALICE, action="fix")
    assert await _ask(engine_db, incident_id) is True
    assert await _ask(engine_db, incident_id, user_id=BOB) is False


async def test_a_request_on_an_unknown_incident_is_refused(engine_db: core.Connection) -> None:
    """add_request() for an incident that does not exist breaks the foreign key on either engine."""
    with pytest.raises(Exception, match=r"(?i)foreign key"):
        await _ask(engine_db, 404)


async def test_an_incidents_fingerprint_is_read_alone(engine_db: core.Connection) -> None:
    """fingerprint() is the incident's fingerprint; None for a kind-wide incident or an unknown id."""
    with_fingerprint = await queries.insert(engine_db, _incident())
    kind_wide = await queries.insert(engine_db, _incident(fingerprint=None))
    assert await queries.fingerprint(engine_db, with_fingerprint) == "f1"
    assert await queries.fingerprint(engine_db, kind_wide) is None
    assert await queries.fingerprint(engine_db, 404) is None
