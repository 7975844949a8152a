"""What a replay sends: the recorded calls of a run's fault, their neighbours, and calls that worked.

The recorder kept what each handler was asked (`invocation`). A replay of the incident alone (after a
deploy, after a rollback: `plan_replay`) picks at most `MAX_REPLAYS` distinct recorded failing
invocations — the failures with the incident's fingerprint, or, for a latency or wrong-output complaint
with no fingerprint, the kind's slowest calls.

The proof of a fix sends more (`plan_proof`), in this order, the same on the base and on the branch:

1. **what worked** (`pass`): recent completed calls of the commands the change can reach — those whose
   handler file the change touches or imports, however indirectly — each kind's first one sent three
   times (twice as its `probe`: three equal answers say the command is deterministic, three of one shape
   that only numbers vary; two alike can be chance — a die lands the same twice often enough), and
   neighbours of them. They go first, so both sides answer them from the same state. Their recorded
   replies are read too: a member who asked one of these commands the same thing again and again and got
   replies that kept changing shows it is random, whatever its probe answers (`ReplayPlan.varies`);
2. **the recorded failures** — `recorded` when the agent's evidence showed the call, `held-out` when it
   did not (`mendbot.improve.proof.heldout`);
3. **neighbours** of the failures: the same command with one value changed
(`mendbot.improve.proof.neighbours`).

Which neighbours fail the same way on the base and which answer there is seen only when they are sent:
the prover judges each by the base's outcome.

**Every kind that is recorded is sent again**, as the member who made the call (its id and roles), where
it was made (its channel), on the bot's data as it was (`mendbot.improve.proof.replay`): a prefix, slash
or hybrid command; a button, select menu or modal — by sending again the call whose answer showed it
(`shown_by`, as recorded: the command that sent the view, the button that opened the modal), then doing
what the member did on that answer; an autocomplete; a message context menu (its target message posted
first); a listener of messages or reactions (the recorded message or reaction, made again); and one
iteration of a task loop. Neighbours vary the caller too: another member, the member without its roles,
another channel — a change that answers the reporting member and no one else fails there. What cannot be
sent again is "not replayable", with the reason: another event (a member joining), a task's start or stop
hook, an option naming a member or a channel, a redacted value.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from mendbot.db import handlers as handler_queries
from mendbot.db import proofs as queries
from mendbot.db.core import Connection
from mendbot.improve.proof.answers import Comparison, loosest, seen_to_vary
from mendbot.improve.proof.heldout import call_identity
from mendbot.improve.proof.neighbours import callers, neighbours
from mendbot.improve.proof.reach import affected_kinds
from mendbot.observe.handlers import is_mendbots_own
from mendbot.trust.redact import REDACTED

__all__ = [
    "MAX_REPLAYS",
    "Failure",
    "ReplayCase",
    "ReplayPlan",
    "Role",
    "affected_kinds",
    "extension_of",
    "plan_proof",
    "plan_replay",
    "with_failure_extensions",
]

MAX_REPLAYS = 5
_MAX_FAILING = 6  # recorded failing calls a proof replays (shown and held out)
_FAILING_NEIGHBOURS_EACH = 3
_MAX_FAILING_NEIGHBOURS = 8
_MAX_PASSING = 4  # recorded calls that worked, across the kinds the change can reach
_PASSING_NEIGHBOURS_EACH = 2
_MAX_PASSING_NEIGHBOURS = 4
_CALLERS_OF = 2  # recorded failing calls sent again by other callers
_CALLERS_EACH = 2
_MAX_CALLER_NEIGHBOURS = 4
# Repeats of each kind's first call that worked: with its own answer, three to tell a deterministic
# command from a random one (two answers of a d20 are alike one time in twenty).
_PROBES = 2
_SNOWFLAKE_OPTION = re.compile(r"^[A-Za-z]+:\d+$")  # how the recorder keeps a member, role or channel

Role = Literal["recorded", "held-out", "neighbour", "pass", "probe"]
# The listeners whose event a replay can make again: a member's message, a member's reaction.
REPLAYED_EVENTS = ("on_message", "on_raw_reaction_add", "on_reaction_add")
_SILENT = ("listener", "task")  # kinds nobody asked: what they did is seen, not an answer to a call


@dataclass(frozen=True)
class Failure:
    """The recorded fault: the exception's type and the innermost frame of the repository it was raised
    in (file relative to the repository, function), when the recorder kept it."""

    error_type: str
    file: str | None = None
    function: str | None = None
    path: tuple[str, ...] = ()  # the repository files of its recorded frames, innermost last

    def where(self) -> str:
        return f"`{self.function}`" if self.function else (f"`{self.file}`" if self.file else "its frame")


@dataclass(frozen=True)
class ReplayCase:
    """One call to send; `unreplayable` is the reason it cannot be, if any."""

    key: str
    kind: str
    name: str
    options: dict[str, Any]
    fingerprint: str | None  # the failure it should reproduce; None for a latency or a passing case
    recorded_ms: float
    unreplayable: str | None = None
    error_type: str | None = None  # what was recorded as raised, for a failure
    role: Role = "recorded"
    parent: str | None = None  # the case a neighbour or a probe comes from
    reply: str | None = None  # what it answered when it was recorded (a passing case)
    normal_ms: float | None = None  # the kind's usual time: the median of its recorded completed calls
    caller: dict[str, Any] | None = None  # who made the call, where: {"user", "roles", "channel", "guild"}
    shown_by: dict[str, Any] | None = None  # the call whose answer showed the view or modal (recorded)
    choices: tuple[str, ...] = ()  # a select menu's options, as recorded
    target: dict[str, Any] | None = None  # a context menu's target message, as recorded
    variant: str = ""  # how a neighbour's caller differs ("another member"), "" for the recorded one

    @property
    def family(self) -> str:
        return self.kind.split(":", 1)[0]

    @property
    def silent(self) -> bool:
        """A listener or a task: nothing answers it as such; what it did (and raised) is what is seen."""
        return self.family in _SILENT

    @property
    def label(self) -> str:
        """What a person would have done: `!roll 2d6`, `/temp value=100`, `/bill total=12 → `split``."""
        return (_label(self) + (f" ({self.variant})" if self.variant else ""))[:100]

    @property
    def slash(self) -> bool:
        return self.kind.startswith(("app:", "autocomplete:")) or (
            self.kind.startswith("command:") and self.name.startswith("/")
        )

    @property
    def text(self) -> str:
        """The message a member sends for a prefix command or a listener."""
        return str(self.options.get("text") or self.options.get("content") or "")

    @property
    def failing(self) -> bool:
        """Recorded as failing (a crash to reproduce), as opposed to a call that worked."""
        return self.role in ("recorded", "held-out") and self.fingerprint is not None


@dataclass(frozen=True)
class ReplayPlan:
    cases: list[ReplayCase]
    handlers: list[str]  # repository paths of the files that handle the kinds replayed
    latency: bool
    failure: Failure | None = None
    handler_files: dict[str, list[str]] = field(default_factory=dict)  # kind → its handlers' files
    # kind → how the live bot's recorded replies showed it varies (`answers.seen_to_vary`): read from the
    # records when the plan is made, before either side runs — nothing the change writes
    varies: dict[str, Comparison] = field(default_factory=dict)
    # kind → the qualified names of its handlers (the command's callback, the listener, the loop's body,
    # the button's callback): the replay's watch follows each from its start to its end
    entries: dict[str, list[str]] = field(default_factory=dict)

    @property
    def replayable(self) -> list[ReplayCase]:
        return [case for case in self.cases if case.unreplayable is None]

    @property
    def watched(self) -> list[str]:
        """The files the replay's watch follows exceptions in: the recorded failure's frames and the
        handlers of the kinds sent (what the proof's judgement reads). Empty: the whole repository."""
        return sorted({*(self.failure.path if self.failure else ()), *self.handlers})


def _label(case: ReplayCase) -> str:
    family, options = case.family, case.options
    if family in {"view", "modal"}:
        before = _surface_label(case.shown_by)
        if family == "modal":
            fields = " ".join(f"{key}={value}" for key, value in (options.get("fields") or {}).items())
            done = f"modal {fields}".strip()
        else:
            picked = options.get("values")
            done = f"`{options.get('custom_id')}`" + (f" {','.join(map(str, picked))}" if picked else "")
        return f"{before} → {done}" if before else done
    if family == "task":
        return f"task `{case.kind.split(':', 1)[1]}`, one iteration"
    if family == "listener":
        if "content" in options and case.name == "on_message":
            return str(options["content"])
        if "emoji" in options:
            return f"{options['emoji']} on a message ({case.name})"
        return case.name
    if family == "command" and not case.name.startswith("/"):
        return str(options.get("text") or case.name)
    shown = " ".join(f"{key}={value}" for key, value in options.items())
    if case.target is not None:
        shown = f"on “{str((case.target.get('message') or {}).get('content', ''))[:30]}”"
    return f"{case.name} {shown}".strip()


def _surface_label(shown_by: dict[str, Any] | None) -> str:
    """The call that showed a view or modal, in a few words (and what showed that one)."""
    if not shown_by:
        return ""
    case = ReplayCase(
        "", str(shown_by.get("kind")), str(shown_by.get("name") or ""), dict(shown_by.get("options") or {}),
        None, 0.0, shown_by=shown_by.get("shown_by"),
    )  # fmt: skip
    return _label(case)


def with_failure_extensions(plan: ReplayPlan, root: Path) -> ReplayPlan:
    """`plan` with the files of its recorded failure that are extensions (they define `setup`) among its
    handlers, when a kind it sends has no handler the map knows (a context menu a cog adds as it loads, a
    persistent view): the bot under proof must load the cog that answers it."""
    mapped = set(plan.handler_files)
    if plan.failure is None or all(case.kind in mapped for case in plan.replayable):
        return plan
    found = [
        path
        for path in plan.failure.path
        if path not in plan.handlers and re.search(r"^(async )?def setup\(", _source(root / path), re.M)
    ]
    return replace(plan, handlers=sorted({*plan.handlers, *found})) if found else plan


def _source(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def extension_of(path: str) -> str:
    """The extension that holds a handler file: `cogs/dice.py` → `cogs.dice`, a cog package's submodule
    → the package, any other module → itself."""
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    if parts[:1] == ["cogs"] and len(parts) > 2:
        parts = parts[:2]
    return ".".join(parts)


def _unreplayable(kind: str, invocation: dict[str, Any] | None, depth: int = 3) -> str | None:
    """Why a recorded call cannot be sent again, or None when it can (module docstring)."""
    if not invocation:
        return "no invocation was recorded for it"
    options = invocation.get("options") or {}
    if not isinstance(options, dict):
        return "its options were not recorded"
    if REDACTED in json.dumps(options, default=str):
        return "an option was redacted when it was recorded"
    family, _, rest = kind.partition(":")
    name = str(invocation.get("name", "")).strip()
    if family == "command":
        if name.startswith("/"):
            return _slash_unreplayable(name, options)
        return None if options.get("text") else "the command's text was not recorded"
    if family == "listener":
        if invocation.get("by_bot"):
            return "a message a bot wrote (a replay sends what members do)"
        if rest not in REPLAYED_EVENTS:
            return f"the `{rest}` event cannot be made again (only members' messages and reactions can)"
        needed = "content" if rest == "on_message" else "emoji"
        return None if options.get(needed) else f"the event's {needed} was not recorded"
    if family == "app":
        if invocation.get("target") is not None:
            return None if (invocation["target"].get("message")) else "a user's context menu"
        return _slash_unreplayable(name, options)
    if family == "autocomplete":
        return None if options else "what was typed was not recorded"
    if family == "task":
        return "a task loop's start or stop hook" if "." in rest else None
    if family in ("view", "modal"):
        if not options.get("custom_id") and family == "view":
            return "the component's custom id was not recorded"
        shown_by = invocation.get("shown_by")
        if not isinstance(shown_by, dict):
            return None if family == "view" else "what opened the modal was not recorded"
        if depth <= 0:
            return "shown by too long a chain of calls"
        why = _unreplayable(str(shown_by.get("kind")), shown_by, depth - 1)
        return f"what showed it cannot be sent again: {why}" if why else None
    return f"a {family} depends on state the recorder could not capture"


def _slash_unreplayable(name: str, options: dict[str, Any]) -> str | None:
    for option, value in options.items():
        if isinstance(value, str) and _SNOWFLAKE_OPTION.match(value):
            what = value.split(":")[0]
            return f"option `{option}` names a Discord object ({what}) the recorder kept only by id"
    return None


def _case(key: str, call: queries.RecordedCall, **fields: Any) -> ReplayCase:
    invocation = call.invocation or {}
    values: dict[str, Any] = {
        "key": key,
        "kind": call.kind,
        "name": str(invocation.get("name") or call.kind.split(":", 1)[-1]),
        "options": dict(invocation.get("options") or {}),
        "fingerprint": call.fingerprint,
        "recorded_ms": call.duration_ms,
        "unreplayable": _unreplayable(call.kind, call.invocation),
        "error_type": call.error_type,
        "caller": invocation.get("caller") if isinstance(invocation.get("caller"), dict) else None,
        "shown_by": invocation.get("shown_by") if isinstance(invocation.get("shown_by"), dict) else None,
        "choices": tuple(str(choice) for choice in invocation.get("choices") or ()),
        "target": invocation.get("target") if isinstance(invocation.get("target"), dict) else None,
    }
    return ReplayCase(**{**values, **fields})


def _distinct(calls: Iterable[queries.RecordedCall]) -> list[queries.RecordedCall]:
    seen: set[str] = set()
    found = []
    for call in calls:
        identity = json.dumps([call.kind, call.invocation], sort_keys=True, default=str)
        if identity not in seen:
            seen.add(identity)
            found.append(call)
    return found


async def plan_replay(
    db: Connection, *, fingerprint: str | None, kind: str | None, limit: int = MAX_REPLAYS
) -> ReplayPlan:
    """The recorded calls of a run's fault alone: its failures, else (latency, wrong output) the kind's
    slowest calls — what the replays after a deploy and after a rollback send."""
    latency = fingerprint is None
    if fingerprint is not None:
        calls = await queries.failing_calls(db, fingerprint)
    elif kind is not None:
        calls = await queries.slowest_calls(db, kind)
    else:
        calls = []
    cases = [_case(str(n), call) for n, call in enumerate(_distinct(calls)[:limit], start=1)]
    handlers, files, entries = await _handlers(db, [case for case in cases if case.unreplayable is None])
    return ReplayPlan(cases, handlers, latency, _failure_of(calls), files, entries=entries)


def _failure_of(calls: list[queries.RecordedCall]) -> Failure | None:
    """The recorded fault of a fingerprint's failing calls: type and innermost in-repo frame."""
    for call in calls:
        if call.error_type:
            frame = call.frames[-1].rsplit(":", 2) if call.frames else None
            files = tuple(dict.fromkeys(f.rsplit(":", 2)[0] for f in call.frames if f.count(":") >= 2))
            if frame is not None and len(frame) == 3:
                return Failure(call.error_type, frame[0], frame[2], files)
            return Failure(call.error_type, path=files)
    return None


async def plan_proof(
    db: Connection,
    *,
    fingerprint: str | None,
    kind: str | None,
    shown: set[str],
    reach: Iterable[str] = (),
) -> ReplayPlan:
    """What the proof of a fix sends (module docstring): calls that worked of the kinds in `reach` (the
    kinds the change can affect) and their neighbours, then the recorded failures — `held-out` unless
    their identity is in `shown` — and their neighbours."""
    latency = fingerprint is None
    if fingerprint is not None:
        recorded = await queries.failing_calls(db, fingerprint)
    elif kind is not None:
        recorded = await queries.slowest_calls(db, kind)
    else:
        recorded = []
    failing = _distinct(recorded)[: _MAX_FAILING if not latency else MAX_REPLAYS]
    reached = list(dict.fromkeys([*reach, *({kind} if kind else set())]))
    successes = await queries.recent_successes(db, [k for k in reached if _comparable(k)])
    cases: list[ReplayCase] = []

    def add(case: ReplayCase) -> ReplayCase:
        cases.append(replace(case, key=str(len(cases) + 1)))
        return cases[-1]

    def planned(kind: str, options: dict[str, Any], shown_by: Any = None) -> bool:
        return any(
            case.kind == kind and case.options == options and case.shown_by == shown_by and not case.variant
            for case in cases
        )

    sent = {json.dumps([call.kind, call.invocation], sort_keys=True, default=str) for call in failing}
    passing: list[tuple[ReplayCase, dict[str, Any]]] = []
    for call, normal_ms, first in _passing(successes, sent):
        case = add(_case("", call, role="pass", reply=call.reply, normal_ms=normal_ms, fingerprint=None))
        passing.append((case, call.invocation or {}))
        if first:
            for _ in range(_PROBES):
                add(replace(case, role="probe", parent=case.key))
    neighbours_left = _MAX_PASSING_NEIGHBOURS
    for case, invocation in passing:
        found = neighbours(case.kind, invocation, min(_PASSING_NEIGHBOURS_EACH, neighbours_left))
        for other in found:
            if not planned(case.kind, dict(other.get("options") or {}), other.get("shown_by")):
                add(_neighbour(case, other, case.normal_ms))
                neighbours_left -= 1

    normal = _normal_ms(successes)
    failing_cases = []
    for call in failing:
        role: Role = (
            "recorded" if call_identity(call.kind, call.invocation) in shown or latency else "held-out"
        )
        failing_cases.append(add(_case("", call, role=role, normal_ms=normal.get(call.kind))))
    neighbours_left = _MAX_FAILING_NEIGHBOURS if not latency else 0
    sendable = [case for case in failing_cases if case.unreplayable is None]
    each = max(_FAILING_NEIGHBOURS_EACH, math.ceil(_MAX_FAILING_NEIGHBOURS / max(1, len(sendable))))
    for case in sendable:
        if neighbours_left <= 0:
            continue
        found = neighbours(case.kind, _invocation_of(case), min(each, neighbours_left))
        for other in found:
            if not planned(case.kind, dict(other.get("options") or {}), other.get("shown_by")):
                add(_neighbour(case, other, case.normal_ms))
                neighbours_left -= 1
    # Who calls varies too: the recorded calls as another member, without the member's roles, elsewhere.
    callers_left = _MAX_CALLER_NEIGHBOURS if not latency else 0
    for case in sendable[:_CALLERS_OF]:
        for variant, caller in callers(case.caller, min(_CALLERS_EACH, callers_left)):
            add(replace(case, key="", role="neighbour", parent=case.key, caller=caller, variant=variant))
            callers_left -= 1

    handlers, files, entries = await _handlers(db, [case for case in cases if case.unreplayable is None])
    return ReplayPlan(
        cases, handlers, latency, _failure_of(recorded), files, _varies(successes), entries=entries
    )


async def _handlers(
    db: Connection, cases: list[ReplayCase]
) -> tuple[list[str], dict[str, list[str]], dict[str, list[str]]]:
    """The files that handle the cases' kinds — and the commands that showed their views and modals, and
    an autocomplete's command, whose cogs the bot must load for them — each kind's files, and its
    handlers' qualified names (a button's or a modal's callback named by its kind; mendbot's own cogs,
    which listen to the same events, left out)."""
    kinds = {case.kind for case in cases}
    lookup = set(kinds)
    for case in cases:
        if case.family == "autocomplete":
            lookup.add("app:" + case.kind.split(":", 1)[1].rsplit(".", 1)[0])
        shown = case.shown_by
        while isinstance(shown, dict):
            lookup.add(str(shown.get("kind")))
            shown = shown.get("shown_by")
    locations = [
        location
        for location in await handler_queries.for_kinds(db, lookup)
        if not is_mendbots_own(location.path)
    ]
    files: dict[str, list[str]] = {}
    entries: dict[str, list[str]] = {}
    for location in locations:
        files.setdefault(location.kind, []).append(location.path)
        entries.setdefault(location.kind, []).append(location.qualname)
    for named in kinds:
        if named.startswith(("view:", "modal:")):
            entries.setdefault(named, []).append(named.split(":", 1)[1])
    return sorted({location.path for location in locations}), files, entries


def _invocation_of(case: ReplayCase) -> dict[str, Any]:
    """A case as the recorder kept its call (what neighbours are made from)."""
    invocation: dict[str, Any] = {"name": case.name, "options": case.options}
    if case.shown_by is not None:
        invocation["shown_by"] = case.shown_by
    if case.choices:
        invocation["choices"] = list(case.choices)
    return invocation


def _neighbour(parent: ReplayCase, invocation: dict[str, Any], normal_ms: float | None) -> ReplayCase:
    return replace(
        parent,
        key="",
        options=dict(invocation.get("options") or {}),
        shown_by=invocation.get("shown_by") or parent.shown_by,
        role="neighbour",
        parent=parent.key,
        reply=None,
        normal_ms=normal_ms,
    )


def _comparable(kind: str) -> bool:
    """Kinds whose calls that worked are replayed to see they still work: every kind a replay sends."""
    return kind.startswith(("command:", "app:", "view:", "modal:", "autocomplete:", "listener:", "task:"))


def _normal_ms(successes: dict[str, list[queries.RecordedCall]]) -> dict[str, float]:
    return {
        kind: statistics.median(call.duration_ms for call in calls)
        for kind, calls in successes.items()
        if calls
    }


def _varies(successes: dict[str, list[queries.RecordedCall]]) -> dict[str, Comparison]:
    """For each kind, the loosest way its recorded replies varied when one member asked the same thing in
    one server again and again (`answers.seen_to_vary`); kinds never seen to vary are left out."""
    found: dict[str, Comparison] = {}
    for kind, calls in successes.items():
        asked: dict[tuple[str, int | None, int | None], list[str]] = {}
        for call in reversed(calls):  # oldest first
            if call.reply is not None:
                who = (call_identity(kind, call.invocation), call.guild_id, call.user_id)
                asked.setdefault(who, []).append(call.reply)
        for replies in asked.values():
            if (level := seen_to_vary(replies)) is not None:
                found[kind] = loosest(found.get(kind), level)
    return found


def _passing(
    successes: dict[str, list[queries.RecordedCall]], sent: set[str]
) -> list[tuple[queries.RecordedCall, float, bool]]:
    """Up to `_MAX_PASSING` distinct replayable calls that worked, taken from the kinds in turn (each
    kind's newest first), with the kind's usual time and whether it is the kind's first."""
    normal = _normal_ms(successes)
    queues = {
        kind: [
            call
            for call in _distinct(calls)
            if _unreplayable(kind, call.invocation) is None
            and json.dumps([call.kind, call.invocation], sort_keys=True, default=str) not in sent
        ]
        for kind, calls in successes.items()
    }
    picked: list[tuple[queries.RecordedCall, float, bool]] = []
    firsts: set[str] = set()
    while len(picked) < _MAX_PASSING and any(queues.values()):
        for kind, queue in queues.items():
            if queue and len(picked) < _MAX_PASSING:
                picked.append((queue.pop(0), normal[kind], kind not in firsts))
                firsts.add(kind)
    return picked
