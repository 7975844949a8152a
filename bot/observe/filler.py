"""The way from the action journal into the database: the store's thread and the loop that feeds it.

The store (bot/db/action_writes.py) runs on a thread and a connection of its own. At start it reads the
database's position in the journal and first takes, read back from the journal, what the database
lacks — records of a run that stopped, crashed or met a failing database, or all of them for a database
that is new, deleted or replaced; what it took is the `recovery` (the bot announces it). A database
ahead of the journal (its newest segments deleted or replaced while the bot was stopped) is moved back
to where the journal ends, so that what this process numbers on from there is stored. Then it takes
journaled records from memory (bot/observe/intake.py), in batches of up to `_BATCH`, waiting up to
`_GATHER_S` for one to fill (one commit of many rows costs less a row than many of a few; a flush does
not wait) — and from the journal again whenever memory let some go. Each batch goes in one transaction
with the position it reaches, so nothing is inserted twice.

A storage fault is tried again with backoff for as long as it lasts, announced past `batch_attempts`
tries; a batch refused for what a record holds goes again record by record, and what the database
refuses alone is passed over (counted, logged, still in the journal). What the journal cannot give back —
a line cut short or not JSON, a record that is not there at all — is counted as unreadable and logged
(bot/observe/journal.py).

Retention runs on the same thread, between batches, in steps sized so that each writes at most half the
disk margin of log (`storage.prune_margin`) and takes about `_PRUNE_BATCH_S`; every step gives its pages
back and truncates the log, so the files never pass their size before the prune plus the margin.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from mendbot.db import action_writes
from mendbot.db.action_writes import ActionStore, Journaled, PruneStep, row
from mendbot.db.migrate import upgrade_postgresql, upgrade_sqlite
from mendbot.db.records import ActionRecord
from mendbot.db.retry import RetryPolicy, StorageHealth, storage_fault
from mendbot.kernel.log import get_logger
from mendbot.kernel.waits import wait_for
from mendbot.observe.intake import JournalIntake, backoff, report_fault
from mendbot.observe.journal import Journal, JournalReader

__all__ = ["DatabaseFiller", "PruneReport", "Recovery", "Stopping"]

_log = get_logger(__name__)
_T = TypeVar("_T")
_BATCH = 2048  # records per database transaction (two statements of 1,024 rows)
_GATHER_S = 0.05  # how long the store waits for a batch to fill before it writes a smaller one
# Retention deletes this many rows per step at first, then sizes its steps so each takes about
# `_PRUNE_BATCH_S` and writes at most half the disk margin of log.
_PRUNE_BATCH = 1000
_PRUNE_BATCH_S = 0.02
_PRUNE_BATCH_RANGE = (100, 20_000)
# The write-ahead log is truncated between batches once it holds this much (during a prune: half the margin).
_WAL_LIMIT = 4 << 20
_SIZES_EVERY_S = 1.0  # a PostgreSQL database's size is read this often at most
_TS, _KIND = 0, 1  # where `row()` puts them


class Stopping(Exception):
    """The recorder is stopping while storage fails: the store gives up waiting (the journal keeps all)."""


class Recovery(msgspec.Struct, frozen=True):
    """Records the database did not have, read from the journal when the store started: after a crash,
    a stop while the database was failing, or into a database that is new, deleted or replaced."""

    count: int
    first_ts: float
    last_ts: float
    new_database: bool  # it held nothing of this journal


class PruneReport(msgspec.Struct, frozen=True):
    """The last prune: rows removed, and the store's bytes before, at their largest, after, and the
    ceiling it kept under (before plus the margin)."""

    removed: int
    start_bytes: int
    peak_bytes: int
    end_bytes: int
    ceiling_bytes: int


class _Recovering(msgspec.Struct):
    """The catch-up at start: the journal up to `upto` (0 once done), and the span it found."""

    upto: int
    new_database: bool
    first_ts: float = 0.0
    last_ts: float = 0.0

    def saw(self, batch: Sequence[Journaled]) -> None:
        """A batch read back from the journal: the part of it from before this process widens the span."""
        mine = [one for seq, one in batch if seq <= self.upto]
        if mine:
            self.first_ts = self.first_ts or float(mine[0][_TS])  # type: ignore[arg-type]
            self.last_ts = float(mine[-1][_TS])  # type: ignore[arg-type]


class DatabaseFiller:
    """Journaled records into the database (from memory or the journal), retried, once each."""

    def __init__(
        self,
        database: Path | str,
        intake: JournalIntake,
        *,
        retry: RetryPolicy,
        storage: StorageHealth | None,
        busy_timeout_ms: int,
        prune_margin: float,
        prune_margin_min_bytes: int,
        changed: Callable[[], None],
    ) -> None:
        self._database = database
        self._postgresql = action_writes.is_postgresql(database)
        self._intake = intake
        self._journal: Journal = intake.journal
        self._retry = retry
        self._storage = storage
        self._busy_timeout_ms = busy_timeout_ms
        self._prune_margin = prune_margin
        self._prune_margin_min = prune_margin_min_bytes
        self._changed = changed  # flushes are told of every step
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="action-store")
        self._store: ActionStore | None = None  # opened on the thread
        self._wake = asyncio.Event()
        self._poke = asyncio.Event()  # cuts a backoff or a wait for a fuller batch short
        self._recovering = _Recovering(0, new_database=False)
        self._listeners: list[Callable[[Recovery], None]] = []
        self._wal_limit = _WAL_LIMIT
        self._sizes_at = 0.0
        self._pg_bytes = 0
        self.stored = 0  # the database's position in the journal, once read
        self.position_known = False
        self.failing = False  # past `batch_attempts` failed tries (announced)
        self.stopping = False
        self.hurried = 0  # flushes waiting: no wait for a fuller batch
        self.gather_s = _GATHER_S  # 0: no wait for a fuller batch (`Recorder.without_windows`)
        self.tries = 0  # failed tries so far
        self.in_flight = 0  # taken from memory, not in the database yet
        self.recovery: Recovery | None = None
        self.last_prune: PruneReport | None = None
        self.written = 0  # rows inserted (from memory or read back from the journal)
        self.recovered = 0  # of them, read back at start: what the database did not have
        self.read_back = 0  # let go from memory, then read back from the journal
        self.unstorable = 0  # refused by the database for what they hold (kept in the journal)
        self.write_errors = 0  # tries that failed for other reasons than storage
        self.rewound: tuple[int, int] | None = None  # (the database's position, where the journal ended)
        self._reader: JournalReader | None = None

    @property
    def unreadable(self) -> int:
        """Records the journal could not give back: lines cut short or not records, records missing."""
        reader = self._reader
        return 0 if reader is None else reader.unreadable + reader.missing

    @property
    def lost_fresh(self) -> int:
        """Of the unreadable ones, those this process recorded (the rest are from before its start)."""
        reader = self._reader
        return 0 if reader is None else reader.lost_fresh

    def wake(self) -> None:
        """More may be waiting in memory (a batch is journaled, or the recorder stops)."""
        self._wake.set()

    def poke(self) -> None:
        """Try a failing database again now; write a batch now rather than wait for it to fill."""
        self._poke.set()

    def on_recovery(self, listener: Callable[[Recovery], None]) -> None:
        """Call `listener` with what was read back from the journal at start (at once if it has been)."""
        self._listeners.append(listener)
        if self.recovery is not None:
            listener(self.recovery)

    async def _in(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self.thread, fn, *args)

    # -- the loop ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Fill the database until the recorder stops and nothing is left (or storage fails at the stop)."""
        ended = self._journal.last_seq  # where the journal ended when this process opened it
        try:
            await self._until_stored(self._open_store, "opening the action store")
            position = await self._until_stored(self._position, "reading the journal position")
            if position > ended:
                await self._until_stored(functools.partial(self._rewind, ended), "moving the position back")
                self.rewound = (position, ended)
                _log.warning(
                    "the database holds more of the action journal than the journal has: its newest "
                    "segments were deleted or replaced while stopped; numbering goes on from where it ends",
                    database_position=position,
                    journal_ends=ended,
                    journal=str(self._journal.path),
                )
        except Stopping:
            return
        self.stored = min(position, ended)
        self.position_known = True
        self._changed()
        # What was journaled before this process started and the database lacks comes first.
        self._recovering = _Recovering(ended, new_database=position == 0)
        # One reader for the life of the store: it reads on from where it stopped, past what was stored
        # from memory meanwhile, instead of scanning the journal again from its start.
        reader = self._reader = self._journal.reader(self.stored)
        reader.fresh_after = ended
        try:
            while (taken := await self._next_batch(reader)) is not None:
                batch, from_journal = taken
                self.in_flight = 0 if from_journal else len(batch)
                inserted = await self._write(batch)
                self.in_flight = 0
                self.stored = seq = batch[-1][0]
                self.written += inserted
                if seq <= self._recovering.upto:
                    self.recovered += inserted
                elif from_journal:
                    self.read_back += len(batch)
                self._changed()
        except Stopping:
            return
        finally:
            await asyncio.shield(self._in(reader.close))

    async def _next_batch(self, reader: JournalReader) -> tuple[Sequence[Journaled], bool] | None:
        """The next records for the database and whether they were read from the journal (past the
        position: what the database lacked at start, or what memory let go); None once stopping with
        nothing left."""
        recovering, intake = self._recovering, self._intake
        while True:
            upto = max(recovering.upto, intake.evicted_upto)
            if upto > self.stored:
                reader.after = max(reader.after, self.stored)
                batch: list[Journaled] = await self._in(_take, reader, upto)
                if batch:
                    recovering.saw(batch)
                    return batch, True
                reader.missed(upto)  # counted and logged: not in the journal (deleted, cut, torn)
                await self._until_stored(functools.partial(self._skip, upto), "passing over records")
                self._changed()
                continue
            if recovering.upto:
                self._recovered(recovering)
                recovering.upto = 0
            if self.gather_s and 0 < intake.in_memory < _BATCH and not (self.stopping or self.hurried):
                # A moment for more: one transaction of many rows costs less a row than many of a few
                # (every commit writes again the pages all of them touch).
                self._poke.clear()
                with contextlib.suppress(TimeoutError):
                    await wait_for(self._poke.wait(), self.gather_s)
            taken = intake.take(self.stored, _BATCH)
            if taken is None:
                continue  # let go meanwhile: from the journal first
            if taken:
                return taken, False
            if self.stopping and intake.settled():
                return None
            self._wake.clear()
            await self._wake.wait()

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
        for listener in self._listeners:
            try:
                listener(self.recovery)
            except Exception:
                _log.exception("recovery listener failed", listener=repr(listener))

    async def _write(self, batch: Sequence[Journaled]) -> int:
        """Insert a batch, retrying storage faults for as long as they last (`Stopping` if the recorder
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

    async def _until_stored(self, fn: Callable[[], _T], what: str, *, other_faults: bool = False) -> _T:
        """`fn()` on the thread, retried with backoff while storage fails (and, with `other_faults`, while
        it fails for any other reason: counted and logged). Past `batch_attempts` storage counts as
        failing (announced; `flush()` stops waiting for it)."""
        attempt = 0
        while True:
            try:
                result = await self._in(fn)
            except Exception as exc:
                attempt += 1
                self.tries += 1
                if storage_fault(exc) is not None:
                    report_fault(self._storage, exc, attempt, what, after=self._retry.attempts)
                elif other_faults:
                    self.write_errors += 1
                    _log.exception("writing action records failed", what=what)
                else:
                    raise
                self.failing |= attempt >= self._retry.attempts
                self._changed()
                if self.stopping:
                    raise Stopping from exc
                self._poke.clear()
                with contextlib.suppress(TimeoutError):  # `flush()` cuts the backoff short
                    await wait_for(self._poke.wait(), backoff(self._retry, attempt))
                continue
            self.failing = False
            return result

    # -- on the thread -------------------------------------------------------------------------------------

    def _write_here(self, batch: Sequence[Journaled]) -> tuple[int, int]:
        """The batch; a batch the database refuses for what a record holds (not a storage fault) goes
        again one record at a time, and what is refused alone is passed over."""
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
        """The store, opened (the schema brought to the head first) if it is not."""
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
        self.stored = seq

    def _rewind(self, seq: int) -> None:
        self._open_store().rewind(self._journal.id, seq)

    def _read_sizes(self, *, force: bool = False) -> None:
        """A PostgreSQL database's size (a query), at most once a second."""
        now = time.monotonic()
        if self._postgresql and self._store is not None and (force or now - self._sizes_at >= _SIZES_EVERY_S):
            self._sizes_at = now
            self._pg_bytes = self._store.size()

    @property
    def store_bytes(self) -> int:
        """Bytes the database takes on disk: its files (SQLite, as they are now), or the PostgreSQL
        database's size as last read (after a batch, at most once a second, and after a prune)."""
        if self._postgresql:
            return self._pg_bytes
        path = Path(self._database)
        return sum(_file_bytes(path.with_name(path.name + suffix)) for suffix in ("", "-wal", "-shm"))

    async def close(self) -> None:
        """Close the store on its thread, and end the thread."""

        def close_store() -> None:
            store, self._store = self._store, None
            if store is not None:
                store.close()

        with contextlib.suppress(Exception):
            await self._in(close_store)
        self.thread.shutdown(wait=False)

    # -- retention -----------------------------------------------------------------------------------------

    async def prune(self, before: float, *, batch: int = _PRUNE_BATCH) -> int:
        """Delete records older than `before` in bounded steps between the batches; how many. The files
        never pass their size when it began plus the margin (`last_prune` says what they were)."""
        start = await self._in(self._store_size)
        margin = max(int(start * self._prune_margin), self._prune_margin_min)
        ceiling = start + margin
        peak = start
        pruned = 0
        self._wal_limit = margin // 2
        try:
            while True:
                step: PruneStep = await self._in(self._prune_here, before, batch)
                pruned += step.removed
                peak = max(peak, step.peak_bytes)
                if not step.more:
                    break
                low, high = _PRUNE_BATCH_RANGE
                by_time = batch * _PRUNE_BATCH_S / max(step.took_s, 0.001)
                by_disk = batch * (margin / 2) / max(step.peak_bytes - step.size_bytes, 1)
                batch = max(low, min(high, int(min(by_time, by_disk))))
            await self._in(self._finish_prune_here, ceiling)
        finally:
            self._wal_limit = _WAL_LIMIT
        end = await self._in(self._store_size)
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


def _take(reader: JournalReader, upto: int) -> list[Journaled]:
    """On the thread: the next batch read back from the journal, as rows. A line that is not a whole
    record (a field missing or unknown, a value of the wrong type: an edited or foreign file) is
    passed over and counted as unreadable; what follows it is read on."""
    while taken := reader.take(upto, _BATCH):
        batch: list[Journaled] = []
        for seq, fields in taken:
            try:
                record = ActionRecord.validated(fields)
            except msgspec.ValidationError as exc:
                reader.lost(seq, f"a line that is not an action record ({exc})")
                continue
            batch.append((seq, row(record.fields())))
        if batch:
            return batch
    return []


def _file_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
