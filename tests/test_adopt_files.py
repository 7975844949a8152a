"""`mendbot adopt` finds what a bot needs to start and git does not keep (its `.env`, a config.json it opens,
a config.py .gitignore keeps out), names its token where the bot reads it from such a file, says which
servers it needs that mendbot cannot start, and — run as users install it — starts the unchanged bot in
the sandbox and says in one line what keeps it from starting there, before any run is spent on it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from mendbot.tools.adopt import inspect_repository
from mendbot.tools.attach_demo import prepare
from mendbot.tools.attach_run import PLACEHOLDER_TOKEN
from mendbot.trust.host_files import PLACEHOLDER
from tests.harness.hosts import host_repo
from tests.harness.repo import git
from tests.harness.wheel import installed_wheel

# A bot whose token is in an untracked file, read there by a key, and a settings module kept out of git.
DOORMAN = """\
import discord
from discord.ext import commands
from dotenv import dotenv_values

import settings

keys = dotenv_values("config/.env")
bot = commands.Bot(command_prefix=settings.PREFIX, intents=discord.Intents.default())

if __name__ == "__main__":
    bot.run(keys["DOORMAN_BOT_TOKEN"])
"""


def _repo(tmp_path: Path, files: dict[str, str], untracked: dict[str, str]) -> Path:
    repo = tmp_path / "bot"
    for name, text in {**files, **untracked}.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    (repo / ".gitignore").write_text("".join(f"{name}\n" for name in untracked))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the bot")
    return repo


def _almanac(tmp_path: Path) -> Path:
    repo = host_repo(tmp_path, "almanac")
    (repo / ".env").write_text("ALMANAC_TOKEN=almanac-live-token-0042\nPREFIX=?\n")
    forecast = {"url": "https://forecast.invalid/v1", "api_key": "fk-live-0042"}
    (repo / "config.json").write_text(json.dumps({"forecast": forecast}))
    return repo


def _adopt(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    wheel = installed_wheel()  # the installed command, as a user runs it
    return subprocess.run(
        [str(wheel.mendbot), "adopt", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": f"{wheel.mendbot.parent}:/usr/bin:/bin", "HOME": str(repo.parent)},
        check=False,
    )


def test_adopt_names_the_untracked_files_and_the_token_key_they_hold(tmp_path: Path) -> None:
    """The almanac reads `.env` and config.json (both kept out of git) and gets its token from a settings
    object: the files are named, and the key with TOKEN in its name is the token's; almanac.toml, which
    git keeps, is not named."""
    found = inspect_repository(_almanac(tmp_path))
    assert found.files == [".env", "config.json"]
    assert found.token_env == "ALMANAC_TOKEN"
    assert found.entry == ["python", "main.py"] and found.extensions == ["almanac.cogs.days"]
    assert found.servers == []


def test_a_token_read_by_key_from_an_untracked_file_is_named_not_refused(tmp_path: Path) -> None:
    """`dotenv_values("config/.env")["DOORMAN_BOT_TOKEN"]`: the file and the key are named; the settings
    module .gitignore keeps out is named too; a `.env` nobody reads but that is there is named as well."""
    repo = _repo(
        tmp_path,
        {"doorman.py": DOORMAN},
        {
            "config/.env": "DOORMAN_BOT_TOKEN=live-0042\nWELCOME=hi\n",
            "settings.py": "PREFIX = '+'\nAPI_KEY = 'live-key-0042'\n",
        },
    )
    found = inspect_repository(repo)
    assert found.token_env == "DOORMAN_BOT_TOKEN"
    assert found.files == ["config/.env", "settings.py"]
    assert any("config/.env (DOORMAN_BOT_TOKEN)" in note for note in found.notes)


def test_a_token_read_from_a_json_file_is_its_key_there(tmp_path: Path) -> None:
    """`json.load(open("config.json"))["token"]` with the file there: its `token` key is the token's."""
    repo = _repo(
        tmp_path,
        {
            "bot.py": "import json\nimport discord\nfrom discord.ext import commands\n\n"
            "bot = commands.Bot(command_prefix='!', intents=discord.Intents.default())\n"
            "bot.run(json.load(open('config.json'))['discord']['token'])\n"
        },
        {"config.json": json.dumps({"discord": {"token": "live-0042"}, "prefix": "!"})},
    )
    found = inspect_repository(repo)
    assert (found.token_env, found.files) == ("token", ["config.json"])


