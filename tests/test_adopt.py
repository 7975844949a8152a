"""`mendbot adopt` reads a bot's repository without running it, and `mendbot attach` runs it: what each
finds in the bot shapes of tests/fixtures/hosts/, and bad input answered in one line, never a traceback —
not a git repository, a dirty tree, no bot, a token read from a file, a package named like mendbot's, no
mendbot.yaml, an entry point that ends at once, an extension that fails to load."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from mendbot.runtime.standalone import host_settings
from mendbot.tools.adopt import AdoptError, inspect_repository
from tests.harness.hosts import host_repo
from tests.harness.repo import git
from tests.harness.wheel import installed_wheel

_GIT_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/nonexistent",
    "GIT_AUTHOR_NAME": "a",
    "GIT_AUTHOR_EMAIL": "a@example.org",
    "GIT_COMMITTER_NAME": "a",
    "GIT_COMMITTER_EMAIL": "a@example.org",
}


def _mendbot(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    wheel = installed_wheel()  # the installed command, as a user runs it
    environment = {"PATH": f"{wheel.mendbot.parent}:/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(
        [str(wheel.mendbot), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        check=False,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The run's complaint: one line on stderr, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


EXPECTED: dict[str, dict[str, object]] = {
    "shelf": {
        "entry": ["python", "bot.py"],
        "bot_class": "bot:ShelfBot",
        "extensions": ["cogs.books"],
        "token_env": "SHELF_TOKEN",
        "data_files": ["data/shelf.db"],
    },
    "counter": {
        "entry": ["python", "index.py"],
        "bot_class": "index:CounterBot",
        "extensions": ["features.tally"],
        "token_env": "COUNTER_TOKEN",
    },
    "single": {
        "entry": ["python", "main.py"],
        "bot_class": None,
        "extensions": [],
        "token_env": "DISCORD_TOKEN",
    },
    "beans": {
        "entry": ["python", "bot.py"],
        "bot_class": "bot:BeanBot",
        "extensions": ["cogs.coffee"],
        "token_env": "BEANS_TOKEN",
        "data_files": ["data/beans.db"],  # its cups brewed are not written yet: no data/brews.json
    },
    "quiz": {
        "entry": ["python", "-m", "quiz"],
        "bot_class": "quiz.client:QuizBot",
        "extensions": ["quiz.extensions.trivia"],
        "token_env": "QUIZ_TOKEN",
        "path": ["src"],
    },
}


@pytest.mark.parametrize("shape", sorted(EXPECTED))
def test_adopt_finds_what_each_bot_is_made_of(tmp_path: Path, shape: str) -> None:
    """Its entry point, bot class, extensions, token variable, data files and import directories."""
    found = inspect_repository(host_repo(tmp_path, shape))
    assert {key: getattr(found, key) for key in EXPECTED[shape]} == EXPECTED[shape]


def test_adopt_writes_mendbot_yaml_and_says_the_one_thing_left(tmp_path: Path) -> None:
    """`mendbot adopt PATH` prints what it found and the one thing left, and the mendbot.yaml it writes
    loads as the bot's settings; a second adopt leaves it alone."""
    repo = host_repo(tmp_path, "shelf")
    result = _mendbot(tmp_path, "adopt", str(repo))
    assert result.returncode == 0, result.stderr
    assert "entry point: python bot.py" in result.stdout and "token: $SHELF_TOKEN" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("one thing left: put your dev server's")
    settings = host_settings(repo / "mendbot.yaml")
    assert settings.bot is not None and settings.bot.bot_class == "bot:ShelfBot"
    assert settings.repo_dir == repo and settings.data_dir == repo / ".mendbot"
    assert "mendbot.yaml" in settings.improve.protected_paths
    again = _mendbot(tmp_path, "adopt", str(repo))
    assert again.returncode == 78 and "already exists" in _one_line(again)


