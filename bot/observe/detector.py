"""AnomalyDetector: cheap, deterministic rules evaluated incrementally as each record arrives.

Rules (thresholds from config.yaml):
- error_rate: a kind's failure share over a time window exceeds the threshold, with a minimum
  number of events;
- repeat: the same fingerprint N times within a window;
- latency: a kind's p95 over its recent window exceeds `factor` × the p95 of its rolling
  baseline (the samples before that window), with minimum samples and an absolute floor;
- new_fingerprint: a failure never seen before (notice level);
- task_stopped: a `tasks.loop` body (or its `before_loop` / `after_loop`) raised an exception
  discord.py does not retry, so the loop has stopped for good (error level, at the first
  occurrence: nothing else will say so);
- not_loaded: an extension failed to load — its import, its `setup` or its cog's `cog_load`
  raised — so its commands are not serving (error level, at the first occurrence);
- service: the bot's calls to one other service (`http:<host>` records, bot/observe/outbound.py) time
  out, cannot connect, or are answered 429 or 5xx for more than a share of them over a window (an hour by
  default), at least a number of times (warning level). Those calls and the handler failures they raised
  (`extra.outbound`) are that service's storm: no other rule counts them, so one incident names the
  service and the code that called it.

Each rule signals when its condition starts to hold and stays quiet until it clears, so a
storm is one signal per rule. The time windows (error rate, repeat) are counts in fixed time
buckets — `_BUCKETS` per window, so a window covers between `window_s` and one bucket more —
which keeps memory independent of the action rate (one tuple per action was ~1 GB at 20,000
actions/s). The latency windows are bounded by their sample counts. A kind or fingerprint that
goes quiet is expired by a sweep once its window is empty (latency state after `_LATENCY_QUIET_S`),
so memory follows what is active, not everything ever seen. A record costs a few dictionary and
deque operations — no scan over stored actions.

A detector that starts — the bot restarted (a deploy of `bot/` restarts it), or another process
became the leader (bot/scale/cluster.py) — takes its windows up from the stored actions
(`restore_windows`: counts per bucket, the latest durations and each service's latest failing calls,
aggregated by the database), so a storm that began before goes on counting instead of starting from
nothing, and one that was firing is not signalled again. A restarted bot reads them in the
background, not before it connects (`restore_windows_later`): the detector holds the records it is
given meanwhile (at most `observe.queue_size`) and takes them, in order, once its windows are restored.

It stays whole: the rules share the windows' buckets, their expiry and their restoring, and read best
side by side.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Iterable
from typing import Literal

import msgspec

from mendbot.db import actions as action_queries
from mendbot.db.core import Connection
from mendbot.db.records import ActionRecord
from mendbot.kernel.drills import is_drill_kind
from mendbot.kernel.log import get_logger
from mendbot.kernel.sections import ErrorRateRule, LatencyRule, ObserveConfig, ServiceRule
from mendbot.observe.outbound import KIND_PREFIX, service_summary

__all__ = ["AnomalyDetector", "Signal", "WindowHistory", "restore_windows", "restore_windows_later"]

_log = get_logger(__name__)

# Buckets per time window: the window's edge is exact to 1/60 of it (10 s of the default 10 min).
_BUCKETS = 60
# How often (in record time) quiet kinds and fingerprints are looked for and forgotten.
_SWEEP_S = 60.0
# A latency baseline takes hundreds of calls to build, so a kind used a few times an hour keeps it;
# only a kind quiet for a day loses it.
_LATENCY_QUIET_S = 86_400.0

Level = Literal["notice", "warning", "error"]
Rule = Literal["error_rate", "repeat", "latency", "new_fingerprint", "task_stopped", "not_loaded", "service"]
# The failing calls a service's window keeps for its signal's summary (what failed, from where).
_SERVICE_FAILURES = 50


class Signal(msgspec.Struct, frozen=True):
    rule: Rule
    level: Level
    kind: str
    fingerprint: str | None
    summary: str
    count: int  # the failures (or slow samples) that made the rule fire
    sample: ActionRecord


class _Counts:
    """Events and failures over a sliding time window, kept as counts per fixed time bucket."""

    __slots__ = ("buckets", "failures", "total", "width", "window_s")

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.width = window_s / _BUCKETS
        self.buckets: deque[list[int]] = deque()  # [bucket index, events, failures], oldest first
        self.total = 0
        self.failures = 0

    def add(self, ts: float, failed: bool) -> None:
        index = math.floor(ts / self.width)
        buckets = self.buckets
        if buckets and buckets[-1][0] >= index:
            last = buckets[-1]  # this bucket, or a record a little late: counted in the newest
        else:
            last = [index, 0, 0]
            buckets.append(last)
        last[1] += 1
        self.total += 1
        if failed:
            last[2] += 1
            self.failures += 1
        self.expire(ts)

    def put(self, index: int, events: int, failures: int) -> None:
        """Counts of one whole bucket (restored from storage), buckets given oldest first."""
        self.buckets.append([index, events, failures])
        self.total += events
        self.failures += failures

    def expire(self, now: float) -> None:
        """Forget the buckets that lie wholly before `now - window_s`."""
        oldest = math.floor((now - self.window_s) / self.width)
        buckets = self.buckets
        while buckets and buckets[0][0] < oldest:
            _, events, failures = buckets.popleft()
            self.total -= events
            self.failures -= failures


def _joined(older: _Counts, newer: _Counts | None) -> _Counts:
    """One window of `older`'s buckets followed by `newer`'s (a bucket in both counted once, summed)."""
    joined = _Counts(older.window_s)
    for index, events, failures in [*older.buckets, *(newer.buckets if newer is not None else ())]:
        last = joined.buckets[-1] if joined.buckets else None
        if last is not None and last[0] >= index:
            last[1] += events
            last[2] += failures
            joined.total += events
            joined.failures += failures
        else:
            joined.put(index, events, failures)
    return joined


class _KindWindow(msgspec.Struct):
    counts: _Counts
    firing: bool = False
    last_failure: ActionRecord | None = None


class _ServiceWindow(msgspec.Struct):
    counts: _Counts
    failures: deque[ActionRecord]  # the newest failing calls, oldest first
    firing: bool = False


class _Latency(msgspec.Struct):
    recent: deque[float] = msgspec.field(default_factory=deque)
    recent_sorted: list[float] = msgspec.field(default_factory=list)
    baseline: deque[float] = msgspec.field(default_factory=deque)
    baseline_sorted: list[float] = msgspec.field(default_factory=list)
    firing: bool = False
    last_seen: float = 0.0


def _p95(ordered: list[float]) -> float:
    return ordered[int(0.95 * (len(ordered) - 1))]


def _rate_holds(rule: ErrorRateRule, counts: _Counts) -> bool:
    return counts.total >= rule.min_events and counts.failures / counts.total > rule.threshold


def _service_holds(rule: ServiceRule, counts: _Counts) -> bool:
    return counts.failures >= rule.min_failures and counts.failures / counts.total > rule.threshold


def _latency_p95s(rule: LatencyRule, state: _Latency) -> tuple[float, float] | None:
    """(recent p95, baseline p95) once there are enough samples to compare, else None."""
    if len(state.baseline) < rule.min_samples or len(state.recent) < min(rule.window, rule.min_samples):
        return None
    return _p95(state.recent_sorted), _p95(state.baseline_sorted)


def _latency_holds(rule: LatencyRule, recent: float, base: float) -> bool:
    return recent >= rule.min_ms and recent > rule.factor * base


class WindowHistory(msgspec.Struct, frozen=True):
    """What the stored actions say the windows held at `now` (`restore_windows` reads it)."""

    now: float
    kinds: list[tuple[str, int, int, int]]  # kind, error-rate bucket index, events, failures
    fingerprints: list[tuple[str, int, int]]  # fingerprint, repeat bucket index, records
    durations: dict[str, list[float]]  # kind → its latest successful durations, oldest first
    last_failures: dict[str, ActionRecord]  # kind → its newest failure (a signal's sample)
    # The calls to other services over the service rule's window: kind, bucket index, events, failures;
    # and each service's newest failing calls, oldest first (what a signal's summary says).
    services: list[tuple[str, int, int, int]] = msgspec.field(default_factory=list)
    service_failures: dict[str, list[ActionRecord]] = msgspec.field(default_factory=dict)


class AnomalyDetector:
    def __init__(
        self,
        config: ObserveConfig,
        emit: Callable[[Signal], None],
        known_fingerprints: Iterable[str] = (),
    ) -> None:
        self._config = config
        self._emit = emit
        self._kinds: dict[str, _KindWindow] = {}
        self._repeats: dict[str, _Counts] = {}
        self._repeat_firing: set[str] = set()
        self._latency: dict[str, _Latency] = {}
        self._services: dict[str, _ServiceWindow] = {}
        self._known: set[str] = set(known_fingerprints)
        self._next_sweep: float | None = None
        self._held: list[ActionRecord] | None = None  # records given while the windows are read
        self._restore_given_up = False  # too many were held: the windows go on without the history
        self._set_aside: dict[str, _Counts] = {}  # windows of kinds (and fingerprints) a fix went live for
        self.processed = 0

    @property
    def config(self) -> ObserveConfig:
        return self._config

    def restore(self, history: WindowHistory) -> None:
        """Replace the windows with what `history` says they held (module docstring). Rules whose
        condition holds are firing already: what the records signalled was signalled then."""
        if self._restore_given_up:
            return  # the records held meanwhile outgrew their bound and are counted already
        config = self._config
        self._kinds, self._repeats, self._repeat_firing, self._latency = {}, {}, set(), {}
        self._services = {}
        for kind, index, events, failures in sorted(history.kinds, key=lambda bucket: bucket[1]):
            if kind.startswith(KIND_PREFIX):
                continue  # calls to other services: their windows are the service rule's (an hour)
            window = self._kinds.get(kind)
            if window is None:
                window = self._kinds[kind] = _KindWindow(_Counts(config.error_rate.window_s))
            window.counts.put(index, events, failures)
        for kind, window in self._kinds.items():
            window.last_failure = history.last_failures.get(kind)
            window.firing = _rate_holds(config.error_rate, window.counts)
        for key, index, seen in sorted(history.fingerprints, key=lambda bucket: bucket[1]):
            times = self._repeats.get(key)
            if times is None:
                times = self._repeats[key] = _Counts(config.repeat.window_s)
            times.put(index, seen, seen)
            if times.total >= config.repeat.count:
                self._repeat_firing.add(key)
        service = config.service
        for kind, index, events, failures in sorted(history.services, key=lambda bucket: bucket[1]):
            calls = self._services.get(kind)
            if calls is None:
                calls = self._services[kind] = _ServiceWindow(
                    _Counts(service.window_s), deque(maxlen=_SERVICE_FAILURES)
                )
            calls.counts.put(index, events, failures)
        for kind, calls in self._services.items():
            calls.failures.extend(history.service_failures.get(kind, ()))
            calls.firing = _service_holds(service, calls.counts)
        rule = config.latency
        for kind, durations in history.durations.items():
            state = self._latency[kind] = _Latency(last_seen=history.now)
            split = max(0, len(durations) - rule.window)
            state.baseline.extend(durations[max(0, split - rule.baseline) : split])
            state.recent.extend(durations[split:])
            state.baseline_sorted = sorted(state.baseline)
            state.recent_sorted = sorted(state.recent)
            p95s = _latency_p95s(rule, state)
            state.firing = p95s is not None and _latency_holds(rule, *p95s)
        self._sweep(history.now)

    def hold(self) -> None:
        """Keep the records `process` is given until `release` (the windows are being restored) — at
        most `observe.queue_size` of them: memory stays bounded when the read is slow (a locked
        database) and the bot busy. Past that the held records are counted at once and the restore,
        when it comes, is passed over: the windows go on from this life's records alone."""
        if self._held is None:
            self._held = []

    def release(self) -> None:
        """The restore is over: process the records held since `hold`, in order, and every record
        from now on."""
        self._take_held()
        self._restore_given_up = False

    def _take_held(self) -> None:
        held, self._held = self._held, None
        for record in held or ():
            self.process(record)

    def use_known(self, fingerprints: Iterable[str]) -> None:
        """From now on count exactly these fingerprints as seen before (a new leader:
        bot/scale/cluster.py)."""
        self._known = set(fingerprints)

    def forget(self, kind: str, fingerprint: str | None) -> None:
        """A fix for `kind` (and its failure's `fingerprint`) went live: its error-rate and repeat windows
        start afresh, so the failures before the fix cannot escalate its incident once it answers again
        (three old failures and one new success read "failing 75 % of the time"). What comes back after
        the fix counts as ever, and the deploy's watch sees it first. The windows are set aside, not
        dropped: `recall` puts them back if the fix is rolled back."""
        window = self._kinds.pop(kind, None)
        if window is not None:
            self._set_aside[kind] = window.counts
        if fingerprint is not None:
            times = self._repeats.pop(fingerprint, None)
            if times is not None:
                self._set_aside[f"fingerprint:{fingerprint}"] = times
            self._repeat_firing.discard(fingerprint)

    def recall(self, kind: str, fingerprint: str | None) -> None:
        """The fix `forget` was told of is rolled back: the failures before it are the same fault again,
        and count with those since (each window still forgets what is older than it)."""
        older = self._set_aside.pop(kind, None)
        window = self._kinds.get(kind)
        if older is not None:
            counts = _joined(older, window.counts if window is not None else None)
            self._kinds[kind] = _KindWindow(counts, last_failure=window.last_failure if window else None)
        if fingerprint is not None and (aside := self._set_aside.pop(f"fingerprint:{fingerprint}", None)):
            self._repeats[fingerprint] = _joined(aside, self._repeats.get(fingerprint))

    def tracked(self) -> dict[str, int]:
        """How many kinds, fingerprints and time buckets the windows hold now (what memory follows)."""
        return {
            "kinds": len(self._kinds),
            "fingerprints": len(self._repeats),
            "latency_kinds": len(self._latency),
            "services": len(self._services),
            "buckets": sum(len(w.counts.buckets) for w in self._kinds.values())
            + sum(len(c.buckets) for c in self._repeats.values())
            + sum(len(w.counts.buckets) for w in self._services.values()),
        }

    def process(self, record: ActionRecord) -> None:
        if self._held is not None:
            if len(self._held) < self._config.queue_size:
                self._held.append(record)
                return
            _log.warning(
                "the detector's windows are read too slowly: going on without the history",
                held=len(self._held),
            )
            self._restore_given_up = True
            self._take_held()
        self.processed += 1
        if self._next_sweep is None or record.ts >= self._next_sweep:
            self._sweep(record.ts)
        if not record.ok and record.extra.get("loop_stopped"):
            self._task_stopped(record)
        if not record.ok and record.extra.get("not_serving"):
            self._not_loaded(record)
        if record.extra.get("environment"):
            return  # Discord or storage refusing is no sign of a bug: environment incidents cover it
        if record.kind.startswith(KIND_PREFIX):
            if (record.extra.get("call") or {}).get("outcome") != "cancelled":  # said by its caller's error
                self._service(record, record.kind)
            return
        if record.extra.get("outbound"):
            # A handler failing on a call that failed: the service's storm, counted by its calls — but for
            # a call its caller's own timeout cancelled, which only this failure says timed out.
            if record.extra.get("outbound_outcome") == "timeout":
                self._service(record, KIND_PREFIX + str(record.extra["outbound"]))
            return
        self._error_rate(record)
        if record.fingerprint is not None:
            self._new_fingerprint(record)
            self._repeat(record)
        if record.ok and not is_drill_kind(record.kind):
            # A fire drill's calls never enter a latency baseline (bot/kernel/drills.py).
            self._latency_rule(record)

    # -- rules ----------------------------------------------------------------------------------

    def _error_rate(self, record: ActionRecord) -> None:
        rule = self._config.error_rate
        window = self._kinds.get(record.kind)
        if window is None:
            window = self._kinds[record.kind] = _KindWindow(_Counts(rule.window_s))
        counts = window.counts
        counts.add(record.ts, not record.ok)
        if not record.ok:
            window.last_failure = record
        total, failures = counts.total, counts.failures
        holds = _rate_holds(rule, counts)
        if holds and not window.firing and window.last_failure is not None:
            share = failures / total
            sample = window.last_failure
            self._emit(
                Signal(
                    "error_rate",
                    "error",
                    record.kind,
                    sample.fingerprint,
                    f"failing {share:.0%} of the time ({failures} of {total} in {rule.window_s / 60:g} min)",
                    failures,
                    sample,
                )
            )
        window.firing = holds

    def _repeat(self, record: ActionRecord) -> None:
        rule = self._config.repeat
        key = record.fingerprint
        assert key is not None
        times = self._repeats.get(key)
        if times is None:
            times = self._repeats[key] = _Counts(rule.window_s)
        times.add(record.ts, True)
        seen = times.total
        holds = seen >= rule.count
        if holds and key not in self._repeat_firing:
            self._repeat_firing.add(key)
            self._emit(
                Signal(
                    "repeat",
                    "error",
                    record.kind,
                    key,
                    f"the same {record.error_type} {seen} times in {rule.window_s / 60:g} min",
                    seen,
                    record,
                )
            )
        elif not holds:
            self._repeat_firing.discard(key)

    def _task_stopped(self, record: ActionRecord) -> None:
        """A `tasks.loop` whose body raised out has stopped for good: one failure is enough."""
        name = record.kind.split(":", 1)[-1]
        self._emit(
            Signal(
                "task_stopped",
                "error",
                record.kind,
                record.fingerprint,
                f"the `{name}` task loop stopped after {record.error_type}; it stays stopped until a restart",
                1,
                record,
            )
        )

    def _not_loaded(self, record: ActionRecord) -> None:
        """An extension that failed to load serves nothing until it is mended: one failure is enough."""
        name = record.kind.split(":", 1)[-1]
        self._emit(
            Signal(
                "not_loaded",
                "error",
                record.kind,
                record.fingerprint,
                f"`{name}` failed with {record.error_type}: its extension is not loaded and its commands"
                " are not serving",
                1,
                record,
            )
        )

    def _service(self, record: ActionRecord, kind: str) -> None:
        """A call to the service of `kind`: its window counts it, and the rule fires once enough of them
        fail."""
        rule = self._config.service
        window = self._services.get(kind)
        if window is None:
            window = self._services[kind] = _ServiceWindow(
                _Counts(rule.window_s), deque(maxlen=_SERVICE_FAILURES)
            )
        counts = window.counts
        counts.add(record.ts, not record.ok)
        if not record.ok:
            window.failures.append(record)
        holds = _service_holds(rule, counts)
        if holds and not window.firing and window.failures:
            recent = [r for r in window.failures if r.ts >= record.ts - rule.window_s]
            service = kind.removeprefix(KIND_PREFIX)
            self._emit(
                Signal(
                    "service",
                    "warning",
                    kind,
                    None,
                    service_summary(service, recent, counts.failures, counts.total, rule.window_s),
                    counts.failures,
                    window.failures[-1],
                )
            )
        window.firing = holds

    def _new_fingerprint(self, record: ActionRecord) -> None:
        key = record.fingerprint
        assert key is not None
        if key in self._known:
            return
        self._known.add(key)
        if self._config.announce_new_fingerprints:
            self._emit(
                Signal(
                    "new_fingerprint",
                    "notice",
                    record.kind,
                    key,
                    f"a new kind of failure: {record.error_type}",
                    1,
                    record,
                )
            )

    def _latency_rule(self, record: ActionRecord) -> None:
        rule = self._config.latency
        state = self._latency.get(record.kind)
        if state is None:
            state = self._latency[record.kind] = _Latency()
        state.last_seen = record.ts
        value = record.duration_ms
        state.recent.append(value)
        bisect.insort(state.recent_sorted, value)
        if len(state.recent) > rule.window:
            moved = state.recent.popleft()
            del state.recent_sorted[bisect.bisect_left(state.recent_sorted, moved)]
            state.baseline.append(moved)
            bisect.insort(state.baseline_sorted, moved)
            if len(state.baseline) > rule.baseline:
                old = state.baseline.popleft()
                del state.baseline_sorted[bisect.bisect_left(state.baseline_sorted, old)]
        p95s = _latency_p95s(rule, state)
        if p95s is None:
            return
        recent, base = p95s
        holds = _latency_holds(rule, recent, base)
        if holds and not state.firing:
            slow = len(state.recent_sorted) - bisect.bisect_right(state.recent_sorted, rule.factor * base)
            self._emit(
                Signal(
                    "latency",
                    "warning",
                    record.kind,
                    None,
                    f"p95 latency {recent:.0f} ms, "
                    f"{recent / max(base, 0.001):.1f}× its baseline of {base:.0f} ms",
                    slow,
                    record,
                )
            )
        state.firing = holds

    # -- expiry -----------------------------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        """Forget kinds and fingerprints whose windows have emptied (nothing firing is lost)."""
        self._next_sweep = now + _SWEEP_S
        for kind, window in list(self._kinds.items()):
            window.counts.expire(now)
            if window.counts.total == 0:
                del self._kinds[kind]
        for key, times in list(self._repeats.items()):
            times.expire(now)
            if times.total == 0:
                del self._repeats[key]
                self._repeat_firing.discard(key)
        for kind, state in list(self._latency.items()):
            if now - state.last_seen > _LATENCY_QUIET_S:
                del self._latency[kind]
        for kind, service in list(self._services.items()):
            service.counts.expire(now)
            if service.counts.total == 0:
                del self._services[kind]


