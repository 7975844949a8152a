"""The `/metrics` figures read from the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from mendbot.db import core, metrics
from mendbot.db import runs as run_queries

pytestmark = pytest.mark.engines


def _run(state: str) -> dict[str, object]:
    return {
        "kind": "fix",
        "state": state,
        "requester_id": 1_100_000_000_000_001_000,
        "description": "roll is broken",
        "slug": "roll-is-broken",
        "created_at": 100.0,
        "updated_at": 100.0,
    }


async def test_an_empty_database_has_no_runs_and_no_spend(engine_db: core.Connection) -> None:
    """With no runs, runs_by_state is empty and run_spend is 0.0."""
    assert await metrics.runs_by_state(engine_db) == {}
    assert await metrics.run_spend(engine_db) == 0.0


async def test_runs_are_counted_by_state(engine_db: core.Connection) -> None:
    """runs_by_state counts the runs in each state."""
    for state in ("queued", "queued", "resolved"):
        await run_queries.insert(engine_db, _run(state), actor="a", detail=None)
    assert await metrics.runs_by_state(engine_db) == {"queued": 2, "resolved": 1}


async def test_run_spend_sums_every_event_cost(engine_db: core.Connection) -> None:
    """run_spend adds up the cost of every run event."""
    run_id = await run_queries.insert(engine_db, _run("queued"), actor="a", detail=None)
    for state, cost in (("observing", 0.25), ("editing", 0.5)):
        await run_queries.transition(
            engine_db,
            run_id,
            expected_state="queued" if state == "observing" else "observing",
            values={"state": state},
            ts=101.0,
            actor="bot",
            event="step",
            detail=None,
            cost_usd=cost,
        )
    assert await metrics.run_spend(engine_db) == 0.75
