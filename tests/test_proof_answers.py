"""How alike a command's answers must be: the level a set of answers shows, the loosest evidence
winning."""

from __future__ import annotations

from mendbot.improve.proof.answers import level_of, loosest


def test_answers_to_one_call_show_the_strictest_level_they_are_alike_at() -> None:
    """Equal but for a mention: exact; differing in numbers only: shape; in words: answered."""
    assert level_of(["Hi <@123>, 3 left", "Hi <@456>, 3 left"]) == "exact"
    assert level_of(["🎲 2d6 → 7", "🎲 2d6 → 9", "🎲 2d6 → 7"]) == "shape"
    assert level_of(["🎱 Yes.", "🎱 Yes.", "🎱 Very doubtful."]) == "answered"


def test_the_loosest_evidence_wins() -> None:
    """No evidence yet takes whatever is shown; a stricter one never tightens a looser one."""
    assert loosest(None, "exact") == "exact"
    assert loosest("answered", "exact") == "answered"
    assert loosest("exact", "shape") == "shape"
