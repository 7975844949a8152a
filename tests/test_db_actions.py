"""The `actions` and `fingerprints` read queries behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from mendbot.db import actions as queries
from mendbot.db import core
from mendbot.db.records import ActionRecord

pytestmark = pytest.mark.engines

_FINGERPRINTS = "SELECT * FROM fingerprints ORDER BY fingerprint"
USER = 1_100_000_000_000_001_000  # a Discord id: 64 bits


def _action(ts: float, *, kind: str = "command:roll", ok: bool = True, **values: Any) -> ActionRecord:
    return ActionRecord(
        ts=ts, kind=kind, source="Dice", ok=ok, duration_ms=values.pop("duration_ms", 1.0), **values
    )


def _failure(ts: float, fingerprint: str | None = "f1", **values: Any) -> ActionRecord:
    return _action(
        ts,
        ok=False,
        error_type="KeyError",
        error_message=f"missing {ts:g}",
        fingerprint=fingerprint,
        **values,
    )


async def test_inserted_records_read_back_whole(engine_db: core.Connection) -> None:
    """insert_many stores every field (JSON ones too, 64-bit ids) and by_ids reads them back as records."""
    record = _failure(
        100.0,
        user_id=USER,
        guild_id=USER + 1,
        frames=["bot/x.py:1:f"],
        extra={"via": "slash"},
        invocation={"name": "/roll"},
        reply={"text": "hi"},
        samples=[{"frames": ["a"], "count": 2}],
        run_id=7,
        cost_usd=0.5,
    )
    await queries.insert_many(engine_db, [record])
    [found] = await queries.recent_failures(engine_db, kind=None, fingerprint="f1", since=0.0)
    assert found == record
    [again] = await queries.by_ids(engine_db, await _ids(engine_db))
    assert again == record


async def test_a_stored_row_that_is_not_a_record_is_refused_when_read_back(
    engine_db: core.Connection,
) -> None:
    """A row whose JSON column holds the wrong shape (extra as a list) is refused, naming the field,
    rather than read back as a record that is not one."""
    await queries.insert_many(engine_db, [_action(100.0, extra={"via": "slash"})])
    await core.execute(engine_db, "UPDATE actions SET extra = :extra", extra='["not", "an", "object"]')
    with pytest.raises(msgspec.ValidationError, match=r"\$\.extra"):
        await queries.by_ids(engine_db, await _ids(engine_db))


async def _ids(db: core.Connection) -> list[int]:
    return [
        call.id
        for call in await queries.recent_calls(db, ["command:roll", "command:other"], since=0.0, limit=100)
    ]


async def test_an_empty_batch_writes_nothing(engine_db: core.Connection) -> None:
    """insert_many of no records is a no-op."""
    await queries.insert_many(engine_db, [])
    assert await queries.known_fingerprints(engine_db) == set()
    assert await _ids(engine_db) == []


async def test_a_batch_larger_than_one_statement_is_stored_whole(engine_db: core.Connection) -> None:
    """A batch spanning several INSERT statements stores every record."""
    await queries.insert_many(engine_db, [_action(float(n)) for n in range(250)])
    assert len(await queries.recent_calls(engine_db, ["command:roll"], since=0.0, limit=1000)) == 250


async def test_fingerprints_count_every_failure_across_batches(engine_db: core.Connection) -> None:
    """A fingerprint twice in a batch counts twice, a later batch adds to it, records without one add none."""
    await queries.insert_many(
        engine_db, [_failure(10.0), _failure(20.0), _failure(15.0, fingerprint="f2"), _action(5.0)]
    )
    await queries.insert_many(engine_db, [_failure(30.0)])
    assert await queries.known_fingerprints(engine_db) == {"f1", "f2"}
    rows = await core.rows(engine_db, _FINGERPRINTS)
    assert [(r["fingerprint"], r["first_seen"], r["last_seen"], r["count"]) for r in rows] == [
        ("f1", 10.0, 30.0, 3),
        ("f2", 15.0, 15.0, 1),
    ]


async def test_failures_of_a_kind_are_the_newest_since_a_time(engine_db: core.Connection) -> None:
    """Without a fingerprint, a kind's failures (not successes, nor other kinds) come newest first."""
    await queries.insert_many(
        engine_db,
        [
            _failure(1.0),
            _failure(2.0, fingerprint=None),
            _failure(3.0),
            _failure(4.0, kind="command:other"),
            _action(5.0),
        ],
    )
    found = await queries.recent_failures(
        engine_db, kind="command:roll", fingerprint=None, since=2.0, limit=5
    )
    assert [r.ts for r in found] == [3.0, 2.0]
    found = await queries.recent_failures(
        engine_db, kind="command:roll", fingerprint=None, since=0.0, limit=1
    )
    assert [r.ts for r in found] == [3.0]
    assert await queries.recent_failures(engine_db, kind=None, fingerprint=None, since=0.0) == []


