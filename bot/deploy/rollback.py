"""The emergency rollback: the run's merge reverted on main at once — a commit made without touching
the live tree — then fast-forwarded and reloaded, and proved by the recorded calls behaving as before
the fix. (The ordinary rollback goes through verify and approval like any change.)

A canary's rollback (bot/scale/rollout.py) is the same kind of commit: on top of the merge, with the
tree every other process still runs, so every process fast-forwards to it and ends on one commit. It
is built from stored values only (fixed identity and date), so every checkout that has the merge
builds the very same commit — with the local forge each process's checkout makes it itself.
"""

from __future__ import annotations

from pathlib import Path

from mendbot.deploy.deploy_core import DeployCore
from mendbot.improve.runs import Run
from mendbot.kernel.errors import UserError
from mendbot.kernel.git import git

__all__ = ["DeployRollbacks"]


class DeployRollbacks(DeployCore):
    """Reverting a deployed run's merge at once."""

    async def emergency_rollback(self, run_id: int, *, user_id: int) -> str:
        """Revert the run's merge on main at once and reload (approvers only; checked by the caller)."""
        if self.rollout is not None and (canary := await self.rollout.canary_of(run_id)) is not None:
            # Only the canary runs it, and its watch takes it back: a revert here would race the rollout.
            raise UserError(
                f"Run #{run_id} is live on the canary ({canary}) only, and nobody else runs it: its watch "
                f"takes the canary back by itself if it regresses. Roll it back once every process runs it"
                f" (`/run {run_id}` shows the rollout's stage)."
            )
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
                await self.runs.rolled_back(
                    run.id, actor=f"user:{user_id}", detail={"revert_sha": revert_sha, "emergency": True}
                )
                await self._fix_undone(run)
                report = await apply(live.changed_files)
            if self.went_live is not None:
                await self.went_live(revert_sha, True)
            proved = await self.prove_rollback(run, revert_sha) if self.prove_rollback is not None else ""
            return f"⏪ Rolled back run #{run.id} (`{revert_sha[:7]}`):\n{report}{proved}"

    async def canary_revert(self, run_id: int, merged_sha: str, previous_sha: str, at: float) -> str:
        """The commit that takes a canary back: parent `merged_sha`, tree `previous_sha`'s, dated `at`
        (the same commit in every checkout that has both); recorded on the run once."""
        repo = self._settings.repo_dir.resolve()
        date = f"@{int(at)} +0000"
        tree = (await git(repo, "rev-parse", f"{previous_sha}^{{tree}}", error=UserError)).output.strip()
        made = await git(
            repo,
            "commit-tree",
            tree,
            "-p",
            merged_sha,
            "-m",
            f"Revert run {run_id} on the canary\n\nRun-Id: {run_id}",
            env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date},
            error=UserError,
        )
        return made.output.strip()

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
