"""Writes that ride out a locked or full database: bounded retries with backoff, then a clear answer.

A storage fault — SQLite busy/locked past `busy_timeout`, a full disk (SQLITE_FULL, ENOSPC), a
read-only file system or an I/O error; on PostgreSQL a lock past `lock_timeout`, a deadlock, a
full disk, a read-only server or a lost connection (by SQLSTATE) — is the environment's problem,
not a bug and not the user's. `retrying()` runs one atomic write (a single statement, or a
function that does its own transaction and rolls back on failure) up to `attempts` times with
doubling backoff; if storage still fails, it raises `StorageUnavailable`, a `UserError` whose
message is the whole answer ("I couldn't save that — try again in a moment."), so nothing is
half-saved and the one error path replies instead of reporting a crash.

`StorageHealth` is what the rest of the bot sees: a write given up marks storage as failing (the
incident service announces that once in #dev), the next write that succeeds marks it writable
again (the announcement is cleared). A full disk is the exception: SQLite goes on writing into WAL
space its files already hold, so some writes succeed on a disk that is still full; that fault ends
only with a write that succeeds once the file system has room again (`has_room`). While storage is
failing, `probe()` is a tiny real write that checks whether it is writable again even when nobody
writes.

A database file deleted, replaced or moved away under the bot (`lost()`, seen by `check_identity()`)
is a fault too, though every write still succeeds; it ends only when the file at the path is the
bot's again (after a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal, TypeVar

import msgspec

from mendbot.db import runs
from mendbot.db.core import Connection
from mendbot.kernel.errors import UserError
from mendbot.kernel.log import get_logger

__all__ = [
    "IDENTITY_FAULTS",
    "SAVE_FAILED",
    "Fault",
    "RetryPolicy",
    "StorageHealth",
    "StorageState",
    "StorageUnavailable",
    "Writes",
    "has_room",
    "probe",
    "retrying",
    "storage_fault",
]

_log = get_logger(__name__)
T = TypeVar("T")
# Free space below which a disk that filled up counts as still full, whatever write got through.
ROOM_BYTES = 1 << 20
Fault = Literal["locked", "full", "readonly", "io", "deleted", "replaced", "moved"]
# The database file itself is gone from its path (bot/db/identity.py): writes still "succeed", into a
# file that is lost at the next stop, so only the file's identity being right again ends such a fault.
IDENTITY_FAULTS: frozenset[Fault] = frozenset({"deleted", "replaced", "moved"})
SAVE_FAILED = "I couldn't save that — try again in a moment."

# Primary SQLite result codes (the low byte of an extended code).
_SQLITE_FAULTS: dict[int, Fault] = {5: "locked", 6: "locked", 8: "readonly", 10: "io", 13: "full"}
_MESSAGES: tuple[tuple[str, Fault], ...] = (
    ("database is locked", "locked"),
    ("database table is locked", "locked"),
    ("database or disk is full", "full"),
    ("readonly database", "readonly"),
    ("disk i/o error", "io"),
)
_ERRNOS: dict[int, Fault] = {
    errno.ENOSPC: "full",
    errno.EDQUOT: "full",
    errno.EROFS: "readonly",
    errno.EIO: "io",
}


# PostgreSQL's SQLSTATEs (classes by their first two characters) that are the storage's trouble.
_POSTGRESQL_FAULTS: dict[str, Fault] = {
    "55P03": "locked",  # lock_not_available (lock_timeout)
    "40P01": "locked",  # deadlock_detected
    "40001": "locked",  # serialization_failure
    "53100": "full",  # disk_full
    "25006": "readonly",  # read_only_sql_transaction
    "58030": "io",  # io_error
    "57P01": "io",  # admin_shutdown
    "57P02": "io",  # crash_shutdown
    "57P03": "io",  # cannot_connect_now
}
_POSTGRESQL_CLASSES: dict[str, Fault] = {"08": "io"}  # connection exceptions


def storage_fault(exc: BaseException) -> Fault | None:
    """What kind of storage fault `exc` is, or None when it is something else (a bug, say)."""
    if type(exc).__module__.partition(".")[0] == "psycopg":
        return _postgresql_fault(exc)
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and (code & 0xFF) in _SQLITE_FAULTS:
            return _SQLITE_FAULTS[code & 0xFF]
        text = str(exc).lower()
        return next((fault for phrase, fault in _MESSAGES if phrase in text), None)
    if isinstance(exc, OSError) and exc.errno is not None:
        return _ERRNOS.get(exc.errno)
    return None


def _postgresql_fault(exc: BaseException) -> Fault | None:
    import psycopg  # loaded already: the error came from it

    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str):
        return _POSTGRESQL_FAULTS.get(state) or _POSTGRESQL_CLASSES.get(state[:2])
    # No SQLSTATE: the client's side failed (the connection was lost, or could not be made).
    return "io" if isinstance(exc, psycopg.OperationalError) else None


class StorageUnavailable(UserError):
    """A write was given up after its retries: the user is told it was not saved."""

    def __init__(self, fault: Fault, detail: str) -> None:
        super().__init__(SAVE_FAILED)
        self.fault = fault
        self.detail = detail


class RetryPolicy(msgspec.Struct, frozen=True):
    attempts: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 10.0

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt` (1-based)."""
        return min(self.max_backoff_s, self.backoff_s * float(2 ** (attempt - 1)))


