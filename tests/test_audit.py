"""The self-audit: /audit over seeded records posts the report with PNG charts whose numbers match the
records, the schedule fires on the virtual clock, and the aggregates stay on their indexes."""

from __future__ import annotations

import io
import os
import sqlite3
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import discord
import pytest
from PIL import Image

from mendbot.db import actions as action_queries
from mendbot.db import open_database
from mendbot.db.core import Connection
from mendbot.db.records import ActionRecord
from mendbot.kernel.sections import AuditConfig
from mendbot.kernel.settings import ConfigError, Settings
from mendbot.observe.audit import AuditError, AuditSchedule, AuditService, parse_period
from mendbot.observe.audit_charts import chart_figures, render_charts
from mendbot.observe.audit_render import render_text
from mendbot.scale.leader import SoleLeader
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_settings, reply_text, running_world
from tests.harness.sql import sql, sql_value

REPO = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HOUR = 3600.0


def _action(ts: float, kind: str, duration_ms: float, **fields: Any) -> ActionRecord:
    return ActionRecord(ts=ts, kind=kind, source="seed", ok=True, duration_ms=duration_ms, **fields)


def _failure(ts: float, kind: str, fingerprint: str, error_type: str, message: str) -> ActionRecord:
    return ActionRecord(
        ts=ts,
        kind=kind,
        source="seed",
        ok=False,
        duration_ms=5.0,
        error_type=error_type,
        error_message=message,
        fingerprint=fingerprint,
    )


async def seed(db: Connection, now: float) -> None:
    """One day audited against the day before; the figures the tests expect are in comments.

    Now is 12:00 UTC, so the audited day spans yesterday 12:00 → today 12:00.
    """
    cur, prev = now - 1 * HOUR, now - 30 * HOUR  # inside the audited day / inside the day before
    records: list[ActionRecord] = []
    # command:roll: 40 actions, 10 failed (25%) → 2500% of a 1% budget; the top fingerprint.
    records += [_action(cur, "command:roll", 10.0) for _ in range(30)]
    records += [_failure(cur, "command:roll", "fp-roll", "ZeroDivisionError", "division by zero")] * 10
    # chat:reply: 100 actions of 1..100 ms (p50 50, p95 95), $0.01 each → chat spend $1.00 today.
    records += [_action(cur, "chat:reply", float(ms), cost_usd=0.01) for ms in range(1, 101)]
    records += [_action(prev, "chat:reply", float(ms)) for ms in range(1, 101)]  # same latency before
    # command:slow: p95 300 ms against 100 ms the day before → a ×3.0 regression.
    records += [_action(cur, "command:slow", 300.0) for _ in range(30)]
    records += [_action(prev, "command:slow", 100.0) for _ in range(30)]
    # command:tiny: ×10 slower but only 5 samples a day → not judged a regression.
    records += [_action(cur, "command:tiny", 500.0) for _ in range(5)]
    records += [_action(prev, "command:tiny", 50.0) for _ in range(5)]
    # listener:on_message: 50 ok, 1 failed (2%) → 200% of budget, second fingerprint.
    records += [_action(cur, "listener:on_message", 2.0) for _ in range(50)]
    records += [_failure(cur, "listener:on_message", "fp-listener", "KeyError", "'user'")]
    # Before the day before: never counted.
    records += [_failure(now - 60 * HOUR, "command:roll", "fp-roll", "ZeroDivisionError", "old")] * 3
    await action_queries.insert_many(db, records)

    incident = (
        "INSERT INTO incidents (rule, rules, level, kind, fingerprint, state, summary, first_seen,"
        " last_seen, count, user_ids, sample, updated_at, closed_at)"
        " VALUES (:rule, '[]', 'error', :kind, :fp, :state, :summary, :first, :last, 1, '[]', '{}', :updated,"
        " :closed)"
    )
    # Opened today: one still open, one resolved today; one opened long ago, still open → 2 open now.
    for rule, kind, fp, state, summary, first, closed in [
        ("repeat", "command:roll", "fp-roll", "open", "roll", cur, None),
        ("repeat", "listener:on_message", "fp-listener", "resolved", "msg", cur, now - 1800),
        ("error_rate", "command:old", None, "open", "old", now - 90 * HOUR, None),
    ]:
        await sql(
            db,
            incident,
            rule=rule,
            kind=kind,
            fp=fp,
            state=state,
            summary=summary,
            first=first,
            last=cur,
            updated=cur,
            closed=closed,
        )

    run = (
        "INSERT INTO runs (id, kind, state, requester_id, description, slug, cost_usd, created_at,"
        " updated_at) VALUES (:id, :kind, :state, 1, 'seeded', 'seeded', :cost, :created, :updated)"
    )
    event = (
        "INSERT INTO run_events (run_id, ts, actor, event, state, cost_usd)"
        " VALUES (:id, :ts, 'seed', :event, :state, :cost)"
    )
    # Run 1 reported ($0.50, spent yesterday 22:00); run 2 regressed ($1.25 today); run 3 is too old.
    for id_, kind, state, cost, created, updated in [
        (1, "investigate", "reported", 0.5, now - 15 * HOUR, now - 14 * HOUR),
        (2, "fix", "regressed", 1.25, now - 4 * HOUR, cur),
        (3, "fix", "failed", 9.0, now - 50 * HOUR, now - 50 * HOUR),
    ]:
        await sql(db, run, id=id_, kind=kind, state=state, cost=cost, created=created, updated=updated)
    for id_, ts, name, state, cost in [
        (1, now - 14 * HOUR, "model_request", "investigating", 0.5),
        (2, now - 3 * HOUR, "model_request", "editing", 1.25),
        (2, now - 2 * HOUR, "transition", "regressed", 0.0),
        (3, now - 50 * HOUR, "model_request", "editing", 9.0),
    ]:
        await sql(db, event, id=id_, ts=ts, event=name, state=state, cost=cost)


