"""Fire drills: a synthetic fault sent down the real repair loop, each stage timed against a target.

Nobody knows whether detection, the announcement, the coding agent and the proof still work until a
real failure needs them. A drill finds out first. `/drill` (allow-listed, in the dev channel) or the
optional schedule (`drill.every_h`, run by the leader) arms the failpoint `drill.probe`
(bot/kernel/failpoints.py) to raise, and runs the drill command — a path no user can reach: it is no
Discord command, its kind is `drill:probe` and its user the drill user (bot/kernel/drills.py) — as
often as the detector's rules need to fire. Then the real loop works, and the drill only watches:

    detect → announce → investigate → fix → prove → propose

(an incident opened on the fault; announced in the dev channel; a fix run the drill requests on it, as
a developer would with 🛠, investigating; editing; its checks and proofs passed; a proposal open). The
drill proposal is closed at once and its run rejected, and the merge path refuses a drill's run
whatever anyone says (bot/deploy/service.py): a drill never changes the code. A stage that did not
happen within its target (`drill.targets`) ends the drill and opens an incident naming the stage — a
broken repair loop is found by the drill, not by a user. Without a model key the drill goes as far as
the announcement and says why it stopped.

A drill is stored from start to end (bot/db/drills.py): its number, the process running it, the stage
it saw happen last, its incident, run and proposal. One drill at a time holds there, in one statement,
whichever process asks — two `/drill`s at the same moment start one drill, and the other is told which
one runs. A stop (kill -9, a restart) leaves the drill unfinished; the next start of the process that ran
it (`recover`, from bot/runtime/services.py) reports it in the dev channel as interrupted at the stage it
had reached, resolves its incident and ends its run as a drill's: rejected with its proposal closed, or
cancelled — never left for `/run N action:resume` (which refuses a drill's run) and never proposed. A
drill unfinished for longer than its whole target, by a process that is gone, is ended the same way by
the next `/drill`.

Drill records are apart everywhere: autonomy ignores drill incidents (the drill requests its own run),
the detector keeps drill calls out of latency baselines, and the audit and spending reports leave drill
actions, incidents and runs out (bot/db/drills.py); the drill's cost is shown in its report and in
/budget on its own line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec

from mendbot.db import drills
from mendbot.db.core import Connection
from mendbot.db.drills import DrillRow
from mendbot.db.runs import get_setting
from mendbot.improve.runs import TERMINAL_STATES, InvalidTransition, Run
from mendbot.improve.service import SelfImprovementAgent
from mendbot.kernel.drills import DRILL_KIND, DRILL_POINT, DRILL_USER_ID
from mendbot.kernel.durations import human_duration
from mendbot.kernel.errors import UserError
from mendbot.kernel.failpoints import Failpoints, InjectedFault
from mendbot.kernel.log import get_logger
from mendbot.kernel.money import usd
from mendbot.kernel.settings import Settings
from mendbot.kernel.waits import wait_for
from mendbot.observe.incident import Incident
from mendbot.observe.incidents import IncidentService
from mendbot.observe.recorder import ActionRecorder

__all__ = ["STAGES", "DrillReport", "DrillService", "StageTime", "interrupted_stage"]

_log = get_logger(__name__)

# (stage, what it means, the run state that marks it — None for the stages before the run)
STAGES: tuple[tuple[str, str, str | None], ...] = (
    ("detect", "detection (an incident opened on the fault)", None),
    ("announce", "the announcement in the dev channel", None),
    ("investigate", "the investigation", "investigating"),
    ("fix", "the fix (the agent editing code)", "editing"),
    ("prove", "the proof (checks and proofs passed)", "proposing"),
    ("propose", "the proposal", "awaiting_approval"),
)
_COUNTER_KEY = "drill.last_number"  # drills were counted in a setting before the drills table
_SPARE_S = 600.0  # past its last target, an unfinished drill nobody runs is abandoned


# The stage a drill is in while its run is in each state (the furthest state the run reached counts).
_IN_STAGE: tuple[tuple[str, str], ...] = (
    ("queued", "investigate"),
    ("observing", "investigate"),
    ("investigating", "investigate"),
    ("planning", "investigate"),
    ("editing", "fix"),
    ("verifying", "prove"),
    ("proposing", "propose"),
    ("awaiting_approval", "propose"),
)


def interrupted_stage(reached: str, run_states: set[str]) -> str:
    """The stage a stopped drill was in: its run's, by the furthest state the run got to; before there
    was a run, the one after the last stage the drill saw happen (`reached`, "" for none)."""
    in_run = [stage for state, stage in _IN_STAGE if state in run_states]
    if in_run:
        return in_run[-1]
    names = [name for name, _, _ in STAGES]
    return names[min(names.index(reached) + 1, len(names) - 1)] if reached in names else names[0]


def _seconds(took_s: float) -> str:
    """A stage's measured time: tenths of a second while under a minute ("12.3 s"), else "4 min 10 s"."""
    return f"{took_s:.1f} s" if took_s < 59.95 else human_duration(took_s)


