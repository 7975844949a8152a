"""The whole loop on real public discord.py bots nobody here wrote (`../shared/realbots/`, each unedited):
copied into a repository of its own, adopted with `mendbot adopt` as mendbot is installed (the wheel), the
rest of mendbot.yaml written as a developer would, run both ways in — `mendbot attach` on its own
program, and the one line `await self.load_extension("mendbot")` its developer adds — against the
loopback Discord, the real CLI and the model double. A fault seeded in one of its commands is recorded,
announced, fixed on "fix this", proven by replaying its program, shipped, reloaded or restarted, and
rolled back; its own commands, random ones among them, answer as before. Skipped, saying why, where the
folder is absent. (The template through `mendbot attach` is tests/test_attach_template.py.)"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mendbot.trust.loopback_discord import DiscordDouble
from tests.harness.hosts import LiveHost
from tests.harness.model_double import ModelDouble
from tests.harness.realbots import adopt, realbot, realbot_repo, the_rest
from tests.harness.repo import git
from tests.harness.wheel import installed_wheel
from tests.test_attach_loop import _ask, _loop, _script, _show

pytestmark = pytest.mark.cli

MODEL_ENV = {"ANTHROPIC_API_KEY": "test-key"}
ONE_LINE = '        await self.load_extension("mendbot")\n'  # what a developer adds to setup_hook


@dataclass(frozen=True)
class Edit:
    """One line of a file replaced by another (`before` must be there)."""

    file: str
    before: str
    after: str

    def apply(self, repo: Path) -> None:
        path = repo / self.file
        assert self.before in path.read_text(), (self.file, self.before)
        path.write_text(path.read_text().replace(self.before, self.after, 1))


@dataclass(frozen=True)
class RealBot:
    """A real bot, what its developer does before mendbot (`setup`: its README's steps), the fault seeded
    in it, where the one line goes, and what people see of it."""

    folder: str
    entry: list[str]
    token_env: str
    fault: Edit  # the seeded fault; its fix is the edit undone
    one_line: Edit  # the developer's line, after a line of the bot's start
    failing: str
    fixed: str
    own_reply: str
    reloaded: str
    restarts: bool = False
    only: list[str] | None = None  # the files of a folder of several bots that make this one
    setup: Callable[[Path], None] = lambda repo: None
    asked_first: list[tuple[str, str]] = field(default_factory=list)  # (words, answer pattern)


def _installed_as_its_users_do(repo: Path) -> None:
    """`pip install -e .` of the bot's repository into mendbot's environment, as its README asks (it
    reads its own version from its installed metadata). Its build backend is installed already."""
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


def _without_its_database(repo: Path) -> None:
    """PaulMaris's README: `use_database = false` where no MariaDB runs."""
    Edit("config/bot.toml", "use_database = true", "use_database = false").apply(repo)


def _template_env(repo: Path) -> None:
    """The template's README: a `.env` (untracked) with its token and prefix."""
    (repo / ".env").write_text("TOKEN=placeholder\nPREFIX=!\nINVITE_LINK=https://discord.invalid/invite\n")


BOTS = {
    # discord.py's own basic example: one file, a literal token, random `?roll` and `?choose`.
    "examples": RealBot(
        folder="rapptz-discordpy-examples",
        only=["basic_bot.py", "LICENSE"],
        entry=["python", "basic_bot.py"],
        token_env="DISCORD_TOKEN",
        fault=Edit(
            "basic_bot.py",
            "    await ctx.send(left + right)\n",
            "    await ctx.send(left + right // len(ctx.message.mentions))\n",  # shared among those named
        ),
        one_line=Edit(
            "basic_bot.py",
            "@bot.event\nasync def on_ready():\n",
            '@bot.event\nasync def setup_hook():\n    await bot.load_extension("mendbot")\n\n\n'
            "@bot.event\nasync def on_ready():\n",
        ),
        failing="?add 2 3",
        fixed=r"^5$",
        own_reply="Something went wrong on my side (ZeroDivisionError)",
        reloaded=r"restarting \(basic_bot\.py changed\)",
        restarts=True,
        asked_first=[(r"?roll 2d6", r"\d, \d"), ("?choose tea coffee juice", r"tea|coffee|juice")] * 3,
    ),
    # The public template: its own error handler, `!8ball` random, hybrid commands, aiosqlite.
    "template": RealBot(
        folder="python-discord-bot-template",
        entry=["python", "bot.py"],
        token_env="TOKEN",
        fault=Edit(
            "cogs/general.py",
            'name="Text/Voice Channels", value=f"{len(context.guild.channels)}"',
            'name="Text/Voice Channels", '
            'value=f"{len(context.guild.text_channels) // len(context.guild.voice_channels)}"',
        ),
        one_line=Edit(
            "bot.py", "        await self.load_cogs()\n", "        await self.load_cogs()\n" + ONE_LINE
        ),
        failing="!serverinfo",
        fixed=r"Text/Voice Channels",
        own_reply="Something went wrong on my side (ZeroDivisionError)",
        reloaded=r"✅ cogs\.general reloaded",
        setup=_template_env,
        asked_first=[
            ("!8ball will it rain?", "My Answer:"),
            ("!8ball is it friday?", "My Answer:"),
            ("!help", "List of available commands"),
        ],
    ),
    # PaulMaris's bot: `DiscordBot(config=load_config(…))`, its token in `config/.env` read with
    # `dotenv_values`, its own error dispatcher, per-guild prefixes (`$`).
    "paulmaris": RealBot(
        folder="paulmarisoumary-discord-bot",
        entry=["python", "main.py"],
        token_env="BOT_TOKEN",
        fault=Edit(
            "cogs/admin.py",
            "timedelta(seconds=self.bot.uptime)",
            "timedelta(seconds=self.bot.uptime, minutes=60 // len(ctx.message.mentions))",
        ),
        one_line=Edit(
            "utils/bot.py",
            '        await cogs_manager(self, "load", *cogs)\n',
            '        await cogs_manager(self, "load", *cogs)\n' + ONE_LINE,
        ),
        failing="$uptime",
        fixed=r":clock1:",
        own_reply="🕳️ Error: integer division or modulo by zero",
        reloaded=r"✅ cogs\.admin reloaded",
        setup=_without_its_database,
    ),
    # ministatus: a `src/` package started by a click command it gathers as it runs, `Bot.start` of its
    # own with a required keyword, its token from `MIST_TOKEN`, SQLite in the platform's data
    # directory, slash commands in a `GroupCog`.
    "ministatus": RealBot(
        folder="thegamecracks-ministatus",
        entry=["python", "-m", "ministatus", "start"],
        token_env="MIST_TOKEN",
        fault=Edit(
            "src/ministatus/bot/cogs/status/cog.py",
            "        if not statuses:\n",
            "        if not statuses and 10 // len(statuses):\n",  # statuses per page
        ),
        one_line=Edit(
            "src/ministatus/bot/bot.py",
            "        await self._maybe_load_jishaku()\n",
            "        await self._maybe_load_jishaku()\n" + ONE_LINE,
        ),
        failing="/status summary",
        fixed=r"No server statuses to see here",
        own_reply="An unknown error occurred while running this command.",
        reloaded=r"✅ ministatus\.bot\.cogs\.status reloaded",
        setup=_installed_as_its_users_do,
    ),
}
WAYS = ["attach", "one-line"]
CASES = [
    pytest.param(
        name,
        way,
        marks=pytest.mark.skipif(
            realbot(bot.folder) is None, reason=f"no {bot.folder} in ../shared/realbots/"
        ),
        id=f"{name}-{way}",
    )
    for name, bot in BOTS.items()
    for way in WAYS
    if (name, way) != ("template", "attach")  # tests/test_attach_template.py
]


@pytest.mark.parametrize(("name", "way"), CASES)
async def test_a_real_bot_goes_from_failure_to_rollback(tmp_path: Path, name: str, way: str) -> None:
    """The real bot, set up as its README says and adopted, run through `mendbot attach` or with the one
    line in its own start: its own commands answer; the seeded fault is recorded, answered by its own
    error handler (or mendbot's apology), announced, fixed where it is, proven by replaying its program,
    shipped, reloaded (or restarted), and rolled back."""
    bot = BOTS[name]
    repo = realbot_repo(tmp_path, bot.folder, only=bot.only)
    bot.fault.apply(repo)
    if way == "one-line":
        bot.one_line.apply(repo)
    git(
        repo,
        "commit",
        "-qam",
        "the change the fault came with" + ("; mendbot's one line" * (way == "one-line")),
    )
    bot.setup(repo)
    if git(repo, "status", "--porcelain", "--untracked-files=no"):
        git(repo, "commit", "-qam", "as its README says")
    config = adopt(repo)
    assert config["bot"]["entry"] == bot.entry and config["bot"]["token_env"] == bot.token_env, config
    async with DiscordDouble() as discord_api, ModelDouble() as model:
        the_rest(repo, config, discord_api)
        model.script(*_script(repo, bot.fault.file, bot.fault.after, bot.fault.before))
        env = {**MODEL_ENV, "ANTHROPIC_BASE_URL": model.base_url}
        program = bot.entry[1:] if way == "one-line" else None
        async with await LiveHost.start(discord_api, repo, bot.token_env, env=env, program=program) as live:
            try:
                channel = discord_api.guild.channel("general")
                for words, answer in bot.asked_first:
                    assert re.search(answer, await _ask(discord_api, channel, words)), words
                await _loop(
                    discord_api,
                    live,
                    failing=bot.failing,
                    fixed=bot.fixed,
                    own_reply=bot.own_reply,
                    reloaded=bot.reloaded,
                    restarts=bot.restarts,
                )
            except BaseException:
                _show(discord_api, live)
                raise
