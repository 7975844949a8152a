"""The proof of a fix to a bot mendbot is attached to, over the data it keeps: the coffee club's bot of
tests/fixtures/hosts/beans (a SQLite file of members' beans, a JSON file of the cups they brewed), attached
with `mendbot attach` as users run it, through the real CLI, the sandbox and the model double up to the
proposal. `!cups` trips on a stash stored as "250.5" grams. Each side of the replay starts from a copy of
the bot's files as they are on the live bot and what it left is compared: a fix that deletes the stored
row is a data change, never proven; one that only changes how new stashes are saved still fails on the
stored one; the one that reads the stored row correctly is proven."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mendbot.trust.loopback_discord import DiscordDouble
from mendbot.trust.loopback_discord_model import FakeChannel, message_text
from tests.harness.hosts import LiveHost, host_repo, write_config
from tests.harness.model_double import ModelDouble
from tests.test_attach_loop import _after, _says, _script, _show

pytestmark = pytest.mark.cli

COFFEE = "cogs/coffee.py"
READS_GRAMS = "    return int(grams) // GRAMS_PER_CUP\n"
SAVES_GRAMS = "(ctx.author.id, grams))\n"
COUNTS_CUPS = '        made = brewed().get(str(ctx.author.id), {}).get("cups", 0)\n'
CHANGES = {
    "deletes the stored row": (
        COUNTS_CUPS,
        "        if not row[0].isdigit():  # a stash nobody can brew from\n"
        '            db.execute("DELETE FROM stash WHERE member = ?", (ctx.author.id,))\n'
        "            db.commit()\n"
        '            await ctx.send("☕ no beans yet: tell me with `!beans <grams>`")\n'
        "            return\n" + COUNTS_CUPS,
    ),
    "fixes only how new rows are saved": (
        SAVES_GRAMS,
        "(ctx.author.id, str(round(float(grams)))))\n",
    ),
    "reads the stored row": (READS_GRAMS, "    return int(float(grams)) // GRAMS_PER_CUP\n"),
}


async def _say(double: DiscordDouble, channel: FakeChannel, who: str, words: str) -> str:
    said = await double.send_message(channel, words, author=who)
    return message_text(await double.wait_for_message(_after(said), channel=channel, timeout=30))


def _proof(repo: Path) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(repo / ".mendbot" / "mendbot.db")) as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM proofs WHERE stage = 'verify' ORDER BY id DESC LIMIT 1").fetchone()
    return {**dict(row), "items": json.loads(row["items"])}


async def _proposed(tmp_path: Path, change: str) -> tuple[str, dict[str, Any], int]:
    """Members keep beans and brew cups on the live bot, then `!cups` fails on alice's stash of 250.5 g; "fix
    this", and the scripted agent makes `change`. What the proposal says, the stored proof, alice's id."""
    repo = host_repo(tmp_path, "beans")
    old, new = CHANGES[change]
    async with DiscordDouble() as discord_api, ModelDouble() as model:
        alice = int(discord_api.member("alice")["id"])
        write_config(
            repo,
            discord_api,
            ["python", "bot.py"],
            access={"allowed_user_ids": [alice]},
            observe={"announce_new_fingerprints": False},
            improve={"max_attempts": 1},
            deploy={"require_proof": "off"},  # proposed whatever the proof says: the test reads it
            bot={
                "bot_class": "bot:BeanBot",
                "extensions": ["cogs.coffee"],
                "token_env": "BEANS_TOKEN",
                "data_files": ["data/beans.db", "data/brews.json"],
            },
        )
        model.script(*_script(repo, COFFEE, old, new))
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url}
        async with await LiveHost.start(discord_api, repo, "BEANS_TOKEN", env=env) as bot:
            try:
                dev, general = discord_api.guild.channel("dev"), discord_api.guild.channel("general")
                assert "250 g" in await _say(discord_api, general, "alice", "!beans 250")
                assert "16 cups left" in await _say(discord_api, general, "alice", "!cups")
                assert "cup 1 for" in await _say(discord_api, general, "alice", "!brew")
                assert "15 cups left" in await _say(discord_api, general, "alice", "!cups")
                assert "250.5 g" in await _say(discord_api, general, "alice", "!beans 250.5")
                for _ in range(3):
                    answer = await _say(discord_api, general, "alice", "!cups")
                    assert "Something went wrong on my side (ValueError)" in answer
                announcement = await discord_api.wait_for_message(_says(r"Incident #1"), channel=dev)
                await discord_api.mention(dev, "fix this", author="alice", reply_to=announcement)
                proposal = await discord_api.wait_for_message(
                    _says(r"Run #1 — .*fix ready for review \(proposal #1\)"), channel=dev, timeout=300
                )
            except BaseException:
                _show(discord_api, bot)
                raise
    return message_text(proposal), _proof(repo), alice


def _table(proof: dict[str, Any]) -> str:
    return json.dumps(proof, indent=1, ensure_ascii=False)


async def test_a_fix_that_deletes_the_stored_row_it_trips_on_is_a_data_change(tmp_path: Path) -> None:
    """`!cups` deletes a stash it cannot read and answers "no beans": the failing call is answered, but
    the branch deleted the row the base left as it was — a data change, shown in the proposal, and the
    fix is not proven."""
    shown, proof, alice = await _proposed(tmp_path, "deletes the stored row")
    assert proof["verdict"] == "unproven", _table(proof)
    (data,) = [item for item in proof["items"] if item["role"] == "data"]
    assert data["verdict"] == "changes_data"
    assert f"a data change: the branch deletes data/beans.db stash/{alice}" in data["note"], data
    assert "data/brews.json" not in data["note"]  # both sides brewed alike: a value changed, not its shape
    assert "proven by replay" not in shown and "**unproven**" in shown and "data change" in shown, shown


async def test_a_fix_of_how_new_rows_are_saved_still_fails_on_the_stored_row(tmp_path: Path) -> None:
    """`!beans` now saves whole grams, but alice's stash stored as "250.5" is still there on the copy of
    the live bot's data: `!cups` still fails on the branch, and the fix is not proven."""
    shown, proof, _ = await _proposed(tmp_path, "fixes only how new rows are saved")
    assert proof["verdict"] == "disproven", _table(proof)
    assert "`!cups`: still fails as recorded: ValueError" in proof["reason"], _table(proof)
    assert not [item for item in proof["items"] if item["verdict"] == "changes_data"]
    assert "proven by replay" not in shown and "**unproven**" in shown, shown


async def test_a_fix_that_reads_the_stored_row_correctly_is_proven(tmp_path: Path) -> None:
    """`!cups` reads "250.5" as the 250 grams it is: the recorded failure fails on the base and is answered
    on the branch, from the same copy of the live bot's files, which both sides leave alike."""
    shown, proof, _ = await _proposed(tmp_path, "reads the stored row")
    assert proof["verdict"] == "proven", _table(proof)
    assert not [item for item in proof["items"] if item["verdict"] in ("fails", "changes_data")]
    assert any(
        item["verdict"] == "proves" and re.search(r"16 cups left|15 cups left", item["branch"]["text"])
        for item in proof["items"]
        if item["kind"] == "replay"
    ), _table(proof)
    assert "proven by replay" in shown and "unproven" not in shown, shown
