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

- `merge_to_live_ms`: "ship it" to the fixed command's first answer, in a `mendbot run` process on the
  loopback Discord: alice replies "ship it" to a proposal after someone else committed to main (an
  unrelated file), so the merge rebases the change onto the new main and re-verifies it (the
  configured check and the smoke load, sandboxed) before merging, fast-forwarding the live checkout
  and reloading the cog; bob asks `!roll 2d6` as soon as the bot's log says the cog was reloaded and the
  clock stops at the answer (the live replay, the bot's report and the deploy's watch go on after it).
  Median of 3. Target ≤ 10000. Each phase (`merge_phase_<name>_ms`, and its `…_share` of the whole),
  from the bot's own log: `approval`, `rebase_and_copy`, `reverify`, `merge`, `reload`, `answer`; and
  inside `reverify` the checks' and the smoke load's own times (`merge_phase_reverify_checks_ms`,
  `merge_phase_reverify_smoke_ms`), which overlap.

- `recover_after_crash_s`: a deploy whose merge was recorded when the process died, before the live
  checkout moved: from the new process building its services to that deploy completed (live
  checkout at the merge, run deployed). Median of 5. Target ≤ 5.

Run from the repo root: `.venv/bin/python bench/deploy.py`.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ["MENDBOT_CONFIG"] = os.devnull
for _name in ("DISCORD_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GITHUB_TOKEN"):
    os.environ.pop(_name, None)

from mendbot.deploy.reload import Plan, Reloader  # noqa: E402
from mendbot.improve.agent.verify import SMOKE_CHECK  # noqa: E402
from mendbot.kernel.git import git  # noqa: E402
from mendbot.kernel.log import configure_logging  # noqa: E402
from mendbot.kernel.settings import load_settings  # noqa: E402
from mendbot.runtime.app import MendBot  # noqa: E402
from mendbot.runtime.services import build_services  # noqa: E402
from mendbot.tools.playground import VirtualWorld, virtual_world  # noqa: E402
from mendbot.trust.redact import Redactor  # noqa: E402

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
# Parts of the `reverify` phase, which overlap: no share of their own.
_INSIDE_REVERIFY = ("reverify_checks", "reverify_smoke")


async def merge_to_live_once(base: Path) -> tuple[float, dict[str, float]]:
    """One "ship it" on a `mendbot run` process: (ms to the fixed command's first answer, ms per phase).

    The process runs a copy of this repository with a seeded bug in cogs/dice.py, on the loopback
    Discord, the model double scripting the fix; once the proposal is up, main moves (an unrelated
    commit in the live checkout). The clock starts when alice replies "ship it": the approval is
    counted, the merge finds main moved, rebases the change onto it and verifies the rebased commit
    (the configured check and the smoke load, sandboxed, on a fresh copy of its tree), merges,
    fast-forwards the live checkout and reloads the cog; bob sends `!roll 2d6` the moment the bot's log
    says the cog was reloaded, and the clock stops at its answer. What the bot does after the reload —
    the live replay, its report in #dev, the 60-second watch — is not in it: people already get the
    fixed answer meanwhile.
    """
    from mendbot.trust.loopback_discord import DiscordDouble
    from mendbot.trust.loopback_discord_model import message_text
    from tests.harness.live_bot import LiveBot, live_config
    from tests.harness.model_double import ModelDouble, text
    from tests.test_improve_e2e import DIAGNOSIS, PLAN, _json_turn
    from tests.test_loop_real_discord import _after, _edit, _linked, _offers_reactions, _says
    from tests.test_ship_e2e import BUG, CHECK, FIX, _seeded_copy

    repo = _seeded_copy(base)
    async with DiscordDouble() as discord_api, ModelDouble() as model:
        dev, general = discord_api.guild.channel("dev"), discord_api.guild.channel("general")
        alice = int(discord_api.member("alice")["id"])
        home = base / "bot"
        config = live_config(
            discord_api,
            home,
            repo_dir=repo,
            access={"allowed_user_ids": [alice]},
            observe={"announce_new_fingerprints": False},
            improve={"checks": [CHECK], "max_attempts": 1},
            deploy={"watch_window_s": 60},
        )
        model.script(_json_turn(DIAGNOSIS), _json_turn(PLAN), _edit(home / "data", BUG, FIX), text("Fixed."))
        env = {"ANTHROPIC_API_KEY": "bench-key", "ANTHROPIC_BASE_URL": model.base_url}
        async with await LiveBot.start(discord_api, config, home, code=repo, env=env) as bot:
            for _ in range(5):
                roll = await discord_api.send_message(general, "!roll 2d6", author="bob")
                await discord_api.wait_for_message(_after(roll), channel=general)
            announcement = await discord_api.wait_for_message(_says(r"Incident #1"), channel=dev)
            bot_id = int(discord_api.user["id"])
            await discord_api.wait_for_message(_offers_reactions(announcement, bot_id), channel=dev)
            await discord_api.mention(dev, "fix this", author="alice", reply_to=announcement)
            proposal = await discord_api.wait_for_message(
                _says(r"Run #1 — fix ready for review"), channel=dev, timeout=180
            )
            await _linked(bot, proposal)
            (repo / "NOTES-bench.md").write_text("someone else's change on main\n")
            identity = {"user.name": "bench", "user.email": "bench@mendbot.invalid"}
            await git(repo, "add", "NOTES-bench.md")
            await git(repo, "commit", "-q", "-m", "an unrelated change on main", config=identity)
            shipped_at = time.time()
            started = time.perf_counter()
            await discord_api.reply(proposal, "ship it", author="alice")
            await _reloaded(bot, "cogs.dice", shipped_at)
            roll = await discord_api.send_message(general, "!roll 2d6", author="bob")
            answer = await discord_api.wait_for_message(_after(roll), channel=general)
            answered_at = time.time()
            elapsed = (time.perf_counter() - started) * 1000
            if not message_text(answer).startswith("🎲 `2d6` →"):
                raise RuntimeError(f"the fixed command did not answer: {message_text(answer)!r}")
            events = bot.log_events()
    if not any(event["event"] == "rebased" for event in events):
        raise RuntimeError("the merge did not rebase and re-verify: main did not move under it")
    return elapsed, _phases(events, shipped_at, answered_at)


