"""Redaction, fingerprints and the anomaly rules, on their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from mendbot.db import actions as action_queries
from mendbot.db import core
from mendbot.db.records import ActionRecord
from mendbot.kernel.sections import ObserveConfig
from mendbot.kernel.structs import read
from mendbot.observe.detector import AnomalyDetector, Signal, restore_windows, restore_windows_later
from mendbot.observe.fingerprint import fingerprint, normalise_message
from mendbot.trust.redact import REDACTED, redact, redact_text

ROOT = Path(__file__).resolve().parent.parent
DISCORD_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"


def test_token_shaped_strings_are_redacted_anywhere_in_text() -> None:
    """Discord, Anthropic and GitHub tokens and bearer values are replaced inside any text."""
    text = (
        f"login failed for {DISCORD_TOKEN} with sk-ant-api03-abcdefghijklmnopqrstuvwxyz and "
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789 Authorization: Bearer abcdefghijklmnopqrstuvwxyz"
    )
    cleaned = redact_text(text)
    for secret in (DISCORD_TOKEN, "sk-ant-api03", "ghp_abc", "abcdefghijklmnopqrstuvwxyz"):
        assert secret not in cleaned
    assert cleaned.count(REDACTED) == 4


def test_values_under_secret_keys_are_redacted_and_structures_capped() -> None:
    """Secret-named keys lose their values; long strings, lists and deep nesting are capped."""
    value = {
        "api_key": "abc",
        "password": "hunter2",
        "Authorization": "x",
        "note": "x" * 5000,
        "items": list(range(500)),
        "deep": {"a": {"b": {"c": {"d": {"e": 1}}}}},
    }
    cleaned = redact(value)
    assert cleaned["api_key"] == cleaned["password"] == cleaned["Authorization"] == REDACTED
    assert len(cleaned["note"]) < 2100
    assert len(cleaned["items"]) == 51
    assert "[too deep]" in str(cleaned["deep"])


def _fail_here(user_id: int) -> None:
    raise KeyError(f"no reminder {user_id} for 'channel-{user_id}'")


def _fail_elsewhere(user_id: int) -> None:
    raise KeyError(f"no reminder {user_id} for 'channel-{user_id}'")


def _caught(function: object, user_id: int) -> BaseException:
    try:
        function(user_id)  # type: ignore[operator]
    except KeyError as exc:
        return exc
    raise AssertionError("did not raise")


def test_fingerprint_is_stable_across_ids_and_differs_across_call_sites() -> None:
    """The same bug with different ids has one fingerprint; the same error elsewhere has another."""
    first, frames = fingerprint(_caught(_fail_here, 1456074443980800001), ROOT)
    second, _ = fingerprint(_caught(_fail_here, 42), ROOT)
    other, _ = fingerprint(_caught(_fail_elsewhere, 42), ROOT)
    assert first == second
    assert first != other
    assert frames[-1].startswith("tests/test_observe_units.py:")
    assert frames[-1].endswith(":_fail_here")


def test_message_normalisation_removes_variable_parts() -> None:
    """Numbers, quoted values and hex are normalised out of messages."""
    assert normalise_message("user 1234 sent 'hello' at 0xdeadbeef") == normalise_message(
        "user 99 sent 'bye' at 0x1f"
    )


def _record(
    ts: float,
    *,
    ok: bool = True,
    kind: str = "command:roll",
    duration_ms: float = 10.0,
    fp: str | None = None,
) -> ActionRecord:
    return ActionRecord(
        ts=ts,
        kind=kind,
        source="test",
        ok=ok,
        duration_ms=duration_ms,
        fingerprint=fp if not ok else None,
        error_type=None if ok else "ZeroDivisionError",
    )


def _detector(**overrides: object) -> tuple[AnomalyDetector, list[Signal]]:
    signals: list[Signal] = []
    config = read(ObserveConfig, {"announce_new_fingerprints": False, **overrides})
    return AnomalyDetector(config, signals.append), signals


def test_error_rate_fires_above_threshold_once() -> None:
    """4 failures in 10 events (40% > 30%) fires error_rate once for the storm."""
    detector, signals = _detector(repeat={"count": 100})
    for i in range(10):
        detector.process(_record(i, ok=i % 5 >= 3, fp=f"fp{i}"))
    for i in range(10, 20):
        detector.process(_record(i, ok=i % 5 >= 3, fp=f"fp{i}"))
    assert [s.rule for s in signals] == ["error_rate"]
    assert signals[0].kind == "command:roll"


def test_error_rate_stays_quiet_below_threshold_or_min_events() -> None:
    """2 failures in 10 (20%) does not fire, nor do 3 failures among only 4 events."""
    detector, signals = _detector(repeat={"count": 100})
    for i in range(10):
        detector.process(_record(i, ok=i not in (2, 7), fp=f"fp{i}"))
    few, few_signals = _detector(repeat={"count": 100})
    for i in range(4):
        few.process(_record(i, ok=i == 0, fp=f"fp{i}"))
    assert signals == []
    assert few_signals == []


def test_error_rate_window_forgets_old_failures() -> None:
    """Failures older than the window no longer count."""
    detector, signals = _detector(repeat={"count": 100}, error_rate={"window_s": 60})
    for i in range(3):
        detector.process(_record(i, ok=False, fp="a"))
    for i in range(10):
        detector.process(_record(1000 + i, ok=True))
    detector.process(_record(1011, ok=False, fp="a"))
    assert signals == []


def test_repeat_fires_at_n_in_window_and_not_below() -> None:
    """The same fingerprint 5 times in the window fires; 4 times, or spread out, does not."""
    detector, signals = _detector(error_rate={"min_events": 1000})
    for i in range(4):
        detector.process(_record(i, ok=False, fp="same"))
    assert signals == []
    detector.process(_record(5, ok=False, fp="same"))
    assert [(s.rule, s.fingerprint, s.count) for s in signals] == [("repeat", "same", 5)]
    spread, spread_signals = _detector(error_rate={"min_events": 1000}, repeat={"count": 5, "window_s": 60})
    for i in range(10):
        spread.process(_record(i * 100, ok=False, fp="same"))
    assert spread_signals == []


def test_latency_fires_when_p95_doubles_and_not_on_noise() -> None:
    """p95 over twice the baseline fires; a steady latency with noise does not."""
    detector, signals = _detector(latency={"window": 20, "baseline": 100, "min_samples": 20, "min_ms": 50})
    for i in range(120):
        detector.process(_record(i, duration_ms=100 + (i % 7)))
    assert signals == []
    for i in range(120, 140):
        detector.process(_record(i, duration_ms=400))
    assert [s.rule for s in signals] == ["latency"]
    assert "p95" in signals[0].summary


def test_latency_ignores_fast_commands_below_floor() -> None:
    """Microsecond-scale jitter under the absolute floor never fires."""
    detector, signals = _detector(latency={"window": 20, "baseline": 100, "min_samples": 20, "min_ms": 50})
    for i in range(120):
        detector.process(_record(i, duration_ms=1))
    for i in range(120, 140):
        detector.process(_record(i, duration_ms=5))
    assert signals == []


def test_new_fingerprint_is_a_notice_once() -> None:
    """A failure never seen before gives one notice; a known one gives none."""
    signals: list[Signal] = []
    detector = AnomalyDetector(ObserveConfig(), signals.append, known_fingerprints={"old"})
    detector.process(_record(1, ok=False, fp="old"))
    detector.process(_record(2, ok=False, fp="new"))
    detector.process(_record(3, ok=False, fp="new"))
    assert [(s.rule, s.level, s.fingerprint) for s in signals] == [("new_fingerprint", "notice", "new")]


@pytest.mark.parametrize("threshold", [0.0, 1.5])
def test_thresholds_are_validated(threshold: float) -> None:
    """An impossible error-rate threshold is refused by the config model."""
    with pytest.raises(ValueError, match="threshold"):
        read(ObserveConfig, {"error_rate": {"threshold": threshold}})


def test_window_memory_does_not_grow_with_the_action_rate() -> None:
    """Ten times more actions in the same ten minutes keep the same number of time buckets."""
    sizes = []
    for per_second in (20, 200):
        detector, _ = _detector(announce_new_fingerprints=False)
        for n in range(600 * per_second):
            detector.process(_record(n / per_second, ok=n % 50 != 0, fp=f"fp{n % 3}"))
        sizes.append(detector.tracked())
    assert sizes[0] == sizes[1]
    assert sizes[1]["buckets"] <= 4 * 61  # one kind and three fingerprints, 60 buckets a window


def test_error_rate_storm_fires_again_after_it_cleared() -> None:
    """A second storm after the window emptied fires again, the first one having cleared."""
    detector, signals = _detector(repeat={"count": 100}, error_rate={"window_s": 60})
    for start in (0, 1000):
        for i in range(10):
            detector.process(_record(start + i, ok=i % 2 == 0, fp="a"))
    assert [s.rule for s in signals] == ["error_rate", "error_rate"]


def test_quiet_kinds_and_fingerprints_are_forgotten() -> None:
    """Kinds and fingerprints that went quiet leave the detector's memory; the active one stays."""
    detector, _ = _detector()
    for i in range(20):
        detector.process(_record(i, kind=f"command:k{i % 5}", ok=i % 2 == 0, fp=f"fp{i}"))
    assert detector.tracked()["kinds"] == 5
    for i in range(3):
        detector.process(_record(2000 + i * 30, kind="command:busy", ok=False, fp="busy"))
    tracked = detector.tracked()
    assert (tracked["kinds"], tracked["fingerprints"]) == (1, 1)
    detector.process(_record(200_000, kind="command:busy"))
    assert detector.tracked()["latency_kinds"] == 1  # the five kinds quiet for over a day lost theirs


