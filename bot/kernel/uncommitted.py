"""Changes in the live checkout that a run cannot see: every run starts from `main`, in a worktree.

A cog someone just wrote and never committed, or a hand edit not committed yet, runs in the bot but is
absent from every run's worktree: a fix of it would be made on code that does not have it. The bot says
so — at start, when a hand edit is reloaded, and when a run starts on such a file — in one sentence:
"`cogs/coin.py` is not committed: runs start from main and will not see it."

Only what a run works on counts: sources under the bot's code, cogs, prompts and tests, and
pyproject.toml. Ignored files (`.env`, `data/`) never do.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mendbot.kernel.git import git

__all__ = ["not_on_main", "unseen_line"]

_WORKED_ON = ("bot/", "cogs/", "prompts/", "tests/")
_FILES = ("pyproject.toml",)
_SHOWN = 3


def _worked_on(path: str) -> bool:
    return path.startswith(_WORKED_ON) or path in _FILES


async def not_on_main(repo_root: Path, paths: Iterable[str] | None = None) -> list[str]:
    """Files of the checkout (relative, sorted) that differ from `main` or that git does not track:
    those of `paths`, else those a run works on; empty when the checkout is not a git repository with
    a main."""
    untracked = await git(repo_root, "ls-files", "--others", "--exclude-standard", check=False, timeout_s=10)
    changed = await git(
        repo_root, "diff", "--name-only", "--no-renames", "refs/heads/main", "--", check=False, timeout_s=10
    )
    if untracked.code != 0 or changed.code != 0:
        return []
    found = {line.strip() for line in (untracked.output + "\n" + changed.output).splitlines() if line.strip()}
    if paths is not None:  # the files asked about, wherever they are
        return sorted(found & set(paths))
    return sorted(path for path in found if _worked_on(path))


def unseen_line(paths: list[str]) -> str | None:
    """`⚠️ \\`cogs/coin.py\\` is not committed: runs start from main and will not see it. …`, or None."""
    if not paths:
        return None
    shown = ", ".join(f"`{path}`" for path in paths[:_SHOWN])
    if len(paths) > _SHOWN:
        shown += f" and {len(paths) - _SHOWN} more"
    one = len(paths) == 1
    return (
        f"⚠️ {shown} {'is' if one else 'are'} not committed: runs start from main and will not see "
        f"{'it' if one else 'them'}. Commit {'it' if one else 'them'} to `main` for a fix to work on "
        f"{'it' if one else 'them'}."
    )
