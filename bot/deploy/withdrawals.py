"""Approvals follow the human (rule 7 of `mendbot.deploy.approval`): withdrawn with their message or
reaction, and kept through an edit only if the message still reads as the same clear decision.

An approving message edited into a no, or into something the grammar cannot read as a yes, becomes
its author's objection (`mendbot.deploy.objections`); an objecting message edited out of holding lets go.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import msgspec

from mendbot.db import approvals as queries
from mendbot.db import objections as objection_queries
from mendbot.db.approvals import Approval
from mendbot.db.objections import Objection, ObjectionKind
from mendbot.deploy.approval_core import _OBJECTABLE_STATES
from mendbot.deploy.objections import ApprovalObjections
from mendbot.kernel.log import get_logger
from mendbot.trust.grammar import Reading, read_approval

__all__ = ["ApprovalWithdrawals", "EditOutcome"]

_log = get_logger(__name__)


class EditOutcome(msgspec.Struct, frozen=True):
    """What an edit of a message took back (`withdrawn`, `objections_withdrawn`) or made hold (`held`)."""

    withdrawn: tuple[Approval, ...] = ()
    objections_withdrawn: tuple[Objection, ...] = ()
    held: tuple[Objection, ...] = ()


def _still_holds(reading: Reading) -> bool:
    """An edited message holds when it objects, is unclear, or rejects: an edit never rejects the run
    (that takes a new message), so a "don't ship it" written by editing holds it instead."""
    return reading.holds or reading.verdict == "reject"


class ApprovalWithdrawals(ApprovalObjections):
    """Withdrawals: a deleted message, a removed reaction, an edit."""

    async def withdraw(
        self,
        *,
        message_id: int,
        why: str,
        user_id: int | None = None,
        emoji: str | None = None,
        sources: Collection[str] = ("message", "reaction"),
    ) -> list[Approval]:
        """Take back the standing decisions that came from `message_id`; returns those withdrawn.

        Each is written to its run's events (`approval_withdrawn`); a run already merging re-counts at
        merge time (`recheck`), so a withdrawal that races the merge still cannot be counted.
        """
        withdrawn = await queries.withdraw(
            self._db, message_id=message_id, why=why, now=self._now(), user_id=user_id, emoji=emoji,
            sources=sources,
        )  # fmt: skip
        for approval in withdrawn:
            await self._approval_withdrawn(approval, why)
        return withdrawn

    async def _approval_withdrawn(self, approval: Approval, why: str, *, seen: str = "event") -> None:
        await self._runs.event(
            approval.run_id,
            "approval_withdrawn",
            actor=f"user:{approval.user_id}",
            detail={
                "proposal_id": approval.proposal_id,
                "sha": approval.sha,
                "form": approval.form,
                "source": approval.source,
                "why": why,
                "seen": seen,  # "event": Discord told us; "reread": found when reading it again
            },
        )
        _log.info(
            "approval_withdrawn",
            proposal_id=approval.proposal_id,
            user_id=approval.user_id,
            why=why,
            seen=seen,
        )

    async def message_edited(self, message_id: int, text: str) -> EditOutcome:
        """A message was edited into `text`: what it stood for is kept only if it still reads the same.

        An approving message still the same clear decision keeps its approval; anything else withdraws
        it — and if it now says no or cannot be read as a yes, it holds as its author's objection
        (rule 7 of `mendbot.deploy.approval`). An objecting message that no longer holds lets go.
        """
        reading = read_approval(text)
        held: list[Objection] = []
        standing = await queries.standing_message_forms(self._db, message_id)
        withdrawn: list[Approval] = []
        if standing and standing != {reading.form}:
            withdrawn = await self.withdraw(message_id=message_id, why="edited", sources=("message",))
            if _still_holds(reading):
                held = await self._hold_from_edits(withdrawn, reading.verdict, reading.reason)
        let_go: list[Objection] = []
        if not _still_holds(reading):
            let_go = await objection_queries.withdraw_message(
                self._db, message_id, why="edited", now=self._now()
            )
            for objection in let_go:
                await self._objection_withdrawn(objection, "edited")
        return EditOutcome(tuple(withdrawn), tuple(let_go), tuple(held))

    async def _hold_from_edits(
        self, withdrawn: Iterable[Approval], verdict: str, reason: str
    ) -> list[Objection]:
        """Approving messages edited into a no, or into something unclear: objections of their authors."""
        kind: ObjectionKind = "unclear" if verdict == "unclear" else "object"
        held: list[Objection] = []
        for approval in withdrawn:
            if approval.message_id is None or not approval.source.startswith("message:"):
                continue
            run = await self._runs.find(approval.run_id)
            if run is None or run.state not in _OBJECTABLE_STATES:
                continue
            channel_id = approval.channel_id or run.channel_id
            if channel_id is None:
                continue
            await objection_queries.record(
                self._db,
                proposal_id=approval.proposal_id,
                run_id=approval.run_id,
                user_id=approval.user_id,
                kind=kind,
                reason=f"edited:{reason}",
                message_id=approval.message_id,
                channel_id=channel_id,
                now=self._now(),
            )
            await self._runs.event(
                approval.run_id,
                f"approval_{'unclear' if kind == 'unclear' else 'objected'}",
                actor=f"user:{approval.user_id}",
                detail={
                    "proposal_id": approval.proposal_id,
                    "reason": reason,
                    "via": "edit",
                    "holding": True,
                },
            )
            held.extend(
                o
                for o in await objection_queries.standing(self._db, approval.proposal_id)
                if o.message_id == approval.message_id
            )
        return held
