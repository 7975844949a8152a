"""What every forge offers the pipeline: open a proposal for a verified branch, read it, comment, close.

A forge is where proposals live: `LocalForge` keeps them as branches of the bot's own repository
plus rows in SQLite, `GitHubForge` as pull requests. Both record each proposal in the
`proposals` table, so a restart loses nothing. Every method takes the proposal id of that
table; the merge step (approval issue) adds `merge(proposal_id, expected_head_sha)` to the same
protocol, guarded by the head SHA the approval was bound to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from bot.db.proposals import Proposal, ProposalState
from bot.process import git_environment, run_process

__all__ = [
    "Forge",
    "ForgeError",
    "Proposal",
    "ProposalState",
    "branch_head",
    "require_branch_at",
    "run_git",
    "utcnow",
]

GIT_TIMEOUT_S = 120.0


class ForgeError(Exception):
    """A forge refused or failed an operation; the message says what and why, ready for a report."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status for remote forges, when there was one


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


def utcnow() -> datetime:
    return datetime.now(UTC)


async def run_git(
    repo: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout_s: float = GIT_TIMEOUT_S,
    secrets: Iterable[str] = (),
) -> str:
    """Run git in `repo` and return its stdout; ForgeError (with `secrets` masked) if it fails.

    `env` is added to this process's environment for the one git process only. Git never
    prompts: a missing credential is an error, not a hang.
    """
    result = await run_process(
        ["git", *args],
        cwd=repo,
        env={**git_environment(), **(env or {})},
        timeout_s=timeout_s,
        merge_stderr=False,
    )
    if result.timed_out:
        raise ForgeError(f"git {args[0]} timed out after {timeout_s:.0f}s")
    if result.code != 0:
        message = result.errors.strip() or result.output.strip()
        for secret in secrets:
            if secret:
                message = message.replace(secret, "***")
        raise ForgeError(f"git {args[0]} failed (exit {result.code}): {message}")
    return result.output.strip()


async def branch_head(repo: Path, branch: str) -> str | None:
    """The commit `refs/heads/<branch>` points at, or None if there is no such branch."""
    try:
        return await run_git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
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
