"""Leadership among processes: one advisory lock on a real PostgreSQL, or the sole SQLite process."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import LiteralString

import psycopg
import pytest

from mendbot.scale.leader import Leadership, PostgresLeader, SoleLeader, Transition, lock_key

pytestmark = pytest.mark.engines

REPO = Path(__file__).resolve().parent.parent
KEY = lock_key("test:leader")
# Short periods keep the tests quick; every process sharing a key uses the same lease.
FAST = {"retry_s": 0.1, "check_s": 0.3, "lease_s": 1.0}
WITHIN_S = 15.0  # a generous bound for "within seconds" on a busy machine

CHILD = """
import asyncio, sys
import structlog
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
from mendbot.scale.leader import PostgresLeader

async def main():
    leader = PostgresLeader(sys.argv[1], int(sys.argv[2]), application_name="child",
                            retry_s=0.1, check_s=0.3, lease_s=1.0)
    async with leader:
        async for change in leader.changes():
            print("gained" if change.leader else "lost", change.at, flush=True)

asyncio.run(main())
"""


def _leader(url: str, key: int = KEY, name: str | None = None, **timing: float) -> PostgresLeader:
    return PostgresLeader(url, key, application_name=name, **{**FAST, **timing})


@contextlib.asynccontextmanager
async def _running(*leaders: Leadership) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for leader in leaders:
            await stack.enter_async_context(leader)
        yield


async def _first_leader(*leaders: Leadership) -> Leadership:
    waits = {asyncio.ensure_future(leader.wait_until_leader()): leader for leader in leaders}
    done, pending = await asyncio.wait(waits, timeout=WITHIN_S, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    assert done, "nobody became leader"
    return waits[done.pop()]


def _terms(transitions: Iterable[Transition], until: float = float("inf")) -> list[tuple[float, float]]:
    """(gained, lost) times of each term; a term not ended yet lasts until `until`."""
    terms: list[tuple[float, float]] = []
    start: float | None = None
    for change in transitions:
        if change.leader:
            assert start is None, "gained twice without losing"
            start = change.at
        elif start is not None:
            terms.append((start, change.at))
            start = None
    if start is not None:
        terms.append((start, until))
    return terms


def _assert_never_two(*terms: list[tuple[float, float]]) -> None:
    ordered = sorted(term for process in terms for term in process)
    for (_, ended), (began, _) in itertools.pairwise(ordered):
        assert began >= ended, f"two leaders at once: {ordered}"


async def _admin(url: str, sql: LiteralString, *params: object) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(sql, params)


async def test_one_of_two_leaders_on_a_key_leads(postgres_url: str) -> None:
    """Two processes' leaderships on one key: exactly one leads, and the server names it."""
    a, b = _leader(postgres_url, name="a"), _leader(postgres_url, name="b")
    async with _running(a, b):
        first = await _first_leader(a, b)
        await asyncio.sleep(FAST["lease_s"] * 2)
        assert [a.is_leader, b.is_leader].count(True) == 1
        assert first.is_leader
        holder = await a.holder()
        assert holder is not None
        assert holder.application_name == first.name
        assert holder.pid == (a if first is a else b).backend_pid


async def test_follower_leads_when_the_leader_stops(postgres_url: str) -> None:
    """A leader that stops releases the lock; the follower leads soon after, never alongside it."""
    a, b = _leader(postgres_url, name="a"), _leader(postgres_url, name="b")
    async with a:
        await _first_leader(a)
        async with b:
            await asyncio.sleep(FAST["lease_s"])
            assert not b.is_leader
            await a.stop()
            await _first_leader(b)
            _assert_never_two(_terms(a.transitions), _terms(b.transitions))
    assert await a.holder() is None
    assert [t.reason for t in a.transitions if not t.leader] == ["shutdown"]


async def test_follower_leads_after_the_leader_process_is_killed(postgres_url: str, tmp_path: Path) -> None:
    """The leader's process killed with SIGKILL: a follower leads within seconds, and only after the kill."""
    with (tmp_path / "child.err").open("w") as errors:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            postgres_url,
            str(KEY),
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), timeout=WITHIN_S)
        assert line.split()[0] == b"gained", (tmp_path / "child.err").read_text()
        child_gained = float(line.split()[1])
        follower = _leader(postgres_url, name="follower")
        async with follower:
            await asyncio.sleep(FAST["lease_s"] * 2)
            assert not follower.is_leader
            assert (await follower.holder()) is not None
            child.kill()
            killed = time.monotonic()
            await _first_leader(follower)
            assert time.monotonic() - killed < 10.0
            _assert_never_two([(child_gained, killed)], _terms(follower.transitions))
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()


async def test_terminated_connection_loses_leadership_and_it_moves_safely(postgres_url: str) -> None:
    """The server ends the leader's connection: it announces the loss, someone leads again, never two."""
    # The follower retries far more often than the leader checks: without the grace it would lead
    # while the old leader still believes it does.
    a, b = _leader(postgres_url, name="a"), _leader(postgres_url, name="b", retry_s=0.02)
    async with _running(a, b):
        leader = await _first_leader(a, b)
        assert isinstance(leader, PostgresLeader)
        await _admin(postgres_url, "SELECT pg_terminate_backend(%s)", leader.backend_pid)
        await asyncio.wait_for(leader.wait_until_lost(), timeout=WITHIN_S)
        assert "connection check failed" in leader.transitions[-1].reason
        await _first_leader(a, b)
        now = time.monotonic()
        _assert_never_two(_terms(a.transitions, now), _terms(b.transitions, now))


