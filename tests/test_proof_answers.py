"""How alike a command's answers must be: the level a set of answers shows, the loosest evidence winning,
and what a member's recorded replies to the same call show of the command."""

from __future__ import annotations

from mendbot.improve.proof.answers import level_of, loosest, seen_to_vary
from mendbot.observe.capture import REPLY_PREVIEW_CHARS


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


def test_replies_that_kept_changing_show_a_random_command() -> None:
    """Changing from one call to the next at least twice shows how the command varies."""
    assert seen_to_vary(["🎱 Yes.", "🎱 No.", "🎱 Yes."]) == "answered"
    assert seen_to_vary(["Pong! 42 ms", "Pong! 57 ms", "Pong! 40 ms"]) == "shape"


def test_replies_that_changed_once_or_only_in_ids_do_not() -> None:
    """A reworded reply after a deploy (`A A B B`), the same reply every time, or replies differing only
    in a mention or a timestamp say nothing about the command being random."""
    assert seen_to_vary(["Usage: !div a b", "Usage: !div a b", "Usage: !div A B", "Usage: !div A B"]) is None
    assert seen_to_vary(["8 / 2 = 4"] * 5) is None
    assert seen_to_vary(["Set <t:1700000000:R>", "Set <t:1700000100:R>", "Set <t:1700000200:R>"]) is None
    assert seen_to_vary([]) is None


def test_a_word_the_recorder_cut_does_not_count_as_a_change_of_words() -> None:
    """Long replies are kept to their first characters; a longer number moves the cut, and the word it
    cuts differs, but the replies vary only in numbers."""
    filler = " ".join(["word"] * 60)

    def preview(number: int) -> str:
        return f"Total {number}: {filler}"[:REPLY_PREVIEW_CHARS]

    replies = [preview(7), preview(1234), preview(56)]
    assert all(len(reply) == REPLY_PREVIEW_CHARS for reply in replies)
    assert seen_to_vary(replies) == "shape"
