"""A temp git repository holding a copy of the bot, for tests that change code (agent, deploy)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from mendbot.trust.tree_imports import tree_packages, write_import_boot

__all__ = ["PROJECT", "copy_of_bot", "copy_of_project", "git", "python_path"]

PROJECT = Path(__file__).resolve().parents[2]
IDENTITY = ["-c", "user.name=mendbot tests", "-c", "user.email=tests@mendbot.invalid"]


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return its stdout; raises on failure."""
    result = subprocess.run(["git", *IDENTITY, *args], cwd=repo, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def copy_of_bot(dest: Path) -> Path:
    """Copy the project's files (`copy_of_project`) into `dest` as a fresh repo on main."""
    copy_of_project(dest)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "copy of mendbot for a test")
    return dest


def copy_of_project(dest: Path) -> None:
    """Copy the project's files (tracked and new, minus ignored), as the working tree has them, into `dest`.

    Each Python file's bytecode comes along where the project has it (`make` compiles `bot/` and
    `cogs/`): copied with their times, as the files are, it stays valid, so the bot processes a test
    starts from the copy load it instead of compiling every module again (git ignores it)."""
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
        target = dest / name
        if source.is_symlink():  # typings/mendbot, the link mypy checks bot/ through
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(os.readlink(source))
            continue
        if not source.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        if source.suffix == ".py" and sys.implementation.cache_tag is not None:
            compiled = source.parent / "__pycache__" / f"{source.stem}.{sys.implementation.cache_tag}.pyc"
            if compiled.is_file():
                (target.parent / "__pycache__").mkdir(exist_ok=True)
                shutil.copy2(compiled, target.parent / "__pycache__" / compiled.name)


def python_path(code: Path) -> str:
    """PYTHONPATH for a process that runs the repository copy `code` as mendbot's checkout runs itself:
    `mendbot` is the copy's bot/ (as its pyproject.toml maps it), then the copy (its `cogs`, its `tests`)."""
    boot = code.parent / f".{code.name}-import"
    write_import_boot(boot, tree_packages(code))
    return f"{boot}:{code}"
