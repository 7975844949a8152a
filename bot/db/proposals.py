"""Queries for the `proposals` table: one row per proposal a forge opened (local or GitHub).

`Proposal` is defined here, next to its row, and re-exported by `bot.forge.base`, so the
database layer never imports the forges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import aiosqlite

__all__ = ["Proposal", "ProposalState", "by_run", "get", "insert", "update"]

ProposalState = Literal["open", "merged", "closed"]


@dataclass(frozen=True, slots=True)
class Proposal:
    id: int
    run_id: int
    forge: str  # "local" or "github"
    branch: str
    head_sha: str
    title: str
    body: str
    url: str
    number: int | None  # the pull request number on a remote forge; None for local proposals
    state: ProposalState
    created_at: float = 0.0  # unix seconds; defaults only so fakes in tests can leave them out
    updated_at: float = 0.0


def _row(row: aiosqlite.Row) -> Proposal:
    return Proposal(
        id=row["id"],
        run_id=row["run_id"],
        forge=row["forge"],
        branch=row["branch"],
        head_sha=row["head_sha"],
        title=row["title"],
        body=row["body"],
        url=row["url"],
        number=row["number"],
        state=row["state"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def insert(
    db: aiosqlite.Connection,
    *,
    run_id: int,
    forge: str,
    branch: str,
    head_sha: str,
    title: str,
    body: str,
    now: float,
    url: str = "",
    number: int | None = None,
    state: ProposalState = "open",
) -> Proposal:
    cursor = await db.execute(
        "INSERT INTO proposals"
        " (run_id, forge, branch, head_sha, title, body, url, number, state, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, forge, branch, head_sha, title, body, url, number, state, now, now),
    )
    assert cursor.lastrowid is not None
    return Proposal(
        cursor.lastrowid, run_id, forge, branch, head_sha, title, body, url, number, state, now, now
    )


async def get(db: aiosqlite.Connection, proposal_id: int) -> Proposal | None:
    async with db.execute("SELECT * FROM proposals WHERE id = ?", (proposal_id,)) as cursor:
        row = await cursor.fetchone()
    return _row(row) if row is not None else None


async def by_run(db: aiosqlite.Connection, run_id: int) -> list[Proposal]:
    """Every proposal a run opened, oldest first (a run may propose again after a rebase)."""
    async with db.execute("SELECT * FROM proposals WHERE run_id = ? ORDER BY id", (run_id,)) as cursor:
        return [_row(row) for row in await cursor.fetchall()]


async def update(
    db: aiosqlite.Connection,
    proposal_id: int,
    *,
    now: float,
    state: ProposalState | None = None,
    url: str | None = None,
    number: int | None = None,
    head_sha: str | None = None,
) -> Proposal | None:
    """Change the given fields (None leaves a field as it is); the updated row, or None if absent."""
    changes: dict[str, object] = {"state": state, "url": url, "number": number, "head_sha": head_sha}
    columns = [name for name, value in changes.items() if value is not None]
    assignments = "".join(f"{name} = ?, " for name in columns)
    values = [changes[name] for name in columns]
    await db.execute(
        f"UPDATE proposals SET {assignments}updated_at = ? WHERE id = ?", (*values, now, proposal_id)
    )
    return await get(db, proposal_id)
