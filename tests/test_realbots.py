"""The whole loop on real public discord.py bots nobody here wrote (`../shared/realbots/`, each unedited):
copied into a repository of its own, adopted with `mendbot adopt` as mendbot is installed (the wheel), the
rest of mendbot.yaml written as a developer would, run with `mendbot attach` (or the one line in its
setup_hook) against the loopback Discord, the real CLI and the model double. A fault seeded in one of its
commands is recorded, announced, fixed on "fix this", proven by replaying its program, shipped, reloaded
or restarted, and rolled back; its own commands answer as before. Skipped, saying why, where the folder
is absent."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from mendbot.trust.loopback_discord import DiscordDouble
from tests.harness.hosts import LiveHost
from tests.harness.model_double import ModelDouble
from tests.harness.realbots import adopt, needs_realbot, realbot_repo, the_rest
from tests.harness.repo import git
from tests.harness.wheel import installed_wheel
from tests.test_attach_loop import _ask, _loop, _script, _show

pytestmark = pytest.mark.cli

MODEL_ENV = {"ANTHROPIC_API_KEY": "test-key"}

EXAMPLES = "rapptz-discordpy-examples"
ADD = "    await ctx.send(left + right)\n"
# The fault seeded in discord.py's own basic example: the sum shared among the members mentioned.
ADD_BUG = "    await ctx.send(left + right // len(ctx.message.mentions))\n"


@needs_realbot(EXAMPLES)
async def test_the_discordpy_basic_example_with_random_commands_goes_from_failure_to_rollback(
    tmp_path: Path,
) -> None:
    """discord.py's basic example (a `commands.Bot` built in one file, a literal token, `bot.run()` at
    the end), its random `?roll` and `?choose` used before the fault: `?add 2 3` fails, the fix in the
    program's own file restarts it, the proof holds although the random commands answer otherwise on
    every run, and the rollback restarts it again."""
    repo = realbot_repo(tmp_path, EXAMPLES, only=["basic_bot.py", "LICENSE"])
    program = repo / "basic_bot.py"
    assert ADD in program.read_text()
    program.write_text(program.read_text().replace(ADD, ADD_BUG))
    git(repo, "commit", "-qam", "share the sum among those mentioned")
    config = adopt(repo)
    assert config["bot"]["entry"] == ["python", "basic_bot.py"]
    async with DiscordDouble() as discord_api, ModelDouble() as model:
        the_rest(repo, config, discord_api)
        model.script(*_script(repo, "basic_bot.py", ADD_BUG, ADD))
        env = {**MODEL_ENV, "ANTHROPIC_BASE_URL": model.base_url}
        async with await LiveHost.start(discord_api, repo, config["bot"]["token_env"], env=env) as bot:
            try:
                general = discord_api.guild.channel("general")
                for _ in range(3):
                    assert re.fullmatch(r"\d, \d", await _ask(discord_api, general, "?roll 2d6"))
                    chosen = await _ask(discord_api, general, "?choose tea coffee juice")
                    assert chosen in ("tea", "coffee", "juice")
                await _loop(
                    discord_api,
                    bot,
                    failing="?add 2 3",
                    fixed=r"^5$",
                    own_reply="Something went wrong on my side (ZeroDivisionError)",
                    reloaded=r"restarting \(basic_bot\.py changed\)",
                    restarts=True,
                )
            except BaseException:
                _show(discord_api, bot)
                raise


TEMPLATE = "python-discord-bot-template"
CHANNELS = 'name="Text/Voice Channels", value=f"{len(context.guild.channels)}"'
# The fault seeded in the template: text channels per voice channel, and the guild has no voice channel.
CHANNELS_BUG = (
    'name="Text/Voice Channels", '
    'value=f"{len(context.guild.text_channels) // len(context.guild.voice_channels)}"'
)
ONE_LINE = '        await self.load_extension("mendbot")\n'  # what its developer adds to setup_hook


@needs_realbot(TEMPLATE)
async def test_the_public_template_with_the_one_line_goes_from_failure_to_rollback(tmp_path: Path) -> None:
    """The public template with `await self.load_extension("mendbot")` added after its own cogs load,
    run as `python bot.py` (not through `mendbot attach`), its random `!8ball` asked before the fault:
    `!serverinfo` fails, answered by its own error handler, the fix in cogs/general.py is proven by
    replaying its program and reloaded as `cogs.general`, and rolled back; its `!help` still lists its
    own cogs."""
    repo = realbot_repo(tmp_path, TEMPLATE)
    general = repo / "cogs" / "general.py"
    assert CHANNELS in general.read_text()
    general.write_text(general.read_text().replace(CHANNELS, CHANNELS_BUG))
    launcher = repo / "bot.py"
    own_cogs = "        await self.load_cogs()\n"
    assert own_cogs in launcher.read_text()
    launcher.write_text(launcher.read_text().replace(own_cogs, own_cogs + ONE_LINE, 1))
    git(repo, "commit", "-qam", "text channels per voice channel; mendbot's one line")
    # What its README asks for: a .env (untracked) with its token and prefix.
    (repo / ".env").write_text("TOKEN=placeholder\nPREFIX=!\nINVITE_LINK=https://discord.invalid/invite\n")
    config = adopt(repo)
    assert config["bot"]["entry"] == ["python", "bot.py"] and config["bot"]["token_env"] == "TOKEN"
    async with DiscordDouble() as discord_api, ModelDouble() as model:
        the_rest(repo, config, discord_api)
        model.script(*_script(repo, "cogs/general.py", CHANNELS_BUG, CHANNELS))
        env = {**MODEL_ENV, "ANTHROPIC_BASE_URL": model.base_url}
        async with await LiveHost.start(discord_api, repo, "TOKEN", env=env, program=["bot.py"]) as bot:
            try:
                channel = discord_api.guild.channel("general")
                for question in ("will it rain?", "is it friday?", "will it rain?"):
                    assert "My Answer:" in await _ask(discord_api, channel, f"!8ball {question}")
                assert "List of available commands" in await _ask(discord_api, channel, "!help")
                await _loop(
                    discord_api,
                    bot,
                    failing="!serverinfo",
                    fixed=r"Text/Voice Channels",
                    own_reply="Something went wrong on my side (ZeroDivisionError)",
                    reloaded=r"✅ cogs\.general reloaded",
                )
            except BaseException:
                _show(discord_api, bot)
                raise


MINISTATUS = "thegamecracks-ministatus"
NO_STATUSES = "        if not statuses:\n"
# The fault seeded in ministatus's `/status summary`: statuses per page, asked of a guild with none.
NO_STATUSES_BUG = "        if not statuses and 10 // len(statuses):\n"


def _installed_as_its_users_do(repo: Path) -> None:
    """`pip install -e .` of the bot's repository into mendbot's environment, as its README asks: it
    reads its own version from its installed metadata. Its build backend is installed already (no
    network)."""
    wheel = installed_wheel()
    done = subprocess.run(
        [
            str(wheel.python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-e",
            ".",
        ],
        cwd=repo,
        env={**os.environ, "PATH": f"{wheel.python.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_realbot(MINISTATUS)
async def test_ministatus_run_by_its_click_command_goes_from_failure_to_rollback(tmp_path: Path) -> None:
    """ministatus (a `src/` package started by a click command, `python -m ministatus start`, its `Bot`
    with a `start` of its own that requires a keyword, its token from `MIST_TOKEN`, its SQLite in the
    platform's data directory, slash commands in a `GroupCog`): adopt finds its entry and token, and
    `/status summary` failing is fixed in its status cog, proven, reloaded, and rolled back."""
    repo = realbot_repo(tmp_path, MINISTATUS)
    cog = repo / "src" / "ministatus" / "bot" / "cogs" / "status" / "cog.py"
    assert NO_STATUSES in cog.read_text()
    cog.write_text(cog.read_text().replace(NO_STATUSES, NO_STATUSES_BUG))
    git(repo, "commit", "-qam", "statuses per page")
    _installed_as_its_users_do(repo)
    config = adopt(repo)
    assert config["bot"]["entry"] == ["python", "-m", "ministatus", "start"]
    assert config["bot"]["token_env"] == "MIST_TOKEN" and config["bot"]["path"] == ["src"]
    async with DiscordDouble() as discord_api, ModelDouble() as model:
        the_rest(repo, config, discord_api)
        model.script(*_script(repo, "src/ministatus/bot/cogs/status/cog.py", NO_STATUSES_BUG, NO_STATUSES))
        env = {**MODEL_ENV, "ANTHROPIC_BASE_URL": model.base_url}
        async with await LiveHost.start(discord_api, repo, "MIST_TOKEN", env=env) as bot:
            try:
                await _loop(
                    discord_api,
                    bot,
                    failing="/status summary",
                    fixed=r"No server statuses to see here",
                    own_reply="An unknown error occurred while running this command.",
                    reloaded=r"✅ ministatus\.bot\.cogs\.status reloaded",
                )
            except BaseException:
                _show(discord_api, bot)
                raise
