"""The dashboard's reads: pages of runs, incidents and action records, newest first, by keyset.

Every list is a keyset page (`… < :cursor ORDER BY … DESC LIMIT :n`), never an OFFSET, so page 500 of
a million action records costs what page 1 does; each filter has its own statement so that the
planner can take the index that starts with the filtered column (a catch-all `:x IS NULL OR col = :x`
would hide it). Statements are written once per filter set and kept.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mendbot.db import core
from mendbot.db.core import Connection
from mendbot.db.incidents import decode

__all__ = [
    "ActionFilter",
    "action_page",
    "actions_of_fingerprint",
    "approvals_of_run",
    "events_after",
    "in_states",
    "incident_page",
    "objections_of_run",
    "proofs_of_run",
    "run_page",
    "spend_since",
]

_ACTION_COLUMNS = (
    "id, ts, kind, source, ok, duration_ms, user_id, cost_usd, error_type, error_message, fingerprint, run_id"
)


@dataclass(frozen=True)
class ActionFilter:
    """What the action explorer narrows to; None leaves a field open."""

    kind: str | None = None
    fingerprint: str | None = None
    user_id: int | None = None
    since: float | None = None
    until: float | None = None
    # The listeners' successes — every message the bot reads, a row each — drown what people asked for:
    # left out unless asked for (or a listener's kind is).
    listeners: bool = False


@functools.cache
def _run_page(by_state: bool) -> str:
    state = " AND state = :state" if by_state else ""
    return f"SELECT * FROM runs WHERE id < :before{state} ORDER BY id DESC LIMIT :limit"


async def run_page(
    db: Connection, *, before: int | None, limit: int, state: str | None = None
) -> list[dict[str, Any]]:
    """Up to `limit` runs with an id below `before` (all, when None), newest first."""
    params: dict[str, Any] = {"before": before or 2**62, "limit": limit}
    if state is not None:
        params["state"] = state
    return await core.rows(db, _run_page(state is not None), **params)


_IN_STATES = "SELECT * FROM runs WHERE state IN (:states) ORDER BY id DESC LIMIT :limit"


async def in_states(db: Connection, states: Iterable[str], limit: int) -> list[dict[str, Any]]:
    """The newest `limit` runs in any of `states` (the overview's runs in flight)."""
    return await core.rows(db, _IN_STATES, states=sorted(states), limit=limit)


@functools.cache
def _incident_page(by_state: bool) -> str:
    state = " AND state = :state" if by_state else ""
    return f"SELECT * FROM incidents WHERE id < :before{state} ORDER BY id DESC LIMIT :limit"


async def incident_page(
    db: Connection, *, before: int | None, limit: int, state: str | None = None
) -> list[dict[str, Any]]:
    """Up to `limit` incidents with an id below `before`, newest first, decoded."""
    params: dict[str, Any] = {"before": before or 2**62, "limit": limit}
    if state is not None:
        params["state"] = state
    return [decode(row) for row in await core.rows(db, _incident_page(state is not None), **params)]


@functools.cache
def _action_page(kind: bool, fingerprint: bool, user: bool, listeners: bool = True) -> str:
    # (ts, id) below the cursor, written so that the index's ts range does the work: ts <= cursor ts,
    # and of the rows at exactly that ts only those with a smaller id.
    clauses = ["ts <= :upper", "ts >= :lower", "NOT (ts = :cursor_ts AND id >= :cursor_id)"]
    if not listeners:
        clauses.append("NOT (ok = 1 AND kind LIKE 'listener:%')")
    if kind:
        clauses.append("kind = :kind")
    if fingerprint:
        clauses.append("fingerprint = :fingerprint")
    if user:
        clauses.append("user_id = :user_id")
    return f"""
    SELECT {_ACTION_COLUMNS} FROM actions WHERE {" AND ".join(clauses)}
    ORDER BY ts DESC, id DESC LIMIT :limit"""


async def action_page(
    db: Connection, where: ActionFilter, *, cursor: tuple[float, int] | None, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` action records matching `where`, newest first, after `cursor` (ts, id) if given."""
    upper = where.until if where.until is not None else float("inf")
    cursor_ts, cursor_id = cursor if cursor is not None else (-1.0, 0)
    if cursor is not None:
        upper = min(upper, cursor_ts)
    params: dict[str, Any] = {
        "upper": upper if upper != float("inf") else 1e18,
        "lower": where.since if where.since is not None else -1.0,
        "cursor_ts": cursor_ts,
        "cursor_id": cursor_id,
        "limit": limit,
    }
    if where.kind is not None:
        params["kind"] = where.kind
    if where.fingerprint is not None:
        params["fingerprint"] = where.fingerprint
    if where.user_id is not None:
        params["user_id"] = where.user_id
    listeners = where.listeners or (where.kind or "").startswith("listener:")
    statement = _action_page(
        where.kind is not None, where.fingerprint is not None, where.user_id is not None, listeners
    )
    return await core.rows(db, statement, **params)


_OF_FINGERPRINT = f"""
    SELECT {_ACTION_COLUMNS}, frames, invocation FROM actions WHERE fingerprint = :fingerprint
    ORDER BY ts DESC LIMIT :limit"""


async def actions_of_fingerprint(db: Connection, fingerprint: str, limit: int) -> list[dict[str, Any]]:
    """The latest failing records of one fingerprint (an incident's samples)."""
    return await core.rows(db, _OF_FINGERPRINT, fingerprint=fingerprint, limit=limit)


_EVENTS_AFTER = "SELECT * FROM run_events WHERE run_id = :run_id AND id > :after ORDER BY id LIMIT 200"


async def events_after(db: Connection, run_id: int, after: int) -> list[dict[str, Any]]:
    """One run's events with an id above `after`, oldest first (the live timeline's news)."""
    found = await core.rows(db, _EVENTS_AFTER, run_id=run_id, after=after)
    for row in found:
        row["detail"] = json.loads(row["detail"]) if row["detail"] else {}
    return found


_APPROVALS = "SELECT * FROM approvals WHERE run_id = :run_id ORDER BY id"
_OBJECTIONS = "SELECT * FROM objections WHERE run_id = :run_id ORDER BY id"
_PROOFS = "SELECT * FROM proofs WHERE run_id = :run_id ORDER BY id"


async def approvals_of_run(db: Connection, run_id: int) -> list[dict[str, Any]]:
    """Every approval and rejection given on the run's proposals, withdrawn ones too."""
    return await core.rows(db, _APPROVALS, run_id=run_id)


async def objections_of_run(db: Connection, run_id: int) -> list[dict[str, Any]]:
    return await core.rows(db, _OBJECTIONS, run_id=run_id)


async def proofs_of_run(db: Connection, run_id: int) -> list[dict[str, Any]]:
    """The run's proofs (verify and deploy), their items decoded (None, with `unreadable` saying why,
    when they are not JSON)."""
    found = await core.rows(db, _PROOFS, run_id=run_id)
    for row in found:
        try:
            row["items"] = json.loads(row["items"]) if row["items"] else []
        except ValueError as exc:  # stored by hand, or cut: the page says so and shows the rest
            row["items"] = None
            row["unreadable"] = f"its items are not JSON ({exc})"
    return found


_RUN_SPEND = "SELECT coalesce(sum(cost_usd), 0) FROM run_events WHERE ts >= :since"
_ACTION_SPEND = "SELECT coalesce(sum(cost_usd), 0) FROM actions WHERE ts >= :since"


async def spend_since(db: Connection, since: float) -> tuple[float, float]:
    """(runs, everything else recorded as actions) spent since `since`, in USD."""
    ran = await core.scalar(db, _RUN_SPEND, since=since)
    acted = await core.scalar(db, _ACTION_SPEND, since=since)
    return float(ran or 0.0), float(acted or 0.0)
