"""Queries for `dev_mode`: the switches of dev mode by hand, newest last.

Written once as SQLAlchemy Core statements (`bot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import bindparam, select

from bot.db import core
from bot.db.core import Connection
from bot.db.schema import dev_mode

__all__ = ["DevModeSwitch", "insert", "latest"]


@dataclass(frozen=True)
class DevModeSwitch:
    ts: float
    user_id: int
    active: bool
    until: float | None


_INSERT = sa.insert(dev_mode).values(
    ts=bindparam("ts"), user_id=bindparam("user_id"), active=bindparam("active"), until=bindparam("until")
)
_LATEST = (
    select(dev_mode.c.ts, dev_mode.c.user_id, dev_mode.c.active, dev_mode.c.until)
    .order_by(dev_mode.c.id.desc())
    .limit(1)
)


async def insert(db: Connection, *, ts: float, user_id: int, active: bool, until: float | None) -> None:
    # The flag is stored as 0/1 on both engines (the column is an integer).
    await core.execute(db, _INSERT, ts=ts, user_id=user_id, active=int(active), until=until)


async def latest(db: Connection) -> DevModeSwitch | None:
    """The newest switch, which is the current state."""
    row = await core.first(db, _LATEST)
    if row is None:
        return None
    return DevModeSwitch(row["ts"], row["user_id"], bool(row["active"]), row["until"])
