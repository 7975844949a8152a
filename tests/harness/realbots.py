"""The real public discord.py bots in `../shared/realbots/` (each unedited, with its source and licence),
for tests that attach mendbot to bots nobody here wrote: found beside the repository (a clone's
`../shared`) or beside the worktrees' folder, copied into a git repository of their own, and skipped,
saying why, where the folder is absent.

    repo = realbot_repo(tmp_path, "python-discord-bot-template")
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mendbot.trust.loopback_discord import DiscordDouble
from tests.harness.live_bot import merged
from tests.harness.repo import PROJECT, git
from tests.harness.wheel import installed_wheel

__all__ = ["REALBOTS", "adopt", "needs_realbot", "realbot", "realbot_repo", "the_rest"]

_FOUND = [root / "shared" / "realbots" for root in (PROJECT.parent, PROJECT.parent.parent)]
REALBOTS = next((path for path in _FOUND if path.is_dir()), None)


def realbot(name: str) -> Path | None:
    """The folder of the real bot `name`, or None where ../shared/realbots/ or the bot is absent."""
    found = REALBOTS / name if REALBOTS is not None else None
    return found if found is not None and found.is_dir() else None


def needs_realbot(name: str) -> pytest.MarkDecorator:
    """Skip a test, saying why, where the real bot `name` is not beside the repository."""
    return pytest.mark.skipif(realbot(name) is None, reason=f"no {name} in ../shared/realbots/")


def realbot_repo(tmp_path: Path, name: str, only: list[str] | None = None) -> Path:
    """A git repository (branch main, one commit) holding the real bot `name` as its authors wrote it —
    or, with `only`, those files of it (one example of a folder of examples)."""
    source = realbot(name)
    assert source is not None, f"no {name} in ../shared/realbots/"
    repo = tmp_path / name
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".git", "SOURCE.txt")
    if only is None:
        shutil.copytree(source, repo, ignore=ignore)
    else:
        repo.mkdir(parents=True)
        for file in only:
            (repo / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / file, repo / file)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"{name}: the bot as its authors wrote it")
    return repo


def adopt(repo: Path) -> dict[str, Any]:
    """`mendbot adopt` in `repo`, as mendbot is installed (the wheel): the mendbot.yaml it wrote."""
    adopted = subprocess.run(
        [str(installed_wheel().mendbot), "adopt"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    config = yaml.safe_load((repo / "mendbot.yaml").read_text())
    assert isinstance(config, dict)
    return config


def the_rest(repo: Path, config: dict[str, Any], double: DiscordDouble, **sections: Any) -> None:
    """What adopt leaves to the developer — the dev server, its channel, who may ship — written into
    mendbot.yaml and committed, with a test's own settings (`sections`) merged over."""
    alice = int(double.member("alice")["id"])
    ids = {
        "discord": {"dev_guild_id": double.guild.id, "dev_channel_ids": [double.guild.channel("dev").id]},
        "access": {"allowed_user_ids": [alice]},
        "health": {"enabled": False},
        "observe": {"announce_new_fingerprints": False},
        "improve": {"max_attempts": 1, "autonomy": "off", "check_base_at_start": False},
        "deploy": {"watch_window_s": 3600, "watch_hand_edits": False},
    }
    (repo / "mendbot.yaml").write_text(yaml.safe_dump(merged(merged(config, ids), sections), sort_keys=False))
    git(repo, "add", "mendbot.yaml", ".gitignore")
    git(repo, "commit", "-qm", "Add mendbot")
