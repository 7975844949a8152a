"""`/metrics` on the health port: actions, failures, latency, incidents, runs, spend, shed records, sizes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mendbot.runtime.health import HealthServer
from mendbot.tools.playground import VirtualWorld

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
Scrape = Callable[[], Awaitable[Samples]]


@pytest.fixture
async def scrape(world: VirtualWorld) -> AsyncIterator[Scrape]:
    server = HealthServer(world.bot, "127.0.0.1", 0)
    port = await server.start()

    async def get() -> Samples:
        await world.quiesce()
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    try:
        yield get
    finally:
        await server.stop()


async def test_commands_are_counted_with_their_latency(world: VirtualWorld, scrape: Scrape) -> None:
    """Each /roll is counted as an ok action and observed in the latency histogram."""
    for _ in range(3):
        await world.users["alice"].slash(world.general, "roll", notation="2d6")
    metrics = await scrape()
    assert metrics[("mendbot_actions_total", (("kind", "command:roll"), ("outcome", "ok")))] == 3
    assert metrics[("mendbot_action_duration_seconds_count", (("kind", "command:roll"),))] == 3
    assert (
        metrics[("mendbot_action_duration_seconds_bucket", (("kind", "command:roll"), ("le", "+Inf")))] == 3
    )


async def test_failures_and_incidents_are_counted(world: VirtualWorld, scrape: Scrape) -> None:
    """A failing action counts as a failure by error type and its incident shows as open."""
    world.bot.services.recorder.record(
        "task:audit", "test", ok=False, duration_ms=12.0, error=RuntimeError("disk on fire")
    )
    metrics = await scrape()
    assert metrics[("mendbot_actions_total", (("kind", "task:audit"), ("outcome", "failed")))] == 1
    assert (
        metrics[("mendbot_action_failures_total", (("error_type", "RuntimeError"), ("kind", "task:audit")))]
        == 1
    )
    assert metrics[("mendbot_incidents_open", (("level", "notice"),))] == 1
    assert metrics[("mendbot_incidents_open", (("level", "error"),))] == 0


async def test_state_figures_are_read_at_scrape_time(world: VirtualWorld, scrape: Scrape) -> None:
    """Runs by state, spend, budget, records waiting, readiness and chat cost come from the live bot."""
    world.bot.services.recorder.record("chat:reply", "chat", ok=True, duration_ms=900.0, cost_usd=0.25)
    metrics = await scrape()
    assert metrics[("mendbot_runs", (("state", "queued"),))] == 0
    assert metrics[("mendbot_runs", (("state", "awaiting_approval"),))] == 0
    assert metrics[("mendbot_runs_spend_usd", ())] == 0
    assert metrics[("mendbot_improve_daily_budget_usd", ())] == 20.0
    assert metrics[("mendbot_improve_autonomous_daily_budget_usd", ())] == 5.0
    assert metrics[("mendbot_improve_autonomous_spent_today_usd", ())] == 0
    assert metrics[("mendbot_action_records_waiting", ())] == 0
    assert not [name for name, _ in metrics if name == "mendbot_action_records_shed_total"]
    assert metrics[("mendbot_discord_ready", ())] == 1
    assert metrics[("mendbot_leader", ())] == 1  # the only process on SQLite leads
    assert metrics[("mendbot_action_cost_usd_total", (("kind", "chat:reply"),))] == 0.25
    world.bot.accepting = False
    try:
        assert (await scrape())[("mendbot_discord_ready", ())] == 0
    finally:
        world.bot.accepting = True


async def test_shed_records_and_the_stores_size_are_shown(world: VirtualWorld, scrape: Scrape) -> None:
    """Records shed because the journal could not keep up show by kind; the database's and the
    journal's bytes on disk are gauges, as the files measure."""
    recorder = world.bot.services.recorder
    recorder.shed["command:roll"] += 7
    await world.users["alice"].slash(world.general, "roll", notation="1d6")
    await world.quiesce()
    metrics = await scrape()
    assert metrics[("mendbot_action_records_shed_total", (("kind", "command:roll"),))] == 7
    settings = world.bot.services.settings
    database = metrics[("mendbot_storage_bytes", (("store", "database"),))]
    assert database == sum(path.stat().st_size for path in settings.data_dir.glob("mendbot.db*")) > 0
    journal = metrics[("mendbot_storage_bytes", (("store", "journal"),))]
    assert journal == sum(p.stat().st_size for p in settings.log_dir.glob("actions.ndjson*")) > 0
    health = world.bot.services.health()  # what /health shows beside it
    assert (health["storage_bytes"], health["journal_bytes"]) == (database, journal)


async def test_a_single_process_shows_no_process_commits(world: VirtualWorld, scrape: Scrape) -> None:
    """With one process nothing changes: no `mendbot_process_commit` sample (and /run no "Live on")."""
    metrics = await scrape()
    assert not [name for name, _ in metrics if name == "mendbot_process_commit"]
    assert await world.bot.services.cluster.live_on("0" * 40) is None
