"""An extension that fails to load — its cog's `cog_load` or its `setup` raising — leaves an action with
its traceback, an incident and the evidence a run needs, not only a line in the boot report. The real
bot on the virtual Discord."""

from __future__ import annotations

import json
from pathlib import Path

from mendbot.improve.evidence.gather import build_evidence
from mendbot.improve.evidence.target import resolve_target
from tests.harness.discord import bot_messages, make_settings, running_world
from tests.harness.sql import stored

REPO = Path(__file__).resolve().parent.parent


async def test_a_failed_cog_load_is_an_action_an_incident_and_evidence(tmp_path: Path) -> None:
    """A cog whose `cog_load` raises: a failed `cog:Rates.cog_load` record whose innermost frame is the
    helper that raised, an incident announced, "fix this" resolving to it, and an evidence pack with the
    traceback and the helper as a suspect."""
    settings = make_settings(tmp_path / "data")
    async with running_world(settings, extra_extensions=["tests.fixtures.failing_load"]) as world:
        await world.quiesce()
        await world.bot.services.recorder.flush()
        [record] = stored(
            settings, "SELECT ok, error_type, frames, extra FROM actions WHERE kind = 'cog:Rates.cog_load'"
        )
        assert (record["ok"], record["error_type"]) == (0, "KeyError")
        assert json.loads(record["frames"])[-1].endswith(":load_rates")
        assert stored(settings, "SELECT count(*) FROM actions WHERE kind LIKE 'extension:%'")[0][0] == 0
        [incident] = stored(settings, "SELECT id, kind, rule FROM incidents")
        assert (incident["kind"], incident["rule"]) == ("cog:Rates.cog_load", "not_loaded")
        assert any(
            m.embeds and "the `Rates` cog's `cog_load`" in (m.embeds[0].title or "")
            for m in bot_messages(world, world.dev)
        )
        db = world.bot.services.db
        target = await resolve_target(db, "fix this", replied_incident_id=None)
        assert target.incident_ids == [incident["id"]]
        pack = await build_evidence(db, REPO, incident_id=incident["id"], description="fix this")
        assert pack.tracebacks and pack.tracebacks[0].error_type == "KeyError"
        assert ("tests/fixtures/failing_load.py", "load_rates") in [
            (s.path, s.function) for s in pack.suspects
        ]
        assert "def load_rates" in pack.render()


async def test_a_failed_setup_is_recorded_as_the_extension(tmp_path: Path) -> None:
    """An extension whose `setup` raises before adding its cog: a failed `extension:<name>` record (phase
    setup) with the frame, and an incident — the rest of the bot boots."""
    settings = make_settings(tmp_path / "data")
    async with running_world(settings, extra_extensions=["tests.fixtures.failing_setup"]) as world:
        await world.quiesce()
        await world.bot.services.recorder.flush()
        [record] = stored(
            settings,
            "SELECT ok, error_type, frames, extra FROM actions WHERE kind = ?",
            "extension:tests.fixtures.failing_setup",
        )
        assert (record["ok"], record["error_type"]) == (0, "KeyError")
        assert json.loads(record["frames"])[-1].endswith(":setup")
        assert json.loads(record["extra"])["phase"] == "setup"
        kinds = [row["kind"] for row in stored(settings, "SELECT kind FROM incidents")]
        assert kinds == ["extension:tests.fixtures.failing_setup"]
        assert world.bot.get_cog("Improve") is not None
