"""Queries for `dev_mode`: the switches of dev mode by hand, newest last."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

__all__ = ["DevModeSwitch", "insert", "latest"]


@dataclass(frozen=True)
class DevModeSwitch:
    ts: float
    user_id: int
    active: bool
    until: float | None


async def insert(
    db: aiosqlite.Connection, *, ts: float, user_id: int, active: bool, until: float | None
) -> None:
    await db.execute(
        "INSERT INTO dev_mode (ts, user_id, active, until) VALUES (?, ?, ?, ?)",
        (ts, user_id, int(active), until),
    )


async def latest(db: aiosqlite.Connection) -> DevModeSwitch | None:
    """The newest switch, which is the current state."""
    async with db.execute(
        "SELECT ts, user_id, active, until FROM dev_mode ORDER BY id DESC LIMIT 1"
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        return None
    return DevModeSwitch(row["ts"], row["user_id"], bool(row["active"]), row["until"])
