"""Runs: the persisted state machine of an improvement request (DESIGN §5).

`queued → observing → investigating → planning → editing → verifying → proposing →
awaiting_approval → merging → deployed → watching → resolved`, with the exits `reported`
(investigate requests), `failed`, `rejected`, `cancelled`, `regressed` and `interrupted` (the
process stopped mid-run; resuming returns to the state it was caught in, or starts over from
`queued`). A merged run whose change was reverted — an emergency rollback, a rollback run merged, a
canary taken back — ends `rolled_back`, from whatever it said before (`deployed`, `watching`,
`resolved`, `regressed`). What each state looks like to people (its icon and words) is
`STATE_ICONS` and `state_label`, the one table chat and the dashboard read. Every change is
written to SQLite at once, with an event carrying its time, actor and cost, because the process
may die at any moment.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, get_args

import msgspec

from mendbot.db import runs as queries
from mendbot.db.core import Connection
from mendbot.db.retry import Writes
from mendbot.kernel.errors import UserError
from mendbot.kernel.log import get_logger
from mendbot.trust.redact import Redactor

__all__ = [
    "ACTIVE_STATES",
    "BUSY_STATES",
    "ROLLBACK_FROM",
    "STATE_ICONS",
    "TERMINAL_STATES",
    "TRANSITIONAL_STATES",
    "TRANSITIONS",
    "InvalidTransition",
    "Run",
    "RunEvent",
    "RunKind",
    "RunNotFound",
    "RunOrigin",
    "RunService",
    "RunState",
    "slugify",
    "state_label",
    "state_name",
]

_log = get_logger(__name__)

RunKind = Literal["investigate", "fix"]
# Who wanted the run: a person (`requested`) or the bot itself on an incident or an audit (`autonomous`);
# each spends from its own daily budget.
RunOrigin = Literal["requested", "autonomous"]
RunState = Literal[
    "queued",
    "observing",
    "investigating",
    "planning",
    "editing",
    "verifying",
    "proposing",
    "awaiting_approval",
    "merging",
    "deployed",
    "watching",
    "resolved",
    "reported",
    "failed",
    "rejected",
    "cancelled",
    "regressed",
    "interrupted",
    "rolled_back",
]

ALL_STATES: frozenset[RunState] = frozenset(get_args(RunState))
TERMINAL_STATES: frozenset[RunState] = frozenset(
    {"resolved", "reported", "failed", "rejected", "cancelled", "regressed", "rolled_back"}
)
# Merged runs whose change can still be reverted: what a rollback ends as `rolled_back`.
ROLLBACK_FROM: frozenset[RunState] = frozenset({"deployed", "watching", "resolved", "regressed"})

# Each state as people see it, in chat and on the dashboard: an icon that says what it means.
STATE_ICONS: dict[RunState, str] = {
    "queued": "🕒",
    "observing": "🔎",
    "investigating": "🧠",
    "planning": "📝",
    "editing": "✏️",
    "verifying": "🧪",
    "proposing": "📦",
    "awaiting_approval": "👀",
    "merging": "🔀",
    "deployed": "🚀",
    "watching": "👁️",
    "resolved": "✅",
    "reported": "🔍",
    "failed": "❌",
    "rejected": "🚫",
    "cancelled": "⏹️",
    "regressed": "⚠️",
    "interrupted": "⏸️",
    "rolled_back": "⏪",
}


def state_name(state: str) -> str:
    """`rolled back`, `awaiting approval`: a state by name, as people say it (no icon)."""
    return state.replace("_", " ")


def state_label(state: str) -> str:
    """`✅ resolved`, `⏪ rolled back`, `👀 awaiting approval`: a state as people read it."""
    icon = STATE_ICONS.get(state, "•")  # type: ignore[call-overload]  # stored text may be any str
    return f"{icon} {state_name(state)}"


# Active: not finished and not interrupted (an interrupted run waits for someone to resume it).
ACTIVE_STATES: frozenset[RunState] = ALL_STATES - TERMINAL_STATES - {"interrupted"}
# Busy: holding a concurrency slot — the agent or the pipeline is working on it. A proposal
# awaiting approval, and the merge/deploy/watch that follow it, wait on people, not on a slot.
BUSY_STATES: frozenset[RunState] = frozenset(
    {"queued", "observing", "investigating", "planning", "editing", "verifying", "proposing"}
)
# Transitional: work is under way and a state must follow soon; a run here with no progress for
# `improve.stuck_timeout_s` is stuck, and the watchdog fails it.
TRANSITIONAL_STATES: frozenset[RunState] = BUSY_STATES | {"merging"}
# What a restart interrupts: everything active except a proposal awaiting approval, which stays
# approvable across restarts.
# Deployed and watching runs stay too: the watch resumes with the time it has left.
_INTERRUPTIBLE: frozenset[RunState] = ACTIVE_STATES - {"awaiting_approval", "deployed", "watching"}

_FORWARD: dict[RunState, set[RunState]] = {
    "queued": {"observing", "editing"},  # editing straight away: a rollback has nothing to investigate
    "observing": {"investigating"},
    "investigating": {"planning", "reported"},
    "planning": {"editing"},
    "editing": {"verifying"},
    # editing again: checks failed, the failure goes back; awaiting approval: a proposal branch that
    # moved by hand was re-verified and is asked for approval again
    "verifying": {"proposing", "editing", "awaiting_approval"},
    "proposing": {"awaiting_approval"},
    "awaiting_approval": {"merging", "rejected", "verifying"},
    # back to approval: main moved and the diff changed, or approvals no longer count at merge time;
    # verifying: the proposal branch moved after it was approved
    "merging": {"deployed", "awaiting_approval", "verifying"},
    "deployed": {"watching"},
    "watching": {"resolved", "regressed"},
}


def _transitions() -> dict[RunState, set[RunState]]:
    table: dict[RunState, set[RunState]] = {state: set() for state in sorted(ALL_STATES)}
    for state in ACTIVE_STATES:
        table[state] |= _FORWARD.get(state, set()) | {"failed", "cancelled"}
        if state in _INTERRUPTIBLE:
            table[state].add("interrupted")
    # Resuming goes back to the exact state the run was interrupted in (checked in transition),
    # or to queued to start it over from the top.
    table["interrupted"] = set(_INTERRUPTIBLE) | {"failed", "cancelled"}
    for state in ROLLBACK_FROM:
        table[state].add("rolled_back")
    return table


TRANSITIONS: dict[RunState, set[RunState]] = _transitions()

_UPDATABLE = frozenset(
    {
        "branch",
        "worktree",
        "base_sha",
        "head_sha",
        "verified_sha",
        "attempts",
        "status_message_id",
        "proposal_id",
        "failure_stage",
        "failure_reason",
    }
)
_SLUG_MAX = 40


class RunNotMerged(UserError):
    def __init__(self, run_id: int) -> None:
        super().__init__(f"Run #{run_id} was never merged, so there is nothing to roll back.")


class InvalidTransition(Exception):
    """A transition the state machine does not allow: a bug in the caller, not a user mistake."""

    def __init__(self, run_id: int, current: str, to: str, why: str = "") -> None:
        self.run_id = run_id
        self.current = current
        self.to = to
        super().__init__(f"run #{run_id}: {current} → {to} is not allowed" + (f" ({why})" if why else ""))


class RunNotFound(UserError):
    """A run id that does not exist (usually typed by someone)."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        super().__init__(f"There is no run #{run_id}.")