def test_adopt_keeps_its_data_out_of_git_and_says_how_to_commit(tmp_path: Path) -> None:
    """adopt adds `.mendbot/` (its data_dir) to the bot's .gitignore, keeping the lines already there, and
    says how to commit mendbot.yaml; the command it prints, run as printed, leaves the tree clean with
    mendbot's database in place — fixes start from the committed main, and a dirty tree holds deploys."""
    repo = host_repo(tmp_path, "shelf")
    (repo / ".gitignore").write_text("__pycache__/\n*.pyc")  # no newline at its end
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", "ignore caches")
    result = _mendbot(tmp_path, "adopt", str(repo))
    assert result.returncode == 0, result.stderr
    assert (repo / ".gitignore").read_text().splitlines() == ["__pycache__/", "*.pyc", ".mendbot/"]
    assert "kept .mendbot/ out of git (.gitignore)" in result.stdout
    (repo / ".mendbot").mkdir(exist_ok=True)  # adopt made it already when it started the bot
    (repo / ".mendbot" / "mendbot.db").write_text("")
    commit = re.search(r"`(git add [^`]+)`", result.stdout)
    assert commit is not None, result.stdout
    subprocess.run(commit.group(1), shell=True, cwd=repo, check=True, capture_output=True, env=_GIT_ENV)
    assert git(repo, "status", "--porcelain", "--untracked-files=all").strip() == ""
    assert "mendbot.yaml" in git(repo, "ls-files")
    again = host_repo(tmp_path / "second", "shelf")
    _mendbot(tmp_path, "adopt", str(again))
    assert (again / ".gitignore").read_text() == ".mendbot/\n"  # made when there was none


# A bot that keeps scores in a JSON file git keeps, a ledger in one it does not, reads its levels from a
# file it never writes, and rewrites its settings file, which holds a key.
KEEPER = """\
import json
import os
from pathlib import Path

import discord
from discord.ext import commands

SCORES = Path(__file__).parent / "data" / "scores.json"
SETTINGS = json.loads(Path("settings.json").read_text())
with open("levels.json") as levels:
    LEVELS = json.load(levels)
bot = commands.Bot(command_prefix=SETTINGS["prefix"], intents=discord.Intents.default())


class Ledger:
    def __init__(self) -> None:
        self.path = "data/ledger.json"

    def keep(self, entries: dict[str, int]) -> None:
        Path(self.path).write_text(json.dumps(entries))


def save_scores(scores: dict[str, int]) -> None:
    with open(SCORES, "w") as file:
        json.dump(scores, file)


def remember_prefix(prefix: str) -> None:
    SETTINGS["prefix"] = prefix
    Path("settings.json").write_text(json.dumps(SETTINGS))


def forget() -> None:
    Path("data/cache.json").write_text("{}")


if __name__ == "__main__":
    bot.run(os.environ["KEEPER_TOKEN"])
"""


def test_adopt_names_the_json_files_the_bot_keeps_its_state_in(tmp_path: Path) -> None:
    """JSON files the code names and writes that are in the working tree, tracked or not, are its data
    files (copied as they are, compared by the proof), said in mendbot.yaml; a settings file it rewrites
    but which holds a key stays a file it needs (its secrets replaced), one it only reads is neither,
    and one it writes that is not there yet is not named."""
    repo = _repo(tmp_path, {"bot.py": KEEPER, "levels.json": '{"1": 10}', "data/scores.json": "{}"})
    (repo / "data" / "ledger.json").write_text('{"alice": 3}')
    (repo / "settings.json").write_text('{"prefix": "!", "api_key": "sk-live-0042-keeper"}')
    found = inspect_repository(repo)
    assert sorted(found.data_files) == ["data/ledger.json", "data/scores.json"]
    assert found.files == ["settings.json"]
    result = _mendbot(tmp_path, "adopt", "--no-check", str(repo))
    assert result.returncode == 0, result.stderr
    assert "data files: " in result.stdout
    written = (repo / "mendbot.yaml").read_text()
    assert "# its state: copied as it is into each start outside the live bot" in written
    settings = host_settings(repo / "mendbot.yaml")
    assert settings.bot is not None and sorted(settings.bot.data_files) == sorted(found.data_files)


def _repo(tmp_path: Path, files: dict[str, str]) -> Path:
    repo = tmp_path / "bot-repo"
    repo.mkdir()
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a bot")
    return repo


