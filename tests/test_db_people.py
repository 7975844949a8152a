"""The people queries (the names the bot last saw people by), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from mendbot.db import core, people

pytestmark = pytest.mark.engines

ALICE = 1_100_000_000_000_001_000  # a Discord id: 64 bits


async def test_the_newest_name_seen_is_the_one_kept(engine_db: core.Connection) -> None:
    """A person renamed is remembered by the new name; each person is one row."""
    assert await people.names(engine_db) == {}
    await people.remember(engine_db, user_id=ALICE, name="alice", at=1.0)
    await people.remember(engine_db, user_id=ALICE + 1, name="bob", at=1.0)
    await people.remember(engine_db, user_id=ALICE, name="Alice L.", at=2.0)
    assert await people.names(engine_db) == {ALICE: "Alice L.", ALICE + 1: "bob"}
