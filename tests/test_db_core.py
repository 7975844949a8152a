"""Queries written once, in the SQL both engines share, behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from mendbot.db import core
from mendbot.db import runs as queries
from mendbot.db.connection import transaction

pytestmark = pytest.mark.engines


def _run(**values: object) -> dict[str, object]:
    return {
        "kind": "fix",
        "state": "queued",
        "requester_id": 1_100_000_000_000_001_000,  # a Discord id: 64 bits
        "description": "roll is broken",
        "slug": "roll-is-broken",
        "created_at": 100.0,
        "updated_at": 100.0,
        **values,
    }


async def test_a_run_and_its_created_event_are_inserted_together(engine_db: core.Connection) -> None:
    """insert() returns the new id; the run has its defaults and one "created" event with the detail."""
    run_id = await queries.insert(engine_db, _run(), actor="alice", detail={"why": "asked"})
    run = await queries.by_id(engine_db, run_id)
    assert run is not None
    assert (run["state"], run["requester_id"], run["cost_usd"], run["attempts"], run["origin"]) == (
        "queued",
        1_100_000_000_000_001_000,
        0,
        0,
        "requested",
    )
    [event] = await queries.events(engine_db, run_id)
    assert (event["event"], event["actor"], event["detail"]) == ("created", "alice", {"why": "asked"})


async def test_a_transition_from_a_state_the_run_left_writes_nothing(engine_db: core.Connection) -> None:
    """A transition applies only from the expected state, adds its cost, and logs one event."""
    run_id = await queries.insert(engine_db, _run(), actor="alice", detail=None)
    for target, applied in (("observing", True), ("failed", False)):
        changed = await queries.transition(
            engine_db,
            run_id,
            expected_state="queued",
            values={"state": target},
            ts=101.0,
            actor="bot",
            event="started",
            detail=None,
            cost_usd=0.25,
        )
        assert changed is applied
    run = await queries.by_id(engine_db, run_id)
    assert run is not None and (run["state"], run["cost_usd"]) == ("observing", 0.25)
    assert [e["event"] for e in await queries.events(engine_db, run_id)] == ["created", "started"]
    assert await queries.spent_since(engine_db, 101.0) == 0.25
    assert await queries.spent_since(engine_db, 101.0, origin="autonomous") == 0.0


async def test_runs_by_state_time_and_origin(engine_db: core.Connection) -> None:
    """in_states/busy take a list of states; created_since filters by origin when given."""
    first = await queries.insert(engine_db, _run(), actor="a", detail=None)
    second = await queries.insert(
        engine_db, _run(state="editing", origin="autonomous", created_at=200.0), actor="a", detail=None
    )
    await queries.insert(engine_db, _run(state="resolved", created_at=300.0), actor="a", detail=None)
    assert [r["id"] for r in await queries.in_states(engine_db, ["queued", "editing"])] == [first, second]
    assert await queries.busy(engine_db, ("editing",)) == [(second, "editing")]
    assert [t for _, t in await queries.created_since(engine_db, 150.0)] == [200.0, 300.0]
    assert await queries.created_since(engine_db, 150.0, origin="autonomous") == [
        (1_100_000_000_000_001_000, 200.0)
    ]
    newest = await queries.recent(engine_db, 2)
    assert len(newest) == 2 and newest[0]["id"] > second == newest[1]["id"]


async def test_a_run_is_found_by_its_status_message_or_a_report_about_it(engine_db: core.Connection) -> None:
    """by_message finds a run by the status message id, or by a "reported" event's message id."""
    run_id = await queries.insert(engine_db, _run(), actor="a", detail=None)
    await queries.update(engine_db, run_id, {"status_message_id": 1_200_000_000_000_000_001})
    await queries.transition(
        engine_db,
        run_id,
        expected_state="queued",
        values={"state": "reported"},
        ts=1.0,
        actor="bot",
        event="reported",
        detail={"message_id": 1_200_000_000_000_000_002},
        cost_usd=0.0,
    )
    assert await queries.by_message(engine_db, 1_200_000_000_000_000_001) == run_id
    assert await queries.by_message(engine_db, 1_200_000_000_000_000_002) == run_id
    assert await queries.by_message(engine_db, 1_200_000_000_000_000_003) is None


