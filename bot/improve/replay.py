"""Incident replay: the recorded failing calls, sent again to a checkout's code in the sandbox.

The recorder kept what each handler was asked (`invocation`, since migration 0008). For a run's
incident the replay picks at most `MAX_REPLAYS` distinct recorded invocations — the failures with the
incident's fingerprint, or, for a latency complaint with no fingerprint, the kind's slowest calls —
and runs them through `python -m bot.improve.replay_entry` in the OS sandbox (`bot.sandbox`), where a
throwaway bot on a virtual Discord loads the checkout's cogs that handle those kinds. What comes back
is, per invocation, what the bot recorded: ok or the error with its fingerprint, and the duration.

Invocations whose outcome depends on state the recorder could not capture (a reaction on some
message, a task iteration, an option naming a member or a channel, a redacted value) are not sent:
they are returned as "not replayable" with the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.db import handlers as handler_queries
from bot.db import proofs as queries
from bot.db.core import Connection
from bot.log import get_logger
from bot.process import run_process
from bot.redact import REDACTED
from bot.sandbox import Sandbox, SandboxUnavailable

__all__ = [
    "MAX_REPLAYS",
    "ReplayCase",
    "ReplayError",
    "ReplayPlan",
    "ReplayResult",
    "plan_replay",
    "run_replay",
]

_log = get_logger(__name__)

MAX_REPLAYS = 5
REPLAY_TIMEOUT_S = 90.0
_ENTRY = "bot.improve.replay_entry"
_SNOWFLAKE_OPTION = re.compile(r"^[A-Za-z]+:\d+$")  # how the recorder keeps a member, role or channel


class ReplayError(Exception):
    """The replay itself could not run (no sandbox, the throwaway bot did not start); says why."""


@dataclass(frozen=True)
class ReplayCase:
    """One recorded invocation to send again; `unreplayable` is the reason it cannot be, if any."""

    key: str
    kind: str
    name: str
    options: dict[str, Any]
    fingerprint: str | None  # the failure it should reproduce; None for a latency case
    recorded_ms: float
    unreplayable: str | None = None

    @property
    def label(self) -> str:
        """What a person would have typed, e.g. `!roll 2d6` or `/temp value=100 scale=C`."""
        if self.kind.startswith("command:") or self.kind == "listener:on_message":
            return str(self.options.get("text") or self.options.get("content") or self.name)[:80]
        shown = " ".join(f"{key}={value}" for key, value in self.options.items())
        return f"{self.name} {shown}".strip()[:80]

    def request(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "name": self.name, "options": self.options}


@dataclass(frozen=True)
class ReplayPlan:
    cases: list[ReplayCase]
    handlers: list[str]  # repository paths of the files that handle the kinds replayed
    latency: bool

    @property
    def replayable(self) -> list[ReplayCase]:
        return [case for case in self.cases if case.unreplayable is None]


@dataclass(frozen=True)
class ReplayResult:
    key: str
    ran: bool
    ok: bool
    error_type: str | None
    error: str | None
    fingerprint: str | None
    duration_ms: float


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
        if " " in str(invocation.get("name", "")).strip():
            return "a subcommand: the replay sends top-level commands only"
        for name, value in options.items():
            if isinstance(value, str) and _SNOWFLAKE_OPTION.match(value):
                what = value.split(":")[0]
                return f"option `{name}` names a Discord object ({what}) the recorder kept only by id"
        return None
    what = kind.split(":", 1)[0]
    return f"a {what} depends on state the recorder could not capture (messages, time, stored data)"


async def plan_replay(
    db: Connection, *, fingerprint: str | None, kind: str | None, limit: int = MAX_REPLAYS
) -> ReplayPlan:
    """What to replay for a run: the incident's failures, else (latency, wrong output) the kind's
    slowest calls."""
    latency = fingerprint is None
    if fingerprint is not None:
        calls = await queries.failing_calls(db, fingerprint)
    elif kind is not None:
        calls = await queries.slowest_calls(db, kind)
    else:
        calls = []
    cases: list[ReplayCase] = []
    seen: set[str] = set()
    for call in calls:
        identity = json.dumps([call.kind, call.invocation], sort_keys=True, default=str)
        if identity in seen:
            continue
        seen.add(identity)
        invocation = call.invocation or {}
        cases.append(
            ReplayCase(
                key=str(len(cases) + 1),
                kind=call.kind,
                name=str(invocation.get("name") or call.kind.split(":", 1)[-1]),
                options=dict(invocation.get("options") or {}),
                fingerprint=fingerprint,
                recorded_ms=call.duration_ms,
                unreplayable=_unreplayable(call.kind, call.invocation),
            )
        )
        if len(cases) >= limit:
            break
    kinds = {case.kind for case in cases if case.unreplayable is None}
    handlers = sorted({location.path for location in await handler_queries.for_kinds(db, kinds)})
    return ReplayPlan(cases, handlers, latency)


async def run_replay(
    checkout: Path,
    plan: ReplayPlan,
    *,
    sandbox: Sandbox,
    timeout_s: float = REPLAY_TIMEOUT_S,
) -> dict[str, ReplayResult]:
    """Send the plan's replayable cases to `checkout`'s code in the sandbox; results by case key."""
    cases = plan.replayable
    if not cases:
        return {}
    try:
        await sandbox.probe()
    except SandboxUnavailable as exc:
        raise ReplayError(f"no sandbox to replay in: {exc}") from exc
    request = json.dumps({"handlers": plan.handlers, "invocations": [case.request() for case in cases]})
    async with sandbox.jail(checkout, git_dir=None, writable=False) as jail:
        env = jail.environment()
        argv = jail.command([jail.python, "-m", _ENTRY, request], env, wall_s=timeout_s + 5)
        try:
            result = await run_process(
                argv, cwd=jail.worktree, env={}, timeout_s=timeout_s, merge_stderr=False
            )
        except OSError as exc:
            raise ReplayError(f"could not start the replay: {exc}") from exc
    if result.timed_out:
        raise ReplayError(f"the replay did not finish within {timeout_s:.0f} s")
    outcome = _last_json(result.output)
    if outcome is None or "results" not in outcome:
        detail = (outcome or {}).get("error") or _tail(result.errors or result.output)
        raise ReplayError(f"the replay bot did not run: {detail}")
    _log.info("replayed", checkout=str(checkout), cases=len(cases), extensions=outcome.get("extensions"))
    return {
        str(item["key"]): ReplayResult(
            key=str(item["key"]),
            ran=bool(item["ran"]),
            ok=bool(item["ok"]),
            error_type=item.get("error_type"),
            error=item.get("error"),
            fingerprint=item.get("fingerprint"),
            duration_ms=float(item.get("duration_ms") or 0.0),
        )
        for item in outcome["results"]
    }


def _last_json(output: str) -> dict[str, Any] | None:
    for raw in reversed(output.strip().splitlines()):
        line = raw.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None


def _tail(text: str) -> str:
    shown = [line for line in text.strip().splitlines() if line.strip()]
    return " / ".join(shown[-3:])[-400:] or "no output"
