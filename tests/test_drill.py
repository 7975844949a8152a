"""Fire drills (bot/improve/drill.py) on the virtual Discord: the stages timed, a broken stage found and
turned into an incident, no model key stopping after the announcement, and a drill's records kept out
of the audit, the baselines and the spend — its proposal never merged, whoever says "ship it"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mendbot.improve.drill import DrillReport, StageTime
from mendbot.kernel.drills import DRILL_KIND, DRILL_USER_ID
from mendbot.kernel.money import usd
from mendbot.observe.audit import AuditService
from mendbot.observe.audit_render import render_text
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_settings, reply_text, running_world
from tests.harness.model_double import ModelDouble
from tests.harness.repo import git
from tests.harness.sql import stored
from tests.test_improve_e2e import BUG, CHECK, FIX, _fix_script
from tests.test_ship_gate import tiny_repo


async def _drill(world: VirtualWorld) -> DrillReport:
    """/drill by alice in #dev, and the drill's report once it ended."""
    started = reply_text(await world.users["alice"].slash(world.dev, "drill"))
    assert "Fire drill #1 started" in started
    await world.quiesce()
    report = await world.bot.services.drill.wait()
    assert report is not None
    await world.quiesce()
    return report


def _posted(world: VirtualWorld) -> list[str]:
    return [m.content for m in bot_messages(world, world.dev)]


async def _audit_text(world: VirtualWorld) -> str:
    """/audit's text for the hour up to the newest stored action (the virtual Discord's clock)."""
    settings = world.bot.services.settings
    newest = stored(settings, "SELECT max(ts) FROM actions")[0][0]
    end = datetime.fromtimestamp(newest + 1, UTC)
    report = await AuditService(settings.database_target, settings.audit, lambda: end).report(
        timedelta(hours=1)
    )
    return "\n".join(render_text(report))


@pytest.mark.cli
async def test_a_drill_reaches_every_stage_in_time_and_its_proposal_never_merges(tmp_path: Path) -> None:
    """The whole loop on the drill's fault with the real CLI and the model double: every stage timed,
    the proposal closed at once, "ship it" on it merges nothing, the spend shown apart."""
    from tests.harness.repo import copy_of_bot

    async with ModelDouble() as model:
        repo = copy_of_bot(tmp_path / "repo")
        settings = make_settings(
            tmp_path / "data",
            repo_dir=repo,
            anthropic_api_key="test-key",
            anthropic_base_url=model.base_url,
            improve={"checks": [CHECK], "max_attempts": 1, "check_timeout_s": 120, "stuck_timeout_s": 1e12},
            observe={"announce_new_fingerprints": False},
        )
        async with running_world(settings, settle_timeout=180) as world:
            model.script(*_fix_script(settings))
            main_before = git(repo, "rev-parse", "main")
            report = await _drill(world)
            assert report.ok, report.render()
            assert all(stage.took_s is not None for stage in report.stages)
            assert [stage.stage for stage in report.stages] == [
                "detect",
                "announce",
                "investigate",
                "fix",
                "prove",
                "propose",
            ]
            (run,) = stored(settings, "SELECT * FROM runs")
            assert (run["state"], run["requester_id"], run["proposal_id"]) == ("rejected", DRILL_USER_ID, 1)
            (proposal,) = stored(settings, "SELECT state FROM proposals")
            assert proposal[0] == "closed"
            (posted,) = [text for text in _posted(world) if "Fire drill #1**" in text]
            assert "every stage in time" in posted and "never merges" in posted and "propose:" in posted
            (message,) = [m for m in bot_messages(world, world.dev) if "fix ready for review" in m.content]
            await world.users["alice"].send(world.dev, "ship it", reply_to=message)
            await world.quiesce()
            assert git(repo, "rev-parse", "main") == main_before
            merged = git(repo, "show", "main:tests/fixtures/buggy_dice.py")
            assert BUG in merged and FIX not in merged
            budget = reply_text(await world.users["alice"].slash(world.dev, "budget"))
            audit = await _audit_text(world)
    assert run["cost_usd"] > 0
    assert "**Spent today:** $0.00" in budget
    assert f"**Fire drills:** {usd(run['cost_usd'])} today" in budget
    assert DRILL_KIND not in audit