async def test_unanswered_check_loses_leadership_when_the_lease_runs_out(postgres_url: str) -> None:
    """A leader whose server backend stops answering stops leading by its lease, then leads again."""
    a = _leader(postgres_url, name="a")
    async with a:
        await _first_leader(a)
        backend = a.backend_pid
        assert backend is not None
        os.kill(backend, signal.SIGSTOP)
        try:
            stopped = time.monotonic()
            await asyncio.wait_for(a.wait_until_lost(), timeout=WITHIN_S)
            assert not a.is_leader
            assert "lease ran out" in a.transitions[-1].reason
            # Loss comes by the lease, not by psycopg's own wait for a cancelled query (seconds).
            assert a.transitions[-1].at - stopped < FAST["lease_s"] + FAST["check_s"] + 1.0
        finally:
            os.kill(backend, signal.SIGCONT)
        await _first_leader(a)


async def test_unreachable_database_never_leads_and_keeps_trying(tmp_path: Path) -> None:
    """With no server to reach, the leadership keeps retrying and never leads."""
    a = _leader(f"postgresql://postgres@/postgres?host={tmp_path}", connect_timeout_s=2.0)
    async with a:
        await asyncio.sleep(1.0)
        assert a._task is not None
        assert not a._task.done()
        assert not a.is_leader
        assert a.transitions == ()
        with pytest.raises(psycopg.OperationalError):
            await a.holder()


async def test_a_stop_ends_even_when_the_cancellation_comes_back_as_a_connect_error(tmp_path: Path) -> None:
    """A connect that hands back its own error in place of the cancellation that came as it ended (what
    Python 3.11's `asyncio.wait_for` did; a loaded full run hung for 11 minutes in the test above): the
    leadership must still stop, not retry for ever."""
    a = _leader(f"postgresql://postgres@/postgres?host={tmp_path}", connect_timeout_s=2.0)
    connecting = asyncio.Event()
    swallow = [True]  # the cancellation comes back as a connect error (until the test gives up)

    async def connect(application_name: str | None = None) -> psycopg.AsyncConnection[object]:
        connecting.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if swallow[0]:
                raise psycopg.OperationalError("connection failed as the stop came") from None
            raise
        raise AssertionError("unreachable")

    a._connect = connect  # type: ignore[method-assign]
    await a.__aenter__()
    task = a._task
    assert task is not None
    await asyncio.wait_for(connecting.wait(), WITHIN_S)
    stopping = asyncio.ensure_future(a.stop())
    done, _ = await asyncio.wait([stopping], timeout=WITHIN_S)
    if not done:  # end it anyway, so that the test fails rather than hangs
        swallow[0] = False
        task.cancel()
        await asyncio.wait([stopping], timeout=WITHIN_S)
    assert done, "the leadership did not stop: its cancellation was taken for a connect error"
    assert not a.is_leader


async def test_a_different_key_is_independent(postgres_url: str) -> None:
    """Leaderships on two keys both lead."""
    a, b = _leader(postgres_url, KEY, name="a"), _leader(postgres_url, lock_key("test:other"), name="b")
    async with _running(a, b):
        await asyncio.wait_for(asyncio.gather(a.wait_until_leader(), b.wait_until_leader()), WITHIN_S)
        assert a.is_leader and b.is_leader


async def test_leader_work_runs_only_while_leading(postgres_url: str) -> None:
    """`while_leader` starts the work on gaining leadership and cancels it on losing it."""
    a = _leader(postgres_url, name="a")
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        assert a.is_leader
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async with a:
        runner = asyncio.ensure_future(a.while_leader(work))
        try:
            await asyncio.wait_for(started.wait(), timeout=WITHIN_S)
            await _admin(postgres_url, "SELECT pg_terminate_backend(%s)", a.backend_pid)
            await asyncio.wait_for(cancelled.wait(), timeout=WITHIN_S)
            assert not a.is_leader
            started.clear()
            await asyncio.wait_for(started.wait(), timeout=WITHIN_S)
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner


def test_lease_must_outlast_the_check() -> None:
    """A lease no longer than the check period is refused."""
    with pytest.raises(ValueError, match="lease_s"):
        PostgresLeader("postgresql:///x", KEY, check_s=2.0, lease_s=2.0)


async def test_sole_leader_always_leads() -> None:
    """The single SQLite process leads from start to stop and names itself as the holder."""
    sole = SoleLeader()
    async with sole:
        await asyncio.wait_for(sole.wait_until_leader(), timeout=1.0)
        assert sole.is_leader
        assert (await sole.holder()) is not None
    assert not sole.is_leader
    assert [(t.leader, t.reason) for t in sole.transitions] == [
        (True, "the only process"),
        (False, "shutdown"),
    ]