RUNS = "import os\nfrom discord.ext import commands\nbot = commands.Bot(command_prefix='!', intents=None)\n"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"hello.py": "print('hello')\n"}, "no discord.py bot found"),
        ({"bot.py": RUNS + "bot.run(open('token.txt').read())\n"}, "reads its token from a file (bot.py"),
        (
            {"bot.py": RUNS + "import json\nbot.run(json.load(open('config.json'))['token'])\n"},
            "reads its token from a file",
        ),
        ({"bot.py": RUNS}, "no program that runs it"),
        (
            {"client.py": "import discord\nclient = discord.Client(intents=None)\nclient.run('x')\n"},
            "without commands",
        ),
    ],
    ids=["no-bot", "token-file", "token-json", "no-entry", "plain-client"],
)
def test_adopt_refuses_what_it_cannot_handle_in_one_line(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    """A repository adopt cannot handle gets one line saying why, exit 78, and no mendbot.yaml."""
    repo = _repo(tmp_path, files)
    result = _mendbot(tmp_path, "adopt", str(repo))
    assert result.returncode == 78 and expected in _one_line(result)
    assert not (repo / "mendbot.yaml").exists()


SHELF_CLI = """\"\"\"The shelf bot's command line: `python -m shelfbot start`, `… check-db`.\"\"\"
import asyncio
import os

import click
import discord
from discord.ext import commands


class ShelfBot(commands.Bot):
    async def setup_hook(self) -> None:
        await self.load_extension("shelfbot.books")


@click.group()
def main() -> None:
    \"\"\"Run or look after the shelf bot.\"\"\"


@main.command(name="check-db")
def check_db() -> None:
    click.echo("the shelf's database is fine")


@main.command()
@click.option("--prefix", default="!")
def start(prefix: str) -> None:
    intents = discord.Intents.default()
    intents.message_content = True
    bot = ShelfBot(command_prefix=prefix, intents=intents)
    asyncio.run(bot.start(os.environ["SHELF_TOKEN"]))


if __name__ == "__main__":
    main()
"""
SHELF_BOOKS = """from discord.ext import commands


@commands.command()
async def shelf(ctx: commands.Context) -> None:
    await ctx.send("a shelf, started by its command line")


async def setup(bot: commands.Bot) -> None:
    bot.add_command(shelf)
"""
CLICK_PACKAGE = {
    "src/shelfbot/__init__.py": "",
    "src/shelfbot/__main__.py": "from shelfbot.cli import main\n\nif __name__ == '__main__':\n    main()\n",
    "src/shelfbot/cli.py": SHELF_CLI,
    "src/shelfbot/books.py": SHELF_BOOKS,
}
ARGPARSE_LAUNCHER = """import argparse
import asyncio
import os

import discord
from discord.ext import commands


def build(prefix: str) -> commands.Bot:
    intents = discord.Intents.default()
    intents.message_content = True
    return commands.Bot(command_prefix=prefix, intents=intents)


async def serve(bot: commands.Bot) -> None:
    async with bot:
        await bot.start(os.environ["LANTERN_TOKEN"])


def main() -> None:
    parser = argparse.ArgumentParser(description="the lantern bot")
    parser.add_argument("--prefix", default="?")
    asyncio.run(serve(build(parser.parse_args().prefix)))


if __name__ == "__main__":
    main()
"""
# A click group that gathers its commands when it runs, from the modules of a folder it imports by name
# (no import names the command that starts the bot), whose token comes through a function of the bot's.
GATHERED_GROUP = """import importlib
import pkgutil

import click


@click.group()
def main() -> None:
    \"\"\"The beacon bot.\"\"\"


for found in pkgutil.iter_modules([__file__.rsplit("/", 1)[0] + "/commands"]):
    module = importlib.import_module(f"beacon.commands.{found.name}")
    for value in vars(module).values():
        if isinstance(value, click.Command):
            main.add_command(value)
"""
GATHERED_START = """import asyncio
import os

import click
import discord
from discord.ext import commands


async def token_from_the_environment() -> str:
    return os.environ["BEACON_TOKEN"].strip()


@click.command(name="serve")
@click.option("--prefix", default="!")
def serve_forever(prefix: str) -> None:
    async def run() -> None:
        token = await token_from_the_environment()
        bot = commands.Bot(command_prefix=prefix, intents=discord.Intents.default())
        async with bot:
            await bot.start(token)

    asyncio.run(run())
"""
GATHERED = {
    "src/beacon/__init__.py": "",
    "src/beacon/__main__.py": "from beacon.cli import main\n\nif __name__ == '__main__':\n    main()\n",
    "src/beacon/cli.py": GATHERED_GROUP,
    "src/beacon/commands/__init__.py": "",
    "src/beacon/commands/serve.py": GATHERED_START,
    "src/beacon/store.py": "DB_NAME = f'{__name__}.db'  # a suffix, not a file of the repository\n",
}
LAUNCHERS = {
    "click-package": (CLICK_PACKAGE, ["python", "-m", "shelfbot", "start"], "SHELF_TOKEN"),
    "click-gathered": (GATHERED, ["python", "-m", "beacon", "serve"], "BEACON_TOKEN"),
    "argparse-script": ({"launcher.py": ARGPARSE_LAUNCHER}, ["python", "launcher.py"], "LANTERN_TOKEN"),
    "root-main": ({"__main__.py": ARGPARSE_LAUNCHER}, ["python", "."], "LANTERN_TOKEN"),
}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_adopt_finds_a_launcher_that_builds_its_bot_in_a_function(tmp_path: Path, launcher: str) -> None:
    """A click command (`python -m shelfbot start`, through the package's `__main__.py`; or one the group
    gathers by itself as it runs, its token from a function of the bot's), an argparse
    `main()` and a root `__main__.py` (`python .`, not `python -m __main__`) that run
    `asyncio.run(bot.start(…))`: the command that starts the bot, and the token it is given."""
    files, entry, token = LAUNCHERS[launcher]
    found = inspect_repository(_repo(tmp_path, files))
    assert (found.entry, found.token_env) == (entry, token)
    assert found.data_files == []


def test_adopt_takes_the_command_it_cannot_find(tmp_path: Path) -> None:
    """A bot started by a console script adopt cannot follow: one line asking for the command, which
    `--entry` then gives; an `--entry` that runs nothing of the repository is one line too."""
    files = {**CLICK_PACKAGE, "pyproject.toml": "[project.scripts]\nshelf = 'shelfbot.cli:main'\n"}
    del files["src/shelfbot/__main__.py"]
    repo = _repo(tmp_path, files)
    refused = _mendbot(tmp_path, "adopt", str(repo))
    assert refused.returncode == 78 and _one_line(refused).endswith(
        "— mendbot needs the command you start your bot with: name it, e.g. "
        '`mendbot adopt --entry "python launcher.py start"`'
    )
    wrong = _mendbot(tmp_path, "adopt", str(repo), "--entry", "python shelf.py start")
    assert wrong.returncode == 78 and "runs no Python file or module of this repository" in _one_line(wrong)
    named = _mendbot(tmp_path, "adopt", str(repo), "--entry", "python -m shelfbot.cli start")
    assert named.returncode == 0, named.stderr
    assert "entry point: python -m shelfbot.cli start" in named.stdout
    settings = host_settings(repo / "mendbot.yaml")
    assert settings.bot is not None and settings.bot.entry == ["python", "-m", "shelfbot.cli", "start"]


def test_adopt_refuses_a_directory_that_is_not_a_repository_or_has_changes(tmp_path: Path) -> None:
    """Not a git repository, and a tree with uncommitted changes: one line each."""
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "bot.py").write_text(RUNS + "bot.run(os.environ['T'])\n")
    assert "is not a git repository" in _one_line(_mendbot(tmp_path, "adopt", str(plain)))
    repo = host_repo(tmp_path, "counter")
    (repo / "index.py").write_text((repo / "index.py").read_text() + "\n# edited\n")
    with pytest.raises(AdoptError, match=r"uncommitted changes \(index\.py\)"):
        inspect_repository(repo)
    assert "commit them first" in _one_line(_mendbot(tmp_path, "adopt", str(repo)))


