"""Scale benchmark: does observation hold when actions arrive by the thousand (SQLite, PostgreSQL)?

Prints one `name value unit` line per figure (diagnostics go to stderr):

- `persist_rate_per_s`: 100,000 records through `ActionRecorder.record` on services assembled by
  the real `build_services` (incidents and the detector subscribed, the journal and the store
  running, the product's default queue of 10,000), from the first record to `flush()` returning
  with every record in the database. The producer yields to the loop every 200 records, as
  separate handlers would, and never waits for the database: records wait in the journal instead,
  and the figure counts only rows that reached `actions` (checked with `count(*)`).
  `persist_dropped` says how many were lost (shed because even the journal could not keep up:
  0 expected). Target ≥ 20,000. `persist_dropped_at_20k_per_s`: the same 100,000 records offered at
  20,000 a second (5 s): how many were lost.
  The `_postgresql` figures: the same into a real PostgreSQL (the embedded server the tests use),
  on services built by `build_services` with `database.url`.
- `prune_max_writer_stall_ms`: 1,000,000 expired rows in `actions` (plus 10,000 fresh ones),
  then retention runs while a producer records 1,000 actions a second; the figure is the
  longest any of those records waited between `record()` and its row being committed (the
  recorder's `written` count is polled every millisecond; the store gathers a batch for up to
  50 ms before it writes, which this includes). `prune_s` is how long the prune took;
  the bench checks every expired row went and every produced record arrived. Target ≤ 100.
- `detector_mb_at_20k_per_s`: `AnomalyDetector.process` fed 20,000 records a second of record
  time for 11 minutes (13.2 million records: a full 10-minute window and then some; 6 kinds,
  5% failures over 50 fingerprints): how much the process's peak resident memory grew from
  just before the detector was built to the end (prebuilt records are reused, each call a copy
  with its time, so the growth is the detector's; measured first, before the other figures raise
  the peak). Target ≤ 64.
- `writer_rate_at_97pct_loop`: the event loop kept busy 97% of the time by 20 tasks doing
  pure-Python work in 1 ms slices (so ~20 ms pass between two looks at the selector, where the
  loop lets go of the GIL by itself), while 1,000 actions a second are recorded for 10 s; the
  figure is the rows committed in those 10 s per second (the journal and the store are threads:
  they get the GIL at the 0.5 ms switch interval). Target ≥ 900.
- `run_pickup_ms`: with `improve.run_on: workers`, the median over 20 runs of the time from a run
  being deferred to the run queue (procrastinate on the embedded PostgreSQL) to a worker starting it:
  the bot's `RunQueue.defer` on one connection pool, a procrastinate worker (`RunQueue.work`, woken by
  NOTIFY) on another, its executor reading the run's row as `start_here` does first. Target ≤ 500.
- `detector_restore_ms`: what a starting detector (a restart, a new leader) spends taking its
  windows up from the stored actions (`restore_windows`) when the 10-minute window holds 6,000,000
  rows (10,000 actions a second; 6 kinds, 5% failures over 50 fingerprints): the median of 3.
  `detector_restore_ms_postgresql`: the same rows in PostgreSQL.
- `leader_failover_s`: two real `mendbot run` processes (one shard each, the Discord double, the
  embedded PostgreSQL); the leading one is killed with SIGKILL, and the figure is the time until the
  other one's /health says it leads and tails the actions (polled every 20 ms), the median of 5
  rounds (a new process takes the dead one's shard before each next round; the bench checks that
  exactly one process leads at the start of each). `leader_failover_max_s`: the slowest round.
  Target ≤ 10.
- `rollout_canary_to_all_s`: a staged rollout (bot/scale/rollout.py) on two real `Cluster`s
  (`build_services`, one shard each, each on its own checkout, the embedded PostgreSQL), the canary
  (shards 0) not the leader: the time from the merge recorded (`_go_live` called on the leader) to
  both processes' stored positions naming the merged commit, less the canary's watch window (2 s):
  telling the canary, its fast-forward and reload, the judgement of its records, the publish and the
  other's fast-forward. Target ≤ 5.

Run from the repo root: `.venv/bin/python bench/scale.py` (`bench/scale.py run_pickup_ms`,
`… leader_failover_s`, `… detector_restore_ms` or `… rollout_canary_to_all_s` for those figures alone).
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from msgspec.structs import replace

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ["MENDBOT_CONFIG"] = os.devnull
for _name in ("DISCORD_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GITHUB_TOKEN"):
    os.environ.pop(_name, None)


from mendbot.db import core, open_database  # noqa: E402
from mendbot.db.records import ActionRecord  # noqa: E402
from mendbot.kernel.log import configure_logging  # noqa: E402
from mendbot.kernel.sections import ObserveConfig  # noqa: E402
from mendbot.kernel.settings import Settings  # noqa: E402
from mendbot.observe.detector import AnomalyDetector, Signal, restore_windows  # noqa: E402
from mendbot.observe.recorder import ActionRecorder  # noqa: E402
from mendbot.runtime.services import Services, build_services  # noqa: E402
from mendbot.trust.redact import Redactor  # noqa: E402
from tests.harness.discord import make_settings  # noqa: E402
from tests.harness.postgres import start_postgres  # noqa: E402

PERSIST_RECORDS = 100_000
PACED_PER_S = 20_000
EXPIRED_ROWS = 1_000_000
FRESH_ROWS = 10_000
OFFERED_PER_S = 1_000
DETECTOR_RATE = 20_000
DETECTOR_SECONDS = 660
LOOP_BUSY = 0.97
LOOP_SECONDS = 10.0
BURNERS = 20
SEED = 20261123

_KINDS = ["command:roll", "app:convert", "listener:on_message", "chat:reply", "task:audit", "app:remind"]


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _emit(name: str, value: float, unit: str, digits: int = 1) -> None:
    print(f"{name} {value:.{digits}f} {unit}", flush=True)


async def _count(target: Path | str) -> int:
    """The rows in `actions` of an SQLite file or a PostgreSQL database."""
    db = await core.connect(target)
    try:
        return int(await core.scalar(db, "SELECT count(*) FROM actions") or 0)
    finally:
        await db.close()


def _failure(n: int) -> Exception:
    try:
        raise ValueError(f"bad input {n}") if n % 2 else ZeroDivisionError("division by zero")
    except Exception as exc:
        return exc


# -- persist rate --------------------------------------------------------------------------------


async def _burst(recorder: ActionRecorder, offered_per_s: float | None = None) -> tuple[float, int]:
    """PERSIST_RECORDS records, as fast as the loop allows or at `offered_per_s`; (rows written per
    second from the first record to the last row, records lost: shed by the recorder)."""
    rng = random.Random(SEED)
    errors = [_failure(n) for n in range(2)]
    record = recorder.record
    before = recorder.written
    dropped_before = sum(recorder.shed.values())
    started = time.perf_counter()
    sent = 0
    while sent < PERSIST_RECORDS:
        # As fast as recorded, the loop gets its turn every 200 records, as between separate handlers.
        elapsed = time.perf_counter() - started
        due = sent + 200 if offered_per_s is None else int(elapsed * offered_per_s)
        for n in range(sent + 1, min(due, PERSIST_RECORDS) + 1):
            failing = rng.random() < 0.05
            record(
                _KINDS[n % len(_KINDS)],
                "bench",
                ok=not failing,
                duration_ms=rng.lognormvariate(1, 0.5),
                error=errors[n % 2] if failing else None,
                guild_id=1_100_000_000_000_000_000,
                channel_id=1_100_000_000_000_000_010 + n % 5,
                user_id=1_100_000_000_000_001_000 + n % 40,
                message_id=1_100_000_000_005_000_000 + n,
                extra={"via": "slash"},
            )
            sent = n
        await asyncio.sleep(0 if offered_per_s is None else 0.001)
    await recorder.flush()
    elapsed = time.perf_counter() - started
    written = recorder.written - before
    dropped = sum(recorder.shed.values()) - dropped_before
    offered = "as fast as recorded" if offered_per_s is None else f"offered at {offered_per_s:,.0f}/s"
    _note(f"persist ({offered}): {written} written, {dropped} dropped in {elapsed:.2f} s")
    return written / elapsed, dropped


Persisted = tuple[float, int, int]  # rows/s as fast as recorded, dropped then, dropped at 20,000/s


async def _persist(recorder: ActionRecorder) -> Persisted:
    rate, dropped = await _burst(recorder)
    _, dropped_paced = await _burst(recorder, offered_per_s=PACED_PER_S)
    return rate, dropped, dropped_paced


async def _persist_through_services(settings: Settings) -> Persisted:
    """The bursts on services built by `build_services`; checks every row counted written is stored."""
    services: Services = await build_services(settings, watch_prompts=False)
    recorder = services.recorder
    try:
        await services.quiesce()
        figures = await _persist(recorder)
    finally:
        await services.aclose()
    rows = await _count(settings.database_target)
    if rows != recorder.written:
        raise AssertionError(f"{recorder.written} counted written but {rows} rows in actions")
    return figures


async def persist_rate(tmp: Path) -> Persisted:
    return await _persist_through_services(make_settings(tmp / "persist" / "data"))


async def persist_rate_postgresql(tmp: Path) -> Persisted:
    """The same bursts into a real PostgreSQL, on services built with `database.url` (one process
    running every shard, as on SQLite)."""
    server = start_postgres(tmp / "postgres")
    if isinstance(server, str):
        raise RuntimeError(server)
    try:
        url = server.url(server.create_database())
        return await _persist_through_services(
            make_settings(tmp / "persist-pg" / "data", database={"url": url})
        )
    finally:
        server.stop()


# -- retention while writing ---------------------------------------------------------------------


def _fill(db_path: Path, now: float) -> None:
    """1,000,000 rows 30 days old and 10,000 from the last hour, inserted directly (setup only)."""
    db = sqlite3.connect(db_path, isolation_level=None)
    rng = random.Random(SEED + 1)
    db.execute("BEGIN")
    sql = (
        "INSERT INTO actions (ts, kind, source, ok, duration_ms, guild_id, channel_id, user_id, fingerprint)"
        " VALUES (?, ?, 'bench', ?, ?, 1, 2, ?, ?)"
    )

    def rows(count: int, start: float, span: float) -> Any:
        for n in range(count):
            failing = rng.random() < 0.05
            yield (
                start + span * n / count,
                _KINDS[n % len(_KINDS)],
                int(not failing),
                rng.lognormvariate(1, 0.5),
                n % 40,
                f"fp{n % 50}" if failing else None,
            )

    db.executemany(sql, rows(EXPIRED_ROWS, now - 30 * 86400, 86400))
    db.executemany(sql, rows(FRESH_ROWS, now - 3600, 3500))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


async def prune_stall(tmp: Path) -> tuple[float, float]:
    db_path = tmp / "prune" / "actions.db"
    db = await open_database(db_path)
    await db.close()
    now = time.time()
    started = time.perf_counter()
    _fill(db_path, now)
    _note(f"prune: {EXPIRED_ROWS + FRESH_ROWS:,} rows inserted in {time.perf_counter() - started:.1f} s")
    recorder = ActionRecorder(
        database=db_path,
        ndjson_path=tmp / "prune" / "actions.ndjson",
        repo_root=REPO,
        clock=lambda: datetime.now(UTC),
    )
    writer = asyncio.create_task(recorder.run_writer())
    await asyncio.sleep(0.1)  # the writer has opened its connection
    recorded_at: list[float] = []
    worst = [0.0]
    done = asyncio.Event()

    async def produce() -> None:
        begun = time.perf_counter()
        while not done.is_set():
            due = int((time.perf_counter() - begun) * OFFERED_PER_S)
            while len(recorded_at) < due:
                n = len(recorded_at)
                recorder.record("command:roll", "bench", ok=True, duration_ms=2.0, extra={"n": n})
                recorded_at.append(time.perf_counter())
            await asyncio.sleep(0.001)

    async def watch() -> None:
        seen = 0
        while not done.is_set() or seen < len(recorded_at):
            written = recorder.written
            at = time.perf_counter()
            while seen < min(written, len(recorded_at)):
                worst[0] = max(worst[0], at - recorded_at[seen])
                seen += 1
            await asyncio.sleep(0.001)

    producer = asyncio.create_task(produce())
    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.5)  # steady state before the prune
    started = time.perf_counter()
    pruned = await recorder.prune(retention_days=14)
    prune_s = time.perf_counter() - started
    await asyncio.sleep(0.5)
    done.set()
    await producer
    await recorder.flush()
    await watcher
    await recorder.close()
    await writer
    rows = await _count(db_path)
    _note(f"prune: {pruned:,} rows pruned in {prune_s:.2f} s; {len(recorded_at)} records produced meanwhile")
    if pruned != EXPIRED_ROWS or rows != FRESH_ROWS + len(recorded_at) or recorder.shed:
        raise AssertionError(f"pruned {pruned}, {rows} rows left, {sum(recorder.shed.values())} dropped")
    return worst[0] * 1000, prune_s


# -- detector memory -----------------------------------------------------------------------------


def detector_memory() -> float:
    rng = random.Random(SEED + 2)
    pool = [
        ActionRecord(
            ts=0.0,
            kind=_KINDS[n % len(_KINDS)] if n % 3 else f"command:extra{n % 2}",
            source="bench",
            ok=rng.random() >= 0.05,
            duration_ms=round(rng.lognormvariate(1, 0.5), 3),
            error_type="ValueError",
            error_message="bad input",
            fingerprint=None,
            frames=[],
            extra={},
        )
        for n in range(4096)
    ]
    pool = [
        record if record.ok else replace(record, fingerprint=f"fp{n % 50:04d}")
        for n, record in enumerate(pool)
    ]
    signals = [0]

    def count(_: Signal) -> None:
        signals[0] += 1

    gc.collect()
    before = _peak_rss()
    detector = AnomalyDetector(ObserveConfig(announce_new_fingerprints=False), count)
    process = detector.process
    total = DETECTOR_RATE * DETECTOR_SECONDS
    step = 1 / DETECTOR_RATE
    ts = 1_800_000_000.0
    started = time.perf_counter()
    for n in range(total):
        process(replace(pool[n & 4095], ts=ts + n * step))
    grown = _peak_rss() - before
    _note(
        f"detector: {total:,} records in {time.perf_counter() - started:.1f} s, {signals[0]} signals, "
        f"tracking {detector.tracked()}"
    )
    return grown / 1_000_000


def _peak_rss() -> int:
    """The process's peak resident memory so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- writer on a saturated loop ------------------------------------------------------------------


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def writer_on_busy_loop(tmp: Path) -> float:
    recorder = ActionRecorder(
        database=tmp / "busy" / "actions.db",
        ndjson_path=tmp / "busy" / "actions.ndjson",
        repo_root=REPO,
        clock=lambda: datetime.now(UTC),
    )
    writer = asyncio.create_task(recorder.run_writer())
    await asyncio.sleep(0.1)
    stop = asyncio.Event()
    busy = [0.0]

    async def burn() -> None:
        # Pure-Python work in 1 ms slices, idling a millisecond only when more than 97% of the
        # time so far was busy. With `BURNERS` of these ready at once, the loop runs ~20 ms of
        # them between two looks at its selector (the only time it lets go of the GIL on its own),
        # as a loop with many busy handlers does; other threads get the GIL only when they ask for
        # it and wait out the 5 ms switch interval.
        while not stop.is_set():
            started = time.perf_counter()
            _spin(0.001)
            busy[0] += time.perf_counter() - started
            if busy[0] > LOOP_BUSY * (time.perf_counter() - begun):
                await asyncio.sleep(0.001)
            else:
                await asyncio.sleep(0)

    async def produce() -> int:
        begun = time.perf_counter()
        sent = 0
        while not stop.is_set():
            due = int((time.perf_counter() - begun) * OFFERED_PER_S)
            for _ in range(due - sent):
                recorder.record("command:roll", "bench", ok=True, duration_ms=2.0, extra={"n": sent})
                sent += 1
            await asyncio.sleep(0.001)
        return sent

    begun = time.perf_counter()
    burners = [asyncio.create_task(burn()) for _ in range(BURNERS)]
    producer = asyncio.create_task(produce())
    written_before = recorder.written
    started = time.perf_counter()
    await asyncio.sleep(LOOP_SECONDS)
    written = recorder.written - written_before
    elapsed = time.perf_counter() - started
    busy_share = busy[0] / elapsed
    stop.set()
    sent = await producer
    await asyncio.gather(*burners)
    await recorder.flush()
    await recorder.close()
    await writer
    _note(
        f"busy loop: the burners ran {busy_share:.1%} of the time (the rest: recording, the writer's "
        f"hand-overs, the GIL), "
        f"{sent} offered, {written} written in {elapsed:.1f} s, "
        f"{sum(recorder.shed.values())} dropped, {recorder.written} written by the end"
    )
    return written / elapsed


