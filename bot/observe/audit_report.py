"""The self-audit's report: what the bot's own records say about a period (`read_report`).

`mendbot.observe.audit.AuditService` loads this with the first audit. `read_report` reads the period's
aggregates (bot/db/audit.py) into an `AuditReport`: the error budget per kind (failures against
`1 - audit.slo` of its actions), the failing kinds and fingerprints, p50/p95 per kind against the
previous period of the same length (a regression is a p95 `regression_factor` times the previous one,
with enough samples on both sides), the commands the loaded bot has that nobody invoked, incidents
opened/resolved/regressed, runs and their outcomes, and spend per UTC day (chat replies from actions,
runs from run events). `AuditReport.highest_impact()` names the one item most worth fixing — the hook
an autonomous `propose` level starts a run from. Rendering lives in `audit_render` (text) and
`audit_charts` (PNG).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from mendbot.db import audit as queries
from mendbot.db.audit import FingerprintCount, IncidentCounts, RunCount
from mendbot.db.core import Connection
from mendbot.kernel.sections import AuditConfig
from mendbot.observe.kind_words import kind_words

__all__ = ["AuditFinding", "AuditReport", "DayFigures", "KindBudget", "LatencyChange", "read_report"]

_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class KindBudget:
    """A kind's failures against what the SLO allows for its number of actions."""

    kind: str
    actions: int
    failures: int
    allowed: float

    @property
    def rate(self) -> float:
        return self.failures / self.actions if self.actions else 0.0

    @property
    def burn(self) -> float:
        """The share of the error budget used: 1.0 is all of it."""
        return self.failures / self.allowed if self.allowed else 0.0

    @property
    def over(self) -> bool:
        return self.failures > self.allowed


@dataclass(frozen=True)
class LatencyChange:
    """A kind's p50/p95 in the period and in the previous period of the same length."""

    kind: str
    actions: int
    p50: float
    p95: float
    previous_actions: int
    previous_p50: float | None
    previous_p95: float | None
    regressed: bool

    @property
    def factor(self) -> float | None:
        return self.p95 / self.previous_p95 if self.previous_p95 else None


@dataclass(frozen=True)
class DayFigures:
    day: date
    actions: int
    failures: int
    chat_usd: float
    runs_usd: float


@dataclass(frozen=True)
class AuditFinding:
    """The item most worth fixing: what it is, why, and a description a run can start from."""

    title: str
    description: str
    kind: str
    fingerprint: str | None
    impact: float  # failures in the period, or the p95 factor for a regression


@dataclass(frozen=True)
class AuditReport:
    start: datetime
    end: datetime
    slo: float
    top: int
    budgets: list[KindBudget]  # every kind seen, most budget burnt first
    fingerprints: list[FingerprintCount]  # most failures first
    latency: list[LatencyChange]  # regressions first (worst first), then by p95
    unused_commands: list[str]  # command kinds of the loaded bot not seen in the period
    incidents: IncidentCounts
    runs: list[RunCount]
    days: list[DayFigures]  # every UTC day the period touches, oldest first

    @property
    def period(self) -> timedelta:
        return self.end - self.start

    @property
    def actions(self) -> int:
        return sum(b.actions for b in self.budgets)

    @property
    def failures(self) -> int:
        return sum(b.failures for b in self.budgets)

    @property
    def over_budget(self) -> list[KindBudget]:
        return [b for b in self.budgets if b.over]

    @property
    def regressions(self) -> list[LatencyChange]:
        return [change for change in self.latency if change.regressed]

    @property
    def chat_usd(self) -> float:
        return sum(day.chat_usd for day in self.days)

    @property
    def runs_usd(self) -> float:
        return sum(day.runs_usd for day in self.days)

    def highest_impact(self) -> AuditFinding | None:
        """The one item to fix first, or None when nothing stands out.

        In order: the most frequent failure of a kind over its error budget; a kind over budget
        without fingerprints; the worst latency regression; the most frequent failure at all.
        """
        over = {b.kind: b for b in self.over_budget}
        for failure in self.fingerprints:
            if failure.kind in over:
                return _failure_finding(failure, over[failure.kind])
        if over:
            worst = max(over.values(), key=lambda b: b.burn)
            return AuditFinding(
                title=f"{kind_words(worst.kind)} is at {worst.burn:.0%} of its error budget",
                description=(
                    f"{worst.kind} failed {worst.failures} of {worst.actions} times "
                    f"({worst.rate:.1%}) in the audited period, over its error budget."
                ),
                kind=worst.kind,
                fingerprint=None,
                impact=float(worst.failures),
            )
        if self.regressions:
            change = self.regressions[0]
            return AuditFinding(
                title=(
                    f"{kind_words(change.kind)} got slower: "
                    f"p95 {change.previous_p95:.0f} → {change.p95:.0f} ms"
                ),
                description=(
                    f"The p95 latency of {change.kind} rose from {change.previous_p95:.0f} ms to "
                    f"{change.p95:.0f} ms (×{change.factor:.1f}) against the previous period."
                ),
                kind=change.kind,
                fingerprint=None,
                impact=change.factor or 0.0,
            )
        if self.fingerprints:
            return _failure_finding(self.fingerprints[0], None)
        return None


