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
from collections.abc import Mapping, Sequence
from typing import Any

from mendbot.improve.proof.verdict import Proof, ProofItem

__all__ = ["attempts", "describe", "event_row", "proof_views", "prose", "raw", "stages"]

_CUT = 160
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
_PROOFS = {
    "proof": "proof",
    "proof_live": "proof on the live code",
    "proof_rollback": "proof of the rollback",
}
# The events that change a run's state: each begins a stage of the timeline.
_STAGE_EVENTS = ("created", "transition")


def raw(detail: Any) -> str:
    """An event's stored detail as indented JSON (folded under its sentence)."""
    if not detail:
        return ""
    if isinstance(detail, str):
        return detail
    return json.dumps(detail, indent=1, ensure_ascii=False, sort_keys=True, default=str)


def _cut(text: str, limit: int = _CUT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _names(values: Any) -> str:
    if isinstance(values, list):
        return ", ".join(str(value) for value in values[:5]) + (" …" if len(values) > 5 else "")
    return str(values)


def describe(event: str, detail: Mapping[str, Any] | None) -> str:
    """One sentence for an event of a run (its detail is folded beneath it on the page)."""
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
            return "diagnosis: " + _cut(str(d.get("root_cause", "")))
        case "plan":
            return f"plan: {d.get('risk', '?')} risk, file(s) {_names(d.get('files') or [])}"
        case "claim":
            refused = f"; refused {_names(d['refused'])}" if d.get("refused") else ""
            return f"claimed {_names(d.get('paths') or [])}{refused}"
        case "checks":
            return "checks passed ✅" if d.get("ok") else "checks failed ❌"
        case "proof" | "proof_live" | "proof_rollback":
            return f"{_PROOFS[event]}: {d.get('verdict', '?')} — {_cut(str(d.get('reason', '')))}"
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
            return _cut(" · ".join(str(line) for line in d.get("lines") or []))
    words = event.replace("_", " ")
    why = d.get("reason") or d.get("why") or d.get("text")
    return f"{words}: {_cut(str(why))}" if why else words


def _stage_note(state: str | None, detail: Mapping[str, Any]) -> str:
    """What a state change carries worth a line under the stage's heading."""
    if state == "deployed" and detail.get("merged_sha"):
        return f"merged {str(detail['merged_sha'])[:7]}, files: {_names(detail.get('files') or [])}"
    if state == "rolled_back":
        how = "emergency rollback" if detail.get("emergency") else "rollback"
        by = f" by run #{detail['by_run']}" if detail.get("by_run") else ""
        return f"{how}{by}: revert {str(detail.get('revert_sha', ''))[:7]}"
    if state == "watching" and detail.get("window_s"):
        return f"watching for {detail['window_s']:g} s"
    if state == "failed" and detail.get("reason"):
        return _cut(str(detail["reason"]), 400)
    if state == "merging" and detail.get("approvers"):
        return f"approved by {len(detail['approvers'])} approver(s)"
    return ""


def event_row(event: Mapping[str, Any]) -> dict[str, Any]:
    """One event as a timeline row: a stage's heading for a state change, else a sentence."""
    detail = event.get("detail") or {}
    stage = event["event"] in _STAGE_EVENTS
    return {
        "id": event["id"],
        "ts": event["ts"],
        "actor": event["actor"],
        "user_id": int(event["actor"][5:]) if str(event["actor"]).startswith("user:") else None,
        "event": event["event"],
        "state": event["state"],
        "stage": stage,
        "cost_usd": event["cost_usd"],
        "what": _stage_note(event["state"], detail) if stage else describe(event["event"], detail),
        "detail": raw(detail),
    }


def stages(events: Sequence[Mapping[str, Any]], *, ended: float | None, now: float) -> list[dict[str, Any]]:
    """The timeline grouped by stage: each with its heading row, its events and how long it took (the
    last one until `ended`, the run's end, or until `now` while it goes on)."""
    groups: list[dict[str, Any]] = []
    for event in events:
        row = event_row(event)
        if row["stage"] or not groups:
            groups.append({"head": row, "events": [], "cost_usd": 0.0})
        else:
            groups[-1]["events"].append(row)
        groups[-1]["cost_usd"] += event["cost_usd"] or 0.0
    for group, following in zip(groups, [*groups[1:], None], strict=True):
        start = group["head"]["ts"]
        end = following["head"]["ts"] if following is not None else (ended if ended is not None else now)
        group["took"] = max(0.0, end - start)
        group["ongoing"] = following is None and ended is None
    return groups


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
