"""ActionRecorder: the one way an action becomes a record, and where it goes: the journal, then the database.

`record()` runs on the event loop and never waits on disk: it redacts, fingerprints, hands the record
to in-process subscribers (incidents, the anomaly detector, metrics), numbers it and encodes its
journal line (bot/observe/journal.py). A thread of its own appends the waiting lines to the journal,
`data/logs/actions.ndjson`, in one write per batch; only then is a record the database's. A second
thread, the store's, inserts journaled records in batches, each with the journal position it reaches,
in one transaction (bot/db/action_writes.py): the database's own connection, so neither the event loop
nor the bot's queries wait for it.

**Nothing is lost to the database.** A slow, locked, full, unreachable or pruned database delays
records; it never drops one. While the store keeps up it takes records from memory; past `queue_size`
journaled records it lets their copies in memory go and reads them back from the journal when it gets
there, and after a restart it reads on from where the database's position stands — so it catches up
after a burst, a lock, a full disk or a restart, and a database deleted or replaced under the bot is
filled again from the journal at the next start (`on_recovery` says what came back; the bot announces
it in #dev). A record the database refuses for what it holds is passed over, counted
(`actions_unstorable`) and logged; it stays in the journal.

**Memory stays bounded.** Records wait in memory only until the journal has them. When even the
journal cannot keep up (its disk is full or failing), successful records past `queue_size` are shed,
counted by kind (`shed`), and every failure is kept — in a reserve of its own as large — so the
detector's evidence survives; journal faults are storage faults like the database's (announced,
retried with backoff, cleared by the next append that works).

Storage faults are reported to `StorageHealth`, which announces them as a storage incident and clears
it when a write succeeds. After each batch the database file's identity is checked too (deleted,
replaced, moved away: SQLite goes on writing into the lost file without an error).

Retention deletes in bounded steps on the store's thread, between its batches, and keeps the disk
bounded while it does: every step gives its emptied pages back and truncates the write-ahead log,
and the next step is sized so that the log it writes stays under half the margin
(`storage.prune_margin`) above what the files held when the prune began (bot/db/action_writes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from bot.db import action_writes, provenance
from bot.db.action_writes import ActionStore, Journaled, PruneStep, row
from bot.db.migrate import upgrade_postgresql, upgrade_sqlite
from bot.db.records import ActionRecord
from bot.db.retry import RetryPolicy, StorageHealth, storage_fault
from bot.kernel.log import get_logger
from bot.observe.fingerprint import fingerprint, relative_path, root_prefixes
from bot.observe.journal import Journal, JournalReader, journal_line
from bot.trust.redact import Redactor

__all__ = ["ActionRecorder", "PendingAction", "PruneReport", "Recovery", "Subscriber", "recovery_notice"]

_log = get_logger(__name__)
_T = TypeVar("_T")
_BATCH = 2048  # records per database transaction (two statements of 1,024 rows)
_GATHER_S = 0.05  # how long the store waits for a batch to fill before it writes a smaller one
# Retention deletes this many rows per step at first, then sizes its steps so each takes about
# `_PRUNE_BATCH_S` and writes at most half the disk margin of log.
_PRUNE_BATCH = 1000
_PRUNE_BATCH_S = 0.02
_PRUNE_BATCH_RANGE = (100, 20_000)
_SWITCH_INTERVAL_S = 0.0005
# The write-ahead log is truncated between batches once it holds this much (during a prune: half the margin).
_WAL_LIMIT = 4 << 20
_SIZES_EVERY_S = 1.0  # the store's and the journal's sizes (/health, /metrics) are read this often at most
_MAX_BACKOFF_STEPS = 6  # a failing journal or database is tried again at most every backoff × 2^5
_TS, _KIND, _OK = 0, 1, 3  # where `row()` puts them
_HAND_OVER = 1000  # records waiting for the journal that are handed over at once, not at the loop's next turn

Subscriber = Callable[[ActionRecord], None]


class _Refused(Exception):
    """A batch behind one the journal failed to take: not tried, so the journal keeps their order."""


class _Stopping(Exception):
    """The recorder is stopping while storage fails: the store gives up waiting (the journal keeps all)."""


@dataclass
class PendingAction:
    """What a `with recorder.action(...)` block can add before it is recorded."""

    cost_usd: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    ok: bool | None = None  # set False to record a handled failure without raising


@dataclass(frozen=True, slots=True)
class Recovery:
    """Records the database did not have, read from the journal when the store started: after a crash,
    a stop while the database was failing, or into a database that is new, deleted or replaced."""

    count: int
    first_ts: float
    last_ts: float
    new_database: bool  # it held nothing of this journal


@dataclass(slots=True)
class _Batch:
    """Records kept for the journal: their lines, their (seq, row) for the store, how many are failures."""

    lines: list[bytes] = field(default_factory=list)
    rows: list[Journaled] = field(default_factory=list)
    failures: int = 0

    @classmethod
    def joined(cls, batches: list[_Batch]) -> _Batch:
        return cls(
            [line for batch in batches for line in batch.lines],
            [one for batch in batches for one in batch.rows],
            sum(batch.failures for batch in batches),
        )


@dataclass(slots=True)
class _Recovering:
    """The store's catch-up at start: the journal up to `upto` (0 once done), and the span it found."""

    upto: int
    new_database: bool
    first_ts: float = 0.0
    last_ts: float = 0.0

    def saw(self, batch: Sequence[Journaled]) -> None:
        """A batch read back from the journal: the part of it from before this process widens the span."""
        mine = [row for seq, row in batch if seq <= self.upto]
        if mine:
            self.first_ts = self.first_ts or float(mine[0][_TS])  # type: ignore[arg-type]
            self.last_ts = float(mine[-1][_TS])  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class PruneReport:
    """The last prune: rows removed, and the store's bytes before, at their largest, after, and the
    ceiling it kept under (before plus the margin)."""

    removed: int
    start_bytes: int
    peak_bytes: int
    end_bytes: int
    ceiling_bytes: int


