"""Autonomy: the runs the bot starts by itself, and what it says about them in the incident's announcement.

`improve.autonomy` sets how far it goes: `off`; `investigate` (the default) — a read-only run whose
root cause is written into the announcement; `propose` — on to a verified proposal that asks for
"ship it". Merging is never autonomous: a proposal merges only through the approval service, on an
allow-listed human's approval in the grammar; nothing here approves.

A code incident qualifies when it opens at, or rises to, `improve.autonomous_severity`; environment
incidents never do (code cannot fix them). Each incident is decided once, and the decision is kept in
its announcement's note (persisted), so a reopening, a restart or a later escalation never starts
another run. Nor does an incident that already has a run (asked for or not), and while a run of the
bot's own is working no other starts: a storm of incidents gets one run and the others say why.
Dev mode (`DevMode.active()`), a pause, the autonomous budget and concurrency (the run policy) hold
a run back, and the announcement says which. Requested runs go through none of this.

At `propose`, the self-audit's highest-impact item gets the same treatment (`propose_for_audit`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import msgspec

from mendbot.features.devmode import DevMode
from mendbot.forge.base import ForgeError
from mendbot.improve.runs import BUSY_STATES, Run, RunKind, state_label
from mendbot.improve.service import SelfImprovementAgent
from mendbot.kernel.drills import is_drill_kind
from mendbot.kernel.errors import UserError
from mendbot.kernel.log import get_logger
from mendbot.kernel.sections import ImproveConfig
from mendbot.observe.incident import Incident
from mendbot.observe.incidents import IncidentService
from mendbot.observe.kind_words import kind_words

if TYPE_CHECKING:
    from mendbot.observe.audit_report import AuditFinding

__all__ = ["AUTONOMOUS_REQUESTER", "AutonomyService", "Decision"]

_log = get_logger(__name__)
_LEVELS = {"notice": 0, "warning": 1, "error": 2}
# Runs the bot starts for itself have no human requester; Discord ids are never 0.
AUTONOMOUS_REQUESTER = 0
_NOTE_MAX = 1000  # an embed field holds 1024 characters


class Decision(msgspec.Struct, frozen=True):
    """What the bot did about one target: started `run`, found `run` already on it, or held back."""

    run: Run | None
    started: bool
    note: str | None  # for the announcement; None when an earlier run speaks for the target


class AutonomyService:
    def __init__(
        self,
        *,
        config: ImproveConfig,
        improve: SelfImprovementAgent,
        incidents: IncidentService,
        devmode: DevMode,
    ) -> None:
        self._config = config
        self._improve = improve
        self._incidents = incidents
        self._devmode = devmode
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: list[Incident] = []  # raised, not yet decided (by identity: ids come later)
        self._decided: set[int] = set()  # incident ids decided without a note (they already had a run)
        self._deciding = asyncio.Lock()  # one decision at a time, so a storm cannot start two runs
        self._closed = False

    @property
    def level(self) -> str:
        return self._config.autonomy

    @property
    def run_kind(self) -> RunKind:
        return "fix" if self.level == "propose" else "investigate"

    def qualifies(self, incident: Incident) -> bool:
        """Whether an incident, as it stands, is one the bot should decide about by itself."""
        return (
            self.level != "off"
            and not self._closed
            and incident.category == "code"
            # A fire drill requests its own run (bot/improve/drill.py): it times the loop from there.
            and not is_drill_kind(incident.kind)
            and _LEVELS.get(incident.level, 0) >= _LEVELS[self._config.autonomous_severity]
            and incident.autonomy is None
            and incident.id not in self._decided
            and not any(pending is incident for pending in self._pending)
        )

    # -- incidents ------------------------------------------------------------------------------

    def on_raised(self, incident: Incident) -> None:
        """`IncidentService.on_raised`: an incident opened or rose; decide in a task if it qualifies."""
        if not self.qualifies(incident):
            return
        self._pending.append(incident)  # synchronously, so the next signal of a storm sees it
        self._spawn(self._decide_incident(incident))

    async def _decide_incident(self, incident: Incident) -> None:
        try:
            await incident.created.wait()  # its row (id) and its announcement (channel) exist
            if incident.id is None:
                return  # it could not be saved; nothing to hang a run on
            decision = await self.decide(
                incident_id=incident.id,
                channel_id=incident.channel_id,
                description=f"{kind_words(incident.kind)}: {incident.summary}",
            )
            if decision.note is None:
                self._decided.add(incident.id)
            else:
                await self._incidents.annotate(incident.id, decision.note)
        finally:
            self._pending = [pending for pending in self._pending if pending is not incident]
        if decision.started and decision.run is not None:
            await self._follow(decision.run, incident.id)

    async def decide(
        self,
        *,
        incident_id: int | None,
        channel_id: int | None,
        description: str,
        fingerprint: str | None = None,
        target_kind: str | None = None,
    ) -> Decision:
        """Start a run of the bot's own on a target, or say why not."""
        verb = "investigating" if self.run_kind == "investigate" else "working on a fix"
        async with self._deciding:
            if self._closed:
                return Decision(None, False, f"⏸ Not {verb} on my own: I am shutting down.")
            if incident_id is not None:
                earlier = await self._improve.runs.for_incident(incident_id)
                if earlier:
                    return Decision(earlier[-1], False, None)
            on, why = await self._devmode.active()
            if on:
                note = f"⏸ Not {verb} on my own: dev mode is on — {why}. 🔍/🛠 still work."
                return Decision(None, False, _clip(note))
            working = [
                run
                for run in await self._improve.runs.active()
                if run.origin == "autonomous" and run.state in BUSY_STATES
            ]
            if working:
                busy = working[0]
                on_what = f"incident #{busy.incident_id}" if busy.incident_id else "another problem"
                return Decision(
                    None,
                    False,
                    f"⏸ Not {verb} on my own: run #{busy.id} is already on {on_what}, and I start one run"
                    " of my own at a time. 🔍/🛠 to ask me.",
                )
            try:
                run, joined = await self._improve.request_or_join(
                    kind=self.run_kind,
                    requester_id=AUTONOMOUS_REQUESTER,
                    channel_id=channel_id,
                    incident_id=incident_id,
                    description=description,
                    fingerprint=fingerprint,
                    target_kind=target_kind,
                    origin="autonomous",
                )
            except UserError as exc:
                _log.info("autonomous run held", incident_id=incident_id, reason=str(exc))
                return Decision(None, False, _clip(f"⏸ Not {verb} on my own: {exc} 🔍/🛠 to ask me."))
        if joined:
            return Decision(run, False, None)
        _log.info("autonomous run started", run_id=run.id, incident_id=incident_id, kind=run.kind)
        then = "" if run.kind == "investigate" else "; a fix will follow, for you to ship"
        return Decision(run, True, f"🔍 Investigating — run #{run.id}{then}")

    async def _follow(self, run: Run, incident_id: int | None) -> None:
        """When the run ends, replace "Investigating" with the root cause, the proposal or the failure."""
        run = await self._improve.wait(run.id)
        if incident_id is None:
            return
        await self._incidents.annotate(incident_id, await self.outcome_note(run))

    async def outcome_note(self, run: Run) -> str:
        """The announcement's note for a run of the bot's own that has stopped working."""
        events = await self._improve.runs.events(run.id)
        diagnosis: dict[str, Any] = next((e.detail for e in reversed(events) if e.event == "diagnosis"), {})
        root = str(diagnosis.get("root_cause", "")).strip() or "(no root cause given)"
        if run.state == "reported":
            return _clip(f"🔍 Run #{run.id} — **Root cause:** {root}")
        if run.state == "awaiting_approval":
            where = f"proposal #{run.proposal_id}"
            if run.proposal_id is not None:
                with contextlib.suppress(ForgeError):  # the id is enough to find it
                    where = (await self._improve.forge.get(run.proposal_id)).shown
            ask = f"\nFix ready, tests pass: {where}. Want me to merge? Reply **ship it** to the proposal."
            return _clip(f"🛠 Run #{run.id} — **Root cause:** {root[: _NOTE_MAX - len(ask) - 40]}{ask}")
        if run.state == "failed":
            return _clip(f"❌ Run #{run.id} failed while {run.failure_stage}: {run.failure_reason}")
        if run.state == "interrupted":
            return f"⏸ Run #{run.id} was interrupted; `/run {run.id} action:resume` continues it."
        return f"⏹ Run #{run.id} ended {state_label(run.state)}."

    # -- the self-audit -------------------------------------------------------------------------

    async def propose_for_audit(self, finding: AuditFinding | None, channel_id: int | None) -> str | None:
        """At `propose`: a run of the bot's own on the audit's highest-impact item, under the same rules.

        Returns the line for the report (None below `propose` or when nothing stands out).
        """
        if self.level != "propose" or finding is None:
            return None
        incident = next(
            (
                i
                for i in self._incidents.active()
                if i.category == "code" and finding.fingerprint and i.fingerprint == finding.fingerprint
            ),
            None,
        )
        incident_id = incident.id if incident is not None else None
        decision = await self.decide(
            incident_id=incident_id,
            channel_id=channel_id,
            description=f"{finding.kind}: {finding.description}",
            fingerprint=finding.fingerprint,
            target_kind=finding.kind,
        )
        if decision.started and decision.run is not None:
            if incident_id is not None:
                await self._incidents.annotate(incident_id, decision.note or "")
            self._spawn(self._follow(decision.run, incident_id))
            return (
                f"🎯 Proposing a fix for it on my own — run #{decision.run.id}; it asks for **ship it**"
                " when it is ready."
            )
        if decision.run is not None:
            return f"🎯 Run #{decision.run.id} already took it on ({state_label(decision.run.state)})."
        return f"🎯 {decision.note}" if decision.note else None

    # -- lifecycle ------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("autonomy task failed", exc_info=task.exception())

    async def quiesce(self) -> None:
        """Wait for every decision and every followed run started so far."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def close(self) -> None:
        """Start nothing more (shutdown); followed runs still get their note when they stop."""
        self._closed = True


def _clip(text: str) -> str:
    return text if len(text) <= _NOTE_MAX else text[: _NOTE_MAX - 1] + "…"
