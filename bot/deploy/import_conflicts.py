"""Import-only conflicts of a rebase, resolved (`mendbot.deploy.merge` loads this with the first conflict).

**Import-only conflicts** (`resolve_import_conflicts`). When a rebase stops on a conflict, each
conflicting Python file is read: if every conflict hunk has only `import` / `from … import` statements
on both sides and lies within the module's leading import block (after the docstring), the hunk becomes
the union of both sides' statements (main's first, then the branch's that main lacks), sorted by ruff's
isort when the repository's ruff configuration selects it, and the rebase continues. Anything else — a
conflict in code, in a non-Python file, an import inside a function, text that no longer parses — is
not touched: the rebase is aborted and the proposal goes back to the human with the files named. A
resolved rebase is re-verified like every rebase.
"""

from __future__ import annotations

import ast
import difflib
import tomllib
from pathlib import Path

from mendbot.kernel.log import get_logger
from mendbot.kernel.process import run_process

__all__ = [
    "change_without_imports",
    "isort_configured",
    "resolve_import_conflicts",
    "resolve_import_hunks",
    "strip_import_block",
]

_log = get_logger(__name__)
_RUFF_TIMEOUT_S = 60.0


def _only_imports(lines: list[str]) -> list[ast.stmt] | None:
    """The statements of `lines` if they are nothing but imports (blank lines and comments allowed)."""
    try:
        tree = ast.parse("".join(lines))
    except SyntaxError:
        return None
    if all(isinstance(node, ast.Import | ast.ImportFrom) for node in tree.body):
        return list(tree.body)
    return None


def _statements(lines: list[str], nodes: list[ast.stmt]) -> list[tuple[str, str]]:
    """(normalised form, source lines) of each statement, so a statement is recognised on both sides."""
    found = []
    for node in nodes:
        end = node.end_lineno or node.lineno
        found.append((ast.dump(node), "".join(lines[node.lineno - 1 : end])))
    return found


def _leading_block_end(tree: ast.Module) -> int:
    """The last line of the module's leading docstring and imports (0 when it starts with code)."""
    end = 0
    for index, node in enumerate(tree.body):
        docstring = (
            index == 0
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        )
        if not (docstring or isinstance(node, ast.Import | ast.ImportFrom)):
            break
        end = node.end_lineno or node.lineno
    return end


def resolve_import_hunks(text: str) -> str | None:
    """`text` with every conflict hunk resolved as the union of its imports, or None if any hunk is
    more than imports in the leading import block (module docstring)."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    hunks: list[tuple[int, int]] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("<<<<<<<"):
            out.append(lines[i])
            i += 1
            continue
        sides: dict[str, list[str]] = {"ours": [], "base": [], "theirs": []}
        section = "ours"
        i += 1
        while i < len(lines) and not lines[i].startswith(">>>>>>>"):
            line = lines[i]
            if line.startswith("|||||||"):
                section = "base"  # diff3 style: the common ancestor, not part of either side
            elif line.rstrip("\r\n") == "=======":
                section = "theirs"
            else:
                sides[section].append(line)
            i += 1
        if i >= len(lines):
            return None  # an unterminated hunk: not something to guess about
        i += 1
        ours, theirs = _only_imports(sides["ours"]), _only_imports(sides["theirs"])
        if ours is None or theirs is None:
            return None
        start = len(out)
        kept = _statements(sides["ours"], ours)
        seen = {key for key, _ in kept}
        merged = [source for _, source in kept]
        merged += [source for key, source in _statements(sides["theirs"], theirs) if key not in seen]
        out.extend(source if source.endswith("\n") else source + "\n" for source in merged)
        hunks.append((start, len(out)))
    if not hunks:
        return None
    result = "".join(out)
    try:
        tree = ast.parse(result)
    except SyntaxError:
        return None
    block_end = _leading_block_end(tree)
    if any(end > block_end for _, end in hunks):
        return None  # an import below code (in a function, after a statement) is code, not the header
    return result


def isort_configured(root: Path) -> bool:
    """Whether the repository's ruff configuration selects the isort rules (`I`)."""
    candidates = [
        (root / "ruff.toml", ()),
        (root / ".ruff.toml", ()),
        (root / "pyproject.toml", ("tool", "ruff")),
    ]
    for path, prefix in candidates:
        if not path.is_file():
            continue
        try:
            config = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
        for key in prefix:
            config = config.get(key) or {}
        if not config:
            continue
        lint = config.get("lint") or {}
        selected: list[str] = []
        for section in (config, lint):
            for name in ("select", "extend-select"):
                value = section.get(name)
                if isinstance(value, list):
                    selected += [str(rule) for rule in value]
        return any(rule in {"ALL", "I"} or rule.startswith("I0") for rule in selected)
    return False


async def _ruff_sort(root: Path, files: list[str]) -> None:
    """Sort the imports of `files` with ruff's isort (it parses, never runs, the code)."""
    from ruff.__main__ import find_ruff_bin  # the ruff wheel's own locator for its binary

    result = await run_process(
        [find_ruff_bin(), "check", "--no-cache", "--quiet", "--select", "I", "--fix", "--exit-zero", *files],
        cwd=root,
        # No secrets, and no HOME or XDG config of anyone's: the repository's own ruff configuration.
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"},
        timeout_s=_RUFF_TIMEOUT_S,
    )
    if result.code != 0:
        _log.warning("ruff_sort_failed", files=files, output=(result.errors or result.output)[:300])


def _resolve_files(root: Path, files: list[str]) -> bool:
    """Rewrite every file of `files` with its hunks united, or none of them (see below)."""
    resolved: dict[Path, str] = {}
    real_root = root.resolve()
    for name in files:
        path = root / name
        if path.suffix != ".py" or path.is_symlink() or not path.is_file():
            return False
        if not path.resolve().is_relative_to(real_root):  # never write through a link out of the tree
            return False
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            return False
        merged = resolve_import_hunks(text)
        if merged is None:
            return False
        resolved[path] = merged
    for path, text in resolved.items():
        path.write_text(text)
    return True


async def resolve_import_conflicts(root: Path, files: list[str]) -> bool:
    """Resolve the conflicts in `files` (paths in the worktree `root`) if all are import-only.

    All or nothing: True after every file was rewritten (and sorted when ruff's isort is configured);
    False with nothing written when any file has a conflict that is not import-only.
    """
    if not _resolve_files(root, files):
        return False
    if isort_configured(root):
        await _ruff_sort(root, files)
    _log.info("import_conflicts_resolved", files=files)
    return True


def strip_import_block(text: str) -> list[str]:
    """`text`'s lines without its leading import block (docstring kept): what an import-only
    resolution leaves alone. Text that does not parse is returned whole."""
    lines = text.splitlines()
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return lines
    drop: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            drop.update(range(node.lineno - 1, node.end_lineno or node.lineno))
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            break
    return [line for index, line in enumerate(lines) if index not in drop]


def change_without_imports(before: str, after: str) -> list[str]:
    """The change from `before` to `after` outside the import block, with no line numbers."""
    diff = difflib.unified_diff(strip_import_block(before), strip_import_block(after), n=0, lineterm="")
    return ["@@" if line.startswith("@@") else line for line in list(diff)[2:]]
