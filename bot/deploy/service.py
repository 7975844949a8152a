"""DeployService: an approved proposal becomes live code, is watched, and can be rolled back.

approve (ApprovalService decides; "ready" has already moved the run to merging) → merge the exact
verified commit (if main moved: rebase and re-verify; if the change's own diff changed: approval
again) → fast-forward the live checkout (held, with the reason, if it has hand edits) → reload
what changed (cogs, prompts; a change to bot/ drains and restarts) → watch the incident for
`deploy.watch_window_s`: quiet → resolved (incident closed, lesson written); the failure back, or
a new failure in the touched code → regressed, with a rollback offered. Rollback reverts the merge
on a branch and goes through verify and approval like any change; the emergency form reverts and
reloads at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bot.access import AccessPolicy
from bot.deploy.approval import ApprovalDecision, ApprovalForm, ApprovalService
from bot.deploy.merge import Merger
from bot.deploy.reload import Reloader, classify, render
from bot.errors import UserError
from bot.forge.base import Forge, HeadMovedError, MainMovedError
from bot.git import git
from bot.improve.memory import Lesson, Memory
from bot.improve.runs import Run, RunService
from bot.log import bind_context, get_logger
from bot.observe.incidents import IncidentService
from bot.observe.records import ActionRecord

if TYPE_CHECKING:
    from bot.settings import Settings

__all__ = ["DeployReporter", "DeployService"]

_log = get_logger(__name__)


class DeployReporter(Protocol):
    """The chat side: post a message about a run (with a rollback button when it regressed)."""

    async def deployed(self, run: Run, text: str) -> None: ...

    async def regressed(self, run: Run, text: str) -> None: ...


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
    ) -> None:
        self._settings = settings
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
        self.reloader: Reloader | None = None
        self.reporter: DeployReporter | None = None

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
    ) -> str:
        """One approval signal (✅, button, "ship it", ❌, …): the reply for chat."""
        allowed = AccessPolicy(self._settings.access).is_allowed(user_id, role_ids, is_bot=is_bot)
        if form != "reject" and allowed:  # others get the approval service's refusal, recorded
            problem = await self.merger.live_checkout_problem()
            if problem is not None:  # hand edits are never overwritten: nothing is counted or merged
                proposal = await self.forge.get(proposal_id)
                await self.runs.event(
                    proposal.run_id, "deploy_held", actor=f"user:{user_id}", detail={"reason": problem}
                )
                return f"⏸ Not merged: {problem}. Approve again once the live checkout is clean."
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
        )
        if decision.status == "rejected":
            proposal = await self.forge.get(proposal_id)
            await self.forge.close(proposal_id, f"rejected by user {user_id}")
            _log.info("proposal rejected", proposal_id=proposal.id)
            return decision.message
        if decision.status != "ready":
            return decision.message
        proposal = await self.forge.get(proposal_id)
        return decision.message + "\n" + await self.ship(proposal.run_id, actor=f"user:{user_id}")

    async def ship(self, run_id: int, *, actor: str) -> str:
        """Merge the verified commit, update the live checkout, reload, start watching."""
        async with self._ship_lock:
            run = await self.runs.get(run_id)
            with bind_context(run_id=run_id):
                return await self._ship(run, actor)

    async def _ship(self, run: Run, actor: str) -> str:
        assert run.proposal_id is not None and run.verified_sha is not None
        proposal = await self.forge.get(run.proposal_id)
        expected = run.verified_sha
        problem = await self.merger.live_checkout_problem()
        if problem is not None:  # hand edits are never overwritten: hold the merge, keep the approval
            await self.runs.transition(
                run.id, "awaiting_approval", actor="pipeline", detail={"held": problem}
            )
            return f"⏸ Not merged: {problem}. Approve again once the live checkout is clean."
        try:
            result = await self.forge.merge(proposal.id, expected)
        except HeadMovedError:
            await self.approvals.mark_stale(proposal.id, proposal.head_sha)
            await self.runs.transition(
                run.id,
                "awaiting_approval",
                actor="pipeline",
                detail={"why": "the branch moved after verification"},
            )
            return "⚠️ The branch moved after it was verified: approve again once it is re-verified."
        except MainMovedError as moved:
            outcome = await self.merger.rebase_and_reverify(
                branch=proposal.branch,
                base_sha=run.base_sha or "",
                head_sha=expected,
                run_id=run.id,
                onto=moved.main_sha,
            )
            if not outcome.verification.ok:
                await self.runs.fail(
                    run.id,
                    "merging",
                    "after rebasing onto main the checks fail:\n" + outcome.verification.summary(),
                    actor="pipeline",
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
            if outcome.diff_changed:
                return (
                    "⚠️ main moved and rebasing changed this proposal's own diff "
                    f"(now `{outcome.new_sha[:7]}`, re-verified ✅): it needs approval again."
                )
            await self.runs.transition(run.id, "merging", actor=actor, detail={"after_rebase": True})
            run = await self.runs.get(run.id)
            result = await self.forge.merge(proposal.id, outcome.new_sha)
        live = await self.merger.update_live_checkout(result.merged_sha)
        if not live.ok:
            await self.runs.event(run.id, "deploy_held", actor="pipeline", detail={"reason": live.reason})
            return f"⏸ Merged `{result.merged_sha[:7]}`, but the live checkout was not updated: {live.reason}"
        run = await self.runs.transition(
            run.id,
            "deployed",
            actor="pipeline",
            detail={"merged_sha": result.merged_sha, "files": live.changed_files},
        )
        report = await self._reload(live.changed_files)
        await self._start_watch(run, set(live.changed_files))
        return f"🚀 Merged `{result.merged_sha[:7]}` and deployed:\n{report}"

    async def _reload(self, changed_files: list[str]) -> str:
        if self.reloader is None:
            return "(no reloader attached: restart to load the change)"
        return render(await self.reloader.apply(classify(changed_files)))

    # -- watching -------------------------------------------------------------------------------

    async def _start_watch(self, run: Run, files: set[str], remaining_s: float | None = None) -> None:
        if run.state != "watching":
            run = await self.runs.transition(
                run.id, "watching", actor="pipeline", detail={"window_s": self._config.watch_window_s}
            )
        fingerprint = await self._fingerprint(run.incident_id)
        watch = self._watches[run.id] = _Watch(run.id, fingerprint, files)
        window = self._config.watch_window_s if remaining_s is None else remaining_s
        watch.task = asyncio.get_running_loop().create_task(
            self._watch_until(watch, window), name=f"watch-{run.id}"
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

    async def resume_watches(self) -> int:
        """After a restart: keep watching deployed runs for the time their window has left."""
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
            await self._start_watch(run, files, remaining)
            resumed += 1
        return resumed

    def stop(self) -> None:
        """Cancel watch timers (a restart resumes them from the runs' events)."""
        for watch in self._watches.values():
            if watch.task is not None:
                watch.task.cancel()
        self._watches.clear()

    async def quiesce(self) -> None:
        """Wait for nothing but in-flight ships; watches are long timers and are not waited for."""
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
            report = await self._reload(live.changed_files)
            return f"⏪ Rolled back run #{run.id} (`{revert_sha[:7]}`):\n{report}"

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


def describe(run: Run) -> dict[str, Any]:
    return {"id": run.id, "state": run.state, "proposal": run.proposal_id}
