"""A playground's data directory: where it is, what `--fresh` may wipe, and one playground at a time.

Two playgrounds on one directory would share a database and each take the other's reminders and runs,
so the first one holds an exclusive lock (`flock` on `playground.lock`, released by the kernel when
the process ends, however it ends) and a second one is refused with one line.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import IO

from mendbot.kernel.settings import ConfigError

__all__ = ["EX_IN_USE", "LOCK_NAME", "STATE_NAMES", "DataDirInUse", "claim_data_dir", "usable_dir"]

EX_IN_USE = 75  # EX_TEMPFAIL: try again when the other playground has ended
LOCK_NAME = "playground.lock"
# What the bot keeps in a data directory; `--fresh` removes these and nothing else.
STATE_NAMES = (
    "mendbot.db",
    "mendbot.db-wal",
    "mendbot.db-shm",
    "logs",
    "worktrees",
    "agent-home",
    "demo-repo",
    "playground-world.json",
    "attach-demo.yaml",  # the settings `mendbot attach --play --demo` writes for its run
)


class DataDirInUse(Exception):
    """Another playground holds the directory; the message is the one line to print."""


def claim_data_dir(data_dir: Path, chosen: Path | None, *, default: str, fresh: bool) -> tuple[Path, IO[str]]:
    """The playground's own state (never the production database, `data_dir/mendbot.db`), locked for
    this process; wiped first with `fresh`. The returned file holds the lock: keep it open.

    `--fresh` refuses the bot's real data directory, and any directory holding something the bot
    did not put there (a mistyped `--data-dir ~` must not cost anyone their files).
    """
    directory = chosen if chosen is not None else data_dir / default
    if fresh and directory.exists():
        strangers = sorted(p.name for p in directory.iterdir() if p.name not in (*STATE_NAMES, LOCK_NAME))
        if directory.resolve() == data_dir.resolve() or strangers:
            held = f" (it holds {', '.join(strangers[:3])})" if strangers else " (the bot's own data)"
            raise ConfigError(
                f"config error: --fresh will not wipe {directory}{held}: choose a playground --data-dir"
            )
    usable_dir(directory, "--data-dir" if chosen is not None else "the playground's data dir")
    lock = _lock(directory)
    if fresh:  # only once the lock is ours: never under a playground that is running
        for name in STATE_NAMES:
            path = directory / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    return directory, lock


def usable_dir(directory: Path, what: str) -> Path:
    """`directory`, created if need be and writable — else one line saying why (`/proc/x`, a file)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".mendbot-write-check"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"config error: {what} {directory} cannot be used: {reason} — choose another"
        ) from None
    return directory


def _lock(directory: Path) -> IO[str]:
    handle = (directory / LOCK_NAME).open("a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise DataDirInUse(
            f"mendbot: {directory} is in use by another playground (pid {holder}): "
            "end it, or give this one its own --data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
