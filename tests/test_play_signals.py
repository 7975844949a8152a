"""`mendbot play` handles SIGTERM/SIGINT like `mendbot run`: drain, stop runs as resumable, exit 0."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.harness.model_double import Hold, ModelDouble, text
from tests.harness.playground import PlaygroundProcess
from tests.harness.repo import copy_of_bot

PROJECT = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, repo: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nrepo_dir: {repo}\nhealth: {{enabled: false}}\n")
    return config


async def _stop(pg: PlaygroundProcess, sig: signal.Signals) -> int:
    pg.process.send_signal(sig)
    return await asyncio.wait_for(pg.process.wait(), 60)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_ends_the_scripted_playground_cleanly_with_0(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """SIGTERM or SIGINT while the script's stdin is still open: a one-line notice and exit code 0,
    not death by the signal (-15) or a traceback."""
    pg = await PlaygroundProcess.start(_config(tmp_path, tmp_path), code=PROJECT)
    await pg.send("/roll 2d6")
    await pg.expect(r"mendbot \(m\d+\): 🎲 `2d6` →")
    assert await _stop(pg, sig) == 0
    await pg.expect(r"mendbot stopped \(signal\)")


@pytest.mark.cli
async def test_sigterm_mid_run_exits_0_and_the_run_is_resumable_on_the_next_start(tmp_path: Path) -> None:
    """SIGTERM while a run waits on the model: exit 0, the run is saved as interrupted (not left
    investigating), and the next start says `/run 1 action:resume` continues it."""
    repo = copy_of_bot(tmp_path / "repo")
    config = _config(tmp_path, repo)
    async with ModelDouble() as model:
        hold = Hold(then=text("never read"))
        model.script(hold)
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url}
        pg = await PlaygroundProcess.start(config, code=repo, env=env)
        await pg.send("#dev")
        await pg.send("/investigate the roll command is broken")
        await asyncio.wait_for(hold.reached.wait(), 120)  # the run is waiting on the model
        try:
            assert await _stop(pg, signal.SIGTERM) == 0
        finally:
            hold.release.set()
        with sqlite3.connect(tmp_path / "data" / "playground" / "mendbot.db") as db:
            assert db.execute("SELECT state, interrupted_from FROM runs").fetchall() == [
                ("interrupted", "investigating")
            ]
        resumed = Hold(then=text("never read"))
        model.script(resumed)
        again = await PlaygroundProcess.start(config, code=repo, env=env)
        await again.send("#dev")
        await again.send("/run 1 action=resume")
        await asyncio.wait_for(resumed.reached.wait(), 120)  # the same run is back at the model
        try:
            assert await _stop(again, signal.SIGTERM) == 0
        finally:
            resumed.release.set()
        with sqlite3.connect(tmp_path / "data" / "playground" / "mendbot.db") as db:
            states = [
                row[0]
                for row in db.execute(
                    # the states the run went through; bookkeeping (e.g. the gateway's note on the request
                    # the stop cut short) may be written after the stop, under the state it found
                    "SELECT state FROM run_events WHERE run_id = 1 AND event IN ('created', 'transition') "
                    "ORDER BY id"
                )
            ]
        first_stop = states.index("interrupted")
        assert "queued" in states[first_stop:]  # resumed under the same id…
        assert "investigating" in states[states.index("queued", first_stop) :]  # …went back to work…
        assert states[-1] == "interrupted" and states.count("interrupted") == 2  # …and stopped cleanly again


async def test_signals_that_keep_coming_while_it_stops_still_end_it_with_0(tmp_path: Path) -> None:
    """SIGTERM, then SIGTERM again and again until the process is gone (a service manager, a user
    pressing Ctrl-C twice): every one after the first lands somewhere in the stop — the drain, the
    "stopped" line, the event loop closing, the interpreter ending — and none ends it by the signal
    (143) instead of its clean 0."""
    pg = await PlaygroundProcess.start(_config(tmp_path, tmp_path), code=PROJECT)
    await pg.send("/roll 2d6")
    await pg.expect(r"mendbot \(m\d+\): 🎲 `2d6` →")
    exited = asyncio.ensure_future(pg.process.wait())
    signals = 0
    while not exited.done():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pg.process.pid, signal.SIGTERM)
            signals += 1
        # Not a pause to let something happen: the next signal goes as soon as this one is sent, or
        # as soon as the process is seen to have ended.
        await asyncio.wait({exited}, timeout=0.002)
    assert signals > 1
    assert exited.result() == 0
    await pg.expect(r"mendbot stopped \(signal\)")
