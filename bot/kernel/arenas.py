"""glibc's malloc arenas capped at two in a mendbot process (`cap()`, first thing in `main`).

glibc gives each new thread that allocates an arena of its own, up to eight per core, and each arena
keeps free memory of its own. mendbot's threads (SQLite's connection thread, the WAL checkpointer,
the slow-handler sampler, executor workers) allocate little, so their arenas are mostly idle memory:
about 0.6 MB of an idle bot's RSS on a 2-core machine. With two, the main thread keeps the main arena
and the others share one. `MALLOC_ARENA_MAX` in the environment, which glibc reads itself, wins; with
another C library this does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["ARENAS", "cap"]

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def cap() -> bool:
    """Cap the arenas, before the process starts threads; whether this call did."""
    if sys.platform != "linux" or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (glibc's own symbol: musl has mallopt as a no-op)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_ARENA_MAX, ARENAS))