def test_attach_answers_bad_input_in_one_line(tmp_path: Path) -> None:
    """`mendbot attach` without mendbot.yaml, with a program that is not Python, one that ends without
    starting a bot, and a bot whose extension fails to load so that its program stops: one line each."""
    repo = _repo(
        tmp_path,
        {
            "quick.py": "print('done')\n",
            "broken.py": (  # extensions loaded before it starts: `async with bot`, then `bot.start`
                "import asyncio, os\nimport discord\nfrom discord.ext import commands\n"
                "bot = commands.Bot(command_prefix='!', intents=discord.Intents.default())\n"
                "async def main():\n    async with bot:\n        await bot.load_extension('ext')\n"
                "        await bot.start(os.environ['T'])\n"
                "asyncio.run(main())\n"
            ),
            "ext.py": "async def setup(bot):\n    raise RuntimeError('no config for the shop')\n",
        },
    )
    assert "run `mendbot adopt`" in _one_line(_mendbot(repo, "attach", "--", "python", "quick.py"))
    (repo / "mendbot.yaml").write_text("data_dir: .mendbot\nbot: {entry: [python, quick.py], token_env: T}\n")
    assert "node is not a Python file" in _one_line(_mendbot(repo, "attach", "--", "node", "index.js"))
    ended = _mendbot(repo, "attach", "--", "python", "quick.py")
    assert ended.returncode == 1 and "ended without starting a discord.py bot" in _one_line(ended)
    stopped = _mendbot(repo, "attach", "--", "python", "broken.py")
    line = [text for text in stopped.stderr.splitlines() if text.startswith("mendbot:")]
    assert stopped.returncode == 1 and "Traceback" not in stopped.stderr, stopped.stderr
    assert line == [
        "mendbot: your bot stopped: extension `ext` failed to load (RuntimeError: no config for the shop) — "
        "mendbot recorded it; fix it, or ask mendbot to in your dev channel"
    ]
