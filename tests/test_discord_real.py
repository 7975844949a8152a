"""The real-Discord path against a loopback Discord: the real discord.py HTTP client and gateway.

Start-up failures Discord causes (a refused command sync, a fatal gateway close code) end in one line and
exit 78; Discord unreachable at start is retried with backoff until it answers. Several shards in one
process each get their own session and their own guilds; a subset of the shards is refused.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mendbot.__main__ import _run, main
from mendbot.db import actions as action_queries
from mendbot.kernel.settings import Settings
from mendbot.runtime.app import MendBot
from mendbot.runtime.services import build_services
from mendbot.runtime.startup import Backoff, start_on_discord
from mendbot.trust.loopback_discord import DiscordDouble
from mendbot.trust.loopback_discord_model import FakeGuild
from tests.harness.discord import make_settings
from tests.harness.live_bot import LiveBot, live_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def discord_api() -> AsyncIterator[DiscordDouble]:
    async with DiscordDouble() as double:
        with double.pointed_at():
            yield double


def live_settings(tmp_path: Path, double: DiscordDouble, **overrides: Any) -> Settings:
    """Settings of a bot going live on the double: its token, its guild, its #dev."""
    return make_settings(
        tmp_path / "data",
        discord_token=double.token,
        discord={"dev_guild_id": double.guild.id, "dev_channel_ids": [double.guild.channel("dev").id]},
        **overrides,
    )


class RecordingBackoff(Backoff):
    """A short real backoff that tells the test how many retries the start has waited for."""

    def __init__(self, initial: float = 0.05) -> None:
        super().__init__(initial=initial, maximum=max(initial, 0.2))
        self.waits = 0
        self._waited = asyncio.Event()

    def delays(self) -> Iterator[float]:
        for delay in super().delays():
            self.waits += 1
            self._waited.set()
            yield delay

    async def wait_for(self, count: int) -> None:
        while self.waits < count:
            self._waited.clear()
            await asyncio.wait_for(self._waited.wait(), timeout=30)


async def _live_bot(settings: Settings) -> MendBot:
    services = await build_services(settings, watch_prompts=False)
    return MendBot(services, guild_ready_timeout=0.05)


async def _stop(bot: MendBot, task: asyncio.Task[None]) -> None:
    await bot.close()
    await asyncio.wait_for(task, timeout=30)
    await bot.services.aclose()


async def test_start_logs_in_syncs_commands_to_the_dev_guild_and_connects(
    tmp_path: Path, discord_api: DiscordDouble
) -> None:
    """A good start: /users/@me, the application, the guild command sync echoed with ids, then READY."""
    bot = await _live_bot(live_settings(tmp_path, discord_api))
    task = asyncio.create_task(start_on_discord(bot, discord_api.token))
    try:
        await asyncio.wait_for(bot.wait_until_ready(), timeout=30)
        app, guild = discord_api.application_id, discord_api.guild.id
        assert discord_api.paths[:3] == [
            "GET /users/@me",
            "GET /oauth2/applications/@me",
            f"PUT /applications/{app}/guilds/{guild}/commands",
        ]
        synced = {command["name"] for command in discord_api.synced[str(guild)]}
        assert {"fix", "investigate", "roll", "runs"} <= synced
        assert bot.gateway_connected and discord_api.identified == 1
        assert bot.get_channel(discord_api.guild.channel("dev").id) is not None
    finally:
        await _stop(bot, task)


async def test_a_starting_bots_background_work_waits_for_its_gateway_session(
    tmp_path: Path, discord_api: DiscordDouble
) -> None:
    """Built for a bot about to connect, the services' daemons (the action store, retention, watchers)
    wait until it has its session; then what was recorded meanwhile reaches the database."""
    services = await build_services(
        live_settings(tmp_path, discord_api), watch_prompts=False, connecting=True
    )
    bot = MendBot(services, guild_ready_timeout=0.05)
    services.recorder.record("command:early", "test", ok=True, duration_ms=1.0)
    for _ in range(20):
        await asyncio.sleep(0)
    assert services.daemons.holding and await action_queries.last_id(services.db) == 0
    task = asyncio.create_task(start_on_discord(bot, discord_api.token))
    try:
        await asyncio.wait_for(bot.wait_until_ready(), timeout=30)
        assert not services.daemons.holding
        await asyncio.wait_for(services.recorder.flush(), timeout=30)
        assert await action_queries.last_id(services.db) >= 1
    finally:
        await _stop(bot, task)


