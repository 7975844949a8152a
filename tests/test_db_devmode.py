"""The dev mode switch queries, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from mendbot.db import core, devmode
from mendbot.db.devmode import DevModeSwitch

pytestmark = pytest.mark.engines

USER = 1_100_000_000_000_001_000  # a Discord id: 64 bits


async def test_no_switch_yet_means_none(engine_db: core.Connection) -> None:
    """latest() is None before dev mode was ever switched."""
    assert await devmode.latest(engine_db) is None


async def test_the_newest_switch_is_the_current_state(engine_db: core.Connection) -> None:
    """latest() returns the last switch inserted, its flag a bool and its NULL `until` None."""
    await devmode.insert(engine_db, ts=1.0, user_id=USER, active=True, until=3601.0)
    assert await devmode.latest(engine_db) == DevModeSwitch(1.0, USER, True, 3601.0)
    await devmode.insert(engine_db, ts=2.0, user_id=USER, active=False, until=None)
    assert await devmode.latest(engine_db) == DevModeSwitch(2.0, USER, False, None)
