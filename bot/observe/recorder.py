"""ActionRecorder: the one way an action becomes a record, and where it goes: the journal, then the database.

`record()` runs on the event loop and never waits on disk: it redacts, fingerprints and hands the
record to in-process subscribers (incidents, the anomaly detector, metrics) — a failure at once, a
success a moment later with the others of that moment (`take_in`), so that a handler's answer and the
bot's next one never wait for its bookkeeping; then the record goes the way down, in two halves with a
thread each:

- into the action journal, `data/logs/actions.ndjson` (bot/observe/intake.py, bot/observe/journal.py):
  numbered, encoded, appended in one write per batch; only then is it the database's;
- into the database (bot/observe/filler.py, bot/db/action_writes.py): in batches, each with the journal
  position it reaches, in one transaction, on a connection of its own, so neither the event loop nor
  the bot's queries wait for it.

**Nothing is lost to the database.** A slow, locked, full, unreachable or pruned database delays
records; it never drops one. The store takes records from memory while it keeps up and reads them
back from the journal when memory let them go, and after a restart it reads on from where the
database's position stands — so it catches up after a burst, a lock, a full disk or a restart, and a
database deleted or replaced under the bot is filled again from the journal at the next start
(`on_recovery` says what came back; the bot announces it in #dev). A record the database refuses for
what it holds is passed over, counted (`actions_unstorable`) and logged; it stays in the journal.

**Memory stays bounded.** Records wait in memory only until the journal has them. When even the
journal cannot keep up (its disk is full or failing), successful records past `queue_size` are shed,
counted by kind (`shed`), and every failure is kept — in a reserve of its own as large — so the
detector's evidence survives. A journal that is only slow (no append failed) has five times that
room before it sheds (bot/observe/intake.py).

**Every record is accounted for.** Each one taken in (`recorded`; a success kept for a moment counts
once it is) is stored, waiting (for the journal, or in it for the database), shed (counted by kind) or
unreadable (counted: its journal line cut short or not a record, or gone with a deleted or truncated
journal before the database took it) — or, rarely, refused by the database (`unstorable`). `on_loss`
listeners hear when the shed or unreadable count grows (the bot says so in #dev); /health and /metrics
show both.

This module stays whole: `record()`, what it keeps for a moment and the two halves' counts are one
account (every record taken in is in exactly one of them), read together or not at all.

Storage faults of either half are reported to `StorageHealth`, which announces them as a storage
incident and clears it when a write succeeds. After each batch the database file's identity is checked
too (deleted, replaced, moved away: SQLite goes on writing into the lost file without an error).
Retention (`prune`) deletes in bounded steps on the store's thread, between its batches, and keeps the
files under their size before it plus the margin (`storage.prune_margin`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from mendbot.db import provenance
from mendbot.db.records import ActionRecord
from mendbot.db.retry import RetryPolicy, StorageHealth
from mendbot.kernel.log import get_logger
from mendbot.observe.filler import DatabaseFiller, PruneReport, Recovery
from mendbot.observe.fingerprint import fingerprint, relative_path, root_prefixes
from mendbot.observe.intake import JournalIntake
from mendbot.observe.journal import Journal
from mendbot.observe.outbound import failed_service
from mendbot.trust.redact import Redactor

__all__ = [
    "ActionRecorder",
    "PendingAction",
    "PruneReport",
    "RecordLoss",
    "Recovery",
    "Subscriber",
    "recovery_notice",
]

_log = get_logger(__name__)
# A thread waiting for the GIL asks for it only after a whole switch interval without a release; a busy
# loop releases it at every look at its selector (well under CPython's 5 ms), which restarts that wait.
# The journal's and the store's threads starved that way (and a handler recording in a tight loop would
# outrun the journal); at 0.5 ms they get their turn.
_SWITCH_INTERVAL_S = 0.0005
# A success is taken in (redacted, handed to the subscribers and on the way down) this long after it is
# recorded, with the others of that moment: not between a handler's end and the bot's next answer, where
# it cost a real bot's command a fifth of its time. A failure takes every success before it in first.
_LATER_S = 0.02

Subscriber = Callable[[ActionRecord], None]


class RecordLoss(msgspec.Struct, frozen=True):
    """Records that will never reach the database, so far: shed (by kind; how many of them failures),
    unreadable in the journal, and whether the database was found ahead of the journal at start."""

    shed: dict[str, int]
    shed_failures: int
    unreadable: int
    journal: Path
    rewound: tuple[int, int] | None = None  # (the database's position, where the journal ended)


class PendingAction(msgspec.Struct):
    """What a `with recorder.action(...)` block can add before it is recorded."""

    cost_usd: float = 0.0
    extra: dict[str, Any] = msgspec.field(default_factory=dict)
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
        prune_margin: float = 0.05,
        prune_margin_min_bytes: int = 4 << 20,
        timestamp: Callable[[], float] | None = None,
    ) -> None:
        # Set when several bot processes share the database: this one's shards label, on every record.
        self.process: str | None = None
        self._redactor = redactor or Redactor()
        self.repo_root = repo_root
        # Other checkouts whose frames count as in-repo: the repository the bot works on, when
        # it is not the one this code was started from.
        self.more_roots = more_roots
        self._clock = clock
        # The clock as a number: `time.time` where the clock is the real one (a datetime made only to be
        # read back cost ~0.4 µs a record).
        self._timestamp = timestamp or self.now
        self._subscribers: list[Subscriber] = []
        retry = retry or RetryPolicy(attempts=5)
        journal = Journal(ndjson_path, ndjson_max_bytes, ndjson_backups)
        self._intake = JournalIntake(
            journal,
            queue_size=queue_size,
            retry=retry,
            storage=storage,
            changed=self._journaled,
        )
        self._filler = DatabaseFiller(
            database,
            self._intake,
            retry=retry,
            storage=storage,
            busy_timeout_ms=busy_timeout_ms,
            prune_margin=prune_margin,
            prune_margin_min_bytes=prune_margin_min_bytes,
            changed=self._notify,
        )
        self._journal_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="action-journal")
        self._waiters: list[asyncio.Future[None]] = []
        self._writer: asyncio.Task[None] | None = None
        self.recorded = 0
        # Successes to take in: their fields (not yet redacted), or what works them out (`record_later`).
        self._later: list[dict[str, Any] | Callable[[], dict[str, Any]]] = []
        self._later_at: asyncio.TimerHandle | None = None
        self._later_s = _LATER_S
        self._loss_listeners: list[Callable[[RecordLoss], None]] = []
        self._loss_told = (0, 0, False)  # (shed, unreadable, rewound) as the listeners last heard

    # -- what the two halves say ---------------------------------------------------------------------

    @property
    def journal_id(self) -> str:
        """The id of this recorder's journal (its row in `journal_positions`)."""
        return self._intake.journal.id

    @property
    def waiting(self) -> int:
        """Records recorded but not in the database yet: on their way to the journal, or in it (in memory
        too, or only there). This process numbers its records one after another, so those in the journal
        are the numbers past the database's position (or its first) up to the journal's last."""
        intake, filler = self._intake, self._filler
        not_journaled = intake.waiting(0) + intake.waiting(1)
        return not_journaled + max(0, intake.journaled_seq - max(filler.stored, intake.first_seq - 1))

    @property
    def unreadable(self) -> int:
        """Records the journal could not give back to the store: a line cut short or not a record, or
        records missing from it (deleted or truncated under the bot before the database took them)."""
        return self._filler.unreadable

    @property
    def shed(self) -> Counter[str]:
        """Records shed because even the journal could not keep up, by kind."""
        return self._intake.shed

    @property
    def shed_failures(self) -> int:
        return self._intake.shed_failures

    @property
    def journaled(self) -> int:
        return self._intake.journaled

    @property
    def journal_errors(self) -> int:
        return self._intake.journal_errors

    @property
    def written(self) -> int:
        """Rows inserted by this process (from memory or read back from the journal)."""
        return self._filler.written

    @property
    def unstorable(self) -> int:
        """Records refused by the database for what they hold, or not encodable at all."""
        return self._filler.unstorable + self._intake.unencodable

    @property
    def write_errors(self) -> int:
        return self._filler.write_errors

    @property
    def recovery(self) -> Recovery | None:
        """What the store read back from the journal at start (None: nothing was missing)."""
        return self._filler.recovery

    @property
    def last_prune(self) -> PruneReport | None:
        return self._filler.last_prune

    @property
    def store_bytes(self) -> int:
        return self._filler.store_bytes

    @property
    def journal_bytes(self) -> int:
        """Bytes the action journal's segments take."""
        return self._intake.journal.size()

    def on_loss(self, listener: Callable[[RecordLoss], None]) -> None:
        """Call `listener` (on the loop) when records were shed or found unreadable, with the totals."""
        self._loss_listeners.append(listener)

    def _tell_loss(self) -> None:
        """After each step of either half (a batch journaled or refused, a batch stored): tell the loss
        listeners if more records were shed or found unreadable since they last heard. Records are
        shed only while the journal fails, and a failing journal is tried again after each backoff, so
        a storm of shed records is told once a try, not once a record."""
        filler = self._filler
        shed = sum(self.shed.values())
        now = (shed, self.unreadable, filler.rewound is not None)
        if now == self._loss_told:
            return
        self._loss_told = now
        loss = RecordLoss(
            dict(self.shed), self.shed_failures, self.unreadable, self._intake.journal.path, filler.rewound
        )
        for listener in self._loss_listeners:
            try:
                listener(loss)
            except Exception:
                _log.exception("record loss listener failed", listener=repr(listener))

    def on_recovery(self, listener: Callable[[Recovery], None]) -> None:
        """Call `listener` with what the store read back from the journal at start (at once if it has)."""
        self._filler.on_recovery(listener)

    # -- producing ------------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop handing records to `subscriber` (not subscribed: nothing to do)."""
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

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
    ) -> ActionRecord | None:
        """Record one action. Never blocks, never raises for a full queue.

        `invocation` (what was asked) and `reply` (a digest of the answer) are redacted like
        `extra`; `samples` holds only in-repo frames and counts. On the event loop a success is taken in
        a moment later (`_LATER_S`, or at the next failure, `take_in` or `flush`): it returns None;
        anything else returns the record.
        """
        values = self._values(
            self._timestamp(),
            kind,
            source,
            ok=ok,
            duration_ms=duration_ms,
            error=error,
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            message_id=message_id,
            cost_usd=cost_usd,
            run_id=run_id,
            extra=extra,
            invocation=invocation,
            reply=reply,
            samples=samples,
        )
        if error is None and ok and self._kept_for_later(values):
            return None
        self.take_in()
        return self._publish(self._redacted(values))

    def _values(
        self,
        ts: float,
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
    ) -> dict[str, Any]:
        """A record's fields, not yet redacted; a failure's worked out from its error (in the failing
        action's context: the rows it read)."""
        error_type = error_message = fingerprint_id = None
        frames: list[str] = []
        if error is not None:
            error_type = type(error).__name__
            error_message = self._redactor.text(str(error), 1000)
            fingerprint_id, frames = fingerprint(error, self.repo_root, *self.more_roots)
            read_rows = self._read_rows()
            if read_rows:
                extra = {**(extra or {}), "read_rows": read_rows}
            outbound = failed_service(error)
            if outbound is not None:  # a call to another service failed under it: that service's storm
                service, caller_timed_out = outbound
                extra = {**(extra or {}), "outbound": service}
                if caller_timed_out:  # the call's own record says `cancelled`: this says it timed out
                    extra["outbound_outcome"] = "timeout"
        values: dict[str, Any] = {
            "ts": ts,
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
            "extra": extra or {},
            "invocation": invocation or None,
            "reply": reply or None,
            "samples": samples or None,
            "process": self.process,
        }
        return values

    def _kept_for_later(self, values: dict[str, Any] | Callable[[], dict[str, Any]]) -> bool:
        """Keep a success's fields (or what works them out) to take in a moment later; False off the
        event loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self._later.append(values)
        if self._later_at is None:
            self._later_at = loop.call_later(self._later_s, self.take_in)
        return True

    def record_later(
        self, kind: str, source: str, *, duration_ms: float, fields: Callable[[], dict[str, Any]]
    ) -> None:
        """Record a success whose other fields (`record`'s keywords: what was asked and answered, the
        ids) `fields` works out when it is taken in, a moment later, rather than now: on the event loop
        that work is then done after what the handler's caller is waiting for (the bot's answer to the
        same message, from a command whose listeners run first) rather than before it. Off the loop it
        is recorded at once."""
        ts = self._timestamp()

        def values() -> dict[str, Any]:
            return self._values(ts, kind, source, ok=True, duration_ms=duration_ms, **fields())

        if not self._kept_for_later(values):
            self.take_in()  # as `record` does: what was kept before it goes first
            self._publish(self._redacted(values()))

    def without_windows(self) -> None:
        """Take in, hand over and store every record at the loop's next turn, with no moment for more
        (`_LATER_S`, the journal's `_HAND_OVER_S`, the store's `_GATHER_S`): for a virtual world
        (mendbot.tools.world), which waits out every timer of the bot after each step — there the
        windows, tuning for a live bot's load, cost each message ~50 ms of real waiting."""
        self._later_s = self._intake.hand_over_s = self._filler.gather_s = 0.0

    def take_in(self) -> None:
        """Take in the successes kept for later, in the order they were recorded."""
        if self._later_at is not None:
            self._later_at.cancel()
            self._later_at = None
        later, self._later = self._later, []
        for kept in later:
            try:
                values = kept() if callable(kept) else kept
            except Exception:  # what works a record out is the recording's own code: a bug, logged
                _log.exception("working out a success's record failed")
                continue
            self._publish(self._redacted(values))

    def _redacted(self, values: dict[str, Any]) -> dict[str, Any]:
        """`values` with what was asked, what was answered and the extra fields redacted (in place)."""
        for key in ("extra", "invocation", "reply"):
            if values[key]:
                values[key] = self._redactor.value(values[key])
        return values

    def record_call(
        self,
        kind: str,
        source: str,
        *,
        ok: bool,
        duration_ms: float,
        failure: tuple[str, str, str] | None,
        frames: list[str],
        extra: dict[str, Any],
        guild_id: int | None = None,
        channel_id: int | None = None,
        user_id: int | None = None,
        message_id: int | None = None,
    ) -> ActionRecord:
        """Record a call the bot made to another service (bot/observe/outbound.py): no exception of its
        own to fingerprint, so `failure` gives its (error type, message, fingerprint), and `frames` the
        code that made it."""
        self.take_in()
        error_type, error_message, fingerprint_id = failure if failure is not None else (None, None, None)
        values: dict[str, Any] = {
            "ts": self._timestamp(),
            "kind": kind,
            "source": source,
            "ok": ok,
            "duration_ms": round(duration_ms, 3),
            "guild_id": guild_id,
            "channel_id": channel_id,
            "user_id": user_id,
            "message_id": message_id,
            "cost_usd": 0.0,
            "error_type": error_type,
            "error_message": self._redactor.text(error_message, 1000) if error_message else None,
            "fingerprint": fingerprint_id,
            "frames": frames,
            "run_id": None,
            "extra": self._redactor.value(extra),
            "invocation": None,
            "reply": None,
            "samples": None,
            "process": self.process,
        }
        return self._publish(values)

    def _publish(self, values: dict[str, Any]) -> ActionRecord:
        """Hand a record's values to the subscribers, then on the way down to the journal."""
        record = ActionRecord.trusted(values)
        self.recorded += 1
        for subscriber in self._subscribers:
            try:
                subscriber(record)
            except Exception:
                _log.exception("action subscriber failed", subscriber=repr(subscriber))
        self._intake.keep(values)  # the record's values as a dict, without building a second one
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

    # -- the writer daemon: journal, then database ------------------------------------------------------

    async def run_writer(self) -> None:
        """Journal what is recorded and fill the database from it until `close()` (runs as a daemon)."""
        self._writer = asyncio.current_task()
        sys.setswitchinterval(min(sys.getswitchinterval(), _SWITCH_INTERVAL_S))
        self._intake.start(asyncio.get_running_loop(), self._journal_thread)
        try:
            await self._filler.run()
        finally:
            await asyncio.shield(self._close_threads())

    async def _close_threads(self) -> None:
        """Close the store and the journal on their threads, and end the threads."""
        await self._filler.close()
        with contextlib.suppress(Exception):
            await asyncio.get_running_loop().run_in_executor(self._journal_thread, self._intake.journal.close)
        self._journal_thread.shutdown(wait=False)

    def _journaled(self) -> None:
        """A batch is in the journal (or was refused): the store may take it, and flushes look again."""
        self._filler.wake()
        self._notify()

    def _notify(self) -> None:
        self._tell_loss()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _settled(self, target: int, journal_tries: int, store_tries: int) -> bool:
        """Whether every record up to `target` is in the database, or waits on storage that failed again
        since the flush began (the journal's, or the database's past its attempts)."""
        intake, filler = self._intake, self._filler
        if filler.position_known and filler.stored >= target:
            return True
        if self._writer is not None and self._writer.done():
            return True
        if intake.journaled_seq < target:
            return intake.failing and intake.tries > journal_tries
        return filler.failing and filler.tries > store_tries

    async def flush(self) -> None:
        """Wait until every record so far is in the database — or waits in the journal on a database
        that still fails, or in memory on a journal that still fails (each tried once more first)."""
        self.take_in()
        intake, filler = self._intake, self._filler
        target, journal_tries, store_tries = intake.seq, intake.tries, filler.tries
        intake.hand_over()  # what waits for the journal's next hand-over goes now
        filler.hurried += 1
        try:
            while not self._settled(target, journal_tries, store_tries):
                if intake.failing:
                    intake.retry()
                filler.poke()
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                await waiter
        finally:
            filler.hurried -= 1

    async def close(self, timeout: float = 30) -> None:
        """Journal everything recorded so far, let the database take what it can, then stop.

        What the database has not taken by then (it is failing, or `timeout` passed) waits in the
        journal for the next start.
        """
        self.take_in()
        # A writer that has not started yet ends at once when it does.
        self._intake.stopping = self._filler.stopping = True
        self._intake.hand_over()
        self._filler.wake()
        writer = self._writer
        if writer is None or writer.done():
            return
        await asyncio.wait([writer], timeout=timeout)
        if not writer.done():
            writer.cancel()
            await asyncio.wait([writer], timeout=5)
        if self._filler.stored < self._intake.journaled_seq:
            _log.warning(
                "action records wait in the journal for the database",
                journal=str(self._intake.journal.path),
                waiting=self.waiting,
            )

    # -- retention ----------------------------------------------------------------------------------------

    async def prune(self, retention_days: int, **step: int) -> int:
        """Delete records older than the retention in bounded steps (bot/observe/filler.py); how many.

        Each step runs on the store's thread between its batches, so records keep being written while
        millions of expired rows go, and leaves the files no larger than they were when the prune began
        plus the margin (`last_prune` says what they were at their largest).
        """
        return await self._filler.prune(self.now() - retention_days * 86400, **step)

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
        shed = sum(self.shed.values())
        return {
            "actions_recorded": self.recorded,
            "actions_journaled": self.journaled,
            "actions_written": self.written,
            "actions_waiting": self.waiting,
            "actions_recovered": self._filler.recovered,
            "actions_shed": shed,
            "actions_shed_failures": self.shed_failures,
            "actions_unreadable": self.unreadable,
            "actions_unstorable": self.unstorable,
            "action_write_errors": self.write_errors,
            "action_journal_errors": self.journal_errors,
            "storage_bytes": self.store_bytes,
            "journal_bytes": self.journal_bytes,
        }


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


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
