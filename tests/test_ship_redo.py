"""No wedge and one run per target, end to end: the real bundled CLI against the model double, the
virtual Discord, a temp copy of the repository and the OS sandbox for every verification."""

from __future__ import annotations

import asyncio
from pathlib import Path

import discord
import pytest

from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, reply_text
from tests.harness.model_double import ModelDouble
from tests.harness.repo import git
from tests.test_improve_e2e import BUG, FIX, _announcement, _edit, _fix_script, _rows, _storm, improving_world

pytestmark = pytest.mark.cli

MAIN_BUG = "return 60 // (sides - 6)  # the bug, reworded on main"


def _proposal_message(world: VirtualWorld, run_id: int) -> discord.Message:
    (message,) = [
        m for m in bot_messages(world, world.dev) if m.content.startswith(f"🛠 Run #{run_id} — fix ready")
    ]
    return message


def _replies(world: VirtualWorld, message: discord.Message) -> list[str]:
    return [
        m.content
        for m in bot_messages(world, world.dev)
        if m.reference is not None and m.reference.message_id == message.id
    ]


async def test_conflicting_main_then_redo_gives_a_fresh_proposal(tmp_path: Path) -> None:
    """main moves to a conflicting commit: "ship it" says which files and `redo`; `redo` proposes anew."""
    async with ModelDouble() as model, improving_world(tmp_path, model) as world:
        settings = world.bot.services.settings
        repo = settings.repo_dir
        model.script(*_fix_script(settings, 1))
        await _storm(world)
        alice = world.users["alice"]
        await alice.react(_announcement(world), "🛠")
        await world.quiesce()
        first = _proposal_message(world, 1)
        buggy = repo / "tests" / "fixtures" / "buggy_dice.py"
        buggy.write_text(buggy.read_text().replace(BUG, MAIN_BUG))
        git(repo, "commit", "-q", "-am", "someone rewords the bug on main")
        shipped = await alice.send(world.dev, "ship it", reply_to=first)
        await world.quiesce()
        (answer,) = _replies(world, shipped)
        assert "main moved and conflicts in `tests/fixtures/buggy_dice.py`" in answer
        assert "`redo`" in answer
        diagnosis, plan, _, done = _fix_script(settings, 2)
        model.script(diagnosis, plan, _edit(settings, 2, MAIN_BUG, FIX), done)
        redo = await alice.send(world.dev, "redo", reply_to=first)
        await world.quiesce()
        assert any("Run #2 redoes run #1" in r for r in _replies(world, redo)), _replies(world, redo)
        runs = _rows(settings, "SELECT id, state, incident_id, base_sha FROM runs ORDER BY id")
        proposals = _rows(settings, "SELECT run_id, state FROM proposals ORDER BY id")
        second = _proposal_message(world, 2)
        await alice.send(world.dev, "ship it", reply_to=second)
        await world.quiesce()
        final = _rows(settings, "SELECT state FROM runs WHERE id = 2")[0][0]
    assert [(r["id"], r["state"], r["incident_id"]) for r in runs] == [
        (1, "cancelled", 1),  # a conflict leaves the proposal open; redo cancels it
        (2, "awaiting_approval", 1),
    ]
    assert runs[1]["base_sha"] == git(repo, "rev-parse", "HEAD~1")  # cut from the moved main
    assert [tuple(p) for p in proposals] == [(1, "closed"), (2, "open")]
    assert final == "watching"
    assert FIX in buggy.read_text()


async def _proposed_fix(world: VirtualWorld, model: ModelDouble) -> discord.Message:
    """Failing rolls open an incident; alice's 🛠 on it runs a fix to its proposal (run 1)."""
    model.script(*_fix_script(world.bot.services.settings, 1))
    await _storm(world)
    await world.users["alice"].react(_announcement(world), "🛠")
    await world.quiesce()
    return _proposal_message(world, 1)


async def _hand_commit(world: VirtualWorld, change: tuple[str, str], message: str) -> str:
    """A reviewer commits `change` (old, new text of the buggy cog) onto run 1's proposal branch."""
    worktree = world.bot.services.settings.data_dir.resolve() / "worktrees" / "run-1"
    fixture = worktree / "tests" / "fixtures" / "buggy_dice.py"
    old, new = change
    assert old in fixture.read_text()
    fixture.write_text(fixture.read_text().replace(old, new))
    git(worktree, "commit", "-q", "-am", message)
    return git(worktree, "rev-parse", "HEAD")


