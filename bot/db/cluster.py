"""Queries of the processes sharing one PostgreSQL database (bot/scale/cluster.py): notifications.

What they remember lives in `settings_kv` (`bot.db.runs.get_setting`/`set_setting`); a
notification only wakes whoever listens now, so every one of them has a durable row as well.
"""

from __future__ import annotations

from sqlalchemy import bindparam, func, select

from bot.db import core
from bot.db.core import Connection

__all__ = ["notify"]

_NOTIFY = select(func.pg_notify(bindparam("channel"), bindparam("payload")))


async def notify(db: Connection, channel: str, payload: str = "") -> None:
    """`NOTIFY channel, payload` (PostgreSQL; the bot's connection is in autocommit, so it goes now)."""
    await core.rows(db, _NOTIFY, channel=channel, payload=payload)
