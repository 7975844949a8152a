"""What people say about a proposal after approving, on the deploy side: a withdrawal (a message
deleted, a reaction removed), an edit, an objection, and all of them read again at start-up — and the
chat lines that say what was taken back or now holds.

The rules themselves are the approval service's (`mendbot.deploy.withdrawals`, `mendbot.deploy.objections`,
`mendbot.deploy.recheck`); this part turns what they found into the notice for the run's channel.
"""

from __future__ import annotations

from typing import Literal

from mendbot.db.approvals import Approval
from mendbot.db.objections import Objection
from mendbot.deploy.approval_core import ApprovalDecision
from mendbot.deploy.deploy_core import DeployCore
from mendbot.deploy.recheck import Reread
from mendbot.deploy.withdrawals import EditOutcome
from mendbot.kernel.log import get_logger
from mendbot.trust.grammar import read_approval

__all__ = ["DeploySignals"]

_log = get_logger(__name__)


class DeploySignals(DeployCore):
    """Withdrawals, edits and objections as the chat hears of them."""

    async def withdraw(
        self, *, message_id: int, why: str, user_id: int | None = None, emoji: str | None = None
    ) -> str | None:
        """Withdraw what `message_id` approved or objected (deleted, or its reaction removed): the chat
        notice, or None."""
        withdrawn = await self.approvals.withdraw(
            message_id=message_id, why=why, user_id=user_id, emoji=emoji
        )
        let_go = (
            await self.approvals.withdraw_objections(message_id=message_id, why=why) if emoji is None else []
        )
        return _lines(_withdrawn_text(withdrawn, why), _objections_text(let_go, why)) or None

    async def message_edited(self, message_id: int, text: str) -> str | None:
        """A message was edited: keep what it stood for only if it still reads the same (the notice)."""
        outcome: EditOutcome = await self.approvals.message_edited(message_id, text)
        return _edit_text(outcome) or None

    async def hold(
        self,
        *,
        proposal_id: int,
        user_id: int,
        user_name: str,
        role_ids: list[int],
        is_bot: bool,
        channel_id: int,
        parent_channel_id: int | None,
        message_id: int,
        text: str,
        via: str,
    ) -> ApprovalDecision:
        """A message about the proposal that objects, or is not a clear decision (`ApprovalService.hold`)."""
        reading = read_approval(text)
        kind: Literal["object", "unclear"] = "unclear" if reading.verdict == "unclear" else "object"
        return await self.approvals.hold(
            proposal_id=proposal_id,
            user_id=user_id,
            user_name=user_name,
            role_ids=role_ids,
            is_bot=is_bot,
            channel_id=channel_id,
            parent_channel_id=parent_channel_id,
            message_id=message_id,
            kind=kind,
            reason=reading.reason,
            why=reading.why(),
            via=via,
        )

    async def reread_standing(self) -> int:
        """At start-up: read every standing approval and objection of the proposals still ahead of a
        merge again from Discord (edits, deletions and removed reactions the bot missed while it was
        down), withdraw what no longer says so and say it in the run's channel. Returns how many runs
        had something withdrawn."""
        runs = [run for run in await self.runs.active() if run.state in ("awaiting_approval", "merging")]
        runs += [run for run in await self.runs.interrupted() if run.interrupted_from == "merging"]
        changed = 0
        for run in runs:
            if run.proposal_id is None or await self._recorded_merge(run) is not None:
                continue  # merged already (a deploy stopped after it): nothing left to approve
            try:
                reread = await self.approvals.reread(run.proposal_id, self.sources)
            except Exception:  # one run's trouble must not keep the others from being read
                _log.exception("reread_failed", run_id=run.id)
                continue
            text = _reread_lines(reread, after_restart=True)
            if text:
                changed += 1
                await self._notify(run, text.rstrip("\n"))
        return changed


def _lines(*parts: str | None) -> str:
    return "\n".join(part for part in parts if part)


def _withdrawn_text(withdrawn: list[Approval], why: str, *, after_restart: bool = False) -> str | None:
    if not withdrawn:
        return None
    what = {"edited": "the message was edited", "deleted": "the message was deleted"}.get(
        why, "the reaction was removed"
    )
    when = " while I was offline" if after_restart else ""
    people = ", ".join(dict.fromkeys(f"<@{a.user_id}>" for a in withdrawn))
    return f"↩️ Approval of `{withdrawn[0].sha[:7]}` by {people} withdrawn: {what}{when}."


def _objections_text(let_go: list[Objection], why: str, *, after_restart: bool = False) -> str | None:
    if not let_go:
        return None
    what = {"edited": "the message was edited", "deleted": "the message was deleted"}.get(why, why)
    when = " while I was offline" if after_restart else ""
    people = ", ".join(dict.fromkeys(f"<@{o.user_id}>" for o in let_go))
    return f"↩️ Objection by {people} withdrawn: {what}{when}; it no longer holds the merge."


def _held_text(held: tuple[Objection, ...]) -> str | None:
    if not held:
        return None
    people = ", ".join(dict.fromkeys(f"<@{o.user_id}>" for o in held))
    return (
        f"⏸ What {people} approved now says otherwise: that holds the merge until they approve again,"
        " or delete or edit that message."
    )


def _edit_text(outcome: EditOutcome) -> str:
    return _lines(
        _withdrawn_text(list(outcome.withdrawn), "edited"),
        _objections_text(list(outcome.objections_withdrawn), "edited"),
        _held_text(outcome.held),
    )


def _reread_lines(reread: Reread, *, after_restart: bool = False) -> str:
    """What reading the signals again took back, one line per kind and reason (with a final newline)."""
    lines: list[str | None] = []
    for why in ("deleted", "edited", "reaction_removed"):
        lines.append(
            _withdrawn_text([a for a, w in reread.withdrawn if w == why], why, after_restart=after_restart)
        )
        lines.append(
            _objections_text(
                [o for o, w in reread.objections_withdrawn if w == why], why, after_restart=after_restart
            )
        )
    lines.append(_held_text(reread.held))
    text = _lines(*lines)
    return text + "\n" if text else ""
