"""Fire drills survive a crash and a race: `mendbot play` killed -9 while a drill's run investigates,
edits or verifies, then started again — the drill is reported interrupted at its stage, its incident
resolved, its run ended as a drill's (never resumable, never proposed); and drills started at the same
moment, in one process or in processes sharing PostgreSQL, are one drill."""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
from pathlib import Path

import pytest

from mendbot.db import core, drills
from mendbot.kernel.errors import UserError
from tests.harness.discord import bot_messages, make_settings, running_world
from tests.harness.model_double import ModelDouble, text, tool_use
from tests.harness.playground import PlaygroundProcess
from tests.harness.repo import copy_of_bot
from tests.harness.sql import stored
from tests.test_cluster import _process
from tests.test_improve_e2e import BUG, CHECK, DIAGNOSIS, FIX, PLAN, _json_turn
from tests.test_ship_gate import tiny_repo


def _config(tmp_path: Path, repo: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\nrepo_dir: {repo}\nhealth: {{enabled: false}}\n"
        "observe: {announce_new_fingerprints: false}\n"
        f'improve: {{checks: ["{CHECK}"], max_attempts: 1, autonomy: "off", stuck_timeout_s: 1000000}}\n'
        "playground: {settle_timeout_s: 120}\n"
    )
    return config


def _db(tmp_path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(tmp_path / "data" / "playground" / "mendbot.db") as db:
        return db.execute(sql).fetchall()


@pytest.mark.cli
@pytest.mark.parametrize(
    ("killed_in", "stage", "run_state"),
    [
        ("investigating", "investigate", "cancelled"),
        ("editing", "fix", "cancelled"),
        ("verifying", "prove", "cancelled"),
        ("awaiting_approval", "propose", "rejected"),  # its proposal open, not yet closed by the drill
    ],
)
async def test_a_drill_killed_mid_run_is_reported_interrupted_after_the_restart(
    tmp_path: Path, killed_in: str, stage: str, run_state: str
) -> None:
    """kill -9 as the drill's run enters `killed_in`; the next start says in #dev that drill #1 was
    interrupted at `stage`, resolves its incident, ends its run as a drill's (its proposal closed);
    `/run 1 action=resume` is refused, no proposal is posted after the restart or left open, and the
    next /drill is #2."""
    repo = copy_of_bot(tmp_path / "repo")
    fixture = (tmp_path / "data" / "playground").resolve() / "worktrees" / "run-1" / "tests" / "fixtures"
    edit = tool_use(
        "Edit", {"file_path": str(fixture / "buggy_dice.py"), "old_string": BUG, "new_string": FIX}
    )
    async with ModelDouble() as model:
        model.script(_json_turn(DIAGNOSIS), _json_turn(PLAN), edit, text("Guarded it."))
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url}
        config = _config(tmp_path, repo)
        first = await PlaygroundProcess.start(
            config, code=repo, env={**env, "MENDBOT_FAILPOINTS": f"drill.run_{killed_in}=kill"}
        )
        await first.send("#dev")
        await first.send("/drill")
        await first.send("wait 10m")
        assert await asyncio.wait_for(first.process.wait(), 180) == -signal.SIGKILL
        assert _db(tmp_path, "SELECT number, unfinished FROM drills") == [(1, 1)]
        again = await PlaygroundProcess.start(config, code=repo, env=env)
        try:
            await again.send("wait")
            said = await again.expect(
                r"Fire drill #1 was interrupted by a restart at \*\*(\w+)\*\*.*", timeout=60
            )
            assert said.group(1) == stage
            assert f"run #1 is {run_state}" in said.group(0) and "incident #1 is resolved" in said.group(0)
            await again.send("#dev")
            await again.send("/run 1 action=resume")
            await again.expect(r"Run #1 was a fire drill's; a drill is not resumed")
            await again.send("wait 30m")
            await again.send("/drill")
            await again.expect(r"Fire drill #2 started")
        finally:
            await again.finish()
    assert "fix ready for review" not in "\n".join(again.lines)  # never proposed after the restart
    assert "action:resume` continues it" not in "\n".join(again.lines)  # nor offered for a resume
    assert _db(tmp_path, "SELECT number, outcome FROM drills WHERE number = 1") == [(1, "interrupted")]
    assert _db(tmp_path, "SELECT state FROM runs WHERE id = 1") == [(run_state,)]
    assert _db(tmp_path, "SELECT state FROM incidents WHERE id = 1") == [("resolved",)]
    assert _db(tmp_path, "SELECT count(*) FROM proposals WHERE state = 'open'") == [(0,)]


