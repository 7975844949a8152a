"""The action writer process: where recorded actions are written to SQLite and NDJSON.

Writing an action costs more Python time than recording it (building the row, the JSON of its
nested fields, the NDJSON line, the SQLite calls). In the bot's process all of it competed with
the event loop for one GIL: at a burst the writer fell behind and the queue dropped records, and
while it waited for the GIL inside a transaction it held SQLite's write lock. So the writing
runs in a process of its own, started by the recorder (`WriterProcess`) as
`python -m bot.observe.writer`, which imports only the standard library, orjson (the NDJSON lines)
and `bot.db.action_writes`. The bot sends it batches of record field dicts, pickled (about a
microsecond a record on the loop), over the child's stdin, and reads one reply per request from
its stdout: requests are served one at a time, in order, so retention's small deletes fall
between two batches and never inside one.

The process ends when its stdin closes: when the recorder closes it, and when the bot dies (even
by kill -9), so it never outlives the bot. It runs in a session of its own and ignores SIGINT
and SIGTERM, which a terminal's Ctrl-C or a service manager's stop send to every process: the bot
decides when the writer stops, after it has written what was recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pickle
import signal
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from bot.db import action_writes

__all__ = ["WriterConfig", "WriterGone", "WriterProcess"]

_HEADER = struct.Struct("!I")
_PIPE_BYTES = 1 << 20
_ENVIRONMENT = frozenset({"PATH", "HOME", "LANG", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR"})
# Where the `bot` package this code runs from lives: the writer process imports it from there too.
_IMPORT_ROOT = str(Path(__file__).resolve().parent.parent.parent)
# `python -m` would put the working directory first on the path: a bot mendbot is attached to runs from its
# own, where a `bot.py` would be taken for mendbot's `bot`. mendbot's own directory goes first instead.
_START = (
    f"import runpy, sys; sys.path.insert(0, {_IMPORT_ROOT!r}); "
    "runpy.run_module('bot.observe.writer', run_name='__main__', alter_sys=True)"
)
_dump_line = json.JSONEncoder(default=str, ensure_ascii=False, separators=(",", ":")).encode
_ORJSON_OPTIONS = orjson.OPT_APPEND_NEWLINE


def ndjson_line(record: dict[str, Any]) -> bytes:
    """One record as an NDJSON line, UTF-8: what `_dump_line` writes, by orjson at a fifth of the CPU.

    A record orjson refuses (a key that is not a string, an integer beyond 64 bits, a lone surrogate)
    goes through `json` as before,
    and fails there as before if it cannot be written at all.
    """
    try:
        return orjson.dumps(record, default=str, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError
        return (_dump_line(record) + "\n").encode("utf-8")


@dataclass(frozen=True)
class WriterConfig:
    """Where the writer process writes (sent to it when it starts)."""

    database: Path | str  # a SQLite file, or a PostgreSQL URL
    ndjson_path: Path
    ndjson_max_bytes: int
    ndjson_backups: int
    busy_timeout_ms: int


class WriterGone(Exception):
    """The writer process stopped while a request was in flight (its result is unknown)."""


class NdjsonFile:
    """Append-only NDJSON with size-based rotation (`actions.ndjson.1`, `.2`, …)."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups

    def append(self, lines: list[bytes]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as handle:
            handle.write(b"".join(lines))
            size = handle.tell()
        if size >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))


# -- in the writer process ---------------------------------------------------------------------


