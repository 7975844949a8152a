"""The claim queries, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from mendbot.db import claims, core
from mendbot.db import runs as run_queries

pytestmark = pytest.mark.engines


async def _run(db: core.Connection, state: str) -> int:
    return await run_queries.insert(
        db,
        {
            "kind": "fix",
            "state": state,
            "requester_id": 1_100_000_000_000_001_000,
            "description": "roll is broken",
            "slug": "roll-is-broken",
            "created_at": 100.0,
            "updated_at": 100.0,
        },
        actor="a",
        detail=None,
    )


async def test_claimed_paths_are_listed_in_claim_order(engine_db: core.Connection) -> None:
    """for_run() lists the paths by claim time, then by path."""
    run_id = await _run(engine_db, "editing")
    await claims.add(engine_db, run_id, ["b.py", "a.py"], "first", 1.0)
    await claims.add(engine_db, run_id, ["0.py"], "later", 2.0)
    assert await claims.for_run(engine_db, run_id) == ["a.py", "b.py", "0.py"]


async def test_claiming_a_held_path_again_keeps_the_first_claim(engine_db: core.Connection) -> None:
    """add() twice (and a path twice in one call) keeps one row, claimed when it was first claimed."""
    run_id = await _run(engine_db, "editing")
    await claims.add(engine_db, run_id, ["a.py"], "first", 1.0)
    await claims.add(engine_db, run_id, ["b.py", "a.py", "b.py"], "second", 2.0)
    assert await claims.for_run(engine_db, run_id) == ["a.py", "b.py"]


async def test_claiming_no_paths_writes_nothing(engine_db: core.Connection) -> None:
    """add() with an empty list claims nothing."""
    run_id = await _run(engine_db, "editing")
    await claims.add(engine_db, run_id, [], "nothing", 1.0)
    assert await claims.for_run(engine_db, run_id) == []


async def test_claims_held_by_runs_in_states(engine_db: core.Connection) -> None:
    """held_in_states() gives (run id, path) of runs in the states, by run then path; no states, none."""
    live = await _run(engine_db, "editing")
    other = await _run(engine_db, "queued")
    done = await _run(engine_db, "resolved")
    await claims.add(engine_db, live, ["b.py", "a.py"], "w", 1.0)
    await claims.add(engine_db, other, ["c.py"], "w", 1.0)
    await claims.add(engine_db, done, ["d.py"], "w", 1.0)
    assert await claims.held_in_states(engine_db, {"queued", "editing"}) == [
        (live, "a.py"),
        (live, "b.py"),
        (other, "c.py"),
    ]
    assert await claims.held_in_states(engine_db, []) == []


async def test_releasing_a_run_counts_its_paths(engine_db: core.Connection) -> None:
    """delete_for_run() releases only that run's claims and says how many; again, zero."""
    run_id = await _run(engine_db, "editing")
    other = await _run(engine_db, "editing")
    await claims.add(engine_db, run_id, ["a.py", "b.py"], "w", 1.0)
    await claims.add(engine_db, other, ["c.py"], "w", 1.0)
    assert await claims.delete_for_run(engine_db, run_id) == 2
    assert await claims.delete_for_run(engine_db, run_id) == 0
    assert await claims.for_run(engine_db, other) == ["c.py"]


async def test_claims_of_runs_outside_the_states_are_released(engine_db: core.Connection) -> None:
    """delete_unless_in_states() keeps the claims of runs in the states; with no states it releases all."""
    live = await _run(engine_db, "editing")
    done = await _run(engine_db, "resolved")
    await claims.add(engine_db, live, ["a.py"], "w", 1.0)
    await claims.add(engine_db, done, ["b.py", "c.py"], "w", 1.0)
    assert await claims.delete_unless_in_states(engine_db, ["editing"]) == 2
    assert await claims.held_in_states(engine_db, ["editing", "resolved"]) == [(live, "a.py")]
    assert await claims.delete_unless_in_states(engine_db, []) == 1
    assert await claims.for_run(engine_db, live) == []
