"""mendbot as users install it: this checkout built into a wheel and installed into a virtualenv of its
own, for the tests that run `mendbot` beside a bot (attach, adopt, the attach demo).

The wheel is built once per test session (every xdist worker of the session shares it, under a lock, in a
folder named for the session, `.mendbot-wheel-*` beside this virtualenv: `start_session` names it, the
workers inherit the name, and `end_session` removes the folder once the session is over) and installed
with `--no-deps` into a virtualenv made from this one's files (hard links: no copy, no download), with
this checkout's editable install taken out:
mendbot's dependencies are installed there as a user's would be, while `mendbot` itself is the wheel's,
and no `bot` or `cogs` of the checkout is importable. Everything the sandbox must see lives inside that
virtualenv, as in a real install.

    wheel = installed_wheel()
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
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.harness.repo import copy_of_project

__all__ = ["InstalledWheel", "build_wheel", "end_session", "installed_wheel", "start_session"]

_SESSION = "MENDBOT_TEST_SESSION"  # the session's name, in the environment its workers inherit


@dataclass(frozen=True)
class InstalledWheel:
    """A virtualenv with the built wheel installed: its interpreter and its `mendbot` command."""

    wheel: Path
    python: Path
    mendbot: Path


def installed_wheel() -> InstalledWheel:
    """The session's wheel and virtualenv, built and installed by the first worker to ask."""
    start_session()
    root = _root()
    root.mkdir(exist_ok=True)
    venv = root / "venv"
    done = root / "installed"
    with (root / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            for partial in (venv, root / "dist"):  # a build cut short: made again, not built upon
                shutil.rmtree(partial, ignore_errors=True)
            _build_and_install(root, venv)
            done.write_text("ok")
    wheel = next((root / "dist").glob("mendbot-*.whl"))
    return InstalledWheel(wheel=wheel, python=venv / "bin" / "python", mendbot=venv / "bin" / "mendbot")


def start_session() -> None:
    """Name this test session, unless it was named by the process that started this one (xdist's workers,
    a pytest a test runs): they share its wheel. The name starts with the naming process's id."""
    os.environ.setdefault(_SESSION, f"{os.getpid()}-{uuid.uuid4().hex}")


def end_session() -> None:
    """The session's wheel and virtualenv, removed — only by the process that named the session: a pytest
    run inside it (its workers, a test's own) ends before it does."""
    if os.environ.get(_SESSION, "").startswith(f"{os.getpid()}-"):
        shutil.rmtree(_root(), ignore_errors=True)


def _root() -> Path:
    """The session's folder: beside this virtualenv, on its file system, where that can be written (hard
    links cannot leave a file system, and the run's /tmp may be a tmpfs of its own: tests/harness/
    in_tmpfs.py); else in the temp dir."""
    name = f"mendbot-wheel-{os.environ[_SESSION]}"
    beside = Path(sys.prefix).parent
    if os.access(beside, os.W_OK) and beside.stat().st_dev == Path(sys.prefix).stat().st_dev:
        return beside / f".{name}"
    return Path(tempfile.gettempdir()) / name


def build_wheel(dist: Path) -> Path:
    """This checkout built into a wheel in `dist`, from a private copy of its files (`copy_of_project`).
    setuptools builds inside the tree it is given (`build/`, `mendbot.egg-info/`): two builds of the
    checkout itself at once — two test sessions, a bench beside the tests — would share one build folder,
    and one of them fail on files the other removed."""
    with tempfile.TemporaryDirectory(prefix="mendbot-build-") as temp:
        copy_of_project(Path(temp))
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), temp])
    (wheel,) = dist.glob("mendbot-*.whl")
    return wheel


def _build_and_install(root: Path, venv: Path) -> None:
    wheel = build_wheel(root / "dist")
    source = Path(sys.prefix)
    try:
        _run(["cp", "-al", str(source), str(venv)])  # hard links: instant, and nothing of the source changes
    except RuntimeError:  # on another file system than the source: a copy
        shutil.rmtree(venv, ignore_errors=True)
        _run(["cp", "-a", str(source), str(venv)])
    purelib = Path(sysconfig.get_paths()["purelib"].replace(str(source), str(venv), 1))
    for editable in [*purelib.glob("__editable__*mendbot*"), *purelib.glob("mendbot-*.dist-info")]:
        shutil.rmtree(editable) if editable.is_dir() else editable.unlink()
    for script in (venv / "bin").iterdir():  # the scripts name this virtualenv's interpreter: theirs
        if script.is_file() and not script.is_symlink() and script.read_bytes()[:2] == b"#!":
            text = script.read_text(errors="surrogateescape").replace(str(source), str(venv))
            script.unlink()  # a new file, not the linked one
            script.write_text(text, errors="surrogateescape")
            script.chmod(0o755)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps"]
    _run([*pip, "--quiet", str(wheel)])


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