async def test_services_closed_before_the_bot_connected_keep_what_was_recorded(
    tmp_path: Path, discord_api: DiscordDouble
) -> None:
    """A start that ends before its gateway session (a bad token, a signal) loses no record it made."""
    settings = live_settings(tmp_path, discord_api)
    services = await build_services(settings, watch_prompts=False, connecting=True)
    services.recorder.record("command:early", "test", ok=False, duration_ms=1.0, error=ValueError("x"))
    await asyncio.wait_for(services.aclose(), timeout=15)
    journal = (settings.log_dir / "actions.ndjson").read_text()
    assert '"command:early"' in journal


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (403, "Discord refused the slash-command sync to discord.dev_guild_id"),
        (400, "Discord rejected the slash-command definitions (400 Invalid Form Body"),
    ],
)
async def test_refused_command_sync_is_one_line_and_exit_78(
    tmp_path: Path, discord_api: DiscordDouble, capsys: pytest.CaptureFixture[str], status: int, expected: str
) -> None:
    """A sync Discord refuses (403 wrong guild, 400 invalid payload) ends the start with one line and 78."""
    discord_api.fail_sync(status)
    code = await _run(live_settings(tmp_path, discord_api))
    assert code == 78
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]
    assert (
        str(discord_api.guild.id) in lines[0]
        if status == 403
        else "python -m mendbot.tools.smoke" in lines[0]
    )
    assert discord_api.identified == 0  # it never went on to the gateway


@pytest.mark.parametrize(
    ("close_code", "expected"),
    [
        (4004, "rejected DISCORD_TOKEN at the gateway"),
        (4010, "invalid shard"),
        (4011, "requires sharding"),
        (4012, "gateway API version"),
        (4013, "invalid intents"),
        (4014, "Message Content intent is not enabled"),
    ],
)
async def test_fatal_gateway_close_code_is_one_line_and_exit_78(
    tmp_path: Path,
    discord_api: DiscordDouble,
    capsys: pytest.CaptureFixture[str],
    close_code: int,
    expected: str,
) -> None:
    """A close code no reconnect can fix (4004, 4010–4014) ends the start with one line and 78."""
    discord_api.close_on_identify(close_code)
    code = await _run(live_settings(tmp_path, discord_api))
    assert code == 78
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert expected in lines[0] and lines[0].startswith("config error: ")
    assert discord_api.identified == 1  # no retry loop against a wall


async def test_unreachable_discord_at_start_is_retried_until_it_answers(
    tmp_path: Path, discord_api: DiscordDouble
) -> None:
    """Connection refused at login is retried with backoff; once Discord listens the bot gets ready."""
    await discord_api.refuse()
    bot = await _live_bot(live_settings(tmp_path, discord_api))
    backoff = RecordingBackoff()
    task = asyncio.create_task(start_on_discord(bot, discord_api.token, backoff=backoff))
    try:
        await backoff.wait_for(3)
        assert not task.done() and discord_api.requests == []
        await discord_api.accept()
        await asyncio.wait_for(bot.wait_until_ready(), timeout=30)
        assert bot.gateway_connected
        assert len(bot.extensions) == len(bot.extension_names)  # loaded once, not once per attempt
    finally:
        await _stop(bot, task)


async def test_unreachable_gateway_before_the_first_session_is_retried(
    tmp_path: Path, discord_api: DiscordDouble
) -> None:
    """A gateway failing its first connection (REST fine) is retried until it answers; the start goes on."""
    discord_api.refuse_gateway()
    bot = await _live_bot(live_settings(tmp_path, discord_api))
    task = asyncio.create_task(start_on_discord(bot, discord_api.token))
    try:
        await asyncio.wait_for(discord_api.gateway_asked.wait(), timeout=30)
        assert not task.done() and discord_api.identified == 0
        discord_api.refuse_gateway(False)
        await asyncio.wait_for(bot.wait_until_ready(), timeout=30)  # discord.py retries a shard every 5 s
        assert discord_api.identified == 1 and not task.done()
    finally:
        await _stop(bot, task)