class Run(msgspec.Struct):
    id: int
    kind: RunKind
    state: RunState
    requester_id: int
    channel_id: int | None
    incident_id: int | None
    description: str
    slug: str
    security: bool
    branch: str | None
    worktree: str | None
    base_sha: str | None
    head_sha: str | None
    verified_sha: str | None
    cost_usd: float
    attempts: int
    failure_stage: str | None
    failure_reason: str | None
    status_message_id: int | None
    proposal_id: int | None
    created_at: float
    updated_at: float
    interrupted_from: RunState | None = None
    origin: RunOrigin = "requested"

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Run:
        values = {name: row[name] for name in cls.__struct_fields__}
        values["security"] = bool(values["security"])
        return cls(**values)


class RunEvent(msgspec.Struct, frozen=True):
    id: int
    run_id: int
    ts: float
    actor: str
    event: str
    state: RunState
    detail: dict[str, Any]
    cost_usd: float


def slugify(text: str, max_length: int = _SLUG_MAX) -> str:
    """Lowercase ASCII words joined by '-', cut at a word boundary; safe in a git branch name."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    words = re.findall(r"[a-z0-9]+", ascii_text)
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > max_length:
            break
        slug = candidate
    if not slug and words:
        slug = words[0][:max_length]
    return slug or "run"


_EVENT_ATTEMPTS = 3


class RunService:
    """Creates runs and moves them through the state machine, persisting every step.

    Everything written — event details, failure reasons — passes the redactor first: agent output,
    check output and git's messages end up here.
    """

    def __init__(
        self,
        db: Connection,
        clock: Callable[[], datetime],
        redactor: Redactor | None = None,
        *,
        writes: Writes | None = None,
    ) -> None:
        self._db = db
        self._writes = writes or Writes()  # a locked/full database is retried, then "couldn't save"
        self._clock = clock
        self.redactor = redactor or Redactor()
        # One writer at a time: a transition reads the state, checks it, then writes.
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[Run], None]] = []

    def add_listener(self, listener: Callable[[Run], None]) -> None:
        """Call `listener(run)` after every state change (it must be quick and not raise)."""
        self._listeners.append(listener)

    def now(self) -> float:
        return self._clock().timestamp()

    async def create(
        self,
        kind: RunKind,
        requester_id: int,
        channel_id: int | None,
        incident_id: int | None,
        description: str,
        *,
        security: bool = False,
        origin: RunOrigin = "requested",
    ) -> Run:
        now = self.now()
        values: dict[str, Any] = {
            "kind": kind,
            "state": "queued",
            "requester_id": requester_id,
            "channel_id": channel_id,
            "incident_id": incident_id,
            "description": description,
            "slug": slugify(description),
            "security": int(security),
            "origin": origin,
            "cost_usd": 0.0,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        detail = {"kind": kind, "incident_id": incident_id, "security": security, "origin": origin}
        actor = f"user:{requester_id}" if origin == "requested" else "autonomy"
        async with self._lock:
            run_id = await self._writes(
                lambda: queries.insert(self._db, values, actor=actor, detail=detail),
                what="run",
            )
        _log.info("run_created", run_id=run_id, kind=kind, requester_id=requester_id, incident_id=incident_id)
        return await self.get(run_id)

    async def transition(
        self,
        run_id: int,
        to: RunState,
        *,
        actor: str,
        detail: dict[str, Any] | None = None,
        cost_usd: float = 0.0,
        **fields: Any,
    ) -> Run:
        """Move the run to `to`, updating `fields` and adding `cost_usd`; illegal moves raise."""
        _check_fields(fields)
        async with self._lock:
            run = await self.get(run_id)
            self._check_transition(run, to)
            values: dict[str, Any] = {**fields, "state": to, "updated_at": self.now()}
            if to == "interrupted":
                values["interrupted_from"] = run.state
            elif run.state == "interrupted":
                values["interrupted_from"] = None
            await self._write(run, values, actor=actor, event="transition", detail=detail, cost_usd=cost_usd)
        _log.info("run_transition", run_id=run_id, was=run.state, state=to, actor=actor, cost_usd=cost_usd)
        changed = await self.get(run_id)
        for listener in self._listeners:
            listener(changed)
        return changed

    async def rolled_back(self, run_id: int, *, actor: str, detail: dict[str, Any]) -> Run:
        """The run's merged change was reverted: it ends `rolled_back` when it was deployed, watching,
        resolved or regressed (the transition carries `detail`); in any other state (rolled back
        already) the event alone is recorded."""
        run = await self.get(run_id)
        if run.state in ROLLBACK_FROM:
            return await self.transition(run_id, "rolled_back", actor=actor, detail=detail)
        await self.event(run_id, "rolled_back", actor=actor, detail=detail)
        return await self.get(run_id)

    async def fail(self, run_id: int, stage: str, reason: str, *, actor: str, cost_usd: float = 0.0) -> Run:
        """End the run as failed, recording the stage and the reason."""
        return await self.transition(
            run_id,
            "failed",
            actor=actor,
            detail={"stage": stage, "reason": reason},
            cost_usd=cost_usd,
            failure_stage=stage,
            failure_reason=reason,
        )

    async def event(
        self,
        run_id: int,
        event: str,
        *,
        actor: str,
        detail: dict[str, Any] | None = None,
        cost_usd: float = 0.0,
    ) -> Run:
        """Record something that happened without changing state (guard_denied, check_failed...)."""
        if event in {"created", "transition"}:
            raise ValueError(f"{event!r} events are written by create/transition")
        async with self._lock:
            for attempt in range(_EVENT_ATTEMPTS):
                run = await self.get(run_id)
                try:
                    await self._write(
                        run,
                        {"updated_at": self.now()},
                        actor=actor,
                        event=event,
                        detail=detail,
                        cost_usd=cost_usd,
                    )
                    break
                except InvalidTransition:
                    # Another process (a worker, the bot) moved the run meanwhile: an event changes no
                    # state, so it is recorded against the new one.
                    if attempt == _EVENT_ATTEMPTS - 1:
                        raise
        return await self.get(run_id)

    async def update(self, run_id: int, **fields: Any) -> Run:
        """Set bookkeeping fields (e.g. the status message id) without an event or a transition."""
        _check_fields(fields)
        async with self._lock:
            run = await self.get(run_id)
            await queries.update(self._db, run.id, {**fields, "updated_at": self.now()})
        return await self.get(run_id)

    async def find(self, run_id: int) -> Run | None:
        row = await queries.by_id(self._db, run_id)
        return Run.from_row(row) if row is not None else None

    async def for_message(self, message_id: int) -> Run | None:
        """The run whose status message or report `message_id` is, if any."""
        run_id = await queries.by_message(self._db, message_id)
        return await self.find(run_id) if run_id is not None else None

    async def get(self, run_id: int) -> Run:
        """The run, or `RunNotFound` (a UserError: ids usually come from people)."""
        run = await self.find(run_id)
        if run is None:
            raise RunNotFound(run_id)
        return run

    async def list_recent(self, limit: int = 10) -> list[Run]:
        """The most recent runs, newest first."""
        return [Run.from_row(row) for row in await queries.recent(self._db, limit)]

    async def active(self) -> list[Run]:
        """Runs not finished and not interrupted, oldest first."""
        return [Run.from_row(row) for row in await queries.in_states(self._db, ACTIVE_STATES)]

    async def for_incident(self, incident_id: int) -> list[Run]:
        """Every run ever started on the incident, whatever its state, oldest first."""
        return [Run.from_row(row) for row in await queries.for_incident(self._db, incident_id)]

    async def interrupted(self) -> list[Run]:
        """Runs waiting to be resumed (or cancelled), oldest first."""
        return [Run.from_row(row) for row in await queries.in_states(self._db, {"interrupted"})]

    async def events(self, run_id: int) -> list[RunEvent]:
        return [RunEvent(**row) for row in await queries.events(self._db, run_id)]

    async def merged(self, run_id: int) -> tuple[Run, str]:
        """The run and the commit its merge landed as; UserError when it was never merged."""
        run = await self.get(run_id)
        events = await self.events(run_id)
        merged = next((e.detail["merged_sha"] for e in events if e.detail.get("merged_sha")), None)
        if not merged or not run.base_sha:
            raise RunNotMerged(run_id)
        return run, merged

    async def mark_interrupted_on_start(self, *, owner: str | None = None) -> list[Run]:
        """Mark every run a stop caught mid-way as interrupted; returns them, to report and clean up.

        Proposals awaiting approval are left alone: they stay approvable across a restart. With
        `owner`, only the runs that process executes (its name in their latest "executor" event, or
        no such event) — not those waiting in the run queue or executing on a worker.
        """
        stopped = [Run.from_row(row) for row in await queries.in_states(self._db, _INTERRUPTIBLE)]
        if owner is not None:
            executors = await queries.executors(self._db, [run.id for run in stopped])
            stopped = [run for run in stopped if executors.get(run.id, {}).get("executor", owner) == owner]
        marked = []
        for run in stopped:
            marked.append(
                await self.transition(run.id, "interrupted", actor="system", detail={"was": run.state})
            )
        if marked:
            _log.warning("runs_interrupted", run_ids=[run.id for run in marked])
        return marked

    def _check_transition(self, run: Run, to: RunState) -> None:
        if to not in TRANSITIONS[run.state]:
            raise InvalidTransition(run.id, run.state, to)
        if run.kind == "investigate" and to == "planning":
            raise InvalidTransition(run.id, run.state, to, "investigate runs never edit")
        if run.state == "interrupted" and to not in {"queued", "failed", "cancelled", run.interrupted_from}:
            raise InvalidTransition(run.id, run.state, to, f"it was interrupted while {run.interrupted_from}")

    async def _write(
        self,
        run: Run,
        values: dict[str, Any],
        *,
        actor: str,
        event: str,
        detail: dict[str, Any] | None,
        cost_usd: float,
    ) -> None:
        if cost_usd < 0:
            raise ValueError(f"a negative cost ({cost_usd}) for run #{run.id}")
        if values.get("failure_reason"):
            values = {**values, "failure_reason": self.redactor.text(str(values["failure_reason"]), 4000)}
        detail = self.redactor.value(detail) if detail else detail
        written = await self._writes(
            lambda: queries.transition(
                self._db,
                run.id,
                expected_state=run.state,
                values=values,
                ts=values["updated_at"],
                actor=actor,
                event=event,
                detail=detail,
                cost_usd=cost_usd,
            ),
            what="run transition",
        )
        if not written:
            # Another writer (another process on the same database) got there first.
            current = await self.get(run.id)
            raise InvalidTransition(
                run.id, current.state, values.get("state", current.state), "state changed"
            )


def _check_fields(values: dict[str, Any]) -> None:
    unknown = set(values) - _UPDATABLE
    if unknown:
        raise TypeError(f"not a run field that can be set: {', '.join(sorted(unknown))}")
