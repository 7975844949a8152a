"""The drills table, on SQLite and PostgreSQL: numbered in order, one unfinished at a time however many
connections ask at once, its progress and its end kept."""

from __future__ import annotations

import asyncio

import pytest

from mendbot.db import core, drills

pytestmark = pytest.mark.engines


async def test_a_drill_is_numbered_after_the_last_and_one_is_unfinished_at_a_time(
    engine_db: core.Connection,
) -> None:
    """The first drill is #1 (or the legacy counter's next); while it is unfinished no other begins;
    once it ended the next is #2."""
    first = await drills.begin(engine_db, process=None, now=10.0)
    assert first is not None and first.number == 1 and first.stage == "" and first.outcome is None
    assert await drills.begin(engine_db, process="shards 1", now=11.0) is None
    assert await drills.unfinished(engine_db) == first
    assert await drills.end(engine_db, first.id, outcome="ok", now=12.0, stage="propose")
    assert not await drills.end(engine_db, first.id, outcome="interrupted", now=13.0)  # once
    assert await drills.unfinished(engine_db) is None
    second = await drills.begin(engine_db, process="shards 0", now=14.0, floor=0)
    assert second is not None and second.number == 2 and second.process == "shards 0"
    ended = await drills.latest(engine_db)
    assert ended == second
    await drills.end(engine_db, second.id, outcome="stopped", now=15.0)
    third = await drills.begin(engine_db, process=None, now=16.0, floor=7)  # counted before the table
    assert third is not None and third.number == 8


async def test_progress_is_kept(engine_db: core.Connection) -> None:
    """`reached` keeps the stage and the records the drill learnt; `end` its outcome and when."""
    drill = await drills.begin(engine_db, process=None, now=1.0)
    assert drill is not None
    await drills.reached(engine_db, drill.id, "detect", incident_id=5)
    await drills.reached(engine_db, drill.id, "investigate", run_id=9)
    await drills.reached(engine_db, drill.id, "propose", proposal_id=3)
    now = await drills.unfinished(engine_db)
    assert now is not None and (now.stage, now.incident_id, now.run_id, now.proposal_id) == (
        "propose",
        5,
        9,
        3,
    )
    await drills.end(engine_db, drill.id, outcome="interrupted", now=2.0)
    done = await drills.latest(engine_db)
    assert done is not None and (done.outcome, done.ended_at, done.stage) == ("interrupted", 2.0, "propose")
    with pytest.raises(ValueError, match="not a drill's record"):
        await drills.reached(engine_db, drill.id, "x", state=1)


async def test_concurrent_begins_start_exactly_one(engine_db: core.Connection) -> None:
    """Ten begins at once on one connection: one drill, the others told none began."""
    started = await asyncio.gather(*(drills.begin(engine_db, process=None, now=1.0) for _ in range(10)))
    assert sum(drill is not None for drill in started) == 1


async def test_begins_on_separate_postgresql_connections_start_exactly_one(postgres_url: str) -> None:
    """Processes sharing PostgreSQL (a connection each) starting a drill at the same moment: one drill."""
    connections = [await core.open_postgresql(postgres_url) for _ in range(4)]
    try:
        for _ in range(3):
            started = await asyncio.gather(
                *(drills.begin(db, process=f"shards {n}", now=1.0) for n, db in enumerate(connections))
            )
            won = [drill for drill in started if drill is not None]
            assert len(won) == 1
            await drills.end(connections[0], won[0].id, outcome="ok", now=2.0)
        numbers = [row["number"] for row in await core.rows(connections[0], "SELECT number FROM drills")]
        assert sorted(numbers) == [1, 2, 3]
    finally:
        for db in connections:
            await db.close()