# -- windows restored from stored actions (a restart, a new leader) ------------------------------

NOW = 1_800_000_000.0  # record time of the tests below: unix seconds, as stored


async def _restored(
    db: core.Connection, stored: list[ActionRecord], **overrides: object
) -> tuple[AnomalyDetector, list[Signal]]:
    """A new detector whose windows were restored from `stored` (all of them processed before)."""
    await action_queries.insert_many(db, stored)
    detector, signals = _detector(**overrides)
    await restore_windows(db, detector, upto=await action_queries.last_id(db), now=NOW)
    return detector, signals


async def test_a_storm_that_began_before_a_restart_is_signalled_once(engine_db: core.Connection) -> None:
    """2 failures before, 3 after: the 5 in the window fire error_rate and repeat once, as without
    a restart."""
    detector, signals = await _restored(
        engine_db, [_record(NOW - 30 + i, ok=False, fp="a") for i in range(2)]
    )
    for i in range(3):
        detector.process(_record(NOW + i, ok=False, fp="a"))
    assert sorted(s.rule for s in signals) == ["error_rate", "repeat"]


async def test_a_storm_already_firing_is_not_signalled_again(engine_db: core.Connection) -> None:
    """Restored windows where the rules hold are firing: the storm going on says nothing new."""
    stored = [_record(NOW - 60 + i, ok=False, fp="a") for i in range(6)]
    detector, signals = await _restored(engine_db, stored)
    detector.process(_record(NOW, ok=False, fp="a"))
    assert signals == []