class StageTime(msgspec.Struct):
    """One stage of a drill: its target and, once it happened, when (seconds after the start)."""

    stage: str
    target_s: float
    took_s: float | None = None


class DrillReport(msgspec.Struct):
    """What a drill found: every stage's time, and the stage missed or the reason it stopped."""

    number: int
    stages: list[StageTime]
    missed: str | None = None  # the stage that did not happen in time
    why: str | None = None  # why the drill stopped there (a missed stage's cause, or no model key)
    stopped: bool = False  # stopped on purpose (no model key): not a failure of the loop
    incident_id: int | None = None  # the drill's own incident (on the fault)
    run_id: int | None = None
    proposal_id: int | None = None
    cost_usd: float = 0.0
    alarm_incident_id: int | None = None  # the incident the missed stage opened

    def took(self, stage: str) -> float | None:
        return next(s.took_s for s in self.stages if s.stage == stage)

    def render(self) -> str:
        lines = [f"🧯 **Fire drill #{self.number}**" + (" — every stage in time ✅" if self.ok else "")]
        labels = {name: label for name, label, _ in STAGES}
        for stage in self.stages:
            if stage.took_s is not None:
                mark = "✅" if stage.took_s <= stage.target_s else "⚠️"
                took, target = _seconds(stage.took_s), human_duration(stage.target_s)
                lines.append(f"{mark} {stage.stage}: {took} (target {target})")
            elif stage.stage == self.missed:
                lines.append(
                    f"❌ {stage.stage}: not within {human_duration(stage.target_s)} — {labels[stage.stage]}"
                )
            else:
                lines.append(f"— {stage.stage}: not reached")
        if self.missed is not None:
            opened = f" Incident #{self.alarm_incident_id} opened." if self.alarm_incident_id else ""
            lines.append(f"❌ The repair loop failed the drill at **{self.missed}**: {self.why}.{opened}")
        elif self.stopped:
            lines.append(f"⏹ Stopped after the announcement: {self.why}")
        if self.proposal_id is not None:
            lines.append(f"Proposal #{self.proposal_id} was closed: a drill's proposal never merges.")
        if self.run_id is not None:
            lines.append(
                f"Drill cost: {usd(self.cost_usd)} (run #{self.run_id}; not in the /audit or /budget totals)"
            )
        return "\n".join(lines)

    @property
    def ok(self) -> bool:
        return self.missed is None and not self.stopped


class _Clock(msgspec.Struct):
    """A drill's stopwatch: the event loop's clock (monotonic; a test's virtual Discord advances it)."""

    started_wall: float
    started: float = msgspec.field(default_factory=lambda: asyncio.get_running_loop().time())

    def elapsed(self) -> float:
        return asyncio.get_running_loop().time() - self.started


