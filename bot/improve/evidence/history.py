"""What git says about a suspect file's past, for the evidence: the commit time of each of its lines
(blame) and the last commits touching it with their diffs, bounded, each cached by the commit HEAD points
at — which is read from the repository's files, without a process.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mendbot.kernel.git import git
from mendbot.kernel.log import get_logger

__all__ = ["file_history", "head_commit", "line_times"]

_log = get_logger(__name__)

_HISTORY_COMMITS = 3
_HISTORY_CHARS = 2500  # per file, diffs included
_GIT_TIMEOUT_S = 5.0
_BLAME_HEADER = re.compile(r"^([0-9a-f]{40}) \d+ (\d+)(?: (\d+))?$")


async def _git(repo_root: Path, *args: str, timeout_s: float) -> tuple[int, str, str]:
    result = await git(repo_root, *args, check=False, timeout_s=timeout_s)
    if result.timed_out:
        return -1, "", f"timed out after {timeout_s:g} s"
    return result.code if result.code is not None else -1, result.output, result.errors


def head_commit(repo_root: Path) -> str | None:
    """The commit HEAD points at, read from the repository's files (no process); None if unsure.

    Blame and log of HEAD are pure functions of that commit and a path, so they are cached by
    it: a live checkout's HEAD moves only when a change is deployed.
    """
    try:
        git_dir = repo_root / ".git"
        if git_dir.is_file():  # a worktree: "gitdir: <path>"
            git_dir = (repo_root / git_dir.read_text().split(":", 1)[1].strip()).resolve()
        head = (git_dir / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head if re.fullmatch(r"[0-9a-f]{40}", head) else None
        ref = head[5:]
        common = git_dir
        if (git_dir / "commondir").is_file():
            common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
        for base in (git_dir, common):
            loose = base / ref
            if loose.is_file():
                return loose.read_text().strip()
        for line in (common / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0]
    except (OSError, IndexError):
        return None
    return None


_GIT_CACHE: dict[tuple[str, str, str, str], Any] = {}
_GIT_CACHE_SIZE = 512


async def _cached(repo_root: Path, what: str, path: str, compute: Callable[[], Awaitable[Any]]) -> Any:
    head = head_commit(repo_root)
    key = (str(repo_root), head or "", what, path)
    if head is not None and key in _GIT_CACHE:
        return _GIT_CACHE[key]
    value = await compute()
    if head is not None and value:
        if len(_GIT_CACHE) >= _GIT_CACHE_SIZE:
            _GIT_CACHE.clear()
        _GIT_CACHE[key] = value
    return value


async def line_times(repo_root: Path, path: str, *, timeout_s: float = _GIT_TIMEOUT_S) -> list[float]:
    """The commit time of each line of the committed file, cached by HEAD (see `head_commit`)."""
    result: list[float] = await _cached(
        repo_root, "blame", path, lambda: _line_times(repo_root, path, timeout_s=timeout_s)
    )
    return result


async def file_history(repo_root: Path, path: str, *, timeout_s: float = _GIT_TIMEOUT_S) -> str:
    """The last commits touching a file with their diffs, bounded, cached by HEAD."""
    result: str = await _cached(
        repo_root, "log", path, lambda: _file_history(repo_root, path, timeout_s=timeout_s)
    )
    return result


async def _line_times(repo_root: Path, path: str, *, timeout_s: float) -> list[float]:
    """The commit time of each line of the committed file (`git blame --porcelain`), [] if none."""
    code, out, err = await _git(repo_root, "blame", "--porcelain", "HEAD", "--", path, timeout_s=timeout_s)
    if code != 0:
        _log.debug("no blame", path=path, error=err.strip()[:200])
        return []
    times: dict[str, float] = {}
    lines: dict[int, str] = {}
    current: str | None = None
    for row in out.splitlines():
        header = _BLAME_HEADER.match(row)
        if header is not None:
            current = header[1]
            lines[int(header[2])] = current
        elif current is not None and row.startswith("author-time "):
            times[current] = float(row.split(" ", 1)[1])
    if not lines:
        return []
    return [times.get(lines.get(n, ""), 0.0) for n in range(1, max(lines) + 1)]


async def _file_history(repo_root: Path, path: str, *, timeout_s: float) -> str:
    """The last commits touching a file, each with its diff of that file, bounded."""
    code, out, err = await _git(
        repo_root,
        "log",
        f"-n{_HISTORY_COMMITS}",
        "--date=short",
        "--format=commit %h %ad %an: %s",
        "-p",
        "--no-color",
        "--unified=2",
        "--",
        path,
        timeout_s=timeout_s,
    )
    if code != 0:
        _log.debug("no file history", path=path, error=err.strip()[:200])
        return ""
    return out.strip()[:_HISTORY_CHARS]
