"""Lifecycle hygiene on GitHub: a cancelled or failed run leaves no open pull request behind.

The real services (built as `mendbot run` builds them) with `forge.kind: github`, against the
loopback GitHub double and a bare repository as the remote.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mendbot.db.approvals import Approval, for_proposal
from mendbot.improve.runs import Run
from mendbot.runtime.services import Services, build_services
from tests.harness.approval_sources import DiscordRecord
from tests.harness.discord import make_settings
from tests.harness.github_double import GitHubDouble
from tests.harness.repo import git
from tests.test_forge_local import BRANCH, make_repo

TOKEN = "ghs_lifecycleT0kenForTheDouble000000000"
ALICE = 1
DEV = 100


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[tuple[Services, GitHubDouble]]:
    repo, _ = make_repo(tmp_path / "repo")
    bare = tmp_path / "remote" / "mendbot.git"
    bare.mkdir(parents=True)
    git(bare, "init", "-q", "--bare", "-b", "main")
    git(repo, "push", "-q", str(bare), "main")
    async with GitHubDouble(bare, token=TOKEN) as github:
        settings = make_settings(
            tmp_path / "data",
            repo_dir=repo,
            github_token=TOKEN,
            forge={"kind": "github", "repository": github.repository, "api_url": github.api_url,
                   "remote_url": bare.as_uri()},
            access={"allowed_user_ids": [ALICE]},
            discord={"dev_channel_ids": [DEV]},
        )  # fmt: skip
        built = await build_services(settings, watch_prompts=False)
        discord = DiscordRecord()
        discord.say(5, "ship it")  # alice's approving message, as the approvals below name it
        built.deploy.sources = discord
        try:
            yield built, github
        finally:
            await built.aclose()


async def _awaiting_approval(services: Services) -> Run:
    """A run whose verified branch is proposed as a pull request on the GitHub double."""
    runs = services.improve.runs
    repo = services.settings.repo_dir
    head = git(repo, "rev-parse", BRANCH)
    run = await runs.create("fix", ALICE, None, None, "fix roll")
    for state in ("observing", "investigating", "planning"):
        await runs.transition(run.id, state, actor="pipeline")
    await runs.transition(
        run.id, "editing", actor="pipeline", branch=BRANCH, base_sha=git(repo, "rev-parse", "main")
    )
    await runs.transition(run.id, "verifying", actor="pipeline")
    await runs.transition(run.id, "proposing", actor="pipeline", verified_sha=head, head_sha=head)
    proposal = await services.improve.forge.open_proposal(
        run_id=run.id, branch=BRANCH, head_sha=head, title="Fix roll", body="b"
    )
    return await runs.transition(run.id, "awaiting_approval", actor="pipeline", proposal_id=proposal.id)


async def approval_rows(services: Services, proposal_id: int) -> list[Approval]:
    return await for_proposal(services.db, proposal_id)


def _pull(github: GitHubDouble) -> dict[str, Any]:
    (pull,) = github.pulls.values()
    return pull


async def test_cancelling_a_run_closes_its_pull_request(services: tuple[Services, GitHubDouble]) -> None:
    """/cancel of a run awaiting approval closes its PR on GitHub, with the reason as a comment."""
    built, github = services
    run = await _awaiting_approval(built)
    assert _pull(github)["state"] == "open"
    await built.improve.cancel(run.id, ALICE)
    assert _pull(github)["state"] == "closed"
    assert any("cancelled" in comment["body"] for comment in github.comments)


async def test_a_stuck_run_failed_by_the_watchdog_closes_its_pull_request(
    services: tuple[Services, GitHubDouble],
) -> None:
    """A run failed by the watchdog (here: stuck merging) closes its PR on GitHub."""
    built, github = services
    run = await _awaiting_approval(built)
    run = await built.improve.runs.transition(run.id, "merging", actor="test: a merge that hangs")
    await built.improve.sweep_stuck(now=run.updated_at + built.settings.improve.stuck_timeout_s + 1)
    assert (await built.improve.runs.get(run.id)).state == "failed"
    assert _pull(github)["state"] == "closed"


async def test_a_push_to_the_pull_request_after_approval_merges_nothing_and_asks_again(
    services: tuple[Services, GitHubDouble],
) -> None:
    """Someone pushes to the PR on GitHub: the merge is refused (409), nothing merges, the approvals are
    dismissed and the run waits for approval again — never left merging."""
    built, github = services
    run = await _awaiting_approval(built)
    repo = built.settings.repo_dir
    pushed = git(repo, "commit-tree", f"{BRANCH}^{{tree}}", "-p", BRANCH, "-m", "pushed on GitHub")
    git(repo, "push", "-q", github.bare_repo.as_uri(), f"{pushed}:refs/heads/{BRANCH}")
    assert run.proposal_id is not None
    reply = await built.deploy.decide(
        proposal_id=run.proposal_id, user_id=ALICE, user_name="alice", role_ids=[], is_bot=False,
        channel_id=DEV, parent_channel_id=None, form="approve", via="words", message_id=5,
    )  # fmt: skip
    assert "head moved on the forge" in reply and "nothing was merged" in reply
    assert (await built.improve.runs.get(run.id)).state == "awaiting_approval"
    assert _pull(github)["merged"] is False
    standing = [a for a in await approval_rows(built, run.proposal_id) if a.counts]
    assert standing == []


async def _approve(built: Services, run: Run) -> str:
    assert run.proposal_id is not None
    return await built.deploy.decide(
        proposal_id=run.proposal_id, user_id=ALICE, user_name="alice", role_ids=[], is_bot=False,
        channel_id=DEV, parent_channel_id=None, form="approve", via="words", message_id=5,
    )  # fmt: skip


async def test_a_proposal_made_on_a_worker_is_fetched_judged_and_merged(
    services: tuple[Services, GitHubDouble],
) -> None:
    """A run a worker executed left its branch on GitHub only: the approval fetches it, judges its diff
    (not protected: plain "ship it" counts) and the merge goes through."""
    built, github = services
    run = await _awaiting_approval(built)
    git(built.settings.repo_dir, "branch", "-q", "-D", BRANCH)  # as in a bot whose worker pushed it
    reply = await _approve(built, run)
    assert "Approved by alice" in reply and "protected" not in reply, reply
    assert "Merged" in reply, reply
    assert _pull(github)["merged"] is True


async def test_an_approval_whose_branch_cannot_be_fetched_is_not_counted(
    services: tuple[Services, GitHubDouble],
) -> None:
    """The branch is neither here nor on GitHub any more: the approver is told why nothing counted, and
    the run still waits for approval."""
    built, github = services
    run = await _awaiting_approval(built)
    git(built.settings.repo_dir, "branch", "-q", "-D", BRANCH)
    git(github.bare_repo, "branch", "-q", "-D", BRANCH)
    reply = await _approve(built, run)
    assert reply.startswith("⏸ Not counted: the proposal's branch could not be fetched"), reply
    assert (await built.improve.runs.get(run.id)).state == "awaiting_approval"
    assert run.proposal_id is not None and await approval_rows(built, run.proposal_id) == []


async def test_a_branch_that_cannot_be_fetched_at_merge_time_holds_the_merge(
    services: tuple[Services, GitHubDouble],
) -> None:
    """The approval was counted where the branch was at hand (another process, say), and by the time of
    the merge it cannot be fetched: nothing merges, the run waits for approval again with its pull
    request open — a forge that does not answer is no reason to throw the fix away."""
    built, github = services
    run = await _awaiting_approval(built)
    assert run.proposal_id is not None
    decision = await built.deploy.approvals.decide(
        proposal_id=run.proposal_id, user_id=ALICE, user_name="alice", role_ids=[], is_bot=False,
        channel_id=DEV, parent_channel_id=None, form="approve", via="words", message_id=5,
    )  # fmt: skip
    assert decision.status == "ready"
    git(built.settings.repo_dir, "branch", "-q", "-D", BRANCH)
    git(github.bare_repo, "branch", "-q", "-D", BRANCH)
    reply = await built.deploy.ship(run.id, actor=f"user:{ALICE}")
    assert reply.startswith("⏸ Not merged: the proposal's branch could not be fetched"), reply
    assert (await built.improve.runs.get(run.id)).state == "awaiting_approval"
    assert _pull(github)["state"] == "open" and _pull(github)["merged"] is False
    git(github.bare_repo, "branch", "-q", BRANCH, run.verified_sha or "")  # the forge answers again
    assert "Merged" in await _approve(built, run)
    assert _pull(github)["merged"] is True
