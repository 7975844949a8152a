"""Queries for `approvals` (who approved which head of a proposal) and `proposal_messages`."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import aiosqlite

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
    "withdraw",
]

ApprovalForm = Literal["approve", "approve_security", "approve_unproven", "reject"]


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
    source: str = ""
    message_id: int | None = None
    emoji: str | None = None
    withdrawn_at: float | None = None
    withdrawn_why: str | None = None

    @property
    def counts(self) -> bool:
        """Still standing: neither stale (the branch moved) nor withdrawn by its giver."""
        return not self.stale and self.withdrawn_at is None


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
    source: str = "",
    message_id: int | None = None,
    emoji: str | None = None,
) -> bool:
    """Store a decision from one signal (`source`); False when that signal already stands for it.

    The same signal given again after it was withdrawn (✅ removed, then added back) stands again.
    """
    cursor = await db.execute(
        "INSERT INTO approvals"
        " (proposal_id, run_id, user_id, sha, form, via, created_at, source, message_id, emoji)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (proposal_id, user_id, sha, form, source) DO UPDATE SET"
        " withdrawn_at = NULL, withdrawn_why = NULL, created_at = excluded.created_at"
        " WHERE withdrawn_at IS NOT NULL",
        (proposal_id, run_id, user_id, sha, form, via, now, source, message_id, emoji),
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
    """Distinct users with a standing approval of `sha` in one of `forms`, earliest first."""
    wanted, skipped = list(forms), list(excluding)
    async with db.execute(
        "SELECT user_id FROM approvals"
        " WHERE proposal_id = ? AND sha = ? AND stale = 0 AND withdrawn_at IS NULL"
        f" AND form IN ({_marks(wanted)})"
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
    return [_row(row) for row in rows]


async def active(
    db: aiosqlite.Connection, proposal_id: int, sha: str, forms: Collection[ApprovalForm]
) -> list[Approval]:
    """The standing approvals of `sha` in one of `forms`, oldest first (several per user possible)."""
    wanted = list(forms)
    async with db.execute(
        "SELECT * FROM approvals WHERE proposal_id = ? AND sha = ? AND stale = 0 AND withdrawn_at IS NULL"
        f" AND form IN ({_marks(wanted)}) ORDER BY id",
        (proposal_id, sha, *wanted),
    ) as cursor:
        return [_row(row) for row in await cursor.fetchall()]


async def withdraw(
    db: aiosqlite.Connection,
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
    clauses = ["message_id = ?", "withdrawn_at IS NULL"]
    values: list[object] = [message_id]
    if user_id is not None:
        clauses.append("user_id = ?")
        values.append(user_id)
    if emoji is not None:
        clauses.append("emoji = ?")
        values.append(emoji)
    kinds = list(sources)
    clauses.append(f"substr(source, 1, instr(source, ':') - 1) IN ({_marks(kinds)})")
    values.extend(kinds)
    where = " AND ".join(clauses)
    async with db.execute(f"SELECT * FROM approvals WHERE {where} ORDER BY id", values) as cursor:
        rows = [_row(row) for row in await cursor.fetchall()]
    if rows:
        ids = [row.id for row in rows]
        await db.execute(
            f"UPDATE approvals SET withdrawn_at = ?, withdrawn_why = ? WHERE id IN ({_marks(ids)})",
            (now, why, *ids),
        )
    return rows


def _row(row: aiosqlite.Row) -> Approval:
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
    )


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
