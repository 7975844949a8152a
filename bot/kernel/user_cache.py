"""mendbot's folders in the user's cache directory: what it keeps between starts that can always be made
again (parsed YAML, bytecode), like Python's own `__pycache__`.

`folder(name)` is `$XDG_CACHE_HOME/mendbot/<name>` (else `~/.cache/…`; None for a process with no home
directory). A folder is read only when `private` says this user owns it and no one else may write in it:
anything wrong with it (none, unreadable, read-only, another's) only means the work is done again.
`keep_newest` bounds a folder's files, the oldest forgotten first.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

__all__ = ["folder", "keep_newest", "made_private", "private"]


def folder(name: str) -> Path | None:
    """Where mendbot's `name` cache is (None: nowhere, for a process without a home directory)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        return None  # `~` unknown (no HOME, no user entry): never a cache in the working directory
    return Path(base) / "mendbot" / name


def private(directory: Path) -> bool:
    """Whether `directory` is this user's and no one else may write in it."""
    try:
        info = directory.stat()
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def made_private(directory: Path) -> bool:
    """`directory` made (0700) if it is not there; whether it is private (`private`)."""
    with contextlib.suppress(OSError):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return private(directory)


def keep_newest(directory: Path, pattern: str, at_most: int) -> None:
    """Forget the oldest of `directory`'s files matching `pattern` (by modification time) beyond `at_most`."""
    with contextlib.suppress(OSError):
        kept = list(directory.glob(pattern))
        if len(kept) <= at_most:
            return
        by_age = sorted(kept, key=lambda path: path.stat().st_mtime_ns)
        for path in by_age[: len(kept) - at_most]:
            path.unlink(missing_ok=True)
