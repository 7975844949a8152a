"""Proof of fix, end to end: the real bundled CLI, the model double, the virtual Discord, a temp copy of
the repository, and the regression tests and incident replays run in the sandbox on the base and on the
branch. tests/fixtures/buggy_dice.py carries a seeded crash, tests/fixtures/slow_report.py a seeded
latency fault."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest

from mendbot.kernel.settings import Settings
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_settings, running_world
from tests.harness.model_double import ModelDouble, Turn, text, tool_use
from tests.harness.repo import copy_of_bot
from tests.harness.sql import Row, stored
from tests.test_improve_e2e import BUG, DIAGNOSIS, FIX, _announcement, _json_turn, _storm
from tests.test_improve_e2e import PLAN as FIX_PLAN

pytestmark = pytest.mark.cli

CHECK = "python -m pytest -q -p no:cacheprovider tests/fixtures/check_buggy_dice.py"
REPRODUCING_TEST = (
    '"""Six-sided dice must not crash the roll."""\n\n'
    "from tests.fixtures.buggy_dice import scale_for\n\n\n"
    "def test_six_sided_scale() -> None:\n"
    '    """scale_for(6) used to divide by zero."""\n'
    "    assert scale_for(6) > 0\n"
)
BASE_PASSING_TEST = REPRODUCING_TEST.replace("scale_for(6)", "scale_for(20)")
ROLL_COMMAND = (
    '    @commands.hybrid_command(name="roll", description="Roll dice (with a bug).")'
    "  # type: ignore[arg-type]\n"
    '    async def roll(self, ctx: commands.Context[Any], notation: str = "1d6") -> None:\n'
    "        spec = dice.parse(notation)\n"
    "        scale = scale_for(spec.sides)\n"
    '        await ctx.send(f"🎲 `{spec}` → {dice.roll(spec).total * scale // scale}")\n'
)
SLOW_FILE = "tests/fixtures/slow_report.py"
SLOW = "    time.sleep(0.4)  # the seeded latency fault: a blocking wait on every report\n"


# The run's claim (mendbot.improve.agent.claims) names the regression test it writes as well as the fix.
PLAN = {**FIX_PLAN, "files": [*cast(list[str], FIX_PLAN["files"]), "tests/test_dice_scale_regression.py"]}


def _worktree(settings: Settings, run_id: int = 1) -> Path:
    return settings.data_dir.resolve() / "worktrees" / f"run-{run_id}"


def _edit(settings: Settings, file: str, old: str, new: str) -> Turn:
    path = _worktree(settings) / file
    return tool_use("Edit", {"file_path": str(path), "old_string": old, "new_string": new})


def _write(settings: Settings, file: str, content: str) -> Turn:
    return tool_use("Write", {"file_path": str(_worktree(settings) / file), "content": content})


def _rows(settings: Settings, sql: str, *args: Any) -> list[Row]:
    return stored(settings, sql, *args)


def _proof(settings: Settings, stage: str = "verify") -> dict[str, Any]:
    (row,) = _rows(settings, "SELECT * FROM proofs WHERE stage = ? ORDER BY id DESC LIMIT 1", stage)
    return {**dict(row), "items": json.loads(row["items"])}


def _prompts_with(model: ModelDouble, needle: str) -> list[str]:
    found = []
    for request in model.message_requests:
        body = json.dumps(request.json["messages"], ensure_ascii=False)
        if needle in body:
            found.append(body)
    return found


@asynccontextmanager
async def proving_world(
    tmp_path: Path,
    model: ModelDouble,
    *,
    checks: list[str],
    extension: str,
    without: list[str],
    **deploy: Any,
) -> AsyncIterator[VirtualWorld]:
    repo = copy_of_bot(tmp_path / "repo")
    settings = make_settings(
        tmp_path / "data",
        repo_dir=repo,
        anthropic_api_key="test-key",
        anthropic_base_url=model.base_url,
        # settle() fast-forwards the virtual clock through timers due within its timeout, the watchdog's
        # sweep among them: a run waiting on the sandbox long enough would be swept as stuck.
        # A silent command (the fix that deletes it) is "no answer" once the bot is done with it; a wait
        # the launcher cannot end early is 5 s, not the default 15.
        improve={
            "checks": checks,
            "max_attempts": 2,
            "check_timeout_s": 120,
            "stuck_timeout_s": 1e12,
            "replay_answer_s": 5,
        },
        observe={"announce_new_fingerprints": False},
        deploy={"watch_hand_edits": False, **deploy},
    )
    async with running_world(
        settings, extra_extensions=[extension], without=without, settle_timeout=180
    ) as world:
        yield world


def _dice_world(tmp_path: Path, model: ModelDouble, checks: list[str] | None = None, **deploy: Any) -> Any:
    return proving_world(
        tmp_path,
        model,
        checks=[CHECK] if checks is None else checks,
        extension="tests.fixtures.buggy_dice",
        without=["cogs.dice"],
        **deploy,
    )


async def test_crash_fix_with_a_reproducing_test_is_proven_by_test_and_replay(tmp_path: Path) -> None:
    """Seeded crash → fix plus a reproducing test → the proposal shows base ❌ / branch ✅ for both; once
    shipped, the replay runs against the deployed code before the watch."""
    async with ModelDouble() as model, _dice_world(tmp_path, model) as world:
        settings = world.bot.services.settings
        model.script(
            _json_turn(DIAGNOSIS),
            _json_turn(PLAN),
            _edit(settings, "tests/fixtures/buggy_dice.py", BUG, FIX),
            _write(settings, "tests/test_dice_scale_regression.py", REPRODUCING_TEST),
            text("Guarded the divisor and added a regression test."),
        )
        await _storm(world)
        await world.users["alice"].react(_announcement(world), "🛠")
        await world.quiesce()
        (run,) = _rows(settings, "SELECT state, failure_reason FROM runs")
        assert run["state"] == "awaiting_approval", run["failure_reason"]
        message = next(m for m in bot_messages(world, world.dev) if "ready for review" in m.content)
        report = message.content
        proof = _proof(settings)
        await world.users["alice"].send(world.dev, "ship it", reply_to=message)
        await world.quiesce()
        deployed = next(m.content for m in bot_messages(world, world.dev) if "🚀 Merged" in m.content)
    assert "🧪 Replay against the live code: ✅" in deployed
    live = _proof(settings, "deploy")
    assert live["verdict"] == "proven" and live["items"][0]["branch"]["ok"] is True
    assert proof["verdict"] == "proven", proof
    test, replay = proof["items"][0], proof["items"][1]
    assert test["kind"] == "test" and test["label"] == "tests/test_dice_scale_regression.py"
    assert (test["base"]["ok"], test["branch"]["ok"], test["verdict"]) == (False, True, "proves")
    assert replay["kind"] == "replay" and replay["label"] == "!roll 2d6"
    assert (replay["base"]["ok"], replay["branch"]["ok"], replay["verdict"]) == (False, True, "proves")
    assert replay["base"]["text"] == "error shown: ZeroDivisionError" and "as recorded" in replay["note"]
    (body,) = [row["body"] for row in _rows(settings, "SELECT body FROM proposals")]
    assert "## Proof" in body and "✅ **proven by replay**" in body
    assert "| test `tests/test_dice_scale_regression.py` | ❌" in body
    assert "| replay `!roll 2d6` | ❌ error shown: ZeroDivisionError" in body
    assert "🧪 Proof: ✅ **proven by replay**" in report and "base ❌" in report and "branch ✅" in report
    assert "**ship it**" in report and "unproven" not in report
    print("\n" + body[body.index("## Proof") : body.index("## Checks")])  # the example in docs/security.md


async def test_fix_that_deletes_the_command_is_not_proposed(tmp_path: Path) -> None:
    """A "fix" that deletes the failing command passes the checks, but the replay fails: not proposed."""
    async with ModelDouble() as model, _dice_world(tmp_path, model, checks=["python -c pass"]) as world:
        settings = world.bot.services.settings
        model.script(
            _json_turn(DIAGNOSIS),
            _json_turn(PLAN),
            _edit(settings, "tests/fixtures/buggy_dice.py", ROLL_COMMAND, "    pass\n"),
            text("Removed the crashing command."),
            text("The command is gone, so it cannot crash."),
        )
        await _storm(world)
        await world.users["alice"].react(_announcement(world), "🛠")
        await world.quiesce()
        dev = [m.content for m in bot_messages(world, world.dev)]
    (run,) = _rows(settings, "SELECT state, failure_stage, failure_reason FROM runs")
    assert run["state"] == "failed" and run["failure_stage"] == "verifying"
    assert "not proposed: the change does not fix the reported failure" in run["failure_reason"]
    # Decided when the branch's bot was done with each call, not after the 5 s each was allowed.
    assert (
        "`!roll 2d6`: no answer on the branch (the bot finished with it without a word)"
        in run["failure_reason"]
    )
    assert _rows(settings, "SELECT count(*) FROM proposals")[0][0] == 0
    assert _prompts_with(model, "The proof of your fix does not hold"), (
        "the failing replay went back to the agent"
    )
    assert any("❌ Run #1 failed" in d and "not proposed" in d for d in dev)


async def test_fix_that_deletes_the_command_is_labelled_unproven_without_required_proof(
    tmp_path: Path,
) -> None:
    """With deploy.require_proof false the same "fix" is proposed, labelled unproven with the reason."""
    async with (
        ModelDouble() as model,
        _dice_world(tmp_path, model, checks=["python -c pass"], require_proof=False) as world,
    ):
        settings = world.bot.services.settings
        model.script(
            _json_turn(DIAGNOSIS),
            _json_turn(PLAN),
            _edit(settings, "tests/fixtures/buggy_dice.py", ROLL_COMMAND, "    pass\n"),
            text("Removed the crashing command."),
            text("Nothing else to do."),
        )
        await _storm(world)
        await world.users["alice"].react(_announcement(world), "🛠")
        await world.quiesce()
        report = next(m.content for m in bot_messages(world, world.dev) if "ready for review" in m.content)
    (proposal,) = _rows(settings, "SELECT title, body FROM proposals")
    assert proposal["title"].startswith("mendbot (unproven):")
    assert "**unproven** (disproved)" in proposal["body"] and "no answer on the branch" in proposal["body"]
    assert "**unproven** fix ready for review" in report
    assert _proof(settings)["verdict"] == "disproven"


async def test_a_shipped_fix_whose_live_replay_fails_regresses_at_once(tmp_path: Path) -> None:
    """Shipped without proof (deploy.require_proof off), a "fix" that deletes the command: the replay
    against the deployed code gets no answer, so the run regresses at once — the incident open again
    and the rollback offered — and no watch is left to end it "resolved"."""
    async with (
        ModelDouble() as model,
        _dice_world(tmp_path, model, checks=["python -c pass"], require_proof=False) as world,
    ):
        settings = world.bot.services.settings
        model.script(
            _json_turn(DIAGNOSIS),
            _json_turn(PLAN),
            _edit(settings, "tests/fixtures/buggy_dice.py", ROLL_COMMAND, "    pass\n"),
            text("Removed the crashing command."),
            text("Nothing else to do."),
        )
        await _storm(world)
        await world.users["alice"].react(_announcement(world), "🛠")
        await world.quiesce()
        message = next(m for m in bot_messages(world, world.dev) if "ready for review" in m.content)
        await world.users["alice"].send(world.dev, "ship it", reply_to=message)
        await world.quiesce()
        dev = bot_messages(world, world.dev)
        watching = world.bot.services.deploy.watching
    deployed = next(m.content for m in dev if "🚀 Merged" in m.content)
    assert "❌ Replay against the live code:" in deployed and "no answer" in deployed
    regressed = next(m for m in dev if "regressed: the replay against the live code" in m.content)
    assert "/rollback 1" in regressed.content
    labels = [child.label for row in regressed.components for child in row.children]  # type: ignore[union-attr]
    assert "Roll back now" in labels
    (run,) = _rows(settings, "SELECT state FROM runs")
    assert run["state"] == "regressed"
    (incident,) = _rows(settings, "SELECT state FROM incidents")
    assert incident["state"] == "open"
    assert watching == []
    assert _proof(settings, "deploy")["verdict"] == "disproven"


async def test_a_test_that_passes_on_the_base_is_no_proof(tmp_path: Path) -> None:
    """A "regression test" that passes without the fix goes back to the agent and counts as no proof."""
    async with ModelDouble() as model, _dice_world(tmp_path, model) as world:
        settings = world.bot.services.settings
        model.script(
            _json_turn(DIAGNOSIS),
            _json_turn(PLAN),
            _edit(settings, "tests/fixtures/buggy_dice.py", BUG, FIX),
            _write(settings, "tests/test_dice_scale_regression.py", BASE_PASSING_TEST),
            text("Fixed, with a test."),
            text("I stand by the test."),
        )
        await _storm(world)
        await world.users["alice"].react(_announcement(world), "🛠")
        await world.quiesce()
    (feedback,) = _prompts_with(model, "The proof of your fix does not hold")[:1]
    assert "your test passes without your fix" in feedback
    proof = _proof(settings)
    (test,) = [item for item in proof["items"] if item["kind"] == "test"]
    assert (test["base"]["ok"], test["branch"]["ok"], test["verdict"]) == (True, True, "no_proof")
    (body,) = [row["body"] for row in _rows(settings, "SELECT body FROM proposals")]
    assert "| test `tests/test_dice_scale_regression.py` | ✅" in body and "passes without your fix" in body


async def test_latency_fix_shows_the_duration_drop_in_the_replay(tmp_path: Path) -> None:
    """A slow /report complained about in words → the fix → the replay shows the duration drop."""
    async with (
        ModelDouble() as model,
        proving_world(
            tmp_path, model, checks=["python -c pass"], extension="tests.fixtures.slow_report", without=[]
        ) as world,
    ):
        settings = world.bot.services.settings
        model.script(
            _json_turn({"root_cause": "build_report sleeps", "files": [SLOW_FILE]}),
            _json_turn(
                {
                    "files": ["tests/fixtures/slow_report.py"],
                    "changes": "drop the blocking wait",
                    "risk": "low",
                }
            ),
            _edit(settings, SLOW_FILE, SLOW, ""),
            text("Removed the blocking wait."),
        )
        for _ in range(3):
            await world.users["alice"].send(world.general, "!report")
        await world.quiesce()
        me = world.bot.user
        assert me is not None
        await world.users["alice"].send(world.dev, f"{me.mention} the report command got really slow")
        await world.quiesce()
    (run,) = _rows(settings, "SELECT state, failure_reason FROM runs")
    assert run["state"] == "awaiting_approval", run["failure_reason"]
    proof = _proof(settings)
    (replay,) = proof["items"]
    assert replay["label"] == "!report" and replay["verdict"] == "proves", proof
    assert replay["base"]["duration_s"] >= 0.4 and replay["branch"]["duration_s"] < 0.2
    assert replay["note"].startswith("first answer sooner:")
    assert proof["verdict"] == "proven"