class _Writer:
    """The writer process's state: its store and the NDJSON file."""

    def __init__(self, config: WriterConfig) -> None:
        self._store = action_writes.open_action_store(config.database, config.busy_timeout_ms)
        self._ndjson = NdjsonFile(config.ndjson_path, config.ndjson_max_bytes, config.ndjson_backups)

    def store(self, records: list[dict[str, Any]]) -> tuple[int | None, str] | None:
        """The batch into SQLite, then its NDJSON copy; the NDJSON error (errno, text), if appending
        failed.

        The records are in SQLite before the NDJSON is touched, so a failing NDJSON file loses
        nothing there; it is answered, not raised (raising would make the bot retry the database
        write).
        """
        self._store.write(records)
        return self.log(records)

    def log(self, records: list[dict[str, Any]]) -> tuple[int | None, str] | None:
        """Only the NDJSON copy: a batch the database did not take is kept in the log all the same."""
        try:
            self._ndjson.append([ndjson_line(record) for record in records])
        except OSError as exc:
            return exc.errno, str(exc)
        return None

    def prune(self, before_ts: float, limit: int) -> tuple[int, bool, float]:
        """One retention step: (rows removed, whether more may be left, seconds it took)."""
        started = time.perf_counter()
        removed, more = self._store.prune(before_ts, limit)
        return removed, more, time.perf_counter() - started

    def close(self) -> None:
        self._store.close()


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _reply_frame(status: str, value: object) -> bytes:
    try:
        body = pickle.dumps((status, value), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # an exception that does not pickle still reaches the bot, as text
        body = pickle.dumps(("error", RuntimeError(f"{type(value).__name__}: {value}")))
    return _HEADER.pack(len(body)) + body


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer requests until the bot closes the pipe: ("open", config), ("store", records),
    ("log", records), ("prune", before_ts, limit), each with ("ok", result) or ("error", exception)."""
    writer: _Writer | None = None
    try:
        while (header := _read_exactly(requests, _HEADER.size)) is not None:
            body = _read_exactly(requests, _HEADER.unpack(header)[0])
            if body is None:
                break
            op, *args = pickle.loads(body)
            try:
                if op == "open":
                    writer = _Writer(*args)
                    result: object = None
                elif writer is None:
                    raise RuntimeError(f"{op!r} before the writer was opened")
                elif op == "store":
                    result = writer.store(*args)
                elif op == "log":
                    result = writer.log(*args)
                elif op == "prune":
                    result = writer.prune(*args)
                else:
                    raise RuntimeError(f"unknown request {op!r}")
                frame = _reply_frame("ok", result)
            except Exception as exc:
                frame = _reply_frame("error", exc)
            replies.write(frame)
            replies.flush()
    except BrokenPipeError:
        pass  # the bot is gone
    finally:
        if writer is not None:
            writer.close()


def main() -> None:
    """The writer process's entry point: requests on stdin, replies on the original stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Replies go to a copy of stdout; anything printed by accident goes to stderr, not into them.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, replies)


# -- in the bot --------------------------------------------------------------------------------


def _writer_environment() -> dict[str, str]:
    """What the writer process may see of the bot's environment: locale, paths and PostgreSQL's
    own connection settings (PG*, for a URL without a password), never the bot's secrets."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if name in _ENVIRONMENT or name.startswith(("LC_", "PG"))
    }
    kept["PYTHONPATH"] = os.pathsep.join(filter(None, [_IMPORT_ROOT, os.environ.get("PYTHONPATH")]))
    return kept


def _widen_pipe(process: asyncio.subprocess.Process) -> None:
    """Give the request pipe room for a whole batch (64 KiB by default): one write hands the
    batch over, instead of a piece every time the bot's busy loop gets round to the pipe."""
    transport = process.stdin.transport if process.stdin is not None else None
    pipe = transport.get_extra_info("pipe") if transport is not None else None
    if pipe is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
        with contextlib.suppress(OSError):  # capped by /proc/sys/fs/pipe-max-size; the default works
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


def _exited(process: asyncio.subprocess.Process) -> bool:
    """Whether `process` has ended, also in the moment before asyncio notices: its exit status is
    collected by a watcher thread and reported on a later turn of the loop, and a request sent to the
    process in between would be lost with it."""
    if process.returncode is not None:
        return True
    if not hasattr(os, "waitid"):  # macOS: asyncio's own view is all there is
        return False
    try:  # WNOWAIT: look without collecting the status, which stays asyncio's to collect
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # collected already
        return True


class WriterProcess:
    """The writer process seen from the bot: started on first use (and again after it died),
    one request at a time, in order."""

    def __init__(self, config: WriterConfig) -> None:
        self._config = config
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start the process now (it would be at the first request), so the first batch does not
        wait for it."""
        async with self._lock:
            await self._running()

    async def call(self, op: str, *args: Any) -> Any:
        """Send one request and wait for its result; its exception is raised here.

        `WriterGone` when the process stopped before answering: the request may or may not have
        been carried out. A call cancelled half-way stops the process (a reply left unread in
        the pipe would answer the next request); the next call starts a new one.
        """
        async with self._lock:
            status, value = await self._exchange(await self._running(), (op, *args))
        if status == "error":
            raise value
        return value

    async def _running(self) -> asyncio.subprocess.Process:
        """The process, started anew when there is none or it has exited (under the lock)."""
        if self._process is not None and _exited(self._process):
            await self._stop(self._process)
        if self._process is None:
            return await self._start()
        return self._process

    async def _start(self) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _START,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=_writer_environment(),
            # Not in the terminal's process group: a Ctrl-C there must not reach it, not even while
            # it is still importing, before it ignores SIGINT.
            start_new_session=True,
        )
        self._process = process
        _widen_pipe(process)
        status, value = await self._exchange(process, ("open", self._config))
        if status == "error":
            await self._stop(process)
            raise value
        return process

    async def _exchange(self, process: asyncio.subprocess.Process, request: tuple[Any, ...]) -> Any:
        assert process.stdin is not None and process.stdout is not None
        body = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            process.stdin.write(_HEADER.pack(len(body)) + body)
            await process.stdin.drain()
            header = await process.stdout.readexactly(_HEADER.size)
            reply = await process.stdout.readexactly(_HEADER.unpack(header)[0])
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            code = await self._stop(process)
            raise WriterGone(f"the action writer process stopped (exit code {code})") from exc
        except BaseException:
            await asyncio.shield(self._stop(process))
            raise
        return pickle.loads(reply)

    async def _stop(self, process: asyncio.subprocess.Process, timeout: float = 10) -> int | None:
        """Close the process's stdin (it finishes its request and exits), killing it if it does not."""
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if self._process is process:
            self._process = None
        return process.returncode

    async def close(self) -> None:
        """Stop the process once the request in flight, if any, has been answered."""
        async with self._lock:
            if self._process is not None:
                await self._stop(self._process)


if __name__ == "__main__":
    main()
