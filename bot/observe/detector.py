"""AnomalyDetector: cheap, deterministic rules evaluated incrementally as each record arrives.

Rules (thresholds from config.yaml):
- error_rate: a kind's failure share over a time window exceeds the threshold, with a minimum
  number of events;
- repeat: the same fingerprint N times within a window;
- latency: a kind's p95 over its recent window exceeds `factor` × the p95 of its rolling
  baseline (the samples before that window), with minimum samples and an absolute floor;
- new_fingerprint: a failure never seen before (notice level);
- task_stopped: a `tasks.loop` body raised an exception discord.py does not retry, so the loop
  has stopped for good (error level, at the first occurrence: nothing else will say so).

Each rule signals when its condition starts to hold and stays quiet until it clears, so a
storm is one signal per rule. Windows are deques of timestamps and sorted sample lists, so a
record costs a few dictionary and deque operations — no scan over stored actions.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from bot.observe.records import ActionRecord
from bot.settings import ObserveConfig

__all__ = ["AnomalyDetector", "Signal"]

Level = Literal["notice", "warning", "error"]
Rule = Literal["error_rate", "repeat", "latency", "new_fingerprint", "task_stopped"]


@dataclass(frozen=True, slots=True)
class Signal:
    rule: Rule
    level: Level
    kind: str
    fingerprint: str | None
    summary: str
    count: int  # the failures (or slow samples) that made the rule fire
    sample: ActionRecord


@dataclass(slots=True)
class _KindWindow:
    events: deque[tuple[float, bool]] = field(default_factory=deque)
    failures: int = 0
    firing: bool = False
    last_failure: ActionRecord | None = None


@dataclass(slots=True)
class _Latency:
    recent: deque[float] = field(default_factory=deque)
    recent_sorted: list[float] = field(default_factory=list)
    baseline: deque[float] = field(default_factory=deque)
    baseline_sorted: list[float] = field(default_factory=list)
    firing: bool = False


def _p95(ordered: list[float]) -> float:
    return ordered[int(0.95 * (len(ordered) - 1))]


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
        self._repeats: dict[str, deque[float]] = {}
        self._repeat_firing: set[str] = set()
        self._latency: dict[str, _Latency] = {}
        self._known: set[str] = set(known_fingerprints)
        self.processed = 0

    def process(self, record: ActionRecord) -> None:
        self.processed += 1
        if not record.ok and record.extra.get("loop_stopped"):
            self._task_stopped(record)
        if record.extra.get("environment"):
            return  # Discord or storage refusing is no sign of a bug: environment incidents cover it
        self._error_rate(record)
        if record.fingerprint is not None:
            self._new_fingerprint(record)
            self._repeat(record)
        if record.ok:
            self._latency_rule(record)

    # -- rules ----------------------------------------------------------------------------------

    def _error_rate(self, record: ActionRecord) -> None:
        rule = self._config.error_rate
        window = self._kinds.get(record.kind)
        if window is None:
            window = self._kinds[record.kind] = _KindWindow()
        events = window.events
        events.append((record.ts, record.ok))
        if not record.ok:
            window.failures += 1
            window.last_failure = record
        horizon = record.ts - rule.window_s
        while events and events[0][0] < horizon:
            _, was_ok = events.popleft()
            if not was_ok:
                window.failures -= 1
        total = len(events)
        holds = total >= rule.min_events and window.failures / total > rule.threshold
        if holds and not window.firing and window.last_failure is not None:
            share = window.failures / total
            sample = window.last_failure
            self._emit(
                Signal(
                    "error_rate",
                    "error",
                    record.kind,
                    sample.fingerprint,
                    f"{record.kind} failing {share:.0%} of the time ({window.failures} of {total} "
                    f"in {rule.window_s / 60:g} min)",
                    window.failures,
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
            times = self._repeats[key] = deque()
        times.append(record.ts)
        horizon = record.ts - rule.window_s
        while times and times[0] < horizon:
            times.popleft()
        holds = len(times) >= rule.count
        if holds and key not in self._repeat_firing:
            self._repeat_firing.add(key)
            self._emit(
                Signal(
                    "repeat",
                    "error",
                    record.kind,
                    key,
                    f"the same {record.error_type} {len(times)} times in {rule.window_s / 60:g} min",
                    len(times),
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
        if len(state.baseline) < rule.min_samples or len(state.recent) < min(rule.window, rule.min_samples):
            return
        recent, base = _p95(state.recent_sorted), _p95(state.baseline_sorted)
        holds = recent >= rule.min_ms and recent > rule.factor * base
        if holds and not state.firing:
            slow = len(state.recent_sorted) - bisect.bisect_right(state.recent_sorted, rule.factor * base)
            self._emit(
                Signal(
                    "latency",
                    "warning",
                    record.kind,
                    None,
                    f"{record.kind} p95 latency {recent:.0f} ms, {recent / max(base, 0.001):.1f}× its "
                    f"baseline of {base:.0f} ms",
                    slow,
                    record,
                )
            )
        state.firing = holds
