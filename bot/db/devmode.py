"""Queries for `dev_mode`: the switches of dev mode by hand, newest last.

Written once in the SQL both engines share (`mendbot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import msgspec

from mendbot.db import core
from mendbot.db.core import Connection

__all__ = ["DevModeSwitch", "insert", "latest"]


class DevModeSwitch(msgspec.Struct, frozen=True):
    ts: float
    user_id: int
    active: bool
    until: float | None


_INSERT = "INSERT INTO dev_mode (ts, user_id, active, until) VALUES (:ts, :user_id, :active, :until)"
_LATEST = "SELECT ts, user_id, active, until FROM dev_mode ORDER BY id DESC LIMIT 1"


async def insert(db: Connection, *, ts: float, user_id: int, active: bool, until: float | None) -> None:
    # The flag is stored as 0/1 on both engines (the column is an integer).
    await core.execute(db, _INSERT, ts=ts, user_id=user_id, active=int(active), until=until)


async def latest(db: Connection) -> DevModeSwitch | None:
    """The newest switch, which is the current state."""
    row = await core.first(db, _LATEST)
    if row is None:
        return None
    return DevModeSwitch(row["ts"], row["user_id"], bool(row["active"]), row["until"])
