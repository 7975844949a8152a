"""The merge queue end to end: a proposal whose only conflict with the moved main is in the import
block is resolved, re-verified in the sandbox and merged on "ship it" (real CLI, model double,
virtual Discord, real git)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.discord import bot_messages
from tests.harness.model_double import ModelDouble, text
from tests.harness.repo import git
from tests.test_improve_e2e import (
    BUG,
    DIAGNOSIS,
    PLAN,
    _announcement,
    _edit,
    _json_turn,
    _rows,
    _storm,
    improving_world,
)
from tests.test_ship_redo import _proposal_message, _replies

pytestmark = pytest.mark.cli

FIXTURE = "tests/fixtures/buggy_dice.py"
TYPING = "from typing import Any\n"
MATH_FIX = "return 60 // max(1, math.floor(abs(sides - 6)))"


async def test_an_import_only_conflict_is_resolved_reverified_and_merged(tmp_path: Path) -> None:
    """main added an import where the fix added its own: "ship it" unites them (ruff-sorted), verifies
    the result with the checks and merges it, saying so; nothing is asked of the human."""
    async with ModelDouble() as model, improving_world(tmp_path, model) as world:
        settings = world.bot.services.settings
        repo = settings.repo_dir
        model.script(
            _json_turn(DIAGNOSIS),
            _json_turn(PLAN),
            _edit(settings, 1, TYPING, "import math\n" + TYPING),
            _edit(settings, 1, BUG, MATH_FIX),
            text("Guarded the divisor with math."),
        )
        await _storm(world)
        alice = world.users["alice"]
        await alice.react(_announcement(world), "🛠")
        await world.quiesce()
        proposal = _proposal_message(world, 1)
        fixture = repo / FIXTURE
        fixture.write_text(fixture.read_text().replace(TYPING, "import json\n" + TYPING))
        git(repo, "commit", "-q", "-am", "main imports json in the fixture")
        moved = git(repo, "rev-parse", "HEAD")
        shipped = await alice.send(world.dev, "ship it", reply_to=proposal)
        await world.quiesce()
        (answer,) = _replies(world, shipped)
        dev = [m.content for m in bot_messages(world, world.dev)]
    assert "Merged" in answer, answer
    assert f"import conflicts with main in `{FIXTURE}` resolved and re-verified ✅" in answer
    merged = fixture.read_text()
    assert "import json\nimport math\nfrom typing import Any\n" in merged  # the union, sorted by ruff
    assert MATH_FIX in merged and BUG not in merged
    assert git(repo, "rev-parse", "HEAD~1") == moved  # rebased onto the moved main
    (run,) = _rows(settings, "SELECT state, verified_sha FROM runs")
    assert run["state"] == "watching" and run["verified_sha"] == git(repo, "rev-parse", "HEAD")
    events = _rows(settings, "SELECT event, detail FROM run_events WHERE run_id = 1 ORDER BY id")
    assert any(e["event"] == "imports_resolved" and FIXTURE in e["detail"] for e in events)
    assert not any("proposal stays open" in d for d in dev)
