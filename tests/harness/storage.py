"""Storage faults for tests, injected for real: another process holding SQLite's write lock, a full disk.

`hold_write_lock(db)` starts a separate Python process that opens the database and holds
`BEGIN EXCLUSIVE` until the block ends (or `seconds` pass). `small_disk(path)` mounts a tmpfs of
a few megabytes there (root only; the caller skips otherwise) and `fill_disk(dir)` takes every
free byte with a filler file, which the caller deletes to give the space back.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

__all__ = ["fill_disk", "hold_write_lock", "small_disk"]

_HOLDER = """
import select, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
select.select([sys.stdin], [], [], float(sys.argv[2]))  # until stdin closes or the time is up
db.execute("ROLLBACK")
print("released", flush=True)
"""


@asynccontextmanager
async def hold_write_lock(db_path: Path, seconds: float = 10.0) -> AsyncIterator[asyncio.subprocess.Process]:
    """Another process holds the database's write lock for the block (at most `seconds`)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLDER,
        str(db_path),
        str(seconds),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        assert (await asyncio.wait_for(process.stdout.readline(), 30)).strip() == b"locked"
        yield process
    finally:
        process.stdin.close()
        await asyncio.wait_for(process.wait(), 30)


@contextmanager
def small_disk(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` for the block; PermissionError where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        raise PermissionError(mounted.stderr.decode(errors="replace").strip() or "mount failed")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(directory: Path) -> Path:
    """Write a filler file until the file system is full; returns it (delete it to free the space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return filler
