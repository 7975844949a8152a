"""The repair loop on a bot that reads its token and its keys from files git does not keep (the almanac of
tests/fixtures/hosts/: a settings object built in main.py from `.env`, a TOML file and config.json),
attached with `mendbot attach` as users install it, through the real CLI and the model double up to the
proposal: its verify starts it by its own program and its replay proves the fix — both need those files
— and none of their secret values is in the agent's worktree, the proposal, #dev, mendbot's database or
its logs."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from mendbot.trust.loopback_discord import DiscordDouble
from mendbot.trust.loopback_discord_model import message_text
from tests.harness.hosts import LiveHost, host_repo, write_config
from tests.harness.model_double import ModelDouble
from tests.harness.repo import git
from tests.test_attach_loop import _ask, _says, _script, _show

pytestmark = pytest.mark.cli

SOURCE = '        await ctx.send(f"{greeting}, {ctx.author.display_name}!")\n'
# The fault seeded in the copy: the days left in a year of no days.
BUG = (
    '        await ctx.send(f"{greeting}, {ctx.author.display_name}! {365 // len(ctx.args[2:])} days left")\n'
)
FORECAST_KEY = "fk-live-7719-do-not-leak"
FORECAST_PASSWORD = "hunter2-live-7719"


def _everything_kept(repo: Path) -> str:
    """mendbot's database, its logs, and every file under its data directory (the worktrees among them)."""
    data = repo / ".mendbot"
    with contextlib.closing(sqlite3.connect(data / "mendbot.db")) as db:
        kept = "\n".join(db.iterdump())
    for path in sorted(data.rglob("*")):
        if path.is_file() and path.suffix not in (".db", ".db-wal", ".db-shm"):
            kept += f"\n== {path}\n" + path.read_text(errors="replace")
    return kept


async def test_a_fix_of_a_bot_that_reads_its_secrets_from_files_is_proven_and_leaks_none(
    tmp_path: Path,
) -> None:
    """`?today` fails on a seeded fault; "fix this" proposes the fix, proven by replaying the bot's own
    program (which reads `.env` and config.json); no secret value of those files is anywhere mendbot
    keeps or shows, nor in the agent's worktree, which never had the files."""
    repo = host_repo(tmp_path, "almanac")
    days = repo / "almanac" / "cogs" / "days.py"
    assert SOURCE in days.read_text()
    days.write_text(days.read_text().replace(SOURCE, BUG))
    git(repo, "commit", "-qam", "count the days")
    async with DiscordDouble() as discord_api, ModelDouble() as model:
        token = discord_api.token
        secrets = (token, FORECAST_KEY, FORECAST_PASSWORD)
        (repo / ".env").write_text(f"ALMANAC_TOKEN={token}\nPREFIX=?\n")
        forecast = {
            "url": f"https://almanac:{FORECAST_PASSWORD}@forecast.invalid/v1",
            "api_key": FORECAST_KEY,
        }
        (repo / "config.json").write_text(json.dumps({"forecast": forecast}))
        alice = int(discord_api.member("alice")["id"])
        write_config(
            repo,
            discord_api,
            ["python", "main.py"],
            access={"allowed_user_ids": [alice]},
            observe={"announce_new_fingerprints": False},
            improve={"max_attempts": 1},
            bot={
                "extensions": ["almanac.cogs.days"],
                "token_env": "ALMANAC_TOKEN",
                "files": [".env", "config.json"],
            },
        )
        model.script(*_script(repo, "almanac/cogs/days.py", BUG, SOURCE))
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url}
        async with await LiveHost.start(discord_api, repo, "ALMANAC_TOKEN", env=env) as bot:
            try:
                dev, general = discord_api.guild.channel("dev"), discord_api.guild.channel("general")
                for _ in range(5):
                    assert "Something went wrong on my side (ZeroDivisionError)" in await _ask(
                        discord_api, general, "?today"
                    )
                announcement = await discord_api.wait_for_message(_says(r"Incident #1"), channel=dev)
                await discord_api.mention(dev, "fix this", author="alice", reply_to=announcement)
                proposal = await discord_api.wait_for_message(
                    _says(r"Run #1 — .*fix ready for review \(proposal #1\)"), channel=dev, timeout=240
                )
                shown = message_text(proposal)
                assert "proven by replay" in shown and "unproven" not in shown, shown
                assert "✅ smoke load: your bot's own start" in shown, shown
                worktree = repo / ".mendbot" / "worktrees" / "run-1"
                assert not (worktree / ".env").exists() and not (worktree / "config.json").exists()
            except BaseException:
                _show(discord_api, bot)
                raise
        everything = _everything_kept(repo)
        everything += "\n".join(message_text(m) for m in discord_api.bot_messages())
        everything += bot.output() + git(repo, "log", "-p", "--all")
    for secret in secrets:
        assert secret not in everything
    assert FORECAST_KEY in (repo / "config.json").read_text()  # the live file as it was
