"""Merge-queue steps around `Forge.merge`: rebase and re-verify when main moved, then fast-forward the
live checkout to what was merged.

**Rebase and re-verify** (`Merger.rebase_and_reverify`). A proposal was verified on the main it was
cut from; if main moved since, merging it unchanged would ship a combination nobody checked. The
branch's own commits (`base..head`) are rebased onto the current main in a temporary detached
worktree under the workspace's `worktrees_dir` (cleaned at start-up like any stray worktree), so
neither the live checkout nor the run's worktree is touched meanwhile. A conflict limited to import
blocks is resolved there (`mendbot.deploy.import_conflicts`) and the rebase goes on; any other
conflict raises `RebaseConflict` naming the files. The change is checked for what cannot be made inert
(`mendbot.trust.trees`) before it is checked out and again once rebased, and the checks run on a fresh
copy of the rebased commit's tree (`verify_commit`, smoke load included); only if they pass does the
branch move to it — by `git reset --keep` in the worktree
that has the branch checked out (the run's worktree, kept while a proposal awaits approval), else
by `update-ref` guarded by the old head. `diff_changed` compares the proposal's own change before
and after: `git diff -U0` of `base..head` against `onto..new`, with hunk line numbers and blob ids
left out (what `git patch-id` ignores) — a shifted change is the same change, but a hunk that
main already made, or a different resolution, is not, and then the approval must be asked again. In a
file whose import block was resolved, the change is compared without that block: the union of imports
is not a new change.

**Update the live checkout** (`Merger.update_live_checkout`). The forge records a merge without
touching files (see `mendbot.forge.local`); here the live checkout — the repository the bot runs from
— moves to the merged commit with `git merge --ff-only`, which moves main, the index and the files
together. It is refused, with nothing changed and the reason for the report, when the checkout is
not on main, has uncommitted changes to tracked files (hand edits are never overwritten), main
cannot fast-forward to the target, or git itself refuses (an untracked file in the way).
`live_checkout_problem()` gives the first two reasons before a merge, so a caller can hold the
merge itself rather than only its deployment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import msgspec

from mendbot.forge.base import HeadMovedError
from mendbot.improve.agent.verify import Verification, verify_commit
from mendbot.improve.agent.workspace import Workspace
from mendbot.kernel.git import driver_problem, git
from mendbot.kernel.log import get_logger
from mendbot.kernel.process import ProcessResult
from mendbot.trust.sandbox import Sandbox
from mendbot.trust.trees import HostileTree

__all__ = ["LiveUpdate", "MergeError", "Merger", "RebaseConflict", "RebaseOutcome", "own_change"]

_log = get_logger(__name__)


class MergeError(Exception):
    """A git step of rebasing or deploying failed; the message carries git's explanation."""


class RebaseConflict(MergeError):
    """The proposal's commits do not apply on the current main: `files` are the conflicting paths."""

    def __init__(self, message: str, files: list[str]) -> None:
        super().__init__(message)
        self.files = files


class RebaseOutcome(msgspec.Struct, frozen=True):
    """The rebased head, whether the proposal's own diff changed, and its verification. The branch
    was moved to `new_sha` only if `verification.ok`; `onto` is the main it now sits on (its new base)."""

    new_sha: str
    diff_changed: bool
    verification: Verification
    onto: str = ""
    # files whose import conflicts were merged
    resolved_imports: list[str] = msgspec.field(default_factory=list)


class LiveUpdate(msgspec.Struct, frozen=True):
    """What updating the live checkout did: `new_sha` is where it is now (`old_sha` when refused)."""

    ok: bool
    reason: str
    old_sha: str
    new_sha: str
    changed_files: list[str] = msgspec.field(default_factory=list)


def own_change(diff: str) -> list[str]:
    """A `git diff -U0` reduced to what the change itself is, not where it sits (module docstring).

    Hunk headers lose their line numbers; `index` lines (blob ids, which change with any other edit
    of the file) are dropped except for binary files, whose content they are the only trace of.
    """
    kept: list[str] = []
    index: str | None = None
    for line in diff.splitlines():
        if line.startswith("index "):
            index = line
            continue
        if line.startswith("Binary files ") and index is not None:
            kept.append(index)
        if line.startswith("diff --git "):
            index = None
        kept.append("@@" if line.startswith("@@") else line)
    return kept


