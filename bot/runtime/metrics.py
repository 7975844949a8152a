"""Prometheus metrics for `/metrics` on the health port (prometheus-client renders them).

Actions are counted as the recorder streams them (every command, listener, task and chat reply:
count, failures, latency histogram, cost), in plain counters of this module's own. Everything that
is state rather than an event — open incidents, runs by state, spend, dropped records, readiness,
each gateway shard's connection and latency — is read when the endpoint is scraped, so the numbers
are never stale and nothing polls. prometheus-client is loaded at the first scrape (a bot nobody
scrapes never carries it, ~1 MB) and turns both into its exposition text.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

import msgspec

from mendbot.db import metrics as queries
from mendbot.db.records import ActionRecord
from mendbot.improve.runs import ALL_STATES

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

    from mendbot.runtime.app import MendBot

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Discord handlers answer in milliseconds to seconds; agent steps and chat replies take longer.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_INCIDENT_LEVELS = ("notice", "warning", "error")


class _Latency(msgspec.Struct):
    """One kind's latency histogram: how many fell in each bucket (not cumulative), and their sum."""

    counts: list[int] = msgspec.field(default_factory=lambda: [0] * (len(_BUCKETS) + 1))
    total_s: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(_BUCKETS, seconds)] += 1
        self.total_s += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, observations at or below it) of each bucket, `+Inf` last, as Prometheus has them."""
        bounds = [*(_float_text(bound) for bound in _BUCKETS), "+Inf"]
        running = 0
        found = []
        for bound, count in zip(bounds, self.counts, strict=True):
            running += count
            found.append((bound, float(running)))
        return found


def _float_text(value: float) -> str:
    """A bucket bound as Prometheus writes it (`1.0`, `0.005`)."""
    return repr(float(value))


class _State(msgspec.Struct):
    """What a scrape reads of the bot's state, gathered before rendering (which does not wait)."""

    incidents: dict[str, int]
    runs: dict[str, int]
    run_spend: float
    spent_today: float
    daily_budget: float
    autonomous_spent_today: float
    autonomous_daily_budget: float
    ready: bool
    inflight: int
    leader: bool
    commits: dict[str, str]
    shards: list[tuple[int, bool, float | None]]
    shed: dict[str, int]  # by kind: action records the journal could not keep up with
    waiting: int  # action records not in the database yet (they are in the journal or on their way)
    storage_bytes: int
    journal_bytes: int


