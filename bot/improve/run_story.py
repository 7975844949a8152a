"""How a run's stored events read to people, the one telling chat's `/run N` and the dashboard share.

- each event in one sentence ("gathered the evidence pack: 5,048 characters, 2 suspects", "model request
  to claude-sonnet-5-5: 5,258 tokens in") — `describe`;
- who did it in people's words: a person by name, and "mendbot", "the coding agent", "the model gateway",
  "the watch" for the parts of the bot that act — `actor_words` (the raw actor stays on hover);
- the run's stages, as a CI run page groups a job's steps: each state the run was in, when it began, how
  long it took — to the next one, by the bot's clock, whichever surface asks — what it cost and what
  happened in it — `stages`.

Plain functions over the rows `mendbot.db.runs` returns; nothing here reads or writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["STAGE_EVENTS", "Stage", "actor_words", "cut", "describe", "stage_note", "stages"]

_CUT = 160
_PROOFS = {
    "proof": "proof",
    "proof_live": "proof on the live code",
    "proof_rollback": "proof of the rollback",
}
# The events that change a run's state: each begins a stage.
STAGE_EVENTS = ("created", "transition")
# The parts of the bot that act on a run (`run_events.actor`), as a person would name them.
_ACTORS = {
    "pipeline": "mendbot",
    "bot": "mendbot",
    "system": "mendbot",
    "agent": "the coding agent",
    "gateway": "the model gateway",
    "watch": "the watch",
    "watchdog": "the watchdog",
}
_USER = re.compile(r"^user:(\d+)$")


def cut(text: str, limit: int = _CUT) -> str:
    """`text` on one line, at most `limit` characters, cut at a word where it can be (never mid-word)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    return (head[:space] if space > limit // 2 else head).rstrip(" ,;:—-") + "…"


def _names(values: Any) -> str:
    if isinstance(values, list):
        return ", ".join(str(value) for value in values[:5]) + (" …" if len(values) > 5 else "")
    return str(values)


def actor_words(actor: str, name_of: Callable[[int], str | None] = lambda _: None) -> str:
    """A run event's actor as people read it: a person by the name the bot knows them by (else "user
    1234"), the bot's own parts by what they are ("mendbot", "the coding agent"); another process's name
    (a worker) as it is."""
    match = _USER.match(actor)
    if match is not None:
        return name_of(int(match[1])) or f"user {match[1]}"
    return _ACTORS.get(actor, actor)


def describe(event: str, detail: Mapping[str, Any] | None) -> str:
    """One sentence for an event of a run."""
    d: Mapping[str, Any] = detail if isinstance(detail, Mapping) else {}
    match event:
        case "evidence":
            suspects = d.get("suspects") or []
            return (
                f"gathered the evidence pack: {d.get('chars', 0):,} characters, {len(suspects)} suspect(s)"
                + (f" — {_names(suspects)}" if suspects else "")
            )
        case "model_request":
            return f"model request to {d.get('model', 'the model')}: {d.get('input_count', 0):,} tokens in"
        case "agent_session":
            tools = _names(d.get("tools")) if d.get("tools") else "none"
            return f"agent session: {d.get('outcome', '?')}, {d.get('turns', 0)} turn(s), tools: {tools}"
        case "diagnosis":
            return "diagnosis: " + cut(str(d.get("root_cause", "")))
        case "plan":
            return f"plan: {d.get('risk', '?')} risk, file(s) {_names(d.get('files') or [])}"
        case "claim":
            refused = f"; refused {_names(d['refused'])}" if d.get("refused") else ""
            return f"claimed {_names(d.get('paths') or [])}{refused}"
        case "checks":
            return "checks passed ✅" if d.get("ok") else "checks failed ❌"
        case "proof" | "proof_live" | "proof_rollback":
            return f"{_PROOFS[event]}: {d.get('verdict', '?')} — {cut(str(d.get('reason', '')))}"
        case "reported":
            return "reported in chat"
        case "merge_recorded":
            return f"merge recorded as {str(d.get('merged_sha', ''))[:7]}"
        case "deploy_reported":
            return "deploy reported in chat"
        case "rolled_back":
            return f"rolled back again: revert {str(d.get('revert_sha', ''))[:7]}"
        case "not_on_main":
            return f"not on main, so not in the worktree: {_names(d.get('files') or [])}"
        case "progress":
            return cut(" · ".join(str(line) for line in d.get("lines") or []))
    words = event.replace("_", " ")
    why = d.get("reason") or d.get("why") or d.get("text")
    if isinstance(why, str) and re.fullmatch(r"[a-z]+(_[a-z]+)+", why):  # a code's reason: `not_allowed`
        why = why.replace("_", " ")
    return f"{words}: {cut(str(why))}" if why else words


def stage_note(state: str | None, detail: Mapping[str, Any]) -> str:
    """What a state change carries worth saying beside the stage's name."""
    if state == "deployed" and detail.get("merged_sha"):
        return f"merged {str(detail['merged_sha'])[:7]}, files: {_names(detail.get('files') or [])}"
    if state == "rolled_back":
        how = "emergency rollback" if detail.get("emergency") else "rollback"
        by = f" by run #{detail['by_run']}" if detail.get("by_run") else ""
        return f"{how}{by}: revert {str(detail.get('revert_sha', ''))[:7]}"
    if state == "watching" and detail.get("window_s"):
        return f"watching for {detail['window_s']:g} s"
    if state == "failed" and detail.get("reason"):
        return cut(str(detail["reason"]), 400)
    if state == "merging" and detail.get("approvers"):
        return f"approved by {len(detail['approvers'])} approver(s)"
    return ""


class Stage:
    """One state the run was in: the event that began it, the events within it, how long it took (to the
    next stage; the last one to the run's end, or to now while it goes on) and what it cost."""

    __slots__ = ("cost_usd", "events", "head", "ongoing", "took")

    def __init__(self, head: Mapping[str, Any]) -> None:
        self.head = head
        self.events: list[Mapping[str, Any]] = []
        self.cost_usd = float(head.get("cost_usd") or 0.0)
        self.took = 0.0
        self.ongoing = False

    @property
    def state(self) -> str:
        return str(self.head.get("state") or "")

    @property
    def note(self) -> str:
        detail = self.head.get("detail")
        return stage_note(self.state, detail if isinstance(detail, Mapping) else {})


def stages(events: Sequence[Mapping[str, Any]], *, ended: float | None, now: float) -> list[Stage]:
    """The run's events grouped by stage, in order (`ended`: when the run ended, None while it goes on)."""
    found: list[Stage] = []
    for event in events:
        if event["event"] in STAGE_EVENTS or not found:
            found.append(Stage(event))
        else:
            found[-1].events.append(event)
            found[-1].cost_usd += float(event.get("cost_usd") or 0.0)
    for stage, following in zip(found, [*found[1:], None], strict=True):
        end = following.head["ts"] if following is not None else (ended if ended is not None else now)
        stage.took = max(0.0, end - stage.head["ts"])
        stage.ongoing = following is None and ended is None
    return found
