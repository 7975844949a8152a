"""The `proofs` queries, and the recorded calls a replay reads, behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from mendbot.db import core
from mendbot.db import proofs as queries
from tests.harness.sql import insert

pytestmark = pytest.mark.engines


async def _action(db: core.Connection, ts: float, **values: object) -> None:
    row: dict[str, object] = {
        "ts": ts,
        "kind": "command:roll",
        "source": "command",
        "ok": 1,
        "duration_ms": 10.0,
        **values,
    }
    await insert(db, "actions", **row)


async def _proof(db: core.Connection, **values: object) -> int:
    fields: dict[str, object] = {
        "run_id": 3,
        "stage": "verify",
        "sha": "a" * 40,
        "base_sha": "b" * 40,
        "verdict": "proven",
        "reason": "replayed",
        "items": [{"call": 1, "ok": True}],
        "overhead_s": 0.5,
        "now": 100.0,
        **values,
    }
    return await queries.insert(db, **fields)  # type: ignore[arg-type]


async def test_the_latest_proof_of_a_stage_is_read_back_whole(engine_db: core.Connection) -> None:
    """latest() is the newest proof of that run and stage, its items decoded from JSON."""
    await _proof(engine_db)
    newest = await _proof(engine_db, verdict="disproven", items=[], now=200.0)
    await _proof(engine_db, stage="deploy")
    await _proof(engine_db, run_id=4, now=300.0)
    proof = await queries.latest(engine_db, 3, "verify")
    assert proof == queries.ProofRow(
        newest, 3, "verify", "a" * 40, "b" * 40, "disproven", "replayed", [], 0.5, 200.0
    )
    deployed = await queries.latest(engine_db, 3, "deploy")
    assert deployed is not None and deployed.items == [{"call": 1, "ok": True}]


async def test_no_proof_is_none(engine_db: core.Connection) -> None:
    """latest() of a run without a proof of that stage is None."""
    await _proof(engine_db, stage="deploy")
    assert await queries.latest(engine_db, 3, "verify") is None


async def test_failing_calls_are_the_newest_failures_of_the_fingerprint(engine_db: core.Connection) -> None:
    """failing_calls() keeps failures of that fingerprint only, newest first, invocations decoded."""
    await _action(engine_db, 1.0, ok=0, fingerprint="f1", error_type="KeyError", invocation='{"args": [1]}')
    await _action(engine_db, 2.0, ok=0, fingerprint="f1", invocation="[1, 2]")
    await _action(engine_db, 3.0, ok=1, fingerprint="f1")
    await _action(engine_db, 4.0, ok=0, fingerprint="f2")
    calls = await queries.failing_calls(engine_db, "f1")
    assert calls == [
        queries.RecordedCall("command:roll", None, False, 10.0, None, "f1", ts=2.0),
        queries.RecordedCall("command:roll", {"args": [1]}, False, 10.0, "KeyError", "f1", ts=1.0),
    ]
    assert await queries.failing_calls(engine_db, "f3") == []


async def test_slowest_calls_are_the_completed_ones_of_the_kind_slowest_first(
    engine_db: core.Connection,
) -> None:
    """slowest_calls() keeps completed calls of that kind, slowest first."""
    await _action(engine_db, 1.0, duration_ms=5.0, invocation=json.dumps({"n": 1}))
    await _action(engine_db, 2.0, duration_ms=50.0)
    await _action(engine_db, 3.0, duration_ms=500.0, ok=0)
    await _action(engine_db, 4.0, duration_ms=900.0, kind="command:ping")
    calls = await queries.slowest_calls(engine_db, "command:roll")
    assert [(c.duration_ms, c.ok, c.invocation) for c in calls] == [(50.0, True, None), (5.0, True, {"n": 1})]
    assert await queries.slowest_calls(engine_db, "command:none") == []


async def test_slowest_calls_look_only_at_the_most_recent_calls(engine_db: core.Connection) -> None:
    """A slow call older than the recent rows scanned is not among the slowest."""
    await _action(engine_db, 0.0, duration_ms=10_000.0)
    for n in range(500):
        await _action(engine_db, 1.0 + n, duration_ms=1.0)
    calls = await queries.slowest_calls(engine_db, "command:roll")
    assert len(calls) == 500 and max(c.duration_ms for c in calls) == 1.0


async def test_an_incidents_kind_is_read_or_none(engine_db: core.Connection) -> None:
    """incident_kind() is the incident's kind; None for an unknown incident or an empty kind."""
    ids = []
    for kind in ("command:roll", ""):
        row = {
            "rule": "r",
            "rules": "[]",
            "level": "error",
            "kind": kind,
            "state": "open",
            "summary": "s",
            "first_seen": 1.0,
            "last_seen": 1.0,
            "count": 1,
            "user_ids": "[]",
            "sample": "{}",
            "updated_at": 1.0,
        }
        ids.append(await insert(engine_db, "incidents", **row))
    assert await queries.incident_kind(engine_db, ids[0]) == "command:roll"
    assert await queries.incident_kind(engine_db, ids[1]) is None
    assert await queries.incident_kind(engine_db, 404) is None