async def test_a_drill_with_the_detector_disabled_opens_an_incident_naming_detection(tmp_path: Path) -> None:
    """No incident on the drill's fault within the target: the drill reports detection as the stage
    that failed and opens (and announces) an incident saying so."""
    settings = make_settings(
        tmp_path / "data",
        repo_dir=tiny_repo(tmp_path / "repo"),
        drill={"targets": {"detect_s": 1}},
    )
    async with running_world(settings) as world:
        services = world.bot.services
        services.recorder._subscribers.remove(services.detector.process)  # the detector is broken
        report = await _drill(world)
        texts = _posted(world)
        embeds = [
            (m.embeds[0].title or "") + (m.embeds[0].description or "")
            for m in bot_messages(world, world.dev)
            if m.embeds
        ]
    assert report.missed == "detect" and report.alarm_incident_id is not None
    assert [s.took_s for s in report.stages] == [None] * 6
    (posted,) = [text for text in texts if "Fire drill #1**" in text]
    assert "failed the drill at **detect**" in posted and f"Incident #{report.alarm_incident_id}" in posted
    rows = stored(settings, "SELECT kind, summary FROM incidents")
    assert [(row[0], "detect did not happen within 1 s" in row[1]) for row in rows] == [("task:drill", True)]
    assert any("detect did not happen" in text for text in embeds), embeds


async def test_without_a_model_key_the_drill_stops_after_the_announcement(tmp_path: Path) -> None:
    """No ANTHROPIC_API_KEY: detection and the announcement are timed, then the drill stops, says why,
    opens no incident of its own, autonomy leaves its incident alone; its failing calls and incident
    are absent from /audit."""
    settings = make_settings(
        tmp_path / "data", repo_dir=tiny_repo(tmp_path / "repo"), improve={"autonomy": "investigate"}
    )
    assert settings.anthropic_api_key is None
    async with running_world(settings) as world:
        report = await _drill(world)
        texts = _posted(world)
        audit = await _audit_text(world)
    assert report.stopped and report.missed is None
    assert [s.stage for s in report.stages if s.took_s is not None] == ["detect", "announce"]
    (posted,) = [text for text in texts if "Fire drill #1**" in text]
    assert "Stopped after the announcement: no model key" in posted
    (incident,) = stored(settings, "SELECT kind, state, autonomy FROM incidents")
    # The drill's own, closed by it; no alarm; autonomy left it to the drill (no note, no run).
    assert tuple(incident) == (DRILL_KIND, "resolved", None)
    assert stored(settings, "SELECT count(*) FROM actions WHERE kind = ?", DRILL_KIND)[0][0] >= 5
    assert " 0 failed" in audit and "0 opened" in audit
    assert DRILL_KIND not in audit, audit


async def test_one_drill_at_a_time_and_outsiders_cannot_start_one(tmp_path: Path) -> None:
    """mallory (not allow-listed) and #general get a refusal and no drill; a drill while one runs, or
    while the last one's calls are still in the detector's window, is refused with the reason."""
    settings = make_settings(tmp_path / "data", repo_dir=tiny_repo(tmp_path / "repo"))
    async with running_world(settings) as world:
        refused = reply_text(await world.users["mallory"].slash(world.dev, "drill"))
        elsewhere = reply_text(await world.users["alice"].slash(world.general, "drill"))
        drill = world.bot.services.drill
        assert drill.running is None
        assert await drill.start() == 1  # not settled: still running when the next one is asked for
        during = reply_text(await world.users["alice"].slash(world.dev, "drill"))
        await world.quiesce()
        await drill.wait()
        after = reply_text(await world.users["alice"].slash(world.dev, "drill"))
    assert "Only allow-listed developers" in refused
    assert "dev channel" in elsewhere
    assert "Fire drill #1 is still running" in during or "began less than 600s ago" in during
    assert "Fire drill #1 began less than 600s ago" in after and "Try again in" in after


async def test_the_schedule_starts_a_drill_by_itself_and_posts_its_report(tmp_path: Path) -> None:
    """`drill.every_h`: nothing before the hour is up; after it a drill runs and its report is posted
    in #dev without anyone asking."""
    settings = make_settings(tmp_path / "data", repo_dir=tiny_repo(tmp_path / "repo"), drill={"every_h": 1})
    async with running_world(settings) as world:
        drill = world.bot.services.drill
        await world.env.advance_time(3500)
        assert await drill.wait() is None
        await world.env.advance_time(200)
        await world.quiesce()
        report = await drill.wait()
        texts = _posted(world)
    assert report is not None and report.number == 1 and report.stopped  # no model key here
    assert any("Fire drill #1**" in text for text in texts)


def test_a_drill_report_reads_in_human_durations() -> None:
    """Stage times and targets read as people read durations ("25 min"), never as raw seconds."""
    report = DrillReport(
        number=2,
        stages=[
            StageTime("detect", 60, 12.34),
            StageTime("announce", 90, 75.0),
            StageTime("investigate", 300),
        ],
        missed="investigate",
        why="no run started",
    )
    text = report.render()
    assert "✅ detect: 12.3 s (target 1 min)" in text
    assert "✅ announce: 1 min 15 s (target 1 min 30 s)" in text
    assert "❌ investigate: not within 5 min — " in text
