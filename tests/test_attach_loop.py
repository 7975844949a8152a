"""The whole repair loop on bots someone else wrote (tests/fixtures/hosts/), each a real process running its
own program with mendbot attached, against the loopback Discord and the model double: a fault seeded in
its code is recorded → announced in #dev → "fix this" → the real CLI → its checks and the replay of its
program → "ship it" → its extension reloaded (or the bot restarted) → the call works → rolled back, and
its own handlers answer as before. Each shape goes through the loop once, alternating the way in
(`mendbot attach` or the one line in its setup_hook); tests/test_attach_ways.py takes the other way."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mendbot.trust.loopback_discord import DiscordDouble
from mendbot.trust.loopback_discord_model import FakeChannel, message_text
from tests.harness.hosts import LiveHost, host_repo, write_config
from tests.harness.model_double import ModelDouble, Turn, text, tool_use
from tests.harness.repo import git
from tests.test_improve_e2e import _json_turn

pytestmark = pytest.mark.cli

ONE_LINE = '        await self.load_extension("mendbot")\n'  # what a developer adds to the bot's setup_hook


async def _linked(database: Path, message: dict[str, Any], timeout: float = 30) -> None:
    """Until the bot has stored `message` as its proposal's message."""

    def linked() -> bool:
        with contextlib.closing(sqlite3.connect(database)) as db:
            query = "SELECT 1 FROM proposal_messages WHERE message_id = ?"
            return db.execute(query, (int(message["id"]),)).fetchone() is not None

    async def poll() -> None:
        while True:
            if await asyncio.to_thread(linked):
                return
            await asyncio.sleep(0.05)  # polling the bot's store, not timing the bot

    await asyncio.wait_for(poll(), timeout)


def _says(pattern: str) -> Callable[[dict[str, Any]], bool]:
    regex = re.compile(pattern, re.S)
    return lambda message: regex.search(message_text(message)) is not None


