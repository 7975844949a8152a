"""Dice notation (`2d6+1`, `d20`, `4d6-2`): parsing and rolling for the /roll command."""

from __future__ import annotations

import random
import re

import msgspec

from mendbot.kernel.discord_limits import cut
from mendbot.kernel.errors import UserError

__all__ = ["MAX_DICE", "MAX_SIDES", "DiceError", "DiceRoll", "DiceSpec", "parse", "roll"]

MAX_DICE = 100
MAX_SIDES = 1000
_NOTATION = re.compile(r"^\s*(\d*)\s*[dD]\s*(\d+)\s*(?:([+-])\s*(\d+))?\s*$")


class DiceError(UserError, ValueError):
    """The text is not dice notation we can roll; the message says what would work."""


class DiceSpec(msgspec.Struct, frozen=True):
    count: int
    sides: int
    modifier: int

    def __str__(self) -> str:
        mod = f"{self.modifier:+d}" if self.modifier else ""
        return f"{self.count}d{self.sides}{mod}"


class DiceRoll(msgspec.Struct, frozen=True):
    spec: DiceSpec
    rolls: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.rolls) + self.spec.modifier

    def sum_text(self, shown: int = 30) -> str:
        """The sum as written out: `3 + 5 + 2`, a modifier as one more term (`3 - 2`); past `shown`
        dice, `…` stands for the rest."""
        terms = " + ".join(str(value) for value in self.rolls[:shown])
        if len(self.rolls) > shown:
            terms += " + …"
        modifier = self.spec.modifier
        if modifier:
            terms += f" {'+' if modifier > 0 else '-'} {abs(modifier)}"
        return terms


def parse(text: str) -> DiceSpec:
    match = _NOTATION.match(text)
    if match is None:
        raise DiceError(
            f"`{text.strip()[:40]}` isn't dice notation. Try `2d6`, `d20` or `3d8+2` "
            f"(up to {MAX_DICE} dice with up to {MAX_SIDES} sides)."
        )
    count_text, sides_text = match.group(1) or "1", match.group(2)
    # The numbers are echoed cut, and compared as text past nine digits: Python refuses to read an
    # integer of more than 4300 digits, and nobody needs to read one back.
    if len(count_text.lstrip("0")) > 9 or not 1 <= (count := int(count_text)) <= MAX_DICE:
        raise DiceError(f"I can roll between 1 and {MAX_DICE} dice at once, not {cut(count_text, 12)}.")
    if len(sides_text.lstrip("0")) > 9 or not 2 <= (sides := int(sides_text)) <= MAX_SIDES:
        raise DiceError(f"A die needs between 2 and {MAX_SIDES} sides, not {cut(sides_text, 12)}.")
    modifier_text = match.group(4) or "0"
    if len(modifier_text.lstrip("0")) > 9:
        raise DiceError(f"A modifier can be up to 9 digits, not {cut(modifier_text, 12)}.")
    modifier = int(modifier_text) * (-1 if match.group(3) == "-" else 1)
    return DiceSpec(count, sides, modifier)


def roll(spec: DiceSpec, rng: random.Random | None = None) -> DiceRoll:
    rng = rng or random.SystemRandom()
    return DiceRoll(spec, tuple(rng.randint(1, spec.sides) for _ in range(spec.count)))
