"""Shared fixtures: test settings in a temp dir and a running virtual world."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.playground import VirtualWorld
from bot.settings import Settings
from tests.harness.discord import make_settings, running_world

# Never let a developer's own configuration or secrets leak into a test run.
for _name in ("DISCORD_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GITHUB_TOKEN"):
    os.environ.pop(_name, None)
os.environ["MENDBOT_CONFIG"] = os.devnull


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
async def world(settings: Settings) -> AsyncIterator[VirtualWorld]:
    async with running_world(settings) as world:
        yield world
