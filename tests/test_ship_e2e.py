"""Ship it, end to end: `mendbot play` running a temp copy of the repository (so the bot really
reloads the code it merges), the real bundled CLI and the model double. The copy's cogs/dice.py
carries a seeded bug: six-sided dice divide by zero."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.harness.model_double import ModelDouble, Turn, text, tool_use
from tests.harness.playground import PlaygroundProcess
from tests.harness.repo import copy_of_bot, git
from tests.test_improve_e2e import DIAGNOSIS, PLAN, _json_turn

pytestmark = pytest.mark.cli

BUG = "return 60 // (sides - 6)  # seeded bug: six-sided dice divide by zero"
FIX = "return 60 // max(1, abs(sides - 6))"
CHECK = "python -m pytest -q -p no:cacheprovider checks/test_dice_scale.py"


def _seeded_copy(tmp_path: Path) -> Path:
    repo = copy_of_bot(tmp_path / "repo")
    dice = repo / "cogs" / "dice.py"
    source = dice.read_text()
    source = source.replace(
        "class Dice(commands.Cog):",
        f"def _scale(sides: int) -> int:\n    {BUG}\n\n\nclass Dice(commands.Cog):",
    )
    source = source.replace(
        "        result = dice.roll(dice.parse(notation))\n",
        "        result = dice.roll(dice.parse(notation))\n        _scale(result.spec.sides)\n",
    )
    dice.write_text(source)
    (repo / "checks").mkdir()
    (repo / "checks" / "test_dice_scale.py").write_text(
        '"""The check a fix must pass."""\n\nfrom cogs.dice import _scale\n\n\n'
        "def test_six_sided_dice_scale() -> None:\n    assert _scale(6) > 0\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "seed a bug in /roll")
    return repo


def _config(tmp_path: Path, repo: Path, watch_s: int = 60) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\nrepo_dir: {repo}\nhealth: {{enabled: false}}\n"
        "observe: {announce_new_fingerprints: false}\n"
        # autonomy off: the bot's own investigation would take the incident before the 🛠 under test
        f'improve: {{checks: ["{CHECK}"], max_attempts: 1, autonomy: "off"}}\n'
        f"deploy: {{watch_window_s: {watch_s}}}\n"
        "playground: {settle_timeout_s: 120}\n"  # a whole agent run on a loaded machine
    )
    return config


def _edit(tmp_path: Path, old: str, new: str, file: str = "cogs/dice.py") -> Turn:
    path = (
        (tmp_path / "data" / "playground").resolve() / "worktrees" / "run-1" / file
    )  # `play` keeps its state there
    return tool_use("Edit", {"file_path": str(path), "old_string": old, "new_string": new})


async def _to_proposal(pg: PlaygroundProcess) -> str:
    """Five failing /roll → announcement → 🛠 by alice → the proposal's message alias."""
    for _ in range(5):
        await pg.send("!roll 2d6")
    await pg.send("#dev")
    await pg.send("wait")
    announcement = await pg.expect(r"\[#dev\] mendbot \((m\d+)\):$")
    await pg.expect(r"Incident #1: the `roll` command")
    await pg.send(f"react {announcement.group(1)} 🛠")
    proposal = await pg.expect(
        r"\[#dev\] mendbot \((m\d+)\): 🛠 Run #1 — fix ready for review \(proposal #1\)", timeout=120
    )
    return proposal.group(1)