async def test_two_drills_started_at_once_are_one_drill(tmp_path: Path) -> None:
    """Two starts at the same moment (asyncio.gather on the service): one drill, #1, runs and reports;
    the other is told #1 is running; nothing is left behind when the world closes."""
    settings = make_settings(tmp_path / "data", repo_dir=tiny_repo(tmp_path / "repo"))
    async with running_world(settings) as world:
        drill = world.bot.services.drill
        results = await asyncio.gather(drill.start(), drill.start(), return_exceptions=True)
        started = [r for r in results if isinstance(r, int)]
        refused = [r for r in results if isinstance(r, UserError)]
        assert started == [1] and len(refused) == 1, results
        # Still running, or (on a loaded machine it can end first: no model key here) just over.
        assert re.search(r"Fire drill #1 (is still running|began less than)", str(refused[0])), refused
        await world.quiesce()
        report = await drill.wait()
    assert report is not None and report.number == 1


async def test_drills_started_at_once_in_processes_sharing_postgresql_are_one_drill(
    postgres_url: str, tmp_path: Path
) -> None:
    """Two bot processes on one PostgreSQL start a drill at the same moment: exactly one runs, the
    other gets a clear reply naming it."""
    # No bot runs the drill's fault here: it ends when its first stage is missed, after a second.
    quick = {"targets": {"detect_s": 1}}
    async with (
        _process(tmp_path, postgres_url, "a", drill=quick) as a,
        _process(tmp_path, postgres_url, "b", drill=quick) as b,
    ):
        results = await asyncio.gather(a.drill.start(), b.drill.start(), return_exceptions=True)
        started = [r for r in results if isinstance(r, int)]
        refused = [r for r in results if isinstance(r, UserError)]
        assert started == [1] and len(refused) == 1, results
        # Still running, or (on a loaded machine it can end first: no model key here) just over.
        assert re.search(r"Fire drill #1 (is still running|began less than)", str(refused[0])), refused
        winner = a if isinstance(results[0], int) else b
        report = await winner.drill.wait()
    assert report is not None and report.number == 1


async def test_a_drill_another_process_left_is_ended_once_past_its_whole_target(tmp_path: Path) -> None:
    """A drill unfinished by another process (shards 9) is that process's while it may still be
    running — a restart here leaves it, /drill is refused naming it — and, once older than its whole
    target, the next /drill ends it as interrupted, says so in #dev, and starts #2."""
    settings = make_settings(
        tmp_path / "data", repo_dir=tiny_repo(tmp_path / "repo"), drill={"targets": {"propose_s": 60}}
    )
    async with running_world(settings) as world:
        services = world.bot.services
        now = services.clock().timestamp()
        other = await drills.begin(services.db, process="shards 9", now=now - 30)
        assert other is not None and other.number == 1
        services.drill._process = "shards 0"  # this process, on a database shared with shards 9
        assert await services.drill.recover() is None  # not ours, and it may still be going
        with pytest.raises(UserError, match="Fire drill #1 is still running"):
            await services.drill.start()
        await core.execute(services.db, "UPDATE drills SET started_at = :at", at=now - 60 - 601)
        assert await services.drill.start() == 2
        await world.quiesce()
        await services.drill.wait()
        posted = [m.content for m in bot_messages(world, world.dev)]
    assert any("Fire drill #1 was interrupted by its process stopping" in text for text in posted), posted
    ended = stored(settings, "SELECT number, outcome FROM drills ORDER BY number")
    assert [tuple(row) for row in ended] == [(1, "interrupted"), (2, "stopped")]  # #2: no model key
