"""Leadership: which one of mendbot's processes runs the work that must run exactly once.

Several bot processes may share one PostgreSQL database; the anomaly detector, incident
announcements, approvals' merges and deploy coordination must run in one of them only. That one
is the leader. `PostgresLeader` holds a session-level advisory lock on a dedicated connection of
its own; `SoleLeader` is the single process on the embedded SQLite store, always the leader. Both
offer one interface (`Leadership`): `is_leader`, `wait_until_leader()`/`wait_until_lost()`,
`changes()` (an async iterator of transitions), `while_leader(work)` (run `work` only while
leading) and `holder()` (who leads now). Run one as a daemon (`run()`) or with `async with`.

How two never act at once, even when a leader's connection dies under it:

- a leader confirms its connection every `check_s` (`SELECT 1`); a confirmation is good for
  `lease_s` from the moment it was sent. Without a fresh one, `is_leader` turns False when the
  lease runs out and the loss is announced then at the latest; a failed check announces it at
  once. Leader work stops before the process closes its connection or tries to lock again.
- a process that gets the lock waits `grace_s` (longer than the lease) before it calls itself
  leader: a previous leader whose connection the server already dropped (`pg_terminate_backend`,
  a network cut the server noticed first) has stopped by then, whether or not it knew why.

So every process sharing a key must use the same `lease_s` (the default does). Leadership moves in
about `retry_s + grace_s` when a leader dies or leaves; the server frees the lock of a killed
process at once on a unix socket or loopback, and over a network through the TCP keepalives set
on both ends. The lock needs a real session: not through a transaction-pooling proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, LiteralString

import msgspec

from mendbot.kernel.log import get_logger
from mendbot.kernel.waits import wait_for

if TYPE_CHECKING:
    # The driver loads when a leader first connects (PostgreSQL only): a SQLite start never loads it.
    import psycopg

    from mendbot.kernel.settings import Settings

__all__ = [
    "LEADER_KEY",
    "Holder",
    "Leadership",
    "PostgresLeader",
    "SoleLeader",
    "Transition",
    "leadership_for",
    "lock_key",
    "process_label",
    "shards_name",
    "shares_database",
]

_log = get_logger(__name__)

# Server-side keepalives (user-settable GUCs) so the server drops a dead client's session, and with
# it the lock, within seconds over TCP. Ignored on unix sockets, where a dead client is seen at once.
_SERVER_KEEPALIVES = "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3"

_HOLDER_SQL = """
SELECT l.pid, coalesce(a.application_name, '')
FROM pg_locks AS l LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = %s AND l.objid::bigint = %s
"""


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for `name`."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


LEADER_KEY = lock_key("mendbot:leader")


class Transition(msgspec.Struct, frozen=True):
    """Leadership gained (`leader` True) or lost, why, and when (`time.monotonic()`).

    On Linux the monotonic clock is one clock for every process of the host, so transitions of
    different processes compare.
    """

    leader: bool
    reason: str
    at: float


class Holder(msgspec.Struct, frozen=True):
    """Who leads: a server backend's pid (the process's own pid for `SoleLeader`) and its name."""

    pid: int
    application_name: str


class Leadership(ABC):
    """One process's side of the leadership: whether it leads now, and when that changes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._leading = asyncio.Event()
        self._following = asyncio.Event()
        self._following.set()
        self._history: deque[Transition] = deque(maxlen=100)
        self._subscribers: list[asyncio.Queue[Transition]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    @property
    def transitions(self) -> tuple[Transition, ...]:
        """The latest transitions (up to 100), oldest first."""
        return tuple(self._history)

    async def wait_until_leader(self) -> None:
        await self._leading.wait()

    async def wait_until_lost(self) -> None:
        """Return once this process does not lead (at once if it does not lead now)."""
        await self._following.wait()

    async def changes(self) -> AsyncIterator[Transition]:
        """Every transition from now on, in order."""
        queue: asyncio.Queue[Transition] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.remove(queue)

    async def while_leader(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work()` each time this process becomes leader; cancel it when leadership is lost.

        Work that returns by itself is not restarted before the next term; work that raises ends
        this loop with its exception (a daemon reports it).
        """
        while True:
            await self.wait_until_leader()
            task = asyncio.ensure_future(work())
            lost = asyncio.ensure_future(self.wait_until_lost())
            try:
                await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost.cancel()
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if not task.cancelled():
                task.result()
                await self.wait_until_lost()

    @abstractmethod
    async def run(self) -> None:
        """Take part until cancelled; on cancellation stop leading first, then let go."""

    @abstractmethod
    async def holder(self) -> Holder | None:
        """Who leads now, if anyone."""

    async def __aenter__(self) -> Leadership:
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"leadership:{self.name}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop taking part (started by `async with`): leader work is told first, then the lock goes."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _gain(self, reason: str, **details: object) -> None:
        self._leading.set()
        self._following.clear()
        _log.info("leadership gained", leadership=self.name, reason=reason, **details)
        self._announce(Transition(True, reason, time.monotonic()))

    def _lose(self, reason: str) -> None:
        if not self._leading.is_set():
            return
        self._leading.clear()
        self._following.set()
        # Stopping is how every process ends, not a problem: only a lost lock is worth a warning.
        log = _log.info if reason == "shutdown" else _log.warning
        log("leadership lost", leadership=self.name, reason=reason)
        self._announce(Transition(False, reason, time.monotonic()))

    def _announce(self, transition: Transition) -> None:
        self._history.append(transition)
        for queue in self._subscribers:
            queue.put_nowait(transition)


class SoleLeader(Leadership):
    """The only process (embedded SQLite store): it leads from `run()` until it stops."""

    def __init__(self, name: str = "sole") -> None:
        super().__init__(name)

    async def run(self) -> None:
        self._gain("the only process")
        try:
            await asyncio.Event().wait()
        finally:
            self._lose("shutdown")

    async def holder(self) -> Holder | None:
        return Holder(os.getpid(), self.name) if self.is_leader else None


class PostgresLeader(Leadership):
    """Leadership by `pg_try_advisory_lock(key)` held on a dedicated autocommit connection."""

    def __init__(
        self,
        url: str,
        key: int = LEADER_KEY,
        *,
        application_name: str | None = None,
        retry_s: float = 1.0,
        check_s: float = 1.0,
        lease_s: float = 3.0,
        grace_s: float | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        if not -(2**63) <= key < 2**63:
            raise ValueError(f"an advisory lock key is a signed 64-bit integer, not {key}")
        if min(retry_s, check_s, connect_timeout_s) <= 0 or lease_s <= check_s:
            raise ValueError("retry_s, check_s and connect_timeout_s must be > 0 and lease_s > check_s")
        name = application_name or f"mendbot-leader {socket.gethostname()}:{os.getpid()}"
        super().__init__(name[:63])  # the server keeps 63 bytes of application_name
        self.key = key
        self.retry_s = retry_s
        self.check_s = check_s
        self.lease_s = lease_s
        # Past the lease with room for a late timer: the old leader has announced its loss by then.
        self.grace_s = lease_s + 0.5 if grace_s is None else grace_s
        self.connect_timeout_s = connect_timeout_s
        self._conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self._confirmed = float("-inf")
        self._holding = False
        self._backend_pid: int | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._abandoned: set[asyncio.Task[Any]] = set()

    @property
    def is_leader(self) -> bool:
        # A stalled loop cannot announce the loss in time; the lease still ends by the clock.
        return self._leading.is_set() and time.monotonic() < self._confirmed + self.lease_s

    @property
    def backend_pid(self) -> int | None:
        """The server backend pid of this process's lock connection, while it has one."""
        return self._backend_pid

    async def run(self) -> None:
        import psycopg

        while True:
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                conn = await self._connect()
                await self._acquire(conn)
                self._gain(f"holds advisory lock {self.key}", backend_pid=self._backend_pid)
                self._lose(await self._hold(conn))
            except asyncio.CancelledError:
                self._lose("shutdown")
                if conn is not None:
                    await self._release(conn)
                raise
            except (psycopg.Error, OSError, TimeoutError) as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Stopped meanwhile, and the cancellation came back as the connect's own error (what
                    # 3.11's `asyncio.wait_for` did when it came as the connect ended; a driver may too):
                    # retrying would make `stop()` wait for ever.
                    self._lose("shutdown")
                    if conn is not None:
                        await self._close(conn)
                    raise asyncio.CancelledError from exc
                _log.warning(
                    "leadership attempt failed",
                    leadership=self.name,
                    error=_summary(exc),
                    retry_s=self.retry_s,
                )
            except BaseException as exc:
                # A bug of ours: stop leading before the error ends the daemon, and free the lock.
                self._lose(f"unexpected error: {_summary(exc)}")
                if conn is not None:
                    await self._close(conn)
                raise
            if conn is not None:
                await self._close(conn)
            await asyncio.sleep(self.retry_s)

    async def holder(self) -> Holder | None:
        unsigned = self.key & 0xFFFF_FFFF_FFFF_FFFF
        conn = await self._connect(f"{self.name} (holder)")
        try:
            row = await self._query(conn, _HOLDER_SQL, (unsigned >> 32, unsigned & 0xFFFF_FFFF), 5.0)
        finally:
            await self._close(conn)
        return Holder(int(row[0]), str(row[1])) if row else None

    async def _connect(self, application_name: str | None = None) -> psycopg.AsyncConnection[Any]:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        options = conninfo_to_dict(self._conninfo).get("options")
        conn = await wait_for(
            psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                prepare_threshold=None,
                application_name=application_name or self.name,
                connect_timeout=max(2, round(self.connect_timeout_s)),
                options=f"{options} {_SERVER_KEEPALIVES}" if options else _SERVER_KEEPALIVES,
                # Client side over TCP: notice a silent server, and give up on unacknowledged
                # sends, within the lease rather than the kernel's minutes.
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,
                tcp_user_timeout=round(self.lease_s * 1000),
            ),
            timeout=self.connect_timeout_s + 1,
        )
        return conn

    async def _acquire(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Return holding the lock, the grace waited out and the connection confirmed after it."""
        self._conn, self._backend_pid = conn, conn.info.backend_pid
        # A follower asks again every retry_s: pg_advisory_lock() would wait without a way to tell
        # a live wait from a dead connection.
        while True:
            (locked,) = await self._query(conn, "SELECT pg_try_advisory_lock(%s)", (self.key,), self.lease_s)
            if locked:
                break
            await asyncio.sleep(self.retry_s)
        self._holding = True
        _log.info(
            "leadership lock acquired, waiting out a previous lease",
            leadership=self.name,
            grace_s=self.grace_s,
        )
        await asyncio.sleep(self.grace_s)
        sent = time.monotonic()
        await self._query(conn, "SELECT 1", (), self.lease_s)
        self._confirmed = sent

    async def _hold(self, conn: psycopg.AsyncConnection[Any]) -> str:
        """Confirm the connection every `check_s` until that fails; return why it did."""
        import psycopg

        while True:
            await asyncio.sleep(self.check_s)
            sent = time.monotonic()
            try:
                await self._query(conn, "SELECT 1", (), self._confirmed + self.lease_s - sent)
            except TimeoutError:
                return f"no answer to the connection check before the {self.lease_s:g} s lease ran out"
            except (psycopg.Error, OSError) as exc:
                return f"connection check failed: {_summary(exc)}"
            self._confirmed = sent

    async def _query(
        self, conn: psycopg.AsyncConnection[Any], sql: LiteralString, params: tuple[Any, ...], timeout: float
    ) -> tuple[Any, ...]:
        """One row of `sql`, or TimeoutError after `timeout` seconds.

        The query runs in a task of its own: psycopg answers a cancelled query by cancelling it on
        the server and waiting up to seconds for that, and a lease cannot wait for it.
        """
        task = asyncio.ensure_future(_fetch_one(conn, sql, params))
        try:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, timeout))
        except asyncio.CancelledError:
            self._abandon(task)
            raise
        if not done:
            self._abandon(task)
            raise TimeoutError(f"no answer within {timeout:.1f} s")
        return task.result()

    def _abandon(self, task: asyncio.Task[Any]) -> None:
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._abandoned.discard(task)
        # Retrieve its end (an error on a closed connection, most likely) so nothing is reported.
        if not task.cancelled():
            task.exception()

    async def _release(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Unlock (so a follower need not wait for the server to notice the close), then close."""
        import psycopg

        if self._holding and not conn.closed:
            try:
                await self._query(conn, "SELECT pg_advisory_unlock(%s)", (self.key,), 2.0)
                _log.info("leadership lock released", leadership=self.name)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                _log.warning(
                    "leadership lock not released, closing", leadership=self.name, error=_summary(exc)
                )
        await self._close(conn)

    async def _close(self, conn: psycopg.AsyncConnection[Any]) -> None:
        import psycopg

        if conn is self._conn:
            self._conn = None
            self._holding = False
            self._backend_pid = None
        with contextlib.suppress(psycopg.Error, OSError, TimeoutError):
            await wait_for(conn.close(), timeout=2.0)


async def _fetch_one(
    conn: psycopg.AsyncConnection[Any], sql: LiteralString, params: tuple[Any, ...]
) -> tuple[Any, ...]:
    cursor = await conn.execute(sql, params)
    row = await cursor.fetchone()
    return tuple(row) if row is not None else ()


def _summary(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split()) or type(exc).__name__


def shards_name(shards: Sequence[int] | None) -> str:
    """A bot process's name among the others: the shards it runs (stable across its restarts); one
    name for the canary setting and the process itself, so the two always compare equal."""
    return "shards " + ",".join(map(str, shards)) if shards else "all shards"


def shares_database(settings: Settings) -> bool:
    """Whether other bot processes share this one's database: it runs some of the shards (which
    settings allow only on PostgreSQL). A process running every shard is the only bot process,
    on SQLite or PostgreSQL alike, and leads alone."""
    return settings.database.url is not None and settings.discord.runs_shard_subset


def process_label(settings: Settings) -> str:
    """A bot process among the others: the shards it runs (stable across its restarts)."""
    return shards_name(settings.discord.shard_ids)


def leadership_for(settings: Settings) -> Leadership:
    """The only process leads; processes sharing PostgreSQL take an advisory lock, named for their shards."""
    url = settings.database.url
    if url is None or not shares_database(settings):
        return SoleLeader()
    which = process_label(settings)
    return PostgresLeader(url, lock_key("mendbot"), application_name=f"mendbot {which} pid {os.getpid()}")
