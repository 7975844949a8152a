"""Deploy benchmark: what swapping code into the running bot costs, and whether it loses anything.

Prints one `name value unit` line per figure (diagnostics go to stderr):

- `reload_ms`: `Reloader.apply` for one extension (`cogs.dice`: reload, re-copy the app commands
  to the dev guild, sync only if they changed) in a bot running on the virtual Discord.
  Median of 20. Target ≤ 200.
- `dropped_during_reload`: for 3 s, alice sends `/roll 2d6` at 100 interactions/s while
  `cogs.dice` is reloaded 10 times; an interaction that got no response, or a response that is
  not a roll (an error), counts as dropped. Target 0. `reload_load_rate` is the rate actually
  achieved (the virtual Discord runs one interaction at a time, each to completion, so the
  driver paces them; the reloads run concurrently in their own task).

- `merge_to_live_ms`: approval to the fixed code answering, in a `mendbot play` process: alice
  replies "ship it" to a proposal after someone else committed to main (an unrelated file), so
  the merge rebases the change onto the new main and re-verifies it (the configured check and
  the smoke load) before merging, fast-forwarding the live checkout and reloading the cog; the
  clock stops when the fixed `!roll 2d6` answers. A busy repository moves under a proposal, and
  the re-verification is the slow part: a figure that started after the checks would flatter.
  Median of 3.

- `recover_after_crash_s`: a deploy whose merge was recorded when the process died, before the live
  checkout moved: from the new process building its services to that deploy completed (live
  checkout at the merge, run deployed). Median of 5. Target ≤ 5.

Run from the repo root: `.venv/bin/python bench/deploy.py`.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ["MENDBOT_CONFIG"] = os.devnull
for _name in ("DISCORD_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GITHUB_TOKEN"):
    os.environ.pop(_name, None)

from bot.deploy.reload import Plan, Reloader  # noqa: E402
from bot.kernel.git import git  # noqa: E402
from bot.kernel.log import configure_logging  # noqa: E402
from bot.kernel.settings import load_settings  # noqa: E402
from bot.runtime.app import MendBot  # noqa: E402
from bot.runtime.services import build_services  # noqa: E402
from bot.tools.playground import VirtualWorld, virtual_world  # noqa: E402
from bot.trust.redact import Redactor  # noqa: E402

RUNS = 20
EXTENSION = "cogs.dice"
RATE_PER_S = 100
DURATION_S = 3.0
RELOADS = 10


def _emit(name: str, value: float, unit: str) -> None:
    print(f"{name} {value:g} {unit}", flush=True)


async def measure_reload_ms(world: VirtualWorld, reloader: Reloader) -> float:
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        report = await reloader.apply(Plan(extensions=[EXTENSION]))
        timings.append((time.perf_counter() - started) * 1000)
        if not report.ok:
            raise RuntimeError(f"reload failed: {report.results}")
    return statistics.median(timings)


async def measure_dropped_during_reload(world: VirtualWorld, reloader: Reloader) -> tuple[int, float]:
    """(interactions dropped, interactions per second achieved)."""
    alice = world.users["alice"]
    done = asyncio.Event()
    reload_errors: list[str] = []

    async def reload_repeatedly() -> None:
        for _ in range(RELOADS):
            await asyncio.sleep(DURATION_S / (RELOADS + 1))
            report = await reloader.apply(Plan(extensions=[EXTENSION]))
            reload_errors.extend(str(result.error) for result in report.results if not result.ok)
        done.set()

    reloads = asyncio.create_task(reload_repeatedly())
    sent = dropped = 0
    started = time.perf_counter()
    while time.perf_counter() - started < DURATION_S or not done.is_set():
        result = await alice.slash(world.general, "roll", notation="2d6")
        sent += 1
        response = result.response
        if response is None or not response.content.startswith("🎲"):
            dropped += 1
            print(f"dropped: {response.content if response else 'no response'}", file=sys.stderr)
        delay = started + sent / RATE_PER_S - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    elapsed = time.perf_counter() - started
    await reloads
    if reload_errors:
        raise RuntimeError(f"reloads failed: {reload_errors}")
    return dropped, sent / elapsed


MERGE_RUNS = 3


async def measure_merge_to_live_ms() -> float:
    """Approval ("ship it") to the merged change answering in the running bot, median of a few runs.

    A `mendbot play` process runs a temp copy of this repository with a seeded bug in cogs/dice.py;
    the model double scripts the fix; main then moves (an unrelated commit in the live checkout), so
    the clock, started when alice replies "ship it", runs through the rebase and re-verification,
    the merge, the live fast-forward, the reload and the fixed /roll answering.
    """
    from tests.harness.model_double import ModelDouble, text
    from tests.harness.playground import PlaygroundProcess
    from tests.test_improve_e2e import DIAGNOSIS, PLAN, _json_turn
    from tests.test_ship_e2e import BUG, FIX, _config, _edit, _seeded_copy, _to_proposal

    timings = []
    for index in range(MERGE_RUNS):
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            repo = _seeded_copy(base)
            async with ModelDouble() as model:
                model.script(_json_turn(DIAGNOSIS), _json_turn(PLAN), _edit(base, BUG, FIX), text("Fixed."))
                env = {"ANTHROPIC_API_KEY": "bench-key", "ANTHROPIC_BASE_URL": model.base_url}
                pg = await PlaygroundProcess.start(_config(base, repo), code=repo, env=env)
                proposal = await _to_proposal(pg)
                (repo / "NOTES-bench.md").write_text("someone else's change on main\n")
                identity = {"user.name": "bench", "user.email": "bench@mendbot.invalid"}
                await git(repo, "add", "NOTES-bench.md")
                await git(repo, "commit", "-q", "-m", "an unrelated change on main", config=identity)
                started = time.perf_counter()
                await pg.send(f"reply {proposal} ship it")
                await pg.send("#general")
                await pg.send("!roll 2d6")
                await pg.expect(r"🎲 `2d6` →", timeout=120)
                timings.append((time.perf_counter() - started) * 1000)
                rebased = _run_events(base, "rebased_to")
                if not rebased:
                    raise RuntimeError("the merge did not rebase and re-verify: main did not move under it")
                await pg.finish()
        print(f"merge_to_live run {index}: {timings[-1]:.0f} ms", file=sys.stderr)
    return statistics.median(timings)


def _run_events(base: Path, key: str) -> list[str]:
    """Run-event details holding `key` in the playground's database (`play` keeps its state there)."""
    with sqlite3.connect(base / "data" / "playground" / "mendbot.db") as db:
        rows = db.execute("SELECT detail FROM run_events WHERE detail LIKE ?", (f"%{key}%",)).fetchall()
    return [row[0] for row in rows]


