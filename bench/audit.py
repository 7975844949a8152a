"""Self-audit benchmark: what `AuditService.report` costs over a million action records.

Prints `name value unit` lines (diagnostics go to stderr):

- `audit_report_s`: `AuditService.report(7 days)` on a database (real migrations, so the audit's
  indexes) holding 1,000,000 actions spread evenly over the last 14 days — so every row is read:
  the audited week for budgets, failures, spend and p50/p95, the week before for the latency
  comparison. 40 kinds with log-normal durations, ~3% failures over 25 fingerprints, chat replies
  with a cost, plus a few hundred incidents and runs with events. Median of 3 reports (the first
  also pays for reading the pages from disk). Target: ≤ 5 s.
- `audit_charts_s`: rendering the three PNG charts of that report (matplotlib, Agg), median of 3,
  after a first render that pays for importing matplotlib.

- `parallel_speedup`: two fix runs on disjoint files (each claims its own), from request to
  proposal, against a model double that holds every turn 1 s — run one after the other with
  `improve.concurrency` 1, then together with 2; the wall time of the first over the second. Real
  CLI sessions, git worktrees, sandboxed verification (`python -c pass` and the smoke load); the
  median of 2 interleaved rounds of each. Target: ≥ 1.6.

Seeding writes rows with plain sqlite3 (not timed). Run from the repo root:
`.venv/bin/python bench/audit.py` (`.venv/bin/python bench/audit.py parallel` for the last only).
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ["MENDBOT_CONFIG"] = os.devnull

from mendbot.db import open_database  # noqa: E402
from mendbot.kernel.sections import AuditConfig  # noqa: E402
from mendbot.observe.audit import AuditService  # noqa: E402
from mendbot.observe.audit_charts import render_charts  # noqa: E402
from mendbot.observe.audit_report import AuditReport  # noqa: E402

ACTIONS = 1_000_000
DAYS = 14
SEED = 20261123
ROUNDS = 3
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def _seed(path: Path) -> None:
    rng = random.Random(SEED)
    kinds = [f"command:c{i}" for i in range(30)] + [f"app:a{i}" for i in range(8)]
    kinds += ["chat:reply", "listener:on_message"]
    end = NOW.timestamp()
    start = end - DAYS * 86400
    with sqlite3.connect(path) as db:
        batch: list[tuple[object, ...]] = []
        for _ in range(ACTIONS):
            kind = rng.choice(kinds)
            failed = rng.random() < 0.03
            fingerprint = f"fp{rng.randrange(25):02d}" if failed else None
            batch.append(
                (
                    start + rng.random() * (end - start),
                    kind,
                    "bench",
                    0 if failed else 1,
                    rng.lognormvariate(3, 1),
                    0.002 if kind == "chat:reply" else 0.0,
                    "ValueError" if failed else None,
                    "bad value 42" if failed else None,
                    fingerprint,
                    '{"via": "slash"}',
                )
            )
            if len(batch) == 50_000:
                db.executemany(
                    "INSERT INTO actions (ts, kind, source, ok, duration_ms, cost_usd, error_type,"
                    " error_message, fingerprint, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    batch,
                )
                batch.clear()
        db.executemany(
            "INSERT INTO fingerprints (fingerprint, kind, error_type, first_seen, last_seen, count)"
            " VALUES (?, 'command:c1', 'ValueError', ?, ?, 1)",
            [(f"fp{i:02d}", start, end) for i in range(25)],
        )
        for number in range(300):
            ts = start + rng.random() * (end - start)
            db.execute(
                "INSERT INTO incidents (rule, rules, level, kind, state, summary, first_seen, last_seen,"
                " count, user_ids, sample, updated_at, closed_at)"
                " VALUES ('repeat', '[]', 'error', ?, ?, 's', ?, ?, 1, '[]', '{}', ?, ?)",
                (
                    rng.choice(kinds),
                    "resolved" if number % 2 else "open",
                    ts,
                    ts,
                    ts,
                    ts + 600 if number % 2 else None,
                ),
            )
            db.execute(
                "INSERT INTO runs (kind, state, requester_id, description, slug, cost_usd, created_at,"
                " updated_at) VALUES ('fix', ?, 1, 'd', 's', 0.4, ?, ?)",
                (rng.choice(["reported", "failed", "resolved", "awaiting_approval"]), ts, ts),
            )
            db.execute(
                "INSERT INTO run_events (run_id, ts, actor, event, state, cost_usd)"
                " VALUES (last_insert_rowid(), ?, 'gateway', 'model_request', 'editing', 0.4)",
                (ts,),
            )


async def _timed_reports(path: Path) -> tuple[list[float], AuditReport]:
    service = AuditService(path, AuditConfig(), lambda: NOW)
    timings = []
    report = None
    for _ in range(ROUNDS):
        started = time.perf_counter()
        report = await service.report(timedelta(days=7), commands={f"command:c{i}" for i in range(40)})
        timings.append(time.perf_counter() - started)
    assert report is not None
    return timings, report


PARALLEL_TURN_S = 1.0
PARALLEL_ROUNDS = 2


async def _two_runs(base: Path, concurrency: int) -> float:
    """Wall time of two disjoint fix runs to their proposals at `concurrency` (1: one after the other)."""
    from mendbot.runtime.services import build_services
    from tests.harness.discord import make_settings
    from tests.harness.model_double import ModelDouble, text, tool_use
    from tests.harness.repo import copy_of_bot
    from tests.harness.router import Router

    repo = copy_of_bot(base / "repo")
    async with ModelDouble() as model:
        settings = make_settings(
            base / "data",
            repo_dir=repo,
            anthropic_api_key="bench-key",
            anthropic_base_url=model.base_url,
            improve={"checks": ["python -c pass"], "max_attempts": 1, "concurrency": concurrency},
        )
        router = Router(delay_s=PARALLEL_TURN_S)
        for run_id, (marker, path, old, new) in enumerate(
            [
                ("ALPHA", "cogs/dice.py", "Roll dice written like", "Roll the dice written like"),
                ("BRAVO", "README.md", "# mendbot\n", "# mendbot (mends itself)\n"),
            ],
            start=1,
        ):
            target = settings.data_dir.resolve() / "worktrees" / f"run-{run_id}" / path
            router.add(
                marker,
                text(f'```json\n{{"root_cause": "{marker}", "files": ["{path}"]}}\n```'),
                text(f'```json\n{{"files": ["{path}"], "changes": [], "risk": "low"}}\n```'),
                tool_use("Edit", {"file_path": str(target), "old_string": old, "new_string": new}),
                text(f"{marker} done"),
            )
        model.script(*[router] * 12)
        services = await build_services(settings, watch_prompts=False)
        try:
            # Start-up costs paid once per process (the sandbox probe, the agent SDK's import) are not
            # the runs' work: pay them before the clock starts, in both settings alike.
            await services.improve.ensure_ready("fix")
            import mendbot.improve.agent.code_agent  # noqa: F401

            started = time.perf_counter()
            ids = []
            for marker in ("ALPHA", "BRAVO"):
                run = await services.improve.request(
                    kind="fix", requester_id=1, channel_id=None, incident_id=None, description=f"{marker} fix"
                )
                ids.append(run.id)
                if concurrency == 1:
                    await services.improve.quiesce()
            await services.improve.quiesce()
            seconds = time.perf_counter() - started
            for run_id in ids:
                run = await services.improve.runs.get(run_id)
                if run.state != "awaiting_approval":
                    raise AssertionError(f"run {run_id} ended {run.state}: {run.failure_reason}")
        finally:
            await services.aclose()
    return seconds


def parallel_speedup() -> None:
    from mendbot.kernel.log import configure_logging
    from mendbot.trust.redact import Redactor

    with tempfile.TemporaryDirectory(prefix="mendbot-bench-parallel-") as tmp:
        configure_logging(
            Path(tmp) / "logs", console_level="CRITICAL", redactor=Redactor()
        )  # only `name value unit` on stdout
        times: dict[int, list[float]] = {1: [], 2: []}
        # Interleaved rounds, so a change in the machine's load meets both settings alike.
        for round_ in range(PARALLEL_ROUNDS):
            for concurrency in (2, 1) if round_ % 2 else (1, 2):
                times[concurrency].append(
                    asyncio.run(_two_runs(Path(tmp) / f"{round_}-{concurrency}", concurrency))
                )
    one, two = statistics.median(times[1]), statistics.median(times[2])
    shown = {c: ", ".join(f"{t:.1f}" for t in ts) for c, ts in times.items()}
    print(f"parallel: one at a time {shown[1]} s, two at once {shown[2]} s", file=sys.stderr)
    print(f"parallel_speedup {one / two:.2f} x", flush=True)


def main() -> None:
    if sys.argv[1:] == ["parallel"]:
        parallel_speedup()
        return
    with tempfile.TemporaryDirectory(prefix="mendbot-bench-audit-") as tmp:
        path = Path(tmp) / "mendbot.db"
        asyncio.run(_migrate(path))
        started = time.perf_counter()
        _seed(path)
        print(f"audit: seeded {ACTIONS:,} actions in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        timings, report = asyncio.run(_timed_reports(path))
        # Both weeks together hold every seeded action.
        previous = sum(change.previous_actions for change in report.latency)
        assert report.actions + previous == ACTIONS, (report.actions, previous)
        print(
            f"audit: reports {', '.join(f'{t:.2f}' for t in timings)} s; {report.actions:,} actions in"
            f" the week, {report.failures:,} failed, {len(report.regressions)} regressions",
            file=sys.stderr,
        )
        print(f"audit_report_s {statistics.median(timings):.2f} s", flush=True)
        render_charts(report, str)  # imports matplotlib
        charts = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            render_charts(report, str)
            charts.append(time.perf_counter() - started)
        print(f"audit_charts_s {statistics.median(charts):.2f} s", flush=True)
    parallel_speedup()


async def _migrate(path: Path) -> None:
    await (await open_database(path)).close()


if __name__ == "__main__":
    main()
