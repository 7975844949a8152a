"""Bytecode for a materialised tree, compiled here from its blobs so the sandbox need not compile it.

Checks, smoke loads, proofs and replays each start a Python process on a fresh copy of a tree
(`bot.trust.trees.materialise`) with `PYTHONDONTWRITEBYTECODE=1`: each compiled every module it
imported, again (~0.2 s of CPU for the bot's start, more for a project's test run). Most of a tree's
blobs are the same from copy to copy, so `materialise` writes beside each Python file the bytecode
compiled here once per blob (`pyc_for`), as Python itself would cache it:

- **Checked-hash** (PEP 552): the file records the hash of the source it was compiled from, and the
  interpreter that imports it compares that with the source as it is. A source changed after the copy
  was written (by the code under test) is compiled from its text, as before.
- **Only what compiles cleanly**: a blob that fails to compile, or warns while compiling (an invalid
  escape, which a project running its checks with `-W error` must still see), gets no bytecode, so
  the sandbox compiles it and shows what it shows.
- **Compiling is not running**: the blob's text goes through `compile()` only; nothing in it runs
  here. Oversized blobs are left to the sandbox.

The bytecode is this interpreter's (its magic number): an interpreter of another version ignores it.
"""

from __future__ import annotations

import importlib.util
import marshal
import sys
import threading
import warnings
from collections import OrderedDict
from pathlib import PurePosixPath

__all__ = ["cache_path", "pyc_for"]

_MAX_SOURCE_BYTES = 1 << 20
_MAX_CACHED_BYTES = 64 << 20
_CHECKED_HASH = (0b11).to_bytes(4, "little")  # hash-based, checked
_COMPILING = threading.Lock()


def cache_path(source: str) -> str | None:
    """Where Python looks for the bytecode of the tree path `source` (`a/b.py` →
    `a/__pycache__/b.<tag>.pyc`), or None for a file that is not a Python source."""
    path = PurePosixPath(source)
    if path.suffix != ".py" or sys.implementation.cache_tag is None:
        return None
    return str(path.parent / "__pycache__" / f"{path.stem}.{sys.implementation.cache_tag}.pyc")


class _Compiled:
    """Bytecode by blob id, the oldest dropped past `_MAX_CACHED_BYTES` (a blob id names its content)."""

    def __init__(self) -> None:
        self._found: OrderedDict[str, bytes | None] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, oid: str, source: bytes) -> bytes | None:
        with self._lock:
            if oid in self._found:
                self._found.move_to_end(oid)
                return self._found[oid]
        pyc = _compile(source)
        with self._lock:
            if oid not in self._found:
                self._found[oid] = pyc
                self._size += len(oid) + len(pyc or b"")
                while self._size > _MAX_CACHED_BYTES:
                    dropped_oid, dropped = self._found.popitem(last=False)
                    self._size -= len(dropped_oid) + len(dropped or b"")
        return pyc


def _compile(source: bytes) -> bytes | None:
    if len(source) > _MAX_SOURCE_BYTES:
        return None
    # Recorded, not raised: the filters are the process's, and another thread's warning in this
    # window must not become an error there (it is only counted here, against this blob). One
    # compile at a time: two overlapping `catch_warnings` would restore each other's filters.
    with _COMPILING, warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        try:
            # The name is Python's to replace: importing fixes each code object's file name to the
            # source's real path.
            code = compile(source, "<materialised>", "exec", dont_inherit=True, optimize=0)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return None
    if warned:
        return None
    hashed = importlib.util.source_hash(source)
    return importlib.util.MAGIC_NUMBER + _CHECKED_HASH + hashed + marshal.dumps(code)


_COMPILED = _Compiled()


def pyc_for(oid: str, source: bytes) -> bytes | None:
    """The checked-hash bytecode of the blob `oid` (whose content is `source`), or None if the
    sandbox should compile it itself (module docstring)."""
    return _COMPILED.get(oid, source)