def _db(tmp_path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(tmp_path / "data" / "playground" / "mendbot.db") as db:  # the playground's own state
        return db.execute(sql).fetchall()


async def test_whole_loop_from_failure_to_resolved(tmp_path: Path) -> None:
    """Announcement → 🛠 → proposal → mallory's ✅ ignored → alice "ship it" → merged, cog reloaded,
    /roll works → the watch reports resolved and a lesson is stored."""
    repo = _seeded_copy(tmp_path)
    async with ModelDouble() as model:
        model.script(_json_turn(DIAGNOSIS), _json_turn(PLAN), _edit(tmp_path, BUG, FIX), text("Guarded it."))
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url}
        pg = await PlaygroundProcess.start(_config(tmp_path, repo), code=repo, env=env)
        proposal = await _to_proposal(pg)
        await pg.send("@mallory")
        await pg.send(f"react {proposal} ✅")
        await pg.expect(r"mendbot \(m\d+\): mallory isn't allow-listed to approve\.")
        await pg.send("@alice")
        await pg.send(f"reply {proposal} ship it")
        await pg.expect(r"Merged `[0-9a-f]{7}` and deployed", timeout=120)
        await pg.expect(r"✅ cogs\.dice")
        await pg.send("#general")
        await pg.send("!roll 2d6")
        await pg.expect(r"\[#general\] mendbot \(m\d+\): 🎲 `2d6` →")
        await pg.send("wait 61s")
        await pg.expect(r"Run #1: quiet for 1 min after deploy — resolved")
        assert await pg.finish() == 0
    assert FIX in (repo / "cogs" / "dice.py").read_text()
    assert git(repo, "status", "--porcelain") == ""
    assert _db(tmp_path, "SELECT state FROM runs") == [("resolved",)]
    assert ("resolved",) in _db(tmp_path, "SELECT outcome FROM lessons")
    assert _db(tmp_path, "SELECT state FROM incidents") == [("resolved",)]
    refusals = _db(tmp_path, "SELECT event FROM run_events WHERE event LIKE 'approval_%' ORDER BY id")
    assert refusals[0] == ("approval_refused",) and ("approval_ready",) in refusals


REGRESSING_FIX = (
    'if sides == 20:\n        raise ValueError("d20 scale")\n    return 60 // max(1, abs(sides - 6))'
)


async def test_regression_is_reported_and_emergency_rollback_restores_the_old_code(tmp_path: Path) -> None:
    """A merged change that breaks the touched code is reported regressed; `/rollback 1 now` reverts
    and reloads at once, and the old behaviour is back."""
    repo = _seeded_copy(tmp_path)
    before = (repo / "cogs" / "dice.py").read_text()
    async with ModelDouble() as model:
        model.script(
            _json_turn(DIAGNOSIS), _json_turn(PLAN), _edit(tmp_path, BUG, REGRESSING_FIX), text("Done.")
        )
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url}
        pg = await PlaygroundProcess.start(_config(tmp_path, repo, watch_s=3600), code=repo, env=env)
        proposal = await _to_proposal(pg)
        await pg.send(f"reply {proposal} ship it")
        await pg.expect(r"Merged `[0-9a-f]{7}` and deployed", timeout=120)
        await pg.send("#general")
        await pg.send("!roll 2d6")
        await pg.expect(r"🎲 `2d6` →")
        await pg.send("!roll 1d20")
        await pg.expect(r"Run #1 regressed: `ValueError: d20 scale`")
        await pg.expect(r"\[Roll back now\]")
        await pg.send("#dev")
        await pg.send("/rollback 1 now=true")
        await pg.expect(r"Rolled back run #1", timeout=120)
        # Proved like a fix, the other way round: the recorded calls fail again as they did before.
        await pg.expect(
            r"Replay after the rollback: ✅ the recorded calls behave as before the fix", timeout=60
        )
        await pg.send("#general")
        await pg.send("!roll 1d20")
        await pg.expect(r"🎲 `1d20` →")  # the old code is serving again
        await pg.send("!roll 2d6")
        await pg.expect(r"Something went wrong on my side \(ZeroDivisionError\)")  # with its old bug
        assert await pg.finish() == 0
    assert (repo / "cogs" / "dice.py").read_text() == before
    assert _db(tmp_path, "SELECT state FROM runs") == [("rolled_back",)]  # regressed, then rolled back
    assert ("regressed",) in _db(tmp_path, "SELECT outcome FROM lessons")


async def test_a_change_under_bot_drains_and_exits_for_the_supervisor(tmp_path: Path) -> None:
    """A merged change to bot/ is not hot-reloaded: the bot drains and exits with code 26."""
    repo = _seeded_copy(tmp_path)
    async with ModelDouble() as model:
        model.script(
            _json_turn(DIAGNOSIS),
            _json_turn(PLAN),
            _edit(tmp_path, BUG, FIX),
            _edit(tmp_path, '"""Dice notation', '"""Dice notation (checked)', file="bot/features/dice.py"),
            text("Done."),
        )
        env = {
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": model.base_url,
            "MENDBOT_SUPERVISED": "1",
        }
        config = _config(tmp_path, repo, watch_s=3600)  # still watching after the restart
        pg = await PlaygroundProcess.start(config, code=repo, env=env)
        proposal = await _to_proposal(pg)
        await pg.send(f"reply {proposal} ship it")
        await pg.expect(r"restarts to apply an update \(bot/features/dice\.py changed\)", timeout=120)
        assert await pg.finish() == 26
        pg = await PlaygroundProcess.start(config, code=repo, env=env)
        await pg.send("wait")
        await pg.expect(r"Run #1: back after a restart, still watching", timeout=120)
        assert await pg.finish() == 0
    assert "(checked)" in (repo / "bot" / "features" / "dice.py").read_text()
    assert _db(tmp_path, "SELECT state FROM runs") == [("watching",)]  # the watch resumes after the restart
    # The replay against the deployed code ran once, before the restart or after it.
    assert _db(tmp_path, "SELECT count(*) FROM run_events WHERE event = 'proof_live'") == [(1,)]


