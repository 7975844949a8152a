"""ApprovalService: who may ship which commit, in which channel, and only once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from mendbot.db import approvals as approval_queries
from mendbot.db import open_database, proposals
from mendbot.db.proposals import Proposal
from mendbot.deploy.approval import ApprovalService
from mendbot.deploy.approval_core import ApprovalDecision
from mendbot.deploy.protection import is_protected, touches_protected
from mendbot.improve.runs import Run, RunService
from tests.harness.discord import make_settings
from tests.harness.repo import copy_of_bot, git

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEV, CHAT, THREAD = 100, 200, 300
ALICE, BOB, CAROL, MALLORY, BOT = 1, 2, 3, 66, 999
NAMES = {ALICE: "alice", BOB: "bob", CAROL: "carol", MALLORY: "mallory", BOT: "mendbot"}


def clock() -> datetime:
    return NOW


@dataclass
class World:
    repo: Path
    db: aiosqlite.Connection
    runs: RunService
    service: ApprovalService
    data: Path

    async def propose(
        self, files: dict[str, str] | None = None, *, requester: int = CAROL, branch: str = "mendbot/1-fix"
    ) -> tuple[Run, Proposal]:
        """A run driven to awaiting_approval with a proposal for a branch changing `files`."""
        base = git(self.repo, "rev-parse", "main")
        git(self.repo, "switch", "-q", "-c", branch)
        for name, text in (files or {"cogs/dice.py": "# fixed\n"}).items():
            path = self.repo / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(path.read_text() + text if path.exists() else text)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", "fix")
        head = git(self.repo, "rev-parse", "HEAD")
        git(self.repo, "switch", "-q", "main")
        run = await self.runs.create("fix", requester, DEV, None, "fix the roll command")
        for state in ("observing", "investigating", "planning"):
            await self.runs.transition(run.id, state, actor="pipeline")
        await self.runs.transition(run.id, "editing", actor="pipeline", branch=branch, base_sha=base)
        await self.runs.transition(run.id, "verifying", actor="pipeline")
        await self.runs.transition(run.id, "proposing", actor="pipeline", verified_sha=head, head_sha=head)
        proposal = await proposals.insert(
            self.db, run_id=run.id, forge="local", branch=branch, head_sha=head, title="t", body="b", now=1.0
        )
        run = await self.runs.transition(
            run.id, "awaiting_approval", actor="pipeline", proposal_id=proposal.id
        )
        return run, proposal

    def commit_to(self, branch: str, name: str = "cogs/dice.py") -> str:
        """Add a commit to `branch` (as a person pushing after the proposal); returns the new head."""
        git(self.repo, "switch", "-q", branch)
        path = self.repo / name
        path.write_text(path.read_text() + "# one more thing\n")
        git(self.repo, "commit", "-q", "-am", "more")
        head = git(self.repo, "rev-parse", "HEAD")
        git(self.repo, "switch", "-q", "main")
        return head

    async def decide(
        self, proposal: Proposal, user_id: int, form: str = "approve", **overrides: Any
    ) -> ApprovalDecision:
        values: dict[str, Any] = {
            "proposal_id": proposal.id,
            "user_id": user_id,
            "role_ids": [],
            "is_bot": user_id == BOT,
            "channel_id": DEV,
            "form": form,
            "via": "reaction",
            "user_name": NAMES[user_id],
        }
        values.update(overrides)
        return await self.service.decide(**values)

    async def events(self, run: Run, prefix: str = "approval_") -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (e.event, e.actor, e.detail) for e in await self.runs.events(run.id) if e.event.startswith(prefix)
        ]

    async def state(self, run: Run) -> str:
        return (await self.runs.get(run.id)).state

    def restart(self, **deploy: Any) -> ApprovalService:
        """A new service with other deploy settings, on the same database (as after a restart)."""
        self.service = ApprovalService(self.db, self.runs, _settings(self.data, self.repo, **deploy), clock)
        return self.service


def _settings(data: Path, repo: Path, **deploy: Any) -> Any:
    return make_settings(
        data,
        repo_dir=repo,
        discord={"dev_channel_ids": [DEV]},
        access={"allowed_user_ids": [ALICE, BOB, CAROL]},
        deploy=deploy,
    )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    repo = copy_of_bot(tmp_path / "repo")
    data = tmp_path / "data"
    db = await open_database(data / "mendbot.db")
    runs = RunService(db, clock)
    service = ApprovalService(db, runs, _settings(data, repo), clock)
    yield World(repo, db, runs, service, data)
    await db.close()


async def test_allow_listed_approval_is_ready_and_moves_run_to_merging(world: World) -> None:
    """One allow-listed ✅ in the dev channel is enough by default: ready, and the run is merging."""
    run, proposal = await world.propose()
    decision = await world.decide(proposal, ALICE)
    assert decision.status == "ready"
    assert (decision.approvals, decision.required, decision.sha) == (1, 1, proposal.head_sha)
    # "merging" is said only once the merge-time recheck has passed (DeployService), never here.
    assert decision.message == (
        f"✅ Approved by alice (1/1) — checking approvals before merging `{proposal.head_sha[:7]}`…"
    )
    assert await world.state(run) == "merging"
    ((event, actor, detail),) = await world.events(run)
    assert (event, actor, detail["sha"], detail["via"]) == (
        "approval_ready",
        f"user:{ALICE}",
        proposal.head_sha,
        "reaction",
    )


async def test_bot_cannot_approve(world: World) -> None:
    """A bot's ✅ (the bot's own included) is refused and recorded, and the run keeps waiting."""
    run, proposal = await world.propose()
    decision = await world.decide(proposal, BOT)
    assert decision.status == "refused" and "Bots" in decision.message
    assert await world.state(run) == "awaiting_approval"
    assert [(e, d["reason"]) for e, _, d in await world.events(run)] == [("approval_refused", "bot")]


async def test_not_allow_listed_is_refused_and_recorded(world: World) -> None:
    """mallory's ✅ is refused with a short message, recorded as an event, and stores no approval."""
    run, proposal = await world.propose()
    decision = await world.decide(proposal, MALLORY)
    assert (decision.status, decision.message) == ("refused", "mallory isn't allow-listed to approve.")
    ((event, actor, detail),) = await world.events(run)
    assert (event, actor, detail["reason"], detail["form"]) == (
        "approval_refused",
        f"user:{MALLORY}",
        "not_allowed",
        "approve",
    )
    assert await approval_queries.for_proposal(world.db, proposal.id) == []
    assert await world.state(run) == "awaiting_approval"


