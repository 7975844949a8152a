"""Durations as people read them: "42 s", "5 min 3 s", "15 h 33 min", "2 d 4 h" — never "55996s".

Every duration the bot shows a person (a limit that resets, a run's elapsed time, a watch window, a
cooldown, the playground's rendering of Discord's relative timestamps) goes through `human_duration`,
so they all read alike: at most two units, the larger first, a zero second unit left out.
"""

from __future__ import annotations

__all__ = ["human_duration", "relative", "took"]

_UNITS = (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1))


def human_duration(seconds: float) -> str:
    """`seconds` (sign ignored) in at most two units, rounded to the smaller: "15 h 33 min" — and a day
    and two hours less a second (a reminder's "in 1d2h" read a moment after it was set) "1 d 2 h", not
    "1 d 1 h"."""
    left = round(abs(seconds))
    if left < 60:
        return f"{left} s"
    larger = next(index for index, (_, size) in enumerate(_UNITS) if size <= left)
    if larger + 1 < len(_UNITS):
        smaller = _UNITS[larger + 1][1]
        left = round(left / smaller) * smaller
    parts: list[str] = []
    for name, size in _UNITS:
        amount, left = divmod(left, size)
        if amount or parts:
            parts.append(f"{amount} {name}")
        if len(parts) == 2:
            break
    if len(parts) == 2 and parts[1].startswith("0 "):
        parts.pop()
    return " ".join(parts)


def relative(seconds: float) -> str:
    """A moment `seconds` from now as Discord's relative timestamps read: "in 15 h 33 min", "5 min ago".
    Past a minute they show no seconds, as Discord's client does: a reminder set for 10 minutes and read
    a second later is "in 10 min", not "in 9 min 59 s"."""
    if abs(seconds) >= 60:
        seconds = round(seconds / 60) * 60
    return f"in {human_duration(seconds)}" if seconds >= 0 else f"{human_duration(seconds)} ago"


def took(seconds: float) -> str:
    """How long a step took: tenths under ten seconds ("0.4 s", "3.2 s"), then as `human_duration` — the
    one way a run's stages read, in `/run N` and on the dashboard alike."""
    return f"{seconds:.1f} s" if abs(seconds) < 10 else human_duration(seconds)
