"""A fire drill's proposal never merges: refused in the merge path itself (bot/deploy/service.py), for
"ship it" from an approver, for a hand-over to the leader and for a resumed merge alike.

The proposal is put in place as in tests/test_ship_gate.py, but on the incident the drill path opens
(its failing calls recorded by the drill command with the failpoint armed), and kept open — as if the
drill had not closed it yet — so that nothing but the merge path stands between it and main.
"""

from __future__ import annotations

from typing import Any

import pytest

from mendbot.improve.runs import Run
from mendbot.kernel.drills import DRILL_KIND, DRILL_POINT
from tests.harness.discord import bot_messages
from tests.harness.repo import git
from tests.test_ship_gate import Gate, gate  # noqa: F401  (the fixture)


async def _drill_proposal(gate: Gate) -> tuple[Run, Any]:  # noqa: F811
    """A verified run on the drill path's incident, awaiting approval, its proposal message in #dev."""
    services = gate.services
    services.drill._failpoints.arm(DRILL_POINT, "raise")
    for _ in range(5):
        services.drill.probe(1)
    services.drill._failpoints.disarm(DRILL_POINT)
    await gate.world.quiesce()
    (incident,) = [i for i in services.incidents.active() if i.kind == DRILL_KIND]
    base, head = gate.branch("mendbot/1-drill")
    runs = services.improve.runs
    run = await runs.create("fix", gate.world.users["mallory"].id, gate.world.dev.id, incident.id, "drill")
    for state in ("observing", "investigating", "planning"):
        await runs.transition(run.id, state, actor="pipeline")
    await runs.transition(run.id, "editing", actor="pipeline", branch="mendbot/1-drill", base_sha=base)
    await runs.transition(run.id, "verifying", actor="pipeline")
    await runs.transition(run.id, "proposing", actor="pipeline", verified_sha=head, head_sha=head)
    proposal = await services.deploy.forge.open_proposal(
        run_id=run.id, branch="mendbot/1-drill", head_sha=head, title="drill", body="b"
    )
    run = await runs.transition(run.id, "awaiting_approval", actor="pipeline", proposal_id=proposal.id)
    await services.improve.reporter.report(run, f"🛠 Run #{run.id} — fix ready for review")
    await gate.world.quiesce()
    return run, bot_messages(gate.world, gate.world.dev)[-1]


@pytest.mark.deploy(required_approvals=1)
async def test_ship_it_on_a_drill_proposal_merges_nothing_and_closes_it(gate: Gate) -> None:  # noqa: F811
    """An approver's "ship it" (and ✅) on a drill's proposal: nothing merged, the run rejected, the
    proposal closed, and the reply says why."""
    run, message = await _drill_proposal(gate)
    main_before = git(gate.repo, "rev-parse", "main")
    await gate.world.users["alice"].send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    await gate.world.users["alice"].react(message, "✅")
    await gate.world.quiesce()
    assert git(gate.repo, "rev-parse", "main") == main_before
    assert await gate.state(run) == "rejected"
    proposal = await gate.services.deploy.forge.get(run.proposal_id or 0)
    assert proposal.state == "closed"
    posted = [m.content for m in bot_messages(gate.world, gate.world.dev)]
    assert any("is a fire drill: its proposal never merges" in text for text in posted), posted
    assert await gate.events(run, "drill_never_merges")


@pytest.mark.deploy(required_approvals=1)
async def test_a_drill_run_handed_to_the_merge_queue_is_refused_there(gate: Gate) -> None:  # noqa: F811
    """A drill's run that reached `merging` some other way (a hand-over, a resume) fails at the merge
    step with the reason; main does not move."""
    run, _message = await _drill_proposal(gate)
    await gate.services.improve.runs.transition(run.id, "merging", actor="user:1")
    main_before = git(gate.repo, "rev-parse", "main")
    text = await gate.services.deploy.ship(run.id, actor="leader")
    assert "fire drill" in text
    assert git(gate.repo, "rev-parse", "main") == main_before
    current = await gate.services.improve.runs.get(run.id)
    assert current.state == "failed" and "never merges" in (current.failure_reason or "")
    assert (await gate.services.deploy.forge.get(run.proposal_id or 0)).state == "closed"