async def test_close_while_the_gateway_is_unreachable_stops_the_start(
    tmp_path: Path, discord_api: DiscordDouble
) -> None:
    """Closing the bot while a shard waits to retry the gateway ends the start instead of hanging."""
    discord_api.refuse_gateway()
    bot = await _live_bot(live_settings(tmp_path, discord_api))
    task = asyncio.create_task(start_on_discord(bot, discord_api.token))
    try:
        await asyncio.wait_for(discord_api.gateway_asked.wait(), timeout=30)
        await bot.close()
        await asyncio.wait_for(task, timeout=15)  # the shard's 5 s retry wait, then nothing more
        assert task.exception() is None and discord_api.identified == 0
    finally:
        if not task.done():
            task.cancel()
        await bot.services.aclose()


def test_start_retries_wait_a_few_seconds_at_most_however_long_discord_is_away() -> None:
    """The start's retries double from about a second to at most 5 s, jittered: after an outage of any
    length the bot tries again within a few seconds of Discord answering (it waited up to 60 s)."""
    waits = list(itertools.islice(Backoff().delays(), 40))
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0
    assert max(waits) <= 5.0 and len(set(waits)) == len(waits)


async def test_sigterm_during_retries_stops_the_start(tmp_path: Path, discord_api: DiscordDouble) -> None:
    """Closing the bot while it waits to retry ends the start at once, without an error."""
    await discord_api.refuse()
    bot = await _live_bot(live_settings(tmp_path, discord_api))
    backoff = RecordingBackoff(initial=3600)
    task = asyncio.create_task(start_on_discord(bot, discord_api.token, backoff=backoff))
    try:
        await backoff.wait_for(1)  # the first attempt failed: it is waiting an hour
        await bot.close()
        await asyncio.wait_for(task, timeout=10)  # an hour's backoff would time this out
        assert task.done() and not task.cancelled() and task.exception() is None
        assert bot.is_closed()
    finally:
        await bot.services.aclose()


# -- as a process: `mendbot run` with discord.py pointed at the double --------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _config(tmp_path: Path, double: DiscordDouble, health_port: int | None = None) -> Path:
    health = f"{{enabled: true, port: {health_port}}}" if health_port else "{enabled: false}"
    path = tmp_path / "config.yaml"
    path.write_text(
        f"data_dir: {tmp_path / 'data'}\nrepo_dir: {tmp_path}\nhealth: {health}\n"
        "deploy: {watch_hand_edits: false}\n"
        f"discord:\n  dev_guild_id: {double.guild.id}\n"
        f"  dev_channel_ids: [{double.guild.channel('dev').id}]\n"
    )
    return path


async def _start_mendbot(double: DiscordDouble, config: Path, cwd: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "MENDBOT_CONFIG"}
    env.update(PYTHONPATH=str(REPO), DISCORD_TOKEN=double.token, MENDBOT_SUPERVISED="1")
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.harness.pointed",
        double.url,
        double.gateway_url,
        "--",
        "--config",
        str(config),
        "run",
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _ready_body(port: int) -> dict[str, Any]:
    """Poll /health/ready until it answers 200; its body."""
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/health/ready") as response:
                    if response.status == 200:
                        body: dict[str, Any] = await response.json()
                        return body
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)  # polling the endpoint, not timing the bot


async def test_mendbot_run_with_wrong_dev_guild_exits_78_with_one_line(
    tmp_path: Path, discord_api: DiscordDouble
) -> None:
    """`mendbot run` whose sync gets 403: exit 78, one line on stderr, the traceback in the JSON log."""
    discord_api.fail_sync(403)
    process = await _start_mendbot(discord_api, _config(tmp_path, discord_api), tmp_path)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    err = stderr.decode()
    assert process.returncode == 78, err
    failure = [line for line in err.splitlines() if "slash-command sync" in line]
    assert len(failure) == 1 and failure[0].startswith("config error: ")
    assert "Traceback" not in err
    events = [json.loads(line) for line in (tmp_path / "data/logs/mendbot.jsonl").read_text().splitlines()]
    (logged,) = [event for event in events if event["event"] == "start-up failed"]
    assert "Traceback" in logged["exception"] and "Forbidden: 403 Forbidden" in logged["exception"]


