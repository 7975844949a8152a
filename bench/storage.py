"""Storage benchmark: what retention does to the disk, what a burst does to the records, and what a
locked database costs a user, with the default `storage.*` and `observe.*` settings.

Prints one `name value unit` line per figure:

- `prune_peak_disk_ratio`: a database of 1,000,000 expired action rows (five days of them, made in
  SQL, a month old) and the bot's recorder writing 1,000 records a second meanwhile; retention prunes
  them all. The figure is the largest the database's files (the file, its WAL and shared memory) were
  while it ran — sampled every 2 ms on a thread — over what they were when it began. Target ≤ 1.1
  (the default margin is 5 %). `prune_end_disk_ratio`: after the prune over before; `prune_s` how long
  it took. `prune_peak_disk_ratio_postgresql`, `prune_end_disk_ratio_postgresql`: the same on a real
  PostgreSQL (the embedded server the tests use; `pg_database_size`, sampled every 20 ms), with
  900,000 of the rows in their days' partitions and 100,000 in the default one.
- `burst_records_lost`: 100,000 action records recorded in one go on services built by the real
  `build_services` (the loop never yields between them): how many are not in the database once
  `flush()` returns — shed, or missing from `actions` (`count(*)`). Target 0.
  `burst_records_lost_postgresql`: the same into PostgreSQL.

- `save_given_up_s`: how long `/remind` takes to answer "I couldn't save that" while another
  process holds the database's write lock for good (the bound: write_attempts × busy_timeout plus
  the backoffs).
- `save_ride_out_s`: how long `/remind` takes to answer "Okay" when the other process lets go of
  the lock 1 s after the command was sent (the cost of riding out a short lock).
- `records_lost_short_lock`: action records not in the database when 500 are recorded during that
  1 s lock (they wait in the journal: expected 0).

The bot runs in the virtual Discord (the playground's), in a temp dir; the lock is held by a
separate Python process with `BEGIN EXCLUSIVE`, as in the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ["MENDBOT_CONFIG"] = os.devnull
for _name in ("DISCORD_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GITHUB_TOKEN"):
    os.environ.pop(_name, None)

from mendbot.db import core, open_database  # noqa: E402
from mendbot.db.migrate import upgrade_postgresql  # noqa: E402
from mendbot.kernel.log import configure_logging  # noqa: E402
from mendbot.kernel.settings import Settings, load_settings  # noqa: E402
from mendbot.observe.recorder import ActionRecorder  # noqa: E402
from mendbot.runtime.app import MendBot  # noqa: E402
from mendbot.runtime.services import build_services  # noqa: E402
from mendbot.tools.playground import VirtualWorld, virtual_world  # noqa: E402
from mendbot.trust.redact import Redactor  # noqa: E402
from tests.harness.postgres import start_postgres  # noqa: E402
from tests.harness.storage import old_actions  # noqa: E402

_HOLDER = """
import select, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
select.select([sys.stdin], [], [], float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def _emit(name: str, value: object, unit: str) -> None:
    print(f"{name} {value} {unit}", flush=True)


async def _lock(db_path: Path, seconds: float) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLDER,
        str(db_path),
        str(seconds),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    await process.stdout.readline()
    return process


async def _remind(world: VirtualWorld, text: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = await world.users["alice"].slash(world.general, "remind", when="10m", text=text)
    assert result.response is not None
    return time.perf_counter() - started, result.response.content


async def measure(world: VirtualWorld, db_path: Path) -> None:
    holder = await _lock(db_path, 120)
    elapsed, answer = await _remind(world, "given up")
    assert "couldn't save" in answer, answer
    assert holder.stdin is not None
    holder.stdin.close()
    await holder.wait()
    _emit("save_given_up_s", round(elapsed, 2), "s")
    await world.quiesce()

    recorder = world.bot.services.recorder
    dropped_before = sum(recorder.shed.values())
    holder = await _lock(db_path, 1.0)
    for _ in range(500):
        recorder.record("bench:spam", "bench", ok=True, duration_ms=0)
    elapsed, answer = await _remind(world, "ridden out")
    assert "Okay" in answer, answer
    await holder.wait()
    await world.quiesce()
    _emit("save_ride_out_s", round(elapsed, 2), "s")
    rows = int(
        await core.scalar(world.bot.services.db, "SELECT count(*) FROM actions WHERE kind = 'bench:spam'")
    )
    _emit("records_lost_short_lock", 500 - rows + sum(recorder.shed.values()) - dropped_before, "records")


# -- retention ------------------------------------------------------------------------------------


def _store_bytes(database: Path | str) -> Callable[[], int]:
    """What the store takes on disk: the SQLite file with its WAL and shared memory, or the PostgreSQL
    database's size."""
    if str(database).startswith("postgresql://"):
        import psycopg

        conn = psycopg.connect(str(database), autocommit=True)

        def pg_size() -> int:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            return int(row[0]) if row else 0

        return pg_size
    files = [Path(f"{database}{suffix}") for suffix in ("", "-wal", "-shm")]

    def file_size() -> int:
        total = 0
        for path in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(path).st_size
        return total

    return file_size


async def prune_disk(database: Path | str, logs: Path) -> tuple[float, float, float]:
    """(peak over before, after over before, seconds) of a prune of 1,000,000 expired rows while the
    recorder writes 1,000 records a second."""
    now = time.time()
    if str(database).startswith("postgresql://"):
        await asyncio.to_thread(upgrade_postgresql, str(database))
        await asyncio.to_thread(old_actions, database, 900_000, now - 30 * 86400, 5 * 86400)
        await asyncio.to_thread(old_actions, database, 100_000, now - 40 * 86400, 86400, partitioned=False)
        every_s = 0.02
    else:
        await (await open_database(database)).close()
        await asyncio.to_thread(old_actions, database, 1_000_000, now - 30 * 86400, 5 * 86400)
        every_s = 0.002
    measure = _store_bytes(database)
    recorder = ActionRecorder(
        database=database,
        ndjson_path=logs / "actions.ndjson",
        repo_root=REPO,
        clock=lambda: datetime.now(UTC),
    )
    writer = asyncio.create_task(recorder.run_writer())
    await recorder.flush()
    done = asyncio.Event()

    async def produce() -> None:
        begun, sent = time.perf_counter(), 0
        while not done.is_set():
            while sent < int((time.perf_counter() - begun) * 1000):
                recorder.record("bench:during", "bench", ok=True, duration_ms=2.0, extra={"n": sent})
                sent += 1
            await asyncio.sleep(0.001)

    producer = asyncio.create_task(produce())
    await asyncio.sleep(0.3)
    before = largest = measure()
    stop = threading.Event()

    def sample() -> None:
        nonlocal largest
        while not stop.wait(every_s):
            largest = max(largest, measure())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    pruned = await recorder.prune(retention_days=14)
    took = time.perf_counter() - started
    stop.set()
    sampler.join()
    after = measure()
    largest = max(largest, after)
    done.set()
    await producer
    await recorder.flush()
    await recorder.close()
    await writer
    _note(f"prune: {pruned:,} rows in {took:.1f} s; {before:,} bytes, at most {largest:,}, then {after:,}")
    if pruned != 1_000_000 or recorder.shed:
        raise AssertionError(f"pruned {pruned}, shed {dict(recorder.shed)}")
    return largest / before, after / before, took


# -- a burst --------------------------------------------------------------------------------------


async def burst_lost(settings: Settings) -> int:
    """Records of 100,000 recorded at once (on services built by `build_services`) not in the database
    once the recorder has flushed."""
    services = await build_services(settings, watch_prompts=False)
    recorder = services.recorder
    try:
        await services.quiesce()
        error = ZeroDivisionError("division by zero")
        for n in range(100_000):
            if n % 20:
                recorder.record(
                    "bench:burst", "bench", ok=True, duration_ms=1.5, user_id=n % 40, extra={"n": n}
                )
            else:
                recorder.record(
                    "bench:burst", "bench", ok=False, duration_ms=1.5, error=error, extra={"n": n}
                )
        await recorder.flush()
        rows = int(await core.scalar(services.db, "SELECT count(*) FROM actions WHERE kind = 'bench:burst'"))
        _note(f"burst: {rows:,} of 100,000 in the database, {sum(recorder.shed.values())} shed")
    finally:
        await services.aclose()
    return 100_000 - rows


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def locked(tmp: Path) -> None:
    data = tmp / "data"
    settings = load_settings(data_dir=data, repo_dir=tmp, health={"enabled": False}, _env_file=None)
    services = await build_services(settings, watch_prompts=False)
    bot = MendBot(services)
    try:
        async with virtual_world(bot, settle_timeout=120) as world:
            await measure(world, settings.db_path)
    finally:
        await services.aclose()


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        configure_logging(tmp / "logs", console_level="CRITICAL", redactor=Redactor())
        peak, end, took = asyncio.run(prune_disk(tmp / "prune" / "mendbot.db", tmp / "prune" / "logs"))
        _emit("prune_peak_disk_ratio", round(peak, 3), "x")
        _emit("prune_end_disk_ratio", round(end, 3), "x")
        _emit("prune_s", round(took, 1), "s")
        settings = load_settings(
            data_dir=tmp / "burst", repo_dir=tmp, health={"enabled": False}, _env_file=None
        )
        _emit("burst_records_lost", asyncio.run(burst_lost(settings)), "records")
        server = start_postgres(tmp / "postgres")
        if isinstance(server, str):
            _note(f"PostgreSQL figures skipped: {server}")
        else:
            try:
                url = server.url(server.create_database())
                peak, end, _ = asyncio.run(prune_disk(url, tmp / "prune-pg" / "logs"))
                _emit("prune_peak_disk_ratio_postgresql", round(peak, 3), "x")
                _emit("prune_end_disk_ratio_postgresql", round(end, 3), "x")
                settings = load_settings(
                    data_dir=tmp / "burst-pg",
                    repo_dir=tmp,
                    health={"enabled": False},
                    database={"url": server.url(server.create_database())},
                    _env_file=None,
                )
                _emit("burst_records_lost_postgresql", asyncio.run(burst_lost(settings)), "records")
            finally:
                server.stop()
        asyncio.run(locked(tmp))


if __name__ == "__main__":
    main()
