"""The run policy for runs the bot starts by itself: their own daily pool, refusals by name, and requested
runs untouched by either (real SQLite, real RunService and BudgetLedger)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from mendbot.db import open_database
from mendbot.improve.autonomy import AUTONOMOUS_REQUESTER
from mendbot.improve.policy import BudgetLedger, Policy, PolicyRefusal
from mendbot.improve.runs import RunService
from mendbot.kernel.sections import ImproveConfig
from mendbot.kernel.structs import read

ALICE = 1001
NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


def clock() -> datetime:
    return NOW


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_database(tmp_path / "autonomy.db")
    yield connection
    await connection.close()


def make_policy(db: aiosqlite.Connection, **config: Any) -> Policy:
    values = {
        "daily_budget_usd": 10.0,
        "autonomous_daily_budget_usd": 1.0,
        "max_budget_usd_per_run": 2.0,
        "runs_per_hour": 2,
        "concurrency": 8,
        **config,
    }
    return Policy(read(ImproveConfig, values), db, clock)


async def _spend(runs: RunService, policy: Policy, origin: str, usd: float) -> int:
    requester = AUTONOMOUS_REQUESTER if origin == "autonomous" else ALICE
    run = await runs.create("investigate", requester, None, None, "x", origin=origin)  # type: ignore[arg-type]
    await BudgetLedger(policy, runs).charge(run.id, usd, {"model": "m"})
    return run.id


async def test_autonomous_spend_is_booked_to_its_own_pool(db: aiosqlite.Connection) -> None:
    """An autonomous run's model requests count toward the autonomous pool only, which caps its spend."""
    runs, policy = RunService(db, clock), make_policy(db)
    run_id = await _spend(runs, policy, "autonomous", 0.75)
    await _spend(runs, policy, "requested", 0.5)
    assert await policy.spent_today("autonomous") == pytest.approx(0.75)
    assert await policy.spent_today("requested") == pytest.approx(0.5)
    per_run, today = await policy.remaining(await runs.get(run_id))
    assert per_run == pytest.approx(1.25)
    assert today == pytest.approx(0.25)  # what is left of the autonomous pool, not of the requested 9.50


async def test_spent_autonomous_pool_refuses_the_bot_but_not_people(db: aiosqlite.Connection) -> None:
    """With the autonomous pool spent, an autonomous start is refused by name; a person's request passes."""
    runs, policy = RunService(db, clock), make_policy(db)
    await _spend(runs, policy, "autonomous", 1.0)
    with pytest.raises(PolicyRefusal) as refusal:
        await policy.check_start(AUTONOMOUS_REQUESTER, "autonomous")
    assert refusal.value.limit == "autonomous_budget"
    assert "runs of my own is spent ($1.00 of $1.00)" in str(refusal.value)
    await policy.check_start(ALICE)


async def test_spent_requested_pool_leaves_autonomous_runs_their_own(db: aiosqlite.Connection) -> None:
    """People spending the whole daily budget neither stops nor shrinks the autonomous pool."""
    runs, policy = RunService(db, clock), make_policy(db)
    await _spend(runs, policy, "requested", 10.0)
    with pytest.raises(PolicyRefusal) as refusal:
        await policy.check_start(ALICE)
    assert refusal.value.limit == "daily_budget"
    await policy.check_start(AUTONOMOUS_REQUESTER, "autonomous")


async def test_autonomy_off_refuses_autonomous_starts(db: aiosqlite.Connection) -> None:
    """`improve.autonomy: off` is enforced by the policy itself, whatever calls it."""
    policy = make_policy(db, autonomy="off")
    with pytest.raises(PolicyRefusal) as refusal:
        await policy.check_start(AUTONOMOUS_REQUESTER, "autonomous")
    assert refusal.value.limit == "autonomy_off"
    await policy.check_start(ALICE)


async def test_pause_and_concurrency_hold_autonomous_runs_too(db: aiosqlite.Connection) -> None:
    """A pause and a full concurrency slot refuse autonomous starts as they refuse requested ones."""
    runs, policy = RunService(db, clock), make_policy(db, concurrency=1)
    await policy.pause(ALICE)
    with pytest.raises(PolicyRefusal) as paused:
        await policy.check_start(AUTONOMOUS_REQUESTER, "autonomous")
    assert paused.value.limit == "paused"
    await policy.resume(ALICE)
    await runs.create("investigate", ALICE, None, None, "working")
    with pytest.raises(PolicyRefusal) as busy:
        await policy.check_start(AUTONOMOUS_REQUESTER, "autonomous")
    assert busy.value.limit == "concurrency"


async def test_hourly_limits_count_requests_of_people_only(db: aiosqlite.Connection) -> None:
    """Runs the bot started itself do not use up the hourly run limit people ask within."""
    runs, policy = RunService(db, clock), make_policy(db, runs_per_hour=2)
    for _ in range(3):
        await runs.create("investigate", AUTONOMOUS_REQUESTER, None, None, "mine", origin="autonomous")
    await policy.check_start(ALICE)
    for _ in range(2):
        await runs.create("investigate", ALICE, None, None, "asked")
    with pytest.raises(PolicyRefusal) as refusal:
        await policy.check_start(ALICE)
    assert refusal.value.limit == "hourly"


async def test_budget_report_shows_the_level_and_the_autonomous_pool(db: aiosqlite.Connection) -> None:
    """/budget's text names the autonomy level, its severity and the autonomous spend of the day."""
    runs, policy = RunService(db, clock), make_policy(db, autonomy="propose", autonomous_severity="warning")
    await _spend(runs, policy, "autonomous", 0.4)
    text = (await policy.budget()).render()
    assert "**On my own:** propose on warning incidents; spent today $0.40 of $1.00" in text
    assert "**Spent today:** $0.00 of $10.00" in text
    off = (await make_policy(db, autonomy="off").budget()).render()
    assert "**On my own:** off (runs start only when asked)" in off


async def test_runs_keep_their_origin(db: aiosqlite.Connection) -> None:
    """A run's origin is stored with it; a run nobody marked is a requested one."""
    runs = RunService(db, clock)
    mine = await runs.create("fix", AUTONOMOUS_REQUESTER, None, 3, "mine", origin="autonomous")
    asked = await runs.create("fix", ALICE, None, 3, "asked")
    assert [(await runs.get(mine.id)).origin, (await runs.get(asked.id)).origin] == [
        "autonomous",
        "requested",
    ]
    assert [run.id for run in await runs.for_incident(3)] == [mine.id, asked.id]
