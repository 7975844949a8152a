"""The one place that decides whether a proposal may be merged (DESIGN §7).

Every approval signal — ✅/🔐 on the proposal message, the Approve button, "ship it" in reply or
in its thread — reaches `ApprovalService.decide()` as plain values, every objection reaches
`ApprovalService.hold()`, and every rule lives here:

1. the person is allow-listed and not a bot (the bot itself included);
2. the signal came from a dev channel, or from a thread whose parent is one;
3. the run is awaiting approval and this proposal is its current one; a merged run answers
   "already merged" and changes nothing, so repeating an approval is harmless;
4. an approval binds to the proposal's current head sha: approvals of an earlier head are stale
   and no longer count (GitHub's "dismiss stale approvals"); a branch that moved since it was
   proposed makes the approval in hand stale too;
5. `deploy.exclude_requester` keeps whoever asked for the run from approving it;
6. a diff touching `improve.protected_paths` counts only the security form ("ship it security" or
   🔐) and needs `deploy.protected_required_approvals` of them; any other diff needs
   `deploy.required_approvals` approvals of either form;
6b. with `deploy.require_proof` (`test`, or `replay`: only a replay judged from outside), a run whose
   proof of fix does not hold (`mendbot.improve.proof.verdict`) counts only the explicit "ship it unproven"
   (or, on protected paths, the security form, itself explicit): a plain "ship it" is answered with why;
7. approvals follow the human: each stored approval remembers the signal it came from (the
   approving message and its channel, or the reaction on the proposal's message), and `withdraw()` /
   `message_edited()` take it back when that message is deleted, edited into anything but the same
   clear decision (`mendbot.trust.grammar`), or the reaction is removed. An edit never adds an approval
   and never rejects; an approving message edited into words that say no, or that the grammar
   cannot read as a yes, becomes an objection of its author (rule 9);
7b. and they are read again, because Discord does not replay to a new session what the bot missed
   while it was down: at start-up (`DeployService.reread_standing`) and at merge time (`recheck`),
   `reread()` fetches each standing approval's source through `ApprovalSources` — the approving
   message's current words through the grammar, the reaction's current users. A message gone (404),
   edited into anything but the same clear decision, or a reaction no longer there withdraws the
   approval, as the live event would have. A source Discord cannot be asked about (an error, a
   timeout, no Discord attached) is not withdrawn but does not count at that merge: the merge is held
   with the reason. A button click is an act, not a state: there is nothing to read again, and it
   counts until the head moves;
8. at merge time `recheck()` counts again, against the *current* allow-list and each approver's
   *current* roles: a withdrawn, stale, revoked or unreadable approval does not count, a standing
   objection holds, and the merge report names the approvals that did count;
9. an objection holds. The rule chosen, with DESIGN §7: its rejection forms — ❌ on the proposal,
   the Reject button, a whole message "don't ship" / "reject" replying to it — still reject the run
   at once (a rejection is final, whatever the count). Every other message from an allow-listed user,
   replying to the proposal, in its thread or naming its run ("run 7", "#7") in a dev channel, that
   the grammar reads as an objection (asks to wait or stop, says no, negates shipping) or cannot
   read as a yes or a no ("unclear"), is an objection: stored (`mendbot.db.objections`), it holds the
   merge — decide() answers "recorded" instead of "ready", and recheck() will not pass — until that
   same person withdraws it (deletes the message, or edits it into something that no longer holds)
   or gives a valid approval after it. A message naming a run only ever holds it: approving and
   rejecting need a reply to the proposal. Objections are not bound to a head (a new commit does not
   answer one), they hold whatever the objector's roles are by now (a moderator deleting the message
   lets go), and they are read again like approvals: a message gone or edited out of holding
   withdraws them; one that cannot be read still holds.

"ready" means enough approvals of the head are in, no objection holds, and decide() has already
moved the run awaiting_approval → merging: the caller merges exactly `decision.sha`, after
`recheck()`. Two approvals arriving
together cannot both be "ready": decide() runs one at a time per proposal (an asyncio lock), and the
transition is a compare-and-set on the run's state in SQLite (RunService.transition), which also
holds against another process; the loser answers "already merged". "rejected" means decide() moved
the run to rejected; the caller closes the proposal on the forge. "held" means hold() stored an
objection. Every decision, refusals included, is written to the run's events as `approval_<status>`
(`approval_objected` / `approval_unclear` for objections) by `user:<id>`.

The rules are enforced by `ApprovalService`, built in layers (`mendbot.deploy.approval_core`, then
objections, withdrawals and rechecks, each its own module); this module holds the deciding on top.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import msgspec

from mendbot.db import approvals as queries
from mendbot.db import objections as objection_queries
from mendbot.db import proofs, proposals
from mendbot.db.approvals import ApprovalForm
from mendbot.db.proposals import Proposal
from mendbot.deploy.approval_core import _MERGED_STATES, ApprovalDecision, DecisionStatus
from mendbot.deploy.protection import _branch_head, _Protection
from mendbot.deploy.recheck import ApprovalRechecks
from mendbot.improve.proof.verdict import proved_by_replay
from mendbot.improve.runs import InvalidTransition, Run, state_name
from mendbot.kernel.log import get_logger

__all__ = ["ApprovalForm", "ApprovalService"]

_log = get_logger(__name__)

_SECURITY_HINT = "approve with **ship it security** or 🔐"


class _Request(msgspec.Struct, frozen=True):
    proposal_id: int
    user_id: int
    name: str
    form: ApprovalForm
    via: str
    channel_id: int
    parent_channel_id: int | None
    sha: str | None
    source: str = ""
    message_id: int | None = None
    emoji: str | None = None


class _Outcome(msgspec.Struct):
    decision: ApprovalDecision
    reason: str
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


def _short(sha: str) -> str:
    return sha[:7]


def _people(user_ids: Iterable[int]) -> str:
    return ", ".join(dict.fromkeys(f"<@{user}>" for user in user_ids))


class ApprovalService(ApprovalRechecks):
    """Enforces the approval rules of DESIGN §7 and records every decision on the run."""

    async def decide(
        self,
        *,
        proposal_id: int,
        user_id: int,
        role_ids: Collection[int],
        is_bot: bool,
        channel_id: int,
        form: ApprovalForm,
        via: str,
        parent_channel_id: int | None = None,
        user_name: str | None = None,
        sha: str | None = None,
        message_id: int | None = None,
        emoji: str | None = None,
    ) -> ApprovalDecision:
        """Apply one approval or rejection; see the module docstring for the rules and statuses.

        `parent_channel_id` is the parent of a thread; `sha` is the head the person saw (e.g. from a
        button), None for the proposal's current head. `message_id` is the approving message (words)
        or the message reacted on (with `emoji`): what withdraws the approval later.
        """
        source = {
            "words": f"message:{message_id}",
            "reaction": f"reaction:{message_id}:{emoji}",
        }.get(via, f"{via}:{message_id or ''}")
        request = _Request(
            source=source,
            message_id=message_id,
            emoji=emoji,
            proposal_id=proposal_id,
            user_id=user_id,
            name=user_name or f"<@{user_id}>",
            form=form,
            via=via,
            channel_id=channel_id,
            parent_channel_id=parent_channel_id,
            sha=sha,
        )
        async with self._lock(proposal_id):
            proposal = await proposals.get(self._db, proposal_id)
            run = await self._runs.find(proposal.run_id) if proposal is not None else None
            if proposal is None or run is None:
                return ApprovalDecision("refused", f"There is no proposal #{proposal_id}.", 0, 0, sha or "")
            outcome = await self._judge(request, proposal, run, role_ids=role_ids, is_bot=is_bot)
            decision = msgspec.structs.replace(outcome.decision, reason=outcome.reason)
            await self._runs.event(
                run.id,
                f"approval_{decision.status}",
                actor=f"user:{user_id}",
                detail={
                    "proposal_id": proposal_id,
                    "sha": decision.sha,
                    "form": form,
                    "via": via,
                    "channel_id": channel_id,
                    "reason": outcome.reason,
                    "approvals": decision.approvals,
                    "required": decision.required,
                    **outcome.detail,
                },
            )
        _log.info(
            "approval_decision",
            run_id=run.id,
            proposal_id=proposal_id,
            user_id=user_id,
            form=form,
            via=via,
            status=decision.status,
            reason=outcome.reason,
        )
        return decision

    async def mark_stale(self, proposal_id: int, new_sha: str) -> int:
        """The proposal's branch moved to `new_sha`: earlier approvals stop counting. Returns how many."""
        async with self._lock(proposal_id):
            proposal = await proposals.get(self._db, proposal_id)
            if proposal is None:
                return 0
            return await self._mark_stale(proposal, new_sha)

    async def record_merged(self, proposal_id: int, head_sha: str) -> None:
        """The proposal's row says merged at `head_sha` (its merge was recorded on the forge)."""
        await proposals.update(self._db, proposal_id, now=self._now(), state="merged", head_sha=head_sha)

    async def dismiss(self, proposal_id: int, why: str) -> int:
        """Every standing approval of the proposal stops counting (the forge's head moved under it)."""
        async with self._lock(proposal_id):
            proposal = await proposals.get(self._db, proposal_id)
            if proposal is None:
                return 0
            count = await queries.mark_stale(self._db, proposal.id, "")
            await self._runs.event(
                proposal.run_id,
                "approvals_stale",
                actor="system",
                detail={"proposal_id": proposal.id, "why": why},
            )
            return count

    async def _mark_stale(self, proposal: Proposal, new_sha: str) -> int:
        if new_sha != proposal.head_sha:
            await proposals.update(self._db, proposal.id, now=self._now(), head_sha=new_sha)
        count = await queries.mark_stale(self._db, proposal.id, new_sha)
        if new_sha != proposal.head_sha or count:
            await self._runs.event(
                proposal.run_id,
                "approvals_stale",
                actor="system",
                detail={
                    "proposal_id": proposal.id,
                    "old_sha": proposal.head_sha,
                    "new_sha": new_sha,
                    "stale": count,
                },
            )
        _log.info("approvals_stale", proposal_id=proposal.id, new_sha=new_sha, stale=count)
        return count

    async def _judge(
        self, request: _Request, proposal: Proposal, run: Run, *, role_ids: Collection[int], is_bot: bool
    ) -> _Outcome:
        head = proposal.head_sha

        def refuse(reason: str, message: str, **detail: Any) -> _Outcome:
            return _Outcome(ApprovalDecision("refused", message, 0, 0, head, run.id), reason, detail)

        verb = "reject" if request.form == "reject" else "approve"
        if is_bot:
            return refuse("bot", f"Bots can't {verb} proposals.")
        if not self._access.is_allowed(request.user_id, role_ids):
            return refuse("not_allowed", f"{request.name} isn't allow-listed to {verb}.")
        dev = set(self._settings.discord.dev_channel_ids)
        if request.channel_id not in dev and request.parent_channel_id not in dev:
            what = "Rejections" if request.form == "reject" else "Approvals"
            return refuse("wrong_channel", f"{what} only count in the dev channel.")
        state = self._state_answer(proposal, run)
        if state is not None:
            return state
        if request.form == "reject":
            return await self._reject(request, proposal, run)

        if request.sha is not None and request.sha != head:
            return refuse(
                "stale",
                f"Approval for `{_short(request.sha)}` is stale: the proposal is now at `{_short(head)}`.",
                given_sha=request.sha,
            )
        moved = await _branch_head(self._settings.repo_dir, proposal.branch)
        if moved is not None and moved != head:
            # Someone committed to the branch after it was proposed: what this person approved is
            # not what would be merged, and earlier approvals are of an older head.
            await self._mark_stale(proposal, moved)
            return _Outcome(
                ApprovalDecision(
                    "refused",
                    f"Approval for `{_short(head)}` is stale: the proposal is now at `{_short(moved)}`.",
                    0,
                    0,
                    moved,
                    run.id,
                ),
                "branch_moved",
                {"given_sha": head},
            )
        if run.verified_sha is not None and run.verified_sha != head:
            # An approval binds to the head that passed verification; this one has not (yet).
            return refuse(
                "unverified",
                f"`{_short(head)}` hasn't passed the checks (they passed on `{_short(run.verified_sha)}`): "
                "it needs re-verifying before it can be approved.",
                verified_sha=run.verified_sha,
            )
        if self._settings.deploy.exclude_requester and request.user_id == run.requester_id:
            return refuse(
                "requester", f"{request.name} requested run #{run.id}, so someone else has to approve it."
            )
        protection = await self._protected(run, proposal)
        if protection.protected and request.form != "approve_security":
            if protection.error is not None:
                message = f"I couldn't read this change's diff, so it counts as protected: {_SECURITY_HINT}."
            else:
                paths = ", ".join(protection.paths)
                message = f"This change touches protected paths ({paths}): {_SECURITY_HINT}."
            return refuse(
                "needs_security_form",
                message,
                protected_paths=list(protection.paths),
                diff_error=protection.error,
            )
        # After the protection rule: on protected paths the security form (itself explicit) is asked
        # for first and suffices.
        unproven = await self._unproven(run, proposal.head_sha)
        if unproven is not None and request.form not in ("approve_unproven", "approve_security"):
            return refuse(
                "unproven",
                f"Run #{run.id} is **unproven**: {unproven[:300]}. "
                "If you want it shipped anyway, reply **ship it unproven**.",
            )
        return await self._count(request, proposal, run, protection)

    def _state_answer(self, proposal: Proposal, run: Run) -> _Outcome | None:
        """The answer when the run is not awaiting approval of this proposal; None when it is."""

        def answer(status: DecisionStatus, reason: str, message: str) -> _Outcome:
            return _Outcome(ApprovalDecision(status, message, 0, 0, proposal.head_sha, run.id), reason)

        if proposal.state == "merged" or run.state in _MERGED_STATES:
            if run.state == "merging":
                return answer("already_merged", "merging", f"Run #{run.id} is already being merged.")
            return answer("already_merged", "merged", f"Run #{run.id} is already merged.")
        if run.proposal_id is not None and run.proposal_id != proposal.id:
            return answer(
                "not_awaiting",
                "superseded",
                f"Proposal #{proposal.id} was replaced by #{run.proposal_id} for run #{run.id}.",
            )
        if run.state == "rejected":
            return answer("not_awaiting", "rejected", f"Run #{run.id} was already rejected.")
        if run.state != "awaiting_approval":
            why = f": {run.failure_reason.splitlines()[0][:200]}" if run.failure_reason else ""
            return answer(
                "not_awaiting",
                run.state,
                f"Run #{run.id} isn't awaiting approval (it is {state_name(run.state)}{why}).",
            )
        if proposal.state == "closed":
            return answer("not_awaiting", "closed", f"Proposal #{proposal.id} is closed.")
        return None

    async def _reject(self, request: _Request, proposal: Proposal, run: Run) -> _Outcome:
        await self._store(request, proposal)
        try:
            await self._runs.transition(
                run.id,
                "rejected",
                actor=f"user:{request.user_id}",
                detail={"proposal_id": proposal.id, "sha": proposal.head_sha, "via": request.via},
            )
        except InvalidTransition:
            return await self._lost_race(proposal, run)
        return _Outcome(
            ApprovalDecision("rejected", f"Rejected by {request.name}.", 0, 0, proposal.head_sha, run.id),
            "rejected",
        )

    async def _count(
        self, request: _Request, proposal: Proposal, run: Run, protection: _Protection
    ) -> _Outcome:
        deploy = self._settings.deploy
        head = proposal.head_sha
        forms: tuple[ApprovalForm, ...] = (
            ("approve_security",)
            if protection.protected
            else ("approve", "approve_security", "approve_unproven")
        )
        required = deploy.protected_required_approvals if protection.protected else deploy.required_approvals
        excluding = (run.requester_id,) if deploy.exclude_requester else ()
        before = await queries.approvers(self._db, proposal.id, head, forms, excluding=excluding)
        await self._store(request, proposal)
        users = await queries.approvers(self._db, proposal.id, head, forms, excluding=excluding)
        added = request.user_id not in before
        # An approval given after one's own objection answers it (rule 9).
        answered = await self._withdraw_objections_of(proposal, request.user_id)
        holding = await objection_queries.standing(self._db, proposal.id)
        detail: dict[str, Any] = {"approvers": users, "protected_paths": list(protection.paths)}
        if protection.error is not None:
            detail["diff_error"] = protection.error
        if holding:
            detail["objections"] = [objection.user_id for objection in holding]

        def outcome(status: DecisionStatus, reason: str, message: str) -> _Outcome:
            if answered:
                message = f"↩️ {request.name}'s objection is withdrawn. {message}"
            decision = ApprovalDecision(status, message, len(users), required, head, run.id, protection.paths)
            return _Outcome(decision, reason, detail)

        count = f"({len(users)}/{required})"
        if holding and len(users) >= required:
            objectors = _people(objection.user_id for objection in holding)
            return outcome(
                "recorded",
                "objected",
                f"👍 {request.name} approved `{_short(head)}` {count}, but {objectors} objected: that holds"
                " the merge until they approve, or delete or edit what they said.",
            )
        if len(users) < required:
            missing = required - len(users)
            kind = "security approval" if protection.protected else "approval"
            more = f"{missing} more {kind}{'s' if missing > 1 else ''} needed"
            if not added:
                return outcome(
                    "recorded",
                    "duplicate",
                    f"{request.name} already approved `{_short(head)}` {count}; {more}.",
                )
            return outcome(
                "recorded", "counted", f"👍 {request.name} approved `{_short(head)}` {count}; {more}."
            )
        try:
            await self._runs.transition(
                run.id,
                "merging",
                actor=f"user:{request.user_id}",
                detail={"proposal_id": proposal.id, "sha": head, **detail},
            )
        except InvalidTransition:
            # Another decision (another process on the same database) moved the run first.
            return await self._lost_race(proposal, run)
        return outcome(
            "ready",
            "approved",
            f"✅ Approved by {request.name} {count} — checking approvals before merging `{_short(head)}`…",
        )

    async def _lost_race(self, proposal: Proposal, run: Run) -> _Outcome:
        current = await self._runs.get(run.id)
        answer = self._state_answer(proposal, current)
        if answer is None:  # back to awaiting approval already: treat as not awaiting this decision
            return _Outcome(
                ApprovalDecision(
                    "not_awaiting",
                    f"Run #{run.id} changed meanwhile; try again.",
                    0,
                    0,
                    proposal.head_sha,
                    run.id,
                ),
                "race",
            )
        return answer

    async def _store(self, request: _Request, proposal: Proposal) -> bool:
        return await self._writes(
            lambda: queries.insert(
                self._db,
                proposal_id=proposal.id,
                run_id=proposal.run_id,
                user_id=request.user_id,
                sha=proposal.head_sha,
                form=request.form,
                via=request.via,
                now=self._now(),
                source=request.source,
                message_id=request.message_id,
                emoji=request.emoji,
                channel_id=request.channel_id,
            ),
            what="approval",
        )

    async def _unproven(self, run: Run, head_sha: str) -> str | None:
        """Why the run's change is unproven when `deploy.require_proof` holds it back, else None.

        A proof holds for the commit it was made on: once the branch has moved (a commit pushed to
        it), "proven" speaks of code that is no longer what would merge until the new head is
        proven too (`DeployService.reverify` does that; the newest proof counts). A run
        proposed before proofs existed, or a rollback (it restores code that ran before), has no
        proof row and is not held back.
        """
        requirement = self._settings.deploy.require_proof
        if requirement == "off":
            return None
        proof = await proofs.latest(self._db, run.id, "verify")
        if proof is None:
            return None
        if proof.sha != head_sha:
            return (
                f"its proof was made on `{proof.sha[:7]}` and the branch has moved to `{head_sha[:7]}` "
                "since, which nothing has proven"
            )
        if proof.verdict not in ("proven", "tested"):
            return proof.reason
        if requirement == "replay" and (proof.verdict != "proven" or not proved_by_replay(proof.items)):
            return (
                "it is only tested (its own test shows the fix, no replay proves it), and"
                " `deploy.require_proof: replay` asks for the recorded failure replayed and gone, as a user"
                " would see it"
            )
        return None