async def test_hand_commit_on_the_proposal_branch_is_reverified_then_asked_again(tmp_path: Path) -> None:
    """A commit pushed by hand onto the proposal branch: "ship it" merges nothing, the new head is
    re-verified in the sandbox and proven again (the regression test and the incident's replay run
    against it), approval is asked again, and the next "ship it" merges the new head."""
    async with ModelDouble() as model, improving_world(tmp_path, model) as world:
        settings = world.bot.services.settings
        alice = world.users["alice"]
        proposal = await _proposed_fix(world, model)
        hand = await _hand_commit(world, (FIX, FIX + "  # reviewed by hand"), "a reviewer's touch")
        first = await alice.send(world.dev, "ship it", reply_to=proposal)
        await world.quiesce()
        (answer,) = _replies(world, first)
        assert "stale" in answer and "Re-verifying" in answer
        asked = [m.content for m in bot_messages(world, world.dev) if m.content.startswith("🔁 Run #1")]
        assert len(asked) == 1 and f"`{hand[:7]}`" in asked[0] and "needs approval again" in asked[0]
        assert f"Proof of `{hand[:7]}`: ✅ **proven by replay**" in asked[0]
        (run,) = _rows(settings, "SELECT state, verified_sha FROM runs")
        assert tuple(run) == ("awaiting_approval", hand)
        second = await alice.send(world.dev, "ship it", reply_to=proposal)
        await world.quiesce()
        merged = _replies(world, second)
    assert any("Merged" in r and f"<@{alice.id}>" in r for r in merged), merged
    assert _rows(settings, "SELECT state FROM runs")[0][0] == "watching"
    assert "# reviewed by hand" in (settings.repo_dir / "tests" / "fixtures" / "buggy_dice.py").read_text()


async def test_a_hand_commit_that_breaks_the_fix_past_the_checks_is_not_shipped_as_proven(
    tmp_path: Path,
) -> None:
    """The checks only test `scale_for`; a hand commit that breaks `!roll` elsewhere passes them,
    but the incident's replay against the new head still fails: the head is unproven, plain
    "ship it" is refused with the reason, and nothing merges."""
    async with ModelDouble() as model, improving_world(tmp_path, model) as world:
        settings = world.bot.services.settings
        alice = world.users["alice"]
        proposal = await _proposed_fix(world, model)
        broken = ("scale = scale_for(spec.sides)", "scale = scale_for(spec.sides) - scale_for(6)")
        hand = await _hand_commit(world, broken, "a reviewer's 'simplification'")
        await alice.send(world.dev, "ship it", reply_to=proposal)
        await world.quiesce()
        asked = [m.content for m in bot_messages(world, world.dev) if m.content.startswith("🔁 Run #1")]
        again = await alice.send(world.dev, "ship it", reply_to=proposal)
        await world.quiesce()
        (refused,) = _replies(world, again)
        main = git(settings.repo_dir, "rev-parse", "HEAD")
    assert len(asked) == 1 and f"Proof of `{hand[:7]}`: ❌ **unproven**" in asked[0], asked
    assert "is **unproven**" in refused and "ship it unproven" in refused
    assert _rows(settings, "SELECT state FROM runs")[0][0] == "awaiting_approval"
    assert (
        main != hand
        and "scale_for(6)" not in (settings.repo_dir / "tests" / "fixtures" / "buggy_dice.py").read_text()
    )


async def test_two_simultaneous_requests_on_one_incident_make_one_run(tmp_path: Path) -> None:
    """With concurrency 3, two requests for incident 1 at once make one run; the later ask joins it."""
    async with ModelDouble() as model, improving_world(tmp_path, model, concurrency=3) as world:
        settings = world.bot.services.settings
        model.script(*_fix_script(settings, 1))
        await _storm(world)
        improve = world.bot.services.improve
        alice = world.users["alice"]
        both = await asyncio.gather(
            *(
                improve.request_or_join(
                    kind="fix",
                    requester_id=alice.id,
                    channel_id=world.dev.id,
                    incident_id=1,
                    description=f"request {n}",
                )
                for n in (1, 2)
            )
        )
        asked = await alice.slash(world.dev, "fix", description="and once more", incident=1)
        await world.quiesce()
    assert sorted(joined for _, joined in both) == [False, True]
    assert {run.id for run, _ in both} == {1}
    assert "Run #1 is already on it" in reply_text(asked)
    assert [tuple(r) for r in _rows(settings, "SELECT id, incident_id FROM runs")] == [(1, 1)]


async def test_cancelling_a_run_awaiting_approval_closes_its_proposal(tmp_path: Path) -> None:
    """/cancel on a proposal awaiting approval: the run is cancelled and its proposal closed."""
    async with ModelDouble() as model, improving_world(tmp_path, model) as world:
        settings = world.bot.services.settings
        model.script(*_fix_script(settings, 1))
        await _storm(world)
        await world.users["alice"].react(_announcement(world), "🛠")
        await world.quiesce()
        await world.users["alice"].slash(world.dev, "cancel", run_id=1)
        await world.quiesce()
    assert _rows(settings, "SELECT state FROM runs")[0][0] == "cancelled"
    assert _rows(settings, "SELECT state FROM proposals")[0][0] == "closed"