async def measure_recover_after_crash_s() -> float:
    """Start-up to a crashed deploy completed: a run whose merge was recorded when the process died
    (before the live checkout moved) — from building the services of the new process to the run
    deployed, its live checkout at the merge. Median of 5."""

    def git(repo: Path, *args: str) -> str:
        identity = ["-c", "user.name=bench", "-c", "user.email=bench@mendbot.invalid"]
        done = subprocess.run(["git", *identity, *args], cwd=repo, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    timings = []
    for index in range(5):
        with tempfile.TemporaryDirectory() as tmp:
            repo = Path(tmp) / "repo"
            repo.mkdir()
            git(repo, "init", "-q", "-b", "main")
            (repo / "notes.txt").write_text("one\n")
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", "start")
            base = git(repo, "rev-parse", "HEAD")
            git(repo, "switch", "-q", "-c", "mendbot/1-fix")
            (repo / "notes.txt").write_text("two\n")
            git(repo, "commit", "-q", "-am", "fix")
            head = git(repo, "rev-parse", "HEAD")
            git(repo, "switch", "-q", "main")
            settings = load_settings(
                data_dir=Path(tmp) / "data", repo_dir=repo, health={"enabled": False},
                deploy={"watch_hand_edits": False}, _env_file=None,
            )  # fmt: skip
            services = await build_services(settings, watch_prompts=False)
            runs = services.improve.runs
            run = await runs.create("fix", 1, None, None, "bench")
            for state in ("observing", "investigating", "planning"):
                await runs.transition(run.id, state, actor="bench")
            await runs.transition(run.id, "editing", actor="bench", branch="mendbot/1-fix", base_sha=base)
            await runs.transition(run.id, "verifying", actor="bench")
            await runs.transition(run.id, "proposing", actor="bench", verified_sha=head, head_sha=head)
            proposal = await services.deploy.forge.open_proposal(
                run_id=run.id, branch="mendbot/1-fix", head_sha=head, title="t", body="b"
            )
            await runs.transition(run.id, "awaiting_approval", actor="bench", proposal_id=proposal.id)
            await runs.transition(run.id, "merging", actor="bench")
            await services.deploy.forge.merge(proposal.id, head)
            await services.aclose()  # the process dies here, between the merge and the fast-forward
            started = time.perf_counter()
            services = await build_services(settings, watch_prompts=False)
            try:
                async with virtual_world(MendBot(services)) as world:
                    await world.quiesce()
                    state = (await world.bot.services.improve.runs.get(run.id)).state
                    timings.append(time.perf_counter() - started)
                    if state not in ("deployed", "watching") or git(repo, "rev-parse", "HEAD") != head:
                        raise RuntimeError(f"the crashed deploy was not completed (run is {state})")
            finally:
                await services.aclose()
        print(f"recover_after_crash run {index}: {timings[-1]:.2f} s", file=sys.stderr)
    return statistics.median(timings)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        configure_logging(data / "logs", console_level="CRITICAL", redactor=Redactor())
        settings = load_settings(data_dir=data, repo_dir=Path(tmp), health={"enabled": False}, _env_file=None)
        services = await build_services(settings, watch_prompts=False)
        bot = MendBot(services)
        try:
            async with virtual_world(bot) as world:
                reloader = Reloader(world.bot)
                _emit("reload_ms", round(await measure_reload_ms(world, reloader), 2), "ms")
                dropped, rate = await measure_dropped_during_reload(world, reloader)
                _emit("dropped_during_reload", dropped, "interactions")
                _emit("reload_load_rate", round(rate, 1), "interactions/s")
        finally:
            await services.aclose()
    _emit("merge_to_live_ms", round(await measure_merge_to_live_ms()), "ms")
    _emit("recover_after_crash_s", round(await measure_recover_after_crash_s(), 2), "s")


if __name__ == "__main__":
    asyncio.run(main())
