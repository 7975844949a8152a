"""`python -m mendbot.tools.warm`: a sandboxed pytest finds every plugin already rewritten."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import simcord


def _collect_nothing(cwd: Path, *paths: Path) -> subprocess.CompletedProcess[str]:
    """A pytest started as the sandbox starts it: writing no bytecode. PYTEST_DEBUG traces its cache."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_DEBUG": "1", "PYTEST_ADDOPTS": ""}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *map(str, paths)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_after_warm_a_pytest_that_writes_no_bytecode_reads_the_rewritten_plugins(tmp_path: Path) -> None:
    """After `warm`, a pytest that writes no bytecode finds an installed plugin already rewritten."""
    plugin = Path(simcord.__file__)  # an installed pytest plugin's package: pytest rewrites all of it
    found = f"found cached rewritten pyc for {plugin}"
    for cached in plugin.parent.glob("__pycache__/__init__.*-pytest-*.pyc"):
        cached.unlink()
    cold = _collect_nothing(tmp_path)
    assert "installed rewrite import hook" in cold.stderr and found not in cold.stderr

    warmed = subprocess.run(
        [sys.executable, "-m", "mendbot.tools.warm"],
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},  # as on hosts that set it for everyone
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert warmed.returncode == 0, warmed.stderr

    assert found in _collect_nothing(tmp_path).stderr


def test_warm_with_tests_caches_the_suites_rewritten_modules() -> None:
    """After `warm --tests`, a pytest that writes no bytecode reads this suite's modules already rewritten."""
    root = Path(__file__).resolve().parent.parent
    this = Path(__file__).resolve()
    found = f"found cached rewritten pyc for {this}"
    for cached in this.parent.glob(f"__pycache__/{this.stem}.*-pytest-*.pyc"):
        cached.unlink()
    assert found not in _collect_nothing(root, this).stderr

    warmed = subprocess.run(
        [sys.executable, "-m", "mendbot.tools.warm", "--tests"],
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert warmed.returncode == 0, warmed.stderr

    assert found in _collect_nothing(root, this).stderr
