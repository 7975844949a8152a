"""What a storage incident says: the fault in a person's words, and what they need to do about it.

One summary per fault, and one need per fault and store (a SQLite file by its path, a PostgreSQL
server by its URL); the incident itself is bot/observe/incidents.py's.
"""

from __future__ import annotations

from typing import TypeGuard

from mendbot.db.action_writes import is_postgresql
from mendbot.db.retry import Fault

__all__ = ["is_fault", "storage_words"]

_STORAGE_NEEDS: dict[Fault, str] = {
    "locked": "another process is holding the database's write lock: find it (`fuser {path}`) and stop it",
    "full": "the disk holding {path} is full: free some space there",
    "readonly": "{path} is on a read-only file system or not writable by the bot: make it writable",
    "io": "the disk holding {path} reports I/O errors: check it",
    "deleted": "put the database back at {path} from a backup, or restart me to begin a new one there "
    "(its action records come back from the action journal; the rest saved only in the deleted file "
    "is then gone for good)",
    "replaced": "put the bot's database back at {path}, or restart me to use the file now there (the "
    "action records it lacks come back from the action journal)",
    "moved": "move the database back to {path}, or restart me to begin a new one there (its action records "
    "come back from the action journal)",
}
# What a database file gone from its path costs, and what is kept (the action log is a file of its own).
_LOST = (
    " Saving still seems to work, but it goes into a file that is lost when I stop: reminders, "
    "incidents and runs saved since then. Kept: the action journal ({log}) has every action record, "
    "and at the next start the database is filled from it again."
)
# The same faults on a PostgreSQL server (SQLSTATEs in bot/db/retry.py), named by its URL.
_POSTGRESQL_NEEDS: dict[Fault, str] = {
    "locked": "another session holds a lock the bot waits for: find it in pg_stat_activity on {path}",
    "full": "the PostgreSQL server at {path} is out of disk (or connections): free some there",
    "readonly": "the PostgreSQL server at {path} is read-only (a standby?): point the bot at the primary",
    "io": "the PostgreSQL server at {path} reports I/O errors: check its disk",
    "deleted": "the database at {path} is gone: restore it",
    "replaced": "the database at {path} was replaced: restore it",
    "moved": "the database at {path} was moved: restore it",
}
_STORAGE_SUMMARIES: dict[Fault, str] = {
    "locked": "The database is locked: writes are waiting past the busy timeout and failing.",
    "full": "The disk is full: the database or its action log cannot grow.",
    "readonly": "The database is read-only: nothing can be saved.",
    "io": "The database's disk reports I/O errors.",
    "deleted": "The database file was deleted while I was running." + _LOST,
    "replaced": "The database file was deleted or replaced: another file is at its path now." + _LOST,
    "moved": "The database file was moved away while I was running." + _LOST,
}


def is_fault(value: object) -> TypeGuard[Fault]:
    """Whether `value` names a storage fault (one kept in an incident's sample, say)."""
    return value in _STORAGE_SUMMARIES


def storage_words(fault: Fault, path: str, log: str) -> tuple[str, str]:
    """The incident's summary and need for `fault` of the store at `path`, its journal at `log`."""
    needs = _POSTGRESQL_NEEDS if is_postgresql(path) else _STORAGE_NEEDS
    return _STORAGE_SUMMARIES[fault].format(log=log), needs[fault].format(path=path)
