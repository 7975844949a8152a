"""Subprocesses, run one way: no shell, a timeout, the whole process group killed on timeout or
cancellation, output kept (and bounded). Git runs through it via `mendbot.kernel.git`; code from a worktree
runs through it inside the sandbox (`mendbot.trust.sandbox`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from mendbot.kernel.waits import wait_for

__all__ = ["ProcessResult", "kill", "run_process"]


class ProcessResult(msgspec.Struct, frozen=True):
    """What a subprocess did: `code` is None when it was killed for running past its timeout."""

    code: int | None
    output: str
    errors: str
    duration_s: float
    data: bytes = b""  # stdout as bytes, when asked for (`binary=True`): blobs, not text

    @property
    def timed_out(self) -> bool:
        return self.code is None


# How long a killed process is waited for. SIGKILL ends it at once unless the kernel holds it in a
# write to a stalled disk; and on Python 3.11 `wait()` also waits for its pipes, which a process that left
# its group may hold. Neither may hold whoever killed it (a stop's drain, a run's cancellation).
_REAP_S = 2.0


async def kill(process: asyncio.subprocess.Process) -> None:
    """End `process` and its group at once (SIGKILL), and wait for it at most `_REAP_S`; past that, its
    pipes are closed on our side and asyncio reaps it whenever it ends. The process must lead its own
    session (`start_new_session`): its pgid is then its pid, and killing the group also ends what it
    spawned (pytest workers, a stuck server, a sandboxed bot) that would hold our pipe open."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        await wait_for(asyncio.shield(process.wait()), _REAP_S)
    except (ProcessLookupError, TimeoutError):
        transport = getattr(process, "_transport", None)  # asyncio's: Process has no public close
        if transport is not None:
            transport.close()


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
    merge_stderr: bool = True,
    input: bytes | None = None,
    binary: bool = False,
    pass_fds: Sequence[int] = (),
) -> ProcessResult:
    """Run `argv` (no shell) and wait for it and its output, at most `timeout_s` seconds.

    With `merge_stderr` both streams arrive interleaved in `output` (as a terminal would show them);
    otherwise stderr goes to `errors`. On timeout or cancellation the whole process group is killed;
    what was written before the timeout is kept. A missing executable raises FileNotFoundError.
    `input` is written to the process's stdin (else it reads nothing); with `binary`, stdout is kept
    as bytes in `data` and `output` is left empty.
    `pass_fds` are descriptors the process inherits under the same numbers (nothing else is inherited).
    """
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=asyncio.subprocess.DEVNULL if input is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        start_new_session=True,
        pass_fds=tuple(pass_fds),
    )
    out, err = bytearray(), bytearray()

    # Chunks land in buffers we own, so output read before a timeout survives the cancellation.
    async def pump(stream: asyncio.StreamReader | None, into: bytearray) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            into.extend(chunk)

    async def feed(stream: asyncio.StreamWriter | None) -> None:
        if stream is None or input is None:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stream.write(input)
            await stream.drain()
            stream.close()

    code: int | None
    try:
        await wait_for(
            asyncio.gather(
                process.wait(), feed(process.stdin), pump(process.stdout, out), pump(process.stderr, err)
            ),
            timeout_s,
        )
        code = process.returncode
    except TimeoutError:
        await kill(process)
        code = None
    except BaseException:
        await kill(process)
        raise
    return ProcessResult(
        code=code,
        output="" if binary else out.decode("utf-8", errors="replace"),
        errors=err.decode("utf-8", errors="replace"),
        duration_s=time.perf_counter() - started,
        data=bytes(out) if binary else b"",
    )