def _failure_finding(failure: FingerprintCount, budget: KindBudget | None) -> AuditFinding:
    error = f"{failure.error_type or 'error'}: {failure.message or ''}".strip().rstrip(":")
    why = f"; it is at {budget.burn:.0%} of its error budget" if budget is not None else ""
    error_type = failure.error_type or "an error"
    return AuditFinding(
        title=f"{kind_words(failure.kind)} failed {failure.count}× with {error_type}{why}",
        description=(
            f"{failure.kind} failed {failure.count} times in the audited period with {error[:300]} "
            f"(fingerprint {failure.fingerprint}){why}."
        ),
        kind=failure.kind,
        fingerprint=failure.fingerprint,
        impact=float(failure.count),
    )


async def read_report(
    db: Connection, config: AuditConfig, start: datetime, end: datetime, commands: Collection[str]
) -> AuditReport:
    """The report on `start` … `end` (half-open) from `db`; `commands` are the loaded bot's command kinds."""
    a, b = start.timestamp(), end.timestamp()
    kind_days = await queries.kind_days(db, a, b)
    budgets = _budgets(kind_days, config.slo)
    seen = {budget.kind for budget in budgets}
    return AuditReport(
        start=start,
        end=end,
        slo=config.slo,
        top=config.top,
        budgets=budgets,
        fingerprints=await queries.top_fingerprints(db, a, b, config.top),
        latency=await _latency(db, config, budgets, a, b),
        unused_commands=sorted(set(commands) - seen),
        incidents=await queries.incident_counts(db, a, b),
        runs=await queries.run_counts(db, a, b),
        days=_days(kind_days, await queries.run_spend_by_day(db, a, b), start, end),
    )


async def _latency(
    db: Connection, config: AuditConfig, budgets: list[KindBudget], start: float, end: float
) -> list[LatencyChange]:
    before = start - (end - start)
    previous = await queries.kind_counts(db, before, start)
    changes = []
    for budget in budgets:
        p50, p95 = await _percentiles(db, budget.kind, budget.actions, start, end)
        if p50 is None or p95 is None:
            continue
        count = previous.get(budget.kind, 0)
        prev50, prev95 = await _percentiles(db, budget.kind, count, before, start)
        regressed = (
            prev95 is not None
            and prev95 > 0
            and min(budget.actions, count) >= config.regression_min_samples
            and p95 >= config.regression_min_ms
            and p95 > config.regression_factor * prev95
        )
        changes.append(LatencyChange(budget.kind, budget.actions, p50, p95, count, prev50, prev95, regressed))
    changes.sort(key=lambda c: (not c.regressed, -(c.factor or 0.0) if c.regressed else -c.p95, c.kind))
    return changes


async def _percentiles(
    db: Connection, kind: str, count: int, start: float, end: float
) -> tuple[float | None, float | None]:
    """Nearest-rank p50 and p95 (the ⌈p·n⌉-th smallest duration)."""
    if count == 0:
        return None, None
    return (
        await queries.percentile(db, kind, start, end, (count * 50 + 99) // 100),
        await queries.percentile(db, kind, start, end, (count * 95 + 99) // 100),
    )


def _budgets(kind_days: list[queries.KindDay], slo: float) -> list[KindBudget]:
    totals: dict[str, list[int]] = {}
    for row in kind_days:
        total = totals.setdefault(row.kind, [0, 0])
        total[0] += row.actions
        total[1] += row.failures
    budgets = [
        KindBudget(kind, actions, failures, allowed=(1 - slo) * actions)
        for kind, (actions, failures) in totals.items()
    ]
    budgets.sort(key=lambda b: (-b.burn, -b.failures, b.kind))
    return budgets


def _days(
    kind_days: list[queries.KindDay], run_spend: dict[int, float], start: datetime, end: datetime
) -> list[DayFigures]:
    first = int(start.timestamp() // 86400)
    last = int((end.timestamp() - 1e-6) // 86400)
    figures = {day: [0, 0, 0.0] for day in range(first, last + 1)}
    for row in kind_days:
        entry = figures.setdefault(row.day, [0, 0, 0.0])
        entry[0] += row.actions
        entry[1] += row.failures
        entry[2] += row.cost_usd
    return [
        DayFigures(
            day=_EPOCH + timedelta(days=day),
            actions=int(actions),
            failures=int(failures),
            chat_usd=float(chat),
            runs_usd=run_spend.get(day, 0.0),
        )
        for day, (actions, failures, chat) in sorted(figures.items())
    ]
