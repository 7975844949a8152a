"""A temp git repository holding a copy of the bot, for tests that change code (agent, deploy)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

__all__ = ["PROJECT", "copy_of_bot", "git"]

PROJECT = Path(__file__).resolve().parents[2]
IDENTITY = ["-c", "user.name=mendbot tests", "-c", "user.email=tests@mendbot.invalid"]


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return its stdout; raises on failure."""
    result = subprocess.run(["git", *IDENTITY, *args], cwd=repo, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def copy_of_bot(dest: Path) -> Path:
    """Copy the project's files (tracked and new, minus ignored) into `dest` as a fresh repo on main."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    dest.mkdir(parents=True, exist_ok=True)
    for name in filter(None, listed):
        source = PROJECT / name
        if not source.is_file():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "copy of mendbot for a test")
    return dest
