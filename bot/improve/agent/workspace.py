"""Worktrees for runs: one fresh branch per run, cut from the current local main, never tracking anything.

A run edits `mendbot/<run-id>-<slug>` in its own worktree under `worktrees_dir`, so the live checkout
the bot runs from is never touched. The branch starts at main's sha as resolved at creation (recorded as
`base_sha`) and has no upstream: a worktree created from `origin/main` — or from a local main that tracks
it, with `branch.autoSetupMerge=always` — would track main, and a bare `git push` from it would land on
main. The pipeline, not the agent, commits (the bot's identity, a `Run-Id:` trailer, no hooks), reading
the worktree as data (`mendbot.trust.trees`: what cannot be made inert fails the run), and scans the diff
for secrets before it is proposed. Git runs the one way `mendbot.kernel.git` gives, which executes nothing a
repository's config or a worktree's attributes name; a repository whose config defines drivers that
attributes could select gets no worktree at all.

Checks, proofs and replays never run in a run's worktree: `checkout()` gives each a fresh copy of exactly
a commit's tree (a detached worktree whose files are written from the commit's blobs), removed after.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec

from mendbot.kernel.git import GitError, driver_problem, git
from mendbot.kernel.log import get_logger
from mendbot.kernel.process import ProcessResult
from mendbot.kernel.sections import HostConfig
from mendbot.trust.trees import HostileTree, Symlink, check_change, commit_worktree, materialise

__all__ = [
    "HostileTree",
    "NothingToCommitError",
    "ProcessResult",
    "Workspace",
    "WorkspaceError",
    "Worktree",
    "branch_name",
]

_log = get_logger(__name__)

_SLUG_MAX = 40


class WorkspaceError(Exception):
    """A git operation on a run's worktree failed; the message carries git's own explanation."""


class NothingToCommitError(WorkspaceError):
    """The worktree has no changes against its HEAD, so there is nothing to commit."""


class Worktree(msgspec.Struct, frozen=True):
    path: Path
    branch: str
    base_sha: str


async def _git(cwd: Path, *args: str, check: bool = True) -> ProcessResult:
    return await git(cwd, *args, check=check, error=WorkspaceError)


def _slugify(slug: str) -> str:
    cleaned = re.sub(r"[^a-z0-9]+", "-", slug.lower()).strip("-")
    return cleaned[:_SLUG_MAX].rstrip("-") or "change"


def branch_name(run_id: int, slug: str) -> str:
    """`mendbot/<run-id>-<slug>`, the slug reduced to lowercase letters, digits and dashes."""
    return f"mendbot/{run_id}-{_slugify(slug)}"


def _delete_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _may_have_worktrees(repo_root: Path) -> bool:
    """Whether git may hold records of worktrees in `repo_root` (what `git worktree prune` tidies): no
    when its `.git` directory's `worktrees/` is absent or empty, which spares most starts a git process."""
    git_dir = repo_root / ".git"
    if not git_dir.is_dir():
        return True  # a worktree's or submodule's `.git` file: git knows where its records are
    try:
        return any((git_dir / "worktrees").iterdir())
    except FileNotFoundError:
        return False


def _entries_not_in(directory: Path, keep: set[Path]) -> list[Path]:
    kept = {path.resolve() for path in keep}
    if not directory.is_dir():
        return []
    return [entry for entry in sorted(directory.iterdir()) if entry.resolve() not in kept]


def _path_of(worktree: Worktree | Path) -> Path:
    return worktree.path if isinstance(worktree, Worktree) else Path(worktree)