async def test_environment_failures_do_not_count_after_a_restore(engine_db: core.Connection) -> None:
    """Failures the environment caused are left out of the restored windows, as the detector skips them."""
    environment = ActionRecord(
        ts=NOW - 20,
        kind="command:roll",
        source="test",
        ok=False,
        duration_ms=1.0,
        extra={"environment": "discord_forbidden"},
    )
    stored = [environment] * 5 + [_record(NOW - 10 + i) for i in range(4)]
    detector, signals = await _restored(engine_db, stored, repeat={"count": 100})
    detector.process(_record(NOW, ok=False, fp="a"))  # 1 failure in 5 events: 20%
    assert signals == []


async def test_only_records_up_to_the_given_id_are_restored(engine_db: core.Connection) -> None:
    """Records after `upto` are the caller's to feed: fed after the restore, each counts once."""
    failures = [_record(NOW - 10 + i, ok=False, fp="a") for i in range(5)]
    await action_queries.insert_many(engine_db, failures[:2])
    upto = await action_queries.last_id(engine_db)
    await action_queries.insert_many(engine_db, failures[2:])
    detector, signals = _detector()
    await restore_windows(engine_db, detector, upto=upto, now=NOW)
    for record in failures[2:]:
        detector.process(record)
    assert sorted(s.rule for s in signals) == ["error_rate", "repeat"]


async def test_records_given_while_the_windows_are_read_count_once_they_are_restored(
    engine_db: core.Connection,
) -> None:
    """A restarted bot reads its windows in the background: the 3 failures this life recorded before
    the read finished are held, then counted on top of the 2 stored — the storm is signalled once, as
    without a restart. Without the hold the restore would replace what they had counted."""
    await action_queries.insert_many(engine_db, [_record(NOW - 30 + i, ok=False, fp="a") for i in range(2)])
    detector, signals = _detector()
    upto = await action_queries.last_id(engine_db)
    detector.hold()
    for i in range(3):
        detector.process(_record(NOW + i, ok=False, fp="a"))
    assert signals == [] and detector.processed == 0
    await restore_windows_later(engine_db, detector, upto=upto, now=lambda: NOW + 3)
    assert sorted(s.rule for s in signals) == ["error_rate", "repeat"]
    assert detector.processed == 3
    detector.process(_record(NOW + 4, ok=False, fp="a"))  # no longer held
    assert detector.processed == 4


