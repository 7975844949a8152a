"""Queries for `approvals` (who approved which head of a proposal) and `proposal_messages`."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import aiosqlite

__all__ = [
    "Approval",
    "ApprovalForm",
    "approvers",
    "for_proposal",
    "insert",
    "mark_stale",
    "messages_for_proposal",
    "proposal_for_message",
    "register_message",
]

ApprovalForm = Literal["approve", "approve_security", "reject"]


@dataclass(frozen=True, slots=True)
class Approval:
    id: int
    proposal_id: int
    run_id: int
    user_id: int
    sha: str
    form: ApprovalForm
    via: str
    created_at: float
    stale: bool


def _marks(values: Collection[object]) -> str:
    return ", ".join("?" for _ in values)


async def insert(
    db: aiosqlite.Connection,
    *,
    proposal_id: int,
    run_id: int,
    user_id: int,
    sha: str,
    form: ApprovalForm,
    via: str,
    now: float,
) -> bool:
    """Store a decision; False when this user already gave this form for this sha (nothing changes)."""
    cursor = await db.execute(
        "INSERT INTO approvals (proposal_id, run_id, user_id, sha, form, via, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (proposal_id, user_id, sha, form) DO NOTHING",
        (proposal_id, run_id, user_id, sha, form, via, now),
    )
    return cursor.rowcount == 1


async def approvers(
    db: aiosqlite.Connection,
    proposal_id: int,
    sha: str,
    forms: Collection[ApprovalForm],
    *,
    excluding: Collection[int] = (),
) -> list[int]:
    """Distinct users with a non-stale approval of `sha` in one of `forms`, earliest first."""
    wanted, skipped = list(forms), list(excluding)
    async with db.execute(
        "SELECT user_id FROM approvals"
        f" WHERE proposal_id = ? AND sha = ? AND stale = 0 AND form IN ({_marks(wanted)})"
        f" AND user_id NOT IN ({_marks(skipped)})"
        " GROUP BY user_id ORDER BY MIN(id)",
        (proposal_id, sha, *wanted, *skipped),
    ) as cursor:
        return [row[0] for row in await cursor.fetchall()]


async def mark_stale(db: aiosqlite.Connection, proposal_id: int, current_sha: str) -> int:
    """Mark every approval of another sha stale; returns how many were still counting."""
    cursor = await db.execute(
        "UPDATE approvals SET stale = 1 WHERE proposal_id = ? AND sha != ? AND stale = 0",
        (proposal_id, current_sha),
    )
    return cursor.rowcount


async def for_proposal(db: aiosqlite.Connection, proposal_id: int) -> list[Approval]:
    """Every decision stored for a proposal, oldest first (stale ones included)."""
    async with db.execute(
        "SELECT * FROM approvals WHERE proposal_id = ? ORDER BY id", (proposal_id,)
    ) as cursor:
        rows = await cursor.fetchall()
    return [
        Approval(
            id=row["id"],
            proposal_id=row["proposal_id"],
            run_id=row["run_id"],
            user_id=row["user_id"],
            sha=row["sha"],
            form=row["form"],
            via=row["via"],
            created_at=row["created_at"],
            stale=bool(row["stale"]),
        )
        for row in rows
    ]


async def register_message(
    db: aiosqlite.Connection, *, message_id: int, proposal_id: int, channel_id: int
) -> None:
    await db.execute(
        "INSERT INTO proposal_messages (message_id, proposal_id, channel_id) VALUES (?, ?, ?)"
        " ON CONFLICT (message_id) DO UPDATE SET proposal_id = excluded.proposal_id,"
        " channel_id = excluded.channel_id",
        (message_id, proposal_id, channel_id),
    )


async def proposal_for_message(db: aiosqlite.Connection, message_id: int) -> int | None:
    async with db.execute(
        "SELECT proposal_id FROM proposal_messages WHERE message_id = ?", (message_id,)
    ) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row is not None else None


async def messages_for_proposal(db: aiosqlite.Connection, proposal_id: int) -> list[tuple[int, int]]:
    """(message_id, channel_id) of every message standing for the proposal, oldest first."""
    async with db.execute(
        "SELECT message_id, channel_id FROM proposal_messages WHERE proposal_id = ? ORDER BY rowid",
        (proposal_id,),
    ) as cursor:
        return [(row[0], row[1]) for row in await cursor.fetchall()]
