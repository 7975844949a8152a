"""A run's page as content, not data: what its stored events and proofs say, shaped for reading.

- the timeline grouped by stage, as a CI run page groups a job's steps: each stage (a state the run was
  in) with when it began, how long it took and what happened in it, each event in one sentence
  ("gathered the evidence pack: 5,048 characters, 2 suspects"), its raw detail folded beneath;
- the diagnosis and the plan as labelled prose and lists (root cause, proposed fix, risk, changes);
- the checks of each attempt, ✅/❌ with each check's output folded;
- the proof as the chat shows it: its headline and a row per item with the same ✅/❌ cells.

Plain functions over the rows `mendbot.db.runs` and `mendbot.db.browse` return; nothing here reads or writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mendbot.improve.proof.verdict import Proof, ProofItem
from mendbot.improve.run_story import STAGE_EVENTS, actor_words, describe, stage_note
from mendbot.improve.run_story import stages as story_stages
from mendbot.kernel.money import usd

__all__ = ["attempts", "describe", "details", "event_row", "proof_views", "prose", "raw", "stages"]

# Labels for the keys the agent's diagnosis and plan use (bot/improve/stages.py, prompts/agent/*).
_LABELS = {
    "root_cause": "Root cause",
    "proposed_fix": "Proposed fix",
    "confidence": "Confidence",
    "files": "Files",
    "changes": "Changes",
    "risk": "Risk",
    "tests": "Tests that prove it",
    "rollback": "Rollback",
}
_FIRST = tuple(_LABELS)
_LINES_AT_MOST = 40  # of a long value (a list, a text): the rest is summed up


def raw(detail: Any) -> str:
    """An event's stored detail as indented JSON (folded under its sentence)."""
    if not detail:
        return ""
    if isinstance(detail, str):
        return detail
    return json.dumps(detail, indent=1, ensure_ascii=False, sort_keys=True, default=str)


def _value(key: str, value: Any) -> str:
    """A detail's value as a person reads it: 1.94 (not 1.9410600000000002), seconds and dollars with
    their units, a list one item per line."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "—"}[value]
    if isinstance(value, int | float):
        if key.endswith("_usd"):
            return usd(value)
        number = f"{value:,}" if isinstance(value, int) or float(value).is_integer() else f"{value:.3g}"
        number = number.removesuffix(".0")
        unit = next((unit for suffix, unit in (("_ms", " ms"), ("_s", " s")) if key.endswith(suffix)), "")
        return number + unit
    if isinstance(value, list):
        items = [_value(key, item) for item in value[:_LINES_AT_MOST]]
        more = [f"… and {len(value) - _LINES_AT_MOST} more"] if len(value) > _LINES_AT_MOST else []
        return "\n".join([*items, *more])
    if isinstance(value, Mapping):
        return "\n".join(f"{name}: {_value(str(name), item)}" for name, item in value.items())
    return str(value)


def details(detail: Any) -> list[tuple[str, str]]:
    """An event's stored detail as (what, value) pairs, in the order stored: what a row folds beneath its
    sentence, read as a form is rather than as JSON squeezed into a column."""
    if not detail:
        return []
    if not isinstance(detail, Mapping):
        return [("", str(detail))]
    return [(str(key).replace("_", " "), _value(str(key), value)) for key, value in detail.items()]


def event_row(
    event: Mapping[str, Any], name_of: Callable[[int], str | None] = lambda _: None
) -> dict[str, Any]:
    """One event as a timeline row: a stage's heading for a state change, else a sentence; who did it
    in people's words (`who`), the stored actor kept for hover."""
    detail = event.get("detail") or {}
    stage = event["event"] in STAGE_EVENTS
    return {
        "id": event["id"],
        "ts": event["ts"],
        "actor": event["actor"],
        "who": actor_words(str(event["actor"]), name_of),
        "user_id": int(event["actor"][5:]) if str(event["actor"]).startswith("user:") else None,
        "event": event["event"],
        "state": event["state"],
        "stage": stage,
        "cost_usd": event["cost_usd"],
        "what": stage_note(event["state"], detail) if stage else describe(event["event"], detail),
        "detail": details(detail),
        "raw": raw(detail),
    }


