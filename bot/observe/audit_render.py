"""The self-audit as Discord text: sections of plain lines, split into messages of ≤ 2000 characters."""

from __future__ import annotations

import textwrap
from datetime import timedelta

from mendbot.kernel.money import usd
from mendbot.observe.audit_report import AuditFinding, AuditReport
from mendbot.observe.kind_words import command_name, kind_words

__all__ = ["MESSAGE_LIMIT", "render_text", "span"]

MESSAGE_LIMIT = 2000


def span(period: timedelta) -> str:
    """`24h`, `36h`, `7d`, `3d12h`: a period the way /audit takes it, in hours up to two days."""
    hours = round(period.total_seconds() / 3600)
    if hours <= 48:
        return f"{hours}h"
    days, rest = divmod(hours, 24)
    return f"{days}d{rest}h" if rest else f"{days}d"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def render_text(report: AuditReport, finding: AuditFinding | None = None) -> list[str]:
    """The report as one or more messages, each at most MESSAGE_LIMIT characters."""
    lines = [
        f"📋 **Self-audit** · last {span(report.period)} "
        f"({report.start:%Y-%m-%d %H:%M} → {report.end:%Y-%m-%d %H:%M} UTC)",
        f"{report.actions:,} actions, {report.failures:,} failed · "
        f"SLO {report.slo:.2%} success per kind (error budget {1 - report.slo:.2%})",
        "",
        *_budget(report),
        "",
        *_failures(report),
        "",
        *_latency(report),
        "",
        *_unused(report),
        "",
        *_incidents_and_runs(report),
        "",
        *_spend(report),
    ]
    if finding is not None:
        lines += ["", f"🎯 **Highest impact:** {finding.title}"]
    return _split("\n".join(lines))


def _budget(report: AuditReport) -> list[str]:
    lines = ["**Error budget** (failed / actions per kind)"]
    if not report.budgets:
        return [*lines, "No actions in this period."]
    for budget in report.budgets[: report.top]:
        mark = "🔴" if budget.over else "🟢"
        lines.append(
            f"{mark} {kind_words(budget.kind)} {budget.failures:,}/{budget.actions:,} failed"
            f" ({budget.rate:.1%}) — {budget.burn:.0%} of budget"
        )
    hidden = len(report.budgets) - report.top
    over = len(report.over_budget)
    if hidden > 0:
        lines.append(f"… and {hidden} more kind(s); {over} over budget in all.")
    return lines


def _failures(report: AuditReport) -> list[str]:
    failing = sorted((b for b in report.budgets if b.failures), key=lambda b: (-b.failures, b.kind))
    lines = ["**Top failing kinds**"]
    lines += [f"• {kind_words(b.kind)} {b.failures:,}×" for b in failing[: report.top]] or ["None."]
    lines.append("**Top failures by fingerprint**")
    for failure in report.fingerprints:
        new = (
            " 🆕" if failure.first_seen is not None and failure.first_seen >= report.start.timestamp() else ""
        )
        message = f": {failure.message[:80]}" if failure.message else ""
        lines.append(
            f"• {kind_words(failure.kind)} {failure.count:,}× {failure.error_type or 'error'}{message}"
            f" (`{failure.fingerprint[:12]}`){new}"
        )
    if not report.fingerprints:
        lines.append("None.")
    return lines


def _latency(report: AuditReport) -> list[str]:
    lines = [f"**Latency** p50 / p95 ms, against the previous {span(report.period)}"]
    for change in report.latency[: report.top]:
        mark = "⚠️" if change.regressed else "•"
        was = (
            f" (was {_ms(change.previous_p50)} / {_ms(change.previous_p95)}"
            + (f", ×{change.factor:.1f})" if change.factor is not None else ")")
            if change.previous_actions
            else " (new)"
        )
        lines.append(f"{mark} {kind_words(change.kind)} {_ms(change.p50)} / {_ms(change.p95)}{was}")
    if not report.latency:
        lines.append("No timed actions.")
    regressions = len(report.regressions)
    lines.append(f"{regressions} regression(s)." if regressions else "No regressions.")
    return lines


def _unused(report: AuditReport) -> list[str]:
    if not report.unused_commands:
        return ["**Never invoked:** none — every command was used."]
    names = ", ".join(command_name(kind) for kind in report.unused_commands)
    text = f"**Never invoked** ({len(report.unused_commands)}): {names}"
    # A bot with many commands would make one line longer than a message: wrap between names.
    return textwrap.wrap(text, width=500, break_long_words=False, break_on_hyphens=False)


def _incidents_and_runs(report: AuditReport) -> list[str]:
    incidents = report.incidents
    lines = [
        f"**Incidents:** {incidents.opened} opened, {incidents.resolved} resolved, "
        f"{incidents.regressed} regressed · {incidents.open_now} open now"
    ]
    total = sum(run.runs for run in report.runs)
    if not total:
        return [*lines, "**Runs:** none."]
    states: dict[str, int] = {}
    for run in report.runs:
        states[run.state] = states.get(run.state, 0) + run.runs
    outcomes = ", ".join(f"{count} {state.replace('_', ' ')}" for state, count in sorted(states.items()))
    cost = sum(run.cost_usd for run in report.runs)
    return [*lines, f"**Runs:** {total} — {outcomes} · {usd(cost)}"]


def _spend(report: AuditReport) -> list[str]:
    lines = [
        f"**Spend:** {usd(report.chat_usd + report.runs_usd)} "
        f"(chat {usd(report.chat_usd)}, runs {usd(report.runs_usd)})"
    ]
    lines += [
        f"• {day.day:%m-%d} {usd(day.chat_usd + day.runs_usd)}"
        f" (chat {usd(day.chat_usd)}, runs {usd(day.runs_usd)})"
        for day in report.days
        if day.chat_usd or day.runs_usd
    ]
    return lines


def _split(text: str) -> list[str]:
    """Whole lines per message; a single line longer than the limit is cut."""
    messages: list[str] = []
    current = ""
    for whole in text.split("\n"):
        line = whole[:MESSAGE_LIMIT]
        if current and len(current) + 1 + len(line) > MESSAGE_LIMIT:
            messages.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current.strip():
        messages.append(current)
    return messages
