"""Stop benchmark: how long `mendbot play` takes to exit after SIGTERM at each step of a deploy.

A real playground process runs a copy of this repository with a seeded bug in cogs/dice.py, the real
Claude Code CLI against the model double making the fix, the checks and the replays in the sandbox.
Alice says "ship it" to the proposal with one fault point armed `term` (bot/kernel/failpoints.py): the
process sends itself SIGTERM at that exact step, as a service manager's stop would, and the step goes
on while the process drains. One line per step, `sigterm_exit_<step>_s`: from the fault point's log
line to the process's exit (its exit code must be 0), against the operations guide's promise of 10 s:

- `before_merge`: approvals counted, the merge about to begin — main moved meanwhile, so the stop lands
  while the change is rebased onto it and verified again (checks and smoke load, sandboxed);
- `after_merge_recorded`, `after_live_update`, `during_reload`: between the merge and the reload;
- `during_live_replay`: the incident replayed against the deployed code (a bot in the sandbox);
- `watching`: the deploy done, its watch's timer running (SIGTERM sent from outside);
- and, before any deploy, `mid_run`: a run's agent (the real CLI) waiting on the model.

Each step is one stop (the exit time barely varies; the ship before it is what takes long).
Run from the repo root: `.venv/bin/python bench/stop.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from sizes import sized  # bench/, the script's directory: before anything reads sys.argv

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
for _name in ("DISCORD_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GITHUB_TOKEN", "MENDBOT_CONFIG"):
    os.environ.pop(_name, None)

from tests.harness.model_double import Hold, ModelDouble, text  # noqa: E402
from tests.harness.playground import PlaygroundProcess  # noqa: E402
from tests.harness.repo import copy_of_bot, git  # noqa: E402
from tests.test_improve_e2e import DIAGNOSIS, PLAN, _json_turn  # noqa: E402
from tests.test_ship_e2e import BUG, FIX, _config, _edit, _seeded_copy, _to_proposal  # noqa: E402

DRAIN_S = 10.0
ALL_STEPS: tuple[str, ...] = (
    "before_merge",
    "after_merge_recorded",
    "after_live_update",
    "during_reload",
    "during_live_replay",
    "watching",
    "mid_run",
)
STEPS = sized(ALL_STEPS, ("during_reload", "mid_run"))  # short: a deploy step and a run, not all seven


def _stopped_at(base: Path) -> float:
    """When the fault point sent SIGTERM, by the process's own log (wall clock)."""
    log = base / "data" / "playground" / "logs" / "mendbot.jsonl"
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if event.get("event") == "failpoint hit: stopping the process (SIGTERM)":
            return datetime.fromisoformat(event["timestamp"]).timestamp()
    raise RuntimeError("the fault point was never hit")


async def stop_during(step: str, base: Path) -> float:
    """Seconds from SIGTERM at `step` to the process's exit."""
    repo = _seeded_copy(base)
    async with ModelDouble() as model:
        model.script(_json_turn(DIAGNOSIS), _json_turn(PLAN), _edit(base, BUG, FIX), text("Guarded it."))
        env = {"ANTHROPIC_API_KEY": "bench-key", "ANTHROPIC_BASE_URL": model.base_url}
        if step != "watching":
            env["MENDBOT_FAILPOINTS"] = f"deploy.{step}=term"
        pg = await PlaygroundProcess.start(_config(base, repo, watch_s=3600), code=repo, env=env)
        try:
            proposal = await _to_proposal(pg)
            if step == "before_merge":  # main moves: the merge rebases and verifies again
                (repo / "NOTES-bench.md").write_text("someone else's change on main\n")
                git(repo, "add", "NOTES-bench.md")
                git(repo, "commit", "-qm", "an unrelated change on main")
            await pg.send(f"reply {proposal} ship it")
            if step == "watching":
                await pg.expect(r"Merged `[0-9a-f]{7}` and deployed", timeout=180)
                await pg.expect(r"Replay against the live code", timeout=120)
                stopped = time.time()
                pg.process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(pg.process.wait(), 300)
            exited = time.time()
        finally:
            if pg.process.returncode is None:
                pg.process.kill()
                await pg.process.wait()
    if code != 0:
        raise RuntimeError(f"exit code {code} after SIGTERM at {step}: {pg.stderr.read_text()[-2000:]}")
    return exited - (stopped if step == "watching" else _stopped_at(base))


async def stop_mid_run(base: Path) -> float:
    """Seconds from SIGTERM, sent while a run's agent waits on the model, to the process's exit."""
    repo = copy_of_bot(base / "repo")
    async with ModelDouble() as model:
        hold = Hold(then=text("never read"))
        model.script(hold)
        env = {"ANTHROPIC_API_KEY": "bench-key", "ANTHROPIC_BASE_URL": model.base_url}
        pg = await PlaygroundProcess.start(_config(base, repo), code=repo, env=env)
        try:
            await pg.send("#dev")
            await pg.send("/investigate the roll command is broken")
            await asyncio.wait_for(hold.reached.wait(), 180)
            stopped = time.time()
            pg.process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(pg.process.wait(), 300)
            exited = time.time()
        finally:
            hold.release.set()
            if pg.process.returncode is None:
                pg.process.kill()
                await pg.process.wait()
    if code != 0:
        raise RuntimeError(f"exit code {code} after SIGTERM mid-run: {pg.stderr.read_text()[-2000:]}")
    return exited - stopped


async def main() -> None:
    for step in STEPS:
        with tempfile.TemporaryDirectory(prefix="mendbot-bench-stop-") as temp:
            base = Path(temp)
            took = await (stop_mid_run(base) if step == "mid_run" else stop_during(step, base))
        print(f"sigterm_exit_{step}_s {took:.2f} s  (target ≤ {DRAIN_S:g})", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
