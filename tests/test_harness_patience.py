"""The tests' deadline helper (tests/harness/patience.py): a wait ends with the result, or with TimeoutError
after its seconds on a quiet machine, longer while the machine is busy, and cancels what it waited on."""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.harness import patience
from tests.harness.patience import within

CORES = os.cpu_count() or 1


def _load(monkeypatch: pytest.MonkeyPatch, *per_core: float) -> list[int]:
    """The load average the helper reads: each value per core in turn, the last one from then on."""
    asked: list[int] = []

    def getloadavg() -> tuple[float, float, float]:
        asked.append(1)
        value = per_core[min(len(asked), len(per_core)) - 1] * CORES
        return (value, value, value)

    monkeypatch.setattr(os, "getloadavg", getloadavg)
    return asked


async def test_the_result_comes_back() -> None:
    assert await within(asyncio.sleep(0, result="done"), 5) == "done"


async def test_on_a_quiet_machine_the_deadline_is_the_seconds_and_the_wait_is_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _load(monkeypatch, 0.2)
    never = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        await within(never, 0.2)
    assert never.cancelled()


async def test_a_busy_machine_stretches_the_deadline_even_when_it_gets_busy_during_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Quiet at first, then three times oversubscribed: an answer after twice the seconds is waited for;
    one that never comes still ends, at most five times the seconds later."""
    asked = _load(monkeypatch, 0.5, 3.0)
    answer = asyncio.Event()
    asyncio.get_running_loop().call_later(0.4, answer.set)
    await within(answer.wait(), 0.2)
    assert len(asked) >= 2  # looked again when the first deadline passed
    _load(monkeypatch, 50.0)
    assert patience._stretch() == 5.0  # however busy: a hang still ends
    with pytest.raises(TimeoutError):
        await within(asyncio.Event().wait(), 0.1)
