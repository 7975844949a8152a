"""LocalForge, the default: a proposal is a branch of the bot's own repository plus a row in SQLite.

The workspace has already created and committed the branch; opening a proposal only checks that
the branch is at the verified commit and records it. Comments are git notes on the proposal's
head commit (ref `refs/notes/mendbot`), so they survive a restart without a table of their own
and travel with the commit (`git log --notes=mendbot` shows them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import aiosqlite

from bot.db import proposals
from bot.forge.base import ForgeError, Proposal, require_branch_at, run_git, utcnow
from bot.log import get_logger

__all__ = ["NOTES_REF", "LocalForge"]

NOTES_REF = "mendbot"

log = get_logger(__name__)


class LocalForge:
    """Proposals as local branches (see the module docstring)."""

    name = "local"

    def __init__(
        self,
        repo_root: Path,
        db: aiosqlite.Connection,
        *,
        identity: tuple[str, str] = ("mendbot", "mendbot@localhost"),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.repo_root = repo_root
        self._db = db
        self._identity = identity
        self._clock = clock
        # git notes rewrites one ref: two appends at once would race for its lock.
        self._notes_lock = asyncio.Lock()

    async def open_proposal(
        self, *, run_id: int, branch: str, head_sha: str, title: str, body: str
    ) -> Proposal:
        await require_branch_at(self.repo_root, branch, head_sha)
        now = self._now()
        row = await proposals.insert(
            self._db,
            run_id=run_id,
            forge=self.name,
            branch=branch,
            head_sha=head_sha,
            title=title,
            body=body,
            now=now,
        )
        # The url names the row id, known only after the insert.
        proposal = await proposals.update(self._db, row.id, url=f"local://proposals/{row.id}", now=now)
        assert proposal is not None
        log.info("proposal_opened", forge=self.name, proposal_id=proposal.id, run_id=run_id, branch=branch)
        return proposal

    async def get(self, proposal_id: int) -> Proposal:
        proposal = await proposals.get(self._db, proposal_id)
        if proposal is None:
            raise ForgeError(f"there is no proposal {proposal_id}")
        return proposal

    async def comment(self, proposal_id: int, text: str) -> None:
        proposal = await self._own(proposal_id)
        await self._note(proposal.head_sha, text)

    async def close(self, proposal_id: int, reason: str) -> None:
        proposal = await self._own(proposal_id)
        if proposal.state == "closed":
            return
        if proposal.state == "merged":
            raise ForgeError(f"proposal {proposal_id} is already merged; it cannot be closed")
        await self._note(proposal.head_sha, f"Closed: {reason}")
        await proposals.update(self._db, proposal_id, state="closed", now=self._now())
        log.info("proposal_closed", forge=self.name, proposal_id=proposal_id, reason=reason)

    async def comments(self, proposal_id: int) -> str:
        """Every comment on the proposal, oldest first, as git stores them (blank-line separated)."""
        proposal = await self.get(proposal_id)
        try:
            return await run_git(self.repo_root, "notes", f"--ref={NOTES_REF}", "show", proposal.head_sha)
        except ForgeError:
            return ""  # no note on that commit yet

    async def _own(self, proposal_id: int) -> Proposal:
        proposal = await self.get(proposal_id)
        if proposal.forge != self.name:
            raise ForgeError(f"proposal {proposal_id} lives on the {proposal.forge} forge, not {self.name}")
        return proposal

    async def _note(self, sha: str, text: str) -> None:
        name, email = self._identity
        async with self._notes_lock:
            await run_git(
                self.repo_root,
                "-c",
                f"user.name={name}",
                "-c",
                f"user.email={email}",
                "notes",
                f"--ref={NOTES_REF}",
                "append",
                "-m",
                text,
                sha,
            )

    def _now(self) -> float:
        return self._clock().timestamp()
