"""The ship-it gate for a fix without proof: with deploy.require_proof a plain "ship it" is answered
with why the run is unproven, and only "ship it unproven" merges it. The proposal is put in place with
the real services (tests/test_ship_gate.py's Gate) and its proof stored as the pipeline stores it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mendbot.db import proofs
from mendbot.improve.proof.verdict import ProofItem, Side, load_proof
from mendbot.improve.runs import Run
from mendbot.trust.grammar import read_approval
from tests.harness.discord import make_settings, running_world
from tests.test_ship_gate import Gate, tiny_repo

REASON = "nothing reproduced the failure on the base (replay `/greet`: not replayable: a task)"


async def _store_proof(gate: Gate, run: Run, verdict: str, sha: str | None = None) -> None:
    item = ProofItem("replay", "/greet", None, None, "neutral", "not replayable: a task")
    await proofs.insert(
        gate.services.db,
        run_id=run.id,
        stage="verify",
        sha=sha or run.head_sha or "",
        base_sha=run.base_sha or "",
        verdict=verdict,
        reason=REASON
        if verdict != "proven"
        else "the failure reproduces on the base and is gone on the branch",
        items=[item.to_dict()],
        overhead_s=1.5,
        now=0.0,
    )


@pytest.fixture
async def gate(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Gate]:
    marker = request.node.get_closest_marker("deploy")
    deploy = {"watch_hand_edits": False, **(marker.kwargs if marker else {})}
    repo = tiny_repo(tmp_path / "repo")
    settings = make_settings(tmp_path / "data", repo_dir=repo, deploy=deploy)
    async with running_world(settings) as world:
        yield Gate(world, repo)


def test_ship_it_unproven_is_its_own_form() -> None:
    """ "ship it unproven" is a clear approval of its own form; negated or asked, it is not."""
    assert read_approval("ship it unproven").form == "approve_unproven"
    assert read_approval("Ship it UNPROVEN!").form == "approve_unproven"
    assert read_approval("ship it unproven?").verdict == "unclear"
    assert read_approval("don't ship it unproven").verdict == "object"


@pytest.mark.deploy(required_approvals=1)
async def test_plain_ship_it_on_an_unproven_run_says_why_and_ship_it_unproven_merges(gate: Gate) -> None:
    """ "ship it" on an unproven proposal is refused with the reason; "ship it unproven" merges it."""
    run, _, message = await gate.propose()
    run = await gate.services.improve.runs.get(run.id)
    await _store_proof(gate, run, "unproven")
    alice = gate.world.users["alice"]
    sent = await alice.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    (answer,) = gate.replies_to(sent)
    assert "is **unproven**" in answer and "not replayable" in answer and "**ship it unproven**" in answer
    assert await gate.state(run) == "awaiting_approval"
    (refusal,) = await gate.events(run, "approval_refused")
    assert refusal["reason"] == "unproven"
    await alice.send(gate.world.dev, "ship it unproven", reply_to=message)
    await gate.world.quiesce()
    assert await gate.state(run) in ("deployed", "watching")
    assert any("🚀 Merged" in text for text in [m.content for m in gate.world.dev.history()])


@pytest.mark.deploy(required_approvals=1)
async def test_a_proven_run_ships_with_plain_ship_it(gate: Gate) -> None:
    """A run whose proof holds needs nothing more than "ship it"."""
    run, _, message = await gate.propose()
    run = await gate.services.improve.runs.get(run.id)
    await _store_proof(gate, run, "proven")
    await gate.world.users["alice"].send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    assert await gate.state(run) in ("deployed", "watching")


@pytest.mark.deploy(required_approvals=1, require_proof="replay")
async def test_a_tested_run_needs_ship_it_unproven_where_a_replay_is_required(gate: Gate) -> None:
    """A run only its own test shows fixed is tested, not proven: where `require_proof: replay`, plain
    "ship it" is refused saying so."""
    run, _, message = await gate.propose()
    run = await gate.services.improve.runs.get(run.id)
    await _store_proof(gate, run, "tested")
    sent = await gate.world.users["alice"].send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    (answer,) = gate.replies_to(sent)
    assert "it is only tested" in answer and "**ship it unproven**" in answer
    assert await gate.state(run) == "awaiting_approval"


@pytest.mark.deploy(required_approvals=1)
async def test_a_proof_made_on_an_earlier_commit_does_not_prove_the_head(gate: Gate) -> None:
    """A "proven" proof of another commit than the proposal's head: plain "ship it" is refused with
    both commits named; "ship it unproven" is the explicit way to ship it."""
    run, _, message = await gate.propose()
    run = await gate.services.improve.runs.get(run.id)
    earlier = "0123456789abcdef0123456789abcdef01234567"
    await _store_proof(gate, run, "proven", sha=earlier)
    alice = gate.world.users["alice"]
    sent = await alice.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    (answer,) = gate.replies_to(sent)
    assert "is **unproven**" in answer and "`0123456`" in answer and f"`{(run.head_sha or '')[:7]}`" in answer
    assert await gate.state(run) == "awaiting_approval"
    await alice.send(gate.world.dev, "ship it unproven", reply_to=message)
    await gate.world.quiesce()
    assert await gate.state(run) in ("deployed", "watching")


@pytest.mark.deploy(required_approvals=1, require_proof=False)
async def test_without_require_proof_an_unproven_run_ships_with_plain_ship_it(gate: Gate) -> None:
    """deploy.require_proof false: the label stays, the gate does not ask for the explicit form."""
    run, _, message = await gate.propose()
    run = await gate.services.improve.runs.get(run.id)
    await _store_proof(gate, run, "unproven")
    await gate.world.users["alice"].send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    assert await gate.state(run) in ("deployed", "watching")


@pytest.mark.deploy(required_approvals=1)
async def test_proof_survives_a_restart_and_run_shows_it(gate: Gate) -> None:
    """The stored proof is read back after a restart: /run shows it and the gate still holds."""
    run, _, message = await gate.propose()
    run = await gate.services.improve.runs.get(run.id)
    await _store_proof(gate, run, "unproven")
    await gate.restart()
    proof = await load_proof(gate.services.db, run.id)
    assert proof is not None and proof.verdict == "unproven" and proof.items[0].base is None
    result = await gate.world.users["alice"].slash(gate.world.dev, "run", run_id=run.id)
    assert result.response is not None
    assert "🧪 Proof: ⚠️ **unproven**" in result.response.content
    sent = await gate.world.users["alice"].send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    assert any("is **unproven**" in text for text in gate.replies_to(sent))


def test_side_cells_show_mark_text_and_duration() -> None:
    """A table cell reads ❌/✅/— then what happened then how long it took."""
    assert Side(False, "ZeroDivisionError", 0.001).cell() == "❌ ZeroDivisionError (1 ms)"
    assert Side(True, "1 passed", 2.5).cell() == "✅ 1 passed (2.5 s)"
    assert Side(None, "not run").cell() == "— not run"