async def test_records_held_past_their_bound_are_counted_at_once_and_the_history_passed_over(
    engine_db: core.Connection,
) -> None:
    """A read of the windows slower than a busy bot (a locked database): at most `queue_size` records
    are held, memory stays bounded. Past that they are counted at once, and the history, when it
    comes, does not replace what they counted."""
    await action_queries.insert_many(engine_db, [_record(NOW - 30 + i, ok=False, fp="a") for i in range(2)])
    detector, signals = _detector(queue_size=10, repeat={"count": 100})
    upto = await action_queries.last_id(engine_db)
    detector.hold()
    for i in range(10):
        detector.process(_record(NOW + i, ok=True))
    assert detector.processed == 0  # held: the bound is not reached
    detector.process(_record(NOW + 10, ok=True))
    assert detector.processed == 11  # past it: all counted at once, in order
    await restore_windows_later(engine_db, detector, upto=upto, now=lambda: NOW + 11)
    for i in range(4):  # 4 failures in 15 events: under the rate, were the 11 successes dropped
        detector.process(_record(NOW + 11 + i, ok=False, fp="a"))
    assert signals == []


async def test_a_failed_read_of_the_windows_still_takes_the_held_records(engine_db: core.Connection) -> None:
    """The database fails the read: the windows start empty, as on a first start, and what was held
    is counted all the same."""
    detector, signals = _detector()
    detector.hold()
    for i in range(5):
        detector.process(_record(NOW + i, ok=False, fp="a"))
    await engine_db.close()
    await restore_windows_later(engine_db, detector, upto=0, now=lambda: NOW + 5)
    assert sorted(s.rule for s in signals) == ["error_rate", "repeat"]


async def test_a_restored_storm_keeps_its_sample_failure(engine_db: core.Connection) -> None:
    """4 failures before, then one success makes the 5 events: the signal's sample is a stored failure."""
    stored = [_record(NOW - 10 + i, ok=False, fp="a") for i in range(4)]
    detector, signals = await _restored(engine_db, stored, repeat={"count": 100})
    detector.process(_record(NOW))
    (signal,) = signals
    assert (signal.rule, signal.sample.fingerprint, signal.sample.ts) == ("error_rate", "a", NOW - 7)


async def test_a_restored_latency_baseline_compares_at_once(engine_db: core.Connection) -> None:
    """The latest durations are restored: a slow spell right after is measured against the old
    baseline instead of waiting for hundreds of new calls."""
    latency = {"window": 20, "baseline": 100, "min_samples": 20, "min_ms": 50}
    stored = [_record(NOW - 200 + i, duration_ms=100 + (i % 7)) for i in range(120)]
    detector, signals = await _restored(engine_db, stored, latency=latency)
    for i in range(20):
        detector.process(_record(NOW + i, duration_ms=400))
    assert [s.rule for s in signals] == ["latency"]
    empty, empty_signals = _detector(latency=latency)
    for i in range(20):
        empty.process(_record(NOW + i, duration_ms=400))
    assert empty_signals == []  # without the restore there is nothing to compare with


def test_a_fix_gone_live_starts_its_kinds_windows_afresh() -> None:
    """Four failures, then a fix goes live (`forget`): one success after it does not make "failing 80 % of
    the time" of the failures before the fix, nor do they count toward a repeat; failures after it do."""
    detector, signals = _detector(repeat={"count": 5})
    for i in range(4):
        detector.process(_record(i, ok=False, fp="a"))
    detector.forget("command:roll", "a")
    detector.process(_record(10, ok=True))
    assert signals == []
    for i in range(5):
        detector.process(_record(20 + i, ok=False, fp="a"))
    assert [s.rule for s in signals] == ["error_rate", "repeat"]


def test_a_fix_rolled_back_counts_the_failures_before_it_again() -> None:
    """Four failures, a fix gone live and a success, then the fix rolled back (`recall`): the failure that
    follows escalates with the four before the fix, as the same fault back (5 of 6 in the window)."""
    detector, signals = _detector(repeat={"count": 100})
    for i in range(4):
        detector.process(_record(i, ok=False, fp="a"))
    detector.forget("command:roll", "a")
    detector.process(_record(10, ok=True))
    detector.recall("command:roll", "a")
    assert signals == []
    detector.process(_record(20, ok=False, fp="a"))
    assert [(s.rule, s.count) for s in signals] == [("error_rate", 5)]
    assert "5 of 6" in signals[0].summary
