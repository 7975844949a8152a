"""A deploy a stop interrupted finishes its paperwork after the restart: the proposal's row says
merged, and the "🚀 Merged … deployed" report and the live replay happen exactly once.

The stops are the states a kill -9 leaves (the merge ref written and its row not; the run deployed
and its reload or replay not finished), made with the real forge, git and run service, then the
real bot restarted on the virtual Discord (the kill -9 itself: tests/test_ship_e2e.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mendbot.forge.base import merged_ref
from mendbot.improve.proof.verdict import LiveReplay
from mendbot.improve.runs import Run
from mendbot.runtime.app import discover_extensions
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_bot, reply_text
from tests.harness.model_double import ModelDouble
from tests.harness.repo import git
from tests.test_improve_e2e import FIX, _announcement, _fix_script, _rows, _storm, improving_world

pytestmark = pytest.mark.cli

EXTENSIONS = [n for n in discover_extensions() if n != "cogs.dice"] + ["tests.fixtures.buggy_dice"]


async def _awaiting_approval(world: VirtualWorld, model: ModelDouble) -> tuple[int, int, str]:
    """A verified proposal for the buggy dice: (run id, proposal id, verified sha)."""
    settings = world.bot.services.settings
    model.script(*_fix_script(settings))
    await _storm(world)
    await world.users["alice"].react(_announcement(world), "🛠")
    await world.quiesce()
    [(run_id, proposal_id, sha)] = _rows(settings, "SELECT id, proposal_id, verified_sha FROM runs")
    assert _rows(settings, "SELECT state FROM runs")[0][0] == "awaiting_approval"
    return run_id, proposal_id, sha


async def _restart(world: VirtualWorld) -> None:
    """`world.restart`, the new bot's live replay held until it is attached: simcord settles an
    attaching bot within 5 s, and a replay at start-up (the sandbox, the calls) takes longer."""
    old = world.bot
    new = await make_bot(old.services.settings, EXTENSIONS)
    attached = asyncio.Event()
    deploy = new.services.deploy
    replay = deploy.prove_live
    assert replay is not None

    async def after_attaching(run: Run, sha: str) -> LiveReplay:
        await world.env.external_wait(attached.wait(), reason="the restarted bot is attached")
        return await replay(run, sha)

    deploy.prove_live = after_attaching
    new.services.recorder.without_windows()  # as `world.restart` does
    await world.env.restart_bot(new)
    world.bot = new
    await old.services.aclose()
    await new.sync_app_commands(world.guild.id)
    attached.set()
    await world.env.settle(timeout=120)


def _said(world: VirtualWorld, words: str) -> list[str]:
    return [m.content for m in bot_messages(world, world.dev) if words in m.content]


async def test_a_merge_finished_from_its_recorded_ref_marks_the_proposal_merged(tmp_path: Path) -> None:
    """Stopped after the forge wrote the merge ref and before it wrote the proposal's row: after the
    restart, resuming deploys from the ref and the row says merged (it stayed `open`)."""
    async with ModelDouble() as model, improving_world(tmp_path, model) as world:
        services = world.bot.services
        settings = services.settings
        run_id, proposal_id, sha = await _awaiting_approval(world, model)
        runs = services.deploy.runs
        await runs.transition(run_id, "merging", actor="test")
        git(settings.repo_dir, "update-ref", merged_ref(proposal_id), sha)
        # Held (as a refused fast-forward holds it), so the restarted bot waits for a person: its
        # start-up is not the deploy (a deploy at start-up is tests/test_ship_e2e.py's).
        await runs.transition(run_id, "interrupted", actor="test", detail={"held": "a stale index.lock"})
        await _restart(world)
        resumed = await world.users["alice"].slash(world.dev, "run", run_id=run_id, action="resume")
        await world.quiesce()
    assert "🚀 Merged" in reply_text(resumed)
    assert _rows(settings, "SELECT state, head_sha FROM proposals") == [("merged", sha)]
    assert _rows(settings, "SELECT state FROM runs")[0][0] == "watching"
    assert FIX in (settings.repo_dir / "tests" / "fixtures" / "buggy_dice.py").read_text()


async def test_a_deploy_stopped_during_its_reload_or_replay_is_reported_once(tmp_path: Path) -> None:
    """Stopped once the run was deployed, before its reload and replay ended (no report said):
    after a restart the "🚀 Merged … deployed" report is posted and the replay runs — once, and not
    again after a second restart."""
    async with ModelDouble() as model, improving_world(tmp_path, model) as world:
        services = world.bot.services
        settings = services.settings
        run_id, proposal_id, sha = await _awaiting_approval(world, model)
        run = await services.deploy.runs.transition(run_id, "merging", actor="test")
        result = await services.deploy.forge.merge(proposal_id, sha)
        live = await services.deploy.merger.update_live_checkout(result.merged_sha)
        assert live.ok
        changed = await services.deploy.merger.changed_files(run.base_sha or "", result.merged_sha)
        await services.deploy.runs.transition(
            run_id, "deployed", actor="pipeline", detail={"merged_sha": result.merged_sha, "files": changed}
        )
        await _restart(world)
        await world.quiesce()
        reports = _said(world, "🚀 Merged")
        await _restart(world)
        await world.quiesce()
        again = _said(world, "🚀 Merged")
    assert len(reports) == 1 and f"`{sha[:7]}`" in reports[0] and "finished after a restart" in reports[0]
    assert again == reports
    replays = "SELECT count(*) FROM run_events WHERE event = 'proof_live'"
    assert _rows(settings, replays)[0][0] == 1
    assert _rows(settings, "SELECT state FROM runs")[0][0] == "watching"
    assert git(settings.repo_dir, "rev-parse", "HEAD") == result.merged_sha


async def test_a_deploy_that_finished_is_not_reported_again_after_a_restart(tmp_path: Path) -> None:
    """A deploy whose report was said: a restart resumes its watch and says nothing of a merge."""
    async with ModelDouble() as model, improving_world(tmp_path, model) as world:
        await _awaiting_approval(world, model)
        proposal = next(m for m in bot_messages(world, world.dev) if "fix ready for review" in m.content)
        await world.users["alice"].react(proposal, "✅")
        await world.quiesce()
        assert len(_said(world, "🚀 Merged")) == 1
        await _restart(world)
        await world.quiesce()
        assert len(_said(world, "🚀 Merged")) == 1
