"""Whether the SQLite file the bot writes is still the file at its path: deleted, replaced or moved.

SQLite keeps writing into a database file that was deleted (or renamed, or had another file put in
its place) without an error: its open descriptors still point at the old inode. Every write
"succeeds", and at the next stop everything saved since is gone with the unnamed file. Only the
file system can tell: `FileIdentity` remembers the file's (st_dev, st_ino) when the database is
opened and compares, at each `check()`, what the path names now; a file gone from its path is
looked for in its directory, to tell a rename from a deletion.

It holds no descriptor of its own on the file, on purpose: closing any descriptor of a file drops
every POSIX lock the process holds on it, SQLite's included (SQLite's own documentation warns of
exactly this), and a database whose locks vanish under it gets corrupted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

__all__ = ["FileIdentity", "Vanished"]

Vanished = Literal["deleted", "replaced", "moved"]


class FileIdentity:
    """The identity of one file, taken when it is watched, and what became of it since."""

    def __init__(self, path: Path, identity: tuple[int, int]) -> None:
        self.path = path
        self._identity = identity
        self.checked_at = time.time()  # when the file was last seen in place

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        """Watch the file at `path` as it is now (it must exist: the database was just opened)."""
        found = os.stat(path)
        return cls(path, (found.st_dev, found.st_ino))

    def check(self) -> tuple[Vanished, str] | None:
        """None while the path still names the file; else what happened to it, in words."""
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
        moved_to = self._renamed_to()
        if now is not None:
            where = f" (the bot's was renamed to {moved_to.name})" if moved_to is not None else ""
            return "replaced", f"{self.path} is another file now{where}; last seen in place at {seen}"
        if moved_to is not None:
            return "moved", f"{self.path} was renamed to {moved_to.name}; last seen in place at {seen}"
        return "deleted", f"{self.path} was deleted or moved away; last seen in place at {seen}"

    def _renamed_to(self) -> Path | None:
        """The file under another name in the same directory, if it is there."""
        try:
            with os.scandir(self.path.parent) as entries:
                for entry in entries:
                    found = entry.stat(follow_symlinks=False)
                    if (found.st_dev, found.st_ino) == self._identity:
                        return Path(entry.path)
        except OSError:
            return None
        return None
