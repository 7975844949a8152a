"""What every forge offers the pipeline: open a proposal for a verified branch, read it, comment,
close, and merge exactly the approved commit.

A forge is where proposals live: `LocalForge` keeps them as branches of the bot's own repository
plus rows in SQLite, `GitHubForge` as pull requests. Both record each proposal in the
`proposals` table, so a restart loses nothing. Every method takes the proposal id of that table.

`merge(proposal_id, expected_head_sha)` is guarded twice: the branch must be at the approved head
(`HeadMovedError` otherwise: nobody approved what is there now) and main must be an ancestor of it
(`MainMovedError` otherwise: the change was verified on an older main, so it is rebased and
re-verified first, see `mendbot.deploy.merge`). A merge never touches the live checkout's working tree:
both forges leave the merged commit in the bot's repository at `refs/mendbot/merged/<proposal id>`
and the deploy step fast-forwards the live checkout to it (`Merger.update_live_checkout`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import msgspec

from mendbot.db.proposals import Proposal, ProposalState
from mendbot.kernel.git import git

__all__ = [
    "MERGED_REF_PREFIX",
    "Forge",
    "ForgeError",
    "HeadMovedError",
    "MainMovedError",
    "MergeResult",
    "Proposal",
    "ProposalState",
    "branch_head",
    "is_ancestor",
    "merged_ref",
    "require_branch_at",
    "resolve_commit",
    "run_git",
    "utcnow",
]

GIT_TIMEOUT_S = 120.0
# Where a merge leaves the merged commit in the bot's repository, one ref per proposal: it keeps
# the commit reachable (a deleted branch must not let gc take it) and tells the deploy step where
# to fast-forward the live checkout to.
MERGED_REF_PREFIX = "refs/mendbot/merged/"


class ForgeError(Exception):
    """A forge refused or failed an operation; the message says what and why, ready for a report."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status for remote forges, when there was one


class HeadMovedError(ForgeError):
    """The proposal's branch is not at the head SHA the approval was bound to: nothing is merged."""


class MainMovedError(ForgeError):
    """Main is no longer an ancestor of the approved head: rebase and re-verify, then merge."""

    def __init__(self, message: str, *, main_sha: str, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.main_sha = main_sha  # main as the forge has it now (the commit is in the bot's repository)


class MergeResult(msgspec.Struct, frozen=True):
    """A merged proposal: `merged_sha` is what main now holds (LocalForge: the approved head itself;
    GitHubForge: GitHub's merge commit, whose second parent is the approved head), `main_before` is
    main just before the merge. `already_merged` means an earlier call merged it; nothing was done."""

    merged_sha: str
    main_before: str
    already_merged: bool = False


class Forge(Protocol):
    """The operations the pipeline needs from a forge (see the module docstring)."""

    name: str

    async def open_proposal(
        self, *, run_id: int, branch: str, head_sha: str, title: str, body: str
    ) -> Proposal:
        """Propose `branch`, which must be at `head_sha` (the verified commit), and record it."""
        ...

    async def get(self, proposal_id: int) -> Proposal:
        """The proposal as the forge sees it now (a remote forge refreshes its state)."""
        ...

    async def comment(self, proposal_id: int, text: str) -> None:
        """Attach a durable comment to the proposal."""
        ...

    async def close(self, proposal_id: int, reason: str) -> None:
        """Close the proposal without merging, recording why."""
        ...

    async def main_sha(self) -> str:
        """Where the forge's main is now; the commit is in the bot's repository afterwards."""
        ...

    async def fetch_proposal(self, proposal_id: int) -> None:
        """Make the proposal's branch a branch of the bot's repository, if it is not one already
        (a worker pushed it to the forge from a clone of its own)."""
        ...

    async def merge(self, proposal_id: int, expected_head_sha: str) -> MergeResult:
        """Merge exactly `expected_head_sha` into main, without touching the live working tree.

        HeadMovedError if the branch is elsewhere, MainMovedError if main is not an ancestor of it.
        Merging a proposal already merged at that sha returns the same result (`already_merged`).
        """
        ...


def utcnow() -> datetime:
    return datetime.now(UTC)


async def run_git(
    repo: Path,
    *args: str,
    config: Mapping[str, str] | None = None,
    timeout_s: float = GIT_TIMEOUT_S,
    secrets: Iterable[str] = (),
) -> str:
    """Run git in `repo` (the one way, `mendbot.kernel.git`) and return its stdout; ForgeError if it fails.

    `config` (the GitHub forge's auth header) reaches the one git process through its environment,
    never its argv or a repository's config; `secrets` are masked in the error.
    """
    result = await git(repo, *args, config=config, timeout_s=timeout_s, secrets=secrets, error=ForgeError)
    return result.output.strip()


async def branch_head(repo: Path, branch: str) -> str | None:
    """The commit `refs/heads/<branch>` points at, or None if there is no such branch."""
    return await resolve_commit(repo, f"refs/heads/{branch}")


async def resolve_commit(repo: Path, rev: str) -> str | None:
    """The commit `rev` (a ref, a sha) names in `repo`, or None if there is none."""
    try:
        return await run_git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except ForgeError:
        return None


async def require_branch_at(repo: Path, branch: str, head_sha: str) -> None:
    """Refuse to propose anything but the verified commit: the branch must exist and be at `head_sha`."""
    actual = await branch_head(repo, branch)
    if actual is None:
        raise ForgeError(f"branch {branch!r} does not exist in {repo}; nothing to propose")
    if actual != head_sha:
        raise ForgeError(
            f"branch {branch!r} is at {actual[:12]}, not the verified commit {head_sha[:12]};"
            " refusing to propose a commit that was not verified"
        )


async def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    """Whether `ancestor` is `descendant` or one of its ancestors (both commits must exist in `repo`)."""
    result = await git(repo, "merge-base", "--is-ancestor", ancestor, descendant, check=False)
    if result.code not in (0, 1):
        raise ForgeError(f"git merge-base failed: {result.errors.strip() or result.output.strip()}")
    return result.code == 0


def merged_ref(proposal_id: int) -> str:
    """The ref a merge leaves the merged commit at (see the module docstring)."""
    return f"{MERGED_REF_PREFIX}{proposal_id}"
