"""Queries for `objections`: what approvers said against shipping a proposal, and what still holds.

An objection is keyed by its message: the same message is one objection of one proposal, whatever
is done to it later (edited, deleted, read again). Written once in the SQL both engines share
(`mendbot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Literal

import msgspec

from mendbot.db import core
from mendbot.db.core import Connection

__all__ = [
    "Objection",
    "ObjectionKind",
    "for_proposal",
    "record",
    "standing",
    "withdraw_ids",
    "withdraw_message",
    "withdraw_user",
]

ObjectionKind = Literal["object", "unclear"]


class Objection(msgspec.Struct, frozen=True):
    id: int
    proposal_id: int
    run_id: int
    user_id: int
    kind: ObjectionKind
    reason: str
    message_id: int
    channel_id: int
    created_at: float
    withdrawn_at: float | None = None
    withdrawn_why: str | None = None

    @property
    def holds(self) -> bool:
        return self.withdrawn_at is None


_FOR_PROPOSAL = "SELECT * FROM objections WHERE proposal_id = :proposal_id ORDER BY id"
_STANDING_OF_PROPOSAL = """
    SELECT * FROM objections WHERE proposal_id = :proposal_id AND withdrawn_at IS NULL ORDER BY id"""
_STANDING_OF_MESSAGE = """
    SELECT * FROM objections WHERE message_id = :message_id AND withdrawn_at IS NULL ORDER BY id"""
_STANDING_OF_USER = """
    SELECT * FROM objections WHERE proposal_id = :proposal_id AND user_id = :user_id AND withdrawn_at IS NULL
    ORDER BY id"""
_WITHDRAW = "UPDATE objections SET withdrawn_at = :now, withdrawn_why = :why WHERE id IN (:ids)"
# The same message again (an edit read as another kind of hold): it holds as it reads now.
_RECORD = """
    INSERT INTO objections (proposal_id, run_id, user_id, kind, reason, message_id, channel_id, created_at)
    VALUES (:proposal_id, :run_id, :user_id, :kind, :reason, :message_id, :channel_id, :now)
    ON CONFLICT (proposal_id, message_id) DO UPDATE
    SET kind = excluded.kind, reason = excluded.reason, withdrawn_at = NULL, withdrawn_why = NULL"""


async def record(
    db: Connection,
    *,
    proposal_id: int,
    run_id: int,
    user_id: int,
    kind: ObjectionKind,
    reason: str,
    message_id: int,
    channel_id: int,
    now: float,
) -> None:
    """Store an objection (or make the one from this message hold again, as it reads now)."""
    await core.execute(
        db,
        _RECORD,
        proposal_id=proposal_id,
        run_id=run_id,
        user_id=user_id,
        kind=kind,
        reason=reason,
        message_id=message_id,
        channel_id=channel_id,
        now=now,
    )


async def standing(db: Connection, proposal_id: int) -> list[Objection]:
    """The objections that hold the proposal's merge, oldest first."""
    return [_row(row) for row in await core.rows(db, _STANDING_OF_PROPOSAL, proposal_id=proposal_id)]


async def for_proposal(db: Connection, proposal_id: int) -> list[Objection]:
    """Every objection stored for the proposal, oldest first (withdrawn ones too)."""
    return [_row(row) for row in await core.rows(db, _FOR_PROPOSAL, proposal_id=proposal_id)]


async def withdraw_message(db: Connection, message_id: int, *, why: str, now: float) -> list[Objection]:
    """Withdraw the objections that came from `message_id`; returns them as they were."""
    rows = [_row(row) for row in await core.rows(db, _STANDING_OF_MESSAGE, message_id=message_id)]
    await withdraw_ids(db, [row.id for row in rows], why=why, now=now)
    return rows


async def withdraw_user(
    db: Connection, proposal_id: int, user_id: int, *, why: str, now: float
) -> list[Objection]:
    """Withdraw `user_id`'s objections to the proposal (they approved after them); returns them."""
    found = await core.rows(db, _STANDING_OF_USER, proposal_id=proposal_id, user_id=user_id)
    rows = [_row(row) for row in found]
    await withdraw_ids(db, [row.id for row in rows], why=why, now=now)
    return rows


async def withdraw_ids(db: Connection, ids: Collection[int], *, why: str, now: float) -> None:
    if ids:
        await core.execute(db, _WITHDRAW, ids=list(ids), now=now, why=why)


def _row(row: Mapping[str, Any]) -> Objection:
    return Objection(
        id=row["id"],
        proposal_id=row["proposal_id"],
        run_id=row["run_id"],
        user_id=row["user_id"],
        kind=row["kind"],
        reason=row["reason"],
        message_id=row["message_id"],
        channel_id=row["channel_id"],
        created_at=row["created_at"],
        withdrawn_at=row["withdrawn_at"],
        withdrawn_why=row["withdrawn_why"],
    )
