"""Runs the bot starts by itself (`improve.autonomy`): the virtual Discord, the real bundled CLI, the model
double and a temp copy of the repository (tests/fixtures/buggy_dice.py carries the seeded bug)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import discord
import pytest

from mendbot.kernel.money import usd
from mendbot.kernel.settings import Settings
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_settings, reply_text, running_world
from tests.harness.model_double import Hold, ModelDouble, tool_use
from tests.harness.repo import copy_of_bot, git
from tests.harness.sql import Row, stored
from tests.test_improve_e2e import BUG, CHECK, DIAGNOSIS, FIX, _fix_script, _json_turn

pytestmark = pytest.mark.cli


def _rows(settings: Settings, sql: str, *args: Any) -> list[Row]:
    return stored(settings, sql, *args)


@asynccontextmanager
async def autonomous_world(
    tmp_path: Path, model: ModelDouble, *, observe: dict[str, Any] | None = None, **improve: Any
) -> AsyncIterator[VirtualWorld]:
    repo = copy_of_bot(tmp_path / "repo")
    settings = make_settings(
        tmp_path / "data",
        repo_dir=repo,
        anthropic_api_key="test-key",
        anthropic_base_url=model.base_url,
        # The default level, spelled out: the harness switches autonomy off for every other test.
        improve={"autonomy": "investigate", "checks": [CHECK], "max_attempts": 1, "check_timeout_s": 120}
        | improve,
        observe={"announce_new_fingerprints": False, **(observe or {})},
    )
    async with running_world(
        settings, extra_extensions=["tests.fixtures.buggy_dice"], without=["cogs.dice"], settle_timeout=120
    ) as world:
        yield world


async def _storm(world: VirtualWorld) -> None:
    """Five failing /roll: the repeat and error-rate rules open one error incident."""
    for _ in range(5):
        await world.users["alice"].send(world.general, "!roll 2d6")
    await world.quiesce()


def _announcement(world: VirtualWorld, incident_id: int = 1) -> discord.Message:
    (message,) = [
        m
        for m in bot_messages(world, world.dev)
        if m.embeds
        and (m.embeds[0].title or "").startswith(("🔥", "🐢", "🆕"))
        and f"Incident #{incident_id}:" in (m.embeds[0].title or "")
    ]
    return message


def _note(world: VirtualWorld, incident_id: int = 1) -> str | None:
    """The "On my own" field of the incident's announcement as Discord shows it now."""
    embed = _announcement(world, incident_id).embeds[0]
    return next((field.value for field in embed.fields if field.name == "On my own"), None)


def _fail(world: VirtualWorld, kind: str, times: int) -> None:
    """Record `times` failures of `kind` at the bot's (virtual) time, as its handlers would."""
    with world.env.time_context():
        for _ in range(times):
            world.bot.services.recorder.record(
                kind, "test", ok=False, duration_ms=1, error=RuntimeError(f"{kind} broke")
            )


async def _mid_run(world: VirtualWorld, hold: Hold) -> None:
    """Wait until the agent's first model request is held, and the announcements are up to date."""
    await asyncio.wait_for(hold.reached.wait(), 90)
    await world.bot.services.incidents.quiesce()


async def test_an_error_incident_gets_an_investigation_and_its_root_cause(tmp_path: Path) -> None:
    """Anomaly → autonomous investigate run → "Investigating — run #1" → announcement edited with the root
    cause; the spend is booked to the autonomous budget and /run and /budget show it."""
    async with ModelDouble() as model, autonomous_world(tmp_path, model) as world:
        hold = Hold(then=_json_turn(DIAGNOSIS))
        model.script(hold)
        # Recorded, not sent: a message sent now would wait for the bot to settle, i.e. for the held run.
        _fail(world, "command:roll", 5)
        await _mid_run(world, hold)
        assert _note(world) == "🔍 Investigating — run #1"
        hold.release.set()
        await world.quiesce()
        settings = world.bot.services.settings
        note = _note(world)
        alice = world.users["alice"]
        shown = reply_text(await alice.slash(world.dev, "run", run_id=1))
        budget = reply_text(await alice.slash(world.dev, "budget"))
    assert note == f"🔍 Run #1 — **Root cause:** {DIAGNOSIS['root_cause']}"
    (run,) = _rows(settings, "SELECT * FROM runs")
    assert (run["origin"], run["kind"], run["state"], run["incident_id"]) == (
        "autonomous",
        "investigate",
        "reported",
        1,
    )
    assert run["cost_usd"] > 0
    assert "**Origin:** autonomous" in shown and "on my own" in shown
    assert f"spent today {usd(run['cost_usd'])} of $5.00" in budget
    assert "**Spent today:** $0.00 of $20.00" in budget  # nothing booked to requested runs
    (stored,) = _rows(settings, "SELECT autonomy FROM incidents")
    assert stored[0] == note  # kept with the incident: a restart does not decide again


