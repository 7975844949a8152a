"""tests/harness/live_bot.py: `mendbot run` processes against the loopback Discord, several per test."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from mendbot.trust.loopback_discord import DiscordDouble
from mendbot.trust.loopback_discord_model import message_text
from tests.harness.live_bot import LiveBot, live_config


async def test_two_bots_start_side_by_side_answer_and_stop(tmp_path: Path) -> None:
    """Two instances, each with its own directory and health port, get ready on one double; the newest
    session answers a member; SIGTERM ends one cleanly and kill -9 the other."""
    async with DiscordDouble() as discord_api:
        homes = [tmp_path / "first", tmp_path / "second"]
        configs = [live_config(discord_api, home) for home in homes]
        assert configs[0]["health"]["port"] != configs[1]["health"]["port"]
        first, second = await asyncio.gather(
            *(LiveBot.start(discord_api, config, home) for config, home in zip(configs, homes, strict=True))
        )
        try:
            for bot in (first, second):
                status, body = await bot.health()
                assert status == 200 and body["discord_connected"] is True
            assert discord_api.identified == 2
            general = discord_api.guild.channel("general")
            said = await discord_api.send_message(general, "!roll 2d6", author="bob")
            answer = await discord_api.wait_for_message(
                lambda m: int(m["id"]) > int(said["id"]), channel=general
            )
            assert message_text(answer).startswith("🎲 `2d6` →")
            assert "Thread" in await first.dump_stacks() and first.running  # stacks printed, still up
        finally:
            stopped, killed = await first.stop(), await second.kill()
        assert stopped == 0, first.output(30)
        assert killed == -signal.SIGKILL
        assert "ready" in first.output() and "ready" in second.output()
        assert any(event["event"] == "ready" for event in second.log_events())


async def test_a_start_that_fails_reports_the_bots_own_words(tmp_path: Path) -> None:
    """A bot that exits before it is ready fails the start at once, with the end of its output."""
    async with DiscordDouble() as discord_api:
        discord_api.fail_sync(403)
        home = tmp_path / "bot"
        with pytest.raises(
            AssertionError, match=r"ended before it was ready \(mendbot exited 78\)"
        ) as failed:
            await LiveBot.start(discord_api, live_config(discord_api, home), home)
        assert "Discord refused the slash-command sync" in str(failed.value)