def stages(
    events: Sequence[Mapping[str, Any]],
    *,
    ended: float | None,
    now: float,
    name_of: Callable[[int], str | None] = lambda _: None,
) -> list[dict[str, Any]]:
    """The timeline grouped by stage (`mendbot.improve.run_story.stages`, as `/run N` tells it): each with its
    heading row, its events, how long it took and what it cost."""
    return [
        {
            "head": event_row(stage.head, name_of),
            "events": [event_row(event, name_of) for event in stage.events],
            "cost_usd": stage.cost_usd,
            "took": stage.took,
            "ongoing": stage.ongoing,
        }
        for stage in story_stages(events, ended=ended, now=now)
    ]


def prose(detail: Any) -> list[dict[str, Any]]:
    """The agent's diagnosis or plan as labelled parts: text, or a list of items."""
    if not detail:
        return []
    if not isinstance(detail, Mapping):
        return [{"label": "", "text": str(detail), "items": None}]
    keys = [key for key in _FIRST if key in detail] + sorted(key for key in detail if key not in _FIRST)
    parts = []
    for key in keys:
        value = detail[key]
        if value in (None, "", [], {}):
            continue
        label = _LABELS.get(key) or key.replace("_", " ").capitalize()
        if isinstance(value, list):
            parts.append({"label": label, "text": None, "items": [_item(item) for item in value]})
        else:
            parts.append({"label": label, "text": _item(value), "items": None})
    return parts


def _item(value: Any) -> str:
    if isinstance(value, Mapping):
        if "file" in value and "change" in value:
            return f"{value['file']} — {value['change']}"
        return ", ".join(f"{key}: {item}" for key, item in value.items())
    return str(value)


def attempts(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each verification attempt's checks: ✅/❌, the command, how long, its output (folded)."""
    found = []
    for event in events:
        if event["event"] != "checks":
            continue
        detail = event.get("detail") or {}
        checks = detail.get("checks")
        if not isinstance(checks, list):  # stored before each check's output was kept: its summary lines
            lines = [line for line in str(detail.get("summary", "")).splitlines() if line.strip()]
            checks = [{"ok": line.startswith("✅"), "command": line.lstrip("✅❌ ")} for line in lines]
        found.append({"ok": bool(detail.get("ok")), "sha": str(detail.get("sha") or ""), "checks": checks})
    return found


def proof_views(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The run's proofs as the chat shows them: the headline, and per item its base and branch cells. An
    item that is not one (a field missing, a value of the wrong kind) is a row saying it could not be
    shown, and a proof whose items are not readable at all says so: the rest of the page is shown."""
    views = []
    for row in rows:
        stage = row["stage"]
        first, second = ("base", "branch") if stage == "verify" else ("recorded", "live")
        rows_shown: list[dict[str, Any]] = []
        items: list[ProofItem] = []
        stored = row["items"]
        if not isinstance(stored, list):
            why = row.get("unreadable") or "its items are not a list"
            rows_shown.append(_unshown(f"the proof's items could not be shown: {why}"))
            stored = []
        for value in stored:
            try:
                item = ProofItem.from_dict(value)
                shown = {
                    "what": f"{item.kind} `{item.label}`",
                    "base": item.base.cell() if item.base else "—",
                    "branch": item.branch.cell() if item.branch else "—",
                    "verdict": item.verdict,
                    "note": item.note,
                }
            except Exception as exc:  # any shape at all: one bad item must not take the page down
                rows_shown.append(_unshown(f"this item could not be shown ({type(exc).__name__}: {exc})"))
                continue
            items.append(item)
            rows_shown.append(shown)
        proof = Proof(row["verdict"], row["reason"], items, row.get("overhead_s") or 0.0, stage)
        views.append(
            {
                "stage": stage,
                "sha": row.get("sha") or "",
                "headline": proof.headline(),
                "columns": (first, second),
                "items": rows_shown,
            }
        )
    return views


def _unshown(note: str) -> dict[str, Any]:
    return {"what": "—", "base": "—", "branch": "—", "verdict": "unreadable", "note": note[:300]}