async def _noon(world: VirtualWorld) -> float:
    """Move the virtual clock (which starts at 2026-01-01 00:00 UTC) to 12:00 and return it."""
    await world.env.advance_time(12 * HOUR)
    now = world.env.now()  # the bot's clock reads this inside its own tasks; the test's reads the wall
    assert (now.hour, now.minute) == (12, 0)
    return now.timestamp()


async def _count(db: Connection, text: str, **params: Any) -> int:
    return int(await sql_value(db, text, **params))


def _png_size(data: bytes) -> tuple[int, int]:
    """The width and height a PNG declares, after checking it fully decodes to that size."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # decodes every pixel: a truncated or corrupt file raises here
        assert image.format == "PNG" and image.size == (width, height)
    return width, height


async def _audit(
    world: VirtualWorld, user: str = "alice", **options: Any
) -> tuple[str, list[discord.Attachment]]:
    result = await world.users[user].slash(world.dev, "audit", **options)
    await world.quiesce()
    messages = [m for m in [result.response, *result.followups] if m is not None and m.content]
    attachments = [a for m in [result.response, *result.followups] if m is not None for a in m.attachments]
    return "\n".join(m.content for m in messages), attachments


async def test_audit_reports_seeded_records_with_png_charts(world: VirtualWorld) -> None:
    """/audit posts the day's report whose every figure matches the seeded records, with three PNG charts."""
    now = await _noon(world)
    await seed(world.bot.services.db, now)
    text, attachments = await _audit(world)

    assert "📋 **Self-audit** · last 24h (2025-12-31 12:00 → 2026-01-01 12:00 UTC)" in text
    assert "226 actions, 11 failed" in text
    assert "🔴 the `roll` command 10/40 failed (25.0%) — 2500% of budget" in text
    assert "🔴 the `on_message` listener 1/51 failed (2.0%) — 196% of budget" in text
    assert "🟢 chat replies 0/100 failed (0.0%) — 0% of budget" in text
    assert "• the `roll` command 10× ZeroDivisionError: division by zero (`fp-roll`)" in text
    assert "• the `on_message` listener 1× KeyError: 'user' (`fp-listener`)" in text
    assert "⚠️ the `slow` command 300 / 300 (was 100 / 100, ×3.0)" in text
    assert "• chat replies 50 / 95 (was 50 / 95, ×1.0)" in text
    assert "• the `tiny` command 500 / 500 (was 50 / 50, ×10.0)" in text  # too few samples to judge
    assert "1 regression(s)." in text
    assert "**Incidents:** 2 opened, 1 resolved, 1 regressed · 2 open now" in text
    assert "**Runs:** 2 — 1 regressed, 1 reported · $1.75" in text
    assert "**Spend:** $2.75 (chat $1.00, runs $1.75)" in text
    assert "• 12-31 $0.50 (chat $0.00, runs $0.50)" in text
    assert "• 01-01 $2.25 (chat $1.00, runs $1.25)" in text
    assert "🎯 **Highest impact:** the `roll` command failed 10× with ZeroDivisionError" in text

    never = text.split("**Never invoked**", 1)[1].split("\n", 1)[0]
    assert "`remind`" in never and "`/budget`" in never
    assert "`roll`" not in never and "`slow`" not in never

    assert sorted(a.filename for a in attachments) == [
        "failures_per_day.png",
        "p95_per_kind.png",
        "spend_per_day.png",
    ]
    for attachment in attachments:
        data = await attachment.read()
        assert attachment.size == len(data) > 1000
        assert _png_size(data) == (800, 400)


