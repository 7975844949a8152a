"""A run's status message during long agent steps: the current tool call and file, turns and time,
edited at most once per `improve.progress_interval_s`; and the typing indicator while a run works.

The real bundled CLI against the model double, in the virtual Discord (as tests/test_improve_e2e.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mendbot.tools.playground import VirtualWorld
from tests.harness.model_double import ModelDouble, tool_use
from tests.test_improve_e2e import _announcement, _fix_script, _storm, improving_world

pytestmark = pytest.mark.cli


def _status_edits(world: VirtualWorld) -> list[str]:
    """Every content the bot PATCHed onto a run's status message, in order."""
    return [
        str(request.json.get("content", ""))
        for request in world.env.http_requests
        if request.method == "PATCH"
        and "/messages/" in request.path
        and isinstance(request.json, dict)
        and str(request.json.get("content", "")).startswith("🤖 **Run #")
    ]


async def _fix_with_a_read_first(world: VirtualWorld, model: ModelDouble) -> None:
    settings = world.bot.services.settings
    worktree = settings.data_dir.resolve() / "worktrees" / "run-1"
    diagnosis, plan, edit, done = _fix_script(settings)
    model.script(diagnosis, plan, tool_use("Read", {"file_path": str(worktree / "README.md")}), edit, done)
    await _storm(world)
    await world.users["alice"].react(_announcement(world), "🛠")
    await world.quiesce()


async def test_status_shows_the_agents_current_tool_call_and_file(tmp_path: Path) -> None:
    """During the edit step the status message names the tool call and file, with turns and seconds."""
    async with ModelDouble() as model, improving_world(tmp_path, model, progress_interval_s=0) as world:
        await _fix_with_a_read_first(world, model)
        edits = _status_edits(world)
        run = await world.bot.services.improve.runs.get(1)
    assert run.state == "awaiting_approval", run.failure_reason
    steps = [edit for edit in edits if "↳" in edit]
    assert any("↳ Read `README.md`" in edit for edit in steps), steps
    assert any("↳ Edit `tests/fixtures/buggy_dice.py`" in edit and "turn " in edit for edit in steps), steps
    assert "s in this step" in steps[-1]
    assert "↳" not in edits[-1]  # the step line goes once the step ends; nothing overwrites the result


async def test_step_edits_wait_for_the_interval(tmp_path: Path) -> None:
    """With a long interval no step edit lands between stage changes (a pending one is dropped at the end)."""
    async with ModelDouble() as model, improving_world(tmp_path, model, progress_interval_s=3600) as world:
        await _fix_with_a_read_first(world, model)
        edits = _status_edits(world)
        run = await world.bot.services.improve.runs.get(1)
    assert run.state == "awaiting_approval", run.failure_reason
    assert edits and not any("↳" in edit for edit in edits)


async def test_typing_shows_while_a_run_works_and_stops_after(tmp_path: Path) -> None:
    """The run's channel shows the bot typing while the run works; the indicator ends with the run."""
    async with ModelDouble() as model, improving_world(tmp_path, model) as world:
        await _fix_with_a_read_first(world, model)
        typing = [r for r in world.env.http_requests if r.method == "POST" and r.path.endswith("/typing")]
        improve = world.bot.get_cog("Improve")
        assert typing
        assert str(world.dev.id) in typing[0].path
        assert improve is not None and improve._typing == {}  # type: ignore[attr-defined]


async def test_a_run_on_a_file_main_does_not_have_says_so(tmp_path: Path) -> None:
    """A run whose suspects include a file of the live checkout that differs from main says so in its
    status message: every run starts from main and cannot see that change."""
    async with ModelDouble() as model, improving_world(tmp_path, model) as world:
        fixture = world.bot.services.settings.repo_dir / "tests" / "fixtures" / "buggy_dice.py"
        fixture.write_text(fixture.read_text() + "\n# tuned by hand, never committed\n")
        await _fix_with_a_read_first(world, model)
        edits = _status_edits(world)
        events = await world.bot.services.improve.runs.events(1)
    line = "⚠️ `tests/fixtures/buggy_dice.py` is not committed: runs start from main and will not see it."
    assert any(line in edit for edit in edits), edits
    assert [e.detail for e in events if e.event == "not_on_main"] == [
        {"files": ["tests/fixtures/buggy_dice.py"]}
    ]
