"""Daemons held while a bot starts: none runs before `release()` (or the deadline), each runs after it,
and one stopped while held is closed without having run."""

from __future__ import annotations

import asyncio
import inspect

from mendbot.kernel.daemons import Daemons


async def _ran(flag: asyncio.Event) -> None:
    flag.set()
    await asyncio.sleep(3600)


async def test_held_daemons_run_only_once_released() -> None:
    """Held: started, yet not running; released: running. Released twice changes nothing."""
    daemons, flag = Daemons(), asyncio.Event()
    daemons.hold(at_most_s=3600)
    assert daemons.holding
    daemons.start("writer", _ran(flag))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not flag.is_set() and daemons.running() == ["writer"]
    daemons.release()
    daemons.release()
    await asyncio.wait_for(flag.wait(), timeout=5)
    assert not daemons.holding
    await daemons.stop_all()


async def test_daemons_not_held_run_at_once() -> None:
    daemons, flag = Daemons(), asyncio.Event()
    assert not daemons.holding
    daemons.start("writer", _ran(flag))
    await asyncio.wait_for(flag.wait(), timeout=5)
    await daemons.stop_all()


async def test_held_daemons_run_at_the_deadline_without_a_release() -> None:
    """A start that never connects gets its daemons all the same."""
    daemons, flag = Daemons(), asyncio.Event()
    daemons.hold(at_most_s=0.05)
    daemons.start("writer", _ran(flag))
    await asyncio.wait_for(flag.wait(), timeout=5)
    assert not daemons.holding
    await daemons.stop_all()


async def test_a_daemon_stopped_while_held_never_runs_and_is_closed() -> None:
    daemons, flag = Daemons(), asyncio.Event()
    daemons.hold(at_most_s=3600)
    coro = _ran(flag)
    daemons.start("writer", coro)
    await asyncio.sleep(0)
    await daemons.stop_all()
    assert not flag.is_set()
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED  # not "never awaited"
