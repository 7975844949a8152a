"""Queries for `proofs`: the proof of fix taken for a run's head (at verify) and after its deploy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import aiosqlite

__all__ = [
    "ProofRow",
    "ProofStage",
    "RecordedCall",
    "failing_calls",
    "incident_kind",
    "insert",
    "latest",
    "slowest_calls",
]

ProofStage = Literal["verify", "deploy"]


@dataclass(frozen=True, slots=True)
class ProofRow:
    id: int
    run_id: int
    stage: ProofStage
    sha: str
    base_sha: str
    verdict: str
    reason: str
    items: list[dict[str, Any]]
    overhead_s: float
    created_at: float


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One recorded action with what it was asked: what a replay sends again."""

    kind: str
    invocation: dict[str, Any] | None
    ok: bool
    duration_ms: float
    error_type: str | None
    fingerprint: str | None


_CALL_COLUMNS = "kind, invocation, ok, duration_ms, error_type, fingerprint"
_SCAN = 500  # recent rows looked at; distinct invocations are picked from these


def _call(row: aiosqlite.Row) -> RecordedCall:
    invocation = json.loads(row[1]) if row[1] else None
    return RecordedCall(
        row[0], invocation if isinstance(invocation, dict) else None, bool(row[2]), row[3], row[4], row[5]
    )


async def failing_calls(db: aiosqlite.Connection, fingerprint: str) -> list[RecordedCall]:
    """The most recent failures with this fingerprint, newest first."""
    async with db.execute(
        f"SELECT {_CALL_COLUMNS} FROM actions WHERE fingerprint = ? AND ok = 0 ORDER BY ts DESC LIMIT ?",
        (fingerprint, _SCAN),
    ) as cursor:
        return [_call(row) for row in await cursor.fetchall()]


async def slowest_calls(db: aiosqlite.Connection, kind: str) -> list[RecordedCall]:
    """The slowest recent calls of a kind that completed, slowest first."""
    async with db.execute(
        f"SELECT {_CALL_COLUMNS} FROM (SELECT * FROM actions WHERE kind = ? ORDER BY ts DESC LIMIT ?)"
        " WHERE ok = 1 ORDER BY duration_ms DESC",
        (kind, _SCAN),
    ) as cursor:
        return [_call(row) for row in await cursor.fetchall()]


async def insert(
    db: aiosqlite.Connection,
    *,
    run_id: int,
    stage: ProofStage,
    sha: str,
    base_sha: str,
    verdict: str,
    reason: str,
    items: list[dict[str, Any]],
    overhead_s: float,
    now: float,
) -> int:
    cursor = await db.execute(
        "INSERT INTO proofs (run_id, stage, sha, base_sha, verdict, reason, items, overhead_s, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, stage, sha, base_sha, verdict, reason, json.dumps(items), overhead_s, now),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


async def latest(db: aiosqlite.Connection, run_id: int, stage: ProofStage) -> ProofRow | None:
    """The newest proof of `stage` taken for the run, or None."""
    async with db.execute(
        "SELECT id, run_id, stage, sha, base_sha, verdict, reason, items, overhead_s, created_at"
        " FROM proofs WHERE run_id = ? AND stage = ? ORDER BY id DESC LIMIT 1",
        (run_id, stage),
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        return None
    return ProofRow(
        id=row[0],
        run_id=row[1],
        stage=row[2],
        sha=row[3],
        base_sha=row[4],
        verdict=row[5],
        reason=row[6],
        items=json.loads(row[7]),
        overhead_s=row[8],
        created_at=row[9],
    )


async def incident_kind(db: aiosqlite.Connection, incident_id: int) -> str | None:
    """The kind an incident is about (what a latency incident's replay sends again)."""
    async with db.execute("SELECT kind FROM incidents WHERE id = ?", (incident_id,)) as cursor:
        row = await cursor.fetchone()
    return str(row[0]) if row and row[0] else None
