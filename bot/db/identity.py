"""Whether the SQLite file the bot writes is still the file at its path: deleted, replaced or moved.

SQLite keeps writing into a database file that was deleted (or renamed, or had another file put in
its place) without an error: the open descriptor still points at the old inode. Every write
"succeeds", and at the next stop everything saved since is gone with the unnamed file. Only the
file system can tell: `FileIdentity` keeps a descriptor of its own on the file it found at start
and compares, at each `check()`, that inode (st_dev, st_ino) and its link count with what the path
names now.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

__all__ = ["FileIdentity", "Vanished"]

Vanished = Literal["deleted", "replaced", "moved"]


class FileIdentity:
    """The identity of one file, taken when it is opened, and what became of it since."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self.checked_at = 0.0  # when the file was last seen in place (time.time())

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        """Watch the file at `path` as it is now (it must exist: the database was just opened)."""
        watched = cls(path)
        watched._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        found = os.fstat(watched._fd)
        watched._identity = (found.st_dev, found.st_ino)
        watched.checked_at = time.time()
        return watched

    def check(self) -> tuple[Vanished, str] | None:
        """None while the path still names the file; else what happened to it, in words."""
        if self._fd is None or self._identity is None:
            return None
        try:
            links = os.fstat(self._fd).st_nlink
        except OSError:
            return None  # closed under us (at shutdown): nothing to tell
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            now = None
        except OSError:
            return None  # cannot tell (a permission on a parent directory): a write will say
        if now is not None and (now.st_dev, now.st_ino) == self._identity:
            self.checked_at = time.time()
            return None
        seen = time.strftime("%H:%M:%S", time.localtime(self.checked_at))
        if now is not None:
            return "replaced", f"{self.path} is another file now (the bot's was last seen in place at {seen})"
        if links == 0:
            return "deleted", f"{self.path} was deleted (last seen in place at {seen})"
        return "moved", f"{self.path} was moved or renamed away (last seen in place at {seen})"

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
