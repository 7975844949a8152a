"""LocalForge, the default: a proposal is a branch of the bot's own repository plus a row in SQLite.

The workspace has already created and committed the branch; opening a proposal only checks that
the branch is at the verified commit and records it. Comments are git notes on the proposal's
head commit (ref `refs/notes/mendbot`), so they survive a restart without a table of their own
and travel with the commit (`git log --notes=mendbot` shows them).

Merging is a fast-forward of main to exactly the approved head, in two steps so that main and the
live working tree always move together:

1. `merge()` (here) checks the guards — the branch is at the approved head (else HeadMovedError),
   main is an ancestor of it (else MainMovedError) — and records the merge: the ref
   `refs/mendbot/merged/<id>` at the head, `refs/mendbot/merged-from/<id>` at main as it was,
   a note, and the row's state "merged". It does not move `refs/heads/main`: the repository is
   the bot's live checkout, which has main checked out, and moving the ref alone (`update-ref`)
   would leave the index and files at the old commit, so `git status` would show the merge
   reversed as uncommitted changes.
2. `Merger.update_live_checkout(merged_sha)` (bot/deploy/merge.py) runs `git merge --ff-only`
   in the live checkout, which moves main, the index and the files together — or refuses, leaving
   everything as it was, when there are hand edits, the checkout is not on main, or main cannot
   fast-forward. The merge is then held and the report says why.

While a recorded merge has not reached main (its update was refused), further merges are refused
too: fast-forwarding main to a later proposal would skip the held one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from mendbot.db import proposals
from mendbot.db.core import Connection
from mendbot.forge.base import (
    MERGED_REF_PREFIX,
    ForgeError,
    HeadMovedError,
    MainMovedError,
    MergeResult,
    Proposal,
    branch_head,
    is_ancestor,
    merged_ref,
    require_branch_at,
    resolve_commit,
    run_git,
    utcnow,
)
from mendbot.kernel.log import get_logger

__all__ = ["MERGED_FROM_REF_PREFIX", "NOTES_REF", "LocalForge"]

NOTES_REF = "mendbot"
MERGED_FROM_REF_PREFIX = "refs/mendbot/merged-from/"

log = get_logger(__name__)


class LocalForge:
    """Proposals as local branches (see the module docstring)."""

    name = "local"

    def __init__(
        self,
        repo_root: Path,
        db: Connection,
        *,
        identity: tuple[str, str] = ("mendbot", "mendbot@localhost"),
        clock: Callable[[], datetime] = utcnow,
        base: str = "main",
    ) -> None:
        self.repo_root = repo_root
        self.base = base
        self._db = db
        self._identity = identity
        self._clock = clock
        # git notes rewrites one ref: two appends at once would race for its lock.
        self._notes_lock = asyncio.Lock()
        # Two merges at once would both pass the guards against the same main.
        self._merge_lock = asyncio.Lock()

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

    async def main_sha(self) -> str:
        main = await branch_head(self.repo_root, self.base)
        if main is None:
            raise ForgeError(f"{self.repo_root} has no branch {self.base!r} to merge into")
        return main

    async def fetch_proposal(self, proposal_id: int) -> None:
        """Nothing to fetch: a local proposal's branch is a branch of this repository."""

    async def merge(self, proposal_id: int, expected_head_sha: str) -> MergeResult:
        """Record the fast-forward of main to `expected_head_sha` (see the module docstring)."""
        async with self._merge_lock:
            proposal = await self._own(proposal_id)
            if proposal.state == "closed":
                raise ForgeError(f"proposal {proposal_id} is closed; it cannot be merged")
            recorded = await self._recorded_merge(proposal_id)
            if recorded is not None:
                return await self._merged_already(proposal, expected_head_sha, *recorded)
            head = await branch_head(self.repo_root, proposal.branch)
            if head != expected_head_sha:
                where = f"is at {head[:12]}" if head else "no longer exists"
                raise HeadMovedError(
                    f"branch {proposal.branch!r} {where}, not the approved commit"
                    f" {expected_head_sha[:12]}; nothing was merged"
                )
            main = await self.main_sha()
            await self._refuse_if_a_merge_is_held(main, proposal_id)
            if not await is_ancestor(self.repo_root, main, expected_head_sha):
                raise MainMovedError(
                    f"{self.base} moved to {main[:12]} since proposal {proposal_id} was verified;"
                    " it must be rebased and verified again",
                    main_sha=main,
                )
            # The old value "" means "must not exist yet": a second merger loses instead of overwriting.
            message = f"mendbot: merge proposal {proposal_id}"
            await run_git(
                self.repo_root, "update-ref", "-m", message, self._merged_from_ref(proposal_id), main, ""
            )
            await run_git(
                self.repo_root, "update-ref", "-m", message, merged_ref(proposal_id), expected_head_sha, ""
            )
            await self._note(expected_head_sha, f"Merged into {self.base} (was {main[:12]})")
            await proposals.update(
                self._db, proposal_id, state="merged", head_sha=expected_head_sha, now=self._now()
            )
        log.info(
            "proposal_merged",
            forge=self.name,
            proposal_id=proposal_id,
            sha=expected_head_sha,
            main_before=main,
        )
        return MergeResult(merged_sha=expected_head_sha, main_before=main)

    async def _recorded_merge(self, proposal_id: int) -> tuple[str, str] | None:
        """(merged sha, main before) if a merge of this proposal was recorded, else None."""
        merged = await resolve_commit(self.repo_root, merged_ref(proposal_id))
        before = await resolve_commit(self.repo_root, self._merged_from_ref(proposal_id))
        return (merged, before or "") if merged else None

    async def _merged_already(
        self, proposal: Proposal, expected_head_sha: str, merged: str, before: str
    ) -> MergeResult:
        if merged != expected_head_sha:
            raise ForgeError(
                f"proposal {proposal.id} was already merged as {merged[:12]}, not {expected_head_sha[:12]}"
            )
        if proposal.state != "merged":  # the process stopped between the refs and the row
            await proposals.update(self._db, proposal.id, state="merged", head_sha=merged, now=self._now())
        return MergeResult(merged_sha=merged, main_before=before, already_merged=True)

    async def _refuse_if_a_merge_is_held(self, main: str, proposal_id: int) -> None:
        held = await run_git(
            self.repo_root,
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            f"--no-merged={main}",
            MERGED_REF_PREFIX,
        )
        for line in held.splitlines():
            ref, _, sha = line.partition(" ")
            if ref != merged_ref(proposal_id):
                other = ref.removeprefix(MERGED_REF_PREFIX)
                raise ForgeError(
                    f"proposal {other} was merged as {sha[:12]} but {self.base} has not reached it yet"
                    f" (the live checkout was not updated): deploy it first, or delete {ref} if it"
                    " was abandoned on purpose"
                )

    @staticmethod
    def _merged_from_ref(proposal_id: int) -> str:
        return f"{MERGED_FROM_REF_PREFIX}{proposal_id}"

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
