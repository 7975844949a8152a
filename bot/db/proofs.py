"""Queries for `proofs`: the proof of fix taken for a run's head (at verify) and after its deploy.

Written once in the SQL both engines share (`mendbot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from mendbot.db import core
from mendbot.db.core import Connection

__all__ = [
    "ProofRow",
    "ProofStage",
    "RecordedCall",
    "failing_calls",
    "incident_kind",
    "insert",
    "latest",
    "recent_successes",
    "slowest_calls",
]

ProofStage = Literal["verify", "deploy"]


class ProofRow(msgspec.Struct, frozen=True):
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


class RecordedCall(msgspec.Struct, frozen=True):
    """One recorded action with what it was asked: what a replay sends again."""

    kind: str
    invocation: dict[str, Any] | None
    ok: bool
    duration_ms: float
    error_type: str | None
    fingerprint: str | None
    frames: tuple[str, ...] = ()  # in-repo "file:line:function" of a failure, innermost last
    reply: str | None = None  # the first characters of what it answered, as recorded
    ts: float = 0.0
    guild_id: int | None = None  # where, and who asked: the same call from one member is comparable
    user_id: int | None = None


_CALL_COLUMNS = (
    "kind",
    "invocation",
    "ok",
    "duration_ms",
    "error_type",
    "fingerprint",
    "frames",
    "reply",
    "ts",
    "guild_id",
    "user_id",
)
_SCAN = 500  # recent rows looked at; distinct invocations are picked from these

_FAILING_CALLS = f"""
    SELECT {", ".join(_CALL_COLUMNS)} FROM actions WHERE fingerprint = :fingerprint AND ok = 0
    ORDER BY ts DESC LIMIT {_SCAN}"""
_SLOWEST_CALLS = f"""
    SELECT {", ".join(_CALL_COLUMNS)}
    FROM (SELECT * FROM actions WHERE kind = :kind ORDER BY ts DESC LIMIT {_SCAN}) AS recent
    WHERE ok = 1 ORDER BY duration_ms DESC"""
# A kind's recent calls that completed with an invocation: what the proof replays to see that what worked
# still works. Each kind's newest first (the scan is per kind, so a busy kind cannot hide a quiet one).
_RECENT_SUCCESSES = f"""
    SELECT {", ".join(_CALL_COLUMNS)} FROM actions
    WHERE kind = :kind AND ok = 1 AND invocation IS NOT NULL ORDER BY ts DESC LIMIT {_SCAN}"""
_INSERT = """
    INSERT INTO proofs (run_id, stage, sha, base_sha, verdict, reason, items, overhead_s, created_at)
    VALUES (:run_id, :stage, :sha, :base_sha, :verdict, :reason, :items, :overhead_s, :now)
    RETURNING id"""
_LATEST = "SELECT * FROM proofs WHERE run_id = :run_id AND stage = :stage ORDER BY id DESC LIMIT 1"
_INCIDENT_KIND = "SELECT kind FROM incidents WHERE id = :incident_id"


def _call(row: Mapping[str, Any]) -> RecordedCall:
    invocation = json.loads(row["invocation"]) if row["invocation"] else None
    frames = json.loads(row["frames"]) if row["frames"] else []
    reply = json.loads(row["reply"]) if row["reply"] else None
    return RecordedCall(
        row["kind"],
        invocation if isinstance(invocation, dict) else None,
        bool(row["ok"]),
        row["duration_ms"],
        row["error_type"],
        row["fingerprint"],
        tuple(str(frame) for frame in frames) if isinstance(frames, list) else (),
        str(reply.get("text") or "") if isinstance(reply, dict) else None,
        float(row["ts"]),
        row["guild_id"],
        row["user_id"],
    )


async def failing_calls(db: Connection, fingerprint: str) -> list[RecordedCall]:
    """The most recent failures with this fingerprint, newest first."""
    return [_call(row) for row in await core.rows(db, _FAILING_CALLS, fingerprint=fingerprint)]


async def slowest_calls(db: Connection, kind: str) -> list[RecordedCall]:
    """The slowest recent calls of a kind that completed, slowest first."""
    return [_call(row) for row in await core.rows(db, _SLOWEST_CALLS, kind=kind)]


async def recent_successes(db: Connection, kinds: list[str]) -> dict[str, list[RecordedCall]]:
    """For each kind, its most recent completed calls that recorded what they were asked, newest first."""
    found: dict[str, list[RecordedCall]] = {}
    for kind in kinds:
        found[kind] = [_call(row) for row in await core.rows(db, _RECENT_SUCCESSES, kind=kind)]
    return found


async def insert(
    db: Connection,
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
    proof_id = await core.scalar(
        db,
        _INSERT,
        run_id=run_id,
        stage=stage,
        sha=sha,
        base_sha=base_sha,
        verdict=verdict,
        reason=reason,
        items=json.dumps(items),
        overhead_s=overhead_s,
        now=now,
    )
    return int(proof_id)


async def latest(db: Connection, run_id: int, stage: ProofStage) -> ProofRow | None:
    """The newest proof of `stage` taken for the run, or None."""
    row = await core.first(db, _LATEST, run_id=run_id, stage=stage)
    if row is None:
        return None
    return ProofRow(
        id=row["id"],
        run_id=row["run_id"],
        stage=row["stage"],
        sha=row["sha"],
        base_sha=row["base_sha"],
        verdict=row["verdict"],
        reason=row["reason"],
        items=json.loads(row["items"]),
        overhead_s=row["overhead_s"],
        created_at=row["created_at"],
    )


async def incident_kind(db: Connection, incident_id: int) -> str | None:
    """The kind an incident is about (what a latency incident's replay sends again)."""
    kind = await core.scalar(db, _INCIDENT_KIND, incident_id=incident_id)
    return str(kind) if kind else None
