"""Fault-localisation benchmark: how often the faulty code comes first, and what finding it costs.

Prints one `name value unit` line per figure (diagnostics go to stderr):

- `recognised_pct`, `right_target_pct`, `file_top1_pct`, `function_top3_pct`, each printed twice —
  `without_model_…` and `with_model_…` — for the whole corpus and for each origin. The corpus:
  - the seeded-fault suite (tests/localise/seeds.py, seeds_shapes.py, seeds_real.py, seeds_handlers.py),
    each seed driven exactly as the tests drive it — its repository built, the real MendBot in the
    virtual Discord, the fault made to happen, a complaint in plain words, the run's evidence sent to
    the real Claude Code CLI talking to the model double (tests/localise/driver.py);
  - faults seeded into the real bots in ../shared/realbots/ (tests/localise/realbots.py): their own
    cogs, a small edit in a temporary copy, what a running bot would have recorded, localised from
    the source (a bot that is absent is skipped, with a line on stderr).
  Without a model, the model double makes no routing call: the bot's grammar, targeting and one
  question decide alone. With one, it names the part of the bot the words mean among those the bot
  lists. A suite seed whose run never asked the model is the same run either way and is counted once
  for each. Scored from the evidence the agent reads — the suspects of the rendered pack: did the
  complaint start a run, is its target the kind the fault is in (or one the seed accepts), is the
  faulty file the first suspect file, is the faulty function among the first three suspects. Origins:
  `written_with_the_code` (shapes chosen while the ranking was built), `from_real_fixes` (re-created
  from public bots' bug-fix commits), `handler_kinds` (faults in views, modals, autocomplete, checks,
  context menus and task loops, in words that name neither the command nor the error),
  `seeded_into_real_bots`. Targets: recognised 100, right target ≥ 95, file top-1 ≥ 90, function
  top-3 ≥ 85.
- `evidence_ms`: `build_evidence` + `render()` at 1,000,000 action rows, for a complaint about
  a command with no traceback (wrong output: the calls the complaint means are searched among
  the kind's rows, slow samples read, handler and callees ranked, git blame and log read) and
  for an incident with a traceback; the slower of the two medians of 20 runs. Target ≤ 50.
- `evidence_cold_ms`: the same with git's blame and log (cached per HEAD commit in a running bot)
  and the parsed modules forgotten before each run: what the first run after a deploy pays.
- `correlate_ms`: finding the calls a wrong-output complaint means among the 1,000,000 rows —
  the kind's newest 500 rows by index, scored on their invocation and reply text, the best
  read back as records — median of 50 runs.
  Target ≤ 50.

`--no-suite` skips the suite (it takes minutes: one bot and up to three CLI sessions per seed, twice
where the model was asked). Run from the repo root: `.venv/bin/python bench/localise.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sizes import sized  # bench/, the script's directory: before anything reads sys.argv

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ["MENDBOT_CONFIG"] = os.devnull
for _name in ("DISCORD_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GITHUB_TOKEN"):
    os.environ.pop(_name, None)

import aiosqlite  # noqa: E402

from mendbot.db import actions as action_queries  # noqa: E402
from mendbot.db import handlers as handler_queries  # noqa: E402
from mendbot.db import incidents as incident_queries  # noqa: E402
from mendbot.db.connection import open_database  # noqa: E402
from mendbot.improve.evidence import history as history_module  # noqa: E402
from mendbot.improve.evidence import source_index as source_index_module  # noqa: E402
from mendbot.improve.evidence.gather import build_evidence, correlate  # noqa: E402
from mendbot.kernel.log import configure_logging  # noqa: E402
from mendbot.trust.redact import Redactor  # noqa: E402
from tests.harness.model_double import ModelDouble  # noqa: E402
from tests.localise.driver import Outcome, localise  # noqa: E402
from tests.localise.realbots import ORIGIN, REALBOT_SEEDS, RealbotOutcome, available, localise_realbot  # noqa: E402
from tests.localise.repo import build_repo  # noqa: E402
from tests.localise.seeds import WRONG_OUTPUT  # noqa: E402
from tests.localise.seeds_shapes import ALL_SEEDS  # noqa: E402

ACTIONS = sized(1_000_000, 10_000)
TIMES = sized(20, 1)  # runs of each evidence figure, median taken
DAYS = 7
KINDS = 20
SEED = 10
COMPLAINT = "/temp gives wrong results: 100 C comes out as 203 F"
TARGET = "app:temp"
FAILING_FRAMES = json.dumps(["seed_temp/cog.py:14:temp", "seed_temp/formulas.py:5:c_to_f"])


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _median_ms(run: Callable[[], Awaitable[Any]], times: int) -> float:
    await run()  # warm: caches, the page cache, git's object lookup
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        await run()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


Scored = Outcome | RealbotOutcome


def _line(name: str, outcome: Scored, with_model: bool) -> None:
    seed = outcome.seed
    _note(
        f"{name:>9} {'model' if with_model else 'alone'}: {'run' if outcome.recognised else 'NO RUN'},"
        f" target {outcome.kind} ({'right' if seed.right_kind(outcome.kind) else 'WRONG'}), file"
        f" {'top-1' if outcome.file_top1 else 'miss'}, function"
        f" {'top-3' if outcome.function_top3 else 'miss'} — {outcome.suspects[:3]}"
    )


async def _suite(names: set[str]) -> dict[bool, list[Scored]]:
    """Every seed without a model and with one (see the module docstring)."""
    outcomes: dict[bool, list[Scored]] = {False: [], True: []}
    for seed in ALL_SEEDS:
        if names and seed.name not in names:
            continue
        for with_model in (False, True):
            if with_model and outcomes[False][-1].routed == 0:  # type: ignore[union-attr]
                outcomes[True].append(outcomes[False][-1])  # the model was never asked: the same run
                continue
            with tempfile.TemporaryDirectory(prefix=f"localise-{seed.name}-") as tmp:
                async with ModelDouble() as model:
                    outcome = await localise(seed, Path(tmp), model, with_model=with_model)
            outcomes[with_model].append(outcome)
            _line(seed.name, outcome, with_model)
    for real in REALBOT_SEEDS:
        if names and real.name not in names:
            continue
        if not available(real):
            _note(f"{real.name:>9}: skipped, no {real.bot} in ../shared/realbots/")
            continue
        for with_model in (False, True):
            with tempfile.TemporaryDirectory(prefix=f"localise-{real.name}-") as tmp:
                scored = await localise_realbot(real, Path(tmp), with_model=with_model)
            outcomes[with_model].append(scored)
            _line(real.name, scored, with_model)
    return outcomes


def _print_rates(prefix: str, group: list[Scored]) -> None:
    total = len(group)
    print(f"{prefix}seeds {total} count")
    print(f"{prefix}recognised_pct {100 * sum(o.recognised for o in group) / total:.1f} pct")
    right = sum(o.recognised and o.seed.right_kind(o.kind) for o in group)
    print(f"{prefix}right_target_pct {100 * right / total:.1f} pct")
    print(f"{prefix}file_top1_pct {100 * sum(o.file_top1 for o in group) / total:.1f} pct")
    print(f"{prefix}function_top3_pct {100 * sum(o.function_top3 for o in group) / total:.1f} pct")


def _rows(rng: random.Random, now: float) -> list[tuple[Any, ...]]:
    """1M actions over a week: 20 kinds; the target kind's rows carry invocations and replies."""
    kinds = [TARGET, *(f"app:cmd{n}" for n in range(KINDS - 2)), "listener:on_message"]
    weights = [0.05, *([0.9 / (KINDS - 2)] * (KINDS - 2)), 0.05]
    rows: list[tuple[Any, ...]] = []
    for _ in range(ACTIONS):
        kind = rng.choices(kinds, weights)[0]
        ts = now - rng.uniform(0, DAYS * 86400)
        user = rng.randrange(1, 500)
        invocation = reply = samples = None
        duration = rng.expovariate(1 / 20)
        if kind == TARGET:
            value = rng.choice([0, 10, 25, 37, 100, -40])
            invocation = json.dumps({"name": "/temp", "options": {"value": float(value), "scale": "C"}})
            reply = json.dumps(
                {"text": f"{value:g} °C = {value * 9 / 5 + 23:.1f} °F", "sha": "0" * 16, "messages": 1}
            )
            if rng.random() < 0.01:
                duration = 300 + rng.random() * 100
                samples = json.dumps(
                    [{"frames": ["seed_temp/cog.py:14:temp", "seed_temp/formulas.py:5:c_to_f"], "count": 20}]
                )
        elif kind.startswith("app:"):
            invocation = json.dumps(
                {"name": "/" + kind[4:], "options": {"text": f"item {rng.randrange(1000)}"}}
            )
            reply = json.dumps({"text": f"done {rng.randrange(1000)}", "sha": "1" * 16, "messages": 1})
        rows.append(
            (ts, kind, "Bench", 1, duration, 1, 2, user, None, 0.0, None, None, None, None, None, None,
             invocation, reply, samples)
        )  # fmt: skip
    failing: list[tuple[Any, ...]] = [
        (now - 60 * n, "app:cmd3", "Bench", 0, 5.0, 1, 2, 7, None, 0.0, "ZeroDivisionError",
         "division by zero", "fp-bench", FAILING_FRAMES, None, None, None, None, None)
        for n in range(50)
    ]  # fmt: skip
    rows += failing
    rows.sort(key=lambda row: row[0])
    return rows