async def test_mendbot_run_waits_out_an_outage_then_serves_and_stops_on_sigterm(
    tmp_path: Path, discord_api: DiscordDouble
) -> None:
    """`mendbot run` with Discord down retries (one logged line each), gets ready, and SIGTERM exits 0."""
    await discord_api.refuse()
    port = _free_port()
    process = await _start_mendbot(discord_api, _config(tmp_path, discord_api, port), tmp_path)
    assert process.stderr is not None
    seen: list[str] = []
    try:
        while sum("Discord unreachable (logging in): retrying" in line for line in seen) < 2:
            line = await asyncio.wait_for(process.stderr.readline(), timeout=120)
            assert line, f"mendbot ended early: {seen}"
            seen.append(line.decode())
        await discord_api.accept()
        ready = await asyncio.wait_for(_ready_body(port), timeout=120)
        assert ready["discord_connected"] is True
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(process.communicate(), timeout=60)
    err = "".join(seen) + rest.decode()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    waits = [float(wait) for wait in re.findall(r"retrying in (\d+\.\d)s", err)]
    assert len(waits) >= 2 and 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0, waits  # doubling, jittered


# -- shards: one process running every shard of a count -----------------------------------------


@pytest.fixture
async def two_shard_bot(
    tmp_path: Path, discord_api: DiscordDouble
) -> AsyncIterator[tuple[MendBot, FakeGuild, FakeGuild]]:
    """A bot running shards 0 and 1 of 2, ready, in one guild owned by each shard (and the dev guild)."""
    first = discord_api.add_guild("shard zero", shard=0, shard_count=2)
    second = discord_api.add_guild("shard one", shard=1, shard_count=2)
    settings = live_settings(tmp_path, discord_api)
    settings.discord.shard_count = 2
    discord_api.max_concurrency = 2  # both shards may identify at once
    bot = await _live_bot(settings)
    task = asyncio.create_task(start_on_discord(bot, discord_api.token))
    try:
        await asyncio.wait_for(bot.wait_until_ready(), timeout=30)
        yield bot, first, second
    finally:
        await _stop(bot, task)


async def test_two_shards_connect_two_sessions_with_their_ids(
    two_shard_bot: tuple[MendBot, FakeGuild, FakeGuild], discord_api: DiscordDouble
) -> None:
    """shard_count 2 in one process identifies twice, as shard [0, 2] and [1, 2], and is connected on both."""
    bot, _, _ = two_shard_bot
    assert discord_api.recommended_shards == 1  # the configured count wins over Discord's
    assert sorted(discord_api.shards_identified) == [(0, 2), (1, 2)]
    assert bot.running_shard_ids == [0, 1] and bot.gateway_connected


async def test_each_guild_arrives_on_the_shard_that_owns_it(
    two_shard_bot: tuple[MendBot, FakeGuild, FakeGuild], discord_api: DiscordDouble
) -> None:
    """Each guild is sent only to its own shard's session, and the bot holds the guilds of both shards."""
    bot, first, second = two_shard_bot
    sent = {session.shard[0]: session.guild_ids for session in discord_api.sessions.values()}
    assert first.id in sent[0] and first.id not in sent[1]
    assert second.id in sent[1] and second.id not in sent[0]
    assert {guild.id for guild in bot.guilds} == {guild.id for guild in discord_api.guilds}
    assert bot.get_guild(second.id) is not None and bot.get_guild(second.id).shard_id == 1  # type: ignore[union-attr]


async def test_prefix_command_in_a_guild_of_shard_1_is_answered(
    two_shard_bot: tuple[MendBot, FakeGuild, FakeGuild], discord_api: DiscordDouble
) -> None:
    """`!roll 2d6` said in a guild that shard 1 owns arrives on shard 1 and gets its reply there."""
    _, _, second = two_shard_bot
    channel = second.channel("general")
    sent = await discord_api.send_message(channel, "!roll 2d6")
    assert discord_api.session_of(second).shard == (1, 2)
    reply = await asyncio.wait_for(discord_api.answer_to(sent), timeout=30)
    assert reply["channel_id"] == str(channel.id) and reply["content"].startswith("🎲 `2d6` →")