async def test_approval_outside_dev_channel_is_refused(world: World) -> None:
    """An approval in a chat channel (or a thread outside dev) does not count."""
    run, proposal = await world.propose()
    decision = await world.decide(proposal, ALICE, channel_id=CHAT)
    assert (decision.status, decision.message) == ("refused", "Approvals only count in the dev channel.")
    decision = await world.decide(proposal, ALICE, channel_id=THREAD, parent_channel_id=CHAT)
    assert decision.status == "refused"
    assert await world.state(run) == "awaiting_approval"
    assert [d["reason"] for _, _, d in await world.events(run)] == ["wrong_channel", "wrong_channel"]


async def test_approval_in_thread_of_dev_channel_counts(world: World) -> None:
    """ "ship it" in the proposal's thread, whose parent is the dev channel, approves."""
    _, proposal = await world.propose()
    decision = await world.decide(proposal, ALICE, channel_id=THREAD, parent_channel_id=DEV, via="thread")
    assert decision.status == "ready"


async def test_run_not_awaiting_approval_says_so(world: World) -> None:
    """A proposal whose run is not awaiting approval (here: still proposing) is not approved."""
    run = await world.runs.create("fix", CAROL, DEV, None, "half way")
    for state in ("observing", "investigating", "planning", "editing", "verifying", "proposing"):
        await world.runs.transition(run.id, state, actor="pipeline")
    proposal = await proposals.insert(
        world.db, run_id=run.id, forge="local", branch="b", head_sha="a" * 40, title="t", body="b", now=1.0
    )
    decision = await world.decide(proposal, ALICE)
    assert decision.status == "not_awaiting"
    assert decision.message == f"Run #{run.id} isn't awaiting approval (it is proposing)."
    assert [e for e, _, _ in await world.events(run)] == ["approval_not_awaiting"]


async def test_merged_proposal_answers_already_merged_and_changes_nothing(world: World) -> None:
    """A second approval of a merging, then merged, run says so and changes nothing."""
    run, proposal = await world.propose()
    assert (await world.decide(proposal, ALICE)).status == "ready"
    again = await world.decide(proposal, BOB)
    assert (again.status, again.message) == ("already_merged", f"Run #{run.id} is already being merged.")
    await world.runs.transition(run.id, "deployed", actor="pipeline")
    later = await world.decide(proposal, ALICE, via="button")
    assert (later.status, later.message) == ("already_merged", f"Run #{run.id} is already merged.")
    assert await world.state(run) == "deployed"
    transitions = [
        e for e in await world.runs.events(run.id) if e.state == "merging" and e.event == "transition"
    ]
    assert len(transitions) == 1
    assert [e for e, _, _ in await world.events(run)] == [
        "approval_ready",
        "approval_already_merged",
        "approval_already_merged",
    ]


