"""The replay's observer judges a replayed slash command as Discord would: not acknowledged within
3 s is no answer, whatever the bot sends later; "thinking…" in time, then the answer, is answered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import discord
import pytest

from mendbot.improve.proof import replay, replay_calls, replay_reports
from mendbot.improve.proof.replay import ReplayResult
from mendbot.improve.proof.replay_plan import ReplayCase
from mendbot.trust.loopback_discord import DiscordDouble

LATE_S = replay.ACK_TIMEOUT_S + 0.5


@pytest.fixture
async def observer() -> AsyncIterator[DiscordDouble]:
    """A plain discord.py bot on the loopback Discord, with a late command and a deferred one."""
    async with DiscordDouble() as double:
        with double.pointed_at():
            client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
            tree = discord.app_commands.CommandTree(client)

            @tree.command(name="late", description="Answers after Discord has given up.")
            async def late(interaction: discord.Interaction) -> None:
                await asyncio.sleep(LATE_S)
                await interaction.response.send_message("too late")

            @tree.command(name="thinking", description="Says it is thinking, then answers.")
            async def thinking(interaction: discord.Interaction) -> None:
                await interaction.response.defer(thinking=True)
                await asyncio.sleep(LATE_S)
                await interaction.followup.send("worth the wait")

            await client.login(double.token)
            task = asyncio.create_task(client.connect(reconnect=False))
            try:
                await asyncio.wait_for(client.wait_until_ready(), timeout=30)
                await tree.sync()
                yield double
            finally:
                await client.close()
                await asyncio.wait_for(task, timeout=10)


async def _replayed(observer: DiscordDouble, name: str) -> ReplayResult:
    general = observer.guild.channel("general")
    case = _case(name)
    seen = await replay_calls.call(observer, general, case, replay.CALL_TIMEOUT_S, replay_reports.Reports())
    return seen.result(case.key, observer, general, (), replay.Watch())


def _case(name: str) -> ReplayCase:
    return ReplayCase(
        key=name, kind=f"app:{name}", name=f"/{name}", options={}, fingerprint=None, recorded_ms=1
    )


async def test_a_slash_answered_after_discords_three_seconds_is_no_answer(observer: DiscordDouble) -> None:
    result = await _replayed(observer, "late")
    assert not result.answered and result.shown() == "no answer"
    assert result.duration_ms < LATE_S * 1000  # judged at Discord's deadline, not after the whole wait


async def test_a_slash_that_thinks_in_time_may_answer_later(observer: DiscordDouble) -> None:
    result = await _replayed(observer, "thinking")
    assert result.answered and result.reply == "worth the wait"
    assert result.duration_ms >= LATE_S * 1000
