"""Bytecode for the fresh checkouts checks, proofs and replays run on (`mendbot.trust.trees.materialise`).

In the sandbox a checkout is read-only and Python writes no bytecode (`mendbot.trust.sandbox`), so every
process started on a fresh checkout — a check's pytest, a smoke load, each replayed start of the bot —
compiled every module of the tree it imported again: for mendbot's own bot, about a quarter of importing
it. `place` puts the bytecode of each Python file of a checkout beside it (in `__pycache__`, named as
Python names it), from a cache keyed by the file's git blob id: each content is compiled once, outside
every sandbox, and copied into every checkout that holds it.

The files are hash-checked pycs (PEP 552, `CHECKED_HASH`): before using one, Python compares the hash it
carries with the hash of the source beside it, whatever the file's time stamp — a checkout's files are
all new — so a source changed inside the sandbox is compiled from its text, never run from a stale pyc.
Compiling runs none of the tree's code. The cache is the user's (`mendbot.kernel.user_cache`:
`bytecode/<Python's cache tag>`), in no sandbox's reach, and used only while private; what goes into a
checkout is a copy, never a link, so nothing written there reaches the cache, and it is written only as
a new file in a real folder of the tree (never through a link the tree holds, never over a file of its
own). A file that does not compile, is larger than `_LARGEST` or whose bytecode cannot be written is left
to Python, which compiles it in each process, as before.
At most `_KEPT_AT_MOST` compiled files are kept, the oldest forgotten first (compiled again if used).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import py_compile
import sys
from collections.abc import Iterable
from pathlib import Path

from mendbot.kernel import user_cache

__all__ = ["place"]

_LARGEST = 1024 * 1024  # bytes of source: larger files are left to Python
_KEPT_AT_MOST = 4096  # compiled files (~70 MB at most); mendbot's own repository has ~360 outside its tests


def place(tree: Path, sources: Iterable[tuple[str, str]]) -> int:
    """Beside each Python file of `tree` given as `(its path in the tree, its blob id)`, its bytecode;
    how many were placed (none without a private cache). Test modules are left out: pytest compiles
    them itself, rewriting their asserts."""
    tag = sys.implementation.cache_tag
    cache = user_cache.folder(f"bytecode/{tag}") if tag else None
    if cache is None or not user_cache.made_private(cache):
        return 0
    writable: dict[str, bool] = {}  # each `__pycache__` of the tree: whether it is a folder of its own
    placed = compiled = 0
    for path, blob in sources:
        if _tested_by_pytest(path):
            continue
        source = os.path.join(tree, path)
        kept = os.path.join(cache, f"{blob}.pyc")
        try:
            if not os.path.isfile(kept):
                if os.stat(source).st_size > _LARGEST:
                    continue
                py_compile.compile(
                    source,
                    cfile=kept,
                    dfile=path,  # the code's file name is the source's, set again at import
                    doraise=True,
                    invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
                )
                compiled += 1
            target = importlib.util.cache_from_source(source)
            folder = os.path.dirname(target)
            if folder not in writable:
                writable[folder] = _own_folder(folder)
            if not writable[folder]:
                continue  # the tree's own link or file there: nothing is written through or over it
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with open(kept, "rb") as compiled_file, os.fdopen(fd, "wb") as written:
                written.write(compiled_file.read())
            placed += 1
        except (OSError, py_compile.PyCompileError):
            continue  # Python compiles it in each process, as without this
    if compiled:
        user_cache.keep_newest(cache, "*.pyc", _KEPT_AT_MOST)
    return placed


def _tested_by_pytest(path: str) -> bool:
    """A module pytest imports itself, by its default names (`test_*.py`, `*_test.py`, `conftest.py`)."""
    name = path.rsplit("/", 1)[-1]
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"


def _own_folder(folder: str) -> bool:
    """`folder` made if it is not there; whether it is a real folder (not a link the tree holds)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder)
    return not os.path.islink(folder) and os.path.isdir(folder)
