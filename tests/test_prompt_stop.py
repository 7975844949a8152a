"""A stop is prompt whatever is in flight: SIGTERM while the deploy replays the incident against the live
code ends `mendbot play` within the drain (not after the replay), and the next start runs the replay
once and finishes the deploy's report, as it does for a deploy step a restart interrupted."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from tests.harness.model_double import ModelDouble, text
from tests.harness.playground import PlaygroundProcess
from tests.test_improve_e2e import DIAGNOSIS, PLAN, _json_turn
from tests.test_ship_e2e import BUG, FIX, _config, _db, _edit, _seeded_copy, _to_proposal

pytestmark = pytest.mark.cli

DRAIN_S = 10  # what the operations guide promises a stop takes at most


async def _logged(tmp_path: Path, event: str, timeout: float = 120) -> None:
    """Until the playground's JSON log has `event` (read from outside, as an operator would)."""
    log = tmp_path / "data" / "playground" / "logs" / "mendbot.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{") and json.loads(line).get("event") == event:
                    return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event!r} in the log within {timeout} s")


async def test_sigterm_during_the_live_replay_stops_within_the_drain_and_the_next_start_replays(
    tmp_path: Path,
) -> None:
    """ "ship it", then SIGTERM once the live replay has begun: exit 0 within the drain, the run left
    deployed and not yet replayed; the next start replays it once, posts the deploy's report with the
    replay's line, and watches on."""
    repo = _seeded_copy(tmp_path)
    async with ModelDouble() as model:
        model.script(_json_turn(DIAGNOSIS), _json_turn(PLAN), _edit(tmp_path, BUG, FIX), text("Guarded it."))
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url}
        config = _config(tmp_path, repo, watch_s=3600)
        pg = await PlaygroundProcess.start(config, code=repo, env=env)
        proposal = await _to_proposal(pg)
        await pg.send(f"reply {proposal} ship it")
        await _logged(tmp_path, "live replay started")
        pg.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(pg.process.wait(), DRAIN_S + 5) == 0
        assert _db(tmp_path, "SELECT state FROM runs") == [("deployed",)]
        assert _db(tmp_path, "SELECT count(*) FROM run_events WHERE event = 'proof_live'") == [(0,)]
        pg = await PlaygroundProcess.start(config, code=repo, env=env)
        await pg.send("wait")
        await pg.expect(r"Merged `[0-9a-f]{7}` and deployed \(finished after a restart\)", timeout=120)
        await pg.expect(r"Replay against the live code: ✅", timeout=60)
        await pg.send("#general")
        await pg.send("!roll 2d6")
        await pg.expect(r"🎲 `2d6` →")
        assert await pg.finish() == 0
    assert _db(tmp_path, "SELECT count(*) FROM run_events WHERE event = 'proof_live'") == [(1,)]
    assert _db(tmp_path, "SELECT state FROM runs") == [("watching",)]
