"""How alike a command's answers must be for the proof to call them the same, and what shows it.

Three levels: **exact** (ids, mentions and times aside), **shape** (numbers aside too: `🎲 2d6 → 7` and
`🎲 2d6 → 9`), and **answered** (any answer: the command answers random words). A command's level is read
only off evidence the change under proof cannot touch — the base's answers to one call sent three times
(the probe, `mendbot.improve.proof.judge`) and the live bot's recorded replies to a member asking it the
same thing (`seen_to_vary`, read when the plan is made) — and the loosest any of it shows wins: a random
command whose probe happened to answer alike three times is still random.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Literal

from mendbot.observe.capture import REPLY_PREVIEW_CHARS

__all__ = ["Comparison", "alike", "level_of", "loosest", "masked", "seen_to_vary", "shape"]

Comparison = Literal["exact", "shape", "answered"]
_LOOSENESS: dict[Comparison, int] = {"exact": 0, "shape": 1, "answered": 2}
_MASKS = (
    re.compile(r"<(?:@[!&]?|#|t:)\d+(?::[A-Za-z])?>"),  # mentions, channels, Discord timestamps
    re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"),  # dates and times
    re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?\b"),  # clock times
    re.compile(r"\b\d{15,21}\b"),  # snowflake ids
    re.compile(r"\b1\d{9}(?:\.\d+)?\b"),  # unix times
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def masked(text: str) -> str:
    """`text` with what differs between two runs of the same answer (ids, mentions, times) blanked."""
    for pattern in _MASKS:
        text = pattern.sub("…", text)
    return " ".join(text.split())


def shape(text: str) -> str:
    """`masked(text)` with every number blanked too: `🎲 2d6 → 7` and `🎲 2d6 → 9` have one shape."""
    return _NUMBER.sub("#", masked(text))


def alike(base: str, branch: str, how: Comparison) -> bool:
    if how == "exact":
        return masked(base) == masked(branch)
    if how == "shape":
        return shape(base) == shape(branch)
    return True


def level_of(answers: Iterable[str]) -> Comparison:
    """The strictest level at which these answers to one call are all alike."""
    found = list(answers)
    if len({masked(answer) for answer in found}) <= 1:
        return "exact"
    if len({shape(answer) for answer in found}) <= 1:
        return "shape"
    return "answered"


def loosest(first: Comparison | None, second: Comparison) -> Comparison:
    return second if first is None or _LOOSENESS[second] > _LOOSENESS[first] else first


def seen_to_vary(replies: Sequence[str]) -> Comparison | None:
    """What the recorded replies to one call (one member asking the same thing), oldest first, show of
    the command: how it varies (`shape` or `answered`), or None when they do not show that it does.

    The reply must have changed from one call to the next at least twice: a deploy that changed the
    command's wording changes its replies once (`A A B B`), a random command's change again and again.
    The recorder keeps only the first `REPLY_PREVIEW_CHARS` characters, so a word it cut is left out."""
    previews = _in_full(replies)
    changes = sum(masked(before) != masked(after) for before, after in pairwise(previews))
    if changes < 2:
        return None
    return level_of(previews)


def _in_full(replies: Sequence[str]) -> list[str]:
    """The replies' words up to the first one a preview cut: where a longer number pushed the cut a
    character further, the replies are compared on the words all of them have whole."""
    words = [reply.split() for reply in replies]
    cut = [len(reply) >= REPLY_PREVIEW_CHARS for reply in replies]
    if not any(cut):
        return [" ".join(found) for found in words]
    whole = min(len(found) - 1 if was_cut else len(found) for found, was_cut in zip(words, cut, strict=True))
    return [" ".join(found[: max(whole, 0)]) for found in words]