class ActionRecorder:
    def __init__(
        self,
        *,
        database: Path | str,
        ndjson_path: Path,
        repo_root: Path,
        clock: Callable[[], datetime],
        queue_size: int = 10_000,
        ndjson_max_bytes: int = 20_000_000,
        ndjson_backups: int = 3,
        redactor: Redactor | None = None,
        retry: RetryPolicy | None = None,
        storage: StorageHealth | None = None,
        busy_timeout_ms: int = 5000,
        more_roots: tuple[Path, ...] = (),
        prune_margin: float = 0.05,
        prune_margin_min_bytes: int = 4 << 20,
        timestamp: Callable[[], float] | None = None,
    ) -> None:
        # A SQLite file, or a PostgreSQL URL.
        self._database = database
        self._postgresql = action_writes.is_postgresql(database)
        # Set when several bot processes share the database: this one's shards label, on every record.
        self.process: str | None = None
        self._retry = retry or RetryPolicy(attempts=5)
        self._storage = storage
        self._busy_timeout_ms = busy_timeout_ms
        self._redactor = redactor or Redactor()
        self._queue_size = queue_size
        self._prune_margin = prune_margin
        self._prune_margin_min = prune_margin_min_bytes
        self.repo_root = repo_root
        # Other checkouts whose frames count as in-repo: the repository the bot works on, when
        # it is not the one this code was started from.
        self.more_roots = more_roots
        self._clock = clock
        # The clock as a number: `time.time` where the clock is the real one (a datetime made only to be
        # read back cost ~0.4 µs a record).
        self._timestamp = timestamp or self.now
        self._subscribers: list[Subscriber] = []
        self._recovery_listeners: list[Callable[[Recovery], None]] = []
        self.recovery: Recovery | None = None
        self._journal = Journal(ndjson_path, ndjson_max_bytes, ndjson_backups)
        self._set_up_the_way_down()
        self._store: ActionStore | None = None  # opened on the store thread
        self._wal_limit = _WAL_LIMIT
        self._sizes_at = 0.0
        self._store_bytes = 0  # PostgreSQL's database size, as last read by the store thread
        self.last_prune: PruneReport | None = None
        self.recorded = 0
        self.journaled = 0
        self.written = 0  # rows inserted (from memory or read back from the journal)
        self.recovered = 0  # of them, read back at start: what the database did not have
        self.evicted = 0  # copies let go from memory (the records are in the journal)
        self.read_back = 0  # of those, read back from the journal into the database
        self.unstorable = 0  # refused by the database for what they hold (kept in the journal)
        self.shed: Counter[str] = Counter()  # by kind: the journal could not keep up
        self.shed_failures = 0
        self.write_errors = 0  # database writes that failed for other reasons than storage
        self.journal_errors = 0  # journal appends that failed

    def _set_up_the_way_down(self) -> None:
        """The state between `record()` and the database: what waits for the journal, for the store,
        and the two threads."""
        self._seq = self._journal.last_seq
        # Recorded, not yet journaled: (seq, journal line, row). A record's row (a tuple of strings and
        # numbers), not the record: a waiting record outlives the young generations, and every object
        # the collector must walk brings the next full collection nearer; the record is left to its
        # subscribers.
        self._pending = _Batch()
        # Successes and failures kept (by the loop), in the journal (by its thread), lost at a stop: what
        # waits for the journal is the difference (each kind at most `queue_size`). One writer each.
        self._kept = [0, 0]
        self._appended_counts = [0, 0]
        self._lost = [0, 0]
        # Journaled, not yet stored, while their copies are kept (at most `queue_size`): filled and cut
        # by the journal thread, taken by the store's loop, both under the lock (so a record let go is
        # always one the store will read back from the journal).
        self._unstored: deque[Journaled] = deque()
        self._memory = threading.Lock()
        self._evicted_upto = 0  # records journaled up to here may be in the journal only
        self._in_flight = 0  # taken from memory for the database, not in it yet
        self._recovering = _Recovering(0, new_database=False)
        self._journaled_seq = self._journal.last_seq
        self._stored = 0  # the database's position in the journal, once read
        self._position_known = False
        self._journal_failing = self._store_failing = self._stopping = False
        self._journal_announced = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hand_over_soon = False
        self._handed = 0  # batches handed to the journal thread, not back yet
        self._refused: list[_Batch] = []  # batches the journal refused: again later
        self._journal_attempt = 0
        self._journal_blocked = False  # the journal thread's: refuse what follows a failed batch
        self._store_wake = asyncio.Event()
        self._store_poke = asyncio.Event()  # cuts a failing store's backoff short (`flush()`)
        self._journal_tries = self._store_tries = 0  # failed attempts so far, of each
        self._waiters: list[asyncio.Future[None]] = []
        self._writer: asyncio.Task[None] | None = None
        # One thread appends to the journal, one writes the database: a database that waits on a lock
        # never holds the journal up.
        self._journal_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="action-journal")
        self._store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="action-store")

    @property
    def journal_id(self) -> str:
        """The id of this recorder's journal (its row in `journal_positions`)."""
        return self._journal.id

    @property
    def waiting(self) -> int:
        """Records recorded but not in the database yet (in memory or only in the journal)."""
        not_journaled = self._not_journaled(0) + self._not_journaled(1)
        return not_journaled + len(self._unstored) + self._in_flight + max(0, self.evicted - self.read_back)

    def _not_journaled(self, failures: int) -> int:
        """Successes (0) or failures (1) kept that are not in the journal yet."""
        return self._kept[failures] - self._appended_counts[failures] - self._lost[failures]

    def on_recovery(self, listener: Callable[[Recovery], None]) -> None:
        """Call `listener` with what the store read back from the journal at start (at once if it has)."""
        self._recovery_listeners.append(listener)
        if self.recovery is not None:
            listener(self.recovery)

    # -- producing ------------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def now(self) -> float:
        return self._clock().timestamp()

    def record(
        self,
        kind: str,
        source: str,
        *,
        ok: bool,
        duration_ms: float,
        error: BaseException | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
        user_id: int | None = None,
        message_id: int | None = None,
        cost_usd: float = 0.0,
        run_id: int | None = None,
        extra: dict[str, Any] | None = None,
        invocation: dict[str, Any] | None = None,
        reply: dict[str, Any] | None = None,
        samples: list[dict[str, Any]] | None = None,
    ) -> ActionRecord:
        """Record one action. Never blocks, never raises for a full queue.

        `invocation` (what was asked) and `reply` (a digest of the answer) are redacted like
        `extra`; `samples` holds only in-repo frames and counts.
        """
        error_type = error_message = fingerprint_id = None
        frames: list[str] = []
        if error is not None:
            error_type = type(error).__name__
            error_message = self._redactor.text(str(error), 1000)
            fingerprint_id, frames = fingerprint(error, self.repo_root, *self.more_roots)
            read_rows = self._read_rows()
            if read_rows:
                extra = {**(extra or {}), "read_rows": read_rows}
        record = ActionRecord.trusted(
            {
                "ts": self._timestamp(),
                "kind": kind,
                "source": source,
                "ok": ok,
                "duration_ms": round(duration_ms, 3),
                "guild_id": guild_id,
                "channel_id": channel_id,
                "user_id": user_id,
                "message_id": message_id,
                "cost_usd": cost_usd,
                "error_type": error_type,
                "error_message": error_message,
                "fingerprint": fingerprint_id,
                "frames": frames,
                "run_id": run_id,
                "extra": self._redactor.value(extra) if extra else {},
                "invocation": self._redactor.value(invocation) if invocation else None,
                "reply": self._redactor.value(reply) if reply else None,
                "samples": samples or None,
                "process": self.process,
            }
        )
        self.recorded += 1
        for subscriber in self._subscribers:
            try:
                subscriber(record)
            except Exception:
                _log.exception("action subscriber failed", subscriber=repr(subscriber))
        self._keep(record.fields())
        return record

    def _keep(self, fields: dict[str, Any]) -> None:
        """Number the record and encode its journal line; it waits for the journal thread. Past
        `queue_size` waiting, a success is shed (counted by kind); a failure has a reserve as large."""
        failure = 0 if fields["ok"] else 1
        waiting = self._kept[failure] - self._appended_counts[failure] - self._lost[failure]
        if waiting >= self._queue_size:
            self.shed[fields["kind"]] += 1
            self.shed_failures += failure
            return
        now = time.time_ns() // 1000
        seq = now if now > self._seq else self._seq + 1
        try:
            line = journal_line(seq, fields)
            stored = row(fields)
        except Exception:  # a value no JSON encoder takes: the record cannot be kept anywhere
            _log.exception("an action record cannot be encoded", kind=fields["kind"])
            self.unstorable += 1
            return
        self._kept[failure] += 1
        self._seq = seq
        pending = self._pending
        pending.lines.append(line)
        pending.rows.append((seq, stored))
        pending.failures += failure
        if len(pending.rows) >= _HAND_OVER:
            self._hand_over()
        elif not self._hand_over_soon and self._loop is not None:
            self._hand_over_soon = True
            self._loop.call_soon(self._hand_over)

    def _read_rows(self) -> list[dict[str, Any]]:
        """The stored rows the failing action read, with the in-repo frames of their writers."""
        scope = provenance.current()
        if scope is None or not scope.reads:
            return []
        prefixes = root_prefixes((self.repo_root, *self.more_roots))
        found = []
        for read in scope.reads:
            writer = []
            for frame in read["writer"]:
                path, _, rest = frame.partition(":")
                relative = relative_path(path, prefixes)
                if relative is not None:
                    writer.append(f"{relative}:{rest}")
            found.append({**read, "writer": writer})
        return found

    @contextlib.contextmanager
    def action(self, kind: str, source: str, **ids: Any) -> Iterator[PendingAction]:
        """Time a block and record it; an exception is recorded as a failure and re-raised."""
        pending = PendingAction()
        started = time.perf_counter()
        try:
            yield pending
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            self.record(
                kind,
                source,
                ok=False,
                error=exc,
                duration_ms=_ms(started),
                cost_usd=pending.cost_usd,
                extra=pending.extra,
                **ids,
            )
            raise
        self.record(
            kind,
            source,
            ok=pending.ok is not False,
            duration_ms=_ms(started),
            cost_usd=pending.cost_usd,
            extra=pending.extra,
            **ids,
        )

    # -- the writer daemon: journal, then database ------------------------------------------------------

    async def run_writer(self) -> None:
        """Journal what is recorded and fill the database from it until `close()` (runs as a daemon)."""
        self._writer = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        # A thread waiting for the GIL asks for it only after a whole switch interval without a
        # release; a busy loop releases it at every look at its selector (well under CPython's
        # 5 ms), which restarts that wait. The journal and store threads (and SQLite's lock holders)
        # starved that way; at 0.5 ms they get their turn.
        sys.setswitchinterval(min(sys.getswitchinterval(), _SWITCH_INTERVAL_S))
        self._hand_over()  # what was recorded before the writer started
        try:
            await self._store_loop()
        finally:
            await asyncio.shield(self._close_threads())

    async def _in(self, thread: ThreadPoolExecutor, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(thread, fn, *args)

    # the journal thread's side: batches are handed over from the loop (each turn of it, or at once
    # when `_HAND_OVER` are waiting, so a handler recording in a tight loop does not outrun it) and
    # appended in order; the loop hears back through call_soon_threadsafe.

    def _hand_over(self, *, retry: bool = False) -> None:
        """Give the waiting records to the journal thread (on the loop; never waits)."""
        self._hand_over_soon = False
        if not self._pending.rows or self._loop is None or (self._journal_failing and not retry):
            return
        batch, self._pending = self._pending, _Batch()
        self._handed += 1
        future = self._journal_thread.submit(self._append_here, batch)
        loop = self._loop
        future.add_done_callback(lambda done: _call_soon(loop, self._appended, done))

    def _append_here(self, batch: _Batch) -> None:
        """On the journal thread: the batch into the journal, then its rows into memory for the store
        (the oldest let go past `queue_size`: the journal has them). After a failure the batches queued
        behind it are refused too, so the journal never holds a later record before an earlier one; a
        refused batch is kept for the loop to hand over again."""
        if self._journal_blocked:
            self._refused.append(batch)
            raise _Refused
        try:
            self._journal.append(batch.lines)
        except OSError:
            self._journal_blocked = True
            self._refused.append(batch)
            raise
        rows = batch.rows
        with self._memory:
            unstored = self._unstored
            unstored.extend(rows)
            while len(unstored) > self._queue_size:
                self._evicted_upto = unstored.popleft()[0]
                self.evicted += 1
            self._journaled_seq = rows[-1][0]
        self._appended_counts[0] += len(rows) - batch.failures
        self._appended_counts[1] += batch.failures
        self.journaled += len(rows)

    def _appended(self, done: Future[None]) -> None:
        """On the loop: a batch is in the journal (the database's now), or was refused (tried again later)."""
        self._handed -= 1
        error = done.exception()
        if error is None:
            self._journal_worked()
        elif not isinstance(error, _Refused):
            self._journal_failed(error)
        if error is not None and not self._handed:
            if self._stopping and self._journal_attempt >= self._retry.attempts:
                self._lost_at_stop(error)
            else:
                self._loop_call_later(self._backoff(self._journal_attempt), self._retry_journal)
        self._store_wake.set()
        self._notify()

    def _journal_worked(self) -> None:
        self._journal_attempt = 0
        self._journal_failing = False
        if self._journal_announced and self._storage is not None:
            # Only a fault the journal announced ends with its append: a locked database stays failing.
            self._journal_announced = False
            self._storage.succeeded("the action journal")

    def _journal_failed(self, error: BaseException) -> None:
        self._journal_attempt += 1
        self._journal_tries += 1
        self.journal_errors += 1
        self._journal_failing = True
        if not isinstance(error, OSError):
            _log.error("appending to the action journal failed", error=repr(error))
        # The journal is a local file: a full or failing disk under it is said at once.
        announced = self._fault(error, self._journal_attempt, "the action journal", after=1)
        self._journal_announced |= announced

    def _retry_journal(self) -> None:
        """After the backoff: the refused batches, then what came meanwhile, handed over again (on the
        loop, with nothing in flight: the journal thread is idle)."""
        if self._handed or not self._refused:
            return
        self._pending = _Batch.joined([*self._refused, self._pending])
        self._refused.clear()
        self._journal_blocked = False
        self._hand_over(retry=True)

    def _loop_call_later(self, delay: float, callback: Callable[[], None]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_later(delay, callback)

    def _journal_settled(self) -> bool:
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

    # the store thread's side

    async def _store_loop(self) -> None:
        try:
            await self._until_stored(self._open_store, "opening the action store")
            self._stored = await self._until_stored(self._position, "reading the journal position")
        except _Stopping:
            return
        self._position_known = True
        self._notify()
        # What was journaled before this process started and the database lacks comes first.
        self._recovering = _Recovering(self._journal.last_seq, new_database=self._stored == 0)
        # One reader for the life of the store: it reads on from where it stopped, past what was stored
        # from memory meanwhile, instead of scanning the journal again from its start.
        reader = self._journal.reader(self._stored)
        try:
            while (taken := await self._next_batch(reader)) is not None:
                batch, from_journal = taken
                self._in_flight = 0 if from_journal else len(batch)
                inserted = await self._write(batch)
                self._in_flight = 0
                self._stored = seq = batch[-1][0]
                self.written += inserted
                if seq <= self._recovering.upto:
                    self.recovered += inserted
                elif from_journal:
                    self.read_back += len(batch)
                self._notify()
        except _Stopping:
            return
        finally:
            await asyncio.shield(self._in(self._store_thread, reader.close))

    async def _next_batch(self, reader: JournalReader) -> tuple[Sequence[Journaled], bool] | None:
        """The next records for the database and whether they were read from the journal (past the
        position: what the database lacked at start, or what memory let go); None once stopping with
        nothing left."""
        recovering = self._recovering
        while True:
            upto = max(recovering.upto, self._evicted_upto)
            if upto > self._stored:
                reader.after = max(reader.after, self._stored)
                batch: list[Journaled] = await self._in(self._store_thread, _take, reader, upto)
                if batch:
                    recovering.saw(batch)
                    return batch, True
                _log.error(
                    "journaled action records are missing from the journal: passed over",
                    after=self._stored,
                    upto=upto,
                    journal=str(self._journal.path),
                )
                await self._until_stored(functools.partial(self._skip, upto), "passing over records")
                continue
            if recovering.upto:
                self._recovered(recovering)
                recovering.upto = 0
            if 0 < len(self._unstored) < _BATCH and not (self._stopping or self._waiters):
                # A moment for more: one transaction of many rows costs less a row than many of a few
                # (every commit writes again the pages all of them touch). A flush does not wait for it.
                self._store_poke.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._store_poke.wait(), _GATHER_S)
            taken = self._take_unstored()
            if taken is None:
                continue  # let go meanwhile: from the journal first
            if taken:
                return taken, False
            if self._stopping and self._journal_settled():
                return None
            self._store_wake.clear()
            await self._store_wake.wait()

    def _take_unstored(self) -> list[Journaled] | None:
        """The next batch from memory; None when records were let go before it (read the journal first)."""
        with self._memory:
            if self._evicted_upto > self._stored:
                return None
            unstored = self._unstored
            while unstored and unstored[0][0] <= self._stored:
                unstored.popleft()
            return [unstored.popleft() for _ in range(min(_BATCH, len(unstored)))]

    def _recovered(self, recovering: _Recovering) -> None:
        if not self.recovered:
            return
        self.recovery = Recovery(
            self.recovered, recovering.first_ts, recovering.last_ts, recovering.new_database
        )
        _log.warning(
            "action records restored from the journal",
            count=self.recovered,
            first_ts=recovering.first_ts,
            last_ts=recovering.last_ts,
            new_database=recovering.new_database,
        )
        for listener in self._recovery_listeners:
            try:
                listener(self.recovery)
            except Exception:
                _log.exception("recovery listener failed", listener=repr(listener))

    async def _write(self, batch: Sequence[Journaled]) -> int:
        """Insert a batch, retrying storage faults for as long as they last (`_Stopping` if the recorder
        is stopped meanwhile: the journal keeps the batch for the next start)."""
        inserted, refused = await self._until_stored(
            functools.partial(self._write_here, batch), "action records", other_faults=True
        )
        self.unstorable += refused
        if self._storage is not None:
            self._storage.succeeded("action records")
            if not self._postgresql:
                self._storage.check_identity()
        return inserted

    def _write_here(self, batch: Sequence[Journaled]) -> tuple[int, int]:
        """On the store thread: the batch; a batch the database refuses for what a record holds (not a
        storage fault) goes again one record at a time, and what is refused alone is passed over."""
        store = self._open_store()
        journal = self._journal.id
        try:
            inserted, refused = store.write(journal, batch), 0
        except Exception as exc:
            if storage_fault(exc) is not None:
                raise
            inserted = refused = 0
            for one in batch:
                try:
                    inserted += store.write(journal, [one])
                except Exception as single:
                    if storage_fault(single) is not None:
                        raise
                    _log.error(
                        "an action record the database refuses stays in the journal only",
                        seq=one[0],
                        kind=one[1][_KIND],
                        error=str(single),
                    )
                    store.skip(journal, one[0])
                    refused += 1
        store.tidy(self._wal_limit)
        self._journal.stored(batch[-1][0])
        self._read_sizes()
        return inserted, refused

    def _open_store(self) -> ActionStore:
        """On the store thread: the store, opened (the schema brought to the head first) if it is not."""
        if self._store is None:
            if self._postgresql:
                upgrade_postgresql(str(self._database))
            else:
                conn = action_writes.open_writer(Path(self._database), self._busy_timeout_ms)
                try:
                    upgrade_sqlite(conn)
                finally:
                    conn.close()
            self._store = action_writes.open_action_store(self._database, self._busy_timeout_ms)
            self._read_sizes(force=True)
        return self._store

    def _position(self) -> int:
        return self._open_store().position(self._journal.id)

    def _skip(self, seq: int) -> None:
        self._open_store().skip(self._journal.id, seq)
        self._stored = seq

    def _read_sizes(self, *, force: bool = False) -> None:
        """On the store thread: a PostgreSQL database's size (a query), at most once a second."""
        now = time.monotonic()
        if self._postgresql and self._store is not None and (force or now - self._sizes_at >= _SIZES_EVERY_S):
            self._sizes_at = now
            self._store_bytes = self._store.size()

    @property
    def store_bytes(self) -> int:
        """Bytes the database takes on disk: its files (SQLite, as they are now), or the PostgreSQL
        database's size as last read (after a batch, at most once a second, and after a prune)."""
        if self._postgresql:
            return self._store_bytes
        path = Path(self._database)
        return sum(_file_bytes(path.with_name(path.name + suffix)) for suffix in ("", "-wal", "-shm"))

    @property
    def journal_bytes(self) -> int:
        """Bytes the action journal's segments take."""
        return self._journal.size()

    async def _until_stored(self, fn: Callable[[], _T], what: str, *, other_faults: bool = False) -> _T:
        """`fn()` on the store thread, retried with backoff while storage fails (and, with
        `other_faults`, while it fails for any other reason: counted and logged). Past `batch_attempts`
        storage counts as failing (announced; `flush()` stops waiting for it)."""
        attempt = 0
        while True:
            try:
                result = await self._in(self._store_thread, fn)
            except Exception as exc:
                attempt += 1
                self._store_tries += 1
                if storage_fault(exc) is not None:
                    self._fault(exc, attempt, what)
                    self._store_failing |= attempt >= self._retry.attempts
                elif other_faults:
                    self.write_errors += 1
                    self._store_failing |= attempt >= self._retry.attempts
                    _log.exception("writing action records failed", what=what)
                else:
                    raise
                self._notify()
                if self._stopping:
                    raise _Stopping from exc
                self._store_poke.clear()
                with contextlib.suppress(TimeoutError):  # `flush()` cuts the backoff short
                    await asyncio.wait_for(self._store_poke.wait(), self._backoff(attempt))
                continue
            self._store_failing = False
            return result

    def _fault(self, error: BaseException, attempt: int, what: str, *, after: int | None = None) -> bool:
        """A storage fault met by the journal or the store: a retry, and after `after` of them (default
        `batch_attempts`) a fault StorageHealth announces (once: it lasts until a write works again).
        Whether this one was announced."""
        fault = storage_fault(error)
        after = self._retry.attempts if after is None else after
        if attempt in (1, after):
            _log.warning("action records wait: storage is failing", what=what, fault=fault, error=str(error))
        if self._storage is None or fault is None:
            return False
        if attempt == after:
            self._storage.failed(fault, str(error))
            return True
        if attempt < after:
            self._storage.note_retry()
        return False

    def _backoff(self, attempt: int) -> float:
        return self._retry.delay(min(attempt, _MAX_BACKOFF_STEPS))

    async def _close_threads(self) -> None:
        """Close the store and the journal on their threads, and end the threads."""

        def close_store() -> None:
            store, self._store = self._store, None
            if store is not None:
                store.close()

        with contextlib.suppress(Exception):
            await self._in(self._store_thread, close_store)
        with contextlib.suppress(Exception):
            await self._in(self._journal_thread, self._journal.close)
        self._store_thread.shutdown(wait=False)
        self._journal_thread.shutdown(wait=False)

    # -- waiting and stopping -----------------------------------------------------------------------------

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _settled(self, target: int, journal_tries: int, store_tries: int) -> bool:
        """Whether every record up to `target` is in the database, or waits on storage that failed again
        since the flush began (the journal's, or the database's past its attempts)."""
        if self._position_known and self._stored >= target:
            return True
        if self._writer is not None and self._writer.done():
            return True
        if self._journaled_seq < target:
            return self._journal_failing and self._journal_tries > journal_tries
        return self._store_failing and self._store_tries > store_tries

    async def flush(self) -> None:
        """Wait until every record so far is in the database — or waits in the journal on a database
        that still fails, or in memory on a journal that still fails (each tried once more first)."""
        target, journal_tries, store_tries = self._seq, self._journal_tries, self._store_tries
        while not self._settled(target, journal_tries, store_tries):
            self._poke()
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def _poke(self) -> None:
        """A failing journal or database is tried again now rather than after its backoff."""
        if self._journal_failing and not self._handed:
            self._retry_journal()
        self._store_poke.set()

    async def close(self, timeout: float = 30) -> None:
        """Journal everything recorded so far, let the database take what it can, then stop.

        What the database has not taken by then (it is failing, or `timeout` passed) waits in the
        journal for the next start.
        """
        self._stopping = True  # a writer that has not started yet ends at once when it does
        self._hand_over()
        self._store_wake.set()
        writer = self._writer
        if writer is None or writer.done():
            return
        await asyncio.wait([writer], timeout=timeout)
        if not writer.done():
            writer.cancel()
            await asyncio.wait([writer], timeout=5)
        if self._stored < self._journaled_seq:
            _log.warning(
                "action records wait in the journal for the database",
                journal=str(self._journal.path),
                waiting=self.waiting,
            )

    # -- retention ----------------------------------------------------------------------------------------

    async def prune(self, retention_days: int, *, batch: int = _PRUNE_BATCH) -> int:
        """Delete records older than the retention in bounded steps; returns how many.

        Each step runs on the store's thread between its batches, so records keep being written while
        millions of expired rows go, and leaves the files no larger than they were when the prune began
        plus the margin (`last_prune` says what they were at their largest).
        """
        before = self.now() - retention_days * 86400
        start = await self._in(self._store_thread, self._store_size)
        margin = max(int(start * self._prune_margin), self._prune_margin_min)
        ceiling = start + margin
        peak = start
        pruned = 0
        self._wal_limit = margin // 2
        try:
            while True:
                step: PruneStep = await self._in(self._store_thread, self._prune_here, before, batch)
                pruned += step.removed
                peak = max(peak, step.peak_bytes)
                if not step.more:
                    break
                low, high = _PRUNE_BATCH_RANGE
                by_time = batch * _PRUNE_BATCH_S / max(step.took_s, 0.001)
                by_disk = batch * (margin / 2) / max(step.peak_bytes - step.size_bytes, 1)
                batch = max(low, min(high, int(min(by_time, by_disk))))
            await self._in(self._store_thread, self._finish_prune_here, ceiling)
        finally:
            self._wal_limit = _WAL_LIMIT
        end = await self._in(self._store_thread, self._store_size)
        self.last_prune = PruneReport(pruned, start, max(peak, end), end, ceiling)
        return pruned

    def _store_size(self) -> int:
        return self._open_store().size()

    def _prune_here(self, before: float, limit: int) -> PruneStep:
        step = self._open_store().prune(before, limit)
        self._read_sizes(force=True)
        return step

    def _finish_prune_here(self, ceiling: int) -> None:
        self._open_store().finish_prune(ceiling)
        self._read_sizes(force=True)

    async def prune_every(self, retention_days: int, interval_s: float = 6 * 3600) -> None:
        """Apply the retention now and then periodically (runs as a daemon, so start-up never waits on it)."""
        while True:
            try:
                pruned = await self.prune(retention_days)
            except Exception:
                _log.exception("pruning action records failed")
            else:
                if pruned:
                    _log.info("old action records pruned", count=pruned, retention_days=retention_days)
            await asyncio.sleep(interval_s)

    def health(self) -> dict[str, int]:
        return {
            "actions_recorded": self.recorded,
            "actions_journaled": self.journaled,
            "actions_written": self.written,
            "actions_waiting": self.waiting,
            "actions_recovered": self.recovered,
            "actions_shed": sum(self.shed.values()),
            "actions_shed_failures": self.shed_failures,
            "actions_unstorable": self.unstorable,
            "action_write_errors": self.write_errors,
            "action_journal_errors": self.journal_errors,
            "storage_bytes": self.store_bytes,
            "journal_bytes": self.journal_bytes,
        }


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """From another thread: `callback(*args)` on the loop, unless the loop is gone (the process ends)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def _file_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def recovery_notice(recovery: Recovery, journal: Path) -> str:
    """What the bot says in #dev about records it restored from the journal."""
    span = f"{_utc(recovery.first_ts)} to {_utc(recovery.last_ts)}"
    if recovery.new_database:
        return (
            f"📥 The database held none of my action records (it is new, or was deleted or replaced): "
            f"I rebuilt it from the action journal ({journal}): {recovery.count} record(s), {span}."
        )
    return (
        f"📥 {recovery.count} action record(s) from {span} were not in the database yet (a stop, a crash "
        f"or a storage fault came first): I restored them from the action journal ({journal})."
    )


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _take(reader: JournalReader, upto: int) -> list[Journaled]:
    """On the store thread: the next batch read back from the journal, as rows."""
    return [(seq, row(fields)) for seq, fields in reader.take(upto, _BATCH)]


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
