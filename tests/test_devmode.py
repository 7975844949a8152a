"""Dev mode: switched on and off by hand (allow-listed), ended by a duration on the bot's clock, kept across a
restart, on by itself while the live checkout has uncommitted hand edits, shown in /budget; requested
runs still work in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mendbot.features.devmode import DevModeState
from mendbot.kernel.settings import Settings
from mendbot.runtime.app import discover_extensions
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import make_bot, make_settings, reply_text, running_world
from tests.harness.model_double import ModelDouble
from tests.harness.repo import git
from tests.harness.sql import sql_value, stored

HOUR = 3600.0


async def _status(world: VirtualWorld, user: str = "alice") -> str:
    return reply_text(await world.users[user].slash(world.dev, "devmode"))


async def _active(world: VirtualWorld) -> DevModeState:
    """DevMode.active() as the bot sees it: on its (virtual) clock, not the test's wall clock."""
    with world.env.time_context():
        return await world.bot.services.devmode.active()


def _live_checkout(path: Path) -> Path:
    """A git checkout on main with two tracked files, standing in for the live checkout."""
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("hello\n")
    (path / "cogs.py").write_text("x = 1\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "start")
    return path


async def test_switched_on_and_off_by_hand(world: VirtualWorld) -> None:
    """/devmode on turns it on until /devmode off; anyone can see the state, with who switched it."""
    alice = world.users["alice"]
    assert await _status(world, "mallory") == "Dev mode is **off**."
    on = reply_text(await alice.slash(world.dev, "devmode", state="on"))
    assert on == "🛠 Dev mode on until `/devmode off`: autonomous runs wait; requested runs still work."
    assert f"Dev mode is **on** — <@{alice.id}> switched dev mode on." in await _status(world, "mallory")
    assert await _active(world) == (True, f"<@{alice.id}> switched dev mode on")
    await world.env.advance_time(30 * 24 * HOUR)
    assert (await _active(world)).active  # no duration: on until switched off
    off = reply_text(await alice.slash(world.dev, "devmode", state="off"))
    assert off == "Dev mode off."
    assert await _active(world) == (False, "dev mode is off")


async def test_a_duration_ends_it_on_the_bot_clock(world: VirtualWorld) -> None:
    """/devmode on 2h is on for two hours of the bot's clock and then off by itself."""
    reply = reply_text(await world.users["alice"].slash(world.dev, "devmode", state="on", duration="2h"))
    assert reply.startswith("🛠 Dev mode on for 2 h, until <t:")
    assert "until 2026-01-01 02:00 UTC" in await _status(world)
    await world.env.advance_time(2 * HOUR - 60)
    assert (await _active(world)).active
    await world.env.advance_time(120)
    assert await _active(world) == (False, "dev mode is off")
    assert await _status(world) == "Dev mode is **off**."


async def test_it_survives_a_restart(settings: Settings) -> None:
    """Dev mode switched on before a restart is still on after it, read from the database."""
    async with running_world(settings) as world:
        await world.users["alice"].slash(world.dev, "devmode", state="on", duration="1d")
        await world.restart(await make_bot(settings, discover_extensions()))
        assert (await _active(world)).active
        assert "Dev mode is **on**" in await _status(world)
        await world.env.advance_time(24 * HOUR + 1)
        assert not (await _active(world)).active
    assert stored(settings, "SELECT active, until - ts FROM dev_mode") == [(1, 24 * HOUR)]


async def test_hand_edits_in_the_live_checkout_turn_it_on(tmp_path: Path) -> None:
    """An uncommitted edit to a tracked file holds dev mode on (named in the reason), even against
    /devmode off; new untracked files do not count; discarding the edit ends it."""
    live = _live_checkout(tmp_path / "live")
    settings = make_settings(tmp_path / "data", repo_dir=live)
    async with running_world(settings) as world:
        (live / "untracked.py").write_text("new = True\n")
        assert not (await _active(world)).active
        (live / "notes.txt").write_text("edited by hand\n")
        state = await _active(world)
        assert state == (True, "the live checkout has uncommitted hand edits (notes.txt)")
        off = reply_text(await world.users["alice"].slash(world.dev, "devmode", state="off"))
        assert off == (
            "Dev mode switched off, but it stays on:"
            " the live checkout has uncommitted hand edits (notes.txt)."
        )
        git(live, "checkout", "--", "notes.txt")
        assert await _active(world) == (False, "dev mode is off")


async def test_both_reasons_are_given(tmp_path: Path) -> None:
    """Switched on by hand and with hand edits, the reason names both; /budget shows it."""
    live = _live_checkout(tmp_path / "live")
    settings = make_settings(tmp_path / "data", repo_dir=live)
    async with running_world(settings) as world:
        alice = world.users["alice"]
        assert reply_text(await alice.slash(world.dev, "budget")).endswith("\n**Dev mode:** off.")
        await alice.slash(world.dev, "devmode", state="on")
        (live / "cogs.py").write_text("x = 2\n")
        reason = f"<@{alice.id}> switched dev mode on; the live checkout has uncommitted hand edits (cogs.py)"
        assert await _active(world) == (True, reason)
        budget = reply_text(await alice.slash(world.dev, "budget"))
        assert budget.endswith(f"\n**Dev mode:** on — {reason}; autonomous runs wait.")
        assert budget.startswith("**Spent today:**")


async def test_refusals_and_mistakes_are_replies(world: VirtualWorld) -> None:
    """Mallory cannot switch it (refusal recorded, nothing changes); bad durations are explained."""
    refused = await world.users["mallory"].slash(world.dev, "devmode", state="on")
    assert reply_text(refused) == "Only allow-listed developers can switch dev mode."
    assert not (await _active(world)).active
    alice = world.users["alice"]
    bad = reply_text(await alice.slash(world.dev, "devmode", state="on", duration="soon"))
    assert "`soon` isn't a duration for dev mode" in bad
    too_long = reply_text(await alice.slash(world.dev, "devmode", state="on", duration="60d"))
    assert "at most 30d" in too_long
    off_for = reply_text(await alice.slash(world.dev, "devmode", state="off", duration="2h"))
    assert off_for == "A duration goes with `/devmode on`, e.g. `/devmode on 2h`."
    assert not (await _active(world)).active
    await world.quiesce()
    refused = await sql_value(
        world.bot.services.db,
        "SELECT COUNT(*) FROM actions WHERE kind = 'access:refused' AND user_id = :user",
        user=world.users["mallory"].id,
    )
    assert refused == 1


@pytest.mark.cli
async def test_requested_runs_still_work_in_dev_mode(tmp_path: Path) -> None:
    """With dev mode on (by hand and by a hand edit), /investigate still runs and reports."""
    from tests.test_improve_e2e import DIAGNOSIS, _json_turn, _rows, improving_world

    async with ModelDouble() as model, improving_world(tmp_path, model) as world:
        alice = world.users["alice"]
        settings = world.bot.services.settings
        await alice.slash(world.dev, "devmode", state="on")
        (settings.repo_dir / "README.md").write_text("edited by hand\n")
        assert (await _active(world)).active
        model.script(_json_turn(DIAGNOSIS))
        started = reply_text(await alice.slash(world.dev, "investigate", description="the roll is odd"))
        await world.quiesce()
    assert "On it: run #1 will investigate" in started
    assert [tuple(row) for row in _rows(settings, "SELECT id, state FROM runs")] == [(1, "reported")]
