"""Parallel runs end to end: the real bundled CLI against the model double, the virtual Discord, real git
and SQLite. Runs with disjoint claims edit at the same time and merge through the queue; a run whose
claim overlaps a live run's waits for it; an edit outside the claim is denied and claim_files extends it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import discord
import pytest

from mendbot.db.connection import open_database
from mendbot.improve.agent.claims import ClaimService
from mendbot.improve.agent.code_agent import ClaudeCodeAgent
from mendbot.improve.runs import RunService
from mendbot.kernel.settings import Settings
from mendbot.tools.playground import VirtualWorld
from mendbot.trust.sandbox import Sandbox
from tests.harness.discord import bot_messages
from tests.harness.model_double import ModelDouble, Turn, text, tool_use
from tests.harness.repo import copy_of_bot, git
from tests.harness.router import MEET, Router
from tests.harness.sql import Row, stored
from tests.test_improve_e2e import BUG, FIX, improving_world

pytestmark = pytest.mark.cli

FIXTURE = "tests/fixtures/buggy_dice.py"
TITLE = "# mendbot\n"
NEW_TITLE = "# mendbot (mends itself)\n"


def _json_turn(value: dict[str, Any]) -> Turn:
    return text(f"Here it is.\n```json\n{json.dumps(value)}\n```")


def _edit(settings: Settings, run_id: int, file: str, old: str, new: str) -> Turn:
    path = settings.data_dir.resolve() / "worktrees" / f"run-{run_id}" / file
    return tool_use("Edit", {"file_path": str(path), "old_string": old, "new_string": new})


def _script(marker: str, files: list[str], *edits: Turn | str) -> list[Turn | str]:
    return [
        _json_turn({"root_cause": f"{marker}: see the files", "files": files, "confidence": "high"}),
        _json_turn(
            {"files": files, "changes": [{"file": f, "change": marker} for f in files], "risk": "low"}
        ),
        *edits,
        text(f"{marker} done."),
    ]


def _rows(settings: Settings, sql: str, *args: Any) -> list[Row]:
    return stored(settings, sql, *args)


def _proposal(world: VirtualWorld, run_id: int) -> discord.Message:
    (message,) = [
        m for m in bot_messages(world, world.dev) if m.content.startswith(f"🛠 Run #{run_id} — fix ready")
    ]
    return message


def _event_ids(settings: Settings, run_id: int, where: str) -> list[int]:
    return [
        row[0] for row in _rows(settings, f"SELECT id FROM run_events WHERE run_id = ? AND {where}", run_id)
    ]


async def _until(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Wait for a state another task reaches (a run waiting cannot be quiesced), within `timeout`."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 - another task's state, read from SQLite
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"gave up waiting for {what}") from None


async def _request(world: VirtualWorld, description: str) -> None:
    """Start a fix run as /fix does (the slash command waits for the whole run; these must overlap)."""
    await world.bot.services.improve.request(
        kind="fix",
        requester_id=world.users["alice"].id,
        channel_id=world.dev.id,
        incident_id=None,
        description=description,
    )


async def _approve(world: VirtualWorld, run_id: int) -> str:
    """alice's "ship it unproven" on the run's proposal, as the Ship cog passes it to the deploy service
    (these runs change files no recorded failure points at: there is nothing to replay, no proof)."""
    (proposal_id,) = _rows(world.bot.services.settings, "SELECT proposal_id FROM runs WHERE id = ?", run_id)[
        0
    ]
    return await world.bot.services.deploy.decide(
        proposal_id=proposal_id,
        user_id=world.users["alice"].id,
        user_name="alice",
        role_ids=[],
        is_bot=False,
        channel_id=world.dev.id,
        parent_channel_id=None,
        form="approve_unproven",
        via="reply",
    )


async def test_two_runs_with_disjoint_claims_edit_in_parallel_and_merge_in_queue_order(
    tmp_path: Path,
) -> None:
    """Concurrency 2: both agents are editing at once, each inside its claim; approved together, they
    merge one at a time in approval order, the second rebased onto the first and re-verified."""
    async with (
        ModelDouble() as model,
        improving_world(tmp_path, model, concurrency=2, checks=["python -c pass"]) as world,
    ):
        settings = world.bot.services.settings
        router = Router()
        router.add("ALPHA", *_script("ALPHA", [FIXTURE], MEET, _edit(settings, 1, FIXTURE, BUG, FIX)))
        router.add(
            "BRAVO", *_script("BRAVO", ["README.md"], MEET, _edit(settings, 2, "README.md", TITLE, NEW_TITLE))
        )
        model.script(*[router] * 12)
        await _request(world, "ALPHA: the dice fixture divides by zero")
        await _request(world, "BRAVO: the readme title says too little")
        await world.quiesce()
        assert router.met.is_set()
        states = _rows(settings, "SELECT id, state, failure_reason FROM runs ORDER BY id")
        assert [tuple(r) for r in states] == [(1, "awaiting_approval", None), (2, "awaiting_approval", None)]
        deploy = world.bot.services.deploy
        # Hold the deploy step so both approvals are in the queue together, run 2's first.
        async with deploy._ship_lock:
            second = asyncio.create_task(_approve(world, 2))
            await _until(lambda: deploy.queue.pending == [2], "run 2 to be queued")
            first = asyncio.create_task(_approve(world, 1))
            await _until(lambda: deploy.queue.pending == [2, 1], "run 1 to be queued behind it")
        answers = await asyncio.gather(second, first)
        await world.quiesce()
        dev = [m.content for m in bot_messages(world, world.dev)]
    repo = settings.repo_dir
    assert all("Merged" in answer for answer in answers), answers
    assert [r[0] for r in _rows(settings, "SELECT state FROM runs ORDER BY id")] == ["watching", "watching"]
    assert FIX in (repo / FIXTURE).read_text() and (repo / "README.md").read_text().startswith(NEW_TITLE)
    # both were editing before either verified: the agents worked at the same time
    editing = [_event_ids(settings, n, "state = 'editing'")[0] for n in (1, 2)]
    verifying = [_event_ids(settings, n, "state = 'verifying'")[0] for n in (1, 2)]
    assert max(editing) < min(verifying)
    claims = {
        n: json.loads(
            _rows(settings, "SELECT detail FROM run_events WHERE run_id = ? AND event = 'claim'", n)[0][0]
        )
        for n in (1, 2)
    }
    assert claims[1]["paths"] == [FIXTURE] and claims[2]["paths"] == ["README.md"]
    # approval order: run 2 merged first; run 1 waited its turn, was rebased onto it and verified again
    merged = {n: _event_ids(settings, n, "event = 'merge_recorded'")[0] for n in (1, 2)}
    assert merged[2] < merged[1]
    assert any(m.startswith("🕒 Run #1 is approved and queued to merge after run(s) #2") for m in dev), dev
    rebased = _rows(settings, "SELECT detail FROM run_events WHERE run_id = 1 AND detail LIKE '%rebased_to%'")
    assert rebased and json.loads(rebased[0][0])["diff_changed"] is False
    (proposal_2,) = _rows(settings, "SELECT proposal_id FROM runs WHERE id = 2")[0]
    run2_merge = git(repo, "rev-parse", f"refs/mendbot/merged/{proposal_2}")
    assert git(repo, "rev-parse", "HEAD~1") == run2_merge  # run 1's commit sits on run 2's merge
    # the rebased head is what was verified again and merged (a failed re-verification fails the run)
    verified = _rows(settings, "SELECT verified_sha FROM runs WHERE id = 1")[0][0]
    assert verified == json.loads(rebased[0][0])["rebased_to"] == git(repo, "rev-parse", "HEAD")


async def test_a_run_whose_claim_overlaps_a_live_run_waits_for_it_and_says_so(tmp_path: Path) -> None:
    """Run 2 plans to change the file run 1 (awaiting approval) holds: it queues, its status says who it
    waits for, and it starts editing only once run 1 is merged."""
    async with (
        ModelDouble() as model,
        improving_world(tmp_path, model, concurrency=2, checks=["python -c pass"]) as world,
    ):
        settings = world.bot.services.settings
        router = Router()
        router.add("ALPHA", *_script("ALPHA", [FIXTURE], _edit(settings, 1, FIXTURE, BUG, FIX)))
        tail = "    await bot.add_cog(BuggyDice())\n"
        router.add(
            "BRAVO",
            *_script("BRAVO", [FIXTURE], _edit(settings, 2, FIXTURE, tail, tail + "# reviewed\n")),
        )
        model.script(*[router] * 12)
        await _request(world, "ALPHA: the dice fixture divides by zero")
        await world.quiesce()
        await _request(world, "BRAVO: note the fixture was reviewed")
        await _until(
            lambda: bool(_event_ids(settings, 2, "event = 'claim_waiting'")), "run 2 to wait for run 1"
        )
        assert (await world.bot.services.improve.runs.get(2)).state == "planning"

        def told() -> bool:
            status = [
                m.content for m in bot_messages(world, world.dev) if m.content.startswith("🤖 **Run #2**")
            ]
            return any(f"⏳ queued: run #1 holds `{FIXTURE}`" in s for s in status)

        await _until(told, "run 2's status to say it is queued behind run 1")
        assert "Merged" in await _approve(world, 1)
        await world.quiesce()
        states = [tuple(r) for r in _rows(settings, "SELECT id, state FROM runs ORDER BY id")]
    assert states == [(1, "watching"), (2, "awaiting_approval")]
    deployed = _event_ids(settings, 1, "state = 'deployed'")[0]
    assert _event_ids(settings, 2, "event = 'claim'")[0] > deployed
    assert _event_ids(settings, 2, "state = 'editing'")[0] > deployed


async def test_an_edit_outside_the_claim_is_denied_until_claim_files_extends_it(tmp_path: Path) -> None:
    """The real CLI: Edit of an unclaimed file is denied (nothing written) with the way to extend;
    the agent calls claim_files, the claim is recorded, and the same Edit then lands."""
    repo = copy_of_bot(tmp_path / "repo")
    db = await open_database(tmp_path / "mendbot.db")
    try:
        runs = RunService(db, lambda: datetime.now(UTC))
        claims = ClaimService(db, runs, protected=("bot/improve/",), extend_wait_s=5, heartbeat_s=30)
        run = await runs.create("fix", 1, None, None, "tidy the readme")
        for state in ("observing", "investigating", "planning"):
            run = await runs.transition(run.id, state, actor="test")

        async def never(holders: dict[int, list[str]], first: bool) -> None:
            raise AssertionError("nothing else holds these files")

        claim, _ = await claims.declare(run, repo, [FIXTURE], on_wait=never)
        readme = repo / "README.md"
        edit = {"file_path": str(readme), "old_string": TITLE, "new_string": NEW_TITLE}
        denied, claim_call, allowed = (
            tool_use("Edit", edit),
            tool_use(
                "mcp__mendbot__claim_files", {"paths": ["README.md"], "why": "the title is part of the fix"}
            ),
            tool_use("Edit", edit),
        )
        async with ModelDouble() as model:
            model.script(denied, claim_call, allowed, text("Retitled."))
            agent = ClaudeCodeAgent(
                home=tmp_path / "home",
                model="claude-sonnet-5-5",
                protected_paths=("bot/improve/",),
                sandbox=Sandbox(),
                git_dir=repo / ".git",
            )
            result = await agent.run(
                prompt="retitle the readme",
                system_prompt="You are a test.",
                worktree=repo,
                read_only=False,
                security=False,
                max_turns=8,
                max_budget_usd=1.0,
                base_url=model.base_url,
                api_key="test-key",
                claim=claim,
            )
            first = model.tool_result(denied.tool_use_id)
            extended = model.tool_result(claim_call.tool_use_id)
            second = model.tool_result(allowed.tool_use_id)
        assert result.ok, result.error
        assert first.is_error and "README.md is outside this run's claim" in first.content
        assert "claim_files" in first.content
        assert not extended.is_error and "Claimed README.md" in extended.content
        assert not second.is_error and readme.read_text().startswith(NEW_TITLE)
        assert await claims.paths_of(run.id) == [FIXTURE, "README.md"]
        assert [d.target for d in result.denials] == [str(readme)]
    finally:
        await db.close()


async def test_claim_files_refuses_a_glob_and_a_path_outside(tmp_path: Path) -> None:
    """The real CLI calling claim_files with `../` and `*`: an error result, and nothing claimed."""
    repo = copy_of_bot(tmp_path / "repo")
    db = await open_database(tmp_path / "mendbot.db")
    try:
        runs = RunService(db, lambda: datetime.now(UTC))
        claims = ClaimService(db, runs, protected=(), extend_wait_s=5, heartbeat_s=30)
        run = await runs.create("fix", 1, None, None, "x")

        async def never(holders: dict[int, list[str]], first: bool) -> None:
            raise AssertionError("nothing else holds these files")

        claim, _ = await claims.declare(run, repo, [FIXTURE], on_wait=never)
        call = tool_use(
            "mcp__mendbot__claim_files", {"paths": ["../elsewhere.py", "cogs/*.py"], "why": "all"}
        )
        async with ModelDouble() as model:
            model.script(call, text("Gave up."))
            agent = ClaudeCodeAgent(
                home=tmp_path / "home",
                model=None,
                protected_paths=(),
                sandbox=Sandbox(),
                git_dir=repo / ".git",
            )
            await agent.run(
                prompt="claim more",
                system_prompt="You are a test.",
                worktree=repo,
                read_only=False,
                security=False,
                max_turns=4,
                max_budget_usd=1.0,
                base_url=model.base_url,
                api_key="test-key",
                claim=claim,
            )
            answer = model.tool_result(call.tool_use_id)
        assert answer.is_error and "outside the worktree" in answer.content and "pattern" in answer.content
        assert await claims.paths_of(run.id) == [FIXTURE]
    finally:
        await db.close()


async def test_a_change_outside_the_claim_made_by_code_the_agent_ran_is_not_proposed(tmp_path: Path) -> None:
    """The guard sees tool calls, not what a script writes: an unclaimed file in the commit fails the
    run (stage `claim`), and nothing is proposed."""
    async with ModelDouble() as model, improving_world(tmp_path, model, checks=["python -c pass"]) as world:
        settings = world.bot.services.settings
        router = Router()
        script = "open('README.md', 'a').write('appended by a script')"
        router.add(
            "ALPHA",
            *_script(
                "ALPHA",
                [FIXTURE],
                _edit(settings, 1, FIXTURE, BUG, FIX),
                tool_use("Bash", {"command": f'python -c "{script}"'}),
            ),
        )
        model.script(*[router] * 8)
        await _request(world, "ALPHA: the dice fixture divides by zero")
        await world.quiesce()
        dev = [m.content for m in bot_messages(world, world.dev)]
    (run,) = _rows(settings, "SELECT state, failure_stage, failure_reason FROM runs")
    assert run["state"] == "failed", run["failure_reason"]
    assert "outside the run's claim (`README.md`)" in run["failure_reason"]
    assert _rows(settings, "SELECT count(*) FROM proposals")[0][0] == 0
    assert any("❌ Run #1 failed" in d and "README.md" in d for d in dev), dev