async def test_without_shard_settings_discord_recommends_the_count(
    tmp_path: Path, discord_api: DiscordDouble
) -> None:
    """With no shard_count the bot asks /gateway/bot and runs as many shards as Discord recommends."""
    discord_api.recommended_shards = discord_api.max_concurrency = 2
    bot = await _live_bot(live_settings(tmp_path, discord_api))
    task = asyncio.create_task(start_on_discord(bot, discord_api.token))
    try:
        await asyncio.wait_for(bot.wait_until_ready(), timeout=30)
        assert "GET /gateway/bot" in discord_api.paths
        assert sorted(discord_api.shards_identified) == [(0, 2), (1, 2)]
        assert bot.shard_count == 2 and bot.gateway_connected
    finally:
        await _stop(bot, task)


async def test_shards_identify_as_fast_as_discords_rate_limit_allows(
    tmp_path: Path, discord_api: DiscordDouble
) -> None:
    """Discord takes one IDENTIFY per 5 s in each bucket of shards (shard id % max_concurrency). With
    three shards and max_concurrency 2, shard 1 identifies beside shard 0, and shard 2 waits out shard
    0's 5 s (discord.py alone waits 5 s before each: 10 s for three)."""
    discord_api.max_concurrency = 2
    settings = live_settings(tmp_path, discord_api)
    settings.discord.shard_count = 3
    bot = await _live_bot(settings)
    task = asyncio.create_task(start_on_discord(bot, discord_api.token))
    try:
        await asyncio.wait_for(bot.wait_until_ready(), timeout=30)
        at = {session.shard[0]: session.identified_at for session in discord_api.sessions.values()}
        assert sorted(at) == [0, 1, 2]
        assert at[2] - at[0] >= 5.0  # the same bucket: never sooner, as Discord counts
        assert at[1] - at[0] < 5.0  # another bucket: no wait
    finally:
        await _stop(bot, task)


def test_a_shard_subset_with_sqlite_is_refused_with_exit_78(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mendbot run` with shard_ids a strict subset of shard_count ends at once: one line, exit 78."""
    config = tmp_path / "config.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\ndiscord: {{shard_count: 2, shard_ids: [1]}}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", "not.used")
    monkeypatch.setenv("MENDBOT_CONFIG", str(config))  # restored after the test (main() sets it)
    assert main(["--config", str(config), "run"]) == 78
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("config error: discord.shard_ids [1] runs only part of the 2 shards")
    assert "PostgreSQL" in lines[0] and "remove discord.shard_ids" in lines[0]
    assert not (tmp_path / "data").exists()  # refused before the database was opened


async def test_a_garbage_token_is_the_first_and_only_line(tmp_path: Path) -> None:
    """`mendbot run` with a token Discord refuses prints the one config error line and nothing before
    it (it came after a dozen start-up log lines), exits 78, and the log file still has those lines."""
    async with DiscordDouble() as double:
        config = live_config(double, tmp_path / "bot")
        bot = await LiveBot.start(double, config, tmp_path / "bot", env={"DISCORD_TOKEN": "garbage"},
                                  wait_ready=False)  # fmt: skip
        assert await asyncio.wait_for(bot.process.wait(), timeout=60) == 78
    printed = [line for line in bot.output().splitlines() if line.strip()]
    assert len(printed) == 1, printed
    assert printed[0].startswith("config error: Discord rejected DISCORD_TOKEN")
    assert any(event.get("event") == "prompt loaded" for event in bot.log_events())


async def test_a_good_start_prints_its_lines_once_ready(tmp_path: Path) -> None:
    """The start-up lines held back while a configuration error could still come are printed once the
    bot is on Discord, in order."""
    async with DiscordDouble() as double:
        config = live_config(double, tmp_path / "bot")
        async with await LiveBot.start(double, config, tmp_path / "bot") as bot:
            await bot.wait_ready()
            printed = bot.output()
    assert "prompt loaded" in printed and "ready" in printed
    assert printed.index("prompt loaded") < printed.index("health endpoint up")