async def test_settings_are_set_replaced_and_deleted(engine_db: core.Connection) -> None:
    """A setting holds JSON; setting it again replaces it; deleting it leaves None."""
    assert await queries.get_setting(engine_db, "paused") is None
    await queries.set_setting(engine_db, "paused", {"by": 1})
    await queries.set_setting(engine_db, "paused", {"by": 2})
    assert await queries.get_setting(engine_db, "paused") == {"by": 2}
    await queries.delete_setting(engine_db, "paused")
    assert await queries.get_setting(engine_db, "paused") is None


async def test_a_transaction_that_raises_leaves_nothing(engine_db: core.Connection) -> None:
    """Statements in a transaction that raises are all rolled back, on either engine."""
    with pytest.raises(RuntimeError):
        async with transaction(engine_db):
            await queries.set_setting(engine_db, "a", 1)
            raise RuntimeError("half-way")
    assert await queries.get_setting(engine_db, "a") is None


async def test_another_tasks_statement_waits_for_an_open_transaction(engine_db: core.Connection) -> None:
    """A statement from another task neither joins nor sees an open transaction: it runs after it."""
    inside = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with transaction(engine_db):
            await queries.set_setting(engine_db, "held", 1)
            inside.set()
            await release.wait()
            raise RuntimeError("rolled back")

    holder = asyncio.create_task(hold())
    await inside.wait()
    other = asyncio.create_task(queries.set_setting(engine_db, "other", 2))
    await asyncio.sleep(0.1)
    assert not other.done()
    release.set()
    with pytest.raises(RuntimeError):
        await holder
    await other
    assert (await queries.get_setting(engine_db, "held"), await queries.get_setting(engine_db, "other")) == (
        None,
        2,
    )


async def test_a_list_goes_where_in_names_it_and_an_empty_one_means_what_sql_says(
    engine_db: core.Connection,
) -> None:
    """`IN (:ids)` / `NOT IN (:ids)` take a list or tuple; nothing is in an empty one (an empty IN
    matches no row, an empty NOT IN every row), on both engines alike."""
    for key in ("a", "b", "c"):
        await queries.set_setting(engine_db, key, 1)

    async def keys(sql: str, **params: object) -> list[str]:
        return [row["key"] for row in await core.rows(engine_db, sql, **params)]

    chosen = 'SELECT "key" FROM settings_kv WHERE "key" IN (:keys) ORDER BY "key"'
    others = 'SELECT "key" FROM settings_kv WHERE "key" NOT IN (:keys) ORDER BY "key"'
    assert await keys(chosen, keys=["c", "a"]) == ["a", "c"]
    assert await keys(chosen, keys=("b",)) == ["b"]
    assert await keys(others, keys=["a"]) == ["b", "c"]
    assert await keys(chosen, keys=[]) == []
    assert await keys(others, keys=[]) == ["a", "b", "c"]
    # Inside a subquery, as `claims.delete_unless_in_states` has one.
    nested = """
        SELECT "key" FROM settings_kv
        WHERE "key" NOT IN (SELECT "key" FROM settings_kv WHERE "key" IN (:keys))
        ORDER BY "key"
    """
    assert await keys(nested, keys=[]) == ["a", "b", "c"]
    assert await keys(nested, keys=["b"]) == ["a", "c"]


async def test_quotes_percents_and_colons_in_the_text_reach_the_engine_as_written(
    engine_db: core.Connection,
) -> None:
    """A `%`, a `:word` or a doubled quote inside a string literal is text, not a parameter, on either
    engine (psycopg reads `%` as its own placeholder sign)."""
    value = await core.scalar(engine_db, "SELECT 'a%:b''c' || :tail AS v", tail="%:z")
    assert value == "a%:b'c%:z"
    assert await core.scalar(engine_db, "SELECT count(*) FROM settings_kv WHERE 'x%' LIKE 'x%'") == 0


async def test_a_list_anywhere_but_in_is_refused(engine_db: core.Connection) -> None:
    """A list given for a parameter that no `IN (…)` takes is a programming error, said at once."""
    with pytest.raises(ValueError, match="outside `IN"):
        await core.rows(engine_db, 'SELECT "key" FROM settings_kv WHERE "key" = :keys', keys=["a"])