# -- main ----------------------------------------------------------------------------------------


# -- run pickup by a worker ----------------------------------------------------------------------

PICKUPS = 20


async def run_pickup(tmp: Path) -> float:
    """Median ms from deferring a queued run to a worker's executor starting it (module docstring)."""
    from procrastinate.job_context import JobContext

    from mendbot.improve.queue import RunQueue
    from mendbot.improve.runs import RunService

    server = start_postgres(tmp / "postgres-pickup")
    if isinstance(server, str):
        raise RuntimeError(server)
    try:
        url = server.url(server.create_database())
        db = await core.connect(url)
        runs = RunService(db, lambda: datetime.now(UTC))
        bot_side, worker_side = RunQueue(url), RunQueue(url)
        await bot_side.open()
        await worker_side.open()
        started: dict[int, float] = {}
        arrived = asyncio.Event()

        async def execute(run_id: int, context: JobContext) -> None:
            await runs.get(run_id)
            started[run_id] = time.perf_counter()
            arrived.set()

        worker = asyncio.create_task(worker_side.work(execute, concurrency=1, name="bench"))
        waits = []
        try:
            await asyncio.sleep(1.0)  # the worker is listening
            for n in range(PICKUPS):
                run = await runs.create("fix", 1, None, None, f"pickup {n}")
                arrived.clear()
                deferred = time.perf_counter()
                await bot_side.defer(run.id)
                await asyncio.wait_for(arrived.wait(), 30)
                waits.append((started[run.id] - deferred) * 1000)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            await bot_side.close()
            await worker_side.close()
            await db.close()
        print("run pickup ms, in order:", " ".join(f"{w:.0f}" for w in waits), file=sys.stderr)
        return sorted(waits)[len(waits) // 2]
    finally:
        server.stop()


# -- the detector's windows restored (a restart, a new leader) ------------------------------------

RESTORE_RATE = 10_000  # actions a second over the 10-minute window: 6,000,000 rows
RESTORE_SECONDS = 600


def _window_rows(now: float) -> Any:
    """RESTORE_RATE × RESTORE_SECONDS rows spread over the window before `now` (5% failing)."""
    rng = random.Random(SEED + 3)
    count = RESTORE_RATE * RESTORE_SECONDS
    for n in range(count):
        failing = rng.random() < 0.05
        yield (
            now - RESTORE_SECONDS + RESTORE_SECONDS * n / count,
            _KINDS[n % len(_KINDS)],
            int(not failing),
            rng.lognormvariate(1, 0.5),
            n % 40,
            f"fp{n % 50}" if failing else None,
        )


async def _restore_ms(db: Any, now: float) -> float:
    """The median of 3 `restore_windows` into a new detector; checks what it restored."""
    times = []
    for _ in range(3):
        detector = AnomalyDetector(ObserveConfig(), lambda _: None)
        started = time.perf_counter()
        await restore_windows(db, detector, upto=2**62, now=now)
        times.append((time.perf_counter() - started) * 1000)
        tracked = detector.tracked()
        if (tracked["kinds"], tracked["fingerprints"], tracked["latency_kinds"]) != (6, 50, 6):
            raise AssertionError(f"restored {tracked}")
    return sorted(times)[1]


async def detector_restore(tmp: Path) -> tuple[float, float]:
    """(ms on SQLite, ms on PostgreSQL) to restore the windows from a full window of stored actions."""
    import psycopg

    now = time.time()
    columns = "ts, kind, source, ok, duration_ms, guild_id, channel_id, user_id, fingerprint"
    path = tmp / "restore" / "actions.db"
    await (await open_database(path)).close()
    started = time.perf_counter()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.executemany(
        f"INSERT INTO actions ({columns}) VALUES (?, ?, 'bench', ?, ?, 1, 2, ?, ?)", _window_rows(now)
    )
    db.execute("COMMIT")
    db.close()
    _note(
        f"restore: {RESTORE_RATE * RESTORE_SECONDS:,} rows in SQLite in {time.perf_counter() - started:.0f} s"
    )
    connection = await open_database(path)
    try:
        on_sqlite = await _restore_ms(connection, now)
    finally:
        await connection.close()
    server = start_postgres(tmp / "postgres-restore")
    if isinstance(server, str):
        raise RuntimeError(server)
    try:
        url = server.url(server.create_database())
        await (await core.open_postgresql(url)).close()  # the schema
        started = time.perf_counter()
        with psycopg.connect(url) as conn:
            with conn.cursor().copy(f"COPY actions ({columns}) FROM STDIN") as copy:
                for ts, kind, ok, duration, user, fingerprint in _window_rows(now):
                    copy.write_row((ts, kind, "bench", ok, duration, 1, 2, user, fingerprint))
            conn.execute("ANALYZE actions")
        _note(f"restore: the same rows in PostgreSQL in {time.perf_counter() - started:.0f} s")
        postgresql = await core.open_postgresql(url)
        try:
            on_postgresql = await _restore_ms(postgresql, now)
        finally:
            await postgresql.close()
    finally:
        server.stop()
    return on_sqlite, on_postgresql


# -- leadership moving between bot processes -----------------------------------------------------

FAILOVER_ROUNDS = 5


async def leader_failover(tmp: Path) -> list[float]:
    """Seconds from kill -9 of the leading `mendbot run` process to the other one leading (its
    /health: leader, tailing the actions), over FAILOVER_ROUNDS; a new process takes the dead
    one's shard before the next round."""
    import aiohttp

    from mendbot.trust.loopback_discord import DiscordDouble
    from tests.harness.live_bot import LiveBot, live_config

    server = start_postgres(tmp / "postgres-failover")
    if isinstance(server, str):
        raise RuntimeError(server)
    try:
        url = server.url(server.create_database())
        async with DiscordDouble() as discord_api, aiohttp.ClientSession() as http:

            async def leads(bot: LiveBot) -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{bot.health_port}/health") as response:
                        body = await response.json()
                except (aiohttp.ClientError, ValueError):
                    return False
                return bool(body.get("leader")) and body.get("actions_tail") is not None

            async def start(shard: int, n: int) -> LiveBot:
                home = tmp / "failover" / f"shard-{shard}-{n}"
                config = live_config(
                    discord_api,
                    home,
                    database={"url": url},
                    discord={"shard_count": 2, "shard_ids": [shard]},
                )
                return await LiveBot.start(discord_api, config, home)

            async def until_leads(bot: LiveBot) -> None:
                while not await leads(bot):
                    if not bot.running:
                        raise bot.failure("ended while waiting to lead")
                    await asyncio.sleep(0.02)  # polling /health: the figure is exact to 20 ms

            bots = {0: await start(0, 0)}
            await asyncio.wait_for(until_leads(bots[0]), 60)
            bots[1] = await start(1, 0)
            times = []
            try:
                for round_ in range(1, FAILOVER_ROUNDS + 1):
                    leading = [shard for shard, bot in bots.items() if await leads(bot)]
                    if len(leading) != 1:
                        raise AssertionError(f"the processes of shards {leading} lead")
                    leader, other = leading[0], 1 - leading[0]
                    killed = time.perf_counter()
                    await bots[leader].kill()
                    await asyncio.wait_for(until_leads(bots[other]), 60)
                    times.append(time.perf_counter() - killed)
                    _note(
                        f"failover round {round_}: shard {other}'s process leads {times[-1]:.2f} s after"
                        " the kill"
                    )
                    bots[leader] = await start(leader, round_)
            finally:
                for bot in bots.values():
                    await bot.stop()
        return times
    finally:
        server.stop()


ROLLOUT_WATCH_S = 2.0


def _rollout_repo(root: Path) -> tuple[Path, str, str]:
    """An origin with two commits (the second changes a cog): (its path, the first, the second)."""
    origin = root / "origin"
    origin.mkdir(parents=True)
    (origin / "cogs").mkdir()
    (origin / "cogs" / "x.py").write_text("X = 1\n")
    who = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    shas = []
    for step in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        [*who, "commit", "-qm", "one"],
        ["rev-parse", "HEAD"],
    ):
        shas.append(_git(origin, *step))
    (origin / "cogs" / "x.py").write_text("X = 2\n")
    _git(origin, *who, "commit", "-qam", "two")
    return origin, shas[-1], _git(origin, "rev-parse", "HEAD")