async def test_a_failed_autonomous_run_puts_its_reason_in_the_announcement(tmp_path: Path) -> None:
    """When the bot's own investigation fails, the announcement says so, with the reason."""
    async with (
        ModelDouble() as model,
        autonomous_world(tmp_path, model, max_budget_usd_per_run=0.01) as world,
    ):
        # Each turn costs past the run's cap: the gateway refuses it and the run fails on its budget.
        model.script(
            *[
                tool_use("Read", {"file_path": "README.md"}, input_tokens=400_000, output_tokens=20_000)
                for _ in range(4)
            ]
        )
        await _storm(world)
        settings = world.bot.services.settings
        note = _note(world)
    (run,) = _rows(settings, "SELECT state, failure_stage FROM runs")
    assert run[:] == ("failed", "investigating")
    assert note is not None and note.startswith("❌ Run #1 failed while investigating: budget")


async def test_at_propose_a_verified_proposal_waits_for_ship_it(tmp_path: Path) -> None:
    """At `propose` the bot goes on to a verified proposal and asks for "ship it"; nothing merges until an
    allow-listed human says it in the grammar — not a bystander, not a vague "looks good"."""
    async with ModelDouble() as model, autonomous_world(tmp_path, model, autonomy="propose") as world:
        settings = world.bot.services.settings
        model.script(*_fix_script(settings))
        await _storm(world)
        note = _note(world)
        (run,) = _rows(settings, "SELECT * FROM runs")
        assert (run["origin"], run["kind"], run["state"]) == ("autonomous", "fix", "awaiting_approval")
        assert note is not None and "Fix ready, tests pass: proposal #1 (branch `mendbot/1-" in note
        assert f"**Root cause:** {DIAGNOSIS['root_cause']}" in note and "ship it" in note
        (proposal_message,) = [
            m for m in bot_messages(world, world.dev) if "fix ready for review" in m.content
        ]
        main_before = git(settings.repo_dir, "rev-parse", "main")
        await world.users["mallory"].send(world.dev, "ship it", reply_to=proposal_message)
        await world.users["alice"].send(world.dev, "looks good", reply_to=proposal_message)
        await world.quiesce()
        assert git(settings.repo_dir, "rev-parse", "main") == main_before
        assert _rows(settings, "SELECT state FROM runs")[0][0] == "awaiting_approval"
        assert _rows(settings, "SELECT count(*) FROM approvals WHERE withdrawn_at IS NULL")[0][0] == 0
        await world.users["alice"].send(world.dev, "ship it", reply_to=proposal_message)
        await world.quiesce()
    assert _rows(settings, "SELECT state FROM runs")[0][0] in ("deployed", "watching", "resolved")
    merged = git(settings.repo_dir, "show", "main:tests/fixtures/buggy_dice.py")
    assert FIX in merged and BUG not in merged


async def test_dev_mode_switched_on_holds_autonomous_runs(tmp_path: Path) -> None:
    """With /devmode on, an incident starts no run and its announcement says why; 🔍 still starts one."""
    async with ModelDouble() as model, autonomous_world(tmp_path, model) as world:
        alice = world.users["alice"]
        await alice.slash(world.dev, "devmode", state="on")
        await _storm(world)
        settings = world.bot.services.settings
        held = _note(world)
        assert _rows(settings, "SELECT count(*) FROM runs")[0][0] == 0
        model.script(_json_turn(DIAGNOSIS))
        await alice.react(_announcement(world), "🔍")
        await world.quiesce()
        after = _note(world)
    assert held == (
        f"⏸ Not investigating on my own: dev mode is on — <@{alice.id}> switched dev mode on."
        " 🔍/🛠 still work."
    )
    assert after == held  # a requested run does not rewrite what the bot said about its own
    (run,) = _rows(settings, "SELECT origin, state FROM runs")
    assert run[:] == ("requested", "reported")


async def test_hand_edits_in_the_live_checkout_hold_autonomous_runs(tmp_path: Path) -> None:
    """Uncommitted edits to tracked files mean dev mode by itself: no run, and it names the files."""
    async with ModelDouble() as model, autonomous_world(tmp_path, model) as world:
        settings = world.bot.services.settings
        readme = settings.repo_dir / "README.md"
        readme.write_text(readme.read_text() + "\nedited by hand\n")
        await _storm(world)
        note = _note(world)
    assert _rows(settings, "SELECT count(*) FROM runs")[0][0] == 0
    assert model.message_requests == []
    assert note is not None and "the live checkout has uncommitted hand edits (README.md)" in note


