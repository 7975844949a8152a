"""Standing approvals and objections read again from Discord, and counted again at merge time (rules
7b and 8 of `mendbot.deploy.approval`).

Discord does not replay to a new session what the bot missed while it was down, so `reread()` asks
each standing signal's source (`ApprovalSources`) what it says now, and `recheck()` counts what still
stands against the current allow-list and each approver's current roles before a merge.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from mendbot.db import approvals as queries
from mendbot.db import objections as objection_queries
from mendbot.db import proposals
from mendbot.db.approvals import Approval, ApprovalForm
from mendbot.db.objections import Objection
from mendbot.db.proposals import Proposal
from mendbot.deploy.sources import ApprovalSources, SourceRead
from mendbot.deploy.withdrawals import ApprovalWithdrawals, _still_holds
from mendbot.kernel.log import get_logger
from mendbot.trust.grammar import Reading, read_approval

__all__ = ["ApprovalRechecks", "Recheck", "Reread", "RolesLookup"]

_log = get_logger(__name__)

_APPROVE_FORMS: tuple[ApprovalForm, ...] = ("approve", "approve_security", "approve_unproven")
_NO_DISCORD = "Discord is not connected"

# The approver's roles as Discord has them now (None: not a member any more); None as a whole when
# no Discord is attached (then only user ids are re-checked, and role-only approvers do not count).
RolesLookup = Callable[[int], Awaitable[list[int] | None]]


class Reread(msgspec.Struct, frozen=True):
    """What reading the proposal's standing signals again from Discord found.

    `withdrawn` / `objections_withdrawn`: taken back now, each with why ("deleted", "edited",
    "reaction_removed"); `unreadable`: approval id → why Discord could not tell (those do not count
    at this merge, and stay stored); `held`: objections recorded now from approving messages that
    were edited into one.
    """

    withdrawn: tuple[tuple[Approval, str], ...] = ()
    objections_withdrawn: tuple[tuple[Objection, str], ...] = ()
    unreadable: dict[int, str] = msgspec.field(default_factory=dict)
    held: tuple[Objection, ...] = ()


class Recheck(msgspec.Struct, frozen=True):
    """Approvals counted again at merge time: who counted, who no longer did and why, what holds."""

    counted: tuple[int, ...]
    dropped: tuple[tuple[int, str], ...]
    required: int
    sha: str
    objections: tuple[Objection, ...] = ()  # standing: each holds the merge
    reread: Reread = msgspec.field(default_factory=Reread)
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


class _Reader(msgspec.Struct):
    """Reads messages through `sources` for one re-read, each message once."""

    sources: ApprovalSources | None
    posted: dict[int, int]  # the proposal's own messages: message id → channel id
    fallback: int | None  # the channel of an approving message stored without one
    _reads: dict[tuple[int, int], SourceRead] = msgspec.field(default_factory=dict)

    async def read(self, channel_id: int | None, message_id: int) -> SourceRead:
        if self.sources is None:
            return SourceRead.unreadable(_NO_DISCORD)
        if channel_id is None:
            return SourceRead.unreadable("I don't know which channel it is in")
        key = (channel_id, message_id)
        if key not in self._reads:
            self._reads[key] = await self.sources.read(channel_id, message_id)
        return self._reads[key]


class ApprovalRechecks(ApprovalWithdrawals):
    """Reading the standing signals again (`reread`) and counting them again at merge time (`recheck`)."""

    async def reread(self, proposal_id: int, sources: ApprovalSources | None) -> Reread:
        """Read the proposal's standing approvals (of its head) and objections again from Discord, and
        take back what no longer says so (`mendbot.deploy.approval`, 7b and 9). `sources` None: nothing
        can be read — approvals from messages and reactions are unreadable, objections still hold."""
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
        """Count the proposal's standing approvals of its head again, as of now (`mendbot.deploy.approval`,
        8).

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
