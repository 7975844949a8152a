"""Queries for the `proposals` table: one row per proposal a forge opened (local or GitHub).

`Proposal` is defined here, next to its row, and re-exported by `mendbot.forge.base`, so the
database layer never imports the forges. Written once in the SQL both engines share
(`mendbot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from mendbot.db import core
from mendbot.db.core import Connection

__all__ = ["Proposal", "ProposalState", "by_run", "get", "insert", "update"]

ProposalState = Literal["open", "merged", "closed"]


class Proposal(msgspec.Struct, frozen=True):
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

    @property
    def link(self) -> str | None:
        """Where a person opens it (a pull request's web address); None for a local proposal, whose
        `local://` address opens nothing — chat shows its diff, and the dashboard's run page when served."""
        return self.url if self.url.startswith(("https://", "http://")) else None

    @property
    def shown(self) -> str:
        """The proposal as chat names it: its link, else "proposal #3 (branch `mendbot/3-fix-roll`)"."""
        return self.link or f"proposal #{self.id} (branch `{self.branch}`)"


_COLUMNS = ("run_id", "forge", "branch", "head_sha", "title", "body", "url", "number", "state")
_INSERT = f"""
    INSERT INTO proposals ({", ".join(_COLUMNS)}, created_at, updated_at)
    VALUES ({", ".join(f":{name}" for name in _COLUMNS)}, :now, :now)
    RETURNING id"""
_GET = "SELECT * FROM proposals WHERE id = :proposal_id"
_BY_RUN = "SELECT * FROM proposals WHERE run_id = :run_id ORDER BY id"


@functools.cache
def _update(names: tuple[str, ...]) -> str:
    """(The names are `update()`'s own, never a caller's.)"""
    assignments = "".join(f"{name} = :{name}, " for name in names)
    return f"UPDATE proposals SET {assignments}updated_at = :now WHERE id = :proposal_id"


def _row(row: Mapping[str, Any]) -> Proposal:
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
    db: Connection,
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
    proposal_id = await core.scalar(
        db,
        _INSERT,
        run_id=run_id,
        forge=forge,
        branch=branch,
        head_sha=head_sha,
        title=title,
        body=body,
        url=url,
        number=number,
        state=state,
        now=now,
    )
    return Proposal(
        int(proposal_id), run_id, forge, branch, head_sha, title, body, url, number, state, now, now
    )


async def get(db: Connection, proposal_id: int) -> Proposal | None:
    row = await core.first(db, _GET, proposal_id=proposal_id)
    return _row(row) if row is not None else None


async def by_run(db: Connection, run_id: int) -> list[Proposal]:
    """Every proposal a run opened, oldest first (a run may propose again after a rebase)."""
    return [_row(row) for row in await core.rows(db, _BY_RUN, run_id=run_id)]


async def update(
    db: Connection,
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
    given = {name: value for name, value in changes.items() if value is not None}
    await core.execute(db, _update(tuple(given)), proposal_id=proposal_id, now=now, **given)
    return await get(db, proposal_id)
