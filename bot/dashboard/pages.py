"""What each dashboard page shows, read from the database and shaped for reading, redacted.

Every function returns a dict for its template (bot/dashboard/templates/): the overview's status panel
(`mendbot.dashboard.status`), a run's stages, prose, checks and proof (`mendbot.dashboard.run_view`), an
incident's error, stack and the evidence the agent was given. Whatever came from outside the bot's own
code — error messages, agent output, diffs, users' words, check output — passes the redactor here, and
is escaped by the templates (Jinja's autoescape); only `mendbot.dashboard.render`'s helpers add markup,
around text they escaped first.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from mendbot.dashboard import run_view
from mendbot.dashboard.status import process_health
from mendbot.db import browse, proposals, runs
from mendbot.db import incidents as incident_queries
from mendbot.db.browse import ActionFilter
from mendbot.db.core import Connection
from mendbot.improve.runs import ACTIVE_STATES, STATE_ICONS, TERMINAL_STATES, state_label
from mendbot.kernel.git import git
from mendbot.kernel.settings import Settings
from mendbot.observe.audit import AuditError, AuditService, parse_period
from mendbot.observe.audit_charts import CHARTS_MISSING, Chart, charts_available, render_charts
from mendbot.observe.audit_render import render_text
from mendbot.observe.audit_report import AuditReport
from mendbot.trust.redact import Redactor

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


def _frames(value: Any) -> list[str]:
    """An action's in-repo frames (`file:line:function`, innermost last), stored as a JSON list."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value]
    return [str(frame) for frame in value] if isinstance(value, list) else []


@dataclass
class PageReader:
    """Reads the pages' data from the bot's database; `status` gives the live process figures."""

    db: Connection
    settings: Settings
    redactor: Redactor
    status: Callable[[], dict[str, object]]
    clock: Callable[[], float] = time.time
    audit_service: AuditService | None = None
    # The name a person goes by where the bot knows it (bot/runtime/people.py), else None.
    names: Callable[[int], str | None] = lambda _: None
    # The last audit per period and when it was made: its page and its three charts read one report.
    _audits: dict[str, tuple[float, AuditReport]] = field(default_factory=dict)

    def _page(self, value: dict[str, Any]) -> dict[str, Any]:
        cleaned: dict[str, Any] = self._clean(value)
        # The bot's "now", which times on the page are relative to (the playground's clock moves with `wait`).
        cleaned["now"] = round(self.clock(), 3)
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
        latest = await browse.run_page(self.db, before=None, limit=5)
        executors = await runs.executors(self.db, [run["id"] for run in in_flight])
        workers: dict[str, list[int]] = {}
        for run in in_flight:  # who executes each: this process, or a worker (improve.run_on: workers)
            name = str(executors.get(run["id"], {}).get("executor") or "this process")
            workers.setdefault(name, []).append(run["id"])
        health = process_health(self.status())
        return self._page(
            {
                "health": {
                    "level": health.level,
                    "label": health.label,
                    "reasons": health.reasons,
                    "facts": health.facts,
                },
                "in_flight": in_flight,
                "latest": [run for run in latest if run["state"] not in ACTIVE_STATES],
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
            {
                "runs": found,
                "state": state,
                "states": [(name, state_label(name)) for name in STATE_ICONS],  # the filter's, by name
                "next": found[-1]["id"] if more and found else None,
            }
        )

    def name_of(self, user_id: int) -> str | None:
        """The name `user_id` goes by, redacted like everything else on the pages."""
        name = self.names(user_id)
        return self.redactor.text(name) if name else None

    async def run(self, run_id: int) -> dict[str, Any] | None:
        run = await runs.by_id(self.db, run_id)
        if run is None:
            return None
        events = await runs.events(self.db, run_id)
        latest: dict[str, Any] = {}
        for event in events:
            latest[event["event"]] = event["detail"]
        requests = [e for e in events if e["event"] == "model_request"]
        evidence = latest.get("evidence") or {}
        ended = run["updated_at"] if run["state"] in TERMINAL_STATES else None
        stages = run_view.stages(events, ended=ended, now=self.clock(), name_of=self.names)
        return self._page(
            {
                "run": run,
                "stages": stages,
                # How it ended, said under its title (a failure says why on its own).
                "outcome": stages[-1]["head"] if ended is not None and stages else None,
                "last_event_id": events[-1]["id"] if events else 0,
                "took": (ended if ended is not None else self.clock()) - run["created_at"],
                "diagnosis": run_view.prose(latest.get("diagnosis")),
                "plan": run_view.prose(latest.get("plan")),
                "attempts": run_view.attempts(events),
                "evidence": {
                    "text": evidence.get("text") or "",
                    "summary": run_view.describe("evidence", evidence),
                }
                if evidence
                else None,
                "diff": diff_lines(await self._diff(run)),
                "proofs": run_view.proof_views(await browse.proofs_of_run(self.db, run_id)),
                "proposals": [
                    {**msgspec.structs.asdict(p), "link": p.link}
                    for p in await proposals.by_run(self.db, run_id)
                ],
                "approvals": await browse.approvals_of_run(self.db, run_id),
                "objections": await browse.objections_of_run(self.db, run_id),
                "requests": [run_view.event_row(e, self.names) for e in requests],
                "request_cost": sum(e["cost_usd"] for e in requests),
            }
        )

    async def events_after(self, run_id: int, after: int) -> list[dict[str, Any]]:
        """The run's events after `after`, as timeline rows (the live stream's news)."""
        found = await browse.events_after(self.db, run_id, after)
        return [self._page(run_view.event_row(e, self.names)) for e in found]

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
        for sample in samples:
            sample["frames"] = _frames(sample.get("frames"))
        incident["sample"]["frames"] = _frames(incident["sample"].get("frames"))
        its_runs = await runs.for_incident(self.db, incident_id)
        evidence: list[dict[str, Any]] = []
        for run in its_runs:
            for event in await runs.events(self.db, run["id"]):
                if event["event"] == "evidence":  # the newest pack of each run (a resumed run gets another)
                    detail = event["detail"] or {}
                    pack = {"run_id": run["id"], "text": detail.get("text") or "",
                            "summary": run_view.describe("evidence", detail)}  # fmt: skip
                    evidence = [item for item in evidence if item["run_id"] != run["id"]] + [pack]
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
        names = ["failures_per_day", "p95_per_kind", "spend_per_day"] if charts_available() else []
        spend = [
            {"day": day.day.isoformat(), "actions": day.actions, "failures": day.failures,
             "chat": day.chat_usd, "runs": day.runs_usd}
            for day in report.days
        ]  # fmt: skip
        missing = None if names else CHARTS_MISSING
        return self._page(
            {
                "period": period,
                "error": None,
                "texts": texts,
                "charts": names,
                "missing": missing,
                "spend": spend,
            }
        )

    async def chart(self, period: str, name: str) -> bytes | None:
        """One PNG chart of the audit of `period` (drawn in a thread: matplotlib is slow)."""
        try:
            report = await self._report(period)
        except AuditError:
            return None
        charts: list[Chart] = await asyncio.to_thread(render_charts, report, self.redactor.text)
        return next((chart.png for chart in charts if chart.filename == f"{name}.png"), None)
