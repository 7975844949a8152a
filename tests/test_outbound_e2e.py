"""The outbound-call story end to end, over the real discord.py client: a `mendbot run` process (SQLite, the
local forge) against the loopback Discord, whose cogs/search.py asks a search provider — a real HTTP server
on 127.0.0.1 that holds every request until the cog's own short timeout gives up. Members' searches time
out → the calls are recorded → one incident naming the provider and the code that called it is announced
in #dev → alice says "the search keeps timing out" → a run starts whose evidence carries those calls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mendbot.trust.loopback_discord import DiscordDouble
from mendbot.trust.loopback_discord_model import message_text
from tests.harness.live_bot import LiveBot, live_config
from tests.harness.model_double import ModelDouble
from tests.harness.provider import Provider
from tests.harness.repo import copy_of_bot, git

KEY = "sk-live-provider-secret-0123456789abcdef"
SEARCH_COG = Path(__file__).parent / "fixtures" / "search_cog.py"

pytestmark = pytest.mark.cli  # the run goes on to the bundled CLI once its evidence is in


def _says(pattern: str) -> Callable[[dict[str, Any]], bool]:
    regex = re.compile(pattern, re.S)
    return lambda message: regex.search(message_text(message)) is not None


def _after(message: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    return lambda candidate: int(candidate["id"]) > int(message["id"])


def _rows(bot: LiveBot, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(bot.data_dir / "mendbot.db")) as db:
        return db.execute(sql).fetchall()


async def _evidence(bot: LiveBot, timeout: float = 60) -> dict[str, Any]:
    """The evidence run #1 gathered, once the bot has stored it (its SQLite database)."""
    query = "SELECT detail FROM run_events WHERE run_id = 1 AND event = 'evidence'"

    async def poll() -> dict[str, Any]:
        while True:
            found = await asyncio.to_thread(_rows, bot, query)
            if found:
                detail: dict[str, Any] = json.loads(found[0][0])
                return detail
            await asyncio.sleep(0.05)  # polling the bot's store, not timing the bot

    return await asyncio.wait_for(poll(), timeout)


async def test_a_search_provider_timing_out_becomes_a_run_with_its_calls_in_the_evidence(
    tmp_path: Path,
) -> None:
    """Four `!search` time out at the provider → #dev: "Incident #1: calls to `127.0.0.1:…`", naming the
    timeouts and `cogs/search.py:lookup` → "@mendbot the search keeps timing out" → run #1 on incident #1,
    its evidence listing the calls with their timeout and the cog's lookup as the first suspect. Nothing of
    discord.py's calls (to the loopback Discord) nor of mendbot's own is recorded as the bot's, and the
    provider's key is in no record."""
    repo = copy_of_bot(tmp_path / "repo")
    (repo / "cogs" / "search.py").write_text(SEARCH_COG.read_text(), encoding="utf-8")
    git(repo, "add", "cogs/search.py")
    git(repo, "commit", "-q", "-m", "Search the web")
    async with Provider(mode="hold") as provider, DiscordDouble() as discord_api, ModelDouble() as model:
        dev, general = discord_api.guild.channel("dev"), discord_api.guild.channel("general")
        alice = int(discord_api.member("alice")["id"])
        home = tmp_path / "bot"
        config = live_config(discord_api, home, repo_dir=repo, access={"allowed_user_ids": [alice]})
        env = {
            "SEARCH_PROVIDER_URL": provider.url,
            "SEARCH_PROVIDER_KEY": KEY,
            "SEARCH_PROVIDER_TIMEOUT_S": "0.3",
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": model.base_url,
        }
        async with await LiveBot.start(discord_api, config, home, code=repo, env=env) as bot:
            try:
                for query in ("cats", "dogs", "owls", "bats"):
                    search = await discord_api.send_message(general, f"!search {query}", author="bob")
                    failed = await discord_api.wait_for_message(_after(search), channel=general)
                    assert "TimeoutError" in message_text(failed), message_text(failed)
                announcement = await discord_api.wait_for_message(_says(r"Incident #1"), channel=dev)
                said = message_text(announcement)
                assert f"Incident #1: calls to `{provider.service}`" in said, said
                assert f"4 timeouts in the last hour from {provider.service} (4 of 4 calls failed)" in said
                assert "from `cogs/search.py:lookup`" in said

                await discord_api.mention(dev, "the search keeps timing out", author="alice")
                await discord_api.wait_for_message(_says(r"run #1 will fix incident #1"), channel=dev)
                evidence = await _evidence(bot)
                kinds = _rows(bot, "SELECT DISTINCT kind FROM actions WHERE kind LIKE 'http:%'")
                incidents = _rows(bot, "SELECT id, kind, rule FROM incidents")
                journal = (home / "data" / "logs" / "actions.ndjson").read_text()
            except BaseException:
                print(bot.output(80))
                raise
    assert provider.held == 0 and len(provider.requests) == 4
    assert kinds == [(f"http:{provider.service}",)]  # not the loopback Discord's, not the model gateway's
    assert incidents == [(1, f"http:{provider.service}", "service")]  # the crashing !search: the same storm
    text = evidence["text"]
    assert f"Calls to {provider.service} (4 recent, 4 failed; newest first)" in text
    assert (
        "GET /v1/search → timeout" in text
        and "timeout 0.3 s · from command:search at cogs/search.py:" in text
    )
    assert evidence["suspects"][0] == "cogs/search.py:Search.lookup"
    assert KEY not in journal and KEY not in text
