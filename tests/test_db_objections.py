"""The `objections` queries behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from mendbot.db import approvals as approval_queries
from mendbot.db import core
from mendbot.db import objections as queries

pytestmark = pytest.mark.engines

ALICE, BOB = 1_100_000_000_000_000_001, 1_100_000_000_000_000_002
WAIT, NOT_YET, OTHER = 1_300_000_000_000_000_001, 1_300_000_000_000_000_002, 1_300_000_000_000_000_003
CHANNEL = 1_200_000_000_000_000_001


async def _object(db: core.Connection, message_id: int, user_id: int = ALICE, **values: object) -> None:
    fields: dict[str, object] = {
        "proposal_id": 5,
        "run_id": 3,
        "user_id": user_id,
        "kind": "object",
        "reason": "hold",
        "message_id": message_id,
        "channel_id": CHANNEL,
        "now": 100.0,
        **values,
    }
    await queries.record(db, **fields)  # type: ignore[arg-type]


async def test_an_objection_reads_back_whole_and_holds(engine_db: core.Connection) -> None:
    """record() stores one objection per message; standing() returns it as it was given."""
    await _object(engine_db, WAIT)
    [objection] = await queries.standing(engine_db, 5)
    assert (objection.user_id, objection.kind, objection.reason, objection.message_id) == (
        ALICE,
        "object",
        "hold",
        WAIT,
    )
    assert (objection.channel_id, objection.created_at, objection.holds) == (CHANNEL, 100.0, True)


async def test_the_same_message_again_is_one_objection_as_it_reads_now(engine_db: core.Connection) -> None:
    """A second record() of a withdrawn message's objection holds again, with its new kind."""
    await _object(engine_db, WAIT)
    await queries.withdraw_message(engine_db, WAIT, why="edited", now=150.0)
    assert await queries.standing(engine_db, 5) == []
    await _object(engine_db, WAIT, kind="unclear", reason="question", now=200.0)
    [objection] = await queries.for_proposal(engine_db, 5)
    assert (objection.kind, objection.reason, objection.withdrawn_at) == ("unclear", "question", None)


async def test_withdrawing_a_users_objections_leaves_the_others(engine_db: core.Connection) -> None:
    """withdraw_user() takes back one user's objections to one proposal, no one else's, no other
    proposal's; withdraw_message() only that message's."""
    await _object(engine_db, WAIT)
    await _object(engine_db, NOT_YET, BOB)
    await _object(engine_db, OTHER, proposal_id=6)
    withdrawn = await queries.withdraw_user(engine_db, 5, ALICE, why="approved", now=150.0)
    assert [objection.message_id for objection in withdrawn] == [WAIT]
    assert [objection.user_id for objection in await queries.standing(engine_db, 5)] == [BOB]
    assert [objection.message_id for objection in await queries.standing(engine_db, 6)] == [OTHER]
    await queries.withdraw_message(engine_db, NOT_YET, why="deleted", now=160.0)
    assert await queries.standing(engine_db, 5) == []
    why = {o.message_id: o.withdrawn_why for o in await queries.for_proposal(engine_db, 5)}
    assert why == {WAIT: "approved", NOT_YET: "deleted"}


async def test_an_approval_keeps_the_channel_it_was_given_in(engine_db: core.Connection) -> None:
    """insert() stores the channel of the signal, so its message can be fetched there again."""
    await approval_queries.insert(
        engine_db, proposal_id=5, run_id=3, user_id=ALICE, sha="a" * 40, form="approve", via="words",
        now=1.0, source=f"message:{WAIT}", message_id=WAIT, channel_id=CHANNEL,
    )  # fmt: skip
    [approval] = await approval_queries.for_proposal(engine_db, 5)
    assert approval.channel_id == CHANNEL
