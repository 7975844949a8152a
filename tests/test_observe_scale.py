"""Observation at scale: kind-wide evidence reads the failures' own index, not every row of the kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from mendbot.db import actions as action_queries
from mendbot.db import open_database
from mendbot.db.records import ActionRecord

pytestmark = pytest.mark.engines


def _action(ts: float, *, ok: bool) -> ActionRecord:
    return ActionRecord(
        ts=ts,
        kind="command:roll",
        source="test",
        ok=ok,
        duration_ms=1.0,
        error_type=None if ok else "KeyError",
        error_message=None if ok else f"missing {ts:g}",
    )


async def test_kind_wide_failures_come_from_their_index(tmp_path: Path) -> None:
    """A kind's newest failures are found through the failures' index, without scanning the kind's rows."""
    db = await open_database(tmp_path / "m.db")
    try:
        failures = [_action(float(n), ok=False) for n in (1, 2, 3)]
        await action_queries.insert_many(db, [*failures, *(_action(10.0 + n, ok=True) for n in range(3000))])
        statements: list[str] = []
        await db.set_trace_callback(statements.append)
        found = await action_queries.recent_failures(db, kind="command:roll", fingerprint=None, since=0.0)
        assert [record.error_message for record in found] == ["missing 3", "missing 2", "missing 1"]
        [query] = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]
        async with db.execute(f"EXPLAIN QUERY PLAN {query}") as cursor:
            plan = [row[3] for row in await cursor.fetchall()]
        assert any("USING INDEX actions_kind_failures_ts" in step for step in plan), plan
        assert not any(step.startswith("SCAN") for step in plan), plan
    finally:
        await db.close()
