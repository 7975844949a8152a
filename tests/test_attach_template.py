"""A public discord.py starter bot someone else wrote (`../shared/realbots/python-discord-bot-template`: a
commands.Bot subclass loading its cogs from setup_hook, aiosqlite, hybrid commands, its own error handler,
`bot.run()` at module level), through the same loop as the shapes of tests/test_attach_loop.py: copied to
a temporary repository and left as it is but for what `mendbot adopt` writes (and the ids it asks for),
run with `mendbot attach`. A fault seeded in its `!ping` (as in every shape) fails it: recorded,
answered (its own error handler gives the error up), announced, fixed in its cogs/general.py, proven by
replaying its program, shipped, reloaded, rolled back; its own `!help`, which looks every cog up by its
name in lower case, still answers with mendbot's cogs loaded. Skipped, saying why, where the folder is
absent."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mendbot.trust.loopback_discord import DiscordDouble
from tests.harness.hosts import LiveHost, host_repo
from tests.harness.live_bot import PROJECT, merged
from tests.harness.model_double import ModelDouble
from tests.harness.repo import git
from tests.test_attach_loop import _ask, _loop, _script, _show

pytestmark = pytest.mark.cli

NAME = "python-discord-bot-template"
# ../shared beside the repository (CI's clone, the main checkout), or beside the worktrees' folder.
FOUND = [root / "shared" / "realbots" / NAME for root in (PROJECT.parent, PROJECT.parent.parent)]
TEMPLATE = next((path for path in FOUND if path.is_dir()), None)

SOURCE = 'description=f"The bot latency is {round(self.bot.latency * 1000)}ms.",'
# The fault seeded in the copy, as in every shape: the latency in whole seconds as a divisor (0 here).
BUG = 'description=f"The bot latency is {round(self.bot.latency * 1000) // int(self.bot.latency)}ms.",'
FIX = SOURCE


@pytest.mark.skipif(TEMPLATE is None, reason=f"no {NAME} in ../shared/realbots/ beside the repository")
async def test_the_public_template_goes_from_failure_to_rollback(tmp_path: Path) -> None:
    """The template, adopted and attached with no edit of its code, goes from a failing `!ping` to its
    fix shipped and reloaded as `cogs.general`, and back by the rollback; its own handlers stay."""
    assert TEMPLATE is not None
    repo = host_repo(tmp_path, "template", source=TEMPLATE)
    general = repo / "cogs" / "general.py"
    assert SOURCE in general.read_text()
    general.write_text(general.read_text().replace(SOURCE, BUG))
    git(repo, "commit", "-qam", "the latency in whole seconds")
    # What its README asks for: a .env (untracked) with its token and prefix.
    (repo / ".env").write_text("TOKEN=placeholder\nPREFIX=!\nINVITE_LINK=https://discord.invalid/invite\n")
    adopted = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).parent / "mendbot"), "adopt"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert adopted.returncode == 0, adopted.stderr
    config = yaml.safe_load((repo / "mendbot.yaml").read_text())
    assert config["bot"]["entry"] == ["python", "bot.py"] and config["bot"]["token_env"] == "TOKEN"
    assert config["bot"]["env"]["PREFIX"] == "!" and "database/database.db" in config["bot"]["data_files"]
    async with DiscordDouble() as discord_api, ModelDouble() as model:
        alice = int(discord_api.member("alice")["id"])
        # The one thing left: the dev server, its channel and who may ship (and the test's own settings).
        (repo / "mendbot.yaml").write_text(
            yaml.safe_dump(
                merged(
                    config,
                    {
                        "discord": {
                            "dev_guild_id": discord_api.guild.id,
                            "dev_channel_ids": [discord_api.guild.channel("dev").id],
                        },
                        "access": {"allowed_user_ids": [alice]},
                        "health": {"enabled": False},
                        "observe": {"announce_new_fingerprints": False},
                        "improve": {"max_attempts": 1, "autonomy": "off"},
                        "deploy": {"watch_window_s": 3600, "watch_hand_edits": False},
                    },
                ),
                sort_keys=False,
            )
        )
        model.script(*_script(repo, "cogs/general.py", BUG, FIX))
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url}
        async with await LiveHost.start(discord_api, repo, "TOKEN", env=env) as bot:
            try:
                general_channel = discord_api.guild.channel("general")
                assert "List of available commands" in await _ask(discord_api, general_channel, "!help")
                await _loop(
                    discord_api,
                    bot,
                    failing="!ping",
                    fixed=r"The bot latency is \d+ms",
                    own_reply="Something went wrong on my side (ZeroDivisionError)",
                    reloaded=r"✅ cogs\.general reloaded",
                )
            except BaseException:
                _show(discord_api, bot)
                raise
