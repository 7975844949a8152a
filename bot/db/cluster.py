"""Queries of the processes sharing one PostgreSQL database (bot/scale/cluster.py): notifications.

What they remember lives in `settings_kv` (`mendbot.db.runs.get_setting`/`set_setting`); a
notification only wakes whoever listens now, so every one of them has a durable row as well.
"""

from __future__ import annotations

import json
from typing import Any

from mendbot.db import core
from mendbot.db.core import Connection

__all__ = ["notify", "settings_under"]

_UNDER = r"""
    SELECT "key", value FROM settings_kv WHERE "key" LIKE :pattern ESCAPE '\' ORDER BY "key"
"""
_NOTIFY = "SELECT pg_notify(:channel, :payload)"


async def notify(db: Connection, channel: str, payload: str = "") -> None:
    """`NOTIFY channel, payload` (PostgreSQL; the bot's connection is in autocommit, so it goes now)."""
    await core.rows(db, _NOTIFY, channel=channel, payload=payload)


async def settings_under(db: Connection, prefix: str) -> dict[str, Any]:
    """Every `settings_kv` value whose key starts with `prefix`, by the rest of the key."""
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    found = await core.rows(db, _UNDER, pattern=pattern)
    return {row["key"][len(prefix) :]: json.loads(row["value"]) for row in found}
