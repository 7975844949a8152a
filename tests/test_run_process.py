"""`run_process` cancelled or timed out: it kills the process's group and does not wait on for ever for a
process it cannot see end — here one whose output pipe a process that left its group still holds (on
Python 3.11 asyncio's `wait()` waits for the pipes too), as a write stuck on a stalled disk would hold it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mendbot.kernel.process import run_process

# Starts a process in a session of its own that keeps the inherited stdout open, writes its pid, then
# sleeps as the group's leader: killing the group leaves the other one, and the pipe, alive.
HOLDS_THE_PIPE = """
import os, subprocess, sys, time
holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
with open(sys.argv[1] + ".tmp", "w") as out:
    out.write(str(holder.pid))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""
HANG_S = 120  # what the holder's 600 s would hold a wait for it: far beyond a killed process's reaping


@pytest.fixture
def holder_pid(tmp_path: Path) -> Iterator[Path]:
    """Where the pipe's holder writes its pid; it is killed after the test, whatever happened."""
    pid_file = tmp_path / "holder.pid"
    yield pid_file
    with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pid_in(pid_file: Path) -> int | None:
    """The holder's pid, once the process has written it (renamed into place: whole or absent)."""
    return int(pid_file.read_text()) if pid_file.exists() else None


async def _holder(pid_file: Path) -> int:
    while (pid := _pid_in(pid_file)) is None:  # noqa: ASYNC110 - another process writes the file
        await asyncio.sleep(0.02)
    return pid


async def test_a_cancelled_process_is_not_waited_for_while_another_holds_its_pipe(
    tmp_path: Path, holder_pid: Path
) -> None:
    task = asyncio.create_task(
        run_process([sys.executable, "-c", HOLDS_THE_PIPE, str(holder_pid)], cwd=tmp_path, timeout_s=600)
    )
    pid = await _holder(holder_pid)
    task.cancel()
    await asyncio.wait({task}, timeout=HANG_S)  # the holder sleeps far longer: a wait for it fails here
    assert task.cancelled()
    assert _alive(pid)  # the cancellation came back while the pipe was still held


async def test_a_timed_out_process_is_not_waited_for_while_another_holds_its_pipe(
    tmp_path: Path, holder_pid: Path
) -> None:
    running = asyncio.ensure_future(
        run_process([sys.executable, "-c", HOLDS_THE_PIPE, str(holder_pid)], cwd=tmp_path, timeout_s=5)
    )
    await asyncio.wait({running}, timeout=HANG_S)
    assert running.done() and running.result().timed_out
    pid = _pid_in(holder_pid)
    assert pid is not None, "the process did not start its pipe's holder within its time"
    assert _alive(pid)  # the timeout came back while the pipe was still held