async def test_failures_of_a_fingerprint_ignore_the_kind(engine_db: core.Connection) -> None:
    """With a fingerprint, its records since the time come newest first, whatever the kind asked."""
    await queries.insert_many(engine_db, [_failure(1.0), _failure(2.0, fingerprint="f2"), _failure(3.0)])
    found = await queries.recent_failures(engine_db, kind="command:nope", fingerprint="f1", since=0.0)
    assert [r.ts for r in found] == [3.0, 1.0]


async def test_recent_calls_are_lowercased_text_newest_first(engine_db: core.Connection) -> None:
    """recent_calls: invocation and reply lower-cased (NULL as empty), across kinds, newest first."""
    await queries.insert_many(
        engine_db,
        [
            _action(1.0, invocation={"name": "/Roll"}, reply={"text": "Six"}, user_id=USER),
            _action(2.0, kind="command:other"),
            _action(3.0, kind="command:skip"),
            _action(4.0, invocation={"name": "/Roll"}),
        ],
    )
    calls = await queries.recent_calls(
        engine_db, ["command:roll", "command:other", "command:roll"], since=0.0, limit=2
    )
    assert [(c.ts, c.text) for c in calls] == [(4.0, '{"name": "/roll"} '), (2.0, " ")]
    *_, oldest = await queries.recent_calls(engine_db, ["command:roll"], since=0.5, limit=5)
    assert (oldest.user_id, oldest.text) == (USER, '{"name": "/roll"} {"text": "six"}')
    assert await queries.recent_calls(engine_db, [], since=0.0, limit=5) == []


async def test_recent_of_kind_reads_every_action_of_a_kind_newest_first(engine_db: core.Connection) -> None:
    """recent_of_kind: failing or not, only that kind, since the time, newest first, at most the limit."""
    service = "http:search.example"
    await queries.insert_many(
        engine_db,
        [
            _action(1.0, kind=service),
            _failure(2.0, kind=service, extra={"call": {"status": 429}}),
            _action(3.0, kind="command:search"),
            _action(4.0, kind=service),
        ],
    )
    found = await queries.recent_of_kind(engine_db, service, since=1.5, limit=5)
    assert [(r.ts, r.ok) for r in found] == [(4.0, True), (2.0, False)]
    assert found[1].extra == {"call": {"status": 429}}
    assert len(await queries.recent_of_kind(engine_db, service, since=0.0, limit=2)) == 2


async def test_prefix_buckets_count_the_kinds_of_a_prefix_only(engine_db: core.Connection) -> None:
    """prefix_buckets: events and failures per bucket of the kinds starting with the prefix (not `https:`
    nor `httpx:`, not other kinds), ids up to `upto`, since the time."""
    await queries.insert_many(
        engine_db,
        [
            _action(5.0, kind="http:a.example"),
            _failure(7.0, kind="http:a.example"),
            _failure(15.0, kind="http:b.example"),
            _action(16.0, kind="https:c.example"),
            _action(17.0, kind="httpx:d"),
            _action(18.0, kind="command:roll"),
            _failure(1.0, kind="http:a.example"),  # before `since`
        ],
    )
    upto = await queries.last_id(engine_db)
    await queries.insert_many(engine_db, [_action(19.0, kind="http:a.example")])  # after `upto`
    found = await queries.prefix_buckets(engine_db, "http:", since=2.0, upto=upto, width=10.0)
    assert sorted(found) == [("http:a.example", 0, 2, 1), ("http:b.example", 1, 1, 1)]


async def test_by_ids_keeps_the_order_asked_and_skips_unknown_ids(engine_db: core.Connection) -> None:
    """by_ids returns records in the order of the ids given, missing ids left out; no ids, no query."""
    await queries.insert_many(engine_db, [_action(1.0), _action(2.0)])
    newest, oldest = await _ids(engine_db)
    assert [r.ts for r in await queries.by_ids(engine_db, [oldest, 999_999, newest])] == [1.0, 2.0]
    assert await queries.by_ids(engine_db, []) == []