class StorageState(msgspec.Struct, frozen=True):
    """Storage is failing (`fault` set, since when, the last error) or writable (`fault` None)."""

    fault: Fault | None
    detail: str = ""
    since: float = 0.0


Listener = Callable[[StorageState], None]


def has_room(directory: Path, need: int = ROOM_BYTES) -> Callable[[], bool]:
    """Whether the file system holding `directory` has `need` bytes free (as the bot's user)."""

    def check() -> bool:
        try:
            return shutil.disk_usage(directory).free >= need
        except OSError:
            return True  # cannot tell: a write that went through is the evidence there is

    return check


class StorageHealth:
    """Whether writes are going through; tells listeners when a fault starts and when it ends.

    `room` says whether the database's file system has space free (None: it cannot be seen from
    here, as with PostgreSQL's server); while it says no, a full-disk fault outlasts a lucky write.
    """

    def __init__(
        self,
        room: Callable[[], bool] | None = None,
        identity: Callable[[], tuple[Fault, str] | None] | None = None,
    ) -> None:
        self.state = StorageState(None)
        self._room = room
        # What became of the database file (None: it is in place), where that can be seen.
        self._identity = identity
        self.retried = 0  # failed attempts that were tried again
        self.given_up = 0  # writes (user writes and action batches) abandoned after their retries
        self._listeners: list[Listener] = []
        self._failing = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._retry_seen = asyncio.Event()

    @property
    def failing(self) -> bool:
        return self.state.fault is not None

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def failed(self, fault: Fault, detail: str) -> None:
        """A write was given up. The first one starts a fault; later ones only count."""
        self.given_up += 1
        if self.state.fault is not None:
            return
        self.state = StorageState(fault, detail[:300], time.time())
        self._failing.set()
        self._writable.clear()
        _log.error("storage is failing", fault=fault, detail=detail)
        self._notify()

    def lost(self, fault: Fault, detail: str) -> None:
        """The database file is gone from its path (deleted, replaced, moved): a fault of its own,
        announced even over a lock or a full disk, since what is saved from now on is lost."""
        if self.state.fault == fault:
            return
        self.state = StorageState(fault, detail[:300], time.time())
        self._failing.set()
        self._writable.clear()
        _log.error("the database file is gone", fault=fault, detail=detail)
        self._notify()

    def check_identity(self) -> bool:
        """Whether the database file is still the one at its path; a fault starts when it is not."""
        problem = self._identity() if self._identity is not None else None
        if problem is None:
            return True
        self.lost(*problem)
        return False

    async def watch_identity(self, interval_s: float) -> None:
        """Runs as a daemon: look at the database file's identity every `interval_s` (the storage
        probe's schedule), so a deletion is noticed when nothing is written too."""
        if self._identity is None:
            return
        while True:
            await asyncio.sleep(interval_s)
            self.check_identity()

    async def wait_failing(self) -> None:
        """Return once storage is failing (at once if it is)."""
        await self._failing.wait()

    def assume_failing(self, fault: Fault, detail: str) -> None:
        """Start as failing (a storage incident is still open from before a restart), without
        announcing it again: the next write that works — the probe's, at the latest — clears it."""
        if self.state.fault is None:
            self.state = StorageState(fault, detail, time.time())
            self._failing.set()
            self._writable.clear()

    def succeeded(self, what: str = "a write") -> None:
        """A write went through: a fault, if there was one, is over — a full disk only once it has
        room again (on a full disk SQLite still fits some writes into space its files hold)."""
        if self.state.fault is None:
            return
        if self.state.fault == "full" and self._room is not None and not self._room():
            return
        if (
            self.state.fault in IDENTITY_FAULTS
            and self._identity is not None
            and self._identity() is not None
        ):
            return  # a write into the deleted file went through: that is the fault, not its end
        _log.warning("storage is writable again", was=self.state.fault, write=what)
        self.state = StorageState(None)
        self._failing.clear()
        self._writable.set()
        self._notify()

    def note_retry(self) -> None:
        """A write failed on storage and will be tried again."""
        self.retried += 1
        self._retry_seen.set()

    async def wait_for_retry(self) -> None:
        """Return once some write has had to be retried (at once if one already was)."""
        await self._retry_seen.wait()

    async def wait_writable(self) -> None:
        """Return once storage is not failing (at once if it is not)."""
        await self._writable.wait()

    async def probe_while_failing(self, write: Callable[[], Awaitable[None]], interval_s: float) -> None:
        """Runs as a daemon: while storage is failing, try `write` every `interval_s` so that a
        quiet bot notices recovery too (the write's success clears the fault)."""
        once = RetryPolicy(attempts=1)
        while True:
            await self._failing.wait()
            await asyncio.sleep(interval_s)
            if self.failing:
                with contextlib.suppress(StorageUnavailable):
                    await retrying(write, what="storage probe", policy=once, health=self)

    def _notify(self) -> None:
        for listener in self._listeners:
            try:
                listener(self.state)
            except Exception:
                _log.exception("storage listener failed", listener=repr(listener))


