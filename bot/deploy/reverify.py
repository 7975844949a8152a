"""Re-verification when a proposal branch moved (a hand commit, or a push on the forge): what is
there now is verified in the sandbox and proved again, then needs approval again — or the run fails
with the reason and its proposal is closed.
"""

from __future__ import annotations

from mendbot.deploy.deploy_core import DeployCore
from mendbot.forge.base import branch_head
from mendbot.improve.runs import Run
from mendbot.kernel.log import get_logger

__all__ = ["DeployReverification"]

_log = get_logger(__name__)


class DeployReverification(DeployCore):
    """Verifying a moved proposal branch again before it can be approved."""

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