def test_adopt_names_the_servers_the_bot_needs(tmp_path: Path) -> None:
    """By its imports, its requirements and the variables it reads: each server one line's worth."""
    repo = _repo(
        tmp_path,
        {
            "bot.py": "import os\nimport asyncpg\nimport discord\nfrom discord.ext import commands\n\n"
            "bot = commands.Bot(command_prefix='!', intents=discord.Intents.default())\n"
            "bot.run(os.environ['TOKEN'])\n",
            "requirements.txt": "discord.py>=2\nredis==5.0\n",
        },
        {".env": "TOKEN=x\nDATABASE_URL=postgres://bot:pw@db/bot\nREDIS_URL=redis://cache\n"},
    )
    assert inspect_repository(repo).servers == ["Redis (redis, REDIS_URL)", "PostgreSQL (asyncpg)"]


def test_adopt_starts_the_unchanged_bot_in_the_sandbox_and_says_it_starts(tmp_path: Path) -> None:
    """After writing mendbot.yaml (the files, the token's key), adopt starts the almanac on its committed
    HEAD in the sandbox as mendbot will, and says in one line that it starts; the one thing left is last."""
    repo = _almanac(tmp_path)
    result = _adopt(repo)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    head = git(repo, "rev-parse", "HEAD")[:7]
    assert f"✅ your bot starts in the sandbox on {head} with every extension loaded" in lines
    assert "files it needs that git does not keep: .env, config.json (their secrets never leave)" in lines
    assert lines[-1].startswith("one thing left:")
    config = yaml.safe_load((repo / "mendbot.yaml").read_text())["bot"]
    assert config["files"] == [".env", "config.json"] and config["token_env"] == "ALMANAC_TOKEN"
    assert (
        "almanac-live-token-0042" not in result.stdout + result.stderr + (repo / "mendbot.yaml").read_text()
    )


def test_adopt_says_in_one_line_why_the_bot_cannot_start_and_what_to_change(tmp_path: Path) -> None:
    """A module the bot imports that nobody installed: one ❌ line naming it, no traceback; mendbot.yaml
    is written all the same. `--no-check` skips the start."""
    repo = _almanac(tmp_path)
    client = repo / "almanac" / "client.py"
    client.write_text("import forecastlib  # noqa: F401\n" + client.read_text())
    git(repo, "commit", "-qam", "ask the forecast")
    result = _adopt(repo)
    assert result.returncode == 0, result.stderr
    failing = [line for line in result.stdout.splitlines() if line.startswith("❌")]
    assert failing == [
        "❌ your bot did not start in the sandbox: ModuleNotFoundError: No module named 'forecastlib' — "
        "install `forecastlib` where mendbot runs (your bot's virtualenv)"
    ]
    assert "Traceback" not in result.stdout + result.stderr
    (repo / "mendbot.yaml").unlink()
    git(repo, "checkout", "-q", ".gitignore")  # as it was before adopt kept .mendbot/ out of git
    quiet = _adopt(repo, "--no-check")
    assert quiet.returncode == 0 and "sandbox on" not in quiet.stdout and "❌" not in quiet.stdout


def test_the_demos_scratch_copy_has_the_files_with_their_secrets_replaced(tmp_path: Path) -> None:
    """`mendbot attach --demo` runs the bot in a clone, which has none of the untracked files: they are
    copied there as into the sandbox, secrets replaced, what is no secret kept."""
    repo = _almanac(tmp_path)
    (tmp_path / "demo").mkdir()
    scratch, host = prepare(repo, tmp_path / "demo", None)
    assert host.files == [".env", "config.json"]
    assert (scratch / ".env").read_text() == f'ALMANAC_TOKEN="{PLACEHOLDER_TOKEN}"\nPREFIX=?\n'
    assert json.loads((scratch / "config.json").read_text())["forecast"]["api_key"] == PLACEHOLDER
