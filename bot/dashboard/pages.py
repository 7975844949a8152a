"""What each dashboard page shows, read from the database as plain, redacted data.

Every function returns a dict for its template (bot/dashboard/templates/). Whatever came from outside
the bot's own code — error messages, agent output, diffs, users' words, check output — passes the
redactor here, and is escaped by the templates (Jinja's autoescape); nothing is marked safe.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.db import browse, proposals, runs
from bot.db import incidents as incident_queries
from bot.db.browse import ActionFilter
from bot.db.core import Connection
from bot.improve.runs import ACTIVE_STATES
from bot.kernel.git import git
from bot.kernel.settings import Settings
from bot.observe.audit import AuditError, AuditService, parse_period
from bot.observe.audit_charts import Chart, render_charts
from bot.observe.audit_render import render_text
from bot.observe.audit_report import AuditReport
from bot.trust.redact import Redactor

__all__ = ["PageReader", "diff_lines"]

_MAX_DIFF_BYTES = 512 * 1024
_MAX_DIFF_LINES = 5000
_DAY = 86400.0


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """(css class, line) of a unified diff, for its highlighting; the text stays text."""
    out: list[tuple[str, str]] = []
    for line in diff.splitlines()[:_MAX_DIFF_LINES]:
        if line.startswith(("+++", "---", "diff --git", "index ")):
            css = "file"
        elif line.startswith("@@"):
            css = "hunk"
        elif line.startswith("+"):
            css = "add"
        elif line.startswith("-"):
            css = "del"
        else:
            css = "ctx"
        out.append((css, line))
    return out


def _detail_text(detail: Any) -> str:
    if not detail:
        return ""
    if isinstance(detail, str):
        return detail
    return json.dumps(detail, indent=1, ensure_ascii=False, sort_keys=True, default=str)


def _summary(detail: Any) -> str:
    """One line of a detail, for a timeline row (the whole detail folds out below it)."""
    if not detail:
        return ""
    line = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False, default=str)
    line = " ".join(line.split())
    return line if len(line) <= 110 else line[:109] + "…"


@dataclass
class PageReader:
    """Reads the pages' data from the bot's database; `status` gives the live process figures."""

    db: Connection
    settings: Settings
    redactor: Redactor
    status: Callable[[], dict[str, object]]
    clock: Callable[[], float] = time.time
    audit_service: AuditService | None = None
    # The last audit per period and when it was made: its page and its three charts read one report.
    _audits: dict[str, tuple[float, AuditReport]] = field(default_factory=dict)

    def _page(self, value: dict[str, Any]) -> dict[str, Any]:
        cleaned: dict[str, Any] = self._clean(value)
        return cleaned

    def echo(self, values: dict[str, str]) -> dict[str, str]:
        """What the visitor typed (a filter), shown back through the redactor like everything else."""
        return {key: self.redactor.text(value) for key, value in values.items()}

    def _clean(self, value: Any) -> Any:
        """Every string in `value` through the redactor, uncapped: a page shows a whole timeline or
        diff, which `Redactor.value` (made for records) would cut to a few items."""
        if isinstance(value, str):
            return self.redactor.text(value)
        if isinstance(value, dict):
            return {key: self._clean(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._clean(item) for item in value]
        return value

    async def overview(self) -> dict[str, Any]:
        now = self.clock()
        midnight = now - now % _DAY
        runs_spent, other_spent = await browse.spend_since(self.db, midnight)
        open_incidents = await incident_queries.list_by_state(self.db, ("open", "acknowledged"), limit=25)
        improve = self.settings.improve
        in_flight = await browse.in_states(self.db, ACTIVE_STATES, self.settings.dashboard.page_size)
        executors = await runs.executors(self.db, [run["id"] for run in in_flight])
        workers: dict[str, list[int]] = {}
        for run in in_flight:  # who executes each: this process, or a worker (improve.run_on: workers)
            name = str(executors.get(run["id"], {}).get("executor") or "this process")
            workers.setdefault(name, []).append(run["id"])
        return self._page(
            {
                "status": sorted(self.status().items()),
                "in_flight": in_flight,
                "workers": sorted(workers.items()),
                "incidents": open_incidents,
                "spend": {
                    "runs": runs_spent,
                    "other": other_spent,
                    "budget": improve.daily_budget_usd,
                    "autonomous_budget": improve.autonomous_daily_budget_usd,
                },
            }
        )

    async def run_list(self, *, before: int | None, state: str | None) -> dict[str, Any]:
        size = self.settings.dashboard.page_size
        found = await browse.run_page(self.db, before=before, limit=size + 1, state=state)
        more = len(found) > size
        found = found[:size]
        return self._page(
            {"runs": found, "state": state, "next": found[-1]["id"] if more and found else None}
        )

    async def run(self, run_id: int) -> dict[str, Any] | None:
        run = await runs.by_id(self.db, run_id)
        if run is None:
            return None
        events = await runs.events(self.db, run_id)
        latest: dict[str, Any] = {}
        for event in events:
            latest[event["event"]] = event["detail"]
        requests = [e for e in events if e["event"] == "model_request"]
        return self._page(
            {
                "run": run,
                "events": [self._event_row(e) for e in events],
                "last_event_id": events[-1]["id"] if events else 0,
                "diagnosis": _detail_text(latest.get("diagnosis")),
                "plan": _detail_text(latest.get("plan")),
                "checks": _detail_text(latest.get("checks")),
                "diff": diff_lines(await self._diff(run)),
                "proofs": await browse.proofs_of_run(self.db, run_id),
                "proposals": [asdict(p) for p in await proposals.by_run(self.db, run_id)],
                "approvals": await browse.approvals_of_run(self.db, run_id),
                "objections": await browse.objections_of_run(self.db, run_id),
                "requests": [self._event_row(e) for e in requests],
                "request_cost": sum(e["cost_usd"] for e in requests),
            }
        )

    def _event_row(self, event: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": event["id"],
            "ts": event["ts"],
            "actor": event["actor"],
            "event": event["event"],
            "state": event["state"],
            "cost_usd": event["cost_usd"],
            "detail": _detail_text(event["detail"]),
            "summary": _summary(event["detail"]),
        }

    async def events_after(self, run_id: int, after: int) -> list[dict[str, Any]]:
        """The run's events after `after`, as timeline rows (the live stream's news)."""
        found = await browse.events_after(self.db, run_id, after)
        return [self._page(self._event_row(e)) for e in found]

    async def _diff(self, run: dict[str, Any]) -> str:
        """The run's change as a unified diff, from the repository (its branch is kept there)."""
        base, head = run.get("base_sha"), run.get("verified_sha") or run.get("head_sha")
        if not base or not head:
            return ""
        result = await git(
            self.settings.repo_dir, "diff", "--no-color", f"{base}..{head}", check=False, timeout_s=10
        )
        if result.code != 0:
            return ""
        return result.output[:_MAX_DIFF_BYTES]

    async def incident_list(self, *, before: int | None, state: str | None) -> dict[str, Any]:
        size = self.settings.dashboard.page_size
        found = await browse.incident_page(self.db, before=before, limit=size + 1, state=state)
        more = len(found) > size
        found = found[:size]
        return self._page(
            {"incidents": found, "state": state, "next": found[-1]["id"] if more and found else None}
        )

    async def incident(self, incident_id: int) -> dict[str, Any] | None:
        incident = await incident_queries.by_id(self.db, incident_id)
        if incident is None:
            return None
        fingerprint = incident.get("fingerprint")
        samples = await browse.actions_of_fingerprint(self.db, fingerprint, 20) if fingerprint else []
        its_runs = await runs.for_incident(self.db, incident_id)
        evidence = []
        for run in its_runs:
            for event in await runs.events(self.db, run["id"]):
                if event["event"] == "evidence":
                    evidence.append({"run_id": run["id"], "detail": _detail_text(event["detail"])})
        return self._page({"incident": incident, "samples": samples, "runs": its_runs, "evidence": evidence})

    async def actions(self, where: ActionFilter, cursor: tuple[float, int] | None) -> dict[str, Any]:
        size = self.settings.dashboard.page_size
        found = await browse.action_page(self.db, where, cursor=cursor, limit=size + 1)
        more = len(found) > size
        found = found[:size]
        last = found[-1] if more and found else None
        return self._page(
            {"actions": found, "next": f"{last['ts']!r}:{last['id']}" if last is not None else None}
        )

    async def _report(self, period: str) -> AuditReport:
        """The self-audit of `period` (e.g. 24h, 7d), made at most once a minute; AuditError if the
        period is not one, or no audit is available here."""
        if self.audit_service is None:
            raise AuditError("The self-audit is not available in this process.")
        span = parse_period(period, self.settings.observe.retention_days * 24)
        made = self._audits.get(period)
        if made is None or self.clock() - made[0] > 60:
            made = (self.clock(), await self.audit_service.report(span))
            self._audits = {period: made}  # one period kept: a page and its charts
        return made[1]

    async def audit(self, period: str) -> dict[str, Any]:
        """The self-audit report as text, and the names of its charts; or why it cannot be made."""
        try:
            report = await self._report(period)
        except AuditError as exc:
            return self._page({"period": period, "error": str(exc), "texts": [], "charts": []})
        texts = render_text(report, report.highest_impact())
        names = ["failures_per_day", "p95_per_kind", "spend_per_day"]
        spend = [
            {"day": day.day.isoformat(), "actions": day.actions, "failures": day.failures,
             "chat": day.chat_usd, "runs": day.runs_usd}
            for day in report.days
        ]  # fmt: skip
        return self._page({"period": period, "error": None, "texts": texts, "charts": names, "spend": spend})

    async def chart(self, period: str, name: str) -> bytes | None:
        """One PNG chart of the audit of `period` (drawn in a thread: matplotlib is slow)."""
        try:
            report = await self._report(period)
        except AuditError:
            return None
        charts: list[Chart] = await asyncio.to_thread(render_charts, report, self.redactor.text)
        return next((chart.png for chart in charts if chart.filename == f"{name}.png"), None)
