"""The seeded-fault repository builder: a git repo whose history brings a fault into a cog package.

Each seed is a package `seed_<name>` (a cog extension plus helper modules) committed as a
history — an old good version, the commit that brings the fault, and sometimes unrelated
commits after it — with author and committer dates set days in the past, so blame ages and
"what changed last" are as they would be in a real project.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Commit", "build_repo"]

_IDENTITY = ["-c", "user.name=seed author", "-c", "user.email=seed@mendbot.invalid"]


@dataclass(frozen=True)
class Commit:
    """One commit: files written (dedented; None deletes), a message and how many days ago."""

    days_ago: float
    message: str
    files: dict[str, str | None] = field(default_factory=dict)


def _git(repo: Path, *args: str, when: float | None = None) -> str:
    env = dict(os.environ)
    if when is not None:
        stamp = f"@{int(when)} +0000"
        env.update(GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
    result = subprocess.run(
        ["git", *_IDENTITY, *args], cwd=repo, capture_output=True, text=True, check=True, env=env
    )
    return result.stdout.strip()


def build_repo(root: Path, history: tuple[Commit, ...], *, now: float | None = None) -> Path:
    """A git repository on `main` holding the seed's history, oldest commit first."""
    now = time.time() if now is None else now
    root.mkdir(parents=True, exist_ok=True)
    _git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text("__pycache__/\n", encoding="utf-8")
    for commit in history:
        for name, text in commit.files.items():
            path = root / name
            if text is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", commit.message, when=now - commit.days_ago * 86400)
    return root
