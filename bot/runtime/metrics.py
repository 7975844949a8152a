"""Prometheus metrics for `/metrics` on the health port (prometheus-client, its own registry).

Actions are counted as the recorder streams them (every command, listener, task and chat reply:
count, failures, latency histogram, cost). Everything that is state rather than an event — open
incidents, runs by state, spend, dropped records, readiness, each gateway shard's connection and
latency — is read when the endpoint is scraped, so the numbers are never stale and nothing polls.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from bot.db import metrics as queries
from bot.db.records import ActionRecord
from bot.improve.runs import ALL_STATES

if TYPE_CHECKING:
    from bot.runtime.app import MendBot

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Discord handlers answer in milliseconds to seconds; agent steps and chat replies take longer.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_INCIDENT_LEVELS = ("notice", "warning", "error")


class _Dropped(Collector):
    """The recorder's own count of dropped records, as a counter by cause: `queue_full` (never
    queued) and `unwritten` (queued, but the database write was given up)."""

    def __init__(self, bot: MendBot) -> None:
        self._bot = bot

    def collect(self) -> Iterator[CounterMetricFamily]:
        recorder = self._bot.services.recorder
        family = CounterMetricFamily(
            "mendbot_action_records_dropped", "Action records dropped, by cause.", labels=["cause"]
        )
        family.add_metric(["queue_full"], float(recorder.dropped_queue_full))
        family.add_metric(["unwritten"], float(recorder.dropped_unwritten))
        yield family


class Metrics:
    """One registry per bot process; `observe` is the recorder subscriber, `render` the scrape."""

    def __init__(self, bot: MendBot) -> None:
        self._bot = bot
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.actions = Counter(
            "mendbot_actions", "Actions handled, by kind and outcome.", ["kind", "outcome"], registry=registry
        )
        self.failures = Counter(
            "mendbot_action_failures",
            "Failed actions, by kind and error type.",
            ["kind", "error_type"],
            registry=registry,
        )
        self.latency = Histogram(
            "mendbot_action_duration_seconds",
            "How long actions took, by kind.",
            ["kind"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.cost = Counter(
            "mendbot_action_cost_usd",
            "Model spend recorded on actions (chat replies), by kind.",
            ["kind"],
            registry=registry,
        )
        self.incidents = Gauge(
            "mendbot_incidents_open", "Incidents not resolved, by level.", ["level"], registry=registry
        )
        self.runs = Gauge("mendbot_runs", "Self-improvement runs, by state.", ["state"], registry=registry)
        self.run_spend = Gauge(
            "mendbot_runs_spend_usd", "USD spent by self-improvement runs so far.", registry=registry
        )
        self.spent_today = Gauge(
            "mendbot_improve_spent_today_usd",
            "USD spent by requested runs today (the daily budget's count).",
            registry=registry,
        )
        self.daily_budget = Gauge(
            "mendbot_improve_daily_budget_usd", "The daily budget for requested runs.", registry=registry
        )
        self.autonomous_spent_today = Gauge(
            "mendbot_improve_autonomous_spent_today_usd",
            "USD spent today by runs the bot started itself (their own pool's count).",
            registry=registry,
        )
        self.autonomous_daily_budget = Gauge(
            "mendbot_improve_autonomous_daily_budget_usd",
            "The daily budget for runs the bot starts itself.",
            registry=registry,
        )
        self.ready = Gauge(
            "mendbot_discord_ready", "1 while connected to Discord and serving.", registry=registry
        )
        self.inflight = Gauge("mendbot_inflight_handlers", "Handlers running right now.", registry=registry)
        self.shard_connected = Gauge(
            "mendbot_discord_shard_connected",
            "1 while a gateway shard this process runs has a session, by shard id.",
            ["shard"],
            registry=registry,
        )
        self.shard_latency = Gauge(
            "mendbot_discord_shard_latency_seconds",
            "Heartbeat round trip of a gateway shard this process runs (NaN before the first), by shard id.",
            ["shard"],
            registry=registry,
        )
        self.leader = Gauge(
            "mendbot_leader",
            "1 while this process leads: it runs the once-only work (incidents, merges, the watchdog).",
            registry=registry,
        )
        self.process_commit = Gauge(
            "mendbot_process_commit",
            "1 for the commit each bot process sharing the database runs (none with a single process).",
            ["process", "commit"],
            registry=registry,
        )
        registry.register(_Dropped(bot))
        bot.services.recorder.subscribe(self.observe)

    def observe(self, record: ActionRecord) -> None:
        """Count one action as the recorder streams it (on the event loop; never raises)."""
        self.actions.labels(record.kind, "ok" if record.ok else "failed").inc()
        if not record.ok:
            self.failures.labels(record.kind, record.error_type or "unknown").inc()
        self.latency.labels(record.kind).observe(max(0.0, record.duration_ms) / 1000)
        if record.cost_usd > 0:
            self.cost.labels(record.kind).inc(record.cost_usd)

    async def render(self) -> bytes:
        """The exposition text, with state read now."""
        bot = self._bot
        services = bot.services
        active = services.incidents.active()
        for level in _INCIDENT_LEVELS:
            self.incidents.labels(level).set(sum(1 for incident in active if incident.level == level))
        by_state = await queries.runs_by_state(services.db)
        for state in sorted(ALL_STATES | set(by_state)):  # every state, so an emptied one shows 0
            self.runs.labels(state).set(by_state.get(state, 0))
        self.run_spend.set(await queries.run_spend(services.db))
        budget = await services.improve.policy.budget()
        self.spent_today.set(budget.spent_today_usd)
        self.daily_budget.set(budget.daily_budget_usd)
        self.autonomous_spent_today.set(budget.autonomous_spent_today_usd)
        self.autonomous_daily_budget.set(budget.autonomous_daily_budget_usd)
        self.ready.set(1 if bot.serving else 0)  # 0 while a shard reconnects, as /health/ready is 503
        self.inflight.set(bot.inflight)
        self.leader.set(1 if services.cluster.leadership.is_leader else 0)
        # Several processes: which commit each runs (a process left behind shows as a second commit).
        self.process_commit.clear()
        for process, sha in (await services.cluster.positions()).items():
            self.process_commit.labels(process, sha).set(1)
        for shard in bot.shard_states():
            self.shard_connected.labels(str(shard.id)).set(1 if shard.connected else 0)
            self.shard_latency.labels(str(shard.id)).set(
                math.nan if shard.latency_s is None else shard.latency_s
            )
        return generate_latest(self.registry)