async def _reloaded(bot: Any, extension: str, since: float, timeout: float = 180) -> None:
    """Wait until the bot's log says `extension` was reloaded after `since` (the fixed code is live):
    the moment someone asking the command gets the fix, whatever the bot then goes on to do (the
    live replay, its report, the watch)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in await asyncio.to_thread(bot.log_events):
            stamp = datetime.fromisoformat(event["timestamp"]).timestamp()
            applied = event["event"] == "extension applied" and event.get("extension") == extension
            if applied and stamp >= since:
                return
        await asyncio.sleep(0.05)  # reading the bot's log, not timing the bot
    raise RuntimeError(f"{extension} was not reloaded within {timeout} s:\n{bot.output(40)}")


def _phases(events: list[dict[str, Any]], shipped_at: float, answered_at: float) -> dict[str, float]:
    """Milliseconds per phase of the merge, from the bot's own log (its timestamps, its clock)."""

    def at(name: str, **match: Any) -> tuple[float, dict[str, Any]]:
        for event in events:
            when = datetime.fromisoformat(event["timestamp"]).timestamp()
            if event["event"] == name and when >= shipped_at and match.items() <= event.items():
                return when, event
        raise RuntimeError(f"no {name!r} event after the approval in the bot's log")

    approved, _ = at("approval_decision")
    verified, verification = at("verified")
    live, _ = at("live_updated")
    reloaded, _ = at("extension applied", extension="cogs.dice")
    seconds: dict[str, float] = verification.get("seconds", {})
    smoke = sum(taken for command, taken in seconds.items() if command == SMOKE_CHECK)
    ms = {
        "approval": approved - shipped_at,
        # the recheck of approvals, the refused merge, the rebase in a worktree, the tree checks and
        # the fresh copy of the rebased tree
        "rebase_and_copy": verified - approved - verification["wall_s"],
        # the sandboxed checks and, alongside them, the smoke load (their own figures below)
        "reverify": verification["wall_s"],
        "merge": live - verified,  # the branch moved, the forge's merge, the live fast-forward
        "reload": reloaded - live,
        "answer": answered_at - reloaded,  # the fixed command asked and answered
        "reverify_checks": sum(seconds.values()) - smoke,
        "reverify_smoke": smoke,
    }
    return {name: value * 1000 for name, value in ms.items()}


async def measure_merge_to_live_ms() -> tuple[float, dict[str, float]]:
    """The median of a few runs, and each phase's median."""
    timings: list[float] = []
    phases: list[dict[str, float]] = []
    for index in range(MERGE_RUNS):
        with tempfile.TemporaryDirectory() as tmp:
            elapsed, shares = await merge_to_live_once(Path(tmp))
        timings.append(elapsed)
        phases.append(shares)
        print(f"merge_to_live run {index}: {elapsed:.0f} ms {shares}", file=sys.stderr)
    names = list(phases[0])
    return statistics.median(timings), {name: statistics.median(p[name] for p in phases) for name in names}


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
    merge_ms, phases = await measure_merge_to_live_ms()
    _emit("merge_to_live_ms", round(merge_ms), "ms")
    for name, ms in phases.items():
        _emit(f"merge_phase_{name}_ms", round(ms), "ms")
        if name not in _INSIDE_REVERIFY:
            _emit(f"merge_phase_{name}_share", round(ms / merge_ms, 3), "of merge_to_live")
    _emit("recover_after_crash_s", round(await measure_recover_after_crash_s(), 2), "s")


if __name__ == "__main__":
    asyncio.run(main())
