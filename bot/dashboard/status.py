"""This process at a glance: ok, warning or failing, with why, and its figures as a person reads them.

The overview's status panel reads the health endpoint's figures (`mendbot.runtime.health.process_status`)
and says what they mean, as a status page does: failing when the bot cannot do its job (Discord not
connected, storage failing, extensions that did not load, not taking work), a warning when it works
with something lost or held (action records dropped, writes given up, runs paused, a merge it cannot
follow, a shard down), and the figures themselves in words ("3 min", "11 cogs", "42 ms").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mendbot.kernel.durations import human_duration

__all__ = ["ProcessHealth", "process_health"]

Level = Literal["ok", "warning", "failing"]
_LABELS: dict[Level, str] = {"ok": "✅ OK", "warning": "⚠️ Warning", "failing": "❌ Failing"}


@dataclass(frozen=True)
class ProcessHealth:
    level: Level
    reasons: list[str] = field(default_factory=list)  # why it is not ok, worst first
    facts: list[tuple[str, str]] = field(default_factory=list)  # (what, its value in words)

    @property
    def label(self) -> str:
        return _LABELS[self.level]


def _count(value: Any) -> int:
    return value if isinstance(value, int) else 0


def process_health(status: Mapping[str, Any]) -> ProcessHealth:
    """The verdict and the figures of one process's status (missing figures are left out)."""
    failing: list[str] = []
    warnings: list[str] = []
    shards = [shard for shard in status.get("shards") or [] if isinstance(shard, Mapping)]
    down = [str(shard.get("id")) for shard in shards if not shard.get("connected")]
    if status.get("discord_ready") is False:
        failing.append("Discord: not connected yet (or the connection was lost)")
    elif down:
        warnings.append(f"Discord: shard {', '.join(down)} not connected, reconnecting")
    if status.get("accepting") is False:
        failing.append("not taking new work: draining for a restart or shutting down")
    if status.get("storage_fault"):
        failing.append(f"storage: {status['storage_fault']} — writes are failing (see the storage incident)")
    extension_failures = status.get("extension_failures") or {}
    if extension_failures:
        names = ", ".join(sorted(extension_failures))
        failing.append(f"{len(extension_failures)} extension(s) failed to load and are not serving: {names}")
    if shed := _count(status.get("actions_shed")):
        warnings.append(
            f"{shed} action record(s) shed: the journal could not keep up"
            f" ({_count(status.get('actions_shed_failures'))} of them failures)"
        )
    if given_up := _count(status.get("storage_writes_given_up")):
        warnings.append(f"{given_up} write(s) given up after retries")
    if status.get("improvement_paused"):
        warnings.append("self-improvement is paused: no run starts until /resume")
    if status.get("merge_follow_problem"):
        warnings.append(f"cannot follow merges: {status['merge_follow_problem']}")
    level: Level = "failing" if failing else "warning" if warnings else "ok"
    return ProcessHealth(level, failing + warnings, _facts(status, shards))


def _facts(status: Mapping[str, Any], shards: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
    facts: list[tuple[str, str]] = []
    if isinstance(status.get("uptime_s"), int | float):
        facts.append(("Up for", human_duration(status["uptime_s"])))
    if shards:
        latencies = [s["latency_ms"] for s in shards if isinstance(s.get("latency_ms"), int | float)]
        connected = sum(1 for shard in shards if shard.get("connected"))
        latency = f", {max(latencies):.0f} ms" if latencies else ""
        facts.append(("Discord", f"{connected} of {len(shards)} shard(s) connected{latency}"))
    cogs = status.get("cogs")
    if isinstance(cogs, list):
        facts.append(("Cogs", f"{len(cogs)} loaded: {', '.join(str(cog) for cog in cogs)}"))
    if "inflight" in status:
        facts.append(("Handlers running", str(status["inflight"])))
    if "actions_recorded" in status:
        facts.append(
            (
                "Action records",
                f"{_count(status.get('actions_recorded')):,} recorded, "
                f"{_count(status.get('actions_written')):,} in the database, "
                f"{_count(status.get('actions_waiting')):,} waiting for it, "
                f"{_count(status.get('actions_shed')):,} shed",
            )
        )
    if "storage_fault" in status:
        fault, retries = status["storage_fault"], _count(status.get("storage_write_retries"))
        retried = f", {retries} write(s) retried" if retries else ""
        facts.append(("Storage", f"failing ({fault})" if fault else f"writable{retried}"))
    if "leader" in status:
        how = status.get("leadership") or ""
        facts.append(("Leadership", f"{'leader' if status['leader'] else 'follower'} ({how})".strip()))
    if status.get("commit"):
        facts.append(("Commit", str(status["commit"])[:12]))
    if "improvement_paused" in status:
        paused = status["improvement_paused"]  # None: starting (on a bot mendbot attached to, connecting)
        state = "starting" if paused is None else "paused" if paused else "running"
        facts.append(("Self-improvement", state))
    return facts
