"""The shape of the code: the layers the import contracts keep, the diagram docs/architecture.md shows,
the trust base protected, and modules small enough to read."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest

from mendbot.kernel.sections import DEFAULT_PROTECTED_PATHS
from mendbot.tools.architecture import diagram
from mendbot.trust.path_rules import protected_entry

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_LINES = 600
# Modules longer than MAX_LINES, each with the reason it stays whole in its docstring.
WHOLE = "stays whole"


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_contracts_hold() -> None:
    """`lint-imports` (run by `make lint`) keeps every contract, the acyclic one included."""
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    """Storage importing the runtime — an import running upward — makes `lint-imports` fail, naming it."""
    for part in ("bot", "cogs"):
        shutil.copytree(REPO / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    core = tmp_path / "bot" / "db" / "core.py"
    core.write_text(core.read_text() + "\nfrom mendbot.runtime import app as _upward  # noqa\n")

    result = _lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout
    assert "Layers: each imports only the layers below it BROKEN" in result.stdout
    assert "mendbot.db.core -> mendbot.runtime.app" in result.stdout


def test_docs_show_the_diagram_the_code_makes() -> None:
    """docs/architecture.md's diagram is `python -m mendbot.tools.architecture`'s output, not drawn by
    hand."""
    architecture = (REPO / "docs" / "architecture.md").read_text()
    assert f"```mermaid\n{diagram()}```" in architecture


def _modules(package: str) -> list[str]:
    root = REPO / package
    return sorted(
        path.relative_to(REPO).as_posix() for path in root.rglob("*.py") if "__pycache__" not in path.parts
    )


# What the bot does for its users, changed by a plain "ship it" like cogs/.
FEATURES = ("bot/features/", "bot/chat/")


@pytest.mark.parametrize("module", _modules("bot"))
def test_every_module_of_the_bot_but_its_features_is_protected(module: str) -> None:
    """A change to the bot's own machinery (the trust base, storage, wiring, the kernel) needs a security
    run and the security form by default: a package added to bot/ is protected unless it is a feature."""
    feature = module.startswith(FEATURES)
    assert (protected_entry(module, DEFAULT_PROTECTED_PATHS) is None) == feature, module


def test_the_storage_history_and_its_snapshot_are_protected() -> None:
    """A migration runs on the live database at the next start; the snapshot makes every new file."""
    for path in ("bot/db/history/versions/v0014_next.py", "bot/db/history/fresh.sql"):
        assert protected_entry(path, DEFAULT_PROTECTED_PATHS) == "bot/db/", path


def test_the_root_of_bot_shows_the_layers() -> None:
    """Only the entry point (and the package marker) live at the root of bot/: everything else is in a
    layer's package."""
    loose = sorted(path.name for path in (REPO / "bot").glob("*.py"))
    assert loose == ["__init__.py", "__main__.py"]


@pytest.mark.parametrize("module", [*_modules("bot"), *_modules("cogs")])
def test_modules_are_small_enough_to_read(module: str) -> None:
    """A module is at most ~600 lines, or its docstring says why it stays whole."""
    source = (REPO / module).read_text()
    if source.count("\n") <= MAX_LINES or fnmatch(module, "bot/db/history/versions/*"):
        return
    docstring = ast.get_docstring(ast.parse(source)) or ""
    assert WHOLE in docstring, f"{module}: {source.count(chr(10))} lines, and no word on why it {WHOLE}"


def test_only_cogs_use_discords_ui_types() -> None:
    """Views, buttons and modals are the cogs' business: nothing under bot/ names discord.ui."""
    users = [module for module in _modules("bot") if "discord.ui" in (REPO / module).read_text()]
    assert users == []


def test_pyproject_lists_every_package() -> None:
    """pyproject.toml lists its packages (setuptools' find cannot install bot/attach as `mendbot` too):
    every package of bot/ and cogs/ is listed, and `mendbot` maps to bot/attach."""
    import tomllib

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(path.parent.relative_to(REPO).parts)
        for root in ("bot", "cogs")
        for path in (REPO / root).rglob("__init__.py")
        if "__pycache__" not in path.parts
    }
    assert set(setuptools["packages"]) == found | {"mendbot"}
    assert setuptools["package-dir"] == {"mendbot": "bot/attach"}