async def test_two_required_approvals_record_then_ready(world: World) -> None:
    """With required_approvals 2, the first is recorded (a repeat does not count twice), the second ships."""
    world.restart(required_approvals=2)
    run, proposal = await world.propose()
    first = await world.decide(proposal, ALICE)
    assert (first.status, first.approvals, first.required) == ("recorded", 1, 2)
    assert first.message == f"👍 alice approved `{proposal.head_sha[:7]}` (1/2); 1 more approval needed."
    repeat = await world.decide(proposal, ALICE, via="reply")
    assert (repeat.status, repeat.approvals) == ("recorded", 1)
    assert await world.state(run) == "awaiting_approval"
    second = await world.decide(proposal, BOB)
    assert (second.status, second.approvals, second.required) == ("ready", 2, 2)
    assert second.message.startswith("✅ Approved by bob (2/2)")
    assert await world.state(run) == "merging"


async def test_exclude_requester_refuses_the_requesters_approval(world: World) -> None:
    """With exclude_requester, alice cannot approve the run she asked for; bob can."""
    world.restart(exclude_requester=True)
    run, proposal = await world.propose(requester=ALICE)
    own = await world.decide(proposal, ALICE)
    assert (own.status, own.message) == (
        "refused",
        f"alice requested run #{run.id}, so someone else has to approve it.",
    )
    assert await world.state(run) == "awaiting_approval"
    assert (await world.decide(proposal, BOB)).status == "ready"


async def test_new_commit_makes_earlier_approvals_stale(world: World) -> None:
    """A commit pushed after alice's approval makes it stale; only approvals of the new head count."""
    world.restart(required_approvals=2)
    run, proposal = await world.propose()
    old = proposal.head_sha
    assert (await world.decide(proposal, ALICE)).status == "recorded"
    new = world.commit_to(proposal.branch)
    moved = await world.decide(proposal, BOB)
    assert (moved.status, moved.sha) == ("refused", new)
    assert moved.message == f"Approval for `{old[:7]}` is stale: the proposal is now at `{new[:7]}`."
    assert [a.stale for a in await approval_queries.for_proposal(world.db, proposal.id)] == [True]
    current = await proposals.get(world.db, proposal.id)
    assert current is not None and current.head_sha == new
    unverified = await world.decide(proposal, BOB)
    assert unverified.status == "refused" and "hasn't passed the checks" in unverified.message
    await world.runs.update(run.id, verified_sha=new, head_sha=new)  # re-verified
    seen_old = await world.decide(proposal, BOB, sha=old, via="button")
    assert seen_old.message == f"Approval for `{old[:7]}` is stale: the proposal is now at `{new[:7]}`."
    again = await world.decide(proposal, BOB)
    assert (again.status, again.approvals, again.sha) == ("recorded", 1, new)
    ready = await world.decide(proposal, ALICE)
    assert (ready.status, ready.sha) == ("ready", new)
    reasons = [d["reason"] for e, _, d in await world.events(run) if e == "approval_refused"]
    assert reasons == ["branch_moved", "unverified", "stale"]
    assert [d["new_sha"] for _, _, d in await world.events(run, "approvals_stale")] == [new]


async def test_mark_stale_after_a_rebase_discounts_earlier_approvals(world: World) -> None:
    """mark_stale (the branch was rebased) stops earlier approvals counting toward the new head."""
    world.restart(required_approvals=2)
    run, proposal = await world.propose()
    await world.decide(proposal, ALICE)
    new = world.commit_to(proposal.branch)
    assert await world.service.mark_stale(proposal.id, new) == 1
    await world.runs.update(run.id, verified_sha=new, head_sha=new)
    decision = await world.decide(proposal, BOB)
    assert (decision.status, decision.approvals, decision.sha) == ("recorded", 1, new)


async def test_protected_paths_need_the_security_form(world: World) -> None:
    """A diff touching bot/kernel/settings.py needs "ship it security" / 🔐, protected_required_approvals
    of them."""
    world.restart(protected_required_approvals=2)
    run, proposal = await world.propose({"bot/kernel/settings.py": "# tweak\n"})
    plain = await world.decide(proposal, ALICE, via="reply")
    assert plain.status == "refused"
    assert plain.message == (
        "This change touches protected paths (bot/kernel/settings.py): "
        "approve with **ship it security** or 🔐."
    )
    first = await world.decide(proposal, ALICE, "approve_security")
    assert (first.status, first.approvals, first.required) == ("recorded", 1, 2)
    assert first.protected_paths == ("bot/kernel/settings.py",)
    assert "security approval" in first.message
    assert (await world.decide(proposal, BOB, "approve")).status == "refused"
    second = await world.decide(proposal, BOB, "approve_security")
    assert (second.status, second.approvals) == ("ready", 2)
    assert await world.state(run) == "merging"


