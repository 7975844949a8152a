"""deploy/compose.yaml, the scale-out example, is coherent: every process's config loads and passes
the start-up checks, the bot processes cover every shard exactly once on one shared database, and
the worker takes runs from that database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mendbot.kernel.settings import Settings, load_settings, refuse_shard_subset, refuse_workers_without_store

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def _settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings the service's process loads: its MENDBOT_CONFIG, found through its volumes."""
    config = Path(service["environment"]["MENDBOT_CONFIG"])
    mounts = dict(volume.split(":")[1::-1] for volume in service["volumes"])  # container → host
    host = DEPLOY / mounts[str(config.parent)] / config.name
    monkeypatch.setenv("MENDBOT_CONFIG", str(host))
    settings = load_settings(_env_file=None)
    refuse_shard_subset(settings)  # a ConfigError here is exit 78 at start
    refuse_workers_without_store(settings)
    return settings


def test_the_bot_processes_cover_every_shard_once_on_one_database(monkeypatch: pytest.MonkeyPatch) -> None:
    services = _services()
    bots = [_settings_of(services[name], monkeypatch) for name in services if name.startswith("bot-")]
    assert len(bots) == 2
    counts = {bot.discord.shard_count for bot in bots}
    assert counts == {2}
    shards = sorted(shard for bot in bots for shard in bot.discord.shard_ids or [])
    assert shards == [0, 1]
    assert len({bot.database.url for bot in bots}) == 1
    assert all(bot.improve.run_on == "workers" and bot.forge.kind == "github" for bot in bots)


def test_the_worker_shares_the_database_and_runs_the_worker_command(monkeypatch: pytest.MonkeyPatch) -> None:
    services = _services()
    worker = services["worker"]
    assert worker["command"] == ["worker"]
    settings = _settings_of(worker, monkeypatch)
    bot = _settings_of(services["bot-0"], monkeypatch)
    assert settings.database.url == bot.database.url
    assert settings.improve.run_on == "workers"
    assert settings.forge.repository == bot.forge.repository
    # The database's host is the compose service, and its password comes from .env, not a file.
    assert settings.database.url is not None and "@postgres:" in settings.database.url
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${PGPASSWORD")
