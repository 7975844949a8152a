"""Dice notation parsing and rolling."""

from __future__ import annotations

import random

import pytest

from mendbot.features import dice


@pytest.mark.parametrize(
    ("text", "count", "sides", "modifier"),
    [("2d6", 2, 6, 0), ("d20", 1, 20, 0), ("3d8+2", 3, 8, 2), ("4D6 - 2", 4, 6, -2), (" 1d100 ", 1, 100, 0)],
)
def test_parse_accepts_common_notation(text: str, count: int, sides: int, modifier: int) -> None:
    """Common notations parse into count, sides and modifier."""
    assert dice.parse(text) == dice.DiceSpec(count, sides, modifier)


@pytest.mark.parametrize("text", ["2x", "", "d", "2d", "abc", "2d6+", "1d6*2"])
def test_parse_rejects_non_notation_with_examples(text: str) -> None:
    """Text that is not dice notation is refused with examples of what works."""
    with pytest.raises(dice.DiceError, match="Try `2d6`"):
        dice.parse(text)


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("0d6", "between 1 and 100 dice"),
        ("101d6", "100 dice"),
        ("1d1", "between 2 and 1000 sides"),
        ("1d1001", "1000 sides"),
    ],
)
def test_parse_rejects_out_of_range(text: str, limit: str) -> None:
    """Too many dice or impossible dice are refused, naming the limit."""
    with pytest.raises(dice.DiceError, match=limit):
        dice.parse(text)


def test_roll_total_is_sum_plus_modifier() -> None:
    """A roll's total is its dice plus the modifier, each die within its sides."""
    result = dice.roll(dice.parse("10d4+3"), random.Random(7))
    assert len(result.rolls) == 10
    assert all(1 <= value <= 4 for value in result.rolls)
    assert result.total == sum(result.rolls) + 3
