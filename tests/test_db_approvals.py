"""The `approvals` and `proposal_messages` queries behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from mendbot.db import approvals as queries
from mendbot.db import core

pytestmark = pytest.mark.engines

ALICE, BOB, CAROL = 1_100_000_000_000_000_001, 1_100_000_000_000_000_002, 1_100_000_000_000_000_003
MESSAGE = 1_300_000_000_000_000_001
SHA, OTHER_SHA = "a" * 40, "b" * 40


async def _decide(db: core.Connection, user_id: int = ALICE, **values: object) -> bool:
    fields: dict[str, object] = {
        "proposal_id": 5,
        "run_id": 3,
        "user_id": user_id,
        "sha": SHA,
        "form": "approve",
        "via": "reaction",
        "now": 100.0,
        "source": f"reaction:{MESSAGE}:✅",
        "message_id": MESSAGE,
        "emoji": "✅",
        **values,
    }
    return await queries.insert(db, **fields)  # type: ignore[arg-type]


async def test_a_decision_is_stored_once_per_signal(engine_db: core.Connection) -> None:
    """insert() is True for a new signal, False for the same one again; the row reads back whole."""
    assert await _decide(engine_db) is True
    assert await _decide(engine_db, now=200.0) is False
    [approval] = await queries.for_proposal(engine_db, 5)
    assert (approval.user_id, approval.sha, approval.form, approval.created_at) == (
        ALICE,
        SHA,
        "approve",
        100.0,
    )
    assert (approval.stale, approval.message_id, approval.emoji, approval.counts) == (
        False,
        MESSAGE,
        "✅",
        True,
    )


async def test_a_withdrawn_signal_given_again_stands_again(engine_db: core.Connection) -> None:
    """insert() of a withdrawn signal clears the withdrawal and takes the new time."""
    await _decide(engine_db)
    await queries.withdraw(engine_db, message_id=MESSAGE, why="removed", now=150.0)
    assert await _decide(engine_db, now=200.0) is True
    [approval] = await queries.for_proposal(engine_db, 5)
    assert (approval.withdrawn_at, approval.withdrawn_why, approval.created_at) == (None, None, 200.0)


async def test_approvers_are_distinct_standing_users_earliest_first(engine_db: core.Connection) -> None:
    """approvers() lists each user once, by their first standing approval of that sha in the forms."""
    await _decide(engine_db, BOB, source="message:1")
    await _decide(engine_db, ALICE, source="message:2")
    await _decide(engine_db, BOB, source="message:3")
    await _decide(engine_db, CAROL, form="reject", source="message:4")
    await _decide(engine_db, CAROL, sha=OTHER_SHA, source="message:5")
    assert await queries.approvers(engine_db, 5, SHA, ["approve"]) == [BOB, ALICE]
    assert await queries.approvers(engine_db, 5, SHA, ["approve", "reject"], excluding=[BOB]) == [
        ALICE,
        CAROL,
    ]


async def test_approvers_of_no_forms_is_empty(engine_db: core.Connection) -> None:
    """approvers() and active() with an empty list of forms find nobody."""
    await _decide(engine_db)
    assert await queries.approvers(engine_db, 5, SHA, []) == []
    assert await queries.active(engine_db, 5, SHA, []) == []


async def test_stale_approvals_no_longer_count(engine_db: core.Connection) -> None:
    """mark_stale() counts the approvals of other shas still counting; they stop counting."""
    await _decide(engine_db, ALICE, source="message:1")
    await _decide(engine_db, BOB, sha=OTHER_SHA, source="message:2")
    assert await queries.mark_stale(engine_db, 5, OTHER_SHA) == 1
    assert await queries.mark_stale(engine_db, 5, OTHER_SHA) == 0
    assert await queries.approvers(engine_db, 5, SHA, ["approve"]) == []
    assert [a.user_id for a in await queries.active(engine_db, 5, OTHER_SHA, ["approve"])] == [BOB]
    assert [(a.user_id, a.stale) for a in await queries.for_proposal(engine_db, 5)] == [
        (ALICE, True),
        (BOB, False),
    ]


async def test_active_lists_every_standing_approval_oldest_first(engine_db: core.Connection) -> None:
    """active() keeps several approvals of one user, in the order they were given."""
    await _decide(engine_db, ALICE, source="message:1")
    await _decide(engine_db, ALICE, form="approve_security", source="message:2")
    await _decide(engine_db, BOB, form="reject", source="message:3")
    found = await queries.active(engine_db, 5, SHA, ["approve", "approve_security"])
    assert [(a.user_id, a.form) for a in found] == [(ALICE, "approve"), (ALICE, "approve_security")]


async def test_withdraw_takes_back_a_messages_standing_decisions(engine_db: core.Connection) -> None:
    """withdraw() returns the decisions as they were and marks them withdrawn; a second time finds none."""
    await _decide(engine_db, ALICE)
    await _decide(engine_db, BOB)
    await _decide(engine_db, CAROL, message_id=MESSAGE + 1, source=f"reaction:{MESSAGE + 1}:✅")
    taken = await queries.withdraw(engine_db, message_id=MESSAGE, why="deleted", now=300.0)
    assert [(a.user_id, a.withdrawn_at) for a in taken] == [(ALICE, None), (BOB, None)]
    assert await queries.withdraw(engine_db, message_id=MESSAGE, why="deleted", now=301.0) == []
    stored = {a.user_id: a for a in await queries.for_proposal(engine_db, 5)}
    assert (stored[ALICE].withdrawn_at, stored[ALICE].withdrawn_why, stored[ALICE].counts) == (
        300.0,
        "deleted",
        False,
    )
    assert stored[CAROL].counts


async def test_withdraw_filters_by_user_emoji_and_source_kind(engine_db: core.Connection) -> None:
    """withdraw() narrows to one user, one emoji and the kinds of source asked for."""
    await _decide(engine_db, ALICE)
    await _decide(engine_db, ALICE, emoji="🔒", form="approve_security", source=f"reaction:{MESSAGE}:🔒")
    await _decide(engine_db, BOB)
    await _decide(engine_db, BOB, emoji=None, source=f"message:{MESSAGE}")
    await _decide(engine_db, CAROL, emoji=None, source="button")
    assert await queries.withdraw(engine_db, message_id=MESSAGE, why="w", now=1.0, sources=[]) == []
    taken = await queries.withdraw(engine_db, message_id=MESSAGE, why="w", now=1.0, user_id=ALICE, emoji="🔒")
    assert [(a.user_id, a.form) for a in taken] == [(ALICE, "approve_security")]
    taken = await queries.withdraw(engine_db, message_id=MESSAGE, why="w", now=1.0, sources=["message"])
    assert [(a.user_id, a.source) for a in taken] == [(BOB, f"message:{MESSAGE}")]
    taken = await queries.withdraw(engine_db, message_id=MESSAGE, why="w", now=1.0, user_id=BOB)
    assert [(a.user_id, a.emoji) for a in taken] == [(BOB, "✅")]
    taken = await queries.withdraw(engine_db, message_id=MESSAGE, why="w", now=1.0, sources=[""])
    assert [a.user_id for a in taken] == [CAROL]  # a source without a kind


async def test_a_message_stands_for_one_proposal_registered_again_moves(engine_db: core.Connection) -> None:
    """register_message() twice keeps the last proposal and channel; an unknown message is None."""
    await queries.register_message(engine_db, message_id=MESSAGE, proposal_id=5, channel_id=10)
    await queries.register_message(engine_db, message_id=MESSAGE, proposal_id=6, channel_id=11)
    assert await queries.proposal_for_message(engine_db, MESSAGE) == 6
    assert await queries.messages_for_proposal(engine_db, 6) == [(MESSAGE, 11)]
    assert await queries.messages_for_proposal(engine_db, 5) == []
    assert await queries.proposal_for_message(engine_db, MESSAGE + 1) is None


async def test_a_proposals_messages_come_oldest_first(engine_db: core.Connection) -> None:
    """messages_for_proposal() lists every message of the proposal, the oldest (smallest id) first."""
    for message_id in (MESSAGE + 2, MESSAGE, MESSAGE + 1):
        await queries.register_message(engine_db, message_id=message_id, proposal_id=5, channel_id=10)
    assert [m for m, _ in await queries.messages_for_proposal(engine_db, 5)] == [
        MESSAGE,
        MESSAGE + 1,
        MESSAGE + 2,
    ]


async def test_a_messages_standing_forms_leave_out_withdrawn_and_other_sources(
    engine_db: core.Connection,
) -> None:
    """standing_message_forms() names the forms a message's own words still stand for: not a reaction's,
    not a withdrawn one, and each form once."""
    await _decide(engine_db, ALICE, source=f"message:{MESSAGE}")
    await _decide(engine_db, BOB, source=f"message:{MESSAGE}")
    await _decide(engine_db, CAROL, form="reject", source=f"reaction:{MESSAGE}:❌")
    assert await queries.standing_message_forms(engine_db, MESSAGE) == {"approve"}
    await queries.withdraw(engine_db, message_id=MESSAGE, why="edited", now=300.0)
    assert await queries.standing_message_forms(engine_db, MESSAGE) == set()
