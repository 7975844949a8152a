"""Fingerprints: the same bug gives the same fingerprint across restarts, users and ids.

A fingerprint hashes the exception type, the message with the variable parts normalised
(numbers, snowflakes, hex, quoted values, paths' line numbers) and the innermost in-repo
frames, each as `file:function:source line` — the source text rather than the line number, so
an unrelated edit elsewhere in the file does not change it, while two call sites still differ.
"""

from __future__ import annotations

import functools
import hashlib
import linecache
import re
import traceback
from pathlib import Path

__all__ = ["fingerprint", "in_repo_frames", "normalise_message", "relative_path", "root_prefixes"]

_FRAMES_IN_FINGERPRINT = 3
_NORMALISE = [
    (re.compile(r"(['\"`]).*?\1"), r"\1?\1"),  # quoted values
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "0x?"),  # addresses
    (re.compile(r"\b[0-9a-fA-F]{7,40}\b(?=[^0-9a-fA-F]|$)"), "<hex>"),  # hashes, shas
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),  # numbers, ids, durations
]


def normalise_message(message: str) -> str:
    text = message.strip()[:500]
    for pattern, replacement in _NORMALISE:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def in_repo_frames(error: BaseException, root: Path, *more_roots: Path) -> list[tuple[str, int, str]]:
    """(path relative to its root, line, function) of frames in the project, innermost last.

    `more_roots` are other checkouts whose code may run here (the repository the bot works on
    when it is not the one it was started from); a frame belongs to the first root holding it.
    """
    prefixes = root_prefixes((root, *more_roots))
    frames = []
    # walk_tb rather than extract_tb: no linecache refresh (a stat per file) on the hot path.
    for frame, line in traceback.walk_tb(error.__traceback__):
        relative = relative_path(frame.f_code.co_filename, prefixes)
        if relative is not None:
            frames.append((relative, line, frame.f_code.co_name))
    return frames


def relative_path(filename: str, prefixes: tuple[str, ...]) -> str | None:
    """`filename` relative to the first of `prefixes` (root paths ending in "/") holding it."""
    if "/site-packages/" in filename or "/.venv/" in filename:
        return None
    for prefix in prefixes:
        if filename.startswith(prefix):
            return filename[len(prefix) :]
    return None


@functools.cache
def root_prefixes(roots: tuple[Path, ...]) -> tuple[str, ...]:
    # Deeper roots first: a repository nested in another (a test's temp repo) claims its own files.
    return tuple(sorted({str(root.resolve()) + "/" for root in roots}, key=len, reverse=True))


def fingerprint(error: BaseException, root: Path, *more_roots: Path) -> tuple[str, list[str]]:
    """(fingerprint, frames as "file:line:function") for an exception."""
    frames = in_repo_frames(error, root, *more_roots)
    prefixes = root_prefixes((root, *more_roots))
    parts = [type(error).__qualname__, normalise_message(str(error))]
    for path, line, function in frames[-_FRAMES_IN_FINGERPRINT:]:
        source = next(
            (text for prefix in prefixes if (text := linecache.getline(prefix + path, line).strip())), ""
        )
        parts.append(f"{path}:{function}:{source}")
    digest = hashlib.sha1("\n".join(parts).encode(), usedforsecurity=False).hexdigest()[:16]
    return digest, [f"{path}:{line}:{function}" for path, line, function in frames]
