"""How a run's events read to people (bot/improve/run_story.py), as `/run N` and the dashboard both tell
them: the bot's parts by what they are, a code's reason in words, a long text cut at a word, and each
stage's duration to the next stage by the bot's clock."""

from __future__ import annotations

from typing import Any

from mendbot.improve.run_story import actor_words, cut, describe, stages


def test_who_did_it_reads_as_people_say_it() -> None:
    """`gateway`, `agent`, `pipeline` and `user:42` read "the model gateway", "the coding agent", "mendbot"
    and the person's name (or "user 42" when the bot never saw them)."""
    names = {42: "alice"}.get
    assert [
        actor_words(a, names) for a in ("gateway", "agent", "pipeline", "watch", "user:42", "user:7")
    ] == [
        "the model gateway",
        "the coding agent",
        "mendbot",
        "the watch",
        "alice",
        "user 7",
    ]


def test_a_reason_written_as_code_reads_as_words() -> None:
    """An approval refused for `not_allowed` says "not allowed"; a sentence stays as it was written."""
    assert describe("approval_refused", {"reason": "not_allowed"}) == "approval refused: not allowed"
    assert describe("cancelled", {"reason": "asked by alice"}) == "cancelled: asked by alice"


def test_a_long_text_is_cut_at_a_word() -> None:
    """Never mid-word ("awaiting_approva…"): at the last space before the limit, with an ellipsis."""
    assert (
        cut("the roll command divides by the number of sides minus six", 30) == "the roll command divides by…"
    )
    assert cut("awaiting_approval", 40) == "awaiting_approval"


def test_each_stage_took_until_the_next_began() -> None:
    """Stages are the state changes; each took until the next one began, the last one until the run ended
    (or until now, and "so far", while it goes on); what its events cost is the stage's."""

    def event(ts: float, name: str, state: str, cost: float = 0.0) -> dict[str, Any]:
        return {"ts": ts, "event": name, "state": state, "cost_usd": cost, "actor": "pipeline", "detail": {}}

    events = [
        event(100.0, "created", "queued"),
        event(102.0, "transition", "investigating"),
        event(103.0, "model_request", "investigating", 0.0025),
        event(114.5, "transition", "awaiting_approval"),
    ]
    told = stages(events, ended=None, now=120.0)
    assert [(s.state, s.took, s.ongoing, s.cost_usd) for s in told] == [
        ("queued", 2.0, False, 0.0),
        ("investigating", 12.5, False, 0.0025),
        ("awaiting_approval", 5.5, True, 0.0),
    ]
    assert stages(events, ended=114.5, now=999.0)[-1].took == 0.0