class Merger:
    """Rebase-and-reverify and live-checkout updates for the repository at `repo_root` (module docstring).

    `checks`, `timeout_s` and `sandbox` are what `verify` runs the rebased commit with (the pipeline's
    own: `improve.checks`, `improve.check_timeout_s` and its sandbox).
    """

    def __init__(
        self,
        repo_root: Path,
        workspace: Workspace,
        checks: list[str],
        timeout_s: float,
        sandbox: Sandbox,
        *,
        base: str = "main",
        smoke: bool = True,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.repo_root = repo_root.resolve()
        self.workspace = workspace
        self.checks = list(checks)
        self.timeout_s = timeout_s
        self.sandbox = sandbox
        self.base = base
        self._smoke = smoke
        self._redact = redact
        self._live_lock = asyncio.Lock()

    # -- rebase and re-verify --------------------------------------------------------------------

    async def rebase_and_reverify(
        self, branch: str, base_sha: str, head_sha: str, run_id: int, *, onto: str | None = None
    ) -> RebaseOutcome:
        """Rebase `base_sha..head_sha` of `branch` onto `onto` (default: the current main), verify it,
        and move the branch there if the checks pass.

        HeadMovedError if the branch is not at `head_sha`; RebaseConflict if the commits do not
        apply; an empty `base_sha` means the merge base of the branch and `onto`. A remote forge
        passes `onto` = `MainMovedError.main_sha` (its main, which may be ahead of the local one).
        """
        current = await self._resolve(f"refs/heads/{branch}")
        if current != head_sha:
            raise HeadMovedError(
                f"branch {branch!r} is at {(current or 'nothing')[:12]}, not the approved commit"
                f" {head_sha[:12]}; not rebased"
            )
        onto_sha = await self._resolve(onto or f"refs/heads/{self.base}")
        if onto_sha is None:
            raise MergeError(f"there is no {onto or self.base!r} to rebase {branch} onto")
        if not base_sha:
            base_sha = (await self._git(self.repo_root, "merge-base", onto_sha, head_sha)).output.strip()
        await self._refuse_hostile(base_sha, head_sha)
        path = self.workspace.worktrees_dir / f"rebase-{run_id}"
        if path.exists():
            await self.workspace.remove(path)  # left over from a stopped process
        path.parent.mkdir(parents=True, exist_ok=True)
        await self._git(self.repo_root, "worktree", "add", "--detach", str(path), head_sha)
        try:
            resolved: list[str] = []
            new_sha = await self._rebase(path, base_sha, onto_sha, branch, resolved)
        finally:
            await self.workspace.remove(path)
        await self._refuse_hostile(onto_sha, new_sha)
        before = await self._change(base_sha, head_sha, resolved)
        after = await self._change(onto_sha, new_sha, resolved)
        verification = await verify_commit(
            self.workspace,
            new_sha,
            self.checks,
            self.timeout_s,
            sandbox=self.sandbox,
            name=f"rebase-{run_id}-verify",
            smoke=self._smoke,
            redact=self._redact,
            base=onto_sha,  # a failure main has too is not the change's
        )
        ok = verification.ok and verification.sha == new_sha
        if ok:
            await self._move_branch(branch, head_sha, new_sha)
        outcome = RebaseOutcome(
            new_sha=new_sha,
            diff_changed=before != after,
            verification=verification,
            onto=onto_sha,
            resolved_imports=sorted(set(resolved)),
        )
        _log.info(
            "rebased",
            run_id=run_id,
            branch=branch,
            onto=onto_sha,
            old=head_sha,
            new=new_sha,
            diff_changed=outcome.diff_changed,
            verified=verification.ok,
            moved=ok,
        )
        return outcome

    async def reverify(self, head_sha: str, run_id: int) -> Verification:
        """Verify `head_sha` as it is (a proposal branch that moved by hand) on a fresh copy of its tree,
        sandboxed like every verify; the branch itself is not touched. MergeError when the change carries
        what cannot be made inert (`mendbot.trust.trees`)."""
        base = (await self._git(self.repo_root, "merge-base", f"refs/heads/{self.base}", head_sha)).output
        await self._refuse_hostile(base.strip(), head_sha)
        verification = await verify_commit(
            self.workspace,
            head_sha,
            self.checks,
            self.timeout_s,
            sandbox=self.sandbox,
            name=f"reverify-{run_id}",
            smoke=self._smoke,
            redact=self._redact,
            base=base.strip() or None,
        )
        _log.info("reverified", run_id=run_id, sha=head_sha, ok=verification.ok)
        return verification

    async def _refuse_hostile(self, base: str, head: str) -> None:
        """MergeError when `base..head` carries what cannot be made inert, or when the repository's
        config defines a driver a tree could select (`mendbot.kernel.git.driver_problem`): checked before any
        git command checks out, rebases or verifies it."""
        if (problem := await driver_problem(self.repo_root)) is not None:
            raise MergeError(f"not rebased or verified: {problem}")
        try:
            await self.workspace.check_change(base, head)
        except HostileTree as exc:
            raise MergeError(str(exc)) from None

    async def _rebase(
        self, path: Path, base_sha: str, onto_sha: str, branch: str, resolved: list[str]
    ) -> str:
        """Rebase in `path`; import-only conflicts are resolved as they come (their files appended
        to `resolved`), any other conflict aborts with RebaseConflict."""
        result = await git(
            path,
            "rebase",
            "--no-autostash",
            "--no-autosquash",
            "--no-update-refs",
            "--onto",
            onto_sha,
            base_sha,
            check=False,
            env=self.workspace.identity_env(),
        )
        files: list[str] = []
        while result.code != 0:
            from mendbot.deploy.import_conflicts import (
                resolve_import_conflicts,  # loaded by the first conflict
            )

            unmerged = await self._git(path, "diff", "--name-only", "--diff-filter=U", "-z", check=False)
            files = [name for name in unmerged.output.split("\0") if name]
            if not files or not await resolve_import_conflicts(path, files):
                break
            resolved.extend(files)
            await self._git(path, "add", "--", *files)
            result = await git(path, "rebase", "--continue", check=False, env=self.workspace.identity_env())
        if result.code == 0:
            return (await self._git(path, "rev-parse", "HEAD")).output.strip()
        await self._git(path, "rebase", "--abort", check=False)
        if files:
            raise RebaseConflict(
                f"{branch} does not rebase onto {onto_sha[:12]}: conflicts in {', '.join(files)}", files
            )
        raise MergeError(f"rebasing {branch} onto {onto_sha[:12]} failed: {_reason(result)}")

    async def _change(self, old: str, new: str, resolved: list[str]) -> list[str]:
        excluded = [f":(exclude,literal){name}" for name in sorted(set(resolved))]
        result = await self._git(
            self.repo_root,
            "diff",
            "-U0",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            old,
            new,
            "--",
            ".",
            *excluded,
        )
        change = own_change(result.output)
        if resolved:
            from mendbot.deploy.import_conflicts import change_without_imports
        for name in sorted(set(resolved)):
            before = await self._git(self.repo_root, "show", f"{old}:{name}", check=False)
            after = await self._git(self.repo_root, "show", f"{new}:{name}", check=False)
            change += [f"file {name}", *change_without_imports(before.output, after.output)]
        return change

    async def _move_branch(self, branch: str, old: str, new: str) -> None:
        """Point `branch` at `new`, keeping a worktree that has it checked out in step."""
        checked_out = await self._worktree_of(branch)
        if checked_out is None:
            await self._git(
                self.repo_root,
                "update-ref",
                "-m",
                "mendbot: rebased onto main",
                f"refs/heads/{branch}",
                new,
                old,
            )
            return
        # The pipeline commits from bytes and leaves the index without stat data (`mendbot.trust.trees`):
        # refresh it, so unchanged files read as unchanged. No driver can run (`_refuse_hostile`).
        await self._git(checked_out, "update-index", "-q", "--refresh", check=False)
        status = await self._git(checked_out, "status", "--porcelain", "--untracked-files=no")
        if status.output.strip():
            raise MergeError(f"{checked_out} has uncommitted changes on {branch}; the branch was not moved")
        # --keep moves the branch, index and files together, and refuses rather than lose a change.
        await self._git(checked_out, "reset", "--quiet", "--keep", new)

    async def _worktree_of(self, branch: str) -> Path | None:
        listing = await self._git(self.repo_root, "worktree", "list", "--porcelain")
        path: Path | None = None
        for line in listing.output.splitlines():
            if line.startswith("worktree "):
                path = Path(line.removeprefix("worktree "))
            elif line == f"branch refs/heads/{branch}":
                return path
        return None

    # -- the live checkout -----------------------------------------------------------------------

    async def live_checkout_problem(self) -> str | None:
        """Why the live checkout cannot be fast-forwarded now (not on main, hand edits), or None."""
        head = await self._git(self.repo_root, "symbolic-ref", "--quiet", "HEAD", check=False)
        ref = head.output.strip()
        if head.code != 0 or not ref:
            return f"the live checkout is not on {self.base} (detached HEAD)"
        if ref != f"refs/heads/{self.base}":
            return f"the live checkout is on {ref.removeprefix('refs/heads/')}, not {self.base}"
        status = await self._git(self.repo_root, "status", "--porcelain", "--untracked-files=no")
        edited = [line[3:] for line in status.output.splitlines() if line.strip()]
        if edited:
            shown = ", ".join(edited[:5]) + (f" and {len(edited) - 5} more" if len(edited) > 5 else "")
            return (
                f"the live checkout has uncommitted changes to tracked files ({shown});"
                " commit or discard them, then deploy again"
            )
        return None

    async def update_live_checkout(self, target_sha: str) -> LiveUpdate:
        """Fast-forward the live checkout to `target_sha`, or refuse and change nothing (module docstring)."""
        async with self._live_lock:
            old = await self._resolve("HEAD") or ""
            refused = await self._refusal(old, target_sha)
            if refused is not None:
                _log.warning("live_update_refused", target=target_sha, reason=refused)
                return LiveUpdate(ok=False, reason=refused, old_sha=old, new_sha=old)
            if old == target_sha:
                return LiveUpdate(ok=True, reason="already up to date", old_sha=old, new_sha=old)
            result = await self._git(
                self.repo_root,
                "merge",
                "--ff-only",
                "--no-autostash",
                "--quiet",
                target_sha,
                check=False,
            )
            new = await self._resolve("HEAD") or ""
            if result.code != 0:
                reason = f"git refused to fast-forward the live checkout: {_reason(result)}"
                _log.warning("live_update_refused", target=target_sha, reason=reason)
                return LiveUpdate(ok=False, reason=reason, old_sha=old, new_sha=new)
            names = await self._git(self.repo_root, "diff", "--name-only", "--no-renames", "-z", old, new)
            changed = [name for name in names.output.split("\0") if name]
        _log.info("live_updated", old=old, new=new, files=len(changed))
        return LiveUpdate(ok=True, reason="", old_sha=old, new_sha=new, changed_files=changed)

    async def changed_files(self, old: str, new: str) -> list[str]:
        """The files that differ between two commits (what a merged change touched: base..merged)."""
        names = await self._git(self.repo_root, "diff", "--name-only", "--no-renames", "-z", old, new)
        return [name for name in names.output.split("\0") if name]

    async def _refusal(self, old: str, target_sha: str) -> str | None:
        problem = await self.live_checkout_problem()
        if problem is not None:
            return problem
        target = await self._resolve(target_sha)
        if target is None:
            return f"commit {target_sha[:12]} is not in the live checkout's repository"
        if target != target_sha:
            return f"{target_sha!r} is not a full commit sha"
        ancestor = await self._git(self.repo_root, "merge-base", "--is-ancestor", old, target, check=False)
        if ancestor.code != 0:
            return (
                f"{self.base} ({old[:12]}) cannot fast-forward to {target[:12]}: it has commits the"
                " target lacks; only a fast-forward is allowed"
            )
        return None

    # -- git -------------------------------------------------------------------------------------

    async def _resolve(self, rev: str) -> str | None:
        result = await self._git(
            self.repo_root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False
        )
        return result.output.strip() if result.code == 0 and result.output.strip() else None

    async def _git(self, cwd: Path, *args: str, check: bool = True) -> ProcessResult:
        return await git(cwd, *args, check=check, error=MergeError)


def _reason(result: ProcessResult) -> str:
    if result.timed_out:
        return "timed out"
    return (result.errors.strip() or result.output.strip() or f"exit code {result.code}")[:500]
