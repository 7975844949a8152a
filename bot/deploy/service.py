"""DeployService: an approved proposal becomes live code, is watched, and can be rolled back.

approve (ApprovalService decides; "ready" has already moved the run to merging) → wait for its turn in
the merge queue (`bot.deploy.queue`: one merge at a time, in approval order) → merge the exact
verified commit (if main moved: rebase and re-verify; if the change's own diff changed: approval
again) → fast-forward the live checkout (held, with the reason, if it has hand edits) → reload
what changed (cogs, prompts; a change to bot/ drains and restarts) → watch the incident for
`deploy.watch_window_s`: quiet → resolved (incident closed, lesson written); the failure back, or
a new failure in the touched code → regressed, with a rollback offered. Rollback reverts the merge
on a branch and goes through verify and approval like any change; the emergency form reverts and
reloads at once.

No run ever stays in `merging`: every way out of it ends in a state a person can act on, with a
message — merged and deployed; back to awaiting approval (approvals no longer count at merge time,
or rebasing changed the diff); re-verifying a proposal branch that moved, then awaiting approval
again (or failed if the checks fail on it); back to awaiting approval with the conflicting files named
when main moved and the change no longer applies (a conflict only in import blocks is resolved and
re-verified instead), the proposal left open; failed with the reason when the re-verification after
a rebase fails, or anything else goes wrong. A failed, rejected or cancelled run's proposal is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from bot.db.approvals import Approval
from bot.db.objections import Objection
from bot.db.records import ActionRecord
from bot.deploy.approval import ApprovalForm, ApprovalService
from bot.deploy.approval_core import ApprovalDecision
from bot.deploy.merge import LiveUpdate, MergeError, Merger, RebaseConflict
from bot.deploy.queue import MergeQueue
from bot.deploy.recheck import Recheck, Reread, RolesLookup
from bot.deploy.reload import Reloader, classify, render
from bot.deploy.sources import ApprovalSources
from bot.deploy.withdrawals import EditOutcome
from bot.forge.base import (
    Forge,
    ForgeError,
    HeadMovedError,
    MainMovedError,
    branch_head,
    merged_ref,
    resolve_commit,
)
from bot.improve.memory import Lesson, Memory
from bot.improve.proof import LiveReplay
from bot.improve.runs import Run, RunService
from bot.kernel.errors import UserError
from bot.kernel.failpoints import Failpoints
from bot.kernel.git import git
from bot.kernel.log import bind_context, get_logger
from bot.observe.incidents import IncidentService
from bot.trust.access import AccessPolicy
from bot.trust.grammar import read_approval

if TYPE_CHECKING:
    from bot.kernel.settings import Settings

__all__ = ["DeployReporter", "DeployService"]

_log = get_logger(__name__)


class DeployReporter(Protocol):
    """The chat side: post a message about a run (with a rollback button when it regressed)."""

    async def deployed(self, run: Run, text: str) -> None: ...

    async def regressed(self, run: Run, text: str) -> None: ...

    async def notify(self, run: Run, text: str) -> None:
        """A message about the run in its channel (re-verification, withdrawals, failures)."""
        ...


@dataclass
class _Watch:
    run_id: int
    fingerprint: str | None
    files: set[str]
    task: asyncio.Task[None] | None = None


class DeployService:
    def __init__(
        self,
        *,
        settings: Settings,
        runs: RunService,
        approvals: ApprovalService,
        forge: Forge,
        merger: Merger,
        incidents: IncidentService,
        memory: Memory,
        clock: Callable[[], datetime],
        failpoints: Failpoints | None = None,
    ) -> None:
        self._settings = settings
        self._failpoints = failpoints if failpoints is not None else Failpoints.from_environ()
        self._config = settings.deploy
        self.runs = runs
        self.approvals = approvals
        self.forge = forge
        self.merger = merger
        self._incidents = incidents
        self._memory = memory
        self._clock = clock
        self._watches: dict[int, _Watch] = {}
        self._ship_lock = asyncio.Lock()  # one merge/deploy at a time: the live checkout is shared
        self.queue = MergeQueue()  # ...and approved merges take their turn in approval order
        self.reloader: Reloader | None = None
        self.reporter: DeployReporter | None = None
        self.roles_of: RolesLookup | None = None  # the chat side: an approver's current roles
        # The chat side: messages read again from Discord (approvals and objections follow the human
        # across a restart). None: no Discord attached — approvals from messages and reactions do not
        # count at merge time, since nothing can confirm them.
        self.sources: ApprovalSources | None = None
        # The incident replay against the deployed code (bot.improve.proof): a line for the report, and
        # whether it shows the fix not holding live (the run then regresses at once).
        self.prove_live: Callable[[Run, str], Awaitable[LiveReplay]] | None = None
        # The replay after an emergency rollback: whether the calls behave as before the fix (a line).
        self.prove_rollback: Callable[[Run, str], Awaitable[str]] | None = None
        # Proves a proposal branch's new head after a hand commit (bot.improve), one line for the chat.
        self.reprove: Callable[[Run, str], Awaitable[str]] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._resumed_watches: list[tuple[_Watch, float]] = []
        # Several processes on one database (bot/scale/cluster.py): an approved merge is handed to the
        # leader (`hand_over(run_id)` returns the chat reply), and a merge that went live is told
        # to the other processes (`went_live(sha, reloaded)`: whether this process reloaded it
        # too). Unset: this process merges and is the only one.
        self.hand_over: Callable[[int], Awaitable[str]] | None = None
        self.went_live: Callable[[str, bool], Awaitable[None]] | None = None

    # -- approval → merge → deploy ---------------------------------------------------------------

    async def decide(
        self,
        *,
        proposal_id: int,
        user_id: int,
        user_name: str,
        role_ids: list[int],
        is_bot: bool,
        channel_id: int,
        parent_channel_id: int | None,
        form: ApprovalForm,
        via: str,
        message_id: int | None = None,
        emoji: str | None = None,
    ) -> str:
        """One approval signal (✅, button, "ship it", ❌, …): the reply for chat.

        `message_id` is the approving message (words) or the message reacted on (with `emoji`).
        """
        allowed = AccessPolicy(self._settings.access).is_allowed(user_id, role_ids, is_bot=is_bot)
        if form != "reject" and allowed:  # others get the approval service's refusal, recorded
            problem = await self.merger.live_checkout_problem()
            if problem is not None:  # hand edits are never overwritten: nothing is counted or merged
                proposal = await self.forge.get(proposal_id)
                await self.runs.event(
                    proposal.run_id, "deploy_held", actor=f"user:{user_id}", detail={"reason": problem}
                )
                return f"⏸ Not merged: {problem}. Approve again once the live checkout is clean."
            try:  # what is approved must be here to be judged (its diff) and merged
                await self.forge.fetch_proposal(proposal_id)
            except ForgeError as exc:
                _log.warning("proposal_fetch_failed", proposal_id=proposal_id, error=str(exc))
                why = self.runs.redactor.text(str(exc), 500)
                return (
                    f"⏸ Not counted: the proposal's branch could not be fetched from the forge ({why})."
                    " Approve again once it answers."
                )
        decision: ApprovalDecision = await self.approvals.decide(
            proposal_id=proposal_id,
            user_id=user_id,
            user_name=user_name,
            role_ids=role_ids,
            is_bot=is_bot,
            channel_id=channel_id,
            parent_channel_id=parent_channel_id,
            form=form,
            via=via,
            message_id=message_id,
            emoji=emoji,
        )
        if decision.status == "rejected":
            proposal = await self.forge.get(proposal_id)
            await self._close(proposal_id, f"rejected by user {user_id}")
            _log.info("proposal rejected", proposal_id=proposal.id)
            return decision.message
        if decision.reason == "branch_moved" and decision.run_id is not None:
            # Someone committed to the proposal branch: verify what is there now, then ask again.
            self._in_background(self.reverify(decision.run_id, actor=f"user:{user_id}"))
            return decision.message + " Re-verifying it now; approve again once it passes."
        if decision.status != "ready":
            return decision.message
        proposal = await self.forge.get(proposal_id)
        if self.hand_over is not None:
            return decision.message + "\n" + await self.hand_over(proposal.run_id)
        return decision.message + "\n" + await self.ship(proposal.run_id, actor=f"user:{user_id}")

    async def ship(self, run_id: int, *, actor: str) -> str:
        """Merge the verified commit, update the live checkout, reload, start watching — once every run
        approved before this one has had its turn in the merge queue."""

        async def merge() -> str:
            async with self._ship_lock:
                run = await self.runs.get(run_id)
                with bind_context(run_id=run_id):
                    return await self._ship(run, actor)

        async def queued(ahead: list[int]) -> None:
            waiting = ", ".join(f"#{other}" for other in ahead)
            await self.runs.event(run_id, "merge_queued", actor="pipeline", detail={"ahead": ahead})
            await self._notify(
                await self.runs.get(run_id),
                f"🕒 Run #{run_id} is approved and queued to merge after run(s) {waiting}; it is rebased"
                " onto what they merge and verified again first.",
            )

        return await self.queue.submit(run_id, merge, on_queued=queued)

    async def _ship(self, run: Run, actor: str) -> str:
        """Every way out of `merging` ends in a state a person can act on (module docstring)."""
        try:
            return await self._merge_and_deploy(run, actor)
        except Exception as exc:  # a bug or a git/forge failure must not leave the run merging
            current = await self.runs.get(run.id)
            if current.state != "merging":
                raise
            _log.exception("merge failed", run_id=run.id)
            reason = f"{type(exc).__name__}: {exc}"
            await self._fail(current, reason)
            return f"❌ Run #{run.id} could not be merged: {reason[:500]}"

    async def _merge_and_deploy(self, run: Run, actor: str) -> str:
        assert run.proposal_id is not None and run.verified_sha is not None
        recorded = await self._recorded_merge(run)
        if recorded is not None:  # an earlier process merged it and stopped: go on from there
            return await self._go_live(run, recorded)
        proposal = await self.forge.get(run.proposal_id)
        try:  # a worker's branch may not be here yet (another process may have counted the approval)
            await self.forge.fetch_proposal(proposal.id)
        except ForgeError as exc:  # the forge not answering now is no reason to throw the fix away
            _log.warning("proposal_fetch_failed", proposal_id=proposal.id, error=str(exc))
            why = self.runs.redactor.text(str(exc), 500)
            await self.runs.transition(
                run.id, "awaiting_approval", actor="pipeline", detail={"held": f"fetch failed: {why}"}
            )
            return (
                f"⏸ Not merged: the proposal's branch could not be fetched from the forge ({why})."
                " Approve again once it answers."
            )
        expected = run.verified_sha
        problem = await self.merger.live_checkout_problem()
        if problem is not None:  # hand edits are never overwritten: hold the merge, keep the approval
            await self.runs.transition(
                run.id, "awaiting_approval", actor="pipeline", detail={"held": problem}
            )
            return f"⏸ Not merged: {problem}. Approve again once the live checkout is clean."
        moved_to = await branch_head(self._settings.repo_dir, proposal.branch)
        if moved_to is not None and moved_to != expected:
            return await self._branch_moved(run, proposal.id, moved_to, actor)
        recheck = await self.approvals.recheck(proposal.id, self.roles_of, self.sources)
        if not recheck.clear:
            await self.runs.transition(
                run.id,
                "awaiting_approval",
                actor="pipeline",
                detail={
                    "recheck": "objected" if recheck.objections else "not enough current approvals",
                    "counted": list(recheck.counted),
                    "objections": [objection.user_id for objection in recheck.objections],
                },
            )
            return self._held(recheck)
        # Only now, with the approvals read again and counted: "merging" (never before the recheck).
        passed = (
            _reread_lines(recheck.reread)
            + f"✅ Approvals still stand at merge time ({len(recheck.counted)}/{recheck.required}: "
            f"{recheck.names()}) — merging `{expected[:7]}`.\n"
        )
        resolved_note = ""
        try:
            result = await self.forge.merge(proposal.id, expected)
        except HeadMovedError:
            moved_to = await branch_head(self._settings.repo_dir, proposal.branch)
            return await self._branch_moved(run, proposal.id, moved_to or "", actor)
        except MainMovedError as moved:
            try:
                outcome = await self.merger.rebase_and_reverify(
                    branch=proposal.branch,
                    base_sha=run.base_sha or "",
                    head_sha=expected,
                    run_id=run.id,
                    onto=moved.main_sha,
                )
            except RebaseConflict as conflict:
                # Back to the human, proposal open: resolve on the branch (re-verified) or redo.
                files = ", ".join(f"`{name}`" for name in conflict.files[:10])
                await self.approvals.dismiss(proposal.id, "main moved and the change conflicts with it")
                await self.runs.transition(
                    run.id,
                    "awaiting_approval",
                    actor="pipeline",
                    detail={"conflict": conflict.files, "main": moved.main_sha},
                )
                return (
                    f"⚠️ Not merged: main moved and conflicts in {files} (not only in imports). The"
                    f" proposal stays open: resolve it with a commit on `{proposal.branch}` (verified"
                    f" again), or say `redo` (`/run {run.id} action:redo`) to re-run on the new main."
                )
            except MergeError as exc:
                await self._fail(run, f"rebasing onto the new main failed: {exc}")
                return f"❌ Not merged: main moved and rebasing onto it failed: {str(exc)[:500]}"
            if not outcome.verification.ok:
                await self._fail(
                    run, "after rebasing onto main the checks fail:\n" + outcome.verification.summary()
                )
                return (
                    "❌ main moved; rebased onto it, the checks fail — not merged.\n"
                    + outcome.verification.summary()
                )
            await self.runs.transition(
                run.id,
                "awaiting_approval",
                actor="pipeline",
                detail={"rebased_to": outcome.new_sha, "diff_changed": outcome.diff_changed},
                head_sha=outcome.new_sha,
                verified_sha=outcome.new_sha,
                base_sha=outcome.onto,
            )
            await self.approvals.mark_stale(proposal.id, outcome.new_sha)
            if outcome.resolved_imports:
                shown = ", ".join(f"`{name}`" for name in outcome.resolved_imports)
                resolved_note = f"; import conflicts with main in {shown} resolved and re-verified ✅"
                await self.runs.event(
                    run.id, "imports_resolved", actor="pipeline", detail={"files": outcome.resolved_imports}
                )
            if outcome.diff_changed:
                return (
                    "⚠️ main moved and rebasing changed this proposal's own diff "
                    f"(now `{outcome.new_sha[:7]}`, re-verified ✅): it needs approval again."
                )
            await self.runs.transition(run.id, "merging", actor=actor, detail={"after_rebase": True})
            run = await self.runs.get(run.id)
            result = await self.forge.merge(proposal.id, outcome.new_sha)
        await self.runs.event(
            run.id,
            "merge_recorded",
            actor="pipeline",
            detail={"merged_sha": result.merged_sha, "approved_by": list(recheck.counted)},
        )
        self._failpoints.hit("deploy.after_merge_recorded")
        return passed + await self._go_live(
            run, result.merged_sha, f" (approved by {recheck.names()}{resolved_note})"
        )

    def _held(self, recheck: Recheck) -> str:
        """Why a merge did not go ahead at merge time: what was withdrawn, what holds, what counts."""
        parts = [_reread_lines(recheck.reread).rstrip("\n")]
        counts = f"{len(recheck.counted)}/{recheck.required} approvals of `{recheck.sha[:7]}` still count"
        if recheck.objections:
            objectors = ", ".join(dict.fromkeys(f"<@{o.user_id}>" for o in recheck.objections))
            parts.append(
                f"⏸ Not merged: {objectors} objected, and that holds the merge until they approve, or "
                f"delete or edit what they said ({counts})."
            )
        elif recheck.unreadable:
            who = "; ".join(
                f"<@{user}>'s approval ({self.runs.redactor.text(error, 300)})"
                for user, error in recheck.unreadable
            )
            parts.append(
                f"⏸ Not merged: Discord could not be read to confirm {who}, so it doesn't count now:"
                f" {counts}. Approve again once Discord answers; everything is read again then."
            )
        else:
            dropped = "; ".join(f"<@{user}> {why}" for user, why in recheck.dropped)
            parts.append(
                f"⏸ Not merged: at merge time {counts}"
                + (f" ({dropped})" if dropped else "")
                + ". It needs approval again."
            )
        return _lines(*parts)

    async def _go_live(self, run: Run, merged_sha: str, approved: str = "") -> str:
        """The steps after a recorded merge: fast-forward the live checkout, reload, watch.

        A fast-forward that git refuses (hand edits, a stale index lock) holds the run: it becomes
        `interrupted` with the reason — never left merging — and `/run N action:resume` finishes the
        deploy once the cause is gone (the merge itself is not redone).
        """
        async with self._swapping_code() as apply:
            live = await self.merger.update_live_checkout(merged_sha)
            if not live.ok:
                await self.runs.transition(
                    run.id,
                    "interrupted",
                    actor="pipeline",
                    detail={"held": live.reason, "merged_sha": merged_sha},
                )
                return (
                    f"⏸ Merged `{merged_sha[:7]}`{approved}, but the live checkout was not updated: "
                    f"{live.reason}. Run #{run.id} is held: once that is fixed, "
                    f"`/run {run.id} action:resume` finishes the deploy."
                )
            self._failpoints.hit("deploy.after_live_update")
            changed = live.changed_files
            if live.old_sha == merged_sha and run.base_sha:
                # The live checkout was at the merged commit already: an earlier process moved it and
                # stopped. This process imported that code when it started, so there is nothing to
                # reload (a change under bot/ must not restart it again), but the watch still needs
                # the files the change touched.
                changed = await self.merger.changed_files(run.base_sha, merged_sha)
            run = await self.runs.transition(
                run.id,
                "deployed",
                actor="pipeline",
                detail={"merged_sha": merged_sha, "files": changed},
            )
            self._failpoints.hit("deploy.during_reload")
            if live.old_sha == merged_sha:
                report = "(already live: loaded when this process started)"
            else:
                report = await apply(changed)
        if self.went_live is not None:
            await self.went_live(merged_sha, live.old_sha != merged_sha)
        # Before the watch: "resolved" then rests on the replay's evidence, not only on quiet; a replay
        # that shows the fix not holding live regresses the run at once, with the rollback offered.
        replay = await self.prove_live(run, merged_sha) if self.prove_live is not None else LiveReplay()
        watch = await self._start_watch(run, set(changed), timer=not replay.failed)
        if replay.failed:
            await self._regressed_live(watch, replay.line)
        return f"🚀 Merged `{merged_sha[:7]}` and deployed{approved}:\n{report}{replay.line}"

    async def _recorded_merge(self, run: Run) -> str | None:
        """The commit the run's merge was recorded as, if the forge recorded one (any earlier process)."""
        if run.proposal_id is None:
            return None
        return await resolve_commit(self._settings.repo_dir, merged_ref(run.proposal_id))

    async def resume_deploy(self, run_id: int, *, actor: str) -> str:
        """Continue a deploy that a restart or a held fast-forward interrupted, from its last step.

        A recorded merge is fast-forwarded and reloaded, not merged (or re-run through the agent)
        again; a merge that was not recorded yet is merged now, approvals counted again first.
        """
        async with self._ship_lock:
            run = await self.runs.get(run_id)
            if run.state != "interrupted" or run.interrupted_from != "merging":
                raise UserError(f"Run #{run_id} has no interrupted deploy to continue (it is {run.state}).")
            run = await self.runs.transition(run.id, "merging", actor=actor, detail={"resumed": True})
            with bind_context(run_id=run_id):
                return await self._ship(run, actor)

    async def continue_interrupted_deploys(self) -> list[int]:
        """At start-up: deploys a stop caught between steps go on by themselves, and say so.

        Held ones (git refused the fast-forward) wait for a person: the cause may still be there.
        First every standing approval and objection is read again (`reread_standing`): what was
        withdrawn while the bot was down is said, and does not count.
        """
        await self.reread_standing()
        continued = []
        for run in await self.runs.interrupted():
            if run.interrupted_from != "merging":
                continue
            # The transition that interrupted it says whether it was held (events written since, such
            # as approvals read again at start-up, say nothing about that).
            events = await self.runs.events(run.id)
            last = next((e for e in reversed(events) if e.event == "transition"), events[-1])
            if "held" in last.detail:
                continue
            text = await self.resume_deploy(run.id, actor="system")
            await self._notify(
                run, f"▶️ Run #{run.id} was interrupted by a restart while merging; continued it:\n{text}"
            )
            continued.append(run.id)
        return continued

    async def _branch_moved(self, run: Run, proposal_id: int, moved_to: str, actor: str) -> str:
        if not moved_to:
            await self._fail(run, "the proposal branch is gone")
            return f"❌ Run #{run.id}: the proposal branch is gone; nothing was merged."
        if moved_to == run.verified_sha:
            # The branch here is as verified, but the forge refused the merge (GitHub: someone pushed
            # to the pull request): what would be merged is not what was approved.
            await self.approvals.dismiss(proposal_id, "the head moved on the forge")
            await self.runs.transition(
                run.id, "awaiting_approval", actor="pipeline", detail={"why": "head moved on the forge"}
            )
            return (
                "⚠️ The proposal's head moved on the forge: nothing was merged and earlier approvals "
                "no longer count. Approve again once it is what you want shipped."
            )
        await self.approvals.mark_stale(proposal_id, moved_to)
        self._in_background(self.reverify(run.id, actor=actor))
        return (
            f"⚠️ The branch moved to `{moved_to[:7]}` after it was verified: nothing was merged. "
            "Re-verifying it now; approve again once it passes."
        )

    async def reverify(self, run_id: int, *, actor: str) -> Run:
        """The proposal branch moved (a hand commit): verify its new head in the sandbox, then ask
        for approval again — or fail with the reason (and close the proposal) if the checks fail."""
        async with self._ship_lock:
            run = await self.runs.get(run_id)
            if run.state not in ("awaiting_approval", "merging") or run.proposal_id is None:
                return run
            proposal = await self.forge.get(run.proposal_id)
            head = await branch_head(self._settings.repo_dir, proposal.branch)
            if head is None:
                await self._fail(run, "the proposal branch is gone")
                return await self.runs.get(run_id)
            if head == run.verified_sha:
                return run
            await self.approvals.mark_stale(proposal.id, head)
            run = await self.runs.transition(
                run.id, "verifying", actor=actor, detail={"reverify": head, "was": run.verified_sha}
            )
            try:
                verification = await self.merger.reverify(head, run.id)
            except Exception as exc:
                _log.exception("re-verification failed", run_id=run.id)
                await self._fail(run, f"re-verifying `{head[:7]}` failed: {type(exc).__name__}: {exc}")
                return await self.runs.get(run_id)
            await self.runs.event(
                run.id,
                "checks",
                actor="pipeline",
                detail={"ok": verification.ok, "sha": verification.sha, "summary": verification.summary()},
            )
            now = await branch_head(self._settings.repo_dir, proposal.branch)
            if not verification.ok or verification.sha != head or now != head:
                why = (
                    f"the branch moved again (to `{(now or '?')[:7]}`) while it was re-verified"
                    if now != head
                    else "the checks fail on it:\n" + verification.summary()
                )
                await self._fail(run, f"the proposal branch moved to `{head[:7]}` and {why}")
                await self._notify(run, f"❌ Run #{run.id}: the branch moved to `{head[:7]}` and {why}")
                return await self.runs.get(run_id)
            proved = await self.reprove(run, head) if self.reprove is not None else ""
            run = await self.runs.transition(
                run.id,
                "awaiting_approval",
                actor="pipeline",
                detail={"reverified": head},
                head_sha=head,
                verified_sha=head,
            )
            await self._notify(
                run,
                f"🔁 Run #{run.id}: the branch moved to `{head[:7]}`; re-verified ✅ — it needs approval "
                f"again (**ship it** or ✅ on the proposal).{proved}\n" + verification.summary(),
            )
            return run

    async def _fail(self, run: Run, reason: str) -> None:
        """End the run as failed with `reason` and close its proposal; the caller says so in chat."""
        current = await self.runs.get(run.id)
        if current.terminal:
            return
        await self.runs.fail(run.id, current.state, reason, actor="pipeline")
        if current.proposal_id is not None:
            await self._close(current.proposal_id, f"run {run.id} failed: {reason[:200]}")

    async def _close(self, proposal_id: int, reason: str) -> None:
        try:
            await self.forge.close(proposal_id, reason)
        except ForgeError as exc:  # merged already, or the forge is unreachable: say so, don't wedge
            _log.warning("proposal_close_failed", proposal_id=proposal_id, error=str(exc))

    async def close_proposal_of(self, run: Run, reason: str) -> None:
        """Close the run's proposal if it is still open (a cancelled, failed or rolled-back run)."""
        if run.proposal_id is not None:
            proposal = await self.forge.get(run.proposal_id)
            if proposal.state == "open":
                await self._close(proposal.id, reason)

    async def _notify(self, run: Run, text: str) -> None:
        if self.reporter is not None:
            await self.reporter.notify(run, text)

    def in_background(self, coro: Any) -> None:
        """Run `coro` as this service's work: `quiesce()` waits for it."""
        self._in_background(coro)

    def _in_background(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- approvals follow the human -------------------------------------------------------------

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

    @contextlib.asynccontextmanager
    async def _swapping_code(self) -> AsyncIterator[Callable[[list[str]], Awaitable[str]]]:
        """Write the live checkout and reload inside: the hand-edit watcher waits, then sees it applied."""
        if self.reloader is None:

            async def unattached(changed_files: list[str]) -> str:
                return "(no reloader attached: restart to load the change)"

            yield unattached
            return
        async with self.reloader.applying() as apply:

            async def reload(changed_files: list[str]) -> str:
                return render(await apply(classify(changed_files)))

            yield reload

    # -- watching -------------------------------------------------------------------------------

    async def _start_watch(
        self, run: Run, files: set[str], remaining_s: float | None = None, *, timer: bool = True
    ) -> _Watch:
        """Watch the run's fingerprint and touched files; `timer=False` leaves the window's timer
        to `_start_timer` (a resumed watch, whose end must not be reported before chat is up)."""
        if run.state != "watching":
            run = await self.runs.transition(
                run.id, "watching", actor="pipeline", detail={"window_s": self._config.watch_window_s}
            )
        fingerprint = await self._fingerprint(run.incident_id)
        watch = self._watches[run.id] = _Watch(run.id, fingerprint, files)
        if timer:
            self._start_timer(watch, self._config.watch_window_s if remaining_s is None else remaining_s)
        return watch

    @property
    def watching(self) -> list[int]:
        """The runs whose deploy is being watched now."""
        return sorted(self._watches)

    def _start_timer(self, watch: _Watch, window: float) -> None:
        watch.task = asyncio.get_running_loop().create_task(
            self._watch_until(watch, window), name=f"watch-{watch.run_id}"
        )

    async def _watch_until(self, watch: _Watch, window: float) -> None:
        await asyncio.sleep(window)
        if self._watches.pop(watch.run_id, None) is None:
            return  # regressed meanwhile
        run = await self.runs.transition(watch.run_id, "resolved", actor="watch")
        if run.incident_id is not None:
            with contextlib.suppress(UserError):  # already resolved by hand
                await self._incidents.set_state(run.incident_id, "resolved", 0)
        await self._memory.write(
            Lesson(
                run_id=run.id,
                fingerprint=watch.fingerprint,
                files=sorted(watch.files),
                root_cause=run.description,
                fix_commit=run.verified_sha,
                outcome="resolved",
                created_at=self._clock().timestamp(),
            )
        )
        if self.reporter is not None:
            await self.reporter.deployed(
                run, f"✅ Run #{run.id}: quiet for {self._config.watch_window_s:g}s after deploy — resolved."
            )

    def observe(self, record: ActionRecord) -> None:
        """Recorder subscriber: a watched failure coming back, or a new one in the touched code."""
        if record.ok or not self._watches:
            return
        for watch in list(self._watches.values()):
            touched = any(frame.split(":", 1)[0] in watch.files for frame in record.frames)
            if record.fingerprint == watch.fingerprint or touched:
                self._watches.pop(watch.run_id, None)
                if watch.task is not None:
                    watch.task.cancel()
                asyncio.get_running_loop().create_task(self._regressed(watch, record))

    async def _regressed(self, watch: _Watch, record: ActionRecord) -> None:
        run = await self.runs.transition(
            watch.run_id,
            "regressed",
            actor="watch",
            detail={"error": f"{record.error_type}: {record.error_message}", "frames": record.frames[-3:]},
        )
        await self._memory.write(
            Lesson(
                run_id=run.id,
                fingerprint=watch.fingerprint,
                files=sorted(watch.files),
                root_cause=run.description,
                fix_commit=run.verified_sha,
                outcome="regressed",
                created_at=self._clock().timestamp(),
            )
        )
        if self.reporter is not None:
            where = record.frames[-1] if record.frames else record.kind
            await self.reporter.regressed(
                run,
                f"⚠️ Run #{run.id} regressed: `{record.error_type}: "
                f"{(record.error_message or '')[:200]}` at `{where}`. "
                f"`/rollback {run.id}` to undo it.",
            )

    async def _regressed_live(self, watch: _Watch, line: str) -> None:
        """The replay against the live code still fails: regressed at once — the incident open again
        and the rollback offered — instead of a watch that could end "resolved"."""
        self._watches.pop(watch.run_id, None)
        if watch.task is not None:
            watch.task.cancel()
        run = await self.runs.transition(
            watch.run_id, "regressed", actor="watch", detail={"live_replay": line.strip()[:500]}
        )
        if run.incident_id is not None:
            with contextlib.suppress(UserError):  # open already
                await self._incidents.set_state(run.incident_id, "open", 0)
        await self._memory.write(
            Lesson(
                run_id=run.id,
                fingerprint=watch.fingerprint,
                files=sorted(watch.files),
                root_cause=run.description,
                fix_commit=run.verified_sha,
                outcome="regressed",
                created_at=self._clock().timestamp(),
            )
        )
        if self.reporter is not None:
            await self.reporter.regressed(
                run,
                f"⚠️ Run #{run.id} regressed: the replay against the live code still fails "
                f"({line.strip().removeprefix('❌ Replay against the live code: ')[:300]}). "
                f"`/rollback {run.id}` to undo it.",
            )

    async def resume_watches(self) -> int:
        """After a restart: watch deployed runs again at once (a regression is caught from the start),
        for the time their window has left — timed from `announce_resumed_watches()`, once chat is
        up, so that a window which ran out while the bot was down is still reported."""
        resumed = 0
        for run in await self.runs.active():
            if run.state not in ("deployed", "watching"):
                continue
            events = await self.runs.events(run.id)
            started = next(
                (e.ts for e in reversed(events) if e.state in ("watching", "deployed")), run.updated_at
            )
            remaining = max(0.0, started + self._config.watch_window_s - self._clock().timestamp())
            files = set(
                next((e.detail.get("files", []) for e in reversed(events) if e.state == "deployed"), [])
            )
            watch = await self._start_watch(run, files, remaining, timer=False)
            self._resumed_watches.append((watch, remaining))
            resumed += 1
        return resumed

    async def announce_resumed_watches(self, why: str = "back after a restart") -> None:
        """Once connected: say in each run's channel that its watch goes on (and `why`), and start
        its timer."""
        resumed, self._resumed_watches = self._resumed_watches, []
        for watch, remaining in resumed:
            if self._watches.get(watch.run_id) is not watch:
                continue  # regressed (or stopped) before chat was up: already reported
            run = await self.runs.get(watch.run_id)
            if self.prove_live is not None and (merged := await self._unreplayed(run)) is not None:
                # The process stopped between the deploy and its replay (a restart it asked for, a
                # crash in the reload): the replay runs now, and may regress the run like any other.
                replay = await self.prove_live(run, merged)
                if replay.failed:
                    await self._regressed_live(watch, replay.line)
                    continue
                if replay.line:
                    await self._notify(run, f"Run #{run.id}: {replay.line.strip()}")
            if remaining > 0:
                await self._notify(run, f"👀 Run #{run.id}: {why}, still watching for {remaining:.0f}s more.")
            self._start_timer(watch, remaining)

    async def _unreplayed(self, run: Run) -> str | None:
        """The merged commit of a deployed run whose replay against it never ran, else None."""
        events = await self.runs.events(run.id)
        deployed = next(
            (e for e in reversed(events) if e.event == "transition" and e.state == "deployed"), None
        )
        if deployed is None:
            return None
        if any(e.event == "proof_live" and e.id > deployed.id for e in events):
            return None
        merged = deployed.detail.get("merged_sha")
        return str(merged) if merged else None

    def stop(self) -> None:
        """Cancel watch timers (a restart resumes them from the runs' events)."""
        for watch in self._watches.values():
            if watch.task is not None:
                watch.task.cancel()
        self._watches.clear()

    async def quiesce(self) -> None:
        """Wait for in-flight ships and re-verifications; watches are long timers and are not waited for."""
        while self._background:
            await asyncio.wait(list(self._background))
        async with self._ship_lock:
            pass

    async def _fingerprint(self, incident_id: int | None) -> str | None:
        if incident_id is None:
            return None
        try:
            return (await self._incidents.fetch(incident_id)).fingerprint
        except UserError:
            return None

    # -- rollback -------------------------------------------------------------------------------

    async def emergency_rollback(self, run_id: int, *, user_id: int) -> str:
        """Revert the run's merge on main at once and reload (approvers only; checked by the caller)."""
        async with self._ship_lock:
            run, merged = await self.runs.merged(run_id)
            revert_sha = await self._revert_commit(run, merged)
            async with self._swapping_code() as apply:
                live = await self.merger.update_live_checkout(revert_sha)
                if not live.ok:
                    return (
                        f"⏸ Revert `{revert_sha[:7]}` is ready but the live checkout was not updated: "
                        f"{live.reason}"
                    )
                self._watches.pop(run.id, None)
                await self.runs.event(
                    run.id,
                    "rolled_back",
                    actor=f"user:{user_id}",
                    detail={"revert_sha": revert_sha, "emergency": True},
                )
                report = await apply(live.changed_files)
            if self.went_live is not None:
                await self.went_live(revert_sha, True)
            proved = await self.prove_rollback(run, revert_sha) if self.prove_rollback is not None else ""
            return f"⏪ Rolled back run #{run.id} (`{revert_sha[:7]}`):\n{report}{proved}"

    async def follow(self, merged_sha: str, loaded_sha: str) -> tuple[LiveUpdate, str]:
        """Another process merged `merged_sha`: fast-forward the live checkout to it (the same guard
        as a deploy: never over hand edits) and reload what differs from the code loaded here
        (`loaded_sha`). Processes sharing one checkout find it moved already and only reload."""
        async with self._ship_lock, self._swapping_code() as apply:
            live = await self.merger.update_live_checkout(merged_sha)
            if not live.ok:
                return live, ""
            changed = await self.merger.changed_files(loaded_sha, merged_sha) if loaded_sha else []
            return live, (await apply(changed) if changed else "nothing to reload")

    async def _revert_commit(self, run: Run, merged_sha: str) -> str:
        """A commit on top of main that undoes base..merged, made without touching the live tree."""
        repo = self._settings.repo_dir.resolve()

        async def run_git(*args: str) -> str:
            result = await git(repo, *args, error=UserError)
            return result.output.strip()

        main = await run_git("rev-parse", "refs/heads/main")
        base_tree = await run_git("rev-parse", f"{run.base_sha}^{{tree}}")
        if main == merged_sha:  # nothing landed after it: main's tree goes back to the base's
            tree = base_tree
        else:  # later commits exist: apply the reverse of base..merged onto main's tree
            tree = await self._reverse_apply(repo, run.base_sha or "", merged_sha, main)
        return await run_git(
            "commit-tree",
            tree,
            "-p",
            main,
            "-m",
            f"Revert run {run.id}: {run.description[:60]}\n\nRun-Id: {run.id}",
        )

    @staticmethod
    async def _reverse_apply(repo: Path, base: str, merged: str, main: str) -> str:
        index = repo / ".git" / f"mendbot-revert-{merged[:12]}.index"
        scratch = {"GIT_INDEX_FILE": str(index)}

        async def run_git(*args: str) -> str:
            result = await git(repo, *args, check=False, env=scratch)
            if result.code != 0:
                raise UserError(f"the revert does not apply cleanly on main: {result.errors.strip()[:300]}")
            return result.output.strip()

        try:
            await run_git("read-tree", main)
            patch = repo / ".git" / f"mendbot-revert-{merged[:12]}.patch"
            diff = await git(repo, "diff", "--binary", merged, base, check=False)
            patch.write_text(diff.output)
            try:
                await run_git("apply", "--cached", str(patch))
            finally:
                patch.unlink(missing_ok=True)
            return await run_git("write-tree")
        finally:
            index.unlink(missing_ok=True)


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


def describe(run: Run) -> dict[str, Any]:
    return {"id": run.id, "state": run.state, "proposal": run.proposal_id}