async def test_audit_period_seven_days_takes_in_older_records(world: VirtualWorld) -> None:
    """`/audit 7d` covers the records the one-day audit leaves out (the three old roll failures)."""
    now = await _noon(world)
    await seed(world.bot.services.db, now)
    text, _ = await _audit(world, period="7d")
    assert "· last 7d (2025-12-25 12:00 → 2026-01-01 12:00 UTC)" in text
    assert "🔴 the `roll` command 13/43 failed" in text


async def test_audit_refusals_are_replies(world: VirtualWorld) -> None:
    """Mallory is refused (and recorded), #general is redirected, a bad period is explained."""
    refused = await world.users["mallory"].slash(world.dev, "audit")
    assert "Only allow-listed developers" in reply_text(refused)
    elsewhere = await world.users["alice"].slash(world.general, "audit")
    assert "Ask me that in the dev channel." in reply_text(elsewhere)
    bad = await world.users["alice"].slash(world.dev, "audit", period="soon")
    assert "`soon` isn't a period I can audit" in reply_text(bad)
    kept = world.bot.services.settings.observe.retention_days  # an audit reads only what is kept
    too_long = await world.users["alice"].slash(world.dev, "audit", period=f"{kept + 1}d")
    assert f"at most {kept}d" in reply_text(too_long)
    await world.quiesce()
    refusals = "SELECT COUNT(*) FROM actions WHERE kind = 'access:refused' AND user_id = :user"
    assert await _count(world.bot.services.db, refusals, user=world.users["mallory"].id) == 1


async def test_scheduled_audit_fires_on_the_virtual_clock(tmp_path: Path) -> None:
    """With `audit.schedule: "0 9 * * *"` the report is posted in #dev at 09:00 and again the next day."""
    settings = make_settings(tmp_path / "data", audit={"schedule": "0 9 * * *"})
    async with running_world(settings) as world:

        def audits() -> list[discord.Message]:
            return [m for m in bot_messages(world, world.dev) if m.content.startswith("📋 **Self-audit**")]

        await world.env.advance_time(9 * HOUR - 60)  # 08:59
        await world.quiesce()
        assert audits() == []
        await world.env.advance_time(120)  # 09:01
        await world.quiesce()
        (first,) = audits()
        assert "last 24h (2025-12-31 09:00 → 2026-01-01 09:00 UTC)" in first.content
        charts = [m for m in bot_messages(world, world.dev) if m.attachments]
        assert {a.filename for m in charts for a in m.attachments} == {
            "failures_per_day.png",
            "p95_per_kind.png",
            "spend_per_day.png",
        }
        for attachment in charts[-1].attachments:
            assert _png_size(await attachment.read()) == (800, 400)
        await world.env.advance_time(24 * HOUR)
        await world.quiesce()
        assert len(audits()) == 2
        recorded = "SELECT COUNT(*) FROM actions WHERE kind = 'task:audit' AND ok = 1"
        assert await _count(world.bot.services.db, recorded) == 2


async def test_no_schedule_posts_nothing_by_itself(world: VirtualWorld) -> None:
    """Without `audit.schedule` a day passes and no audit is posted."""
    assert not world.bot.services.audit.schedule.expression
    await world.env.advance_time(25 * HOUR)
    await world.quiesce()
    assert not [m for m in bot_messages(world, world.dev) if "Self-audit" in m.content]


