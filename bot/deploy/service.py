"""DeployService: an approved proposal becomes live code, is watched, and can be rolled back.

approve (ApprovalService decides; "ready" has already moved the run to merging) → wait for its turn in
the merge queue (`mendbot.deploy.queue`: one merge at a time, in approval order) → merge the exact
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

The watch, rollbacks, re-verification and the withdrawals' notices are parts of their own over the
shared core (`mendbot.deploy.deploy_core`); this module holds shipping: the decision, the merge queue's
turn, the merge and going live.
"""

from __future__ import annotations

from typing import Any

from mendbot.db.approvals import ApprovalForm
from mendbot.deploy.approval_core import ApprovalDecision
from mendbot.deploy.merge import LiveUpdate, MergeError, RebaseConflict
from mendbot.deploy.recheck import Recheck
from mendbot.deploy.reverify import DeployReverification
from mendbot.deploy.rollback import DeployRollbacks
from mendbot.deploy.signals import DeploySignals, _lines, _reread_lines
from mendbot.deploy.watches import DeployWatches
from mendbot.forge.base import ForgeError, HeadMovedError, MainMovedError, branch_head
from mendbot.improve.runs import Run, state_name
from mendbot.kernel.errors import UserError
from mendbot.kernel.log import bind_context, get_logger
from mendbot.trust.access import AccessPolicy

__all__ = ["DeployService"]

_log = get_logger(__name__)


class DeployService(DeployWatches, DeployRollbacks, DeployReverification, DeploySignals):
    """Ships an approved proposal: merged in its turn, made live, then watched (module docstring)."""

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
        UserError for a proposal there is none of (a button left under a deleted one, a mistyped number).
        """
        try:
            proposal = await self.forge.get(proposal_id)
        except ForgeError as exc:
            raise UserError(f"There is no proposal #{proposal_id}.") from exc
        if form != "reject":
            # Enforced here in code, before anything is counted: a drill's proposal never merges.
            run = await self.runs.get(proposal.run_id)
            if await self.is_drill_run(run):
                return await self._refuse_drill(run, f"user:{user_id}")
        allowed = AccessPolicy(self._settings.access).is_allowed(user_id, role_ids, is_bot=is_bot)
        if form != "reject" and allowed:  # others get the approval service's refusal, recorded
            problem = await self.merger.live_checkout_problem()
            if problem is not None:  # hand edits are never overwritten: nothing is counted or merged
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
            if await self.is_drill_run(run):  # however it got here (a hand-over, a resume): never merged
                return await self._refuse_drill(run, actor)
            self._failpoints.hit("deploy.before_merge")
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
            return await self._go_live_from_record(run, recorded)
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

    async def _go_live_from_record(self, run: Run, recorded: str) -> str:
        """Go on from a merge the forge recorded, its proposal marked merged first: a process that
        stopped between the forge's merge ref and its row left the row open."""
        assert run.proposal_id is not None and run.verified_sha is not None
        proposal = await self.forge.get(run.proposal_id)
        if proposal.state != "merged":
            await self.approvals.record_merged(proposal.id, run.verified_sha)
        return await self._go_live(run, recorded)

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

        With a canary (`self.rollout`), only the canary takes it now: this process's checkout moves
        only if it is the canary, nothing is published, and the watch follows the canary's records.
        """
        canary = await self.rollout.begin(run, merged_sha) if self.rollout is not None else None
        if canary is not None and self.rollout is not None and not self.rollout.canary_is_here(canary):
            return await self._go_live_elsewhere(run, merged_sha, canary, approved)
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
            await self._reverts(run, merged_sha)
            self._failpoints.hit("deploy.during_reload")
            if live.old_sha == merged_sha:
                report = "(already live: loaded when this process started)"
            else:
                report = await apply(changed)
        if canary is not None and self.rollout is not None:
            await self.rollout.reach_canary(run, merged_sha)  # this process is the canary: it runs it now
        elif self.went_live is not None:
            await self.went_live(merged_sha, live.old_sha != merged_sha)
        # Before the watch: "resolved" then rests on the replay's evidence, not only on quiet; a replay
        # that shows the fix not holding live regresses the run at once, with the rollback offered.
        replay = await self.replay_live(run, merged_sha)
        watch = await self._start_watch(run, set(changed), timer=not replay.failed, process=canary)
        if replay.failed:
            await self._regressed_live(watch, replay.line)
        await self.deploy_reported(run.id, merged_sha)  # the caller says it now: never again after a restart
        return (
            f"🚀 Merged `{merged_sha[:7]}` and deployed{approved}{_on_canary(canary)}:\n{report}{replay.line}"
        )

    async def _reverts(self, run: Run, merged_sha: str) -> None:
        """A rollback run's merge is live: the run it reverts ends `rolled_back`."""
        target = next(
            (e.detail.get("run_id") for e in await self.runs.events(run.id) if e.event == "rollback_of"), None
        )
        if isinstance(target, int):
            reverted = await self.runs.rolled_back(
                target, actor="pipeline", detail={"revert_sha": merged_sha, "by_run": run.id}
            )
            await self._fix_undone(reverted)

    async def _go_live_elsewhere(self, run: Run, merged_sha: str, canary: str, approved: str) -> str:
        """The canary is another process: it is told and waited for; this checkout stays where it is.
        The replay and the watch then judge the code the canary runs, by the canary's records."""
        problem = await self.rollout.reach_canary(run, merged_sha) if self.rollout is not None else None
        changed = await self.merger.changed_files(run.base_sha, merged_sha) if run.base_sha else []
        run = await self.runs.transition(
            run.id,
            "deployed",
            actor="pipeline",
            detail={"merged_sha": merged_sha, "files": changed, "canary": canary},
        )
        if problem is not None:  # the canary could not take it: nobody runs it, and nobody will
            watch = await self._start_watch(run, set(changed), timer=False, process=canary)
            await self._regressed_canary(watch, problem)
            await self.deploy_reported(run.id, merged_sha)
            return (
                f"⚠️ Merged `{merged_sha[:7]}`{approved}, but the canary ({canary}) did not take it: {problem}"
            )
        replay = await self.replay_live(run, merged_sha)
        watch = await self._start_watch(run, set(changed), timer=not replay.failed, process=canary)
        if replay.failed:
            await self._regressed_live(watch, replay.line)
        await self.deploy_reported(run.id, merged_sha)
        return f"🚀 Merged `{merged_sha[:7]}`{approved}{_on_canary(canary)}.{replay.line}"

    async def resume_deploy(self, run_id: int, *, actor: str) -> str:
        """Continue a deploy that a restart or a held fast-forward interrupted, from its last step.

        A recorded merge is fast-forwarded and reloaded, not merged (or re-run through the agent)
        again; a merge that was not recorded yet is merged now, approvals counted again first.
        """
        async with self._ship_lock:
            run = await self.runs.get(run_id)
            if run.state != "interrupted" or run.interrupted_from != "merging":
                raise UserError(
                    f"Run #{run_id} has no interrupted deploy to continue (it is {state_name(run.state)})."
                )
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


def _on_canary(canary: str | None) -> str:
    if canary is None:
        return ""
    return f" — live on the canary ({canary}) — the others follow once its watch passes"


def describe(run: Run) -> dict[str, Any]:
    return {"id": run.id, "state": run.state, "proposal": run.proposal_id}
