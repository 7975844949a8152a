"""The way from `record()` into the action journal: what waits for it, the thread that appends, and
what is shed when even the journal cannot keep up.

`keep()` runs on the event loop for every record the recorder makes: it numbers the record (its
sequence number in the journal: one more than the last, never read off a clock), encodes its
journal line and its database row, and puts them with the records waiting. They are handed to the
journal thread `_HAND_OVER_S` after the first of them was kept (a group commit: a hand-over wakes the
thread, which then takes the interpreter's lock from the handlers, and one per command was most of what
recording cost a busy bot) — or at once when `_HAND_OVER` wait, so a handler recording in a tight loop
never outruns it, and when the recorder flushes or stops — and the thread appends them in one write and
then keeps their rows in memory for the store (bot/observe/filler.py): at most `queue_size` of them,
the oldest let go past that (the journal has them; the store reads them back). The thread keeps its own
counts, so a loop that never yields does not hold the journal up.

A batch the journal refuses (a full or failing disk) stays in memory and is handed over again after a
backoff, the batches behind it with it, so the journal's order never breaks; the fault is a storage
fault at once. Meanwhile records keep waiting — memory stays bounded: past `queue_size` waiting, a
success is shed (counted by kind), while failures have a reserve of their own as large. A journal that
is slow but not failing (one append held up by a busy disk: over a second on a loaded machine, while a
busy bot made 20,000 records a second) catches up by itself: until an append fails, `_SLOW` times
`queue_size` may wait (~730 bytes each) before a success is shed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import msgspec

from mendbot.db.action_writes import Journaled, row
from mendbot.db.retry import RetryPolicy, StorageHealth, storage_fault
from mendbot.kernel.log import get_logger
from mendbot.observe.journal import Journal, journal_line

__all__ = ["JournalIntake", "report_fault"]

_log = get_logger(__name__)
_HAND_OVER = 1000  # records waiting for the journal that are handed over at once, not after `_HAND_OVER_S`
_HAND_OVER_S = 0.05  # the longest a record waits in memory before its journal append begins
_KIND, _OK = 1, 3  # where `row()` puts them
_MAX_BACKOFF_STEPS = 6  # a failing journal or database is tried again at most every backoff × 2^5
_SLOW = 5  # records that may wait for a journal that is slow, not failing: this many times `queue_size`


class _Refused(Exception):
    """A batch behind one the journal failed to take: not tried, so the journal keeps their order."""


class _Batch(msgspec.Struct):
    """Records kept for the journal: their lines, their (seq, row) for the store, how many are failures."""

    lines: list[bytes] = msgspec.field(default_factory=list)
    rows: list[Journaled] = msgspec.field(default_factory=list)
    failures: int = 0

    @classmethod
    def joined(cls, batches: list[_Batch]) -> _Batch:
        return cls(
            [line for batch in batches for line in batch.lines],
            [one for batch in batches for one in batch.rows],
            sum(batch.failures for batch in batches),
        )


def report_fault(
    storage: StorageHealth | None, error: BaseException, attempt: int, what: str, *, after: int
) -> bool:
    """A storage fault met by the journal or the store: a retry, and after `after` of them a fault
    StorageHealth announces (once: it lasts until a write works again). Whether this one was announced."""
    fault = storage_fault(error)
    if attempt in (1, after):
        _log.warning("action records wait: storage is failing", what=what, fault=fault, error=str(error))
    if storage is None or fault is None:
        return False
    if attempt == after:
        storage.failed(fault, str(error))
        return True
    if attempt < after:
        storage.note_retry()
    return False


def backoff(retry: RetryPolicy, attempt: int) -> float:
    """The pause before the next try of a failing journal or database (capped)."""
    return retry.delay(min(attempt, _MAX_BACKOFF_STEPS))


class JournalIntake:
    """Records kept on the loop, appended by the journal's thread, held in memory for the store."""

    def __init__(
        self,
        journal: Journal,
        *,
        queue_size: int,
        retry: RetryPolicy,
        storage: StorageHealth | None,
        changed: Callable[[], None],
    ) -> None:
        self.journal = journal
        self._queue_size = queue_size
        self._retry = retry
        self._storage = storage
        self._changed = changed  # the store and flushes are told when a batch is in (or refused)
        self.seq = journal.last_seq  # the last number given
        self.first_seq = journal.last_seq + 1  # this process's first number
        self.journaled_seq = journal.last_seq  # the last number in the journal (the thread's)
        self._pending = _Batch()  # kept, not yet handed over
        # Successes and failures kept (by the loop), in the journal (by its thread), lost at a stop: what
        # waits for the journal is the difference (each kind at most `queue_size` × `_SLOW`). One writer each.
        self._kept = [0, 0]
        self._appended = [0, 0]
        self._lost = [0, 0]
        self._handed = 0  # batches handed to the thread, not back yet
        self._refused: list[_Batch] = []  # batches the journal refused: again after a backoff
        self._blocked = False  # the thread's: refuse what follows a failed batch
        self._attempt = 0  # failed appends in a row
        self._announced = False  # this fault was announced by the journal (its append ends it)
        self._soon: asyncio.TimerHandle | None = None  # the hand-over scheduled on the loop
        self.hand_over_s = _HAND_OVER_S  # 0: at the loop's next turn (`Recorder.without_windows`)
        # Journaled, not yet stored, while their copies are kept (at most `queue_size`): filled and cut
        # by the journal thread, taken by the store's loop, both under the lock (so a record let go is
        # always one the store will read back from the journal).
        self._unstored: deque[Journaled] = deque()
        self._memory = threading.Lock()
        self.evicted_upto = 0  # records journaled up to here may be in the journal only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: ThreadPoolExecutor | None = None
        self.failing = False
        self.stopping = False
        self.tries = 0  # failed appends so far
        self.journaled = 0
        self.evicted = 0  # copies let go from memory (the records are in the journal)
        self.shed: Counter[str] = Counter()  # by kind: the journal could not keep up
        self.shed_failures = 0
        self.unencodable = 0
        self.journal_errors = 0

    def waiting(self, failures: int) -> int:
        """Successes (0) or failures (1) kept that are not in the journal yet."""
        return self._kept[failures] - self._appended[failures] - self._lost[failures]

    @property
    def in_memory(self) -> int:
        """Journaled records whose rows are kept for the store."""
        return len(self._unstored)

    # -- on the loop ---------------------------------------------------------------------------------------

    def keep(self, fields: dict[str, Any]) -> None:
        """Number the record and encode its journal line and row; it waits for the journal thread.
        Past `queue_size` waiting (`_SLOW` times that while no append has failed), a success is shed
        (counted by kind); a failure has a reserve as large."""
        failure = 0 if fields["ok"] else 1
        limit = self._queue_size if self.failing else self._queue_size * _SLOW
        if self._kept[failure] - self._appended[failure] - self._lost[failure] >= limit:
            self.shed[fields["kind"]] += 1
            self.shed_failures += failure
            return
        seq = self.seq + 1
        try:
            line = journal_line(seq, fields)
            stored = row(fields)
        except Exception:  # a value no JSON encoder takes: the record cannot be kept anywhere
            _log.exception("an action record cannot be encoded", kind=fields["kind"])
            self.unencodable += 1
            return
        self._kept[failure] += 1
        self.seq = seq
        pending = self._pending
        pending.lines.append(line)
        pending.rows.append((seq, stored))
        pending.failures += failure
        if len(pending.rows) >= _HAND_OVER:
            self.hand_over()
        elif self._soon is None and self._loop is not None:
            self._soon = self._loop.call_later(self.hand_over_s, self.hand_over)

    def start(self, loop: asyncio.AbstractEventLoop, thread: ThreadPoolExecutor) -> None:
        """From now on records are handed to `thread` (what was kept before goes at once)."""
        self._loop, self._thread = loop, thread
        self.hand_over()

    def hand_over(self, *, retry: bool = False) -> None:
        """Give the waiting records to the journal thread (never waits)."""
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        if not self._pending.rows or self._loop is None or self._thread is None:
            return
        if self.failing and not retry:
            return
        batch, self._pending = self._pending, _Batch()
        self._handed += 1
        future = self._thread.submit(self._append, batch)
        loop = self._loop
        future.add_done_callback(lambda done: _call_soon(loop, self._appended_back, done))

    def _appended_back(self, done: Future[None]) -> None:
        """On the loop: a batch is in the journal (the database's now), or was refused (tried again later)."""
        self._handed -= 1
        error = done.exception()
        if error is None:
            self._worked()
        elif not isinstance(error, _Refused):
            self._failed(error)
        if error is not None and not self._handed:
            if self.stopping and self._attempt >= self._retry.attempts:
                self._lost_at_stop(error)
            elif self._loop is not None and not self._loop.is_closed():
                self._loop.call_later(backoff(self._retry, self._attempt), self.retry)
        self._changed()

    def _worked(self) -> None:
        self._attempt = 0
        self.failing = False
        if self._announced and self._storage is not None:
            # Only a fault the journal announced ends with its append: a locked database stays failing.
            self._announced = False
            self._storage.succeeded("the action journal")

    def _failed(self, error: BaseException) -> None:
        self._attempt += 1
        self.tries += 1
        self.journal_errors += 1
        self.failing = True
        if not isinstance(error, OSError):
            _log.error("appending to the action journal failed", error=repr(error))
        # The journal is a local file: a full or failing disk under it is said at once.
        self._announced |= report_fault(self._storage, error, self._attempt, "the action journal", after=1)

    def retry(self) -> None:
        """The refused batches, then what came meanwhile, handed over again (with nothing in flight:
        the journal thread is idle)."""
        if self._handed or not self._refused:
            return
        self._pending = _Batch.joined([*self._refused, self._pending])
        self._refused.clear()
        self._blocked = False
        self.hand_over(retry=True)

    def settled(self) -> bool:
        """Whether every record kept so far is in the journal (or its journal gave up at stop)."""
        return not (self._pending.rows or self._handed or self._refused)

    def _lost_at_stop(self, error: BaseException) -> None:
        """Stopping with a journal that still fails: what waits in memory is gone with the process."""
        lost = _Batch.joined([*self._refused, self._pending]).rows
        self._refused.clear()
        self._pending = _Batch()
        for _, stored in lost:
            self.shed[str(stored[_KIND])] += 1
            failure = 0 if stored[_OK] else 1
            self._lost[failure] += 1
            self.shed_failures += failure
        _log.error("action records lost at stop: the journal fails", count=len(lost), error=str(error))

    def take(self, stored: int, limit: int) -> list[Journaled] | None:
        """Up to `limit` journaled rows past `stored` from memory, in order; None when records were let
        go before them (the store reads the journal first)."""
        with self._memory:
            if self.evicted_upto > stored:
                return None
            unstored = self._unstored
            while unstored and unstored[0][0] <= stored:
                unstored.popleft()
            return [unstored.popleft() for _ in range(min(limit, len(unstored)))]

    # -- on the journal thread ---------------------------------------------------------------------------

    def _append(self, batch: _Batch) -> None:
        """The batch into the journal, then its rows into memory for the store. After a failure the
        batches queued behind it are refused too; a refused batch is kept for the loop to hand over again."""
        if self._blocked:
            self._refused.append(batch)
            raise _Refused
        try:
            self.journal.append(batch.lines)
        except OSError:
            self._blocked = True
            self._refused.append(batch)
            raise
        rows = batch.rows
        with self._memory:
            unstored = self._unstored
            unstored.extend(rows)
            while len(unstored) > self._queue_size:
                self.evicted_upto = unstored.popleft()[0]
                self.evicted += 1
            self.journaled_seq = rows[-1][0]
        self._appended[0] += len(rows) - batch.failures
        self._appended[1] += batch.failures
        self.journaled += len(rows)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """From another thread: `callback(*args)` on the loop, unless the loop is gone (the process ends)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)
