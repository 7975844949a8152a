"""mendbot as users install it: one package of its own in the wheel, beside bots whose own modules are
named `bot`, with what only some users need left to extras."""

from __future__ import annotations

import os
import subprocess
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from mendbot.kernel.settings import ConfigError, load_settings
from mendbot.runtime.standalone import host_settings
from tests.harness.repo import git
from tests.harness.wheel import installed_wheel
from tests.test_adopt import CLICK_PACKAGE


def test_the_wheel_installs_one_package_and_nothing_a_bot_may_also_have() -> None:
    """The wheel holds `mendbot` (with its cogs, prompts, migrations and pages) and its metadata only."""
    names = zipfile.ZipFile(installed_wheel().wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"mendbot", "mendbot-0.1.0.dist-info"}
    for needed in (
        "mendbot/__init__.py",
        "mendbot/cogs/improve.py",
        "mendbot/prompts/agent/edit.md",
        "mendbot/db/history/fresh.sql",
        "mendbot/dashboard/templates/base.html",
        "mendbot/improve/proof/replay.py",
    ):
        assert needed in names, needed


def test_charts_and_the_github_forge_are_extras() -> None:
    """`pip install mendbot` brings neither matplotlib nor githubkit: each comes with the extra it is for."""
    with zipfile.ZipFile(installed_wheel().wheel) as wheel:
        metadata = wheel.read("mendbot-0.1.0.dist-info/METADATA").decode()
    required = Parser().parsestr(metadata).get_all("Requires-Dist") or []
    plain = [line for line in required if "extra ==" not in line]
    assert not [line for line in plain if line.startswith(("matplotlib", "githubkit", "hishel"))]
    assert any(line.startswith("matplotlib") and 'extra == "charts"' in line for line in required)
    assert any(line.startswith("githubkit") and 'extra == "github"' in line for line in required)


def test_a_github_forge_without_its_extra_is_one_config_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """forge.kind: github where githubkit is not installed says which extra to install, in one line."""
    import importlib.util

    found = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "githubkit" else found(name, *a)
    )
    config = tmp_path / "config.yaml"
    config.write_text("forge: {kind: github, repository: me/bot}\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(config, _env_file=None)
    assert str(refused.value) == (
        "config error: forge.kind is github, whose client mendbot installs with its `github` extra — "
        "`pip install 'mendbot[github]'`, or leave forge.kind: local"
    )


SHELF_BOT = '''"""A bot whose cogs import its bot class from bot.py, as many do."""
import os

import discord
from discord.ext import commands


class ShelfBot(commands.Bot):
    async def setup_hook(self) -> None:
        await self.load_extension("cogs.books")


if __name__ == "__main__":
    intents = discord.Intents.default()
    intents.message_content = True
    ShelfBot(command_prefix="!", intents=intents).run(os.environ["SHELF_TOKEN"])
'''
SHELF_COG = """from discord.ext import commands

from bot import ShelfBot  # the bot's own bot.py


class Books(commands.Cog):
    @commands.command()
    async def shelf(self, ctx: commands.Context[ShelfBot]) -> None:
        await ctx.send(f"a shelf for {type(ctx.bot).__name__}")


async def setup(bot: ShelfBot) -> None:
    await bot.add_cog(Books())
"""
PACKAGE_MAIN = """import os

import discord
from discord.ext import commands

from bot.commands import Greetings

intents = discord.Intents.default()
intents.message_content = True
client = commands.Bot(command_prefix="!", intents=intents)


@client.event
async def setup_hook() -> None:
    await client.add_cog(Greetings())


client.run(os.environ["BOT_TOKEN"])
"""
PACKAGE_COMMANDS = """from discord.ext import commands


class Greetings(commands.Cog):
    @commands.command()
    async def hello(self, ctx: commands.Context) -> None:
        await ctx.send("hello from the package named bot")
"""


def _repo(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the bot")
    return root


def _play(repo: Path, program: list[str] | None, script: str, token_env: str) -> str:
    """`mendbot adopt`, then `mendbot attach --play -- PROGRAM` (None: the entry point adopt found) with
    `script` typed in: the output."""
    wheel = installed_wheel()
    env = {
        "PATH": f"{wheel.mendbot.parent}:/usr/bin:/bin",
        "HOME": str(repo.parent / "home"),
        token_env: "never-used",
        **{k: v for k, v in os.environ.items() if k.startswith("LANG")},
    }
    adopted = subprocess.run(
        [str(wheel.mendbot), "adopt"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    played = subprocess.run(
        [str(wheel.mendbot), "attach", "--play", *(["--", *program] if program is not None else [])],
        cwd=repo,
        env=env,
        input=script,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert played.returncode == 0, played.stdout + played.stderr
    return played.stdout


def test_the_wheel_attaches_to_a_bot_whose_cogs_import_its_bot_py(tmp_path: Path) -> None:
    """A `bot.py` imported by its own cogs (`from bot import ShelfBot`) runs beside the installed mendbot,
    both ways of naming it: the program's `bot` is the bot's, mendbot's is `mendbot`."""
    repo = _repo(
        tmp_path / "shelf", {"bot.py": SHELF_BOT, "cogs/__init__.py": "", "cogs/books.py": SHELF_COG}
    )
    out = _play(repo, ["python", "bot.py"], "!shelf\n", "SHELF_TOKEN")
    assert "a shelf for ShelfBot" in out


def test_the_wheel_attaches_to_a_bot_that_is_a_package_named_bot(tmp_path: Path) -> None:
    """A bot that is a package `bot/` run with `python -m bot` is run, not mendbot's own bot."""
    repo = _repo(
        tmp_path / "greeter",
        {"bot/__init__.py": "", "bot/__main__.py": PACKAGE_MAIN, "bot/commands.py": PACKAGE_COMMANDS},
    )
    out = _play(repo, ["python", "-m", "bot"], "!hello\n", "BOT_TOKEN")
    assert "hello from the package named bot" in out


DIRECTORY_MAIN = """import os

import discord
from discord.ext import commands


def main() -> None:
    intents = discord.Intents.default()
    intents.message_content = True
    bot = commands.Bot(command_prefix="!", intents=intents)

    @bot.command()
    async def lamp(ctx: commands.Context) -> None:
        await ctx.send("lit by python .")

    bot.run(os.environ["LAMP_TOKEN"])


if __name__ == "__main__":
    main()
"""


def test_the_wheel_attaches_to_a_bot_run_as_a_directory(tmp_path: Path) -> None:
    """A repository whose root `__main__.py` starts the bot: adopt names it `python .`, and `mendbot attach`
    runs that as Python does (the directory first on the path)."""
    repo = _repo(tmp_path / "lamp", {"__main__.py": DIRECTORY_MAIN})
    out = _play(repo, None, "!lamp\n", "LAMP_TOKEN")
    settings = host_settings(repo / "mendbot.yaml")
    assert settings.bot is not None and settings.bot.entry == ["python", "."]
    assert "lit by python ." in out


def test_the_wheel_attaches_to_a_bot_started_by_its_click_command(tmp_path: Path) -> None:
    """A package whose `__main__.py` calls a click group: adopt finds its `start` command, and the bot it
    builds there plays."""
    repo = _repo(tmp_path / "shelf", CLICK_PACKAGE)
    out = _play(repo, None, "!shelf\n", "SHELF_TOKEN")
    assert "a shelf, started by its command line" in out
