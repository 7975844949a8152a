"""What the dashboard's pages make of stored rows: a process's status as a verdict with why, a run's events
in stages with durations and one sentence each, its diagnosis and plan as prose, its checks with their
output (bot/dashboard/status.py, bot/dashboard/run_view.py)."""

from __future__ import annotations

from typing import Any

from mendbot.dashboard.run_view import attempts, describe, prose, stages
from mendbot.dashboard.status import process_health

HEALTHY: dict[str, Any] = {
    "uptime_s": 200.0, "discord_ready": True, "accepting": True, "cogs": ["Dice", "Help"],
    "extension_failures": {}, "inflight": 0, "shards": [{"id": 0, "connected": True, "latency_ms": 42.0}],
    "improvement_paused": False, "storage_fault": None, "storage_write_retries": 0,
    "storage_writes_given_up": 0, "actions_recorded": 1200, "actions_written": 1200, "actions_shed": 0,
    "actions_shed_failures": 0, "actions_waiting": 0,
    "commit": "0123456789abcdef", "leader": True, "leadership": "sole", "merge_follow_problem": None,
}  # fmt: skip


def _event(n: int, ts: float, event: str, state: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    actor = "user:42" if event == "created" else "pipeline"
    return {"id": n, "ts": ts, "actor": actor, "event": event, "state": state, "cost_usd": 0.01 * n,
            "detail": detail or {}}  # fmt: skip


def test_a_process_reads_ok_warning_or_failing_and_says_why() -> None:
    """The overview's panel: OK with its figures in words; a warning for shed records or paused runs;
    failing, worst first, when Discord is not connected or an extension did not load."""
    ok = process_health(HEALTHY)
    assert (ok.level, ok.reasons) == ("ok", [])
    assert ("Up for", "3 min 20 s") in ok.facts and (
        "Discord",
        "1 of 1 shard(s) connected, 42 ms",
    ) in ok.facts
    assert ("Leadership", "leader (sole)") in ok.facts and ("Commit", "0123456789ab") in ok.facts
    assert not [value for _, value in ok.facts if value in ("True", "False", "None", "{}", "[]")]
    assert ("Self-improvement", "starting") in process_health({**HEALTHY, "improvement_paused": None}).facts
    paused = process_health({**HEALTHY, "improvement_paused": True, "actions_shed": 3})  # fmt: skip
    assert paused.level == "warning" and paused.label == "⚠️ Warning"
    assert paused.reasons == [
        "3 action record(s) shed: the journal could not keep up (0 of them failures)",
        "self-improvement is paused: no run starts until /resume",
    ]
    down = process_health({**HEALTHY, "discord_ready": False, "extension_failures": {"cogs.coin": "boom"},
                           "improvement_paused": True})  # fmt: skip
    assert down.level == "failing" and down.label == "❌ Failing"
    assert down.reasons[:2] == [
        "Discord: not connected yet (or the connection was lost)",
        "1 extension(s) failed to load and are not serving: cogs.coin",
    ]


def test_a_runs_events_are_grouped_by_stage_with_how_long_each_took() -> None:
    """Each state change heads a stage with the events in it; a stage lasts until the next begins, the
    last until the run ended (or now, while it goes on); its cost is its events' cost."""
    events = [
        _event(1, 100.0, "created", "queued"),
        _event(2, 101.0, "transition", "observing"),
        _event(3, 103.5, "evidence", "observing", {"chars": 5048, "suspects": ["cogs/dice.py:roll"]}),
        _event(4, 104.0, "transition", "investigating"),
        _event(5, 130.0, "diagnosis", "investigating", {"root_cause": "sides - 6 is zero"}),
    ]
    going = stages(events, ended=None, now=190.0)
    assert [group["head"]["state"] for group in going] == ["queued", "observing", "investigating"]
    assert [group["took"] for group in going] == [1.0, 3.0, 86.0]
    assert [group["ongoing"] for group in going] == [False, False, True]
    assert [row["what"] for row in going[1]["events"]] == [
        "gathered the evidence pack: 5,048 characters, 1 suspect(s) — cogs/dice.py:roll"
    ]
    assert going[2]["cost_usd"] == 0.04 + 0.05
    assert going[0]["head"]["user_id"] == 42 and going[1]["head"]["user_id"] is None
    ended = stages(events, ended=140.0, now=190.0)
    assert ended[-1]["took"] == 36.0 and not ended[-1]["ongoing"]


def test_events_read_as_sentences() -> None:
    """What happened, in words: a model request, a session, checks, a proof, a claim; anything else is
    its name with its reason."""
    assert describe("model_request", {"model": "claude", "input_count": 4952}) == (
        "model request to claude: 4,952 tokens in"
    )
    assert describe("agent_session", {"outcome": "success", "turns": 2, "tools": ["Edit", "Bash"]}) == (
        "agent session: success, 2 turn(s), tools: Edit, Bash"
    )
    assert describe("checks", {"ok": False}) == "checks failed ❌"
    assert describe("proof", {"verdict": "proven", "reason": "gone on the branch"}) == (
        "proof: proven — gone on the branch"
    )
    assert describe("claim", {"paths": ["cogs/dice.py"], "refused": []}) == "claimed cogs/dice.py"
    assert describe("approval_refused", {"reason": "not_allowed"}) == "approval refused: not allowed"


def test_a_diagnosis_and_a_plan_read_as_labelled_prose_and_lists() -> None:
    """Known keys first, under labels a person reads; lists as items; a change as "file — change"."""
    assert prose({"files": ["cogs/dice.py"], "root_cause": "sides - 6 is zero", "confidence": "high"}) == [
        {"label": "Root cause", "text": "sides - 6 is zero", "items": None},
        {"label": "Confidence", "text": "high", "items": None},
        {"label": "Files", "text": None, "items": ["cogs/dice.py"]},
    ]
    plan = prose(
        {"risk": "low", "changes": [{"file": "cogs/dice.py", "change": "guard it"}], "extra_note": 1}
    )
    assert plan == [
        {"label": "Changes", "text": None, "items": ["cogs/dice.py — guard it"]},
        {"label": "Risk", "text": "low", "items": None},
        {"label": "Extra note", "text": "1", "items": None},
    ]
    assert prose("just text") == [{"label": "", "text": "just text", "items": None}]


def test_each_attempts_checks_keep_their_output() -> None:
    """Each checks event is an attempt with its checks and their output; one stored before outputs were
    kept reads its summary lines."""
    failing = {"command": "pytest -q", "ok": False, "exit_code": 1, "duration_s": 2.5, "output": "1 failed"}
    events = [
        _event(1, 1.0, "checks", "verifying", {"ok": False, "sha": "abc", "checks": [failing]}),
        _event(2, 2.0, "checks", "verifying", {"ok": True, "sha": "d", "summary": "✅ ruff check . (0.4 s)"}),
    ]
    first, second = attempts(events)
    assert (first["ok"], first["checks"][0]["output"]) == (False, "1 failed")
    assert second["checks"] == [{"ok": True, "command": "ruff check . (0.4 s)"}]