async def _corpus(path: Path, repo: Path) -> tuple[aiosqlite.Connection, int]:
    started = time.perf_counter()
    now = time.time()
    rows = _rows(random.Random(SEED), now)
    db = await open_database(path)
    await db.execute("BEGIN")
    await db.executemany(
        "INSERT INTO actions (ts, kind, source, ok, duration_ms, guild_id, channel_id, user_id,"
        " message_id, cost_usd, error_type, error_message, fingerprint, frames, run_id, extra,"
        " invocation, reply, samples)"
        f" VALUES ({', '.join('?' * 19)})",
        rows,
    )
    await db.execute(
        "INSERT INTO fingerprints (fingerprint, kind, error_type, first_seen, last_seen, count)"
        " VALUES ('fp-bench', 'app:cmd3', 'ZeroDivisionError', ?, ?, 50)",
        (now - 3000, now),
    )
    await db.execute("COMMIT")
    _note(f"corpus: {len(rows):,} actions in {time.perf_counter() - started:.1f} s")
    await handler_queries.replace_cog(
        db,
        "Temp",
        [handler_queries.HandlerLocation(TARGET, "seed_temp/cog.py", "Temp.temp", 12, "Temp")],
        now,
    )
    incident = await incident_queries.insert(
        db,
        {
            "rule": "repeat",
            "rules": ["repeat"],
            "level": "error",
            "kind": "app:cmd3",
            "fingerprint": "fp-bench",
            "state": "open",
            "summary": "the same ZeroDivisionError 50 times in 10 min",
            "first_seen": now - 3000,
            "last_seen": now,
            "count": 50,
            "user_ids": [7],
            "sample": {"error_type": "ZeroDivisionError", "error_message": "division by zero", "frames": []},
            "updated_at": now,
        },
    )
    return db, incident