def test_schedule_is_read_in_its_time_zone() -> None:
    """ "0 9 * * *" in Europe/Berlin fires at 08:00 UTC in winter, strictly after the given time."""
    schedule = AuditSchedule("0 9 * * *", "Europe/Berlin", lambda: datetime.now(UTC))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert schedule.next_fire(start) == datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert schedule.next_fire(datetime(2026, 1, 1, 8, tzinfo=UTC)) == datetime(2026, 1, 2, 8, tzinfo=UTC)
    assert AuditSchedule(None, "UTC", lambda: start).next_fire(start) is None


@pytest.mark.parametrize(
    ("audit", "key"),
    [({"schedule": "every monday"}, "audit.schedule"), ({"timezone": "Mars/Olympus"}, "audit.timezone")],
)
def test_bad_schedule_is_a_config_error(tmp_path: Path, audit: dict[str, str], key: str) -> None:
    """An invalid cron expression or time zone stops start-up with one line naming the key."""
    with pytest.raises(ConfigError, match=key):
        make_settings(tmp_path / "data", audit=audit)


def test_period_parsing() -> None:
    """Periods are 1h..max; anything else says what works."""
    assert parse_period("7d", 14 * 24) == timedelta(days=7)
    assert parse_period("1d12h", 14 * 24) == timedelta(hours=36)
    for bad in ("soon", "30m", "15d", "0h"):
        with pytest.raises(AuditError, match=r"isn't a period I can audit"):
            parse_period(bad, 14 * 24)


# -- the service alone, over a real database ---------------------------------------------------


NOON = datetime(2026, 1, 1, 12, tzinfo=UTC)


async def _seeded(path: Path) -> Path:
    db = await open_database(path)
    try:
        await seed(db, NOON.timestamp())
    finally:
        await db.close()
    return path


async def test_report_figures(tmp_path: Path) -> None:
    """Nearest-rank percentiles, budgets, regressions and unused commands, straight from SQL."""
    service = AuditService(await _seeded(tmp_path / "audit.db"), AuditConfig(), lambda: NOON)
    report = await service.report(timedelta(days=1), commands={"command:roll", "command:never", "app:x"})
    latency = {change.kind: change for change in report.latency}
    assert (latency["chat:reply"].p50, latency["chat:reply"].p95) == (50.0, 95.0)
    assert latency["command:slow"].regressed and latency["command:slow"].factor == 3.0
    assert not latency["command:tiny"].regressed
    assert [change.kind for change in report.regressions] == ["command:slow"]
    assert [b.kind for b in report.over_budget] == ["command:roll", "listener:on_message"]
    assert report.unused_commands == ["app:x", "command:never"]
    assert [(day.day.isoformat(), day.failures) for day in report.days] == [
        ("2025-12-31", 0),
        ("2026-01-01", 11),
    ]


async def test_highest_impact_order(tmp_path: Path) -> None:
    """Over-budget failures come first; with a looser SLO the regression; with nothing wrong, None."""
    path = await _seeded(tmp_path / "audit.db")
    finding = await AuditService(path, AuditConfig(), lambda: NOON).highest_impact()  # one day
    assert finding is not None and (finding.kind, finding.fingerprint, finding.impact) == (
        "command:roll",
        "fp-roll",
        10.0,
    )
    finding = await AuditService(path, AuditConfig(slo=0.5), lambda: NOON).highest_impact()
    assert finding is not None and (finding.kind, finding.fingerprint) == ("command:slow", None)
    assert "100 ms to 300 ms" in finding.description
    later = NOON + timedelta(days=30)
    assert await AuditService(path, AuditConfig(), lambda: later).highest_impact() is None


async def test_empty_period_still_renders(tmp_path: Path) -> None:
    """A period without records renders text that says so and three valid charts."""
    await (await open_database(tmp_path / "empty.db")).close()
    service = AuditService(tmp_path / "empty.db", AuditConfig(), lambda: NOON)
    report = await service.report(timedelta(days=1), commands={"command:roll"})
    text = "\n".join(render_text(report))
    assert "No actions in this period." in text and "**Never invoked** (1): `roll`" in text
    assert [_png_size(chart.png) for chart in render_charts(report, str)] == [(800, 400)] * 3


async def test_long_reports_are_split_into_messages(tmp_path: Path) -> None:
    """Every message of a long report fits Discord's 2000 characters, and no line is lost."""
    service = AuditService(await _seeded(tmp_path / "audit.db"), AuditConfig(top=25), lambda: NOON)
    commands = {f"command:unused_{i:03d}_with_a_long_name" for i in range(120)}
    report = await service.report(timedelta(days=1), commands=commands)
    messages = render_text(report)
    assert len(messages) > 1 and all(len(m) <= 2000 for m in messages)
    assert "`unused_119_with_a_long_name`" in "".join(messages)


