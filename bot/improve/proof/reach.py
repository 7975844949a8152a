"""What a change can make behave differently: the kinds whose handler file it touches, or imports (however
indirectly, within the repository) a file it touches — the calls that worked the proof sends again to see
they still work (`mendbot.improve.proof.replay_plan`)."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

from mendbot.db import handlers as handler_queries

__all__ = ["affected_kinds"]

_IMPORT_DEPTH = 4


def affected_kinds(
    handlers: list[handler_queries.HandlerLocation], changed: Iterable[str], root: Path
) -> list[str]:
    """The kinds whose handler file the change touches, or imports (however indirectly, within the
    repository at `root`) a file the change touches: what the change can make behave differently."""
    changed_files = {path for path in changed if path.endswith(".py")}
    if not changed_files:
        return []
    reaches: dict[str, bool] = {}
    found = []
    for location in handlers:
        if location.path not in reaches:
            reaches[location.path] = _reaches(location.path, changed_files, root)
        if reaches[location.path] and location.kind not in found:
            found.append(location.kind)
    return found


def _reaches(path: str, targets: set[str], root: Path) -> bool:
    frontier, seen = [path], {path}
    for _ in range(_IMPORT_DEPTH + 1):
        if any(file in targets for file in frontier):
            return True
        following = []
        for file in frontier:
            for imported in _imports(file, root):
                if imported not in seen:
                    seen.add(imported)
                    following.append(imported)
        frontier = following
    return False


def _imports(path: str, root: Path) -> list[str]:
    """The repository files `path` imports (absolute and relative imports resolved as Python would)."""
    try:
        tree = ast.parse((root / path).read_text(encoding="utf-8"), filename=path)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    package = path.removesuffix(".py").split("/")[:-1]  # a module's package, or an __init__'s own
    modules: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module.split(".") if node.module else []
            if node.level:
                up = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                base = [*up, *base]
            modules.append(".".join(base))
            modules += [".".join([*base, alias.name]) for alias in node.names]
    files = []
    for module in modules:
        relative = "/".join(part for part in module.split(".") if part)
        for candidate in (f"{relative}.py", f"{relative}/__init__.py"):
            if relative and (root / candidate).is_file():
                files.append(candidate)
                break
    return files
