"""Approvals across a restart and the security form, in-process through the virtual Discord."""

from __future__ import annotations

from pathlib import Path

import discord
import pytest

from mendbot.runtime.app import discover_extensions
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_bot
from tests.harness.model_double import ModelDouble, text, tool_use
from tests.harness.repo import git
from tests.test_improve_e2e import (
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


def _proposal_message(world: VirtualWorld) -> discord.Message:
    (message,) = [m for m in bot_messages(world, world.dev) if "fix ready for review" in m.content]
    return message


async def test_approval_on_a_message_from_before_a_restart_still_merges(tmp_path: Path) -> None:
    """The bot restarts while a proposal awaits approval; ✅ on the old message merges it."""
    async with ModelDouble() as model, improving_world(tmp_path, model) as world:
        settings = world.bot.services.settings
        model.script(*_fix_script(settings))
        await _storm(world)
        await world.users["alice"].react(_announcement(world), "🛠")
        await world.quiesce()
        proposal = _proposal_message(world)
        extensions = [n for n in discover_extensions() if n != "cogs.dice"] + ["tests.fixtures.buggy_dice"]
        await world.restart(await make_bot(settings, extensions))
        await world.users["alice"].react(proposal, "✅")
        await world.quiesce()
        replies = [m.content for m in bot_messages(world, world.dev)]
    assert any("Merged" in r and "deployed" in r for r in replies), replies[-3:]
    assert _rows(settings, "SELECT state FROM proposals")[0][0] == "merged"
    assert FIX in (settings.repo_dir / "tests" / "fixtures" / "buggy_dice.py").read_text()
    assert _rows(settings, "SELECT state FROM runs")[0][0] == "watching"


async def test_protected_change_needs_the_security_form(tmp_path: Path) -> None:
    """A diff touching a protected path is not merged by "ship it"; "ship it security" merges it."""
    async with ModelDouble() as model, improving_world(tmp_path, model, checks=["python -c pass"]) as world:
        settings = world.bot.services.settings
        smoke = settings.data_dir.resolve() / "worktrees" / "run-1" / "bot" / "tools" / "smoke.py"
        first_line = (settings.repo_dir / "bot" / "tools" / "smoke.py").read_text().splitlines()[0]
        model.script(
            _json_turn(DIAGNOSIS),
            _json_turn(PLAN),
            tool_use(
                "Edit",
                {
                    "file_path": str(smoke),
                    "old_string": first_line,
                    "new_string": first_line.replace("Smoke load", "Smoke-load check", 1),
                },
            ),
            text("Touched the smoke check."),
        )
        alice = world.users["alice"]
        started = await alice.slash(world.dev, "fix", description="tidy the smoke check", security=True)
        assert started.response is not None and "run #1" in started.response.content
        await world.quiesce()
        proposal = _proposal_message(world)
        await alice.send(world.dev, "ship it", reply_to=proposal)
        await world.quiesce()
        assert _rows(settings, "SELECT state FROM runs")[0][0] == "awaiting_approval"
        refusal = bot_messages(world, world.dev)[-1].content
        assert "protected paths" in refusal and "ship it security" in refusal
        await alice.send(world.dev, "ship it security", reply_to=proposal)
        await world.quiesce()
    assert _rows(settings, "SELECT state FROM runs")[0][0] == "watching"
    assert git(settings.repo_dir, "log", "-1", "--format=%s").startswith("mendbot run 1")


async def test_hand_edits_in_the_live_checkout_hold_the_merge(tmp_path: Path) -> None:
    """With uncommitted edits in the live checkout nothing is merged or overwritten; the reply says why."""
    async with ModelDouble() as model, improving_world(tmp_path, model) as world:
        settings = world.bot.services.settings
        model.script(*_fix_script(settings))
        await _storm(world)
        await world.users["alice"].react(_announcement(world), "🛠")
        await world.quiesce()
        readme = settings.repo_dir / "README.md"
        readme.write_text(readme.read_text() + "\nA hand edit.\n")
        await world.users["alice"].send(world.dev, "ship it", reply_to=_proposal_message(world))
        await world.quiesce()
        reply = bot_messages(world, world.dev)[-1].content
    assert reply.startswith("⏸ Not merged") and "uncommitted" in reply
    assert readme.read_text().endswith("A hand edit.\n")
    assert _rows(settings, "SELECT state FROM runs")[0][0] == "awaiting_approval"
    assert _rows(settings, "SELECT state FROM proposals")[0][0] == "open"


async def test_rollback_reverts_on_a_branch_and_proposes_it(tmp_path: Path) -> None:
    """`/rollback 1` makes a run that reverts run 1's merge on a branch, verifies it and proposes it."""
    async with ModelDouble() as model, improving_world(tmp_path, model, checks=["python -c pass"]) as world:
        settings = world.bot.services.settings
        model.script(*_fix_script(settings))
        await _storm(world)
        alice = world.users["alice"]
        await alice.react(_announcement(world), "🛠")
        await world.quiesce()
        await alice.send(world.dev, "ship it", reply_to=_proposal_message(world))
        await world.quiesce()
        result = await alice.slash(world.dev, "rollback", run_id=1)
        await world.quiesce()
        assert result.response is not None and "Run #2 will revert run #1" in result.response.content
    runs = _rows(settings, "SELECT id, state, description FROM runs ORDER BY id")
    assert runs[1]["state"] == "awaiting_approval" and runs[1]["description"].startswith("roll back run 1")
    (proposal,) = _rows(settings, "SELECT branch FROM proposals WHERE run_id = 2")
    reverted = git(settings.repo_dir, "show", f"{proposal['branch']}:tests/fixtures/buggy_dice.py")
    assert FIX not in reverted and "return 60 // (sides - 6)" in reverted