@pytest.mark.sqlite
async def test_aggregates_read_their_indexes(settings: Settings) -> None:
    """The period's big queries are planned on the covering indexes of the migration, not the table."""
    await (await open_database(settings.db_path)).close()
    with sqlite3.connect(settings.db_path) as db:
        plans = {
            sql: " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", args))
            for sql, args in [
                (
                    "SELECT kind, CAST(ts / 86400 AS INTEGER) AS day, COUNT(*), SUM(ok = 0), SUM(cost_usd)"
                    " FROM actions INDEXED BY actions_ts_audit WHERE ts >= ? AND ts < ? GROUP BY kind, day",
                    (0, 1),
                ),
                (
                    "SELECT duration_ms FROM actions INDEXED BY actions_kind_ts"
                    " WHERE kind = ? AND ts >= ? AND ts < ? ORDER BY duration_ms LIMIT 1 OFFSET ?",
                    ("k", 0, 1, 3),
                ),
            ]
        }
    first, second = plans.values()
    assert "COVERING INDEX actions_ts_audit" in first
    assert "COVERING INDEX actions_kind_ts (kind=? AND ts>? AND ts<?)" in second


def test_playground_shows_the_audit_and_its_charts(tmp_path: Path) -> None:
    """In `mendbot play`, /audit in #dev prints the report and names its three PNG attachments."""
    config = tmp_path / "config.yaml"
    config.write_text("health: {enabled: false}\n")
    result = subprocess.run(
        [sys.executable, "-m", "mendbot", "--config", str(config), "play"],
        cwd=tmp_path,
        input="#dev\n/audit\n/audit 7d\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**{k: v for k, v in os.environ.items() if k != "MENDBOT_CONFIG"}, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    assert "📋 **Self-audit** · last 24h" in result.stdout
    assert "📋 **Self-audit** · last 7d" in result.stdout
    for name in ("failures_per_day.png", "p95_per_kind.png", "spend_per_day.png"):
        assert result.stdout.count(f"    📎 {name} (") == 2


async def test_a_process_that_does_not_lead_posts_no_scheduled_audit(tmp_path: Path) -> None:
    """Every process has the schedule; one that does not lead (another posts it) stays quiet."""
    settings = make_settings(tmp_path / "data", audit={"schedule": "0 9 * * *"})
    async with running_world(settings) as world:
        world.bot.services.cluster.leadership = SoleLeader("a follower")  # never started: never leads
        await world.env.advance_time(9 * HOUR + 60)
        await world.quiesce()
        assert not [m for m in bot_messages(world, world.dev) if "Self-audit" in m.content]


async def test_charts_count_in_whole_numbers_on_one_axis(tmp_path: Path) -> None:
    """Failures per day: one axis, from 0, every tick a whole number of failed actions (no "0.5 failed
    actions", no percentage axis drawn over the bars) — with no failure at all and with some."""
    await (await open_database(tmp_path / "empty.db")).close()
    empty = await AuditService(tmp_path / "empty.db", AuditConfig(), lambda: NOON).report(timedelta(days=7))
    seeded = await AuditService(await _seeded(tmp_path / "audit.db"), AuditConfig(), lambda: NOON).report(
        timedelta(days=7)
    )
    for report in (empty, seeded):
        for name, figure in chart_figures(report, str).items():
            assert len(figure.axes) == 1, name  # no second axis drawn over the first
        (axes,) = chart_figures(report, str)["failures_per_day"].axes
        low, high = axes.get_ylim()
        shown = [tick for tick in axes.get_yticks() if low <= tick <= high]
        assert low == 0 and high >= 1 and shown, (low, high)
        assert all(float(tick).is_integer() for tick in shown), shown


async def test_an_audit_without_matplotlib_says_how_to_have_its_charts(
    world: VirtualWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the `charts` extra not installed, /audit posts its report and says how to have the charts."""
    from mendbot.observe import audit_charts

    monkeypatch.setattr(audit_charts, "charts_available", lambda: False)
    text, attachments = await _audit(world)
    assert "Self-audit" in text and attachments == []
    assert "`pip install 'mendbot[charts]'`" in text
