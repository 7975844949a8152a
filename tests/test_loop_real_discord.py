"""The whole self-improvement loop over the real discord.py HTTP client and gateway: one `mendbot run`
process (SQLite, the local forge) against the loopback Discord and the model double, in a copy of the
repository whose cogs/dice.py carries a seeded bug. Everything is asserted on what people in the guild
see: the messages in #general and #dev as they are after the bot's edits."""

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
from mendbot.trust.loopback_discord_model import message_text
from tests.harness.live_bot import LiveBot, live_config
from tests.harness.model_double import ModelDouble, Turn, text, tool_use
from tests.harness.repo import git
from tests.test_improve_e2e import DIAGNOSIS, PLAN, _json_turn
from tests.test_ship_e2e import BUG, CHECK, FIX, _seeded_copy

pytestmark = pytest.mark.cli


def _edit(data_dir: Path, old: str, new: str) -> Turn:
    path = data_dir.resolve() / "worktrees" / "run-1" / "cogs" / "dice.py"
    return tool_use("Edit", {"file_path": str(path), "old_string": old, "new_string": new})


def _says(pattern: str) -> Callable[[dict[str, Any]], bool]:
    regex = re.compile(pattern, re.S)

    def says(message: dict[str, Any]) -> bool:
        return regex.search(message_text(message)) is not None

    return says


def _after(message: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """The bot's answer to `message`: the first of its messages after it (ids encode the time)."""

    def answers(candidate: dict[str, Any]) -> bool:
        return int(candidate["id"]) > int(message["id"])

    return answers


async def _linked(bot: LiveBot, message: dict[str, Any], timeout: float = 30) -> None:
    """Wait until the bot has stored `message` as a proposal's message (its SQLite database)."""

    def linked() -> bool:
        with contextlib.closing(sqlite3.connect(bot.data_dir / "mendbot.db")) as db:
            query = "SELECT 1 FROM proposal_messages WHERE message_id = ?"
            return db.execute(query, (int(message["id"]),)).fetchone() is not None

    async def poll() -> None:
        while True:
            if await asyncio.to_thread(linked):
                return
            await asyncio.sleep(0.05)  # polling the bot's store, not timing the bot

    await asyncio.wait_for(poll(), timeout)


def _offers_reactions(announcement: dict[str, Any], bot_id: int) -> Callable[[dict[str, Any]], bool]:
    """The announcement with the ways to act offered as the bot's own 🔍 and 🛠 reactions."""

    def offers(message: dict[str, Any]) -> bool:
        reactions = message["reactions"]
        return message["id"] == announcement["id"] and all(
            bot_id in reactions.get(emoji, []) for emoji in ("🔍", "🛠")
        )

    return offers


async def test_failure_to_fix_to_ship_over_the_real_discord_client(tmp_path: Path) -> None:
    """A member's `!roll` fails → the incident is announced in #dev → alice replies `@mendbot fix this`
    → the run's progress message is edited until the proposal is posted → alice replies `ship it` →
    merged, the cog reloaded, the bot says it is live → the same `!roll` now answers."""
    repo = _seeded_copy(tmp_path)
    async with DiscordDouble() as discord_api, ModelDouble() as model:
        dev, general = discord_api.guild.channel("dev"), discord_api.guild.channel("general")
        alice = int(discord_api.member("alice")["id"])
        home = tmp_path / "bot"
        config = live_config(
            discord_api,
            home,
            repo_dir=repo,
            access={"allowed_user_ids": [alice]},
            observe={"announce_new_fingerprints": False},
            improve={"checks": [CHECK], "max_attempts": 1},
            deploy={"watch_window_s": 3600},
        )
        model.script(
            _json_turn(DIAGNOSIS), _json_turn(PLAN), _edit(home / "data", BUG, FIX), text("Guarded it.")
        )
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url}
        async with await LiveBot.start(discord_api, config, home, code=repo, env=env) as bot:
            try:
                for _ in range(5):
                    roll = await discord_api.send_message(general, "!roll 2d6", author="bob")
                    failed = await discord_api.wait_for_message(_after(roll), channel=general)
                    assert "ZeroDivisionError" in message_text(failed)
                announcement = await discord_api.wait_for_message(_says(r"Incident #1"), channel=dev)
                assert "the `roll` command" in message_text(announcement)
                bot_id = int(discord_api.user["id"])
                await discord_api.wait_for_message(_offers_reactions(announcement, bot_id), channel=dev)

                request = await discord_api.mention(dev, "fix this", author="alice", reply_to=announcement)
                await discord_api.wait_for_message(_says(r"run #1 will fix incident #1"), channel=dev)
                proposal = await discord_api.wait_for_message(
                    _says(r"Run #1 — fix ready for review \(proposal #1\)"), channel=dev, timeout=120
                )
                progress = await discord_api.wait_for_message(
                    _says(r"^🤖 \*\*Run #1\*\*.*proposal ready"), channel=dev
                )
                assert progress["edits"] >= 1 and int(progress["id"]) > int(request["id"])

                # The bot links its proposal message to the proposal just after Discord answers the post;
                # a reply faster than that is not seen as an approval. People take longer: wait for it.
                await _linked(bot, proposal)
                ship_it = await discord_api.reply(proposal, "ship it", author="alice")
                merged = await discord_api.wait_for_message(
                    _says(r"Merged `[0-9a-f]{7}` and deployed"), channel=dev, timeout=120
                )
                assert merged["message_reference"]["message_id"] == ship_it["id"]  # the answer to alice
                await discord_api.wait_for_message(_says(r"✅ cogs\.dice"), channel=dev)

                roll = await discord_api.send_message(general, "!roll 2d6", author="bob")
                answer = await discord_api.wait_for_message(_after(roll), channel=general)
                assert message_text(answer).startswith("🎲 `2d6` →"), message_text(answer)
            except BaseException:
                print(bot.output(80))
                print(await bot.dump_stacks())
                print("\n".join(discord_api.paths[-60:]))
                raise
    assert discord_api.unknown_routes == []
    dev_said = [message_text(m) for m in discord_api.bot_messages(dev)]
    assert not [text_ for text_ in dev_said if "went wrong" in text_ or text_.startswith("❌")], dev_said
    assert FIX in (repo / "cogs" / "dice.py").read_text()
    assert git(repo, "status", "--porcelain") == ""
