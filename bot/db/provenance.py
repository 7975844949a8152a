"""Which action a stored row came from, and which stored rows the current action has read.

A crash on a bad row shows the code that read it; the code that wrote it — often another command,
run minutes or days before — is the cause. So the db layer keeps, for each row written through it
(`mendbot.db.cog_rows`), the kind of the action that wrote it and where in the code the write was
made; and, while an action runs, the rows it read with that provenance. When the action fails,
the recorder files those reads with the failure (`extra["read_rows"]`), and the evidence makes the
writer a suspect.

The current action is a contextvar, opened by the handler capture (`mendbot.observe.capture`) for every
command, interaction, listener and task, so a write or read needs no argument to know it. Outside
an action nothing is noted and the writer is "unknown". Cheap by design: one contextvar read and a
walk of the Python stack (microseconds) per write; reads only append to a short list.
"""

from __future__ import annotations

import contextvars
import functools
import sys
from typing import Any

import msgspec

__all__ = ["MAX_READS", "ActionScope", "begin", "current", "enter", "note_read", "writer_frames"]

MAX_READS = 20  # per action: the newest reads are the ones nearest the failure
_MAX_FRAMES = 8


# Frames of the standard library, the installed packages and the storage layer itself are never
# the writer: the writer is the code that asked for the write.
@functools.cache
def _skipped() -> tuple[str, ...]:
    """Where the standard library and the installed packages are (sysconfig, ~2 ms: at the first write
    of an action, not at every start)."""
    import sysconfig

    paths = sysconfig.get_paths()
    return tuple({paths["stdlib"], paths["purelib"], paths["platlib"]})


_OWN = __file__.rsplit("/", 1)[0] + "/"

_scope: contextvars.ContextVar[ActionScope | None] = contextvars.ContextVar(
    "mendbot_action_scope", default=None
)


class ActionScope(msgspec.Struct):
    """The action running in this context: its kind and the stored rows it has read."""

    kind: str
    reads: list[dict[str, Any]] = msgspec.field(default_factory=list)


def begin(kind: str) -> ActionScope:
    """Open the scope of the action running in the current task (its context owns it)."""
    return enter(ActionScope(kind))


def enter(scope: ActionScope) -> ActionScope:
    """Make `scope` the current action's (the handler capture is one: one object per action)."""
    _scope.set(scope)
    return scope


def current() -> ActionScope | None:
    return _scope.get()


def note_read(
    table: str, key: str, written_by: str | None, writer: list[str], written_at: float | None
) -> None:
    """Remember that the current action read a row, with who wrote it (nothing outside an action)."""
    scope = _scope.get()
    if scope is None:
        return
    # "row", not "key": the redactor hides the values of keys named like secrets ("key", "token").
    entry = {"table": table, "row": key, "written_by": written_by, "writer": writer, "written_at": written_at}
    if entry in scope.reads:
        return
    scope.reads.append(entry)
    del scope.reads[:-MAX_READS]


def writer_frames() -> list[str]:
    """The calling code's frames as "absolute path:line:function", innermost last, without the
    standard library, installed packages and the storage layer (the recorder makes them relative)."""
    found: list[str] = []
    frame = sys._getframe(1)
    while frame is not None and len(found) < _MAX_FRAMES:
        filename = frame.f_code.co_filename
        if not filename.startswith(_skipped()) and not filename.startswith(_OWN) and filename.endswith(".py"):
            found.append(f"{filename}:{frame.f_lineno}:{frame.f_code.co_name}")
        frame = frame.f_back  # type: ignore[assignment]
    found.reverse()
    return found
