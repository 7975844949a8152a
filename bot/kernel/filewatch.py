"""Files changed under a few roots, in debounced batches, from the kernel's inotify.

The hand-edit watcher (`mendbot.deploy.watcher`) and the prompt registry (`mendbot.kernel.prompts`) follow
their files with `changed_files`. The inotify descriptor is read by the event loop itself
(asyncinotify), so watching costs no thread, and no CPU until a file changes.

- A directory root is watched with everything under it. A directory created or moved in later is
  watched from then on, and the files already in it are reported: they may have landed before its
  watch did. A directory removed or moved away reports the removals inotify saw of its files (`rm -r`
  does; a `mv` of the whole directory does not).
- A file root is watched through its directory, so an editor that saves by renaming a new file over
  it is seen too.
- Hidden entries (`.git`, `.venv`, an editor's `.#lock`), `__pycache__` and `node_modules` are never
  watched nor reported; `keep` chooses among the rest (a changed or removed file: it may not exist).
- A batch is yielded once changes stop arriving for 50 ms, or `debounce_ms` after its first change:
  an editor's write-rename burst is one batch.

Linux only (inotify). Elsewhere, when the kernel's limits are reached, or a directory cannot be
watched, it logs why and watches what it can (nothing, elsewhere): the bot runs on without following
those edits.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mendbot.kernel.log import get_logger

if TYPE_CHECKING:
    from asyncinotify import Event, Inotify, Watch

__all__ = ["changed_files"]

_log = get_logger(__name__)

_QUIET_S = 0.05  # a batch ends after this long without a change…
_SKIPPED = frozenset({"__pycache__", "node_modules"})  # …and never holds these, nor hidden entries


def _skipped(name: str) -> bool:
    return name.startswith(".") or name in _SKIPPED


class _Tree:
    """The watches under the roots, and which events are changes a caller keeps."""

    def __init__(self, inotify: Inotify, keep: Callable[[Path], bool]) -> None:
        from asyncinotify import Mask

        self._inotify = inotify
        self._keep = keep
        self._mask = Mask.CLOSE_WRITE | Mask.CREATE | Mask.DELETE | Mask.MOVED_FROM | Mask.MOVED_TO
        self._watches: dict[Path, Watch] = {}
        self._only: dict[Path, set[str]] = {}  # a directory watched for these files of it, not all
        self.full = False

    def add_root(self, root: Path) -> None:
        root = root.absolute()
        if root.is_dir():
            self.add_directory(root)
        elif root.parent.is_dir() and root.parent not in self._watches:
            self._only.setdefault(root.parent, set()).add(root.name)
            self._watch(root.parent)
        elif root.parent in self._only:
            self._only[root.parent].add(root.name)

    def add_directory(self, top: Path) -> set[Path]:
        """Watch `top` and every directory under it; the kept files found there."""
        found: set[Path] = set()
        for current, directories, files in os.walk(top):
            directories[:] = [name for name in directories if not _skipped(name)]
            here = Path(current)
            self._only.pop(here, None)
            self._watch(here)
            found.update(path for name in files if not _skipped(name) and self._keep(path := here / name))
        return found

    def _watch(self, directory: Path) -> None:
        try:
            self._watches[directory] = self._inotify.add_watch(directory, self._mask)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return  # gone already: nothing in it to miss
            if exc.errno == errno.ENOSPC:  # fs.inotify.max_user_watches: said once
                if self.full:
                    return
                self.full = True
            _log.warning("file watch not set: edits here go unseen", directory=str(directory), error=str(exc))

    def changes(self, event: Event) -> set[Path]:
        """What `event` changed that the caller keeps."""
        from asyncinotify import Mask

        if Mask.Q_OVERFLOW in event.mask:
            _log.warning("too many file changes at once: some were not seen")
            return set()
        path = event.path
        if path is None or event.name is None or _skipped(path.name):
            return set()  # an event of the watched directory itself (its watch ended)
        only = self._only.get(path.parent)
        if only is not None:
            return {path} if path.name in only and self._keep(path) else set()
        if Mask.ISDIR not in event.mask:
            return {path} if self._keep(path) else set()
        if event.mask & (Mask.CREATE | Mask.MOVED_TO):
            return self.add_directory(path)
        for gone in [watched for watched in self._watches if watched.is_relative_to(path)]:
            watch = self._watches.pop(gone)
            if event.mask & Mask.MOVED_FROM:  # a deleted directory's watch has ended by itself
                self._unwatch(watch)
        return set()

    def _unwatch(self, watch: Watch) -> None:
        with contextlib.suppress(OSError):  # the kernel had ended it already
            self._inotify.rm_watch(watch)


async def changed_files(
    roots: Iterable[Path],
    *,
    keep: Callable[[Path], bool] = lambda _: True,
    debounce_ms: int = 300,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[set[Path]]:
    """Batches of changed (written, created, moved or removed) files under `roots`, until `stop` is set.

    The roots are watched before the first step of the iteration returns control to the loop, so a
    change made after the caller first awaits it is seen.
    """
    try:
        from asyncinotify import Inotify

        inotify = Inotify()
    except (ImportError, AttributeError, OSError) as exc:  # not Linux, or fs.inotify.max_user_instances
        _log.warning("file watching unavailable (it needs Linux's inotify)", error=str(exc))
        return
    loop = asyncio.get_running_loop()
    with inotify:
        tree = _Tree(inotify, keep)
        for root in roots:
            tree.add_root(root)
        stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait()) if stop else loop.create_future()
        pending = asyncio.ensure_future(inotify.get())
        try:
            while not stopping.done():
                await asyncio.wait({pending, stopping}, return_when=asyncio.FIRST_COMPLETED)
                batch: set[Path] = set()
                deadline = loop.time() + debounce_ms / 1000
                while pending.done():
                    batch |= tree.changes(pending.result())
                    pending = asyncio.ensure_future(inotify.get())
                    quiet = min(_QUIET_S, deadline - loop.time())
                    if quiet > 0:
                        await asyncio.wait(
                            {pending, stopping}, timeout=quiet, return_when=asyncio.FIRST_COMPLETED
                        )
                if batch:
                    yield batch
        finally:
            pending.cancel()
            stopping.cancel()