async def restore_windows(db: Connection, detector: AnomalyDetector, *, upto: int, now: float) -> None:
    """Restore `detector`'s windows from the actions stored with ids up to `upto` — the ones a
    previous life of the detector processed; later ones are fed to it as usual."""
    config = detector.config
    rate, repeat = config.error_rate, config.repeat
    # One bucket more than the window: the oldest bucket may still be partly inside it.
    rate_width, repeat_width = rate.window_s / _BUCKETS, repeat.window_s / _BUCKETS
    kinds = await action_queries.kind_buckets(
        db, since=now - rate.window_s - rate_width, upto=upto, width=rate_width
    )
    fingerprints = await action_queries.fingerprint_buckets(
        db, since=now - repeat.window_s - repeat_width, upto=upto, width=repeat_width
    )
    active = sorted({kind for kind, *_ in kinds})
    samples = config.latency.window + config.latency.baseline
    durations = {}
    for kind in active:
        if is_drill_kind(kind) or kind.startswith(KIND_PREFIX):
            continue  # never in a latency baseline (AnomalyDetector.process)
        found = await action_queries.recent_durations(
            db, kind, since=now - _LATENCY_QUIET_S, upto=upto, limit=samples
        )
        if found:
            durations[kind] = found
    service = config.service
    service_width = service.window_s / _BUCKETS
    services = await action_queries.prefix_buckets(
        db, KIND_PREFIX, since=now - service.window_s - service_width, upto=upto, width=service_width
    )
    service_failures = {}
    for kind in sorted({kind for kind, _, _, failures in services if failures}):
        recent = await action_queries.recent_failures(
            db, kind=kind, fingerprint=None, since=now - service.window_s, limit=_SERVICE_FAILURES
        )
        service_failures[kind] = recent[::-1]
    last_failures = {}
    for kind in {kind for kind, _, _, failures in kinds if failures and not kind.startswith(KIND_PREFIX)}:
        recent = await action_queries.recent_failures(
            db, kind=kind, fingerprint=None, since=now - rate.window_s, limit=20
        )
        sample = next((r for r in recent if not r.extra.get("environment")), None)
        if sample is not None:
            last_failures[kind] = sample
    detector.restore(
        WindowHistory(now, kinds, fingerprints, durations, last_failures, services, service_failures)
    )


async def restore_windows_later(
    db: Connection, detector: AnomalyDetector, *, upto: int, now: Callable[[], float]
) -> None:
    """`restore_windows` while the bot goes on: `detector`, held by the caller (`hold`, before this
    life's first record), keeps what it is given until its windows are restored (from the actions up to
    `upto`, as of `now()` then), then takes it. A failed read leaves the windows empty, as on a first
    start; the held records are taken all the same."""
    try:
        await restore_windows(db, detector, upto=upto, now=now())
    except Exception:
        _log.exception("the detector's windows could not be restored: they start empty")
    finally:
        detector.release()