async def test_a_hand_edit_on_disk_is_reloaded_like_a_deploy(tmp_path: Path) -> None:
    """Editing cogs/dice.py by hand in the running checkout reloads it and says so in #dev."""
    repo = _seeded_copy(tmp_path)
    pg = await PlaygroundProcess.start(_config(tmp_path, repo), code=repo)
    await pg.send("!roll 2d6")
    await pg.expect(r"ZeroDivisionError")
    dice = repo / "cogs" / "dice.py"
    dice.write_text(dice.read_text().replace(BUG, FIX))
    await pg.send("sleep 2")
    await pg.expect(r"Hand edit picked up", timeout=30)
    await pg.expect(r"✅ cogs\.dice")
    await pg.send("#general")
    await pg.send("!roll 2d6")
    await pg.expect(r"🎲 `2d6` →")
    assert await pg.finish() == 0


async def test_kill_9_while_a_deploy_is_held_then_resume_finishes_it(tmp_path: Path) -> None:
    """A stale index.lock holds the fast-forward after the merge was recorded; the bot is killed -9;
    after a restart, with the lock gone, `/run 1 action=resume` fast-forwards and reloads the merged
    commit — merged once, the live checkout at it, /roll fixed, no run left merging."""
    repo = _seeded_copy(tmp_path)
    async with ModelDouble() as model:
        model.script(_json_turn(DIAGNOSIS), _json_turn(PLAN), _edit(tmp_path, BUG, FIX), text("Guarded it."))
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url}
        config = _config(tmp_path, repo, watch_s=3600)
        pg = await PlaygroundProcess.start(config, code=repo, env=env)
        proposal = await _to_proposal(pg)
        lock = repo / ".git" / "index.lock"
        lock.write_text("")
        await pg.send(f"reply {proposal} ship it")
        await pg.expect(r"the live checkout was not updated", timeout=120)
        assert _db(tmp_path, "SELECT state, interrupted_from FROM runs") == [("interrupted", "merging")]
        pg.process.kill()
        await pg.process.wait()
        lock.unlink()
        pg = await PlaygroundProcess.start(config, code=repo, env=env)
        await pg.send("#dev")
        await pg.send("/run 1 action=resume")
        await pg.expect(r"Merged `[0-9a-f]{7}` and deployed", timeout=120)
        await pg.expect(r"✅ cogs\.dice")
        await pg.send("#general")
        await pg.send("!roll 2d6")
        await pg.expect(r"🎲 `2d6` →")
        assert await pg.finish() == 0
    merged = git(repo, "for-each-ref", "--format=%(objectname)", "refs/mendbot/merged/").split()
    assert merged == [git(repo, "rev-parse", "HEAD")]
    assert FIX in (repo / "cogs" / "dice.py").read_text()
    assert _db(tmp_path, "SELECT state FROM runs") == [("watching",)]


async def _ship_and_restart(
    tmp_path: Path, repo: Path, env: dict[str, str], killed_at: str
) -> PlaygroundProcess:
    """Proposal → "ship it" with the failpoint `killed_at` armed: the process kills itself -9 there;
    then a new process (nothing armed) on the same data, ready."""
    config = _config(tmp_path, repo, watch_s=3600)  # an hour: the window is still open after the restart
    pg = await PlaygroundProcess.start(
        config, code=repo, env={**env, "MENDBOT_FAILPOINTS": f"{killed_at}=kill"}
    )
    proposal = await _to_proposal(pg)
    await pg.send(f"reply {proposal} ship it")
    assert await asyncio.wait_for(pg.process.wait(), 120) == -signal.SIGKILL
    return await PlaygroundProcess.start(config, code=repo, env=env)