def _after(message: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    return lambda candidate: int(candidate["id"]) > int(message["id"])


async def _ask(double: DiscordDouble, channel: FakeChannel, words: str) -> str:
    """A member's message (or `/command option=value`) and the bot's first answer to it."""
    if words.startswith("/"):
        parts = words[1:].split()
        name = " ".join(part for part in parts if "=" not in part)  # `/status summary`: a subcommand
        values = {key: int(value) for key, value in (part.split("=") for part in parts if "=" in part)}
        interaction = await double.slash(channel, name, author="bob", **values)
        return message_text(await double.response_to(interaction, timeout=30))
    said = await double.send_message(channel, words, author="bob")
    return message_text(await double.wait_for_message(_after(said), channel=channel))


async def _back(double: DiscordDouble, channel: FakeChannel, words: str, timeout: float = 90) -> str:
    """The answer of the bot back from a restart: asked again while it drains, or is not there yet."""

    async def ask() -> str:
        while True:
            try:
                said = await double.send_message(channel, words, author="bob")
                answer = await double.wait_for_message(_after(said), channel=channel, timeout=5)
            except (LookupError, AssertionError, TimeoutError):  # between the two processes: nobody there
                await asyncio.sleep(0.2)
                continue
            if "restarting" not in message_text(answer):
                return message_text(answer)
            await asyncio.sleep(0.5)  # the old process drains: ask the new one

    return await asyncio.wait_for(ask(), timeout)


def _script(repo: Path, file: str, bug: str, fix: str) -> list[Turn]:
    diagnosis = {
        "root_cause": "divides by zero",
        "files": [file],
        "confidence": "high",
        "proposed_fix": "guard",
    }
    plan = {
        "files": [file],
        "changes": [{"file": file, "change": "never divide by zero"}],
        "risk": "low",
        "tests": [],
        "rollback": "revert the merge",
    }
    path = repo / ".mendbot" / "worktrees" / "run-1" / file
    edit = tool_use("Edit", {"file_path": str(path), "old_string": bug, "new_string": fix})
    return [_json_turn(diagnosis), _json_turn(plan), edit, text("Guarded it.")]


async def _loop(
    double: DiscordDouble,
    bot: LiveHost,
    *,
    failing: str,
    fixed: str,
    own_reply: str,
    reloaded: str,
    restarts: bool = False,
) -> None:
    """The loop from a failing call to its rollback, asserted on what people in the guild see; with
    `restarts`, the fix (and its rollback) takes the bot's restart rather than a reload."""
    dev, general = double.guild.channel("dev"), double.guild.channel("general")
    for _ in range(5):
        assert own_reply in await _ask(double, general, failing)
    announcement = await double.wait_for_message(_says(r"Incident #1"), channel=dev)
    await double.mention(dev, "fix this", author="alice", reply_to=announcement)
    proposal = await double.wait_for_message(
        _says(r"Run #1 — .*fix ready for review \(proposal #1\)"), channel=dev, timeout=180
    )
    # Proven by replaying its own program: the recorded call failed on the base and answers on the fix.
    shown = message_text(proposal)
    assert "proven by replay" in shown and "unproven" not in shown, shown
    await _linked(bot.repo / ".mendbot" / "mendbot.db", proposal)  # people take longer than the bot
    ship_it = await double.reply(proposal, "ship it", author="alice")
    merged = await double.wait_for_message(
        _says(r"Merged `[0-9a-f]{7}` and deployed"), channel=dev, timeout=99
    )
    assert merged["message_reference"]["message_id"] == ship_it["id"]
    await double.wait_for_message(_says(reloaded), channel=dev, timeout=60)
    ask = _back if restarts else _ask
    assert re.search(fixed, await ask(double, general, failing))
    interaction = await double.slash(dev, "rollback", author="alice", run_id=1, now=True)
    await double.response_to(interaction, timeout=120)
    await double.wait_for_message(_says(r"Rolled back run #1"), channel=dev, timeout=120)
    assert own_reply in await ask(double, general, failing)  # the old code, and its own handler, again


async def test_shelf_attached_with_no_code_goes_from_failure_to_rollback(tmp_path: Path) -> None:
    """A Bot subclass loading a cogs package and opening its own aiosqlite database, run with `mendbot
    attach`: `!stock` on an empty shelf divides by zero, answered with mendbot's apology (the bot has no error
    reply of its own), fixed in cogs/books.py, reloaded as `cogs.books`, and rolled back."""
    repo = host_repo(tmp_path, "shelf")
    bug = "    return 100 * copies // total\n"
    fix = "    return 100 * copies // total if total else 0\n"
    async with DiscordDouble() as discord_api, ModelDouble() as model:
        alice = int(discord_api.member("alice")["id"])
        write_config(
            repo,
            discord_api,
            ["python", "bot.py"],
            access={"allowed_user_ids": [alice]},
            observe={"announce_new_fingerprints": False},
            improve={"max_attempts": 1},
            deploy={"watch_window_s": 3600},
            bot={
                "bot_class": "bot:ShelfBot",
                "extensions": ["cogs.books"],
                "token_env": "SHELF_TOKEN",
                "data_files": ["data/shelf.db"],
            },
        )
        model.script(*_script(repo, "cogs/books.py", bug, fix))
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url}
        async with await LiveHost.start(discord_api, repo, "SHELF_TOKEN", env=env) as bot:
            try:
                await _loop(
                    discord_api,
                    bot,
                    failing="!stock dune",
                    fixed=r"dune: 0 copies, 0% of the shelf",
                    own_reply="Something went wrong on my side (ZeroDivisionError)",
                    reloaded=r"✅ cogs\.books reloaded",
                )
            except BaseException:
                _show(discord_api, bot)
                raise
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""


def _show(double: DiscordDouble, bot: LiveHost) -> None:
    """What #dev shows and the end of mendbot's log, for a failure's report."""
    print("\n".join(message_text(m)[:600] for m in double.bot_messages(double.guild.channel("dev"))))
    log = bot.repo / ".mendbot" / "logs" / "mendbot.jsonl"
    if log.exists():
        print("\n".join(line[:600] for line in log.read_text().splitlines()[-40:]))
    print(bot.output(40))


def _with_the_line(path: Path, after: str, line: str) -> None:
    """The one line a developer adds to load mendbot, put in the bot's code and committed."""
    source = path.read_text()
    assert after in source
    path.write_text(source.replace(after, after + line, 1))
    git(path.parent if (path.parent / ".git").exists() else path.parents[2], "commit", "-qam", "load mendbot")


async def test_counter_with_the_one_line_goes_from_failure_to_rollback(tmp_path: Path) -> None:
    """An AutoShardedBot with its own Context, on_message, process_commands and on_command_error, with
    `await self.load_extension("mendbot")` in its setup_hook, run as `python index.py`: `+mean` of
    nothing is answered by its own error handler (the proof reads the failure from what was raised),
    fixed in features/tally.py, reloaded as `features.tally`, and rolled back."""
    repo = host_repo(tmp_path, "counter")
    token = "COUNTER_TOKEN"
    _with_the_line(
        repo / "index.py",
        "    async def setup_hook(self) -> None:\n",
        ONE_LINE,
    )
    bug = "    return round(sum(values) / len(values), 2)\n"
    fix = "    return round(sum(values) / len(values), 2) if values else 0.0\n"
    async with DiscordDouble() as discord_api, ModelDouble() as model:
        alice = int(discord_api.member("alice")["id"])
        write_config(
            repo,
            discord_api,
            ["python", "index.py"],
            access={"allowed_user_ids": [alice]},
            observe={"announce_new_fingerprints": False},
            improve={"max_attempts": 1},
            deploy={"watch_window_s": 3600},
            bot={
                "bot_class": "index:CounterBot",
                "extensions": ["features.tally"],
                "token_env": token,
            },
        )
        model.script(*_script(repo, "features/tally.py", bug, fix))
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url}
        async with await LiveHost.start(
            discord_api, repo, "COUNTER_TOKEN", program=["index.py"], env=env
        ) as bot:
            try:
                general = discord_api.guild.channel("general")
                assert await _ask(discord_api, general, "+count apples 3") == "apples: 3 in 1"  # its Context
                await _loop(
                    discord_api,
                    bot,
                    failing="+mean pears",
                    fixed=r"mean of pears: 0\.0",
                    own_reply="🧮 that did not add up (ZeroDivisionError)",
                    reloaded=r"✅ features\.tally reloaded",
                )
            except BaseException:
                _show(discord_api, bot)
                raise