class Workspace:
    """Creates, commits in and removes the worktrees of runs in the repository at `repo_root`."""

    def __init__(
        self,
        repo_root: Path,
        worktrees_dir: Path,
        identity: tuple[str, str] = ("mendbot", "mendbot@localhost"),
        *,
        base_branch: str = "main",
        host: HostConfig | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.repo_root = repo_root.resolve()
        # The bot the repository is, when it is not mendbot's own (mendbot.yaml): how the smoke load and
        # the replay start its program, and what they copy into its tree.
        self.host = host
        self.worktrees_dir = worktrees_dir.resolve()
        # Where verifications of base commits are kept (mendbot.improve.agent.verify.verify_base): beside
        # the worktrees, in mendbot's data directory.
        self.cache_dir = (cache_dir or self.worktrees_dir.parent / "base-checks").resolve()
        if self.worktrees_dir == self.repo_root or self.worktrees_dir in self.repo_root.parents:
            # cleanup_stray deletes whatever it finds there that it was not asked to keep
            raise ValueError(f"worktrees_dir {worktrees_dir} must not contain the repository itself")
        self.identity = identity
        self.base_branch = base_branch
        # `git worktree add/remove/prune` and `git branch` write the shared .git (config, refs,
        # worktree admin files); concurrent runs would trip over each other's lock files.
        self._lock = asyncio.Lock()
        self._checkouts = itertools.count(1)

    def identity_env(self) -> dict[str, str]:
        """Git's environment for commits made as the bot."""
        name, email = self.identity
        return {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }

    def path_for(self, run_id: int) -> Path:
        return self.worktrees_dir / f"run-{run_id}"

    async def create(self, run_id: int, slug: str) -> Worktree:
        """A new worktree on `mendbot/<run-id>-<slug>` at the current local main; no upstream is set."""
        branch = branch_name(run_id, slug)
        path = self.path_for(run_id)
        if (problem := await driver_problem(self.repo_root)) is not None:
            raise WorkspaceError(f"no worktree for run {run_id}: {problem}")
        async with self._lock:
            if path.exists():
                raise WorkspaceError(f"{path} already exists: remove it (or clean stray worktrees) first")
            base = await _git(
                self.repo_root, "rev-parse", "--verify", f"refs/heads/{self.base_branch}^{{commit}}"
            )
            base_sha = base.output.strip()
            self.worktrees_dir.mkdir(parents=True, exist_ok=True)
            # Start at the sha, not a ref name, and say --no-track: whatever branch.autoSetupMerge says,
            # the new branch then has no upstream to push to.
            await _git(self.repo_root, "worktree", "add", "--no-track", "-b", branch, str(path), base_sha)
            await _git(self.repo_root, "config", "--unset-all", f"branch.{branch}.remote", check=False)
            await _git(self.repo_root, "config", "--unset-all", f"branch.{branch}.merge", check=False)
            upstream = await _git(
                self.repo_root, "rev-parse", "--abbrev-ref", f"{branch}@{{upstream}}", check=False
            )
            if upstream.code == 0:
                raise WorkspaceError(f"{branch} unexpectedly tracks {upstream.output.strip()}")
        _log.info("worktree created", run_id=run_id, branch=branch, path=str(path), base_sha=base_sha)
        return Worktree(path=path, branch=branch, base_sha=base_sha)

    @asynccontextmanager
    async def checkout(self, treeish: str, *, name: str, at: str | None = None) -> AsyncIterator[Path]:
        """A fresh copy of exactly `treeish`'s tree for the block, then gone (module docstring).

        A detached worktree `<worktrees_dir>/<name>-<n>` at the commit `at` (default `treeish`) with
        `treeish` in its index, its files written from the blobs: nothing ignored or untracked of any
        other worktree, no filter. `at` lets a tree that is not a commit (the base with a change's
        tests) sit on the commit it was made from, so git inside the sandbox shows the difference.
        """
        path = self.worktrees_dir / f"{name}-{next(self._checkouts)}"
        async with self._lock:
            if path.exists():
                await self._remove_locked(path)
            self.worktrees_dir.mkdir(parents=True, exist_ok=True)
            await _git(
                self.repo_root, "worktree", "add", "--no-checkout", "--detach", str(path), at or treeish
            )
        try:
            await _git(path, "read-tree", treeish)
            await materialise(self.repo_root, treeish, path)
            yield path
        finally:
            await self.remove(path)

    async def remove(self, worktree: Worktree | Path, *, delete_branch: bool = False) -> None:
        """Remove the worktree directory and its registration; the branch stays unless asked otherwise."""
        path = _path_of(worktree).resolve()
        branch = worktree.branch if isinstance(worktree, Worktree) else None
        if delete_branch and branch is None and path.exists():
            head = await _git(path, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
            branch = head.output.strip() or None
        async with self._lock:
            await self._remove_locked(path)
            if delete_branch and branch:
                await _git(self.repo_root, "branch", "-D", branch, check=False)
        _log.info("worktree removed", path=str(path), branch_deleted=bool(delete_branch and branch))

    async def _remove_locked(self, path: Path) -> None:
        # Twice --force also removes a locked worktree; a directory git does not know is just deleted.
        result = await _git(
            self.repo_root, "worktree", "remove", "--force", "--force", str(path), check=False
        )
        if result.code != 0:
            _delete_tree(path)
        await _git(self.repo_root, "worktree", "prune")

    async def cleanup_stray(self, keep: set[Path]) -> list[Path]:
        """Remove every worktree directory under `worktrees_dir` not in `keep`, then prune git's records.

        Used at start-up after a crash; branches stay, since one may back a proposal awaiting approval.
        """
        async with self._lock:
            removed = _entries_not_in(self.worktrees_dir, keep)
            for entry in removed:
                await self._remove_locked(entry)
            if removed or _may_have_worktrees(self.repo_root):
                await _git(self.repo_root, "worktree", "prune")
        if removed:
            _log.info("stray worktrees removed", paths=[str(path) for path in removed])
        return removed

    async def commit(self, worktree: Worktree | Path, message: str, run_id: int) -> str:
        """Commit the worktree's files as the bot with a `Run-Id:` trailer, read as data
        (`mendbot.trust.trees`); returns the new sha. HostileTree when they carry what cannot be inert."""
        path = _path_of(worktree)
        try:
            sha = await commit_worktree(
                path, f"{message.strip()}\n\nRun-Id: {run_id}", identity=self.identity_env()
            )
        except GitError as exc:
            raise WorkspaceError(str(exc)) from exc
        if sha is None:
            raise NothingToCommitError(f"nothing to commit in {path}")
        return sha

    async def diff(self, worktree: Worktree | Path, base_sha: str) -> str:
        """The committed change since `base_sha` as a unified diff (commit first)."""
        result = await _git(
            _path_of(worktree), "diff", "--no-color", "--no-ext-diff", "--no-textconv", base_sha, "HEAD"
        )
        return result.output

    async def apply_reverse(self, worktree: Worktree | Path, base: str, merged: str) -> None:
        """Undo base..merged in the worktree's files (uncommitted: the pipeline commits and verifies)."""
        path = _path_of(worktree)
        diff = await _git(path, "diff", "--binary", merged, base)
        patch = path.parent / f".{path.name}.revert.patch"
        patch.write_text(diff.output)
        try:
            await _git(path, "apply", "--3way", str(patch))
        finally:
            patch.unlink(missing_ok=True)

    async def diffstat(self, worktree: Worktree | Path, base_sha: str) -> str:
        """`git diff --stat` of the committed change since `base_sha`, then one line per symlink it adds
        or changes, shown as a symlink with its target (the stat alone shows it as a one-line file)."""
        path = _path_of(worktree)
        result = await _git(path, "diff", "--no-color", "--stat", base_sha, "HEAD")
        links = await self.check_change(base_sha, await self.head(path))
        return "\n".join([result.output.rstrip(), *(f" symlink {link.shown()}" for link in links)])

    async def head(self, worktree: Worktree | Path) -> str:
        """The commit a worktree is at."""
        return (await _git(_path_of(worktree), "rev-parse", "--verify", "HEAD^{commit}")).output.strip()

    async def check_change(self, base_sha: str, head_sha: str) -> list[Symlink]:
        """`mendbot.trust.trees.check_change` in this repository: HostileTree, or the change's symlinks."""
        try:
            return await check_change(self.repo_root, base_sha, head_sha)
        except GitError as exc:
            raise WorkspaceError(str(exc)) from exc

    async def changed_files(self, worktree: Worktree | Path, base_sha: str) -> list[str]:
        """Repository-relative paths the committed change since `base_sha` adds, modifies or deletes."""
        result = await _git(_path_of(worktree), "diff", "--name-only", "-z", base_sha, "HEAD")
        return [name for name in result.output.split("\0") if name]