async def test_a_storm_of_incidents_starts_one_run_and_a_reopening_none(tmp_path: Path) -> None:
    """Three incidents at once start one run, the other two say why; the first one reopened starts none."""
    observe = {"cooldown_s": 3600}
    async with ModelDouble() as model, autonomous_world(tmp_path, model, observe=observe) as world:
        services = world.bot.services
        hold = Hold(then=_json_turn(DIAGNOSIS))
        model.script(hold)
        for kind in ("command:alpha", "command:beta", "command:gamma"):
            _fail(world, kind, 5)
        await _mid_run(world, hold)
        held = [_note(world, incident_id) for incident_id in (2, 3)]
        hold.release.set()
        await world.quiesce()
        first = _note(world, 1)
        alice = world.users["alice"]
        await alice.slash(world.dev, "incident", incident_id=1, action="resolve")
        await world.env.advance_time(700)  # past the repeat rule's window, within the cooldown
        _fail(world, "command:alpha", 5)
        await world.quiesce()
        reopened = services.incidents.get(1)
        settings = services.settings
    assert [note is not None and "run #1 is already on incident #1" in note for note in held] == [True, True]
    assert first is not None and first.startswith("🔍 Run #1 — **Root cause:**")
    assert reopened.state == "open" and reopened.autonomy == first
    assert _rows(settings, "SELECT count(*) FROM incidents")[0][0] == 3
    assert _rows(settings, "SELECT id, incident_id FROM runs")[0][:] == (1, 1)
    assert _rows(settings, "SELECT count(*) FROM runs")[0][0] == 1


async def test_spent_autonomous_budget_holds_the_run_and_says_so(tmp_path: Path) -> None:
    """Autonomous budget spent: no run, and the announcement says so; a person's 🔍 still works."""
    async with (
        ModelDouble() as model,
        autonomous_world(tmp_path, model, autonomous_daily_budget_usd=0) as world,
    ):
        await _storm(world)
        settings = world.bot.services.settings
        held = _note(world)
        assert _rows(settings, "SELECT count(*) FROM runs")[0][0] == 0
        model.script(_json_turn(DIAGNOSIS))
        await world.users["alice"].react(_announcement(world), "🔍")
        await world.quiesce()
    assert held is not None and held.startswith(
        "⏸ Not investigating on my own: today's budget for runs of my own"
    )
    assert "($0.00 of $0.00)" in held
    (run,) = _rows(settings, "SELECT origin, state FROM runs")
    assert run[:] == ("requested", "reported")


async def test_an_audit_at_propose_starts_a_fix_for_the_highest_impact_item(tmp_path: Path) -> None:
    """/audit at `propose` ends with a run of the bot's own on its highest-impact item; it proposes a fix."""
    async with ModelDouble() as model, autonomous_world(tmp_path, model, autonomy="propose") as world:
        settings = world.bot.services.settings
        model.script(*_fix_script(settings))
        for _ in range(3):  # below every anomaly rule: no incident, only the audit sees it
            await world.users["alice"].send(world.general, "!roll 2d6")
        await world.quiesce()
        assert _rows(settings, "SELECT count(*) FROM incidents")[0][0] == 0
        await world.env.advance_time(60)  # the virtual clock stands still otherwise: the failures are "now"
        result = await world.users["alice"].slash(world.dev, "audit")
        await world.quiesce()
    said = [m.content for m in [result.response, *result.followups] if m is not None and m.content]
    assert said[-1].startswith("🎯 Proposing a fix for it on my own — run #1")
    (run,) = _rows(settings, "SELECT * FROM runs")
    assert (run["origin"], run["kind"], run["state"], run["incident_id"]) == (
        "autonomous",
        "fix",
        "awaiting_approval",
        None,
    )
    target = _rows(settings, "SELECT detail FROM run_events WHERE event = 'target'")
    assert target and "command:roll" in target[0][0]


async def test_nothing_autonomous_below_the_severity_or_for_the_environment(tmp_path: Path) -> None:
    """A notice incident (below `error`) and an environment incident start no run and get no note."""
    async with (
        ModelDouble() as model,
        autonomous_world(tmp_path, model, observe={"announce_new_fingerprints": True}) as world,
    ):
        services = world.bot.services
        await world.users["alice"].send(world.general, "!roll 2d6")
        services.incidents.environment(
            "discord:perm", kind="discord", summary="I can't post in #general.", need="Send Messages"
        )
        await world.quiesce()
        notices = [services.incidents.get(1), services.incidents.get(2)]
        settings = services.settings
    assert [(i.level, i.category) for i in notices] == [("notice", "code"), ("error", "environment")]
    assert [i.autonomy for i in notices] == [None, None]
    assert _rows(settings, "SELECT count(*) FROM runs")[0][0] == 0
    assert model.message_requests == []
