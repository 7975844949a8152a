"""Observability benchmark: what recording, persisting and detecting actions cost.

Prints one `name value unit` line per figure (logs go to stderr, diagnostics too):

- `record_overhead_median_us`, `record_overhead_p99_us`: the event-loop cost of one
  `ActionRecorder.record(...)` call, timed with `perf_counter_ns` around each of 50,000 calls,
  on services assembled by the real `build_services` (so incidents.observe and then
  detector.process are subscribed exactly as in the app, and the recorder's journal and store
  run). The mix is mostly successful actions with a small `extra`, plus ~5% failures carrying a freshly
  raised exception from one of two call sites in this file, so fingerprinting runs; the two
  fingerprints open two incidents (repeat rule) once, after which failures just update them.
  The loop yields to the event loop after every call, as separate handlers would, so incident
  tasks and the recorder's journal and store threads run in between (busy all along, competing for
  the GIL: a pessimistic load); only the `record` call itself is timed. Failures
  cost several times an ok record (fingerprinting), so at 5% they set the p99. The queue is
  sized so nothing is shed (what is shed is reported on stderr).
- `persist_rate_per_s`: 100,000 records through `record` into SQLite (and the journal) by the real
  recorder with the product's default queue (10,000), from the first record to `flush()` completing
  (every record in the database); the producer yields every 200 records, as separate handlers would,
  and never waits for the writer (the product has no back-pressure). Only rows that reached `actions`
  count (checked with `count(*)`); records shed (none are expected: the journal keeps up) are
  reported on stderr. `bench/scale.py` reports the same figure next to the other scale figures.
- `allin_cpu_us`, `structlog_json_cpu_us`, `allin_cpu_ratio_vs_structlog`: side by side in this
  process, alternating rounds of `ALLIN_RECORDS`: the CPU time of one action recorded all in — a
  handler's capture opened, its reply captured and digested, `ActionRecorder.record` (redaction, the
  record, its journal line and row), the journal thread's append and the store thread's insert into
  SQLite, i.e. this process's CPU time, every thread's, until `flush()` returns with every record in
  the database — against the line a user would write instead: one structlog JSON line carrying the
  same fields, as structlog's bare production set-up writes it (`add_log_level`, an ISO `TimeStamper`,
  `JSONRenderer`, `WriteLogger` to a file; `structlog_json_cpu_us`). The ratio is the median of the
  rounds' ratios. `allin_loop_cpu_us` and `allin_threads_cpu_us` split the first figure between the
  event loop's thread and the recorder's journal and store threads. Apart, as a second reference:
  mendbot's own log line for the same fields (`configure_logging`: the stdlib handler, redaction, the
  JSON file; `mendbot_log_line_cpu_us`, `allin_cpu_ratio_vs_mendbot_log_line`).
- `detector_rate_per_s`: `AnomalyDetector.process` alone over 200,000 prebuilt records (several
  kinds, varied durations, ~5% failures over a few fingerprints), emit callback only counts.
- `detect_latency_ms`: end to end in the virtual Discord with `tests.fixtures.buggy_dice` (its
  `/roll 2d6` raises ZeroDivisionError) and `announce_new_fingerprints` off: alice runs
  `/roll 2d6` until an incident announcement appears in #dev; the figure is the time from just
  before the slash call that crosses the threshold to `world.quiesce()` returning with the
  announcement present. Median of several fresh worlds.

Run from the repo root: `.venv/bin/python bench/observe.py`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ["MENDBOT_CONFIG"] = os.devnull
for _name in ("DISCORD_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GITHUB_TOKEN"):
    os.environ.pop(_name, None)

from mendbot.db import core  # noqa: E402
from mendbot.db.records import ActionRecord  # noqa: E402
from mendbot.kernel.log import configure_logging, get_logger  # noqa: E402
from mendbot.kernel.sections import ObserveConfig  # noqa: E402
from mendbot.kernel.settings import Settings  # noqa: E402
from mendbot.observe.capture import start_capture  # noqa: E402
from mendbot.observe.detector import AnomalyDetector, Signal  # noqa: E402
from mendbot.observe.fingerprint import fingerprint  # noqa: E402
from mendbot.observe.recorder import ActionRecorder  # noqa: E402
from mendbot.runtime.services import REPO_ROOT, Services, build_services  # noqa: E402
from mendbot.trust.redact import Redactor  # noqa: E402
from tests.harness.discord import make_settings, running_world  # noqa: E402

_COUNT_ACTIONS = "SELECT count(*) FROM actions"

OVERHEAD_CALLS = 50_000
PERSIST_RECORDS = 100_000
DETECTOR_RECORDS = 200_000
LATENCY_RUNS = 5
ALLIN_RECORDS = 20_000
ALLIN_ROUNDS = 9
FAILURE_SHARE = 0.05
SEED = 20240601

_KINDS: list[tuple[str, str, float]] = [  # kind, source, typical duration in ms
    ("command:roll", "Dice", 3.0),
    ("listener:on_message", "Chat", 1.5),
    ("chat:reply", "chat", 900.0),
    ("command:remind", "Reminders", 6.0),
    ("task:reminders", "Reminders", 2.0),
    ("app:incidents", "Incidents", 12.0),
]


# -- two call sites that fail for real, so fingerprints have frames in this repository -------------


def _parse_notation(text: str) -> int:
    count, _, sides = text.partition("d")
    return int(count) * int(sides)


def _validate_roll(text: str) -> int:
    return _parse_notation(text)


def _scale(sides: int) -> int:
    return 60 // (sides - 6)


def _roll_scaled(sides: int) -> int:
    return _scale(sides) + 1


def _raise_failure(site: int, rng: random.Random) -> Exception:
    """Raise and catch a real exception from one of two call sites; returns it."""
    try:
        if site == 0:
            _validate_roll(f"{rng.randint(1, 9)}x{rng.randint(2, 20)}")
        else:
            _roll_scaled(6)
    except Exception as exc:
        return exc
    raise AssertionError("the call site did not fail")


# -- the mix -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    kind: str
    source: str
    ok: bool
    duration_ms: float
    site: int  # -1: no failure; 0/1: which call site raises
    ids: dict[str, Any]  # guild, channel, user and message ids
    extra: dict[str, Any] | None
    error: Exception | None = field(default=None)


def _mix(count: int, rng: random.Random) -> list[_Call]:
    guild = 1_100_000_000_000_000_000
    users = [guild + 1_000 + n for n in range(40)]
    channels = [guild + 10 + n for n in range(5)]
    calls: list[_Call] = []
    for n in range(count):
        kind, source, typical = _KINDS[rng.randrange(len(_KINDS))]
        failing = rng.random() < FAILURE_SHARE
        extra: dict[str, Any] | None
        if kind.startswith("command:"):
            extra = {"via": rng.choice(["slash", "prefix"])}
        elif kind == "chat:reply":
            extra = {"model": "claude-sonnet", "tokens_in": rng.randint(50, 4000), "tokens_out": 120}
        elif kind.startswith("listener:"):
            extra = None
        else:
            extra = {"due": rng.randint(0, 5)}
        calls.append(
            _Call(
                kind=kind,
                source=source,
                ok=not failing,
                duration_ms=typical * rng.lognormvariate(0, 0.5),
                site=rng.randrange(2) if failing else -1,
                ids={
                    "guild_id": guild,
                    "channel_id": rng.choice(channels),
                    "user_id": rng.choice(users),
                    "message_id": guild + 5_000_000 + n,
                },
                extra=extra,
            )
        )
    return calls


# -- helpers -----------------------------------------------------------------------------------


def _note(text: str) -> None:
    print(text, file=sys.stderr)


def _emit(name: str, value: float, unit: str, digits: int = 1) -> None:
    print(f"{name} {value:.{digits}f} {unit}", flush=True)


def _percentile(ordered: list[int], share: float) -> int:
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _services(data_dir: Path, **observe: Any) -> Services:
    settings: Settings = make_settings(data_dir, observe=observe)
    return await build_services(settings, watch_prompts=False)


# -- record overhead -----------------------------------------------------------------------------


async def record_overhead(tmp: Path) -> tuple[float, float]:
    rng = random.Random(SEED)
    calls = _mix(OVERHEAD_CALLS, rng)
    services = await _services(tmp / "overhead", queue_size=OVERHEAD_CALLS + 1000)
    recorder = services.recorder
    record = recorder.record
    samples: list[int] = []
    failed: list[int] = []
    clock = time.perf_counter_ns
    try:
        for call in calls:
            error = _raise_failure(call.site, rng) if call.site >= 0 else None
            started = clock()
            record(
                call.kind,
                call.source,
                ok=call.ok,
                duration_ms=call.duration_ms,
                error=error,
                extra=call.extra,
                **call.ids,
            )
            elapsed = clock() - started
            samples.append(elapsed)
            if error is not None:
                failed.append(elapsed)
            await asyncio.sleep(0)
        await services.quiesce()
        health = services.health()
        _note(
            f"record overhead: {health['actions_recorded']} recorded, {health['actions_shed']} shed, "
            f"{len(services.incidents.active())} incidents, {services.detector.processed} detected"
        )
    finally:
        await services.aclose()
    samples.sort()
    failed.sort()
    _note(
        f"record overhead: failures (n={len(failed)}) median {statistics.median(failed) / 1000:.1f} us, "
        f"p90 {_percentile(failed, 0.9) / 1000:.1f} us"
    )
    return statistics.median(samples) / 1000, _percentile(samples, 0.99) / 1000


# -- persist rate --------------------------------------------------------------------------------


async def persist_rate(tmp: Path) -> float:
    rng = random.Random(SEED + 1)
    calls = _mix(PERSIST_RECORDS, rng)
    errors = [_raise_failure(site, rng) for site in (0, 1)]
    for call in calls:
        if call.site >= 0:
            call.error = errors[call.site]
    services = await _services(tmp / "persist")
    recorder = services.recorder
    record = recorder.record
    try:
        await services.quiesce()
        before = int(await core.scalar(services.db, _COUNT_ACTIONS))
        written_before, shed_before, recorded_before = (
            recorder.written,
            sum(recorder.shed.values()),
            recorder.recorded,
        )
        started = time.perf_counter()
        for n, call in enumerate(calls, 1):
            record(
                call.kind,
                call.source,
                ok=call.ok,
                duration_ms=call.duration_ms,
                error=call.error,
                extra=call.extra,
                **call.ids,
            )
            if n % 200 == 0:
                await asyncio.sleep(0)
        await recorder.flush()
        elapsed = time.perf_counter() - started
        await services.quiesce()
        health = recorder.health()
        after = int(await core.scalar(services.db, _COUNT_ACTIONS))
        _note(
            f"persist: {health['actions_written']} written, {health['actions_shed']} shed, "
            f"{health['action_write_errors']} write errors, {after - before} rows in {elapsed:.2f} s"
        )
        written, shed = recorder.written - written_before, sum(recorder.shed.values()) - shed_before
        assert after - before == written, (before, after, health)
        assert written + shed == recorder.recorded - recorded_before >= PERSIST_RECORDS, health
    finally:
        await services.aclose()
    return (after - before) / elapsed


# -- all in, against a structlog JSON line ----------------------------------------------------------

_GUILD, _CHANNEL, _USER = 1_100_000_000_000_000_001, 1_100_000_000_000_000_002, 1_100_000_000_000_000_003
_INVOCATION = {"name": "/roll", "options": {"dice": "2d6"}}
_REPLY = "🎲 `2d6` → 7 (3, 4)"


def _thread_cpu_s() -> dict[int, float]:
    """User plus system CPU seconds of each of this process's threads so far, by thread id."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that just ended
        found[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return found


async def _allin_round(recorder: ActionRecorder, count: int) -> tuple[float, float]:
    """(the loop's thread's, the other threads') CPU seconds for `count` actions captured, recorded,
    journaled and stored."""
    await recorder.flush()
    loop_thread = threading.get_native_id()
    before, started = _thread_cpu_s(), time.process_time()
    for n in range(count):
        capture = start_capture("app:roll", _INVOCATION)
        capture.add_reply(_REPLY)
        capture.closed = True
        recorder.record(
            "app:roll",
            "Dice",
            ok=True,
            duration_ms=1.234,
            guild_id=_GUILD,
            channel_id=_CHANNEL,
            user_id=_USER,
            extra={"via": "slash"},
            invocation=capture.invocation,
            reply=capture.reply_digest(),
            samples=capture.samples(),
        )
        if n % 200 == 199:
            await asyncio.sleep(0)  # separate handlers: the loop gets its turns
    await recorder.flush()
    total = time.process_time() - started
    after = _thread_cpu_s()
    loop = after.get(loop_thread, 0.0) - before.get(loop_thread, 0.0)
    # process_time() is finer than /proc's ticks: the threads' share is the rest of it
    return loop, max(0.0, total - loop)


def _structlog_round(logger: Any, count: int) -> float:
    """CPU seconds for `count` JSON lines with the same fields."""
    started = time.process_time()
    for _ in range(count):
        logger.info(
            "app:roll",
            source="Dice",
            ok=True,
            duration_ms=1.234,
            guild_id=_GUILD,
            channel_id=_CHANNEL,
            user_id=_USER,
            extra={"via": "slash"},
            invocation=_INVOCATION,
            reply={"text": _REPLY, "messages": 1},
        )
    return time.process_time() - started


@dataclass(frozen=True)
class AllIn:
    """Per record, in µs of CPU: all in (and its threads' parts), and the two log lines."""

    allin: float
    loop: float
    threads: float
    plain_line: float
    mendbot_line: float
    ratio: float  # all in / structlog's bare JSON line, median of the rounds' ratios
    mendbot_ratio: float  # all in / mendbot's own JSON log line (apart: not the reference asked for)


async def allin_vs_structlog(tmp: Path) -> AllIn:
    """Alternating rounds: an action recorded all in, structlog's bare JSON line, mendbot's own."""
    import structlog

    directory = tmp / "allin"
    directory.mkdir()
    recorder = ActionRecorder(
        database=directory / "mendbot.db",
        ndjson_path=directory / "logs" / "actions.ndjson",
        repo_root=REPO_ROOT,
        clock=lambda: datetime.now(UTC),
        timestamp=time.time,  # as build_services gives it with the real clock
        # as Redactor.from_settings with the Discord, model and GitHub credentials set
        redactor=Redactor(["discord." + "x" * 40, "sk-ant-" + "y" * 40, "ghp_" + "z" * 36]),
    )
    writer = asyncio.create_task(recorder.run_writer())
    with (directory / "structlog.jsonl").open("w") as sink:
        logger = structlog.wrap_logger(
            structlog.WriteLogger(sink),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        )
        # The line mendbot writes for an event: configure_logging's pipeline (stdlib handler, redaction,
        # JSON file), as main() set it up.
        mendbot_logger = get_logger("bench.allin")
        try:
            await _allin_round(recorder, 1000)  # warm-up: the threads start, caches fill
            _structlog_round(logger, 1000)
            _structlog_round(mendbot_logger, 1000)
            rounds = []
            for _ in range(ALLIN_ROUNDS):
                loop, threads = await _allin_round(recorder, ALLIN_RECORDS)
                plain = _structlog_round(logger, ALLIN_RECORDS)
                own = _structlog_round(mendbot_logger, ALLIN_RECORDS)
                rounds.append((loop, threads, plain, own))
        finally:
            await recorder.close()
            await writer
    assert not recorder.shed and recorder.written == recorder.recorded, recorder.health()
    per = 1e6 / ALLIN_RECORDS
    return AllIn(
        allin=statistics.median((r[0] + r[1]) for r in rounds) * per,
        loop=statistics.median(r[0] for r in rounds) * per,
        threads=statistics.median(r[1] for r in rounds) * per,
        plain_line=statistics.median(r[2] for r in rounds) * per,
        mendbot_line=statistics.median(r[3] for r in rounds) * per,
        ratio=statistics.median((r[0] + r[1]) / r[2] for r in rounds),
        mendbot_ratio=statistics.median((r[0] + r[1]) / r[3] for r in rounds),
    )


# -- detector rate -------------------------------------------------------------------------------


def detector_rate() -> float:
    rng = random.Random(SEED + 2)
    fingerprints = [fingerprint(_raise_failure(site, rng), REPO_ROOT) for site in (0, 1)]
    extra_prints = [(f"{n:016x}", ["bench/observe.py:1:elsewhere"]) for n in range(4)]
    prints = fingerprints + extra_prints
    records: list[ActionRecord] = []
    ts = 1_700_000_000.0
    for _ in range(DETECTOR_RECORDS):
        kind, source, typical = _KINDS[rng.randrange(len(_KINDS))]
        ts += rng.expovariate(100.0)  # ~100 actions a second: windows hold and expire events
        failing = rng.random() < FAILURE_SHARE
        print_id, frames = prints[rng.randrange(len(prints))] if failing else (None, [])
        records.append(
            ActionRecord(
                ts=ts,
                kind=kind,
                source=source,
                ok=not failing,
                duration_ms=round(typical * rng.lognormvariate(0, 0.5), 3),
                guild_id=1,
                channel_id=2,
                user_id=rng.randrange(40),
                message_id=None,
                cost_usd=0.0,
                error_type="ZeroDivisionError" if failing else None,
                error_message="integer division or modulo by zero" if failing else None,
                fingerprint=print_id,
                frames=frames,
                run_id=None,
                extra={},
            )
        )
    signals: list[int] = [0]

    def count(_: Signal) -> None:
        signals[0] += 1

    detector = AnomalyDetector(ObserveConfig(), count)
    process: Callable[[ActionRecord], None] = detector.process
    gc.collect()
    started = time.perf_counter()
    for record in records:
        process(record)
    elapsed = time.perf_counter() - started
    _note(f"detector: {detector.processed} processed, {signals[0]} signals in {elapsed:.3f} s")
    return DETECTOR_RECORDS / elapsed


# -- detect latency ------------------------------------------------------------------------------


def _announced(world: Any) -> bool:
    me = world.bot.user
    for message in world.dev.history():
        if me is None or message.author.id != me.id:
            continue
        if any("Incident" in (embed.title or "") for embed in message.embeds):
            return True
    return False


async def detect_latency_once(data_dir: Path) -> tuple[float, int]:
    settings = make_settings(data_dir, observe={"announce_new_fingerprints": False})
    async with running_world(
        settings, extra_extensions=["tests.fixtures.buggy_dice"], without=["cogs.dice"]
    ) as world:
        alice = world.users["alice"]
        await world.quiesce()
        for attempt in range(1, 21):
            assert not _announced(world), "an incident was announced before the threshold"
            started = time.perf_counter()
            await alice.slash(world.general, "roll", notation="2d6")
            await world.quiesce()
            elapsed = time.perf_counter() - started
            if _announced(world):
                return elapsed * 1000, attempt
        raise AssertionError("no incident announcement after 20 failing /roll calls")


async def detect_latency(tmp: Path) -> float:
    latencies: list[float] = []
    for run in range(LATENCY_RUNS):
        latency, attempt = await detect_latency_once(tmp / f"latency{run}" / "data")
        _note(f"detect latency run {run}: {latency:.1f} ms (crossing on /roll #{attempt})")
        latencies.append(latency)
    return statistics.median(latencies)


# -- main ----------------------------------------------------------------------------------------


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mendbot-bench-") as name:
        tmp = Path(name)
        configure_logging(tmp / "logs", console_level="CRITICAL", redactor=Redactor())
        median_us, p99_us = asyncio.run(record_overhead(tmp))
        _emit("record_overhead_median_us", median_us, "us")
        _emit("record_overhead_p99_us", p99_us, "us")
        allin = asyncio.run(allin_vs_structlog(tmp))
        _emit("allin_cpu_us", allin.allin, "us", 2)
        _emit("allin_loop_cpu_us", allin.loop, "us", 2)
        _emit("allin_threads_cpu_us", allin.threads, "us", 2)
        _emit("structlog_json_cpu_us", allin.plain_line, "us", 2)
        _emit("allin_cpu_ratio_vs_structlog", allin.ratio, "x", 2)
        # Apart: mendbot's own log line, a more convenient reference than the one a user would write.
        _emit("mendbot_log_line_cpu_us", allin.mendbot_line, "us", 2)
        _emit("allin_cpu_ratio_vs_mendbot_log_line", allin.mendbot_ratio, "x", 2)
        _emit("persist_rate_per_s", asyncio.run(persist_rate(tmp)), "records/s", 0)
        _emit("detector_rate_per_s", detector_rate(), "records/s", 0)
        _emit("detect_latency_ms", asyncio.run(detect_latency(tmp)), "ms")


if __name__ == "__main__":
    main()
