"""The self-audit's aggregates behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mendbot.db import actions as action_queries
from mendbot.db import audit as queries
from mendbot.db import core
from mendbot.db import runs as run_queries
from mendbot.db.records import ActionRecord
from tests.harness.sql import insert

pytestmark = pytest.mark.engines

DAY = 86400.0
START = 20_000 * DAY  # a UTC midnight


def _action(ts: float, *, kind: str = "command:roll", ok: bool = True, **values: Any) -> ActionRecord:
    return ActionRecord(
        ts=ts, kind=kind, source="test", ok=ok, duration_ms=values.pop("duration_ms", 1.0), **values
    )


def _failure(ts: float, fingerprint: str, message: str = "boom", **values: Any) -> ActionRecord:
    return _action(
        ts, ok=False, fingerprint=fingerprint, error_type="KeyError", error_message=message, **values
    )


async def _incident(
    db: core.Connection, *, first_seen: float, state: str = "open", closed_at: float | None = None
) -> None:
    values = {
        "rule": "repeat",
        "rules": "[]",
        "level": "error",
        "kind": "command:roll",
        "state": state,
        "summary": "s",
        "first_seen": first_seen,
        "last_seen": first_seen,
        "count": 1,
        "user_ids": "[]",
        "sample": json.dumps({}),
        "updated_at": first_seen,
        "closed_at": closed_at,
    }
    await insert(db, "incidents", **values)


async def _run(
    db: core.Connection, *, kind: str = "fix", state: str = "queued", created_at: float, cost: float = 0.0
) -> int:
    values = {
        "kind": kind,
        "state": state,
        "requester_id": 1_100_000_000_000_001_000,
        "description": "d",
        "slug": "d",
        "created_at": created_at,
        "updated_at": created_at,
        "cost_usd": cost,
    }
    return await run_queries.insert(db, values, actor="a", detail=None)


async def _event(
    db: core.Connection,
    run_id: int,
    ts: float,
    *,
    event: str = "model",
    state: str = "editing",
    cost: float = 0.0,
) -> None:
    values = {"run_id": run_id, "ts": ts, "actor": "bot", "event": event, "state": state, "cost_usd": cost}
    await insert(db, "run_events", **values)


async def test_kind_days_count_actions_failures_and_cost_per_utc_day(engine_db: core.Connection) -> None:
    """One row per kind and UTC day of the period (a late-evening time stays on its day), failures summed."""
    await action_queries.insert_many(
        engine_db,
        [
            _action(START + 10, cost_usd=0.25),
            _failure(START + DAY - 1, "f"),  # 23:59:59: rounding would move it to the next day
            _action(START + DAY + 5),
            _action(START + 7, kind="app:roll"),
            _action(START - 1),  # before the period
            _action(START + 2 * DAY),  # its end is excluded
        ],
    )
    found = await queries.kind_days(engine_db, START, START + 2 * DAY)
    assert sorted(found, key=lambda k: (k.kind, k.day)) == [
        queries.KindDay("app:roll", 20_000, 1, 0, 0.0),
        queries.KindDay("command:roll", 20_000, 2, 1, 0.25),
        queries.KindDay("command:roll", 20_001, 1, 0, 0.0),
    ]
    assert await queries.kind_days(engine_db, 0.0, 1.0) == []


async def test_kind_counts_per_kind_in_the_period(engine_db: core.Connection) -> None:
    """Actions per kind in the half-open period; an empty period gives an empty dict."""
    await action_queries.insert_many(
        engine_db,
        [_action(START), _failure(START + 1, "f"), _action(START + 2, kind="x"), _action(START + 3)],
    )
    assert await queries.kind_counts(engine_db, START, START + 3) == {"command:roll": 2, "x": 1}
    assert await queries.kind_counts(engine_db, 0.0, 1.0) == {}


async def test_percentile_is_the_ranked_duration_of_the_kind(engine_db: core.Connection) -> None:
    """The rank-th smallest duration of the kind in the period; rank 0 or past the end gives None."""
    durations = [30.0, 10.0, 20.0]
    await action_queries.insert_many(
        engine_db,
        [
            *(_action(START + n, duration_ms=d) for n, d in enumerate(durations)),
            _action(START, kind="other", duration_ms=1.0),
            _action(START - 1, duration_ms=0.5),
        ],
    )
    ranks = [await queries.percentile(engine_db, "command:roll", START, START + DAY, r) for r in range(5)]
    assert ranks == [None, 10.0, 20.0, 30.0, None]


async def test_top_fingerprints_most_failing_first_with_the_newest_message(
    engine_db: core.Connection,
) -> None:
    """Failures per fingerprint in the period, most first (ties by name), limited, with its newest message."""
    await action_queries.insert_many(
        engine_db,
        [
            _failure(START - 10, "a", "before"),
            _failure(START + 1, "a", "first"),
            _failure(START + 2, "a", "newest"),
            _failure(START + 3, "c", "c"),
            _failure(START + 4, "b", "b"),
            _failure(START + DAY, "b", "after"),
        ],
    )
    found = await queries.top_fingerprints(engine_db, START, START + DAY, limit=2)
    assert found == [
        queries.FingerprintCount("a", "command:roll", "KeyError", "newest", 2, START - 10),
        queries.FingerprintCount("b", "command:roll", "KeyError", "b", 1, START + 4),
    ]
    assert await queries.top_fingerprints(engine_db, 0.0, 1.0, limit=5) == []


async def test_incident_counts_opened_resolved_regressed_and_open_now(engine_db: core.Connection) -> None:
    """Each count reads its own times; regressions count runs once however many events."""
    await _incident(engine_db, first_seen=START + 1)
    await _incident(engine_db, first_seen=START - 5, state="resolved", closed_at=START + 2)
    await _incident(engine_db, first_seen=START - 5, state="acknowledged")
    await _incident(engine_db, first_seen=START + DAY, state="muted")
    run_id = await _run(engine_db, created_at=START)
    for ts in (START + 1, START + 2):
        await _event(engine_db, run_id, ts, event="transition", state="regressed")
    await _event(engine_db, run_id, START + 3, event="transition", state="resolved")
    counts = await queries.incident_counts(engine_db, START, START + DAY)
    assert counts == queries.IncidentCounts(opened=1, resolved=1, regressed=1, open_now=2)
    assert await queries.incident_counts(engine_db, 0.0, 1.0) == queries.IncidentCounts(0, 0, 0, 2)


async def test_run_counts_by_kind_and_state(engine_db: core.Connection) -> None:
    """Runs created in the period grouped by kind and current state, ordered, with summed cost."""
    await _run(engine_db, created_at=START, cost=0.5)
    await _run(engine_db, created_at=START + 1, cost=0.25)
    await _run(engine_db, kind="investigate", state="resolved", created_at=START + 2)
    await _run(engine_db, created_at=START - 1, cost=9.0)
    assert await queries.run_counts(engine_db, START, START + DAY) == [
        queries.RunCount("fix", "queued", 2, 0.75),
        queries.RunCount("investigate", "resolved", 1, 0.0),
    ]
    assert await queries.run_counts(engine_db, 0.0, 1.0) == []


async def test_run_spend_by_day_sums_costly_events_per_utc_day(engine_db: core.Connection) -> None:
    """Event costs per UTC day of the period; free events make no day."""
    run_id = await _run(engine_db, created_at=START)
    await _event(engine_db, run_id, START + DAY - 1, cost=0.5)
    await _event(engine_db, run_id, START + 5, cost=0.25)
    await _event(engine_db, run_id, START + DAY + 1, cost=1.0)
    await _event(engine_db, run_id, START + 2 * DAY + 1, cost=0.0)
    await _event(engine_db, run_id, START + 3 * DAY, cost=4.0)
    assert await queries.run_spend_by_day(engine_db, START, START + 3 * DAY) == {20_000: 0.75, 20_001: 1.0}