async def _costs() -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="localise-bench-") as tmp:
        repo = build_repo(Path(tmp) / "repo", WRONG_OUTPUT.history)
        db, incident = await _corpus(Path(tmp) / "bench.db", repo)
        try:
            now = time.time()

            async def no_traceback() -> None:
                pack = await build_evidence(
                    db, repo, incident_id=None, description=COMPLAINT, kind=TARGET, requester_id=42, now=now
                )
                assert pack.calls and pack.suspects[0].path == "seed_temp/formulas.py", pack.suspects
                pack.render()

            async def with_traceback() -> None:
                pack = await build_evidence(
                    db, repo, incident_id=incident, description="cmd3 is broken", now=now
                )
                assert pack.tracebacks and pack.suspects, pack.suspects
                pack.render()

            async def correlating() -> None:
                recent = await action_queries.recent_calls(db, [TARGET], since=now - 7 * 86400, limit=500)
                calls = await action_queries.by_ids(db, correlate(recent, COMPLAINT, 42))
                assert calls and "100" in json.dumps(calls[0].invocation), calls[:1]

            evidence = max(await _median_ms(no_traceback, TIMES), await _median_ms(with_traceback, TIMES))

            async def cold(run: Callable[[], Awaitable[None]]) -> None:
                history_module._GIT_CACHE.clear()
                source_index_module._MODULE_CACHE.clear()
                await run()

            evidence_cold = max(
                await _median_ms(lambda: cold(no_traceback), TIMES),
                await _median_ms(lambda: cold(with_traceback), TIMES),
            )
            correlate_ms = await _median_ms(correlating, sized(50, 1))
        finally:
            await db.close()
    return evidence, evidence_cold, correlate_ms


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-suite", action="store_true", help="skip the seeded-fault suite")
    # Short: one seed of each origin (all of them take minutes: a bot and CLI sessions each).
    only = sized("", "temp,ladder,chime,stars")
    parser.add_argument("--seeds", default=only, help="only these seeds (comma-separated names)")
    parser.add_argument("--no-costs", action="store_true", help="skip the timing of evidence")
    args = parser.parse_args()
    configure_logging(
        Path(tempfile.mkdtemp(prefix="localise-logs-")) / "logs",
        console_level="CRITICAL",
        redactor=Redactor(),
    )
    if not args.no_suite:
        outcomes = await _suite({n for n in args.seeds.split(",") if n})
        origins = ("written with the code", "from real fixes", "handler kinds", ORIGIN)
        for with_model in (False, True):
            mode = "with_model_" if with_model else "without_model_"
            if not outcomes[with_model]:
                continue
            _print_rates(mode, outcomes[with_model])
            for origin in origins:
                group = [o for o in outcomes[with_model] if o.seed.origin == origin]
                if group:
                    _print_rates(mode + origin.replace(" ", "_") + "_", group)
    if args.no_costs:
        return
    evidence_ms, evidence_cold_ms, correlate_ms = await _costs()
    print(f"evidence_ms {evidence_ms:.1f} ms")
    print(f"evidence_cold_ms {evidence_cold_ms:.1f} ms")
    print(f"correlate_ms {correlate_ms:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