class DrillService:
    """Starts fire drills (one at a time), runs them and reports (module docstring)."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: Connection,
        recorder: ActionRecorder,
        incidents: IncidentService,
        improve: SelfImprovementAgent,
        clock: Callable[[], datetime],
        failpoints: Failpoints | None = None,
        poll_s: float = 0.05,
        process: str | None = None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._recorder = recorder
        self._incidents = incidents
        self._improve = improve
        self._clock = clock
        self._failpoints = failpoints if failpoints is not None else Failpoints.from_environ()
        self.poll_s = poll_s
        self._process = process  # this process's shards label on a shared database (None: the only one)
        # The chat side: post a drill's report in the dev channel (set by the Drill cog).
        self.post: Callable[[str], Awaitable[object]] | None = None
        self._task: asyncio.Task[DrillReport] | None = None
        self._schedule: asyncio.Task[None] | None = None
        self._number: int | None = None
        self._drill_id: int | None = None
        self._run_times: dict[str, float] = {}
        self._run_id: int | None = None
        self._drill_clock: _Clock | None = None
        improve.runs.add_listener(self._on_run)

    @property
    def running(self) -> int | None:
        """The number of the drill under way, if one is."""
        return self._number if self._task is not None and not self._task.done() else None

    async def start(self) -> int:
        """Start a drill in the background; its number. UserError while another one runs (in any
        process sharing the database), or while the last one's calls are in the detector's window."""
        if (number := self.running) is not None:
            raise UserError(f"Fire drill #{number} is still running; one drill at a time.")
        now = self._clock().timestamp()
        current = await drills.unfinished(self._db)
        if current is not None and self._abandoned(current, now):
            notice = await self._end_interrupted(current, "its process stopping")
            if notice and self.post is not None:
                with contextlib.suppress(Exception):  # the new drill does not depend on the old one's notice
                    await self.post(notice)
            current = None
        if current is not None:
            raise UserError(f"Fire drill #{current.number} is still running; one drill at a time.")
        legacy = await get_setting(self._db, _COUNTER_KEY) or {}
        last = await drills.latest(self._db)
        began = max(float(legacy.get("at", 0.0)), last.started_at if last is not None else 0.0)
        last_number = max(int(legacy.get("number", 0)), last.number if last is not None else 0)
        # The detector fires once per window: the last drill's calls still in it would hide this one's.
        quiet_s = max(self._settings.observe.error_rate.window_s, self._settings.observe.repeat.window_s)
        if began and now - began < quiet_s:
            wait = quiet_s - (now - began)
            raise UserError(
                f"Fire drill #{last_number} began less than {quiet_s:g}s ago: its failing calls are still"
                f" in the detector's window, so a new one's would not be detected. Try again in {wait:.0f}s."
            )
        row = await drills.begin(self._db, process=self._process, now=now, floor=int(legacy.get("number", 0)))
        if row is None:  # another start (here, or in another process) won the same moment
            other = await drills.unfinished(self._db)
            which = f"#{other.number} " if other is not None else ""
            raise UserError(f"Fire drill {which}is still running; one drill at a time.")
        self._number, self._drill_id = row.number, row.id
        self._task = asyncio.get_running_loop().create_task(
            self._drill(row.number), name=f"drill-{row.number}"
        )
        return row.number

    def _abandoned(self, row: DrillRow, now: float) -> bool:
        """An unfinished drill no process runs: not this one's, and older than its whole target."""
        if row.id == self._drill_id and self.running is not None:
            return False
        return now - row.started_at > self._settings.drill.targets.propose_s + _SPARE_S

    async def wait(self) -> DrillReport | None:
        """The report of the latest drill once it has ended (None if there never was one)."""
        if self._task is None:
            return None
        return await asyncio.shield(self._task)

    async def every(self, leading: Callable[[], bool]) -> None:
        """The schedule (`drill.every_h`): a drill that often — by the process `leading()` says leads
        then (every process keeps the schedule, like the audit's: bot/scale/cluster.py)."""
        every_h = self._settings.drill.every_h
        if every_h is None:
            return
        while True:
            await asyncio.sleep(every_h * 3600)
            if not leading():
                continue
            try:
                number = await self.start()
                _log.info("scheduled fire drill started", drill=number)
            except UserError as exc:
                _log.info("scheduled fire drill skipped", reason=str(exc))

    def start_schedule(self, leading: Callable[[], bool]) -> None:
        """Keep the schedule (`every`) in a task of this service's; `stop_schedule`/`close` end it."""
        self.stop_schedule()
        self._schedule = asyncio.get_running_loop().create_task(self.every(leading), name="drill-schedule")

    def stop_schedule(self) -> None:
        if self._schedule is not None:
            self._schedule.cancel()
            self._schedule = None

    async def close(self) -> None:
        self.stop_schedule()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._failpoints.disarm(DRILL_POINT)

    # -- after a stop -----------------------------------------------------------------------------

    async def recover(self) -> str | None:
        """At start: a drill this process left unfinished (killed, or stopped mid-drill) is ended as
        interrupted — its incident resolved, its run ended as a drill's — and the line for the dev
        channel saying so; None when there was none. On a shared database only this process's own
        (by its shards) or an abandoned one."""
        row = await drills.unfinished(self._db)
        if row is None:
            return None
        now = self._clock().timestamp()
        if row.process != self._process and not self._abandoned(row, now):
            return None  # another process's, under way
        return await self._end_interrupted(row, "a restart")

    async def _end_interrupted(self, row: DrillRow, by: str) -> str:
        run_states: set[str] = set()
        run_id = row.run_id
        if run_id is None:  # stopped between asking for the run and noting it: the drill user's run
            drill_runs = [
                run for run in await self._improve.runs.interrupted() if run.requester_id == DRILL_USER_ID
            ]
            drill_runs += [
                run for run in await self._improve.runs.active() if run.requester_id == DRILL_USER_ID
            ]
            run_id = drill_runs[0].id if drill_runs else None
        if run_id is not None:
            events = await self._improve.runs.events(run_id)
            run_states = {e.state for e in events if e.event == "transition" and e.state}
        stage = interrupted_stage(row.stage, run_states)
        ended = await drills.end(
            self._db, row.id, outcome="interrupted", now=self._clock().timestamp(), stage=None
        )
        if not ended:
            return ""
        parts = []
        incident_ids = {row.incident_id} if row.incident_id is not None else set()
        incident_ids |= {i.id for i in self._incidents.active() if i.kind == DRILL_KIND and i.id is not None}
        for incident_id in sorted(incident_ids):
            with contextlib.suppress(UserError):
                await self._incidents.set_state(incident_id, "resolved", DRILL_USER_ID)
                parts.append(f"its incident #{incident_id} is resolved")
        if run_id is not None:
            parts.append(f"run #{run_id} is {await self._end_run(run_id, row.number, stage)}")
        label = next(label for name, label, _ in STAGES if name == stage)
        _log.warning("fire drill interrupted", drill=row.number, stage=stage, by=by)
        said = " and ".join(parts)
        done = f" {said[:1].upper()}{said[1:]}." if said else ""
        return (
            f"🧯 Fire drill #{row.number} was interrupted by {by} at **{stage}** — {label} had not"
            f" happened yet.{done} A drill's run is never resumed or proposed; `/drill` starts a new drill."
        )

    async def _end_run(self, run_id: int, number: int, stage: str) -> str:
        """End a stopped drill's run as a drill's: never resumable, never proposed. Its state now."""
        detail = {"drill": number, "interrupted_at": stage}
        run = await self._improve.runs.get(run_id)
        try:
            if run.state == "awaiting_approval":
                run = await self._improve.runs.transition(run.id, "rejected", actor="drill", detail=detail)
            elif run.state == "interrupted":
                run = await self._improve.runs.transition(run.id, "cancelled", actor="drill", detail=detail)
            elif run.state not in TERMINAL_STATES:
                run = await self._improve.cancel(run.id, DRILL_USER_ID)
        except (InvalidTransition, UserError) as exc:
            _log.warning("ending an interrupted drill's run failed", run_id=run_id, error=str(exc))
            return run.state
        if run.proposal_id is not None:
            with contextlib.suppress(Exception):
                await self._improve.close_proposal(run, "a fire drill's proposal never merges")
            return f"{run.state}, its proposal closed"
        return run.state

    # -- the drill path ---------------------------------------------------------------------------

    def probe(self, number: int) -> None:
        """The drill command: run by the drill user in the dev channel, failing where the armed
        failpoint raises. Reached only from here: no Discord command leads to it."""
        dev = next(iter(self._settings.discord.dev_channel_ids), None)
        with (
            contextlib.suppress(InjectedFault),
            self._recorder.action(DRILL_KIND, "drill", user_id=DRILL_USER_ID, channel_id=dev) as pending,
        ):
            pending.extra = {"drill": number}
            self._failpoints.hit(DRILL_POINT)

    def _probes(self) -> int:
        """As many failing calls as the detector's error rules need to fire (the repeat rule at least)."""
        observe = self._settings.observe
        return max(observe.repeat.count, observe.error_rate.min_events)

    # -- running one ------------------------------------------------------------------------------

    def _on_run(self, run: Run) -> None:
        """RunService listener: the moment the drill's run reaches each state (this process's runs).
        A crash test stops the process right there: `drill.run_<state>` (bot/kernel/failpoints.py)."""
        if run.id == self._run_id and self._drill_clock is not None:
            self._run_times.setdefault(run.state, self._drill_clock.elapsed())
            self._failpoints.hit(f"drill.run_{run.state}")

    async def _drill(self, number: int) -> DrillReport:
        targets = self._settings.drill.targets
        report = DrillReport(
            number, [StageTime(name, float(getattr(targets, f"{name}_s"))) for name, _, _ in STAGES]
        )
        clock = self._drill_clock = _Clock(self._clock().timestamp())
        self._run_times, self._run_id = {}, None
        _log.info("fire drill started", drill=number)
        try:
            await self._stages(report, clock)
        except Exception as exc:  # a bug of ours must still end in a report, never a silent drill
            _log.exception("fire drill failed", drill=number)
            report.missed = report.missed or next(s.stage for s in report.stages if s.took_s is None)
            report.why = f"the drill itself failed: {type(exc).__name__}: {exc}"
        finally:
            self._failpoints.disarm(DRILL_POINT)
        await self._wind_down(report)
        if report.missed is not None:
            report.alarm_incident_id = await self._alarm(report)
        if self._drill_id is not None:
            outcome = "ok" if report.ok else "stopped" if report.stopped else "missed"
            done = [s.stage for s in report.stages if s.took_s is not None]
            await drills.end(
                self._db,
                self._drill_id,
                outcome=outcome,
                now=self._clock().timestamp(),
                stage=done[-1] if done else "",
            )
        _log.info("fire drill ended", drill=number, missed=report.missed, stopped=report.stopped)
        if self.post is not None:
            try:
                await self.post(report.render())
            except Exception:
                _log.exception("posting the drill report failed", drill=number)
        return report

    async def _stages(self, report: DrillReport, clock: _Clock) -> None:
        self._failpoints.arm(DRILL_POINT, "raise")
        try:
            for _ in range(self._probes()):
                self.probe(report.number)
        finally:
            self._failpoints.disarm(DRILL_POINT)
        stage = {s.stage: s for s in report.stages}

        def detected() -> Incident | None:
            return next(
                (
                    incident
                    for incident in self._incidents.active()
                    if incident.kind == DRILL_KIND and incident.last_seen >= clock.started_wall - 1
                ),
                None,
            )

        incident: Incident | None = await self._until(stage["detect"], report, clock, _sync(detected))
        if incident is None:
            report.why = "no incident was opened on the drill's failing calls (is the detector working?)"
            return
        await self._note("detect", incident_id=incident.id)

        def announced() -> Incident | None:
            assert incident is not None
            return incident if incident.message_id is not None and incident.id is not None else None

        if await self._until(stage["announce"], report, clock, _sync(announced)) is None:
            report.why = "the drill's incident was not announced in the dev channel"
            return
        report.incident_id = incident.id
        await self._note("announce", incident_id=incident.id)
        if self._settings.anthropic_api_key is None:
            report.stopped = True
            report.why = (
                "no model key (ANTHROPIC_API_KEY is not set), so nothing can investigate, fix or propose."
                " Set it in .env to drill the whole loop."
            )
            return
        try:
            run, _ = await self._improve.request_or_join(
                kind="fix",
                requester_id=DRILL_USER_ID,
                channel_id=incident.channel_id,
                incident_id=incident.id,
                description=f"Fire drill #{report.number}: {incident.kind}: {incident.summary}",
            )
        except UserError as exc:
            report.missed, report.why = "investigate", f"the run was refused: {exc}"
            return
        self._run_id = report.run_id = run.id
        await self._note("announce", run_id=run.id)
        for name, _, state in STAGES:
            if state is None:
                continue
            reached = await self._until(
                stage[name], report, clock, functools.partial(self._reached, run.id, state)
            )
            if reached is None:
                current = await self._improve.runs.get(run.id)
                cause = f": {current.failure_reason[:300]}" if current.failure_reason else ""
                report.why = f"run #{run.id} is {current.state}{cause}"
                return
            await self._note(name, proposal_id=(await self._improve.runs.get(run.id)).proposal_id)
        final = await self._improve.runs.get(run.id)
        report.proposal_id = final.proposal_id

    async def _note(self, stage: str, **records: int | None) -> None:
        """Store that the drill saw `stage` happen, with what it learnt (a stop resumes from here)."""
        if self._drill_id is not None:
            await drills.reached(self._db, self._drill_id, stage, **records)

    async def _reached(self, run_id: int, state: str) -> bool | None:
        """True once the run has been in `state`; None while it may still get there, False if it cannot."""
        if state in self._run_times:
            return True
        events = await self._improve.runs.events(run_id)
        if any(e.event == "transition" and e.state == state for e in events):
            return True
        run = await self._improve.runs.get(run_id)
        return False if run.terminal else None

    async def _until(
        self,
        stage: StageTime,
        report: DrillReport,
        clock: _Clock,
        check: Callable[[], Awaitable[Any]],
    ) -> Any:
        """Wait for `check()` to find the stage done, up to its target (from the drill's start).
        A stage found done gets its time; one not done in time (or no longer possible) is missed."""
        while True:
            found = await check()
            if found is False:
                report.missed = stage.stage
                return None
            if found is not None:
                if stage.stage in {name for name, _, _ in STAGES[2:]}:
                    state = next(s for name, _, s in STAGES if name == stage.stage)
                    stage.took_s = self._run_times.get(state or "", clock.elapsed())
                else:
                    stage.took_s = clock.elapsed()
                return found
            if clock.elapsed() >= stage.target_s:
                report.missed = stage.stage
                return None
            await asyncio.sleep(self.poll_s)

    async def _wind_down(self, report: DrillReport) -> None:
        """Leave nothing of the drill behind: its proposal closed, its run ended, its incident resolved."""
        if report.run_id is not None:
            with contextlib.suppress(Exception):
                run = await self._improve.runs.get(report.run_id)
                if run.state == "awaiting_approval":
                    await self._improve.runs.transition(
                        run.id, "rejected", actor="drill", detail={"drill": report.number}
                    )
                    await self._improve.close_proposal(run, "a fire drill's proposal never merges")
                elif not run.terminal:
                    await self._improve.cancel(run.id, DRILL_USER_ID)
            with contextlib.suppress(Exception):
                run = await self._improve.runs.get(report.run_id)
                report.cost_usd = run.cost_usd
                report.proposal_id = run.proposal_id
        if report.incident_id is not None:
            with contextlib.suppress(UserError):
                await self._incidents.set_state(report.incident_id, "resolved", DRILL_USER_ID)

    async def _alarm(self, report: DrillReport) -> int | None:
        """The incident a missed stage opens: the repair loop is broken at that stage."""
        stage = next(s for s in report.stages if s.stage == report.missed)
        label = next(label for name, label, _ in STAGES if name == stage.stage)
        incident = self._incidents.environment(
            f"drill-stage:{stage.stage}",
            kind="task:drill",
            summary=(
                f"Fire drill #{report.number}: {stage.stage} did not happen within"
                f" {human_duration(stage.target_s)}"
                f" — {report.why}"
            ),
            need=f"the repair loop's {label} working again (a fire drill checks it: /drill)",
            sample={"drill": report.number, "stage": stage.stage},
        )
        with contextlib.suppress(Exception):
            await wait_for(incident.created.wait(), 30)
        return incident.id


def _sync(check: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def checked() -> Any:
        return check()

    return checked
