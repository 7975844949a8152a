"""Approval on a follower, merge on the leader (bot/scale/cluster.py), through the real Ship cog and deploy.

One process plays both parts here (the virtual Discord, SQLite): the approval is handed over instead
of merged where it was counted, and the leader's pass over `merging` runs merges it with the usual
guards and posts the outcome in the run's channel — each message answered once.
"""

from __future__ import annotations

import pytest

from mendbot.scale.cluster import Cluster
from tests.harness.discord import bot_messages
from tests.harness.repo import git
from tests.test_ship_gate import Gate, gate  # noqa: F401  (the fixture)

pytestmark = pytest.mark.engines


@pytest.mark.deploy(required_approvals=1)
async def test_an_approval_handed_over_is_merged_by_the_leader_and_answered_once(gate: Gate) -> None:  # noqa: F811
    """✅ on a follower: it answers that the merge is queued and merges nothing; the leader merges
    the verified SHA and posts the outcome once."""
    handed: list[int] = []
    cluster: Cluster = gate.services.cluster

    async def hand_over(run_id: int) -> str:
        handed.append(run_id)
        return await cluster.hand_over(run_id)

    gate.services.deploy.hand_over = hand_over
    run, _proposal, message = await gate.propose()
    main_before = git(gate.repo, "rev-parse", "main")
    await gate.world.users["alice"].react(message, "✅")
    await gate.world.quiesce()
    assert handed == [run.id]
    assert await gate.state(run) == "merging"
    assert git(gate.repo, "rev-parse", "main") == main_before  # not merged where it was approved
    assert "in the merge queue" in gate.last()

    before = len(bot_messages(gate.world, gate.world.dev))
    await cluster.merge_approved()
    await cluster.quiesce()
    await gate.world.quiesce()
    assert await gate.state(run) == "watching"
    assert git(gate.repo, "merge-base", "--is-ancestor", run.verified_sha or "", "main") == ""
    posted = [m.content for m in bot_messages(gate.world, gate.world.dev)[before:]]
    assert len([text for text in posted if "Merged" in text]) == 1, posted

    await cluster.merge_approved()  # a second pass (another notification) merges nothing again
    await cluster.quiesce()
    await gate.world.quiesce()
    assert len(bot_messages(gate.world, gate.world.dev)) == before + len(posted)
