"""Which repository paths are secret and which are protected: the path rules every layer shares.

The guard (``mendbot.trust.guard``) refuses the agent's tool calls on them, and the same two functions
judge a run's claim, its evidence, trees as data and an approval, so they live apart from the guard
and its SDK hook: what a path is does not depend on who asks.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import PurePosixPath

__all__ = ["protected_entry", "secret_reason"]

_KEY_FILES = ("id_rsa", "id_dsa", "id_ecdsa", "id_ed25519")


def protected_entry(rel: str, entries: Iterable[str]) -> str | None:
    """The entry of ``entries`` that protects the repository-relative path ``rel``, or None.

    ``dir/`` protects that directory; an entry with a ``/`` is a path from the root (a glob, or a
    directory it names); a bare name (glob allowed) protects that file name anywhere in the tree.
    """
    path = PurePosixPath(rel.removeprefix("./")).as_posix()
    parts = path.split("/")
    for raw in entries:
        entry = raw.strip().removeprefix("./")
        if not entry:
            continue
        base = entry.rstrip("/")
        if entry.endswith("/") or "/" in base:
            if path == base or path.startswith(base + "/") or fnmatchcase(path, base):
                return entry
        elif any(fnmatchcase(part, base) for part in parts):
            return entry
    return None


def secret_reason(rel: str) -> str | None:
    """Why a worktree-relative path is a secret file, or None if it is not one."""
    parts = PurePosixPath(rel).parts
    if not parts or parts == (".",):
        return None
    if parts[0] == "data":
        return f"{rel} is in data/ (runtime state and secrets)"
    if parts[:2] == (".git", "config"):
        return f"{rel} is git's config (may hold credentials)"
    for name in parts:
        if name == ".env" or (name.startswith(".env.") and name != ".env.example"):
            return f"{rel} is an environment file (secrets)"
        if name == ".netrc":
            return f"{rel} is a .netrc (credentials)"
        if name.endswith((".pem", ".key")) or name.startswith(_KEY_FILES):
            return f"{rel} is a key file"
        if name.endswith((".db", ".sqlite", ".sqlite3")):
            return f"{rel} is a database"
    return None
