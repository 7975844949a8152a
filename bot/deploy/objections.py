"""Objections hold a merge (rule 9 of `mendbot.deploy.approval`): recorded, and withdrawn again.

`hold()` judges one message that objects to a proposal, or that cannot be read as a yes or a no, and
stores it; the objection holds the merge until its author deletes or edits it, or approves. Kept
apart from deciding: an objection is never counted, it only holds.
"""

from __future__ import annotations

from collections.abc import Collection

from mendbot.db import objections as objection_queries
from mendbot.db import proposals
from mendbot.db.objections import Objection, ObjectionKind
from mendbot.db.proposals import Proposal
from mendbot.deploy.approval_core import (
    _MERGED_STATES,
    _OBJECTABLE_STATES,
    ApprovalCore,
    ApprovalDecision,
    DecisionStatus,
)
from mendbot.improve.runs import state_name
from mendbot.kernel.log import get_logger
from mendbot.trust.grammar import what_counts

__all__ = ["ApprovalObjections"]

_log = get_logger(__name__)


class ApprovalObjections(ApprovalCore):
    """Objections: `hold()` stores one, and what takes it back again."""

    async def hold(
        self,
        *,
        proposal_id: int,
        user_id: int,
        role_ids: Collection[int],
        is_bot: bool,
        channel_id: int,
        message_id: int,
        kind: ObjectionKind,
        reason: str,
        why: str,
        parent_channel_id: int | None = None,
        user_name: str | None = None,
        via: str = "words",
    ) -> ApprovalDecision:
        """An objection (or an unclear message) about the proposal: held, or refused (rule 9).

        `reason` is the grammar's ("hold", "question", …) and `why` its words for it ("it asks to
        wait or stop"); `via` is how the message reached the proposal ("words": a reply, "thread",
        "named": it names the run).
        """
        name = self._runs.redactor.text(user_name or f"<@{user_id}>", 100)  # a display name: untrusted
        async with self._lock(proposal_id):
            proposal = await proposals.get(self._db, proposal_id)
            run = await self._runs.find(proposal.run_id) if proposal is not None else None
            if proposal is None or run is None:
                return ApprovalDecision("refused", f"There is no proposal #{proposal_id}.", 0, 0, "")
            head = proposal.head_sha

            def answer(status: DecisionStatus, why_not: str, message: str) -> tuple[ApprovalDecision, str]:
                return ApprovalDecision(status, message, 0, 0, head, run.id, reason=why_not), why_not

            unclear = f"That doesn't count as an approval ({why}). {what_counts()}"
            dev = set(self._settings.discord.dev_channel_ids)
            if is_bot:
                decision, refusal = answer("refused", "bot", "Bots can't hold a merge.")
            elif not self._access.is_allowed(user_id, role_ids):
                decision, refusal = answer(
                    "refused",
                    "not_allowed",
                    unclear
                    if kind == "unclear"
                    else f"{name} isn't allow-listed, so that doesn't hold the merge.",
                )
            elif channel_id not in dev and parent_channel_id not in dev:
                decision, refusal = answer(
                    "refused", "wrong_channel", "Objections only count in the dev channel."
                )
            elif proposal.state == "merged" or run.state in _MERGED_STATES - {"merging"}:
                decision, refusal = answer(
                    "already_merged",
                    "merged",
                    f"Run #{run.id} is already merged: `/rollback {run.id}` undoes it.",
                )
            elif (
                run.state not in _OBJECTABLE_STATES
                or run.proposal_id != proposal.id
                or proposal.state == "closed"
            ):
                decision, refusal = answer(
                    "not_awaiting",
                    run.state,
                    f"Run #{run.id} isn't waiting to merge (it is {state_name(run.state)}).",
                )
            else:
                await self._writes(
                    lambda: objection_queries.record(
                        self._db,
                        proposal_id=proposal.id,
                        run_id=run.id,
                        user_id=user_id,
                        kind=kind,
                        reason=reason,
                        message_id=message_id,
                        channel_id=channel_id,
                        now=self._now(),
                    ),
                    what="objection",
                )
                let_go = "approve it (**ship it**), or delete or edit that message"
                if kind == "unclear":
                    message = (
                        f"That doesn't count as an approval ({why}), and until you say which it holds run"
                        f" #{run.id}: {let_go}. {what_counts()}"
                    )
                else:
                    message = f"⏸ Holding run #{run.id}: {name} objected ({why}). It won't merge until {name}"
                    message += f" says so: {let_go}."
                decision, refusal = answer("held", kind, message)
            await self._runs.event(
                run.id,
                "approval_unclear" if kind == "unclear" else "approval_objected",
                actor=f"user:{user_id}",
                detail={
                    "proposal_id": proposal.id,
                    "reason": reason,
                    "via": via,
                    "channel_id": channel_id,
                    "message_id": message_id,
                    "holding": decision.status == "held",
                    **({} if decision.status == "held" else {"refused": refusal}),
                },
            )
        _log.info(
            "objection",
            run_id=run.id,
            proposal_id=proposal_id,
            user_id=user_id,
            kind=kind,
            status=decision.status,
        )
        return decision

    async def withdraw_objections(self, *, message_id: int, why: str) -> list[Objection]:
        """Take back the objections that came from `message_id` (deleted); returns those withdrawn."""
        withdrawn = await objection_queries.withdraw_message(self._db, message_id, why=why, now=self._now())
        for objection in withdrawn:
            await self._objection_withdrawn(objection, why)
        return withdrawn

    async def _withdraw_objections_of(self, proposal: Proposal, user_id: int) -> list[Objection]:
        withdrawn = await objection_queries.withdraw_user(
            self._db, proposal.id, user_id, why="approved", now=self._now()
        )
        for objection in withdrawn:
            await self._objection_withdrawn(objection, "approved")
        return withdrawn

    async def _objection_withdrawn(self, objection: Objection, why: str, *, seen: str = "event") -> None:
        await self._runs.event(
            objection.run_id,
            "objection_withdrawn",
            actor=f"user:{objection.user_id}",
            detail={
                "proposal_id": objection.proposal_id,
                "message_id": objection.message_id,
                "kind": objection.kind,
                "why": why,
                "seen": seen,
            },
        )
        _log.info(
            "objection_withdrawn",
            proposal_id=objection.proposal_id,
            user_id=objection.user_id,
            why=why,
            seen=seen,
        )
