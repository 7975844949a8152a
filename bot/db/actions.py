"""Queries that read `actions` and `fingerprints`: evidence, samples, replays.

Written once in the SQL both engines share (`mendbot.db.core`), so they run on SQLite and PostgreSQL.
The write side the action writer process runs (its batched inserts, retention, checkpoints) is
`mendbot.db.action_writes`, which imports nothing of the bot; `insert_many` here is the bot's own
(and the tests') way to store a batch on either engine.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from mendbot.db import core
from mendbot.db.connection import transaction
from mendbot.db.core import Connection
from mendbot.db.records import ActionRecord

__all__ = [
    "Bug",
    "CallText",
    "after",
    "by_ids",
    "fingerprint_buckets",
    "insert_many",
    "kind_buckets",
    "known_fingerprints",
    "last_id",
    "last_id_before",
    "outcomes_of_process",
    "prefix_buckets",
    "recent_bugs",
    "recent_calls",
    "recent_durations",
    "recent_failures",
    "recent_of_kind",
    "row_to_record",
    "slowest_sampled",
]

_COLUMNS = (
    "ts",
    "kind",
    "source",
    "ok",
    "duration_ms",
    "guild_id",
    "channel_id",
    "user_id",
    "message_id",
    "cost_usd",
    "error_type",
    "error_message",
    "fingerprint",
    "frames",
    "run_id",
    "extra",
    "invocation",
    "reply",
    "samples",
    "process",
)
_JSON_COLUMNS = ("frames", "extra", "invocation", "reply", "samples")
# Rows per INSERT: at most 32, in chunks of a power of two, so that a batch of any size is a few
# statements from at most six, each written once (a statement per row would cost a round trip per
# row instead).
_CHUNK = 32
# `json.dumps(…, default=str)` builds a new encoder on every call; a row encodes a few values.
_encode = json.JSONEncoder(default=str).encode

_KNOWN_FINGERPRINTS = "SELECT fingerprint FROM fingerprints"
_KNOWN_FINGERPRINTS_BEFORE = "SELECT fingerprint FROM fingerprints WHERE first_seen < :ts"
# The leader's tail of every process's actions (bot/scale/cluster.py): new rows by id, a bounded batch.
_AFTER = "SELECT * FROM actions WHERE id > :after ORDER BY id LIMIT :limit"
_LAST_ID = "SELECT coalesce(max(id), 0) FROM actions"
_LAST_ID_BEFORE = "SELECT coalesce(max(id), 0) FROM actions WHERE ts < :ts"
# A staged rollout's watch (bot/scale/rollout.py): one process's outcomes and durations in a window.
_OUTCOMES_OF_PROCESS = """
    SELECT ok, duration_ms FROM actions WHERE process = :process AND ts >= :since AND ts < :until
    ORDER BY ts DESC LIMIT :limit"""
_BY_IDS = "SELECT * FROM actions WHERE id IN (:ids)"
_FAILURES_OF_FINGERPRINT = """
    SELECT * FROM actions WHERE fingerprint = :fingerprint AND ts >= :since ORDER BY ts DESC LIMIT :limit"""
# Failures with a fingerprint (bugs, not the environment) since a time, newest first: the partial index
# on (ts, fingerprint, kind) serves it.
_RECENT_BUGS = """
    SELECT id, ts, kind, fingerprint, extra, invocation FROM actions
    WHERE fingerprint IS NOT NULL AND ts >= :since ORDER BY ts DESC LIMIT :limit"""
_ACTIONS_OF_KIND = """
    SELECT * FROM actions WHERE kind = :kind AND ts >= :since ORDER BY ts DESC LIMIT :limit"""
_CALLS_OF_KIND = """
    SELECT id, ts, user_id, lower(coalesce(invocation, '') || ' ' || coalesce(reply, '')) AS text
    FROM actions WHERE kind = :kind AND ts >= :since ORDER BY ts DESC LIMIT :limit"""


@functools.cache
def _failures_of_kind(dialect: str) -> str:
    # `ok = 0` written out, not bound: the partial index (WHERE ok = 0) is usable only then.
    return f"""
    SELECT * FROM actions {core.indexed_by(dialect, "actions_kind_failures_ts")}
    WHERE kind = :kind AND ok = 0 AND ts >= :since ORDER BY ts DESC LIMIT :limit"""


@functools.cache
def _slowest_sampled(dialect: str) -> str:
    return f"""
    SELECT * FROM actions {core.indexed_by(dialect, "actions_sampled_kind_ts")}
    WHERE kind IN (:kinds) AND ts >= :since AND samples IS NOT NULL
    ORDER BY duration_ms DESC LIMIT :limit"""


# -- the anomaly detector's windows, rebuilt from stored actions (bot/observe/detector.py) --------


def _bucket(dialect: str) -> str:
    """The detector's bucket index of a row, `floor(ts / width)`, named `bucket` (and grouped by that
    name: the bound width written again in GROUP BY would be another parameter). SQLite truncates
    toward zero, which is the floor for the positive times stored."""
    if dialect == "postgresql":
        return "floor(ts / :width) AS bucket"
    return "CAST(ts / (:width + 0.0) AS INTEGER) AS bucket"


@functools.cache
def _kind_buckets(dialect: str) -> str:
    # The window's part of the index on (ts, kind, ok, …), which holds every column read here
    # (SQLite's planner would rather scan the whole table by kind to group without sorting).
    return f"""
    SELECT kind, {_bucket(dialect)}, count(*) AS events, sum(1 - ok) AS failures
    FROM actions {core.indexed_by(dialect, "actions_ts_audit")}
    WHERE ts >= :since AND id <= :upto
    GROUP BY kind, bucket"""


@functools.cache
def _prefix_buckets(dialect: str) -> str:
    # The kinds' part of the index on (kind, ts, …): a range of kinds, each read from `since` on.
    return f"""
    SELECT kind, {_bucket(dialect)}, count(*) AS events, sum(1 - ok) AS failures
    FROM actions {core.indexed_by(dialect, "actions_kind_ts")}
    WHERE kind >= :low AND kind < :high AND ts >= :since AND id <= :upto
    GROUP BY kind, bucket"""


@functools.cache
def _environment_buckets(dialect: str) -> str:
    # Through the partial index of failures: only failures are read to find these.
    return f"""
    SELECT kind, {_bucket(dialect)}, count(*) AS events
    FROM actions {core.indexed_by(dialect, "actions_kind_failures_ts")}
    WHERE kind IN (:kinds) AND ok = 0 AND ts >= :since AND id <= :upto AND fingerprint IS NULL
        AND coalesce(extra, '') LIKE '%"environment": %'
    GROUP BY kind, bucket"""


@functools.cache
def _fingerprint_buckets(dialect: str) -> str:
    # The window's part of the partial index of failures by time, not every failure by fingerprint.
    return f"""
    SELECT fingerprint, {_bucket(dialect)}, count(*) AS seen
    FROM actions {core.indexed_by(dialect, "actions_failures_ts")}
    WHERE fingerprint IS NOT NULL AND ts >= :since AND id <= :upto
    GROUP BY fingerprint, bucket"""


_RECENT_DURATIONS = """
    SELECT duration_ms FROM actions WHERE kind = :kind AND ts >= :since AND ok = 1 AND id <= :upto
    ORDER BY ts DESC, id DESC LIMIT :limit"""


async def kind_buckets(
    db: Connection, *, since: float, upto: int, width: float
) -> list[tuple[str, int, int, int]]:
    """(kind, bucket index, events, failures) of the actions with ids up to `upto` recorded since a
    time, in buckets of `width` seconds, environment failures left out (as the detector does)."""
    dialect = core.dialect(db)
    found = await core.rows(db, _kind_buckets(dialect), since=since, upto=upto, width=width)
    counts = {(row["kind"], int(row["bucket"])): [int(row["events"]), int(row["failures"])] for row in found}
    # An environment failure (Discord or storage refusing: bot/runtime/recording.py) has no fingerprint and
    # says so in `extra`, as the writer encodes it; the detector skips those, and so do its windows here.
    failing = sorted({kind for (kind, _), (_, failures) in counts.items() if failures})
    if failing:
        environment = await core.rows(
            db, _environment_buckets(dialect), kinds=failing, since=since, upto=upto, width=width
        )
        for row in environment:
            count = counts.get((row["kind"], int(row["bucket"])))
            if count is not None:  # (a row committed between the two reads is not in the first)
                count[0] -= int(row["events"])
                count[1] -= int(row["events"])
    return [
        (kind, bucket, events, failures)
        for (kind, bucket), (events, failures) in counts.items()
        if events > 0  # a bucket of environment failures alone is no bucket to the detector
    ]


async def prefix_buckets(
    db: Connection, prefix: str, *, since: float, upto: int, width: float
) -> list[tuple[str, int, int, int]]:
    """(kind, bucket index, events, failures) of the actions of the kinds starting with `prefix` (the
    bot's calls to other services, `http:`), ids up to `upto`, recorded since a time, in buckets of
    `width` seconds."""
    high = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # the first string after every one starting so
    found = await core.rows(
        db, _prefix_buckets(core.dialect(db)), low=prefix, high=high, since=since, upto=upto, width=width
    )
    return [(row["kind"], int(row["bucket"]), int(row["events"]), int(row["failures"])) for row in found]


async def fingerprint_buckets(
    db: Connection, *, since: float, upto: int, width: float
) -> list[tuple[str, int, int]]:
    """(fingerprint, bucket index, records) of the failures with ids up to `upto` since a time."""
    found = await core.rows(db, _fingerprint_buckets(core.dialect(db)), since=since, upto=upto, width=width)
    return [(row["fingerprint"], int(row["bucket"]), int(row["seen"])) for row in found]


async def recent_durations(db: Connection, kind: str, *, since: float, upto: int, limit: int) -> list[float]:
    """The durations of a kind's latest successful actions with ids up to `upto`, oldest first."""
    found = await core.rows(db, _RECENT_DURATIONS, kind=kind, since=since, upto=upto, limit=limit)
    return [float(row["duration_ms"]) for row in reversed(found)]


@functools.cache
def _insert_actions(count: int) -> str:
    rows = ", ".join("(" + ", ".join(f":{name}_{n}" for name in _COLUMNS) + ")" for n in range(count))
    return f"INSERT INTO actions ({', '.join(_COLUMNS)}) VALUES {rows}"


_COUNT_FINGERPRINT = """
    INSERT INTO fingerprints (fingerprint, kind, error_type, first_seen, last_seen, count)
    VALUES (:fingerprint, :kind, :error_type, :first_seen, :last_seen, :count)
    ON CONFLICT (fingerprint) DO UPDATE
    SET last_seen = excluded.last_seen, count = fingerprints.count + excluded.count"""


def _chunks(count: int) -> list[tuple[int, int]]:
    """(start, size) of the statements that insert `count` rows: sizes are powers of two up to _CHUNK."""
    chunks = []
    start = 0
    while start < count:
        size = min(_CHUNK, 1 << ((count - start).bit_length() - 1))
        chunks.append((start, size))
        start += size
    return chunks


def _stored(record: ActionRecord) -> dict[str, Any]:
    fields = record.fields()
    values = {name: fields[name] for name in _COLUMNS}
    values["ok"] = int(values["ok"])
    for name in _JSON_COLUMNS:
        values[name] = _encode(values[name]) if values[name] else None
    return values


def _fingerprint_counts(records: Sequence[ActionRecord]) -> list[dict[str, Any]]:
    """One upsert's values per fingerprint of the batch: counted once per record, first and last
    seen in batch order. (PostgreSQL refuses an upsert that touches one row twice, so a batch's
    repeats are summed here rather than sent as rows of one statement.)"""
    counts: dict[str, dict[str, Any]] = {}
    for record in records:
        if not record.fingerprint:
            continue
        found = counts.setdefault(
            record.fingerprint,
            {
                "fingerprint": record.fingerprint,
                "kind": record.kind,
                "error_type": record.error_type,
                "first_seen": record.ts,
                "count": 0,
            },
        )
        found["last_seen"] = record.ts
        found["count"] += 1
    return list(counts.values())


async def insert_many(db: Connection, records: Sequence[ActionRecord]) -> None:
    """Insert a batch of records and update the fingerprint table, in one transaction."""
    rows = [_stored(record) for record in records]
    async with transaction(db):
        for start, size in _chunks(len(rows)):
            chunk = rows[start : start + size]
            params = {f"{name}_{n}": value for n, row in enumerate(chunk) for name, value in row.items()}
            await core.execute(db, _insert_actions(len(chunk)), **params)
        for counted in _fingerprint_counts(records):
            await core.execute(db, _COUNT_FINGERPRINT, **counted)


async def known_fingerprints(db: Connection, *, before: float | None = None) -> set[str]:
    """Every fingerprint recorded so far, or only those first seen before the time `before`."""
    if before is None:
        return {row["fingerprint"] for row in await core.rows(db, _KNOWN_FINGERPRINTS)}
    return {row["fingerprint"] for row in await core.rows(db, _KNOWN_FINGERPRINTS_BEFORE, ts=before)}


def row_to_record(row: Mapping[str, Any]) -> ActionRecord:
    """A stored row as a record, its values checked (`msgspec.ValidationError` for a wrong type)."""
    return ActionRecord.validated(
        {
            "ts": row["ts"],
            "kind": row["kind"],
            "source": row["source"],
            "ok": bool(row["ok"]),
            "duration_ms": row["duration_ms"],
            "guild_id": row["guild_id"],
            "channel_id": row["channel_id"],
            "user_id": row["user_id"],
            "message_id": row["message_id"],
            "cost_usd": row["cost_usd"],
            "error_type": row["error_type"],
            "error_message": row["error_message"],
            "fingerprint": row["fingerprint"],
            "frames": json.loads(row["frames"]) if row["frames"] else [],
            "run_id": row["run_id"],
            "extra": json.loads(row["extra"]) if row["extra"] else {},
            "invocation": json.loads(row["invocation"]) if row["invocation"] else None,
            "reply": json.loads(row["reply"]) if row["reply"] else None,
            "samples": json.loads(row["samples"]) if row["samples"] else None,
            "process": row.get("process"),
        }
    )


async def recent_failures(
    db: Connection, *, kind: str | None, fingerprint: str | None, since: float, limit: int = 5
) -> list[ActionRecord]:
    """The newest failing actions of a fingerprint (or else of a kind) since a time."""
    if fingerprint is not None:
        found = await core.rows(
            db, _FAILURES_OF_FINGERPRINT, fingerprint=fingerprint, since=since, limit=limit
        )
    else:
        found = await core.rows(
            db, _failures_of_kind(core.dialect(db)), kind=kind or "", since=since, limit=limit
        )
    return [row_to_record(row) for row in found]


class Bug(msgspec.Struct, frozen=True):
    """A recent failing action, reduced to what says where it happened: its kind, fingerprint, and
    the surface it was reached from (`invocation.surface`: the command that showed a view;
    `extra.command`: the command whose check or converter failed, or the handler that made a call to
    another service)."""

    ts: float
    kind: str
    fingerprint: str
    surface: str | None


async def recent_bugs(db: Connection, *, since: float, limit: int = 500) -> list[Bug]:
    """The newest failures with a fingerprint since a time, newest first."""
    found = []
    for row in await core.rows(db, _RECENT_BUGS, since=since, limit=limit):
        invocation = json.loads(row["invocation"]) if row["invocation"] else {}
        extra = json.loads(row["extra"]) if row["extra"] else {}
        surface = invocation.get("surface") or extra.get("command")
        found.append(
            Bug(row["ts"], row["kind"], row["fingerprint"], surface if isinstance(surface, str) else None)
        )
    return found


class CallText(msgspec.Struct, frozen=True):
    """A recorded call reduced to what a complaint is matched against: its invocation and reply."""

    id: int
    ts: float
    user_id: int | None
    text: str  # the invocation and reply JSON, lower-cased


async def recent_calls(db: Connection, kinds: Sequence[str], *, since: float, limit: int) -> list[CallText]:
    """The newest calls of these kinds since a time, as text (no record is built: this is scanned)."""
    found: list[CallText] = []
    for kind in dict.fromkeys(kinds):
        for row in await core.rows(db, _CALLS_OF_KIND, kind=kind, since=since, limit=limit):
            found.append(CallText(row["id"], row["ts"], row["user_id"], row["text"]))
    found.sort(key=lambda call: call.ts, reverse=True)
    return found[:limit]


async def recent_of_kind(db: Connection, kind: str, *, since: float, limit: int) -> list[ActionRecord]:
    """The newest actions of a kind since a time, failing or not, newest first (the bot's calls to one
    other service: bot/observe/outbound.py)."""
    return [
        row_to_record(row)
        for row in await core.rows(db, _ACTIONS_OF_KIND, kind=kind, since=since, limit=limit)
    ]


async def by_ids(db: Connection, ids: Sequence[int]) -> list[ActionRecord]:
    """Records by id, in the order asked."""
    if not ids:
        return []
    rows = {row["id"]: row_to_record(row) for row in await core.rows(db, _BY_IDS, ids=list(ids))}
    return [rows[i] for i in ids if i in rows]


async def slowest_sampled(
    db: Connection, kinds: Sequence[str], *, since: float, limit: int
) -> list[ActionRecord]:
    """The slowest actions of these kinds since a time that carry stack samples, slowest first."""
    if not kinds:
        return []
    found = await core.rows(
        db, _slowest_sampled(core.dialect(db)), kinds=list(kinds), since=since, limit=limit
    )
    return [row_to_record(row) for row in found]


async def after(db: Connection, after_id: int, limit: int) -> list[tuple[int, ActionRecord]]:
    """Up to `limit` records stored with an id above `after_id`, by id, with their ids."""
    found = await core.rows(db, _AFTER, after=after_id, limit=limit)
    return [(int(row["id"]), row_to_record(row)) for row in found]


async def last_id(db: Connection) -> int:
    """The highest action id stored so far (0 when there is none)."""
    return int(await core.scalar(db, _LAST_ID) or 0)


async def last_id_before(db: Connection, ts: float) -> int:
    """The highest id of an action recorded before `ts` (0 when there is none)."""
    return int(await core.scalar(db, _LAST_ID_BEFORE, ts=ts) or 0)


async def outcomes_of_process(
    db: Connection, process: str, *, since: float, until: float, limit: int = 20000
) -> list[tuple[bool, float]]:
    """(ok, duration_ms) of the newest actions `process` recorded in [since, until)."""
    found = await core.rows(db, _OUTCOMES_OF_PROCESS, process=process, since=since, until=until, limit=limit)
    return [(bool(row["ok"]), float(row["duration_ms"])) for row in found]