async def test_slowest_sampled_are_of_the_kinds_with_samples_slowest_first(
    engine_db: core.Connection,
) -> None:
    """slowest_sampled skips unsampled, older and other-kind records; no kinds gives nothing."""
    sample = [{"frames": ["bot/x.py:1:f"], "count": 1}]
    await queries.insert_many(
        engine_db,
        [
            _action(1.0, duration_ms=900.0, samples=sample),
            _action(5.0, duration_ms=100.0, samples=sample),
            _action(6.0, duration_ms=300.0, samples=sample, kind="command:other"),
            _action(7.0, duration_ms=800.0),
            _action(8.0, duration_ms=50.0, samples=sample, kind="command:skip"),
        ],
    )
    found = await queries.slowest_sampled(engine_db, ["command:roll", "command:other"], since=2.0, limit=5)
    assert [(r.ts, r.samples) for r in found] == [(6.0, sample), (5.0, sample)]
    assert await queries.slowest_sampled(engine_db, [], since=0.0, limit=5) == []


def _environment(ts: float) -> ActionRecord:
    """A failure the environment caused (Discord refused): no fingerprint, marked in `extra`."""
    return _action(ts, ok=False, extra={"environment": "discord_forbidden", "error": "Forbidden: 403"})


async def test_kind_buckets_count_events_and_failures_as_the_detector_does(
    engine_db: core.Connection,
) -> None:
    """Per kind and bucket of `width` seconds: events and failures since a time, ids up to `upto`
    only, environment failures left out (the detector skips them), kinds with nothing left dropped."""
    await queries.insert_many(
        engine_db,
        [
            _action(95.0),  # before `since`
            _action(100.0),
            _failure(104.5),
            _failure(109.99, fingerprint=None),  # a failure with no exception: still a failure
            _environment(106.0),
            _action(110.0),
            _failure(111.0, kind="command:other"),
            _environment(112.0),  # alone in its bucket, and of a kind with nothing else
        ],
    )
    upto = max(await _ids(engine_db))
    await queries.insert_many(engine_db, [_failure(113.0)])  # after `upto`: fed by the caller
    found = await queries.kind_buckets(engine_db, since=100.0, upto=upto, width=10.0)
    assert sorted(found) == [
        ("command:other", 11, 1, 1),
        ("command:roll", 10, 3, 2),
        ("command:roll", 11, 1, 0),
    ]


async def test_fingerprint_buckets_count_each_fingerprint_per_bucket(engine_db: core.Connection) -> None:
    """Per fingerprint and bucket: its records since a time with ids up to `upto`."""
    await queries.insert_many(
        engine_db,
        [_failure(50.0), _failure(61.0), _failure(62.0), _failure(75.0), _failure(76.0, fingerprint="f2")],
    )
    upto = max(await _ids(engine_db))
    await queries.insert_many(engine_db, [_failure(77.0)])
    found = await queries.fingerprint_buckets(engine_db, since=60.0, upto=upto, width=10.0)
    assert sorted(found) == [("f1", 6, 2), ("f1", 7, 1), ("f2", 7, 1)]


async def test_recent_durations_are_a_kinds_latest_successes_oldest_first(engine_db: core.Connection) -> None:
    """The latest `limit` successful durations of the kind since a time, ids up to `upto`, oldest first."""
    await queries.insert_many(
        engine_db,
        [
            _action(1.0, duration_ms=11.0),  # before `since`
            _action(2.0, duration_ms=12.0),
            _action(3.0, duration_ms=13.0),
            _failure(4.0, duration_ms=14.0),
            _action(5.0, duration_ms=15.0, kind="command:other"),
            _action(6.0, duration_ms=16.0),
        ],
    )
    upto = max(await _ids(engine_db))
    await queries.insert_many(engine_db, [_action(7.0, duration_ms=17.0)])
    assert await queries.recent_durations(engine_db, "command:roll", since=2.0, upto=upto, limit=5) == [
        12.0,
        13.0,
        16.0,
    ]
    assert await queries.recent_durations(engine_db, "command:roll", since=0.0, upto=upto, limit=2) == [
        13.0,
        16.0,
    ]
