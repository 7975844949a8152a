"""`mendbot attach` checks the bot's committed HEAD once it has connected: the almanac (tests/fixtures/hosts/)
run as users install mendbot, against the loopback Discord. What its start in the sandbox finds is said
in one line on the console and in #dev — that it starts, or what keeps it from starting there and what
to change in mendbot.yaml — once per commit: a second start on the same commit says nothing again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from mendbot.trust.loopback_discord import DiscordDouble
from mendbot.trust.loopback_discord_model import message_text
from tests.harness.hosts import LiveHost, host_repo, write_config
from tests.harness.repo import git

BOT = {"token_env": "ALMANAC_TOKEN", "extensions": ["almanac.cogs.days"]}


def _almanac(tmp_path: Path, double: DiscordDouble, files: list[str]) -> Path:
    repo = host_repo(tmp_path, "almanac")
    (repo / ".env").write_text(f"ALMANAC_TOKEN={double.token}\nPREFIX=?\n")  # it reads its token there
    forecast = {"url": "https://forecast.invalid/v1", "api_key": "fk-live-0042"}
    (repo / "config.json").write_text(json.dumps({"forecast": forecast}))
    write_config(
        repo,
        double,
        ["python", "main.py"],
        improve={"check_base_at_start": True},
        bot={**BOT, "files": files},
    )
    return repo


async def _until(condition: Callable[[], bool], what: str, bot: LiveHost, timeout: float = 120) -> None:
    async def poll() -> None:
        while not condition():
            if not bot.running:
                raise bot.failure(f"ended before {what}")
            await asyncio.sleep(0.05)  # polling a file the bot writes, not timing the bot

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise bot.failure(f"not {what} within {timeout}s") from None


def _said(double: DiscordDouble, words: str) -> list[str]:
    dev = double.guild.channel("dev")
    return [message_text(m) for m in double.bot_messages(dev) if words in message_text(m)]


async def test_attach_says_once_per_commit_that_the_bot_starts_in_the_sandbox(tmp_path: Path) -> None:
    """The first start on a commit checks it and says so on the console and in #dev; a second start on
    the same commit finds it checked and says nothing again."""
    async with DiscordDouble() as double:
        repo = _almanac(tmp_path, double, [".env", "config.json"])
        head = git(repo, "rev-parse", "HEAD")[:7]
        line = f"✅ your bot starts in the sandbox on {head} with every extension loaded"
        async with await LiveHost.start(double, repo, "ALMANAC_TOKEN") as bot:
            dev = double.guild.channel("dev")
            await double.wait_for_message(lambda m: message_text(m) == line, 120, channel=dev)
            await _until(lambda: f"mendbot: {line}" in bot.output(), "said on the console", bot)
        log = repo / ".mendbot" / "logs" / "mendbot.jsonl"
        async with await LiveHost.start(double, repo, "ALMANAC_TOKEN", home=tmp_path / "again") as bot:
            await _until(lambda: "the committed HEAD was checked before" in log.read_text(), "checked", bot)
            assert line not in bot.output()
        assert _said(double, "starts in the sandbox") == [line]


async def test_attach_says_what_keeps_the_bot_from_starting_in_the_sandbox(tmp_path: Path) -> None:
    """Live, the almanac reads its config.json; mendbot.yaml does not name it, so the sandbox has none and
    the bot cannot start there: one line says so and what to change, while the bot runs on."""
    async with DiscordDouble() as double:
        repo = _almanac(tmp_path, double, [".env"])
        async with await LiveHost.start(double, repo, "ALMANAC_TOKEN") as bot:
            dev = double.guild.channel("dev")
            said = await double.wait_for_message(lambda m: message_text(m).startswith("❌"), 120, channel=dev)
            assert message_text(said) == (
                "❌ your bot did not start in the sandbox: FileNotFoundError: [Errno 2] No such file or "
                "directory: 'config.json' — name `config.json` in mendbot.yaml's bot.files if git does not "
                "keep it"
            )
            await _until(lambda: f"mendbot: {message_text(said)}" in bot.output(), "said on the console", bot)
            general = double.guild.channel("general")
            asked = await double.send_message(general, "?today", author="bob")
            answer = await double.wait_for_message(lambda m: int(m["id"]) > int(asked["id"]), channel=general)
            assert message_text(answer) == "Fair winds, bob!"
