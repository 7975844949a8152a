"""mendbot as users install it: this checkout built into a wheel and installed into a virtualenv of its
own, for the tests that run `mendbot` beside a bot (attach, adopt, the attach demo).

The wheel is built once per test session (every xdist worker of the session shares it, under a lock) and
installed with `--no-deps` into a fresh virtualenv whose site-packages also holds one `.pth` line naming
this interpreter's site-packages: mendbot's dependencies come from there, already installed, while
`mendbot` itself is the wheel's — the checkout's editable install is not on that path (its import hook
is set up by a `.pth` file of its own, which a path line does not run), and neither is any `bot` or
`cogs` of the checkout.

    wheel = installed_wheel(tmp_path_factory)
    subprocess.run([str(wheel.mendbot), "adopt"], cwd=repo)
"""

from __future__ import annotations

import fcntl
import os
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
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "mendbot-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (wheel,) = dist.glob("mendbot-*.whl")
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    _run([*pip, "install", "--no-deps", "--quiet", str(wheel)])


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
