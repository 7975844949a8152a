"""Queries for `proofs`: the proof of fix taken for a run's head (at verify) and after its deploy.

Written once as SQLAlchemy Core statements (`bot.db.core`), so they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import bindparam, select

from bot.db import core
from bot.db.core import Connection
from bot.db.schema import actions, incidents, proofs

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


_CALL_COLUMNS = ("kind", "invocation", "ok", "duration_ms", "error_type", "fingerprint")
_SCAN = 500  # recent rows looked at; distinct invocations are picked from these

_FAILING_CALLS = (
    select(*(actions.c[name] for name in _CALL_COLUMNS))
    .where(actions.c.fingerprint == bindparam("fingerprint"), actions.c.ok == 0)
    .order_by(actions.c.ts.desc())
    .limit(_SCAN)
)
_RECENT_OF_KIND = (
    select(actions).where(actions.c.kind == bindparam("kind")).order_by(actions.c.ts.desc()).limit(_SCAN)
).subquery()
_SLOWEST_CALLS = (
    select(*(_RECENT_OF_KIND.c[name] for name in _CALL_COLUMNS))
    .where(_RECENT_OF_KIND.c.ok == 1)
    .order_by(_RECENT_OF_KIND.c.duration_ms.desc())
)
_INSERT = (
    sa.insert(proofs)
    .values(
        run_id=bindparam("run_id"),
        stage=bindparam("stage"),
        sha=bindparam("sha"),
        base_sha=bindparam("base_sha"),
        verdict=bindparam("verdict"),
        reason=bindparam("reason"),
        items=bindparam("items"),
        overhead_s=bindparam("overhead_s"),
        created_at=bindparam("now"),
    )
    .returning(proofs.c.id)
)
_LATEST = (
    select(proofs)
    .where(proofs.c.run_id == bindparam("run_id"), proofs.c.stage == bindparam("stage"))
    .order_by(proofs.c.id.desc())
    .limit(1)
)
_INCIDENT_KIND = select(incidents.c.kind).where(incidents.c.id == bindparam("incident_id"))


def _call(row: Mapping[str, Any]) -> RecordedCall:
    invocation = json.loads(row["invocation"]) if row["invocation"] else None
    return RecordedCall(
        row["kind"],
        invocation if isinstance(invocation, dict) else None,
        bool(row["ok"]),
        row["duration_ms"],
        row["error_type"],
        row["fingerprint"],
    )


async def failing_calls(db: Connection, fingerprint: str) -> list[RecordedCall]:
    """The most recent failures with this fingerprint, newest first."""
    return [_call(row) for row in await core.rows(db, _FAILING_CALLS, fingerprint=fingerprint)]


async def slowest_calls(db: Connection, kind: str) -> list[RecordedCall]:
    """The slowest recent calls of a kind that completed, slowest first."""
    return [_call(row) for row in await core.rows(db, _SLOWEST_CALLS, kind=kind)]


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