async def test_single_file_bot_attached_with_no_code_restarts_for_its_fix(tmp_path: Path) -> None:
    """A whole bot in main.py (`@bot.command`, `@bot.tree.command`, `bot.run()` at module level) run with
    `mendbot attach`: `$tip 30 0` fails, the fix in main.py cannot be reloaded, so the bot drains and
    starts again (its program re-run), and the rollback restarts it once more."""
    repo = host_repo(tmp_path, "single")
    bug = "    return round(bill * 1.15) // people\n"
    fix = "    return round(bill * 1.15) // max(people, 1)\n"
    async with DiscordDouble() as discord_api, ModelDouble() as model:
        alice = int(discord_api.member("alice")["id"])
        write_config(
            repo,
            discord_api,
            ["python", "main.py"],
            access={"allowed_user_ids": [alice]},
            observe={"announce_new_fingerprints": False},
            improve={"max_attempts": 1},
            deploy={"watch_window_s": 3600},
        )
        model.script(*_script(repo, "main.py", bug, fix))
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url}
        async with await LiveHost.start(discord_api, repo, "DISCORD_TOKEN", env=env) as bot:
            try:
                general = discord_api.guild.channel("general")
                assert await _ask(discord_api, general, "/split bill=20 people=2") == "each pays 11"
                await _loop(
                    discord_api,
                    bot,
                    failing="$tip 30 0",
                    fixed=r"each pays 34",
                    own_reply="Something went wrong on my side (ZeroDivisionError)",
                    reloaded=r"restarting \(main\.py changed\)",
                    restarts=True,
                )
            except BaseException:
                _show(discord_api, bot)
                raise


async def test_packaged_bot_with_the_one_line_goes_from_failure_to_rollback(tmp_path: Path) -> None:
    """A bot whose extensions live in src/quiz/extensions/, run as `python -m quiz` with the one line in
    its setup_hook: `/score rounds:0` fails, fixed in the extension, reloaded as
    `quiz.extensions.trivia`, and rolled back."""
    repo = host_repo(tmp_path, "quiz")
    _with_the_line(
        repo / "src" / "quiz" / "client.py",
        "    async def setup_hook(self) -> None:\n",
        ONE_LINE,
    )
    bug = "{sum(self.points) // rounds} points per round"
    fix = "{sum(self.points) // max(rounds, 1)} points per round"
    async with DiscordDouble() as discord_api, ModelDouble() as model:
        alice = int(discord_api.member("alice")["id"])
        write_config(
            repo,
            discord_api,
            ["python", "-m", "quiz"],
            access={"allowed_user_ids": [alice]},
            observe={"announce_new_fingerprints": False},
            improve={"max_attempts": 1},
            deploy={"watch_window_s": 3600},
            bot={
                "bot_class": "quiz.client:QuizBot",
                "extensions": ["quiz.extensions.trivia"],
                "path": ["src"],
                "token_env": "QUIZ_TOKEN",
            },
        )
        model.script(*_script(repo, "src/quiz/extensions/trivia.py", bug, fix))
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url, "PYTHONPATH": "src"}
        program = ["-m", "quiz"]
        async with await LiveHost.start(discord_api, repo, "QUIZ_TOKEN", program=program, env=env) as bot:
            try:
                await _loop(
                    discord_api,
                    bot,
                    failing="/score rounds=0",
                    fixed=r"5 points per round",
                    own_reply="Something went wrong on my side (ZeroDivisionError)",
                    reloaded=r"✅ quiz\.extensions\.trivia reloaded",
                )
            except BaseException:
                _show(discord_api, bot)
                raise
    # Rolled back: the extension's code is the old code again, committed, nothing left over.
    assert bug in (repo / "src" / "quiz" / "extensions" / "trivia.py").read_text()
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
