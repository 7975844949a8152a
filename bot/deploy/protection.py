"""What git says about a proposal for its approval: the protected files its diff touches, its merge
base, and the commit its local branch points at now.

Plain functions over a repository, kept apart from the approval service (`mendbot.deploy.approval`) that
asks them: a protected file in the diff asks for the security form, a branch that moved makes the
approvals in hand stale, and a diff git cannot read counts as protected.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec

from mendbot.kernel.git import git
from mendbot.trust.path_rules import protected_entry

__all__ = ["DiffUnavailable", "is_protected", "touches_protected"]

_GIT_TIMEOUT_S = 60.0


class DiffUnavailable(Exception):
    """git could not list the files a proposal changes (missing commit, not a repository...)."""


class _Protection(msgspec.Struct, frozen=True):
    paths: tuple[str, ...]
    error: str | None = None  # the diff could not be read: treated as protected (fail closed)

    @property
    def protected(self) -> bool:
        return bool(self.paths) or self.error is not None


def is_protected(path: str, protected: Sequence[str]) -> bool:
    """True if `path` is protected by one of the entries (`mendbot.trust.path_rules.protected_entry`)."""
    return protected_entry(path, protected) is not None


async def _git(repo_root: Path, *args: str) -> tuple[int | None, str, str]:
    result = await git(repo_root, *args, check=False, timeout_s=_GIT_TIMEOUT_S)
    return result.code, result.output, result.errors.strip()


def _revision(value: str) -> str:
    # Revisions come from the database, but a value starting with "-" would be read as an option.
    if not value or value.startswith("-"):
        raise DiffUnavailable(f"not a revision: {value!r}")
    return value


async def touches_protected(repo_root: Path, base: str, head: str, protected: Sequence[str]) -> list[str]:
    """The protected files among those changed in `base..head`, sorted; DiffUnavailable if git fails.

    Renames are listed as a deletion plus an addition, so moving a protected file away counts too.
    """
    code, output, errors = await _git(
        repo_root, "diff", "--name-only", "--no-renames", "-z", f"{_revision(base)}..{_revision(head)}", "--"
    )
    if code != 0:
        raise DiffUnavailable(f"git diff {base[:7]}..{head[:7]} failed: {errors or f'exit {code}'}")
    changed = {name for name in output.split("\0") if name}
    return sorted(name for name in changed if is_protected(name, protected))


async def _merge_base(repo_root: Path, head: str) -> str:
    code, output, errors = await _git(repo_root, "merge-base", "refs/heads/main", _revision(head))
    if code != 0 or not output.strip():
        raise DiffUnavailable(f"no merge base of main and {head[:7]}: {errors or f'exit {code}'}")
    return output.strip()


async def _branch_head(repo_root: Path, branch: str) -> str | None:
    """The commit `branch` points at in `repo_root`, or None if there is no such local branch."""
    try:
        code, output, _ = await _git(
            repo_root, "rev-parse", "--verify", "--quiet", f"refs/heads/{_revision(branch)}^{{commit}}"
        )
    except (DiffUnavailable, OSError):
        return None
    return output.strip() if code == 0 and output.strip() else None