async def test_unprotected_change_accepts_the_security_form(world: World) -> None:
    """ "ship it security" on an ordinary change counts as a normal approval."""
    _, proposal = await world.propose()
    assert (await world.decide(proposal, ALICE, "approve_security")).status == "ready"


async def test_reject_moves_run_to_rejected(world: World) -> None:
    """❌ from an allow-listed user rejects the run; later approvals say it is not awaiting approval."""
    run, proposal = await world.propose()
    decision = await world.decide(proposal, ALICE, "reject", via="button")
    assert (decision.status, decision.message) == ("rejected", "Rejected by alice.")
    assert await world.state(run) == "rejected"
    later = await world.decide(proposal, BOB)
    assert (later.status, later.message) == ("not_awaiting", f"Run #{run.id} was already rejected.")
    assert [e for e, _, _ in await world.events(run)] == ["approval_rejected", "approval_not_awaiting"]


async def test_mallory_cannot_reject(world: World) -> None:
    """A reject from someone not allow-listed is refused and the run keeps waiting."""
    run, proposal = await world.propose()
    decision = await world.decide(proposal, MALLORY, "reject")
    assert (decision.status, decision.message) == ("refused", "mallory isn't allow-listed to reject.")
    assert await world.state(run) == "awaiting_approval"


async def test_two_concurrent_approvals_make_one_ready(world: World) -> None:
    """alice and bob approving at the same moment produce exactly one "ready" and one merge transition."""
    run, proposal = await world.propose()
    decisions = await asyncio.gather(world.decide(proposal, ALICE), world.decide(proposal, BOB))
    assert sorted(d.status for d in decisions) == ["already_merged", "ready"]
    merging = [e for e in await world.runs.events(run.id) if e.event == "transition" and e.state == "merging"]
    assert len(merging) == 1


async def test_two_processes_approving_together_make_one_ready(world: World) -> None:
    """Two services that share only the database (no common lock) still produce exactly one "ready"."""
    run, proposal = await world.propose()
    db = await open_database(world.data / "mendbot.db")
    try:
        other = ApprovalService(db, RunService(db, clock), _settings(world.data, world.repo), clock)
        decisions = await asyncio.gather(
            world.decide(proposal, ALICE),
            other.decide(
                proposal_id=proposal.id,
                user_id=BOB,
                role_ids=[],
                is_bot=False,
                channel_id=DEV,
                form="approve",
                via="reaction",
            ),
        )
    finally:
        await db.close()
    assert sorted(d.status for d in decisions) == ["already_merged", "ready"]
    assert await world.state(run) == "merging"


async def test_proposal_messages_survive_a_restart(world: World) -> None:
    """A registered proposal message is found again through a new connection (after a restart)."""
    _, proposal = await world.propose()
    await world.service.register_message(proposal.id, DEV, 4242)
    db = await open_database(world.data / "mendbot.db")
    try:
        service = ApprovalService(db, RunService(db, clock), _settings(world.data, world.repo), clock)
        assert await service.proposal_for_message(4242) == proposal.id
        assert await service.proposal_for_message(4243) is None
        assert await service.messages_for_proposal(proposal.id) == [(4242, DEV)]
    finally:
        await db.close()


async def test_touches_protected_lists_renamed_and_nested_files(world: World) -> None:
    """Moving a protected file away, or changing a file under a protected folder, is touching it."""
    repo = world.repo
    base = git(repo, "rev-parse", "main")
    git(repo, "switch", "-q", "-c", "move")
    git(repo, "mv", "bot/tools/smoke.py", "bot/smoke_moved.py")
    (repo / "prompts" / "agent").mkdir(parents=True, exist_ok=True)
    (repo / "prompts" / "agent" / "new.md").write_text("x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "move")
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "switch", "-q", "main")
    protected = ["bot/tools/smoke.py", "prompts/agent/", "bot/deploy/approval.py"]
    assert await touches_protected(repo, base, head, protected) == [
        "bot/tools/smoke.py",
        "prompts/agent/new.md",
    ]
    assert not is_protected("prompts/agentx.md", protected)
    assert not is_protected("bot/tools/smoke.pyc", protected)
