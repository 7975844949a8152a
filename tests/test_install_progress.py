"""The first install says what it is doing: `make`'s pip runs show progress instead of minutes of silence,
and a failed install shows everything pip said."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import _fresh_clone

REPO = Path(__file__).resolve().parent.parent

# pip as it talks during an install, and as silent as the real one under --quiet.
FAKE_PIP = """#!{python}
import sys, time
if "--quiet" in sys.argv or "-q" in sys.argv:
    sys.exit(0)
names = ["discord.py", "aiohttp", "claude-agent-sdk"] + [f"package-{{n}}" for n in range(20)]
for name in names:
    print(f"Collecting {{name}}>=1")
    print(f"  Downloading {{name}}-1.0-py3-none-any.whl.metadata (4 kB)", flush=True)
print("Installing collected packages: " + ", ".join(names), flush=True)
print("Successfully installed " + " ".join(names))
sys.exit({code})
"""


def _fake_venv(clone: Path, code: int = 0) -> None:
    """The clone's .venv: pip is the fake above, python the real venv's (so mendbot's own steps run)."""
    (clone / ".venv").unlink()
    bin_dir = clone / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    pip = bin_dir / "pip"
    pip.write_text(FAKE_PIP.format(python=sys.executable, code=code))
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec {REPO / ".venv" / "bin" / "python"} "$@"\n')
    for script in (pip, python):
        script.chmod(0o755)


def test_the_first_make_run_install_shows_progress(tmp_path: Path) -> None:
    """`make runtime` on a clone with no install yet says what it installs and why it takes a while,
    counts the packages collected, says when it installs them and how long it took."""
    if shutil.which("make") is None:
        pytest.fail("make is required, as the README says")
    clone = _fresh_clone(tmp_path)
    _fake_venv(clone)
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MAKELEVEL", "MENDBOT_CONFIG"}}
    done = subprocess.run(
        ["make", "--no-print-directory", "runtime"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "PYTHONPATH": str(clone)},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("mendbot: installing into .venv — the first time takes a few minutes"), lines
    assert "  collecting packages: 1 so far (discord.py)" in lines
    assert "  collecting packages: 21 so far (package-17)" in lines
    assert "  installing 23 packages…" in lines
    assert any(line.startswith("  done in ") for line in lines), lines
    assert (clone / ".venv" / ".installed").exists()


def test_a_failed_install_shows_what_pip_said(tmp_path: Path) -> None:
    """When pip fails, its whole output is printed and its exit code is the install's."""
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".venv").symlink_to(tmp_path)  # replaced by _fake_venv
    _fake_venv(clone, code=3)
    done = subprocess.run(
        [sys.executable, str(REPO / "bot" / "tools" / "install_progress.py"), str(clone / ".venv/bin/pip"),
         "install", "-e", "."],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 3
    assert "Collecting claude-agent-sdk>=1" in done.stdout
    assert done.stdout.rstrip().endswith("mendbot: the install failed (pip exited 3); pip's output is above")
