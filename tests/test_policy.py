"""Run policy: each limit refuses with its name and when it lifts; pause survives a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosqlite
import pytest

from mendbot.db import open_database
from mendbot.improve.policy import Policy, PolicyRefusal
from mendbot.improve.runs import Run, RunService
from mendbot.kernel.sections import ImproveConfig
from mendbot.kernel.structs import read

ALICE = 1001
BOB = 1002


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_database(tmp_path / "policy.db")
    yield connection
    await connection.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runs(db: aiosqlite.Connection, clock: FakeClock) -> RunService:
    return RunService(db, clock)


def make_policy(db: aiosqlite.Connection, clock: FakeClock, **limits: float) -> Policy:
    config = read(
        ImproveConfig,
        {
            "daily_budget_usd": 10.0,
            "max_budget_usd_per_run": 2.0,
            "runs_per_hour_per_user": 3,
            "runs_per_hour": 5,
            "concurrency": 8,
            **limits,
        },
    )
    return Policy(config, db, clock)


async def finished_run(runs: RunService, user_id: int, cost: float = 0.0) -> Run:
    run = await runs.create("fix", user_id, None, None, "something")
    return await runs.transition(run.id, "cancelled", actor="system", cost_usd=cost)


async def refusal(policy: Policy, user_id: int = ALICE) -> PolicyRefusal:
    with pytest.raises(PolicyRefusal) as caught:
        await policy.check_start(user_id)
    return caught.value


async def test_allowed_when_under_every_limit(
    db: aiosqlite.Connection, clock: FakeClock, runs: RunService
) -> None:
    """With some spend and runs but every limit clear, a run may start."""
    policy = make_policy(db, clock)
    await finished_run(runs, ALICE, cost=1.0)
    await finished_run(runs, BOB, cost=1.0)
    await policy.check_start(ALICE)  # a refusal would raise PolicyRefusal
    assert (await policy.budget()).spent_today_usd == pytest.approx(2.0)


async def test_pause_refuses_names_who_and_survives_reopening(tmp_path: Path, clock: FakeClock) -> None:
    """A pause refuses new runs naming who paused it, and is still in force after a restart."""
    path = tmp_path / "pause.db"
    db = await open_database(path)
    policy = make_policy(db, clock)
    assert await policy.pause(BOB) is True
    assert await policy.pause(ALICE) is False
    await db.close()

    db = await open_database(path)
    policy = make_policy(db, clock)
    await policy.load()
    assert policy.paused and policy.paused_by == BOB
    error = await refusal(policy)
    assert error.limit == "paused"
    assert str(error) == f"Runs are paused by <@{BOB}>; /resume to continue."
    assert await policy.resume(ALICE) is True
    assert not policy.paused
    await policy.check_start(ALICE)
    await db.close()


async def test_daily_budget_refuses_until_utc_midnight(
    db: aiosqlite.Connection, clock: FakeClock, runs: RunService
) -> None:
    """Spend at the daily cap refuses with the spend and the next UTC midnight; after it, runs start."""
    policy = make_policy(db, clock, daily_budget_usd=3.0)
    await finished_run(runs, BOB, cost=1.5)
    await finished_run(runs, BOB, cost=1.5)
    error = await refusal(policy)
    assert error.limit == "daily_budget"
    assert error.resets_at == ts("2025-03-15T00:00:00")
    assert "$3.00 of $3.00" in str(error) and f"<t:{ts('2025-03-15T00:00:00')}:R>" in str(error)
    clock.now = datetime(2025, 3, 15, 0, 0, 1, tzinfo=UTC)
    await policy.check_start(ALICE)


async def test_per_user_hourly_limit_resets_when_oldest_run_is_an_hour_old(
    db: aiosqlite.Connection, clock: FakeClock, runs: RunService
) -> None:
    """A user at their hourly limit is refused until their oldest run of the hour turns one hour old."""
    policy = make_policy(db, clock)
    first = await finished_run(runs, ALICE)
    for _ in range(2):
        clock.advance(600)
        await finished_run(runs, ALICE)
    error = await refusal(policy)
    assert error.limit == "user_hourly"
    assert error.resets_at == first.created_at + 3600
    assert "limit 3 per person" in str(error) and f"<t:{int(first.created_at + 3600)}:R>" in str(error)
    await policy.check_start(BOB)
    clock.now = datetime.fromtimestamp(first.created_at + 3600, UTC)
    await policy.check_start(ALICE)


async def test_overall_hourly_limit_resets_when_oldest_run_is_an_hour_old(
    db: aiosqlite.Connection, clock: FakeClock, runs: RunService
) -> None:
    """With the hour's overall limit reached, anyone is refused until the oldest run ages out."""
    policy = make_policy(db, clock, runs_per_hour=4)
    first = await finished_run(runs, BOB)
    for user in (BOB, 2001, 2002):
        clock.advance(60)
        await finished_run(runs, user)
    error = await refusal(policy)
    assert error.limit == "hourly"
    assert error.resets_at == first.created_at + 3600
    assert "limit 4" in str(error) and f"<t:{int(first.created_at + 3600)}:R>" in str(error)
    clock.now = datetime.fromtimestamp(first.created_at + 3600, UTC)
    await policy.check_start(ALICE)


