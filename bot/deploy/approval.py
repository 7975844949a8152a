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
   proof of fix does not hold (`bot.improve.proof`) counts only the explicit "ship it unproven" (or, on
   protected paths, the security form, itself explicit): a plain "ship it" is answered with why;
7. approvals follow the human: each stored approval remembers the signal it came from (the
   approving message and its channel, or the reaction on the proposal's message), and `withdraw()` /
   `message_edited()` take it back when that message is deleted, edited into anything but the same
   clear decision (`bot.trust.grammar`), or the reaction is removed. An edit never adds an approval
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
   read as a yes or a no ("unclear"), is an objection: stored (`bot.db.objections`), it holds the
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
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from bot.db import approvals as queries
from bot.db import objections as objection_queries
from bot.db import proofs, proposals
from bot.db.approvals import Approval, ApprovalForm
from bot.db.core import Connection
from bot.db.objections import Objection, ObjectionKind
from bot.db.proposals import Proposal
from bot.db.retry import Writes
from bot.deploy.sources import ApprovalSources, SourceRead
from bot.improve.proof import proved_by_replay
from bot.improve.runs import InvalidTransition, Run, RunService
from bot.kernel.git import git
from bot.kernel.log import get_logger
from bot.kernel.settings import Settings
from bot.trust.access import AccessPolicy
from bot.trust.grammar import Reading, read_approval, what_counts
from bot.trust.path_rules import protected_entry

__all__ = [
    "ApprovalDecision",
    "ApprovalForm",
    "ApprovalService",
    "DecisionStatus",
    "DiffUnavailable",
    "EditOutcome",
    "Recheck",
    "Reread",
    "RolesLookup",
    "is_protected",
    "touches_protected",
]

_log = get_logger(__name__)

DecisionStatus = Literal["ready", "recorded", "refused", "rejected", "already_merged", "not_awaiting", "held"]

_MERGED_STATES = frozenset({"merging", "deployed", "watching", "resolved", "regressed"})
# Where a merge is still ahead, an objection can hold it: waiting for approval, queued or about to
# merge (recheck has not run yet), re-verifying a moved branch, or stopped in one of those.
_OBJECTABLE_STATES = frozenset({"awaiting_approval", "merging", "verifying", "interrupted"})
_APPROVE_FORMS: tuple[ApprovalForm, ...] = ("approve", "approve_security", "approve_unproven")
_NO_DISCORD = "Discord is not connected"
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
class Reread:
    """What reading the proposal's standing signals again from Discord found.

    `withdrawn` / `objections_withdrawn`: taken back now, each with why ("deleted", "edited",
    "reaction_removed"); `unreadable`: approval id → why Discord could not tell (those do not count
    at this merge, and stay stored); `held`: objections recorded now from approving messages that
    were edited into one.
    """

    withdrawn: tuple[tuple[Approval, str], ...] = ()
    objections_withdrawn: tuple[tuple[Objection, str], ...] = ()
    unreadable: dict[int, str] = field(default_factory=dict)
    held: tuple[Objection, ...] = ()


@dataclass(frozen=True)
class Recheck:
    """Approvals counted again at merge time: who counted, who no longer did and why, what holds."""

    counted: tuple[int, ...]
    dropped: tuple[tuple[int, str], ...]
    required: int
    sha: str
    objections: tuple[Objection, ...] = ()  # standing: each holds the merge
    reread: Reread = field(default_factory=Reread)
    unreadable: tuple[tuple[int, str], ...] = ()  # approvers dropped only because Discord did not answer

    @property
    def enough(self) -> bool:
        return len(self.counted) >= self.required

    @property
    def clear(self) -> bool:
        """Enough current approvals, and nothing holds the merge."""
        return self.enough and not self.objections

    def names(self) -> str:
        return ", ".join(f"<@{user}>" for user in self.counted) or "nobody"


@dataclass(frozen=True)
class EditOutcome:
    """What an edit of a message took back (`withdrawn`, `objections_withdrawn`) or made hold (`held`)."""

    withdrawn: tuple[Approval, ...] = ()
    objections_withdrawn: tuple[Objection, ...] = ()
    held: tuple[Objection, ...] = ()


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
    """True if `path` is protected by one of the entries (`bot.trust.path_rules.protected_entry`)."""
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


def _still_holds(reading: Reading) -> bool:
    """An edited message holds when it objects, is unclear, or rejects: an edit never rejects the run
    (that takes a new message), so a "don't ship it" written by editing holds it instead."""
    return reading.holds or reading.verdict == "reject"


def _people(user_ids: Iterable[int]) -> str:
    return ", ".join(dict.fromkeys(f"<@{user}>" for user in user_ids))


@dataclass
class _Reader:
    """Reads messages through `sources` for one re-read, each message once."""

    sources: ApprovalSources | None
    posted: dict[int, int]  # the proposal's own messages: message id → channel id
    fallback: int | None  # the channel of an approving message stored without one
    _reads: dict[tuple[int, int], SourceRead] = field(default_factory=dict)

    async def read(self, channel_id: int | None, message_id: int) -> SourceRead:
        if self.sources is None:
            return SourceRead.unreadable(_NO_DISCORD)
        if channel_id is None:
            return SourceRead.unreadable("I don't know which channel it is in")
        key = (channel_id, message_id)
        if key not in self._reads:
            self._reads[key] = await self.sources.read(channel_id, message_id)
        return self._reads[key]


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

    # -- objections hold ----------------------------------------------------------------------------

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
                    "not_awaiting", run.state, f"Run #{run.id} isn't waiting to merge (it is {run.state})."
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

    async def message_edited(self, message_id: int, text: str) -> EditOutcome:
        """A message was edited into `text`: what it stood for is kept only if it still reads the same.

        An approving message still the same clear decision keeps its approval; anything else withdraws
        it — and if it now says no or cannot be read as a yes, it holds as its author's objection
        (rule 7). An objecting message that no longer holds lets go.
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

    async def reread(self, proposal_id: int, sources: ApprovalSources | None) -> Reread:
        """Read the proposal's standing approvals (of its head) and objections again from Discord, and
        take back what no longer says so (module docstring, 7b and 9). `sources` None: nothing can be
        read — approvals from messages and reactions are unreadable, objections still hold."""
        async with self._lock(proposal_id):
            proposal = await proposals.get(self._db, proposal_id)
            if proposal is None:
                return Reread()
            run = await self._runs.get(proposal.run_id)
            posted = dict(await queries.messages_for_proposal(self._db, proposal.id))
            # An approval stored before its channel was kept: the proposal's own channel (a reply is in
            # the channel of the message it replies to, unless it came from a thread).
            reader = _Reader(sources, posted, run.channel_id or next(iter(posted.values()), None))
            withdrawn, unreadable, edited_into = await self._reread_approvals(proposal, reader)
            held: list[Objection] = []
            for approval, why in withdrawn:
                await queries.withdraw_ids(self._db, [approval.id], why=why, now=self._now())
                await self._approval_withdrawn(approval, why, seen="reread")
                reading = edited_into.get(approval.id)
                if reading is not None and _still_holds(reading):
                    held += await self._hold_from_edits([approval], reading.verdict, reading.reason)
            let_go: list[tuple[Objection, str]] = []
            for objection in await objection_queries.standing(self._db, proposal.id):
                if objection in held:
                    continue
                got = await reader.read(objection.channel_id, objection.message_id)
                if got.status == "gone":
                    let_go.append((objection, "deleted"))
                elif got.status == "found" and not _still_holds(read_approval(got.content)):
                    let_go.append((objection, "edited"))
            for objection, why in let_go:
                await objection_queries.withdraw_ids(self._db, [objection.id], why=why, now=self._now())
                await self._objection_withdrawn(objection, why, seen="reread")
        if withdrawn or let_go or unreadable:
            _log.info(
                "approvals_reread",
                proposal_id=proposal_id,
                withdrawn=len(withdrawn),
                objections_withdrawn=len(let_go),
                unreadable=len(unreadable),
            )
        return Reread(tuple(withdrawn), tuple(let_go), unreadable, tuple(held))

    async def _reread_approvals(
        self, proposal: Proposal, reader: _Reader
    ) -> tuple[list[tuple[Approval, str]], dict[int, str], dict[int, Reading]]:
        """Each standing approval of the head against its source now: (to withdraw, with why;
        unreadable, approval id → why; what an edited approving message reads as now)."""
        withdrawn: list[tuple[Approval, str]] = []
        unreadable: dict[int, str] = {}
        edited_into: dict[int, Reading] = {}
        for approval in await queries.active(self._db, proposal.id, proposal.head_sha, _APPROVE_FORMS):
            kind = approval.source.partition(":")[0]
            if approval.message_id is None or kind not in ("message", "reaction"):
                continue  # a button click: an act, nothing to read again
            if kind == "message":
                got = await reader.read(approval.channel_id or reader.fallback, approval.message_id)
                reading = read_approval(got.content)
                changed = got.status == "found" and reading.form != approval.form
                if changed:
                    edited_into[approval.id] = reading
                why = "edited"
            else:
                got = await reader.read(
                    reader.posted.get(approval.message_id, approval.channel_id), approval.message_id
                )
                reacted = got.reactions.get(approval.emoji or "", frozenset())
                changed = got.status == "found" and approval.user_id not in reacted
                why = "reaction_removed"
            if got.status == "gone":
                withdrawn.append((approval, "deleted"))
            elif changed:
                withdrawn.append((approval, why))
            elif got.status == "unreadable":
                unreadable[approval.id] = got.error or "no answer"
        return withdrawn, unreadable, edited_into

    async def recheck(
        self, proposal_id: int, roles_of: RolesLookup | None, sources: ApprovalSources | None
    ) -> Recheck:
        """Count the proposal's standing approvals of its head again, as of now (module docstring, 8).

        First each is read again from Discord (`reread`). Then each approver must still be
        allow-listed — by user id, or by a role they hold *now* (`roles_of`) — not be the requester
        when `deploy.exclude_requester` is set, and have a signal Discord could confirm (or a button
        click). Standing objections are returned: any one of them holds the merge.
        """
        proposal = await proposals.get(self._db, proposal_id)
        if proposal is None:
            return Recheck((), (), 1, "")
        reread = await self.reread(proposal_id, sources)
        run = await self._runs.get(proposal.run_id)
        protection = await self._protected(run, proposal)
        deploy = self._settings.deploy
        forms: tuple[ApprovalForm, ...] = ("approve_security",) if protection.protected else _APPROVE_FORMS
        required = deploy.protected_required_approvals if protection.protected else deploy.required_approvals
        counted: list[int] = []
        dropped: list[tuple[int, str]] = []
        unreadable: list[tuple[int, str]] = []
        signals: dict[int, list[Approval]] = {}
        for approval in await queries.active(self._db, proposal.id, proposal.head_sha, forms):
            signals.setdefault(approval.user_id, []).append(approval)
        for user_id, given in signals.items():
            if deploy.exclude_requester and user_id == run.requester_id:
                dropped.append((user_id, "requested the run"))
                continue
            confirmed = [approval for approval in given if approval.id not in reread.unreadable]
            if not confirmed:
                error = reread.unreadable[given[0].id]
                unreadable.append((user_id, error))
                dropped.append((user_id, f"couldn't be read from Discord ({error})"))
                continue
            roles = await roles_of(user_id) if roles_of is not None else []
            if not self._access.is_allowed(user_id, roles or ()):
                dropped.append(
                    (user_id, "is no longer allow-listed" if roles is not None else "left the server")
                )
                continue
            counted.append(user_id)
        holding = tuple(await objection_queries.standing(self._db, proposal.id))
        result = Recheck(
            tuple(counted), tuple(dropped), required, proposal.head_sha, holding, reread, tuple(unreadable)
        )
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
                "objections": [objection.user_id for objection in holding],
                "withdrawn": [approval.user_id for approval, _ in reread.withdrawn],
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
