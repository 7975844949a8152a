"""Held-out failures: the recorded failing calls the coding agent is not shown, kept for the proof.

A proof that replays exactly the calls the agent saw can be passed by answering those calls. So the
evidence pack shows the agent only the older half of the distinct failing calls of a run's fault (at
least one) — by what each was asked, the same command with the same options counting once — and the
proof replays all of them: the rest are **held out**, and so is every failure recorded after the evidence
was gathered. The pack's run event keeps the identities it showed (`shown_calls`), so the proof knows
which of its items the agent could not have special-cased.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any

__all__ = ["call_identity", "shown_identities"]


def call_identity(kind: str, invocation: dict[str, Any] | None) -> str:
    """A short stable name for "this command with these options" (None: nothing was recorded)."""
    if not invocation:
        return ""
    body = json.dumps([kind, invocation.get("name"), invocation.get("options")], sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def shown_identities(calls: Iterable[tuple[float, str, dict[str, Any] | None]]) -> set[str]:
    """Of failing calls given as (ts, kind, invocation), the identities the agent is shown: the older half
    of the distinct ones (rounded up), by when each was first seen."""
    first_seen: dict[str, float] = {}
    for ts, kind, invocation in calls:
        identity = call_identity(kind, invocation)
        if identity and (identity not in first_seen or ts < first_seen[identity]):
            first_seen[identity] = ts
    ordered = sorted(first_seen, key=lambda identity: (first_seen[identity], identity))
    return set(ordered[: math.ceil(len(ordered) / 2)])