def _assert_deployed_once(tmp_path: Path, repo: Path) -> None:
    """Merged once, the live checkout at it, one deploy and one resolution recorded, nothing transitional."""
    merged = git(repo, "for-each-ref", "--format=%(objectname)", "refs/mendbot/merged/").split()
    assert merged == [git(repo, "rev-parse", "HEAD")]
    assert FIX in (repo / "cogs" / "dice.py").read_text()
    assert git(repo, "status", "--porcelain") == ""
    assert _db(tmp_path, "SELECT state FROM runs") == [("resolved",)]
    # Transitions, not every event: the live replay's `proof_live` event is written while `deployed`.
    deploys = "SELECT count(*) FROM run_events WHERE event = 'transition' AND state = 'deployed'"
    assert _db(tmp_path, deploys) == [(1,)]
    assert _db(tmp_path, "SELECT count(*) FROM run_events WHERE state = 'resolved'") == [(1,)]


@pytest.mark.parametrize(
    ("killed_at", "after_restart"),
    [
        ("deploy.after_merge_recorded", r"Run #1 was interrupted by a restart while merging; continued it"),
        ("deploy.after_live_update", r"Run #1 was interrupted by a restart while merging; continued it"),
        ("deploy.during_reload", r"Run #1: back after a restart, still watching for [\w ]+ more"),
    ],
)
async def test_kill_9_at_a_deploy_step_then_a_restart_finishes_the_deploy_once(
    tmp_path: Path, killed_at: str, after_restart: str
) -> None:
    """Killed -9 after the merge is recorded, after the live fast-forward, or while reloading: the
    next start continues from that step by itself and says so — merged once, the live checkout at
    the merge, /roll fixed, one deploy, one resolution report, no run left merging or deployed."""
    repo = _seeded_copy(tmp_path)
    async with ModelDouble() as model:
        model.script(_json_turn(DIAGNOSIS), _json_turn(PLAN), _edit(tmp_path, BUG, FIX), text("Guarded it."))
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url}
        pg = await _ship_and_restart(tmp_path, repo, env, killed_at)
        await pg.send("wait")  # the playground prints what the bot said once a line has run
        await pg.expect(after_restart, timeout=120)
        if "continued" in after_restart:
            await pg.expect(r"Merged `[0-9a-f]{7}` and deployed", timeout=60)
        await pg.send("#general")
        await pg.send("!roll 2d6")
        await pg.expect(r"🎲 `2d6` →")
        await pg.send("wait 2h")
        await pg.expect(r"Run #1: quiet for 1 h after deploy — resolved")
        assert await pg.finish() == 0
    assert not any("after deploy — resolved" in line for line in pg.lines)  # one report, not two
    _assert_deployed_once(tmp_path, repo)
    # Killed before the replay against the deployed code: the next start ran it, once.
    assert _db(tmp_path, "SELECT count(*) FROM run_events WHERE event = 'proof_live'") == [(1,)]


async def test_kill_9_during_the_watch_resumes_it_after_a_restart(tmp_path: Path) -> None:
    """Killed -9 right after the deploy: the restarted bot serves the merged code, keeps watching for
    the time left and reports the run resolved — merged once, one report."""
    repo = _seeded_copy(tmp_path)
    async with ModelDouble() as model:
        model.script(_json_turn(DIAGNOSIS), _json_turn(PLAN), _edit(tmp_path, BUG, FIX), text("Guarded it."))
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url}
        # The window is an hour: each process's virtual clock starts at the real time, so the first
        # process's real run time is gone from the window after the restart, whatever it was.
        config = _config(tmp_path, repo, watch_s=3600)
        pg = await PlaygroundProcess.start(config, code=repo, env=env)
        proposal = await _to_proposal(pg)
        await pg.send(f"reply {proposal} ship it")
        await pg.expect(r"Merged `[0-9a-f]{7}` and deployed", timeout=120)
        await pg.expect(r"✅ cogs\.dice")
        pg.process.kill()
        await pg.process.wait()
        pg = await PlaygroundProcess.start(config, code=repo, env=env)
        await pg.send("wait")
        await pg.expect(r"Run #1: back after a restart, still watching for [\w ]+ more", timeout=60)
        await pg.send("#general")
        await pg.send("!roll 2d6")
        await pg.expect(r"🎲 `2d6` →")
        await pg.send("wait 2h")
        await pg.expect(r"Run #1: quiet for 1 h after deploy — resolved")
        assert await pg.finish() == 0
    assert not any("after deploy — resolved" in line for line in pg.lines)
    _assert_deployed_once(tmp_path, repo)