def _git(repo: Path, *args: str) -> str:
    import subprocess

    done = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True)
    return done.stdout.strip()


async def _polled(check: Any, every: float = 0.02) -> None:
    while True:
        if await check():
            return
        await asyncio.sleep(every)


async def rollout_canary_to_all(tmp: Path) -> float:
    """Seconds from a merge recorded to every process at the merged commit, the watch excluded
    (module docstring)."""
    import contextlib

    from mendbot.scale.leader import PostgresLeader, lock_key

    root = tmp / "rollout"
    origin, first, second = _rollout_repo(root)
    server = start_postgres(tmp / "postgres-rollout")
    if isinstance(server, str):
        raise RuntimeError(server)
    try:
        url = server.url(server.create_database())
        async with contextlib.AsyncExitStack() as stack:
            processes: list[Services] = []
            for shard in (1, 0):  # shards 1 starts first and leads; shards 0 is the canary
                checkout = root / f"shard-{shard}"
                _git(root, "clone", "-q", str(origin), str(checkout))
                _git(checkout, "reset", "-q", "--hard", first)
                settings = make_settings(
                    root / f"data-{shard}",
                    repo_dir=checkout,
                    database={"url": url},
                    discord={"shard_count": 2, "shard_ids": [shard]},
                    deploy={
                        "watch_hand_edits": False,
                        "watch_window_s": ROLLOUT_WATCH_S,
                        "canary_shards": [0],
                    },
                )
                leadership = PostgresLeader(url, lock_key("mendbot"), application_name=f"bench {shard}")
                services = await build_services(settings, watch_prompts=False, leadership=leadership)
                stack.push_async_callback(services.aclose)
                services.cluster.poll_s = 0.1
                processes.append(services)
            leader, canary = processes

            async def leads() -> bool:
                return leader.cluster.leadership.is_leader

            await _polled(leads, 0.05)
            leader.deploy.prove_live = None  # nothing to replay: the watch and the records decide
            runs = leader.improve.runs
            run = await runs.create("fix", 1, None, None, "bench rollout")
            for state in ("editing", "verifying", "awaiting_approval"):
                await runs.transition(run.id, state, actor="bench")
            run = await runs.transition(run.id, "merging", actor="bench", base_sha=first, verified_sha=second)

            async def everyone_there() -> bool:
                return set((await leader.cluster.positions()).values()) == {second}

            started = time.perf_counter()
            await leader.deploy._go_live(run, second)
            assert canary.cluster.loaded_sha == second and leader.cluster.loaded_sha == first
            await _polled(everyone_there)
            took = time.perf_counter() - started - ROLLOUT_WATCH_S
            print(
                f"rollout: canary first, all at {second[:7]} after {took:.2f} s + the watch", file=sys.stderr
            )
            return took
    finally:
        server.stop()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mendbot-scale-") as name:
        tmp = Path(name)
        configure_logging(tmp / "logs", console_level="CRITICAL", redactor=Redactor())
        only = sys.argv[1:]
        if only == ["run_pickup_ms"]:
            _emit("run_pickup_ms", asyncio.run(run_pickup(tmp)), "ms")
            return
        if only == ["leader_failover_s"]:
            _failover_figures(tmp)
            return
        if only == ["detector_restore_ms"]:
            _restore_figures(tmp)
            return
        if only == ["rollout_canary_to_all_s"]:
            _emit("rollout_canary_to_all_s", asyncio.run(rollout_canary_to_all(tmp)), "s", 2)
            return
        # First, while the process's peak memory is still its start-up's: the figure is its growth.
        _emit("detector_mb_at_20k_per_s", detector_memory(), "MB", 2)
        for store, run in (("", persist_rate), ("_postgresql", persist_rate_postgresql)):
            rate, dropped, dropped_paced = asyncio.run(run(tmp))
            _emit(f"persist_rate_per_s{store}", rate, "records/s", 0)
            _emit(f"persist_dropped{store}", dropped, "records", 0)
            _emit(f"persist_dropped_at_20k_per_s{store}", dropped_paced, "records", 0)
        stall_ms, prune_s = asyncio.run(prune_stall(tmp))
        _emit("prune_max_writer_stall_ms", stall_ms, "ms")
        _emit("prune_s", prune_s, "s", 2)
        _emit("writer_rate_at_97pct_loop", asyncio.run(writer_on_busy_loop(tmp)), "records/s", 0)
        _emit("run_pickup_ms", asyncio.run(run_pickup(tmp)), "ms")
        _restore_figures(tmp)
        _failover_figures(tmp)
        _emit("rollout_canary_to_all_s", asyncio.run(rollout_canary_to_all(tmp)), "s", 2)


def _restore_figures(tmp: Path) -> None:
    on_sqlite, on_postgresql = asyncio.run(detector_restore(tmp))
    _emit("detector_restore_ms", on_sqlite, "ms", 0)
    _emit("detector_restore_ms_postgresql", on_postgresql, "ms", 0)


def _failover_figures(tmp: Path) -> None:
    times = asyncio.run(leader_failover(tmp))
    _emit("leader_failover_s", statistics.median(times), "s", 2)
    _emit("leader_failover_max_s", max(times), "s", 2)


if __name__ == "__main__":
    main()
