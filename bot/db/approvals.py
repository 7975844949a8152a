"""Queries for `approvals` (who approved which head of a proposal) and `proposal_messages`.

Written once in the SQL both engines share (`mendbot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from typing import Any, Literal

import msgspec

from mendbot.db import core
from mendbot.db.core import Connection

__all__ = [
    "Approval",
    "ApprovalForm",
    "active",
    "approvers",
    "for_proposal",
    "insert",
    "mark_stale",
    "messages_for_proposal",
    "proposal_for_message",
    "register_message",
    "standing_message_forms",
    "withdraw",
    "withdraw_ids",
]

ApprovalForm = Literal["approve", "approve_security", "approve_unproven", "reject"]


class Approval(msgspec.Struct, frozen=True):
    id: int
    proposal_id: int
    run_id: int
    user_id: int
    sha: str
    form: ApprovalForm
    via: str
    created_at: float
    stale: bool
    source: str = ""
    message_id: int | None = None
    emoji: str | None = None
    withdrawn_at: float | None = None
    withdrawn_why: str | None = None
    channel_id: int | None = None  # where the signal was given (None on rows from before it was kept)

    @property
    def counts(self) -> bool:
        """Still standing: neither stale (the branch moved) nor withdrawn by its giver."""
        return not self.stale and self.withdrawn_at is None


_STANDING = "stale = 0 AND withdrawn_at IS NULL"
_OF_SHA = "proposal_id = :proposal_id AND sha = :sha"

_APPROVERS = f"""
    SELECT user_id FROM approvals
    WHERE {_OF_SHA} AND {_STANDING} AND form IN (:forms) AND user_id NOT IN (:excluding)
    GROUP BY user_id ORDER BY min(id)"""
_MARK_STALE = """
    UPDATE approvals SET stale = 1 WHERE proposal_id = :proposal_id AND sha != :current_sha AND stale = 0"""
_FOR_PROPOSAL = "SELECT * FROM approvals WHERE proposal_id = :proposal_id ORDER BY id"
_STANDING_MESSAGE_FORMS = """
    SELECT DISTINCT form FROM approvals
    WHERE message_id = :message_id AND withdrawn_at IS NULL AND source LIKE 'message:%'"""
_ACTIVE = f"SELECT * FROM approvals WHERE {_OF_SHA} AND {_STANDING} AND form IN (:forms) ORDER BY id"
_WITHDRAW = "UPDATE approvals SET withdrawn_at = :now, withdrawn_why = :why WHERE id IN (:ids)"
_PROPOSAL_FOR_MESSAGE = "SELECT proposal_id FROM proposal_messages WHERE message_id = :message_id"
# By message id: on SQLite that is the rowid (the insertion order the SQLite-only query used), and
# Discord's ids grow with time on either engine.
_MESSAGES_FOR_PROPOSAL = """
    SELECT message_id, channel_id FROM proposal_messages WHERE proposal_id = :proposal_id
    ORDER BY message_id"""
# A decision that still stands is left as it is (no row changed: the caller hears False).
_INSERT = """
    INSERT INTO approvals
        (proposal_id, run_id, user_id, sha, form, via, created_at, source, message_id, emoji, channel_id)
    VALUES
        (:proposal_id, :run_id, :user_id, :sha, :form, :via, :now, :source, :message_id, :emoji, :channel_id)
    ON CONFLICT (proposal_id, user_id, sha, form, source) DO UPDATE
    SET withdrawn_at = NULL, withdrawn_why = NULL, created_at = excluded.created_at
    WHERE approvals.withdrawn_at IS NOT NULL"""
_REGISTER_MESSAGE = """
    INSERT INTO proposal_messages (message_id, proposal_id, channel_id)
    VALUES (:message_id, :proposal_id, :channel_id)
    ON CONFLICT (message_id) DO UPDATE
    SET proposal_id = excluded.proposal_id, channel_id = excluded.channel_id"""
# What comes before the first ':' of `source` ("message", "reaction"); '' when there is none.
# (PostgreSQL refuses a negative length where SQLite reads it as none at all.)
_SOURCE_KIND = {
    "sqlite": "substr(source, 1, instr(source, ':') - 1)",
    "postgresql": "substr(source, 1, greatest(strpos(source, ':') - 1, 0))",
}


@functools.cache
def _withdrawn(dialect: str, by_user: bool, by_emoji: bool) -> str:
    """The standing decisions of one message that `withdraw()` takes back."""
    clauses = ["message_id = :message_id", "withdrawn_at IS NULL", f"{_SOURCE_KIND[dialect]} IN (:sources)"]
    if by_user:
        clauses.append("user_id = :user_id")
    if by_emoji:
        clauses.append("emoji = :emoji")
    return f"SELECT * FROM approvals WHERE {' AND '.join(clauses)} ORDER BY id"


async def insert(
    db: Connection,
    *,
    proposal_id: int,
    run_id: int,
    user_id: int,
    sha: str,
    form: ApprovalForm,
    via: str,
    now: float,
    source: str = "",
    message_id: int | None = None,
    emoji: str | None = None,
    channel_id: int | None = None,
) -> bool:
    """Store a decision from one signal (`source`); False when that signal already stands for it.

    The same signal given again after it was withdrawn (✅ removed, then added back) stands again.
    """
    changed = await core.execute(
        db,
        _INSERT,
        proposal_id=proposal_id,
        run_id=run_id,
        user_id=user_id,
        sha=sha,
        form=form,
        via=via,
        now=now,
        source=source,
        message_id=message_id,
        emoji=emoji,
        channel_id=channel_id,
    )
    return changed == 1


async def approvers(
    db: Connection,
    proposal_id: int,
    sha: str,
    forms: Collection[ApprovalForm],
    *,
    excluding: Collection[int] = (),
) -> list[int]:
    """Distinct users with a standing approval of `sha` in one of `forms`, earliest first."""
    found = await core.rows(
        db, _APPROVERS, proposal_id=proposal_id, sha=sha, forms=list(forms), excluding=list(excluding)
    )
    return [row["user_id"] for row in found]


async def mark_stale(db: Connection, proposal_id: int, current_sha: str) -> int:
    """Mark every approval of another sha stale; returns how many were still counting."""
    return await core.execute(db, _MARK_STALE, proposal_id=proposal_id, current_sha=current_sha)


async def for_proposal(db: Connection, proposal_id: int) -> list[Approval]:
    """Every decision stored for a proposal, oldest first (stale ones included)."""
    return [_row(row) for row in await core.rows(db, _FOR_PROPOSAL, proposal_id=proposal_id)]


async def active(
    db: Connection, proposal_id: int, sha: str, forms: Collection[ApprovalForm]
) -> list[Approval]:
    """The standing approvals of `sha` in one of `forms`, oldest first (several per user possible)."""
    found = await core.rows(db, _ACTIVE, proposal_id=proposal_id, sha=sha, forms=list(forms))
    return [_row(row) for row in found]


async def standing_message_forms(db: Connection, message_id: int) -> set[str]:
    """The forms of the decisions a chat message stands for and that are not withdrawn."""
    return {row["form"] for row in await core.rows(db, _STANDING_MESSAGE_FORMS, message_id=message_id)}


async def withdraw(
    db: Connection,
    *,
    message_id: int,
    why: str,
    now: float,
    user_id: int | None = None,
    emoji: str | None = None,
    sources: Collection[str] = ("message", "reaction"),
) -> list[Approval]:
    """Withdraw the standing decisions that came from `message_id` (optionally only `user_id`'s, only
    reactions with `emoji`, only these kinds of `sources`); returns them as they were."""
    statement = _withdrawn(core.dialect(db), user_id is not None, emoji is not None)
    filters: dict[str, object] = {"user_id": user_id} if user_id is not None else {}
    if emoji is not None:
        filters["emoji"] = emoji
    found = await core.rows(db, statement, message_id=message_id, sources=list(sources), **filters)
    rows = [_row(row) for row in found]
    if rows:
        await core.execute(db, _WITHDRAW, ids=[row.id for row in rows], now=now, why=why)
    return rows


async def withdraw_ids(db: Connection, ids: Collection[int], *, why: str, now: float) -> None:
    """Withdraw these decisions (found gone or changed when read again from Discord)."""
    if ids:
        await core.execute(db, _WITHDRAW, ids=list(ids), now=now, why=why)


def _row(row: Mapping[str, Any]) -> Approval:
    return Approval(
        id=row["id"],
        proposal_id=row["proposal_id"],
        run_id=row["run_id"],
        user_id=row["user_id"],
        sha=row["sha"],
        form=row["form"],
        via=row["via"],
        created_at=row["created_at"],
        stale=bool(row["stale"]),
        source=row["source"],
        message_id=row["message_id"],
        emoji=row["emoji"],
        withdrawn_at=row["withdrawn_at"],
        withdrawn_why=row["withdrawn_why"],
        channel_id=row["channel_id"],
    )


async def register_message(db: Connection, *, message_id: int, proposal_id: int, channel_id: int) -> None:
    await core.execute(
        db,
        _REGISTER_MESSAGE,
        message_id=message_id,
        proposal_id=proposal_id,
        channel_id=channel_id,
    )


async def proposal_for_message(db: Connection, message_id: int) -> int | None:
    proposal_id = await core.scalar(db, _PROPOSAL_FOR_MESSAGE, message_id=message_id)
    return int(proposal_id) if proposal_id is not None else None


async def messages_for_proposal(db: Connection, proposal_id: int) -> list[tuple[int, int]]:
    """(message_id, channel_id) of every message standing for the proposal, oldest first."""
    found = await core.rows(db, _MESSAGES_FOR_PROPOSAL, proposal_id=proposal_id)
    return [(row["message_id"], row["channel_id"]) for row in found]
