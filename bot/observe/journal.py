"""The action journal: every action record as an NDJSON line, on disk before the database takes it.

`data/logs/actions.ndjson` is the newest segment; past `ndjson_max_bytes` it rotates to
`actions.ndjson.1`, `.2`, … Each line is one record's fields with its sequence number first,
`{"seq":1764989123456789,"ts":…,"kind":…}`: each record's is one more than the one before, across
restarts too — the wall clock has no part in it — so the database can say how far it has taken the
journal by one number (`journal_positions`, bot/db/action_writes.py) and the store can read on from
there — after a lock, a full disk, a restart, or into a new database when the old one was deleted.
(Numbers from before counting, `counted_from` in `actions.journal`, were the microsecond a record was
kept; lines from before sequence numbers are passed over when read.)

Since every number stands for one record, a reader knows what it did not find: a line cut short or not
JSON is `unreadable`, a number skipped is a record `missing` from the journal (a segment deleted, a file
truncated, a crash mid-write); each is logged and counted, never passed over in silence.

An append goes in whole or not at all: a short write (a disk with room for part of a batch) is written
on or cut back, so no half line is left for the next batch to be glued to.

Rotation never removes what the database has not taken: a segment past `ndjson_backups` goes only once
every record in it is stored (`stored()`), so while the database is away the journal grows instead.

`actions.journal` beside the segments names this journal (a random id): the database keeps one
position per journal, and several bot processes on one PostgreSQL each have their own. Deleted under
the running bot, it is written again with the next append (with the same id: the database's position
for it stays right).

`append` runs on the recorder's journal thread and `reader` on its store thread; rotation and listing
the segments hold one lock, and a reader keeps its segments open, so a rename under it changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec
import orjson

from mendbot.kernel.log import get_logger

__all__ = ["Journal", "JournalReader", "journal_line", "line_seq"]

_log = get_logger(__name__)

SEQ_PREFIX = b'{"seq":'
_TAIL_BYTES = 1 << 16
_ORJSON_OPTIONS = orjson.OPT_APPEND_NEWLINE
_dump_line = json.JSONEncoder(default=str, ensure_ascii=False, separators=(",", ":")).encode


def journal_line(seq: int, fields: dict[str, Any]) -> bytes:
    """One record's journal line: `{"seq":N,` and then its fields as orjson writes them, UTF-8.

    A record orjson refuses (a key that is not a string, an integer beyond 64 bits, a lone surrogate)
    goes through `json`, and fails there if it cannot be written at all.
    """
    try:
        body = orjson.dumps(fields, default=str, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError
        body = (_dump_line(fields) + "\n").encode("utf-8")
    return b'{"seq":%d,' % seq + body[1:]


def line_seq(line: bytes) -> int | None:
    """The sequence number a journal line starts with; None for a line without one."""
    if not line.startswith(SEQ_PREFIX):
        return None
    end = line.find(b",", len(SEQ_PREFIX))
    try:
        return int(line[len(SEQ_PREFIX) : end if end > 0 else None])
    except ValueError:
        return None


def _last_seq(path: Path) -> int:
    """The sequence number of the last whole line of the file at `path` that has one (0 if none)."""
    try:
        with path.open("rb") as handle:
            return _last_seq_of(handle)
    except OSError:
        return 0


def _last_seq_of(handle: IO[bytes]) -> int:
    """`_last_seq` of an open file; its position is left where it was."""
    where = handle.tell()
    try:
        size = handle.seek(0, os.SEEK_END)
        start = size
        while start > 0 and size - start < 16 * _TAIL_BYTES:
            start = max(0, start - _TAIL_BYTES)
            handle.seek(start)
            lines = handle.read(size - start).split(b"\n")
            if start > 0:
                lines = lines[1:]  # the first may be cut
            for line in reversed(lines):
                seq = line_seq(line) if line.endswith(b"}") else None
                if seq is not None:
                    return seq
        return 0  # none in the last megabyte: a journal from before sequence numbers
    finally:
        handle.seek(where)


class Journal:
    """The journal's files: appended to by one thread, read by another, rotated without losing
    what the database has not taken."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._handle: IO[bytes] | None = None
        self._identity: tuple[int, int] | None = None
        self._stored = 0  # the database holds every record up to here (told by the store thread)
        self._extra = False  # segments past `backups` were kept for the database
        self._id_path = path.with_suffix(".journal")
        segments = self.segments()
        # The last number in the journal when it was opened: this process numbers on from there.
        self.last_seq = max((_last_seq(segment) for segment in reversed(segments[-2:])), default=0)
        self.id, counted_from, self.id_saved = self._read_id()
        # From here on each number is one record (before it, numbers were microseconds, with gaps).
        self.counted_from = counted_from if counted_from is not None else self.last_seq + 1
        self.appended = 0  # lines appended by this process

    # -- naming -------------------------------------------------------------------------------------

    def _read_id(self) -> tuple[str, int | None, bool]:
        """The journal's id, where counting began (None: not yet) and whether both are saved; a new id
        when there is none (or it is unreadable)."""
        try:
            saved = json.loads(self._id_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = None
        found = saved.get("id") if isinstance(saved, dict) else None
        counted = saved.get("counted_from") if isinstance(saved, dict) else None
        counted = counted if isinstance(counted, int) and not isinstance(counted, bool) else None
        if isinstance(found, str) and found:
            return found, counted, counted is not None
        return uuid.uuid4().hex, None, False

    def _save_id(self) -> None:
        """Write `actions.journal` (with the first append: the directory may not be writable before), and
        again whenever it is gone."""
        if self.id_saved and self._id_path.exists():
            return
        staged = self._id_path.with_name(self._id_path.name + ".new")
        staged.write_text(
            json.dumps({"id": self.id, "counted_from": self.counted_from}) + "\n", encoding="utf-8"
        )
        staged.replace(self._id_path)
        if self.id_saved:
            _log.warning(
                "the action journal's identity file was gone: written again", path=str(self._id_path)
            )
        self.id_saved = True

    def segments(self) -> list[Path]:
        """The segment files, oldest first (`.N` … `.1`, then the current one)."""
        numbered: list[tuple[int, Path]] = []
        prefix = self.path.name + "."
        try:
            with os.scandir(self.path.parent) as entries:
                for entry in entries:
                    suffix = entry.name[len(prefix) :] if entry.name.startswith(prefix) else ""
                    if suffix.isdigit():
                        numbered.append((int(suffix), Path(entry.path)))
        except FileNotFoundError:
            return []
        found = [path for _, path in sorted(numbered, reverse=True)]
        if self.path.exists():
            found.append(self.path)
        return found

    def _rotated(self) -> list[Path]:
        """The rotated segments (`.N` … `.1`), oldest first."""
        return [segment for segment in self.segments() if segment != self.path]

    def size(self) -> int:
        """Bytes the journal's segments take."""
        total = 0
        for segment in self.segments():
            with contextlib.suppress(OSError):
                total += segment.stat().st_size
        return total

    # -- the journal thread ---------------------------------------------------------------------------

    def append(self, lines: list[bytes]) -> None:
        """Append whole lines (each ends in a newline); rotate past the size limit.

        On a failure (a full disk) nothing of the batch is left in the file — a short write is written
        on, and what it left is cut back when the rest fails — and the OSError is raised: the caller
        keeps the lines and tries again.
        """
        handle = self._open()
        fd = handle.fileno()
        # The file's size, not the handle's position: the file may have been cut shorter under it
        # (appends still land at its end), and cutting back to a position past the end would grow it.
        start = os.fstat(fd).st_size
        data = memoryview(b"".join(lines))
        try:
            while data:
                # os.write says how much it took: the kernel takes what fits, and only the next call,
                # with no room left at all, raises ENOSPC.
                data = data[os.write(fd, data) :]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
        self.appended += len(lines)
        if os.fstat(fd).st_size >= self.max_bytes:
            self._rotate()

    def _open(self) -> IO[bytes]:
        """The current segment, opened again if it is not the file at the path any more (rotated by
        hand, deleted: lines written into a deleted file would be lost with it)."""
        handle = self._handle
        if handle is not None:
            try:
                now = os.stat(self.path)
                if (now.st_dev, now.st_ino) == self._identity:
                    self._save_id()  # its identity file deleted alone: written again
                    return handle
            except FileNotFoundError:
                pass
            handle.close()
            self._handle = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._save_id()
        handle = self.path.open("ab", buffering=0)
        found = os.fstat(handle.fileno())
        self._identity = (found.st_dev, found.st_ino)
        if handle.seek(0, os.SEEK_END) > 0:
            with self.path.open("rb") as check:  # a line a crash cut short must not swallow the next
                check.seek(-1, os.SEEK_END)
                if check.read(1) != b"\n":
                    handle.write(b"\n")
        self._handle = handle
        return handle

    def _rotate(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
            numbered = self._rotated()
            for index, segment in zip(range(len(numbered), 0, -1), numbered, strict=True):
                segment.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
            self._drop_taken()

    def stored(self, seq: int) -> None:
        """The database holds every record up to `seq` (from the store thread): segments kept past
        `backups` for it may go now."""
        self._stored = max(self._stored, seq)
        if self._extra:
            with self._lock:
                self._drop_taken()

    def _drop_taken(self) -> None:
        """Remove the oldest segments past `backups` whose records the database holds (under the lock)."""
        segments = self._rotated()
        while len(segments) > self.backups:
            oldest = segments[0]
            if _last_seq(oldest) > self._stored:
                break
            oldest.unlink(missing_ok=True)
            segments.pop(0)
        self._extra = len(segments) > self.backups

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    # -- the store thread ------------------------------------------------------------------------------

    def reader(self, after: int) -> JournalReader:
        """A reader of the records after sequence number `after`, in order."""
        return JournalReader(self, after)

    def _open_segments(self, after: int, held: Collection[tuple[int, int]]) -> list[IO[bytes]]:
        """Segments to read on from `after` that the reader does not hold (`held`: device and inode of
        each), oldest first, open — under the lock, so no rename comes between.

        Looked at newest first, by their first line: each is taken, back to the one the position is in
        (it begins at or before `after`) or one the reader holds. The position may have been moved on
        past records stored from memory into a segment the reader never held (a rotation made it
        meanwhile): that segment is taken too, for the records past the position still in it. A segment
        without a numbered first line (empty, or from before sequence numbers) is taken if it is the
        newest (appends go on in it) or holds a record past `after`.
        """
        opened: list[IO[bytes]] = []
        with self._lock:
            segments = self.segments()
            for index in reversed(range(len(segments))):
                try:
                    handle = segments[index].open("rb")
                except FileNotFoundError:
                    continue
                status = os.fstat(handle.fileno())
                if (status.st_dev, status.st_ino) in held:
                    handle.close()
                    break
                begins = line_seq(handle.readline())
                handle.seek(0)
                newest = index == len(segments) - 1
                if begins is not None or newest or _last_seq_of(handle) > after:
                    opened.append(handle)
                else:
                    handle.close()
                if begins is not None and begins <= after:
                    break
        opened.reverse()
        return opened


class JournalReader(msgspec.Struct):
    """Reads the journal on from a position, across rotations; `take()` returns parsed records.

    What it cannot give is counted and logged: `unreadable`, lines past the position that are cut short,
    not JSON, or (told by the store) not a record; `missing`, records numbered past the position that are
    not in the journal at all. Of both, `lost_after(seq)` says how many were numbered after `seq`."""

    journal: Journal
    after: int  # the last sequence number returned (or skipped)
    unreadable: int = 0
    missing: int = 0
    fresh_after: int = 0  # records numbered after this one are this process's (`lost_fresh`)
    lost_fresh: int = 0  # of the unreadable and missing, records numbered after `fresh_after`
    _open: list[IO[bytes]] = msgspec.field(default_factory=list)
    _held: tuple[int, bytes] | None = None  # a line read past `upto`, returned by a later take()

    def take(self, upto: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Up to `limit` records with `after < seq <= upto`, in order. Every record up to `upto` is on
        disk already (the store asks only for journaled ones); fewer than `limit` means none are left."""
        found: list[tuple[int, dict[str, Any]]] = []
        for seq, line in self._lines():
            if seq <= self.after:
                continue  # a line held back while the position moved past it (stored from memory)
            if seq > upto:
                self._held = (seq, line)
                break
            self._skipped_to(seq)
            self.after = seq
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                self.lost(seq, f"a line that is not JSON ({exc})")
                continue
            if not isinstance(record, dict):
                self.lost(seq, "a line that is not a JSON object")
                continue
            record.pop("seq", None)
            found.append((seq, record))
            if len(found) >= limit:
                break
        return found

    def lost(self, seq: int, why: str) -> None:
        """The record numbered `seq` cannot be read back: counted, and logged with why."""
        self.unreadable += 1
        if seq > self.fresh_after:
            self.lost_fresh += 1
        _log.error(
            "an action record in the journal cannot be read: passed over",
            seq=seq,
            why=why,
            journal=str(self.journal.path),
        )

    def missed(self, upto: int) -> int:
        """Records numbered after the position up to `upto` are not in the journal: counted (those
        numbered since counting began — before, numbers had gaps), logged; how many."""
        first = max(self.after, self.journal.counted_from - 1)
        count = max(0, upto - first)
        if count:
            self.missing += count
            self.lost_fresh += max(0, upto - max(first, self.fresh_after))
            _log.error(
                "action records are missing from the journal: passed over",
                after=self.after,
                upto=upto,
                missing=count,
                journal=str(self.journal.path),
            )
        return count

    def _skipped_to(self, seq: int) -> None:
        """The next line read is `seq`: the numbers between the position and it were never found."""
        if seq > self.after + 1:
            self.missed(seq - 1)

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        if self._held is not None:
            held, self._held = self._held, None
            yield held
        looked = False
        while True:
            while self._open:
                handle = self._open[0]
                yield from self._lines_of(handle)
                if len(self._open) == 1:
                    break  # the newest open segment: lines may still be appended to it
                handle.close()
                self._open.pop(0)
            if looked:
                return
            looked = True  # once per call: segments that appeared since (a rotation)
            holding = {(found.st_dev, found.st_ino) for found in (os.fstat(h.fileno()) for h in self._open)}
            newer = self.journal._open_segments(self.after, holding)
            if not newer:
                return
            self._open.extend(newer)

    def _lines_of(self, handle: IO[bytes]) -> Iterator[tuple[int, bytes]]:
        """The whole lines after the position in `handle`, from where it stands; a segment wholly at or
        before the position is skipped by its last line. A file cut shorter than where the handle stands
        (truncated under the bot) is read again from its start."""
        if handle.tell() > os.fstat(handle.fileno()).st_size:
            handle.seek(0)
        if handle.tell() == 0 and 0 < _last_seq_of(handle) <= self.after:
            handle.seek(0, os.SEEK_END)
            return
        unnumbered = 0
        while line := handle.readline():
            if not line.endswith(b"\n"):  # an append under way: read it whole next time
                handle.seek(-len(line), os.SEEK_CUR)
                break
            seq = line_seq(line)
            if seq is None:
                unnumbered += line.strip() != b""
            elif seq > self.after:
                yield seq, line
        if unnumbered:
            # From before sequence numbers, or the tail of a line cut short (whose number, if it had
            # one, is counted as missing when the next line is read).
            _log.warning(
                "journal lines without a sequence number passed over",
                count=unnumbered,
                segment=getattr(handle, "name", ""),
            )

    def close(self) -> None:
        for handle in self._open:
            handle.close()
        self._open.clear()
