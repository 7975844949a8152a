"""A replay that looked slow, timed again (bot/improve/proof/prover.py replays both sides once more, one
after the other, when a call looked slow): what each call keeps of its two replays, and where the
branch's second replay may stop."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from mendbot.improve.proof.judge import Timing, slow_calls
from mendbot.improve.proof.replay import ReplayResult
from mendbot.improve.proof.replay_plan import ReplayPlan

__all__ = ["quickest", "slow_again"]


def quickest(
    first: dict[str, ReplayResult] | str, second: dict[str, ReplayResult] | str
) -> dict[str, ReplayResult] | str:
    """`first` with each call's time the shorter of its two replays, where both answered alike (what a
    call answers is always the first replay's)."""
    if isinstance(first, str) or isinstance(second, str):
        return first
    kept = dict(first)
    for key, result in first.items():
        other = second.get(key)
        if other is not None and other.answered == result.answered and other.ok == result.ok:
            kept[key] = dataclasses.replace(result, duration_ms=min(result.duration_ms, other.duration_ms))
    return kept


def slow_again(
    plan: ReplayPlan,
    base: dict[str, ReplayResult] | str,
    branch: dict[str, ReplayResult] | str,
    timing: Timing,
    source_of: Callable[[str], str | None],
) -> Callable[[str, float], bool] | None:
    """Whether a call of the branch, timed again, is slow still — against the base's times, by the judge's
    own rule (`slow_calls`): the branch's second replay may stop there, the change being slow whatever the
    calls after it take. None when no call of the branch is slow against them: nothing to time again."""
    if isinstance(base, str) or isinstance(branch, str):
        return None
    limits = slow_calls(plan, base, branch, timing=timing, source_of=source_of)
    return functools.partial(_past, limits) if limits else None


def _past(limits: dict[str, float], key: str, took_ms: float) -> bool:
    return key in limits and took_ms > limits[key]
