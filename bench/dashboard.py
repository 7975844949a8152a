"""Dashboard benchmark: how long its pages take over a big database.

Prints `name value unit` lines (diagnostics go to stderr):

- `page_p95_ms`: the 95th percentile time of a signed-in page request over HTTP on 127.0.0.1, from
  request to the last byte, across every kind of page: the overview, lists of runs and incidents
  (first pages, deep keyset pages, filtered by state), a run's and an incident's detail, and the
  action explorer (no filter, by kind, by user, by fingerprint, a time window, deep cursors). The
  database (real migrations, so the real indexes) holds 100,000 runs with 4 events each, 5,000
  incidents and 1,000,000 action records over 30 days. Target: ≤ 150 ms.

Seeding writes rows with plain sqlite3 in bulk (not timed). Run from the repo root:
`.venv/bin/python bench/dashboard.py`.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ["MENDBOT_CONFIG"] = os.devnull

import aiohttp  # noqa: E402
import msgspec  # noqa: E402

from mendbot.dashboard.pages import PageReader  # noqa: E402
from mendbot.dashboard.server import DashboardServer  # noqa: E402
from mendbot.dashboard.signin import DashboardSignIn  # noqa: E402
from mendbot.db import core  # noqa: E402
from mendbot.kernel.settings import load_settings  # noqa: E402
from mendbot.trust.redact import Redactor  # noqa: E402

RUNS = 100_000
ACTIONS = 1_000_000
INCIDENTS = 5_000
DAYS = 30
SEED = 20261124
ROUNDS = 15  # requests of each page kind
NOW = time.time()
USERS = [10_000 + i for i in range(200)]
KINDS = [f"command:c{i}" for i in range(30)] + ["chat:reply", "listener:on_message"]
_STATES = ("resolved", "reported", "failed", "rejected", "cancelled", "regressed")  # finished runs


def _seed(path: Path) -> None:
    rng = random.Random(SEED)
    start = NOW - DAYS * 86400
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA synchronous = OFF")
        batch: list[tuple[object, ...]] = []
        for i in range(ACTIONS):
            failed = rng.random() < 0.03
            batch.append(
                (
                    start + (NOW - start) * i / ACTIONS,
                    rng.choice(KINDS),
                    "bench",
                    0 if failed else 1,
                    rng.lognormvariate(3, 1),
                    rng.choice(USERS),
                    0.002 if rng.random() < 0.1 else 0.0,
                    "ValueError" if failed else None,
                    "bad value 42" if failed else None,
                    f"fp{rng.randrange(50):02d}" if failed else None,
                )
            )
            if len(batch) == 50_000:
                db.executemany(
                    "INSERT INTO actions (ts, kind, source, ok, duration_ms, user_id, cost_usd, error_type,"
                    " error_message, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    batch,
                )
                batch.clear()
        db.executemany(
            "INSERT INTO incidents (rule, rules, level, kind, fingerprint, state, summary, first_seen,"
            " last_seen, count, user_ids, sample, updated_at) VALUES ('repeat', '[\"repeat\"]', 'error', ?,"
            " ?, ?, 'ValueError: bad value', ?, ?, 3, '[10001]', '{\"error\": \"bad value 42\"}', ?)",
            [
                (
                    rng.choice(KINDS),
                    f"fp{n % 50:02d}",
                    "open" if n >= INCIDENTS - 20 else "resolved",
                    start + (NOW - start) * n / INCIDENTS,
                    start + (NOW - start) * n / INCIDENTS + 60,
                    start + (NOW - start) * n / INCIDENTS + 60,
                )
                for n in range(INCIDENTS)
            ],
        )
        runs = []
        for n in range(RUNS):
            ts = start + (NOW - start) * n / RUNS
            state = "editing" if n >= RUNS - 10 else rng.choice(_STATES)
            runs.append((n + 1, state, rng.choice(USERS), (n % INCIDENTS) + 1, ts, ts + 300))
        db.executemany(
            "INSERT INTO runs (id, kind, state, requester_id, incident_id, description, slug, cost_usd,"
            " created_at, updated_at) VALUES (?, 'fix', ?, ?, ?, 'fix the dice roll', 's', 0.4, ?, ?)",
            runs,
        )
        events = []
        for run_id, state, _, _, ts, _ in runs:
            events += [
                (run_id, ts, "user", "created", "queued", None, 0.0),
                (run_id, ts + 10, "agent", "diagnosis", "planning", '{"root_cause": "off by one"}', 0.0),
                (run_id, ts + 20, "gateway", "model_request", "editing", '{"model": "claude"}', 0.4),
                (run_id, ts + 300, "pipeline", "transition", state, None, 0.0),
            ]
        db.executemany(
            "INSERT INTO run_events (run_id, ts, actor, event, state, detail, cost_usd)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            events,
        )
        db.execute("ANALYZE")


def _pages(rng: random.Random) -> dict[str, list[str]]:
    deep_ts = NOW - 20 * 86400
    return {
        "overview": ["/"] * ROUNDS,
        "runs": ["/runs"] * ROUNDS,
        "runs deep": [f"/runs?before={rng.randrange(100, RUNS)}" for _ in range(ROUNDS)],
        "runs by state": [f"/runs?state={rng.choice(_STATES)}" for _ in range(ROUNDS)],
        "run": [f"/runs/{rng.randrange(1, RUNS)}" for _ in range(ROUNDS)],
        "incidents": ["/incidents", "/incidents?state=open"] * (ROUNDS // 2),
        "incident": [f"/incidents/{rng.randrange(1, INCIDENTS)}" for _ in range(ROUNDS)],
        "actions": ["/actions"] * ROUNDS,
        "actions by kind": [f"/actions?kind={rng.choice(KINDS)}" for _ in range(ROUNDS)],
        "actions by user": [f"/actions?user={rng.choice(USERS)}" for _ in range(ROUNDS)],
        "actions by fingerprint": [f"/actions?fingerprint=fp{rng.randrange(50):02d}" for _ in range(ROUNDS)],
        "actions window": [
            f"/actions?kind={rng.choice(KINDS)}&since={deep_ts:.0f}&until={deep_ts + 86400:.0f}"
            for _ in range(ROUNDS)
        ],
        "actions deep": [
            f"/actions?after={deep_ts + rng.random() * 86400!r}:{ACTIONS}" for _ in range(ROUNDS)
        ],
    }


async def _measure(path: Path) -> dict[str, list[float]]:
    settings = load_settings(_env_file=None, data_dir=path.parent, repo_dir=path.parent)
    db = await core.connect(path)
    config = msgspec.structs.replace(settings.dashboard, port=0)
    signin = DashboardSignIn(db, config)
    reader = PageReader(db=db, settings=settings, redactor=Redactor(), status=lambda: {"bench": True})
    server = DashboardServer(reader, signin, "127.0.0.1", 0)
    port = await server.start()
    assert port is not None
    url = f"http://127.0.0.1:{port}"
    timings: dict[str, list[float]] = defaultdict(list)
    try:
        link = await signin.link(10_001)
        assert link is not None
        match = re.search(r"u=(\d+)&t=([\w-]+)", link)
        assert match is not None
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            async with client.post(
                f"{url}/signin", data={"u": match.group(1), "t": match.group(2)}
            ) as signed:
                assert signed.status == 200, signed.status
            pages = _pages(random.Random(SEED))
            for paths in pages.values():  # warm-up: the first read of each page's index pages
                async with client.get(url + paths[0]) as response:
                    await response.read()
            for round_ in range(ROUNDS):
                for name, paths in pages.items():
                    started = time.perf_counter()
                    async with client.get(url + paths[round_ % len(paths)]) as response:
                        await response.read()
                        assert response.status == 200, (name, response.status)
                    timings[name].append((time.perf_counter() - started) * 1000)
    finally:
        await server.stop()
        await db.close()
    return timings


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def main() -> None:
    kept = os.environ.get("MENDBOT_BENCH_DB")  # a file seeded before is measured again, not re-seeded
    with tempfile.TemporaryDirectory(prefix="mendbot-bench-dashboard-") as tmp:
        path = Path(kept) if kept else Path(tmp) / "mendbot.db"
        if not path.exists():
            asyncio.run(_prepare(path))
            started = time.perf_counter()
            _seed(path)
            took = time.perf_counter() - started
            print(f"seeded {RUNS} runs, {ACTIONS} actions in {took:.1f} s", file=sys.stderr)
        timings = asyncio.run(_measure(path))
    for name, values in timings.items():
        print(
            f"  {name:24} p50 {statistics.median(values):6.1f} ms  p95 {_p95(values):6.1f} ms",
            file=sys.stderr,
        )
    every = [value for values in timings.values() for value in values]
    print(f"page_p95_ms {_p95(every):.1f} ms")


async def _prepare(path: Path) -> None:
    db = await core.connect(path)  # the migrations: the real schema and indexes
    await db.close()


if __name__ == "__main__":
    main()