async def test_concurrency_refuses_naming_the_run_to_wait_for(
    db: aiosqlite.Connection, clock: FakeClock, runs: RunService
) -> None:
    """With every working slot taken, the refusal names the oldest working run; approvals hold no slot."""
    policy = make_policy(db, clock, concurrency=1)
    waiting = await runs.create("fix", BOB, None, None, "awaiting approval")
    for state in ("observing", "investigating", "planning", "editing", "verifying", "proposing"):
        await runs.transition(waiting.id, state, actor="pipeline")
    await runs.transition(waiting.id, "awaiting_approval", actor="pipeline")
    await policy.check_start(ALICE)
    working = await runs.create("fix", BOB, None, None, "working")
    await runs.transition(working.id, "observing", actor="pipeline")
    error = await refusal(policy)
    assert error.limit == "concurrency"
    assert f"wait for run #{working.id}" in str(error) and "limit 1" in str(error)
    await runs.transition(working.id, "cancelled", actor="system")
    await policy.check_start(ALICE)


async def test_remaining_run_budget_is_the_lesser_of_run_and_day(
    db: aiosqlite.Connection, clock: FakeClock, runs: RunService
) -> None:
    """The agent's budget is bounded by the run's own cap and by what is left of today's."""
    policy = make_policy(db, clock, daily_budget_usd=5.0, max_budget_usd_per_run=2.0)
    run = await runs.create("fix", ALICE, None, None, "spend")
    run = await runs.event(run.id, "agent_turns", actor="agent", cost_usd=0.5)
    assert await policy.remaining_run_budget(run) == pytest.approx(1.5)
    await finished_run(runs, BOB, cost=4.0)
    assert await policy.remaining_run_budget(run) == pytest.approx(0.5)
    await finished_run(runs, BOB, cost=4.0)
    assert await policy.remaining_run_budget(run) == 0.0


async def test_budget_report_shows_spend_and_counts(
    db: aiosqlite.Connection, clock: FakeClock, runs: RunService
) -> None:
    """/budget reports today's spend, caps, this hour's runs per person and the pause."""
    policy = make_policy(db, clock)
    await finished_run(runs, ALICE, cost=1.25)
    await finished_run(runs, BOB, cost=0.5)
    await finished_run(runs, BOB)
    await policy.pause(ALICE)
    report = await policy.budget()
    assert report.spent_today_usd == pytest.approx(1.75)
    assert (report.daily_budget_usd, report.per_run_budget_usd) == (10.0, 2.0)
    assert (report.runs_this_hour, report.per_user) == (3, {ALICE: 1, BOB: 2})
    text = report.render()
    assert "$1.75 of $10.00" in text and f"Paused** by <@{ALICE}>" in text
    assert "**Protected** (a run needs security=true and `ship it security`): `bot/trust/`" in text
    assert "`conftest.py`" in text and "`bot/improve/`" in text
