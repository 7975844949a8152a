"""The one place that decides whether a proposal may be merged (DESIGN §7).

Every approval signal — ✅/🔐 on the proposal message, the Approve button, "ship it" in reply or
in its thread — reaches `ApprovalService.decide()` as plain values, and every rule lives here:

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
   proof of fix does not hold (`bot.improve.proof`) counts only the explicit "ship it unproven" (or, on
   protected paths, the security form, itself explicit): a plain "ship it" is answered with why;
7. approvals follow the human: each stored approval remembers the signal it came from (the
   approving message, or the reaction on the proposal's message), and `withdraw()` /
   `message_edited()` take it back when that message is deleted, edited into anything but the same
   clear decision (`bot.deploy.grammar`), or the reaction is removed;
8. at merge time `recheck()` counts again, against the *current* allow-list and each approver's
   *current* roles: a withdrawn, stale or revoked approval does not count, and the merge report
   names the approvals that did.

"ready" means enough approvals of the head are in, and decide() has already moved the run
awaiting_approval → merging: the caller merges exactly `decision.sha`. Two approvals arriving
together cannot both be "ready": decide() runs one at a time per proposal (an asyncio lock), and the
transition is a compare-and-set on the run's state in SQLite (RunService.transition), which also
holds against another process; the loser answers "already merged". "rejected" means decide() moved
the run to rejected; the caller closes the proposal on the forge. Every decision, refusals
included, is written to the run's events as `approval_<status>` by `user:<id>`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from bot.access import AccessPolicy
from bot.db import approvals as queries
from bot.db import proofs, proposals
from bot.db.approvals import Approval, ApprovalForm
from bot.db.core import Connection
from bot.db.proposals import Proposal
from bot.db.retry import Writes
from bot.git import git
from bot.improve.guard import protected_entry
from bot.improve.proof import proved_by_replay
from bot.improve.runs import InvalidTransition, Run, RunService
from bot.log import get_logger
from bot.settings import Settings

__all__ = [
    "ApprovalDecision",
    "ApprovalForm",
    "ApprovalService",
    "DecisionStatus",
    "DiffUnavailable",
    "Recheck",
    "RolesLookup",
    "is_protected",
    "touches_protected",
]

_log = get_logger(__name__)

DecisionStatus = Literal["ready", "recorded", "refused", "rejected", "already_merged", "not_awaiting"]

_MERGED_STATES = frozenset({"merging", "deployed", "watching", "resolved", "regressed"})
_GIT_TIMEOUT_S = 60.0
_SECURITY_HINT = "approve with **ship it security** or 🔐"

# The approver's roles as Discord has them now (None: not a member any more); None as a whole when
# no Discord is attached (then only user ids are re-checked, and role-only approvers do not count).
RolesLookup = Callable[[int], Awaitable[list[int] | None]]


class DiffUnavailable(Exception):
    """git could not list the files a proposal changes (missing commit, not a repository...)."""


@dataclass(frozen=True)
class ApprovalDecision:
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


@dataclass(frozen=True)
class Recheck:
    """Approvals counted again at merge time: who counted, who no longer did and why."""

    counted: tuple[int, ...]
    dropped: tuple[tuple[int, str], ...]
    required: int
    sha: str

    @property
    def enough(self) -> bool:
        return len(self.counted) >= self.required

    def names(self) -> str:
        return ", ".join(f"<@{user}>" for user in self.counted) or "nobody"


@dataclass(frozen=True)
class _Request:
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


@dataclass
class _Outcome:
    decision: ApprovalDecision
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Protection:
    paths: tuple[str, ...]
    error: str | None = None  # the diff could not be read: treated as protected (fail closed)

    @property
    def protected(self) -> bool:
        return bool(self.paths) or self.error is not None


def is_protected(path: str, protected: Sequence[str]) -> bool:
    """True if `path` is protected by one of the entries (`bot.improve.guard.protected_entry`)."""
    return protected_entry(path, protected) is not None


async def _git(repo_root: Path, *args: str) -> tuple[int | None, str, str]:
    result = await git(repo_root, *args, check=False, timeout_s=_GIT_TIMEOUT_S)
    return result.code, result.output, result.errors.strip()


def _revision(value: str) -> str:
    # Revisions come from the database, but a value starting with "-" would be read as an option.
    if not value or value.startswith("-"):
        raise DiffUnavailable(f"not a revision: {value!r}")
    return value


async def touches_protected(repo_root: Path, base: str, head: str, protected: Sequence[str]) -> list[str]:
    """The protected files among those changed in `base..head`, sorted; DiffUnavailable if git fails.

    Renames are listed as a deletion plus an addition, so moving a protected file away counts too.
    """
    code, output, errors = await _git(
        repo_root, "diff", "--name-only", "--no-renames", "-z", f"{_revision(base)}..{_revision(head)}", "--"
    )
    if code != 0:
        raise DiffUnavailable(f"git diff {base[:7]}..{head[:7]} failed: {errors or f'exit {code}'}")
    changed = {name for name in output.split("\0") if name}
    return sorted(name for name in changed if is_protected(name, protected))


async def _merge_base(repo_root: Path, head: str) -> str:
    code, output, errors = await _git(repo_root, "merge-base", "refs/heads/main", _revision(head))
    if code != 0 or not output.strip():
        raise DiffUnavailable(f"no merge base of main and {head[:7]}: {errors or f'exit {code}'}")
    return output.strip()


async def _branch_head(repo_root: Path, branch: str) -> str | None:
    """The commit `branch` points at in `repo_root`, or None if there is no such local branch."""
    try:
        code, output, _ = await _git(
            repo_root, "rev-parse", "--verify", "--quiet", f"refs/heads/{_revision(branch)}^{{commit}}"
        )
    except (DiffUnavailable, OSError):
        return None
    return output.strip() if code == 0 and output.strip() else None


def _short(sha: str) -> str:
    return sha[:7]


class ApprovalService:
    """Enforces the approval rules of DESIGN §7 and records every decision on the run."""

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
        self._access = AccessPolicy(settings.access)
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
            decision = dataclasses.replace(outcome.decision, reason=outcome.reason)
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

    # -- approvals follow the human ----------------------------------------------------------------

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
                },
            )
            _log.info(
                "approval_withdrawn", proposal_id=approval.proposal_id, user_id=approval.user_id, why=why
            )
        return withdrawn

    async def message_edited(self, message_id: int, form: ApprovalForm | None) -> list[Approval]:
        """An approving message was edited; it now reads as `form` (None: not a clear decision).

        An edit that is still the same clear decision keeps it; anything else withdraws it.
        """
        standing = await queries.standing_message_forms(self._db, message_id)
        if not standing or standing == {form}:
            return []
        return await self.withdraw(message_id=message_id, why="edited", sources=("message",))

    async def recheck(self, proposal_id: int, roles_of: RolesLookup | None) -> Recheck:
        """Count the proposal's standing approvals of its head again, as of now (module docstring, 8).

        Each approver must still be allow-listed — by user id, or by a role they hold *now*
        (`roles_of`) — and not be the requester when `deploy.exclude_requester` is set.
        """
        proposal = await proposals.get(self._db, proposal_id)
        if proposal is None:
            return Recheck((), (), 1, "")
        run = await self._runs.get(proposal.run_id)
        protection = await self._protected(run, proposal)
        deploy = self._settings.deploy
        forms: tuple[ApprovalForm, ...] = (
            ("approve_security",)
            if protection.protected
            else ("approve", "approve_security", "approve_unproven")
        )
        required = deploy.protected_required_approvals if protection.protected else deploy.required_approvals
        counted: list[int] = []
        dropped: list[tuple[int, str]] = []
        for user_id in dict.fromkeys(
            a.user_id for a in await queries.active(self._db, proposal.id, proposal.head_sha, forms)
        ):
            if deploy.exclude_requester and user_id == run.requester_id:
                dropped.append((user_id, "requested the run"))
                continue
            roles = await roles_of(user_id) if roles_of is not None else []
            if not self._access.is_allowed(user_id, roles or ()):
                dropped.append(
                    (user_id, "is no longer allow-listed" if roles is not None else "left the server")
                )
                continue
            counted.append(user_id)
        result = Recheck(tuple(counted), tuple(dropped), required, proposal.head_sha)
        await self._runs.event(
            run.id,
            "approvals_rechecked",
            actor="system",
            detail={
                "proposal_id": proposal.id,
                "sha": proposal.head_sha,
                "counted": counted,
                "dropped": [{"user_id": user, "why": why} for user, why in dropped],
                "required": required,
            },
        )
        return result

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
                "not_awaiting", run.state, f"Run #{run.id} isn't awaiting approval (it is {run.state}{why})."
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
        detail: dict[str, Any] = {"approvers": users, "protected_paths": list(protection.paths)}
        if protection.error is not None:
            detail["diff_error"] = protection.error

        def outcome(status: DecisionStatus, reason: str, message: str) -> _Outcome:
            decision = ApprovalDecision(status, message, len(users), required, head, run.id, protection.paths)
            return _Outcome(decision, reason, detail)

        count = f"({len(users)}/{required})"
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
            "ready", "approved", f"✅ Approved by {request.name} {count} — merging `{_short(head)}`."
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
        if proof.verdict != "proven":
            return proof.reason
        if requirement == "replay" and not proved_by_replay(proof.items):
            return (
                "it is proven by its test only, and `deploy.require_proof: replay` asks for the recorded"
                " failure replayed and gone, as a user would see it"
            )
        return None

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