class Metrics:
    """One per bot process; `observe` is the recorder subscriber, `render` the scrape."""

    def __init__(self, bot: MendBot) -> None:
        self._bot = bot
        self._actions: Counter[tuple[str, str]] = Counter()
        self._failures: Counter[tuple[str, str]] = Counter()
        self._latency: defaultdict[str, _Latency] = defaultdict(_Latency)
        self._cost: defaultdict[str, float] = defaultdict(float)
        self._registry: CollectorRegistry | None = None
        self._state: _State | None = None
        bot.services.recorder.subscribe(self.observe)

    def observe(self, record: ActionRecord) -> None:
        """Count one action as the recorder streams it (on the event loop; never raises)."""
        self._actions[record.kind, "ok" if record.ok else "failed"] += 1
        if not record.ok:
            self._failures[record.kind, record.error_type or "unknown"] += 1
        self._latency[record.kind].observe(max(0.0, record.duration_ms) / 1000)
        if record.cost_usd > 0:
            self._cost[record.kind] += record.cost_usd

    async def render(self) -> bytes:
        """The exposition text, with state read now."""
        from prometheus_client import CollectorRegistry, generate_latest

        self._state = await self._read_state()
        if self._registry is None:
            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(cast("Collector", self))  # what it asks of one: collect()
        return generate_latest(self._registry)

    async def _read_state(self) -> _State:
        bot = self._bot
        services = bot.services
        mending = await services.complete()  # on an attached bot, built once it has connected
        active = services.incidents.active()
        budget = await mending.improve.policy.budget()
        recorder = services.recorder
        return _State(
            incidents={level: sum(1 for i in active if i.level == level) for level in _INCIDENT_LEVELS},
            runs=await queries.runs_by_state(services.db),
            run_spend=await queries.run_spend(services.db),
            spent_today=budget.spent_today_usd,
            daily_budget=budget.daily_budget_usd,
            autonomous_spent_today=budget.autonomous_spent_today_usd,
            autonomous_daily_budget=budget.autonomous_daily_budget_usd,
            ready=bot.serving,  # 0 while a shard reconnects, as /health/ready is 503
            inflight=bot.inflight,
            leader=mending.cluster.leadership.is_leader,
            # Several processes: which commit each runs (a process left behind shows as a second commit).
            commits=await mending.cluster.positions(),
            shards=[(shard.id, shard.connected, shard.latency_s) for shard in bot.shard_states()],
            shed=dict(recorder.shed),
            waiting=recorder.waiting,
            storage_bytes=recorder.store_bytes,
            journal_bytes=recorder.journal_bytes,
        )

    def collect(self) -> Iterator[Metric]:
        """prometheus-client's collector protocol: every family, from the counts and the state read."""
        from prometheus_client.metrics_core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        state = self._state
        assert state is not None  # render() reads it first

        def counter(name: str, doc: str, labels: list[str], values: dict[tuple[str, ...], float]) -> Metric:
            family = CounterMetricFamily(name, doc, labels=labels)
            for key, value in sorted(values.items()):
                family.add_metric(list(key), value)
            return family

        def gauge(name: str, doc: str, value: float) -> Metric:
            return GaugeMetricFamily(name, doc, value=value)

        def gauges(name: str, doc: str, labels: list[str], values: dict[tuple[str, ...], float]) -> Metric:
            family = GaugeMetricFamily(name, doc, labels=labels)
            for key, value in sorted(values.items()):
                family.add_metric(list(key), value)
            return family

        yield counter(
            "mendbot_actions",
            "Actions handled, by kind and outcome.",
            ["kind", "outcome"],
            {key: float(count) for key, count in self._actions.items()},
        )
        yield counter(
            "mendbot_action_failures",
            "Failed actions, by kind and error type.",
            ["kind", "error_type"],
            {key: float(count) for key, count in self._failures.items()},
        )
        latency = HistogramMetricFamily(
            "mendbot_action_duration_seconds", "How long actions took, by kind.", labels=["kind"]
        )
        for kind, histogram in sorted(self._latency.items()):
            latency.add_metric([kind], histogram.cumulative(), histogram.total_s)
        yield latency
        yield counter(
            "mendbot_action_cost_usd",
            "Model spend recorded on actions (chat replies), by kind.",
            ["kind"],
            {(kind,): cost for kind, cost in self._cost.items()},
        )
        yield counter(
            "mendbot_action_records_shed",
            "Action records shed because even the action journal could not keep up, by kind.",
            ["kind"],
            {(kind,): float(count) for kind, count in state.shed.items()},
        )
        yield gauge(
            "mendbot_action_records_waiting",
            "Action records not in the database yet: in the journal (or on their way to it).",
            float(state.waiting),
        )
        yield gauges(
            "mendbot_storage_bytes",
            "Bytes on disk: the database (its files, or the PostgreSQL database) and the action journal.",
            ["store"],
            {("database",): float(state.storage_bytes), ("journal",): float(state.journal_bytes)},
        )
        yield gauges(
            "mendbot_incidents_open",
            "Incidents not resolved, by level.",
            ["level"],
            {(level,): float(count) for level, count in state.incidents.items()},
        )
        yield gauges(
            "mendbot_runs",
            "Self-improvement runs, by state.",
            ["state"],
            # every state, so an emptied one shows 0
            {(run_state,): float(state.runs.get(run_state, 0)) for run_state in ALL_STATES | set(state.runs)},
        )
        yield gauge("mendbot_runs_spend_usd", "USD spent by self-improvement runs so far.", state.run_spend)
        yield gauge(
            "mendbot_improve_spent_today_usd",
            "USD spent by requested runs today (the daily budget's count).",
            state.spent_today,
        )
        yield gauge(
            "mendbot_improve_daily_budget_usd", "The daily budget for requested runs.", state.daily_budget
        )
        yield gauge(
            "mendbot_improve_autonomous_spent_today_usd",
            "USD spent today by runs the bot started itself (their own pool's count).",
            state.autonomous_spent_today,
        )
        yield gauge(
            "mendbot_improve_autonomous_daily_budget_usd",
            "The daily budget for runs the bot starts itself.",
            state.autonomous_daily_budget,
        )
        yield gauge("mendbot_discord_ready", "1 while connected to Discord and serving.", float(state.ready))
        yield gauge("mendbot_inflight_handlers", "Handlers running right now.", float(state.inflight))
        yield gauges(
            "mendbot_discord_shard_connected",
            "1 while a gateway shard this process runs has a session, by shard id.",
            ["shard"],
            {(str(shard),): float(connected) for shard, connected, _ in state.shards},
        )
        yield gauges(
            "mendbot_discord_shard_latency_seconds",
            "Heartbeat round trip of a gateway shard this process runs (NaN before the first), by shard id.",
            ["shard"],
            {(str(shard),): math.nan if latency is None else latency for shard, _, latency in state.shards},
        )
        yield gauge(
            "mendbot_leader",
            "1 while this process leads: it runs the once-only work (incidents, merges, the watchdog).",
            float(state.leader),
        )
        yield gauges(
            "mendbot_process_commit",
            "1 for the commit each bot process sharing the database runs (none with a single process).",
            ["process", "commit"],
            {(process, sha): 1.0 for process, sha in state.commits.items()},
        )
