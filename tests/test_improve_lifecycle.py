"""Runs over their life: /cancel and /pause interrupt a running agent, a kill mid-run is recovered
after restart (interrupted, reported, no stray worktree, nothing duplicated) and can be resumed,
and a later run recalls the lesson of an earlier one."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.harness.discord import bot_messages, reply_text
from tests.harness.model_double import Hold, ModelDouble, Turn, text, tool_use
from tests.harness.repo import copy_of_bot, git
from tests.test_improve_e2e import (
    BUG,
    CHECK,
    DIAGNOSIS,
    FIX,
    PLAN,
    _announcement,
    _fix_script,
    _json_turn,
    _rows,
    _storm,
    improving_world,
)

pytestmark = pytest.mark.cli
REPO = Path(__file__).resolve().parent.parent


async def test_cancel_interrupts_a_running_agent(tmp_path: Path) -> None:
    """/cancel stops a run whose agent is mid-session: cancelled, recorded, worktree gone."""
    async with ModelDouble() as model, improving_world(tmp_path, model) as world:
        hold = Hold(then=text("too late"))
        model.script(_json_turn(DIAGNOSIS), _json_turn(PLAN), hold)
        services = world.bot.services
        alice = world.users["alice"]
        await services.improve.request(
            kind="fix",
            requester_id=alice.id,
            channel_id=world.dev.id,
            incident_id=None,
            description="the roll is broken",
        )
        await asyncio.wait_for(hold.reached.wait(), 60)
        assert (services.settings.data_dir / "worktrees" / "run-1").exists()
        result = await alice.slash(world.dev, "cancel", run_id=1)
        await world.quiesce()
        settings = services.settings
    assert "Run #1 is now ⏹️ cancelled" in str(
        result.followups[0].content if result.followups else reply_text(result)
    )
    (run,) = _rows(settings, "SELECT state FROM runs")
    assert run[0] == "cancelled"
    assert not (settings.data_dir / "worktrees" / "run-1").exists()
    assert git(settings.repo_dir, "branch", "--list", "mendbot/*") == ""


async def test_pause_interrupts_and_refuses_new_runs_until_resume(tmp_path: Path) -> None:
    """/pause stops the running run and refuses new ones, saying why; /resume lifts it."""
    async with ModelDouble() as model, improving_world(tmp_path, model) as world:
        hold = Hold(then=text("too late"))
        model.script(hold)
        services = world.bot.services
        alice = world.users["alice"]
        await services.improve.request(
            kind="investigate",
            requester_id=alice.id,
            channel_id=world.dev.id,
            incident_id=None,
            description="look at the roll",
        )
        await asyncio.wait_for(hold.reached.wait(), 60)
        await alice.slash(world.dev, "pause")
        refused = await alice.slash(world.dev, "fix", description="another one")
        assert "paused" in reply_text(refused) and "/resume" in reply_text(refused)
        await alice.slash(world.dev, "resume")
        settings = services.settings
        assert not services.improve.policy.paused
    assert [r[0] for r in _rows(settings, "SELECT state FROM runs")] == ["cancelled"]


async def test_lessons_are_recalled_into_the_next_run_and_named(tmp_path: Path) -> None:
    """A second run on the same failure gets the first run's lesson in its evidence and its report."""
    async with ModelDouble() as model, improving_world(tmp_path, model) as world:
        settings = world.bot.services.settings
        model.script(*_fix_script(settings, 1), _json_turn(DIAGNOSIS))
        await _storm(world)
        await world.users["alice"].react(_announcement(world), "🛠")
        await world.quiesce()
        # One run per incident: run 1 must be over before another run takes the incident up.
        await world.users["alice"].slash(world.dev, "cancel", run_id=1)
        result = await world.users["alice"].slash(world.dev, "investigate", description="again?", incident=1)
        assert "run #2" in reply_text(result)
        await world.quiesce()
        reports = [m.content for m in bot_messages(world, world.dev)]
    investigate_prompt = str(model.message_requests[-1].json["messages"])
    assert "scale_for divides" in investigate_prompt  # run 1's root cause, recalled as a lesson
    assert any(r.startswith("🔍 Run #2") and "run 1 (proposed)" in r for r in reports)


def _config(tmp_path: Path, repo: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\nrepo_dir: {repo}\nhealth: {{enabled: false}}\n"
        f"observe: {{announce_new_fingerprints: false}}\n"
        # autonomy off: the bot's own investigation would take the incident before the 🛠 under test
        f'improve: {{checks: ["{CHECK}"], max_attempts: 1, autonomy: "off"}}\n'
    )
    return config


async def _play(
    config: Path, model: ModelDouble, stdin: bytes, *, keep_open: bool
) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "MENDBOT_CONFIG"}
    env |= {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url, "PYTHONPATH": str(REPO)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mendbot",
        "--config",
        str(config),
        "play",
        cwd=config.parent,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdin is not None
    process.stdin.write(stdin)
    await process.stdin.drain()
    if not keep_open:
        process.stdin.close()
    return process


async def test_killed_mid_run_is_interrupted_reported_and_resumable(tmp_path: Path) -> None:
    """kill -9 while the agent edits; after restart the run is interrupted and reported, the worktree is
    gone, nothing is duplicated; `/run 1 action:resume` finishes it with one proposal."""
    repo = copy_of_bot(tmp_path / "repo")
    config = _config(tmp_path, repo)
    data = tmp_path / "data" / "playground"  # mendbot play keeps its own state there
    async with ModelDouble() as model:
        hold = Hold(then=text("never answered"))
        model.script(_json_turn(DIAGNOSIS), _json_turn(PLAN), hold)
        first = await _play(config, model, b"#dev\n/fix the roll is broken\nsleep 120\n", keep_open=True)
        await asyncio.wait_for(hold.reached.wait(), 90)
        assert (data / "worktrees" / "run-1").exists()
        first.kill()
        await first.wait()

        second = await _play(config, model, b"#dev\n/runs\nwait\n", keep_open=False)
        out, _ = await asyncio.wait_for(second.communicate(), 90)
        shown = out.decode()
        assert second.returncode == 0, shown
        assert "Run #1 was interrupted by a restart while editing" in shown
        assert "**#1** fix ⏸️ interrupted" in shown
        assert not (data / "worktrees" / "run-1").exists()

        model.script(_json_turn(DIAGNOSIS), _json_turn(PLAN), _edit_for(data, BUG, FIX), text("Fixed."))
        third = await _play(config, model, b"#dev\n/run 1 action=resume\nwait\n", keep_open=False)
        out, _ = await asyncio.wait_for(third.communicate(), 120)
        shown = out.decode()
        assert third.returncode == 0, shown
        assert "Resuming run #1" in shown
    with sqlite3.connect(data / "mendbot.db") as db:
        runs = db.execute("SELECT id, state FROM runs").fetchall()
        proposals = db.execute("SELECT run_id FROM proposals").fetchall()
    assert runs == [(1, "awaiting_approval")]
    assert proposals == [(1,)]
    assert len(git(repo, "branch", "--list", "mendbot/*").splitlines()) == 1


def _edit_for(data: Path, old: str, new: str) -> Turn:
    path = data.resolve() / "worktrees" / "run-1" / "tests" / "fixtures" / "buggy_dice.py"
    return tool_use("Edit", {"file_path": str(path), "old_string": old, "new_string": new})