async def retrying(
    write: Callable[[], Awaitable[T]],
    *,
    what: str,
    policy: RetryPolicy,
    health: StorageHealth | None = None,
) -> T:
    """Run one atomic write, retrying storage faults; `StorageUnavailable` when it never went through.

    Anything that is not a storage fault propagates at once (a bug stays a bug).
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            result = await write()
        except Exception as exc:
            fault = storage_fault(exc)
            if fault is None:
                raise
            if attempt >= policy.attempts:
                _log.error("write given up", what=what, fault=fault, attempts=attempt, error=str(exc))
                if health is not None:
                    health.failed(fault, str(exc))
                raise StorageUnavailable(fault, str(exc)) from exc
            _log.warning("write failed, retrying", what=what, fault=fault, attempt=attempt, error=str(exc))
            if health is not None:
                health.note_retry()
            await asyncio.sleep(policy.delay(attempt))
            continue
        if health is not None:
            health.succeeded(what)
        return result


class Writes(msgspec.Struct, frozen=True):
    """`retrying()` bound to the process's policy and StorageHealth: what services save through."""

    policy: RetryPolicy = RetryPolicy()
    health: StorageHealth | None = None

    async def __call__(self, write: Callable[[], Awaitable[T]], *, what: str) -> T:
        return await retrying(write, what=what, policy=self.policy, health=self.health)


async def probe(db: Connection, now: float) -> None:
    """A tiny real write (one row in settings_kv): raises while storage is not writable."""
    await runs.set_setting(db, "storage_probe", now)
