"""The tree's own packages, importable under the names its `pyproject.toml` gives them.

mendbot's repository is `bot/` on disk and `mendbot` when imported; an install (editable, in a checkout)
maps the one to the other, but a copy of the tree — a worktree in the sandbox, a test's repository copy —
has no install of its own. `tree_packages` reads the mapping the tree declares (setuptools'
`package-dir`); `write_import_boot` makes it hold in a process that has the boot directory first on its
PYTHONPATH, at the modules' real paths. The sandbox does both for every jail (`mendbot.trust.sandbox`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

__all__ = ["tree_packages", "write_import_boot"]

_BOOT = '''"""mendbot's import boot: packages importable under names of their own, at their real paths
(`mendbot.trust.tree_imports.write_import_boot` wrote this file and packages.json beside it)."""

import json
import sys
from importlib.util import spec_from_file_location

with open(__file__.rsplit("/", 1)[0] + "/packages.json", encoding="utf-8") as _listed:
    _PACKAGES = json.load(_listed)


class _NamedPackages:
    @staticmethod
    def find_spec(name, path=None, target=None):
        folder = _PACKAGES.get(name)
        if folder is None:
            return None
        return spec_from_file_location(name, folder + "/__init__.py", submodule_search_locations=[folder])


sys.meta_path.insert(0, _NamedPackages)
'''


def write_import_boot(directory: Path, packages: Mapping[str, Path]) -> None:
    """Make `directory` (first on a process's PYTHONPATH) import each of `packages` under its name, from
    its folder: a `sitecustomize` that Python's start runs, and the list it reads. The modules keep their
    real paths (a link would not), so tracebacks, coverage and the watch name the tree's files. Nothing is
    written for no packages: the directory stays empty."""
    directory.mkdir(parents=True, exist_ok=True)
    if packages:
        listed = {name: str(folder) for name, folder in packages.items()}
        (directory / "packages.json").write_text(json.dumps(listed), encoding="utf-8")
        (directory / "sitecustomize.py").write_text(_BOOT, encoding="utf-8")


def tree_packages(tree: Path) -> dict[str, Path]:
    """The packages the tree's `pyproject.toml` names apart from their folders (setuptools'
    `package-dir`, top-level names only: `{"mendbot": "bot"}`) → those folders, each inside the tree.
    The file is data: a folder outside the tree, a link, or anything unreadable maps nothing."""
    import tomllib

    pyproject = tree / "pyproject.toml"
    try:
        if pyproject.is_symlink() or pyproject.stat().st_size > 1024 * 1024:
            return {}
        declared = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["setuptools"]["package-dir"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    found: dict[str, Path] = {}
    for name, folder in declared.items() if isinstance(declared, dict) else ():
        if not (isinstance(name, str) and name.isidentifier() and isinstance(folder, str)):
            continue
        where = tree / folder
        if where.is_dir() and not where.is_symlink() and where.resolve().is_relative_to(tree.resolve()):
            found[name] = where
    return found
