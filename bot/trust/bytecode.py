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
Compiling runs none of the tree's code, and it runs in a child process of its own (`_COMPILE`:
isolated, with an empty environment, at most `_COMPILE_MEMORY` of memory and `_COMPILE_CPU_S` of CPU,
`_COMPILE_WALL_S` in all): a change's files are not for the live bot to compile under its interpreter
lock, however large or deep, and no secret of its environment is within reach of the parser.
The cache is the user's (`mendbot.kernel.user_cache`: `bytecode/<Python's cache tag>`), in no sandbox's
reach, and used only while private; what goes into a checkout is a copy, never a link, so nothing written
there reaches the cache, and it is written only as a new file in a real folder of the tree (never through
a link the tree holds, never over a file of its own). A file that does not compile, is larger than
`_LARGEST` or whose bytecode cannot be written is left to Python, which compiles it in each process, as
before. At most `_KEPT_AT_MOST` compiled files are kept, the oldest forgotten first (compiled again if used).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from mendbot.kernel import user_cache
from mendbot.kernel.process import run_process

__all__ = ["place"]

_LARGEST = 1024 * 1024  # bytes of source: larger files are left to Python
_KEPT_AT_MOST = 4096  # compiled files (~70 MB at most); mendbot's own repository has ~360 outside its tests
_COMPILE_MEMORY = 1 << 30  # bytes of address space of the compiling process
_COMPILE_CPU_S = 60
_COMPILE_WALL_S = 120.0
# The compiling process: `[source, cached pyc, name in the tree]` triples on stdin; one that fails is left.
_COMPILE = f"""
import json, py_compile, resource, sys
for limit, value in ((resource.RLIMIT_AS, {_COMPILE_MEMORY}), (resource.RLIMIT_CPU, {_COMPILE_CPU_S})):
    hard = resource.getrlimit(limit)[1]
    resource.setrlimit(limit, (value if hard < 0 else min(value, hard),) * 2)
for source, cached, name in json.load(sys.stdin):
    try:
        py_compile.compile(source, cfile=cached, dfile=name, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    except Exception:
        pass
"""


async def place(tree: Path, sources: Iterable[tuple[str, str]]) -> int:
    """Beside each Python file of `tree` given as `(its path in the tree, its blob id)`, its bytecode;
    how many were placed (none without a private cache). Test modules are left out: pytest compiles
    them itself, rewriting their asserts."""
    tag = sys.implementation.cache_tag
    cache = user_cache.folder(f"bytecode/{tag}") if tag else None
    if cache is None or not await asyncio.to_thread(user_cache.made_private, cache):
        return 0
    wanted = [
        (os.path.join(tree, path), os.path.join(cache, f"{blob}.pyc"), path)
        for path, blob in sources
        if not _tested_by_pytest(path)
    ]
    missing = await asyncio.to_thread(_missing, wanted)
    if missing:
        await run_process(
            # -W ignore: the compiler's warnings (one per line that has one) are not gathered here
            [sys.executable, "-I", "-S", "-W", "ignore", "-c", _COMPILE],
            cwd=tree,
            env={},  # nothing of the bot's environment (its token, its key) within a parser's reach
            input=json.dumps(missing).encode(),
            timeout_s=_COMPILE_WALL_S,
        )
        await asyncio.to_thread(user_cache.keep_newest, cache, "*.pyc", _KEPT_AT_MOST)
    return await asyncio.to_thread(_copied, wanted)


def _missing(wanted: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Of `wanted`, what the cache does not hold yet and is small enough to compile."""
    missing = []
    for source, cached, path in wanted:
        with contextlib.suppress(OSError):
            if not os.path.isfile(cached) and os.stat(source).st_size <= _LARGEST:
                missing.append((source, cached, path))
    return missing


def _copied(wanted: list[tuple[str, str, str]]) -> int:
    """Each source's cached bytecode copied beside it, where it may be written; how many."""
    writable: dict[str, bool] = {}  # each `__pycache__` of the tree: whether it is a folder of its own
    placed = 0
    for source, cached, _ in wanted:
        try:
            with open(cached, "rb") as compiled:
                code = compiled.read()
        except OSError:
            continue  # not compiled (it does not compile, or is too large): Python compiles it, as before
        target = importlib.util.cache_from_source(source)
        folder = os.path.dirname(target)
        if folder not in writable:
            writable[folder] = _own_folder(folder)
        if not writable[folder]:
            continue  # the tree's own link or file there: nothing is written through or over it
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except OSError:
            continue  # a file of the tree's own is there
        with os.fdopen(fd, "wb") as written:
            written.write(code)
        placed += 1
    return placed


def _tested_by_pytest(path: str) -> bool:
    """A module pytest imports itself, by its default names (`test_*.py`, `*_test.py`, `conftest.py`)."""
    name = path.rsplit("/", 1)[-1]
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"


def _own_folder(folder: str) -> bool:
    """`folder` made if it is not there; whether it is a real folder (not a link the tree holds)."""
    with contextlib.suppress(OSError):
        os.mkdir(folder)
    return not os.path.islink(folder) and os.path.isdir(folder)
