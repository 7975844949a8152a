"""mendbot.kernel.arenas: a process that caps its malloc arenas keeps to two however many threads allocate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mendbot.kernel.arenas import ARENAS

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="glibc's arenas")

# Six threads, all alive at once, allocate (objects over 512 bytes go to malloc, not to Python's own
# allocator); then glibc's malloc_info reports the arenas: one <heap> element each.
_PROBE = """
import ctypes, sys, tempfile, threading
from mendbot.kernel import arenas
capped = arenas.cap()
held = []
together = threading.Barrier(6)
def allocate():
    held.append([bytes(2048) for _ in range(200)])
    together.wait()  # all alive at once: a finished thread's arena would go to the next one
threads = [threading.Thread(target=allocate) for _ in range(6)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
libc.fclose.argtypes = (ctypes.c_void_p,)
with tempfile.NamedTemporaryFile(suffix=".xml") as report:
    stream = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(capped, open(report.name).read().count("<heap nr="))
"""


def _arenas(env: dict[str, str]) -> tuple[bool, int]:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    environment["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**environment, **env}, capture_output=True, text=True, check=True
    )
    capped, heaps = done.stdout.split()
    return capped == "True", int(heaps)


def test_capped_threads_share_the_arenas() -> None:
    """After `cap()`, six threads allocating at once leave two arenas in the process."""
    assert _arenas({}) == (True, ARENAS)


def test_without_the_cap_each_thread_takes_an_arena_and_the_environment_wins() -> None:
    """With MALLOC_ARENA_MAX set, `cap()` leaves it to glibc, and the threads take arenas of their own."""
    capped, heaps = _arenas({"MALLOC_ARENA_MAX": "8"})
    assert not capped
    assert heaps > ARENAS
