"""The self-audit's charts as PNG bytes: failures per day, p95 per kind, spend per day — one axis each, counts
in whole numbers.

matplotlib's object API with the Agg canvas: no pyplot global state, no display, safe to call
from a worker thread (the cog does, so drawing never holds the event loop). matplotlib is
imported on first use: it costs about half a second, which start-up should not pay.

Every text drawn from the records (the kinds labelling the p95 chart) passes the caller's redactor
first — a picture is output like any other — and is drawn as plain text (no mathtext: a `$` in a
kind is a dollar sign, not a formula that could fail to parse).

matplotlib is an extra (`pip install 'mendbot[charts]'`): without it the audit is its text alone, and
says how to have the charts (`CHARTS_MISSING`).
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mendbot.observe.audit_report import AuditReport
from mendbot.observe.kind_words import kind_words

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["CHARTS_MISSING", "Chart", "chart_figures", "charts_available", "render_charts"]

CHARTS_MISSING = (
    "📉 No charts: they are drawn with matplotlib, which mendbot installs with its `charts` extra "
    "(`pip install 'mendbot[charts]'`)."
)

_SIZE = (8.0, 4.0)  # inches; at 100 dpi an 800×400 image that Discord shows inline
_DPI = 100


@dataclass(frozen=True)
class Chart:
    filename: str
    png: bytes


def charts_available() -> bool:
    """Whether matplotlib is installed (the `charts` extra)."""
    return importlib.util.find_spec("matplotlib") is not None


def render_charts(report: AuditReport, redact: Callable[[str], str]) -> list[Chart]:
    """One PNG per chart; an empty period still gets charts that say so; none without matplotlib.
    `redact` is the bot's redactor (`Redactor.text`), applied to every label that comes from the
    records."""
    if not charts_available():
        return []
    return [Chart(f"{name}.png", _png(figure)) for name, figure in chart_figures(report, redact).items()]


def chart_figures(report: AuditReport, redact: Callable[[str], str]) -> dict[str, Figure]:
    """The charts as matplotlib figures, by name (what `render_charts` draws), in their order."""
    return {
        "failures_per_day": _failures_per_day(report),
        "p95_per_kind": _p95_per_kind(report, redact),
        "spend_per_day": _spend_per_day(report),
    }


def _figure(title: str) -> Figure:
    from matplotlib.figure import Figure

    figure = Figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
    figure.suptitle(title)
    return figure


def _png(figure: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _failures_per_day(report: AuditReport) -> Figure:
    """Failed actions per day on one axis counted in whole actions; each day's share of its actions that
    failed is written on its bar (a second, percentage axis over the same bars read as one)."""
    from matplotlib.ticker import MaxNLocator

    figure = _figure("Failures per day")
    axes = figure.add_subplot()
    labels = [f"{day.day:%m-%d}" for day in report.days]
    failures = [day.failures for day in report.days]
    bars = axes.bar(labels, failures, color="#d9534f", label="failed")
    shares = [f"{100 * d.failures / d.actions:.0f}% failed" if d.failures else "" for d in report.days]
    axes.bar_label(bars, shares, padding=2, fontsize=8)
    axes.set_ylabel("failed actions")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(0, max([1, *failures]) * 1.15)  # room for the labels; a quiet period still counts 0, 1
    return figure


def _p95_per_kind(report: AuditReport, redact: Callable[[str], str]) -> Figure:
    figure = _figure("p95 latency per kind (ms): this period vs the previous")
    axes = figure.add_subplot()
    changes = report.latency[: report.top * 2][::-1]  # the worst at the top
    if not changes:
        axes.text(0.5, 0.5, "no timed actions in this period", ha="center", va="center")
        axes.set_axis_off()
        return figure
    positions = list(range(len(changes)))
    height = 0.4
    axes.barh(
        [p + height / 2 for p in positions],
        [c.p95 for c in changes],
        height,
        color=["#d9534f" if c.regressed else "#5b8def" for c in changes],
        label="this period",
    )
    axes.barh(
        [p - height / 2 for p in positions],
        [c.previous_p95 or 0.0 for c in changes],
        height,
        color="#bbbbbb",
        label="previous period",
    )
    names = [kind_words(c.kind).replace("`", "") for c in changes]  # "the /roll command", as the report reads
    axes.set_yticks(positions, [redact(name) for name in names], fontsize=8, parse_math=False)
    axes.set_xlabel("ms")
    axes.legend(loc="lower right")
    return figure


def _spend_per_day(report: AuditReport) -> Figure:
    figure = _figure("Spend per day (USD)")
    axes = figure.add_subplot()
    labels = [f"{day.day:%m-%d}" for day in report.days]
    chat = [day.chat_usd for day in report.days]
    axes.bar(labels, chat, color="#5cb85c", label="chat")
    axes.bar(labels, [day.runs_usd for day in report.days], bottom=chat, color="#f0ad4e", label="runs")
    axes.set_ylabel("USD")
    axes.legend(loc="upper left")
    return figure
