"""The core every part of the approval service shares, and the decision it answers with.

`ApprovalService` (`mendbot.deploy.approval`) is built in layers, one module each, every layer using only
those below it: this core (the database, the runs, the settings and access policy, one lock per
proposal, the messages that stand for a proposal, which protected paths its diff touches), objections
(`mendbot.deploy.objections`), withdrawals and edits (`mendbot.deploy.withdrawals`), reading again and
counting again at merge time (`mendbot.deploy.recheck`), and deciding on top.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Literal

import msgspec

from mendbot.db import approvals as queries
from mendbot.db.core import Connection
from mendbot.db.proposals import Proposal
from mendbot.db.retry import Writes
from mendbot.deploy.protection import DiffUnavailable, _merge_base, _Protection, touches_protected
from mendbot.improve.runs import Run, RunService
from mendbot.kernel.log import get_logger
from mendbot.kernel.settings import Settings
from mendbot.trust.access import AccessPolicy

__all__ = ["ApprovalCore", "ApprovalDecision", "DecisionStatus"]

_log = get_logger(__name__)

DecisionStatus = Literal["ready", "recorded", "refused", "rejected", "already_merged", "not_awaiting", "held"]

_MERGED_STATES = frozenset({"merging", "deployed", "watching", "resolved", "regressed", "rolled_back"})
# Where a merge is still ahead, an objection can hold it: waiting for approval, queued or about to
# merge (recheck has not run yet), re-verifying a moved branch, or stopped in one of those.
_OBJECTABLE_STATES = frozenset({"awaiting_approval", "merging", "verifying", "interrupted"})


class ApprovalDecision(msgspec.Struct, frozen=True):
    """What decide() concluded; `message` is ready to post in chat.

    `approvals`/`required` count valid approvals of `sha` when the decision got as far as counting
    (recorded, ready), and are 0 otherwise.
    """

    status: DecisionStatus
    message: str
    approvals: int
    required: int
    sha: str
    run_id: int | None = None
    protected_paths: tuple[str, ...] = ()
    reason: str = ""  # why, in one word (as in the run event): "approved", "stale", "branch_moved", ...


class ApprovalCore:
    """The state and the lookups that deciding, objections, withdrawals and rechecks share."""

    def __init__(
        self,
        db: Connection,
        runs: RunService,
        settings: Settings,
        clock: Callable[[], datetime],
        *,
        writes: Writes | None = None,
    ) -> None:
        self._db = db
        self._writes = writes or Writes()  # a locked/full database is retried, then "couldn't save"
        self._runs = runs
        self._settings = settings
        self._clock = clock
        self._access = AccessPolicy(lambda: settings.access)
        self._locks: dict[int, asyncio.Lock] = {}
        # (base, head) → protected files: a commit's diff never changes, and git is not free.
        self._protection: dict[tuple[str, str], tuple[str, ...]] = {}

    def _now(self) -> float:
        return self._clock().timestamp()

    def _lock(self, proposal_id: int) -> asyncio.Lock:
        return self._locks.setdefault(proposal_id, asyncio.Lock())

    async def register_message(self, proposal_id: int, channel_id: int, message_id: int) -> None:
        """Remember that `message_id` stands for the proposal (reactions and replies on it count)."""
        await queries.register_message(
            self._db, message_id=message_id, proposal_id=proposal_id, channel_id=channel_id
        )

    async def proposal_for_message(self, message_id: int) -> int | None:
        return await queries.proposal_for_message(self._db, message_id)

    async def messages_for_proposal(self, proposal_id: int) -> list[tuple[int, int]]:
        """(message_id, channel_id) of the messages standing for the proposal, oldest first."""
        return await queries.messages_for_proposal(self._db, proposal_id)

    async def _protected(self, run: Run, proposal: Proposal) -> _Protection:
        repo = self._settings.repo_dir
        head = proposal.head_sha
        try:
            base = run.base_sha or await _merge_base(repo, head)
            key = (base, head)
            if key not in self._protection:
                touched = await touches_protected(repo, base, head, self._settings.improve.protected_paths)
                self._protection[key] = tuple(touched)
            return _Protection(self._protection[key])
        except (DiffUnavailable, OSError) as exc:
            _log.warning("approval_diff_unavailable", run_id=run.id, proposal_id=proposal.id, error=str(exc))
            return _Protection((), str(exc))
