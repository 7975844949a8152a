"""mendbot as users install it: this checkout built into a wheel and installed into a virtualenv of its
own, for the tests that run `mendbot` beside a bot (attach, adopt, the attach demo).

The wheel is built once per test session (every xdist worker of the session shares it, under a lock) and
installed with `--no-deps` into a virtualenv made from this one's files (hard links: no copy, no
download), with this checkout's editable install taken out: mendbot's dependencies are installed there
as a user's would be, while `mendbot` itself is the wheel's, and no `bot` or `cogs` of the checkout is
importable. Everything the sandbox must see lives inside that virtualenv, as in a real install.

    wheel = installed_wheel(tmp_path_factory)
    subprocess.run([str(wheel.mendbot), "adopt"], cwd=repo)
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.harness.repo import PROJECT

__all__ = ["InstalledWheel", "installed_wheel"]


@dataclass(frozen=True)
class InstalledWheel:
    """A virtualenv with the built wheel installed: its interpreter and its `mendbot` command."""

    wheel: Path
    python: Path
    mendbot: Path


def installed_wheel() -> InstalledWheel:
    """The session's wheel and virtualenv, built and installed by the first worker to ask."""
    session = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
    root = Path(tempfile.gettempdir()) / f"mendbot-wheel-{session}"
    root.mkdir(exist_ok=True)
    venv = root / "venv"
    done = root / "installed"
    with (root / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            _build_and_install(root, venv)
            done.write_text("ok")
    wheel = next((root / "dist").glob("mendbot-*.whl"))
    return InstalledWheel(wheel=wheel, python=venv / "bin" / "python", mendbot=venv / "bin" / "mendbot")


def _build_and_install(root: Path, venv: Path) -> None:
    dist = root / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(PROJECT)])
    source = Path(sys.prefix)
    _run(["cp", "-al", str(source), str(venv)])  # hard links: instant, and nothing of the source changes
    purelib = Path(sysconfig.get_paths()["purelib"].replace(str(source), str(venv), 1))
    for editable in [*purelib.glob("__editable__*mendbot*"), *purelib.glob("mendbot-*.dist-info")]:
        shutil.rmtree(editable) if editable.is_dir() else editable.unlink()
    for script in (venv / "bin").iterdir():  # the scripts name this virtualenv's interpreter: theirs
        if script.is_file() and not script.is_symlink() and script.read_bytes()[:2] == b"#!":
            text = script.read_text(errors="surrogateescape").replace(str(source), str(venv))
            script.unlink()  # a new file, not the linked one
            script.write_text(text, errors="surrogateescape")
            script.chmod(0o755)
    (wheel,) = dist.glob("mendbot-*.whl")
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps"]
    _run([*pip, "--quiet", str(wheel)])


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
