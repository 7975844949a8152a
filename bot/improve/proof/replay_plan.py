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
the prover judges each by the base's outcome. Invocations whose outcome depends on state the recorder
could not capture (a reaction on some message, a task iteration, an option naming a member or a channel,
a redacted value) are not sent: they are "not replayable", with the reason.
"""

from __future__ import annotations

import ast
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
from mendbot.improve.proof.neighbours import neighbours
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
]

MAX_REPLAYS = 5
_MAX_FAILING = 6  # recorded failing calls a proof replays (shown and held out)
_FAILING_NEIGHBOURS_EACH = 3
_MAX_FAILING_NEIGHBOURS = 8
_MAX_PASSING = 4  # recorded calls that worked, across the kinds the change can reach
_PASSING_NEIGHBOURS_EACH = 2
_MAX_PASSING_NEIGHBOURS = 4
# Repeats of each kind's first call that worked: with its own answer, three to tell a deterministic
# command from a random one (two answers of a d20 are alike one time in twenty).
_PROBES = 2
_IMPORT_DEPTH = 4
_SNOWFLAKE_OPTION = re.compile(r"^[A-Za-z]+:\d+$")  # how the recorder keeps a member, role or channel

Role = Literal["recorded", "held-out", "neighbour", "pass", "probe"]


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

    @property
    def label(self) -> str:
        """What a person would have typed, e.g. `!roll 2d6` or `/temp value=100 scale=C`."""
        if self.kind.startswith("command:") or self.kind == "listener:on_message":
            return str(self.options.get("text") or self.options.get("content") or self.name)[:80]
        shown = " ".join(f"{key}={value}" for key, value in self.options.items())
        return f"{self.name} {shown}".strip()[:80]

    @property
    def slash(self) -> bool:
        return self.kind.startswith("app:")

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

    @property
    def replayable(self) -> list[ReplayCase]:
        return [case for case in self.cases if case.unreplayable is None]

    @property
    def watched(self) -> list[str]:
        """The files the replay's watch follows exceptions in: the recorded failure's frames and the
        handlers of the kinds sent (what the proof's judgement reads). Empty: the whole repository."""
        return sorted({*(self.failure.path if self.failure else ()), *self.handlers})


def extension_of(path: str) -> str:
    """The extension that holds a handler file: `cogs/dice.py` → `cogs.dice`, a cog package's submodule
    → the package, any other module → itself."""
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    if parts[:1] == ["cogs"] and len(parts) > 2:
        parts = parts[:2]
    return ".".join(parts)


def _unreplayable(kind: str, invocation: dict[str, Any] | None) -> str | None:
    if not invocation:
        return "no invocation was recorded for it"
    options = invocation.get("options") or {}
    if not isinstance(options, dict):
        return "its options were not recorded"
    if any(REDACTED in str(value) for value in options.values()):
        return "an option was redacted when it was recorded"
    if kind.startswith("command:"):
        return None if options.get("text") else "the command's text was not recorded"
    if kind == "listener:on_message":
        return None if options.get("content") else "the message's content was not recorded"
    if kind.startswith("app:"):
        for name, value in options.items():
            if isinstance(value, str) and _SNOWFLAKE_OPTION.match(value):
                what = value.split(":")[0]
                return f"option `{name}` names a Discord object ({what}) the recorder kept only by id"
        return None
    what = kind.split(":", 1)[0]
    return f"a {what} depends on state the recorder could not capture (messages, time, stored data)"


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
    kinds = {case.kind for case in cases if case.unreplayable is None}
    handlers = sorted({location.path for location in await handler_queries.for_kinds(db, kinds)})
    return ReplayPlan(cases, handlers, latency, _failure_of(calls))


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

    def planned(kind: str, options: dict[str, Any]) -> bool:
        return any(case.kind == kind and case.options == options for case in cases)

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
            if not planned(case.kind, dict(other.get("options") or {})):
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
        invocation = {"name": case.name, "options": case.options}
        found = neighbours(case.kind, invocation, min(each, neighbours_left))
        for other in found:
            if not planned(case.kind, dict(other.get("options") or {})):
                add(_neighbour(case, other, case.normal_ms))
                neighbours_left -= 1

    kinds = {case.kind for case in cases if case.unreplayable is None}
    locations = await handler_queries.for_kinds(db, kinds)
    files: dict[str, list[str]] = {}
    for location in locations:
        files.setdefault(location.kind, []).append(location.path)
    handlers = sorted({location.path for location in locations})
    return ReplayPlan(cases, handlers, latency, _failure_of(recorded), files, _varies(successes))


def _neighbour(parent: ReplayCase, invocation: dict[str, Any], normal_ms: float | None) -> ReplayCase:
    return replace(
        parent,
        key="",
        options=dict(invocation.get("options") or {}),
        role="neighbour",
        parent=parent.key,
        reply=None,
        normal_ms=normal_ms,
    )


def _comparable(kind: str) -> bool:
    """Kinds whose calls that worked are replayed to see they still work: commands people call."""
    return kind.startswith(("command:", "app:"))


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


def affected_kinds(
    handlers: list[handler_queries.HandlerLocation], changed: Iterable[str], root: Path
) -> list[str]:
    """The kinds whose handler file the change touches, or imports (however indirectly, within the
    repository at `root`) a file the change touches: what the change can make behave differently."""
    changed_files = {path for path in changed if path.endswith(".py")}
    if not changed_files:
        return []
    reaches: dict[str, bool] = {}
    found = []
    for location in handlers:
        if location.path not in reaches:
            reaches[location.path] = _reaches(location.path, changed_files, root)
        if reaches[location.path] and location.kind not in found:
            found.append(location.kind)
    return found


def _reaches(path: str, targets: set[str], root: Path) -> bool:
    frontier, seen = [path], {path}
    for _ in range(_IMPORT_DEPTH + 1):
        if any(file in targets for file in frontier):
            return True
        following = []
        for file in frontier:
            for imported in _imports(file, root):
                if imported not in seen:
                    seen.add(imported)
                    following.append(imported)
        frontier = following
    return False


def _imports(path: str, root: Path) -> list[str]:
    """The repository files `path` imports (absolute and relative imports resolved as Python would)."""
    try:
        tree = ast.parse((root / path).read_text(encoding="utf-8"), filename=path)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    package = path.removesuffix(".py").split("/")[:-1]  # a module's package, or an __init__'s own
    modules: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module.split(".") if node.module else []
            if node.level:
                up = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                base = [*up, *base]
            modules.append(".".join(base))
            modules += [".".join([*base, alias.name]) for alias in node.names]
    files = []
    for module in modules:
        relative = "/".join(part for part in module.split(".") if part)
        for candidate in (f"{relative}.py", f"{relative}/__init__.py"):
            if relative and (root / candidate).is_file():
                files.append(candidate)
                break
    return files
