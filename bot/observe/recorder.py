"""ActionRecorder: the one way an action becomes a record, and the sinks behind it.

`record()` runs on the event loop and never waits on disk: it redacts, fingerprints, hands the
record to in-process subscribers (incidents, the anomaly detector) and puts it on a bounded
queue. A daemon writer drains the queue in batches into SQLite (its own connection, one
transaction per batch) and an NDJSON file with rotation. A full queue drops the record and
counts it; the count shows in /health and /incidents.

A batch that fails to write because storage is failing (database locked, disk full) is kept
and retried with backoff (`storage.batch_attempts`) while new records queue behind it; a batch
finally given up — or one that fails for any other reason — is counted in `dropped` too, so
every record that never reached the database is counted. Storage faults are reported to
`StorageHealth`, which announces them as a storage incident and clears it when a write succeeds.
Every write of the recorder counts: a batch given up, a checkpoint that fails, an NDJSON append that
fails. After each flush the database file's identity is checked too (deleted, replaced, moved away:
SQLite goes on writing into the lost file without an error).

The writer keeps up when the event loop is CPU-bound: it is a process of its own
(`bot.observe.writer`), so building rows, encoding JSON and talking to SQLite never wait for the
bot's GIL, nor the bot for them. A batch is one hand-over (its records' field dicts, pickled).
Retention deletes in bounded batches through the same process, between the writer's batches, so
a prune of millions of rows never holds the writer up for more than one small delete. The process
starts with the first batch: an idle bot, with nothing recorded, runs none (retention then deletes
on a thread of the bot's; a batch arriving meanwhile waits SQLite's busy timeout for one small
delete). Copying the WAL back into the database (a checkpoint) runs on a thread and connection of
the bot's, never inside one of the writer's commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.db import action_writes, open_database, provenance
from bot.db.migrate import upgrade_postgresql
from bot.db.records import ActionRecord
from bot.db.retry import RetryPolicy, StorageHealth, StorageUnavailable, retrying, storage_fault
from bot.kernel.log import get_logger
from bot.observe.fingerprint import fingerprint, relative_path, root_prefixes
from bot.observe.writer import WriterConfig, WriterProcess
from bot.trust.redact import Redactor

__all__ = ["ActionRecorder", "PendingAction", "Subscriber"]

_log = get_logger(__name__)
_BATCH = 2000
# Retention deletes this many rows per statement at first, then sizes its batches so each takes
# about `_PRUNE_BATCH_S` (the writer waits at most one batch, whatever the disk and indexes cost).
_PRUNE_BATCH = 1000
_PRUNE_BATCH_S = 0.01
_PRUNE_BATCH_RANGE = (100, 5000)

_SWITCH_INTERVAL_S = 0.0005
# The WAL is copied back into the database (checkpointed) at most this often, off the writer's thread.
_CHECKPOINT_EVERY_S = 1.0

Subscriber = Callable[[ActionRecord], None]


@dataclass
class PendingAction:
    """What a `with recorder.action(...)` block can add before it is recorded."""

    cost_usd: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    ok: bool | None = None  # set False to record a handled failure without raising


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
        checkpoint_every_s: float = _CHECKPOINT_EVERY_S,
    ) -> None:
        # A SQLite file, or a PostgreSQL URL (whose store needs no checkpoints of ours).
        self._database = database
        # Set when several bot processes share the database: this one's shards label, on every record.
        self.process: str | None = None
        self._sqlite_path = None if action_writes.is_postgresql(database) else Path(database)
        self._retry = retry or RetryPolicy(attempts=5)
        self._storage = storage
        self._busy_timeout_ms = busy_timeout_ms
        self._redactor = redactor or Redactor()
        self._writer_process = WriterProcess(
            WriterConfig(database, ndjson_path, ndjson_max_bytes, ndjson_backups, busy_timeout_ms)
        )
        self.repo_root = repo_root
        # Other checkouts whose frames count as in-repo: the repository the bot works on, when
        # it is not the one this code was started from.
        self.more_roots = more_roots
        self._clock = clock
        # Each record's field dict (what the writer process is sent), not the record: a queued
        # record outlives the young generations, and every object that does brings the next full
        # garbage collection nearer (each walks the whole heap); the record itself is left to its
        # subscribers. None is the stop marker `close()` puts behind the last record to write.
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=queue_size)
        self._writer: asyncio.Task[None] | None = None
        self._subscribers: list[Subscriber] = []
        # Checkpoints run on a thread and connection of their own: the writer's connection never
        # runs one (it would stall the writer and a prune for tens of milliseconds each time).
        self._checkpointer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal-checkpoint")
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._checkpoint_every_s = checkpoint_every_s
        self._checkpoint: asyncio.Future[BaseException | None] | None = None
        self._checkpointed_at = 0.0
        self.dropped_queue_full = 0  # not queued: the queue was full
        self.dropped_unwritten = 0  # queued, but the database write was given up
        self.written = 0
        self.recorded = 0
        self.write_errors = 0  # batches given up
        self.ndjson_errors = 0  # batches in the database but missing from the NDJSON file

    @property
    def writer_pid(self) -> int | None:
        """The action writer process's id while it runs."""
        return self._writer_process.pid

    @property
    def dropped(self) -> int:
        """Every record that never reached the database, whatever the reason."""
        return self.dropped_queue_full + self.dropped_unwritten

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
            ts=self.now(),
            kind=kind,
            source=source,
            ok=ok,
            duration_ms=round(duration_ms, 3),
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            message_id=message_id,
            cost_usd=cost_usd,
            error_type=error_type,
            error_message=error_message,
            fingerprint=fingerprint_id,
            frames=frames,
            run_id=run_id,
            extra=self._redactor.value(extra) if extra else {},
            invocation=self._redactor.value(invocation) if invocation else None,
            reply=self._redactor.value(reply) if reply else None,
            samples=samples or None,
            process=self.process,
        )
        self.recorded += 1
        for subscriber in self._subscribers:
            try:
                subscriber(record)
            except Exception:
                _log.exception("action subscriber failed", subscriber=repr(subscriber))
        try:
            self._queue.put_nowait(record.fields())
        except asyncio.QueueFull:
            self.dropped_queue_full += 1
        return record

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

    # -- the writer daemon ------------------------------------------------------------------------

    async def run_writer(self) -> None:
        """Drain the queue into SQLite and NDJSON in batches until `close()` (runs as a daemon)."""
        self._writer = asyncio.current_task()
        # A thread waiting for the GIL asks for it only after a whole switch interval without a
        # release; a busy loop releases it at every look at its selector (well under CPython's
        # 5 ms), which restarts that wait. Threads that hold SQLite's locks while they wait (the
        # bot's aiosqlite connection, the checkpointer) starved that way; at 0.5 ms they get
        # their turn. (The action writer is a process, and waits for no GIL of ours.)
        sys.setswitchinterval(min(sys.getswitchinterval(), _SWITCH_INTERVAL_S))
        await self._migrate()
        try:
            # The writer process starts with the first batch, not here: a bot with nothing to record
            # (idle) runs no child process, and a batch waits its ~0.1 s start once.
            stop = False
            while not stop:
                batch = [await self._queue.get(), *self._take(_BATCH - 1)]
                stop = None in batch
                await self._write_batch(batch)
                self._check_identity()
                self._checkpoint_soon()
        finally:
            await asyncio.shield(self._writer_process.close())
            await asyncio.shield(self._close_checkpointer())

    async def _migrate(self) -> None:
        """Bring the schema to the head before the writer process writes to it."""
        if self._sqlite_path is None:
            await asyncio.to_thread(upgrade_postgresql, str(self._database))
        else:
            await (await open_database(self._sqlite_path, busy_timeout_ms=self._busy_timeout_ms)).close()

    def _checkpoint_soon(self) -> None:
        """Start a checkpoint on its own thread unless one is running or one ran lately."""
        if self._sqlite_path is None:
            return
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        if time.monotonic() - self._checkpointed_at < self._checkpoint_every_s:
            return
        self._checkpointed_at = time.monotonic()
        loop = asyncio.get_running_loop()
        checkpoint = loop.run_in_executor(self._checkpointer, self._run_checkpoint)
        checkpoint.add_done_callback(self._checkpoint_done)
        self._checkpoint = checkpoint

    def _run_checkpoint(self) -> BaseException | None:
        """On the checkpoint thread. A failure (storage trouble) is logged and returned (the loop
        reports it to StorageHealth); the next checkpoint retries."""
        try:
            if self._checkpoint_conn is None:
                assert self._sqlite_path is not None
                self._checkpoint_conn = action_writes.open_writer(self._sqlite_path, self._busy_timeout_ms)
            action_writes.checkpoint(self._checkpoint_conn)
        except (sqlite3.Error, OSError) as exc:
            _log.warning("checkpointing the action log failed", error=str(exc))
            return exc
        return None

    def _checkpoint_done(self, done: asyncio.Future[BaseException | None]) -> None:
        """On the loop: a checkpoint that failed on storage counts toward the storage fault."""
        if done.cancelled() or done.exception() is not None or (error := done.result()) is None:
            return
        if storage_fault(error) != "locked":  # a passive checkpoint that met a reader only waits
            self._storage_failed(error)

    def _storage_failed(self, error: BaseException) -> None:
        """A write of the recorder's own (a checkpoint, the NDJSON copy) failed: a storage fault, if
        it is one, is reported like a write given up."""
        fault = storage_fault(error)
        if fault is not None and self._storage is not None:
            self._storage.failed(fault, str(error))

    def _check_identity(self) -> None:
        """After each flush: is the database file still the one at its path (bot/db/identity.py)?"""
        if self._storage is not None and self._sqlite_path is not None:
            self._storage.check_identity()

    async def _close_checkpointer(self) -> None:
        """Wait for a running checkpoint, run a last one, and close the checkpoint connection."""
        if self._sqlite_path is None:
            return
        self._checkpointed_at = 0.0
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])
        self._checkpoint_soon()
        assert self._checkpoint is not None
        await asyncio.wait([self._checkpoint])

        def close() -> None:
            conn, self._checkpoint_conn = self._checkpoint_conn, None
            if conn is not None:
                conn.close()

        await asyncio.get_running_loop().run_in_executor(self._checkpointer, close)

    async def close(self, timeout: float = 30) -> None:
        """Write everything recorded so far, then stop the writer.

        A writer still retrying a failing database at the timeout is stopped; what it had not
        written is counted as dropped.
        """
        writer = self._writer
        if writer is None or writer.done():
            return
        try:
            await asyncio.wait_for(self._queue.put(None), timeout)
            await asyncio.wait([writer], timeout=timeout)
        except TimeoutError:
            pass
        if not writer.done():
            writer.cancel()
            await asyncio.wait([writer], timeout=5)
            left = self._take(self._queue.qsize())
            self.dropped_unwritten += sum(1 for record in left if record is not None)
            for _ in left:
                self._queue.task_done()

    def _take(self, limit: int) -> list[dict[str, Any] | None]:
        batch: list[dict[str, Any] | None] = []
        while len(batch) < limit:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    async def _write_batch(self, batch: list[dict[str, Any] | None]) -> None:
        records = [record for record in batch if record is not None]
        try:
            if records and await self._insert(records):
                self.written += len(records)
        except asyncio.CancelledError:
            self.dropped_unwritten += len(records)  # stopped by close() while retrying
            raise
        finally:
            for _ in batch:
                self._queue.task_done()

    async def _insert(self, rows: list[dict[str, Any]]) -> bool:
        """Write a batch, retrying storage faults; False (and counted dropped) if given up."""
        try:
            ndjson_error = await retrying(
                lambda: self._writer_process.call("store", rows),
                what="action records",
                policy=self._retry,
                health=self._storage,
            )
        except StorageUnavailable:
            pass  # logged and reported to StorageHealth by `retrying`
        except Exception:
            _log.exception("writing action records failed (not retried)", count=len(rows))
        else:
            if ndjson_error is not None:
                # In the database, missing from the NDJSON file: counted, not retried — and a storage
                # fault like any other write's (a full disk under the log is announced, not only logged).
                self._ndjson_failed(ndjson_error, len(rows))
            return True
        self.write_errors += 1
        self.dropped_unwritten += len(rows)
        await self._log_only(rows)
        return False

    async def _log_only(self, rows: list[dict[str, Any]]) -> None:
        """A batch the database did not take goes to the NDJSON log all the same: the log holds what
        the database missed (a storage incident says so)."""
        try:
            ndjson_error = await self._writer_process.call("log", rows)
        except Exception as exc:
            _log.error("keeping unwritten action records in NDJSON failed", count=len(rows), error=str(exc))
            return
        if ndjson_error is not None:
            self._ndjson_failed(ndjson_error, len(rows))

    def _ndjson_failed(self, ndjson_error: tuple[int | None, str], count: int) -> None:
        errno_, text = ndjson_error
        self.ndjson_errors += 1
        _log.error("appending action records to NDJSON failed", count=count, error=text)
        error = OSError(text)
        error.errno = errno_
        self._storage_failed(error)

    async def flush(self) -> None:
        """Wait until every record so far has been written (or failed to be)."""
        await self._queue.join()

    async def prune(self, retention_days: int, *, batch: int = _PRUNE_BATCH) -> int:
        """Delete records older than the retention in small batches; returns how many.

        Each delete is one request to the writer process, so the writer's batches go in between
        them and records keep being written while millions of expired rows go.
        """
        before = self.now() - retention_days * 86400
        pruned = 0
        while True:
            removed, more, took_s = await self._prune_step(before, batch)
            pruned += removed
            if self._writer is not None and not self._writer.done():
                self._checkpoint_soon()
            if not more:
                return pruned
            low, high = _PRUNE_BATCH_RANGE
            batch = max(low, min(high, int(batch * _PRUNE_BATCH_S / max(took_s, 0.001))))

    async def _prune_step(self, before: float, batch: int) -> tuple[int, bool, float]:
        # With no writer process running (no daemon, or nothing recorded yet: the retention at start
        # of an idle bot) a store of our own deletes, rather than starting the process for it.
        if self._writer is None or self._writer.done() or self._writer_process.pid is None:
            return await asyncio.to_thread(self._prune_step_here, before, batch)
        removed, more, took_s = await self._writer_process.call("prune", before, batch)
        return int(removed), bool(more), float(took_s)

    def _prune_step_here(self, before: float, batch: int) -> tuple[int, bool, float]:
        started = time.perf_counter()
        store = action_writes.open_action_store(self._database, self._busy_timeout_ms)
        try:
            removed, more = store.prune(before, batch)
        finally:
            store.close()
        return removed, more, time.perf_counter() - started

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
            "actions_written": self.written,
            "actions_dropped": self.dropped,
            "actions_dropped_queue_full": self.dropped_queue_full,
            "actions_dropped_unwritten": self.dropped_unwritten,
            "actions_queued": self._queue.qsize(),
            "action_write_errors": self.write_errors,
            "action_ndjson_errors": self.ndjson_errors,
        }


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
