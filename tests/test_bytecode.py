"""A materialised tree carries the bytecode the bot compiled from its blobs: used as Python's own cache,
never trusted past a change to the source, never where it would change what a check sees, and never
written over or through anything the tree holds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bot.trust.bytecode import cache_path
from bot.trust.trees import materialise
from tests.harness.repo import git as plain_git

_TAG = sys.implementation.cache_tag


def _repo_with(
    tmp_path: Path, files: dict[str, str], links: dict[str, str] | None = None
) -> tuple[Path, str]:
    repo = tmp_path / "repo"
    repo.mkdir()
    plain_git(repo, "init", "-q", "-b", "main")
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    for rel, target in (links or {}).items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, repo / rel)
    plain_git(repo, "add", "-A", "-f")
    plain_git(repo, "commit", "-q", "-m", "tree")
    return repo, plain_git(repo, "rev-parse", "HEAD")


def _python(dest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(dest), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=dest, env=env, capture_output=True, text=True, check=False
    )


async def test_python_imports_the_bytecode_and_compiles_a_source_changed_after_the_copy(
    tmp_path: Path,
) -> None:
    """The copy's modules load from the bytecode beside them (no compiling in the sandbox); a source the
    code under test rewrites is compiled from its new text, not served from the stale bytecode."""
    repo, sha = _repo_with(tmp_path, {"pkg/__init__.py": "", "pkg/mod.py": "VALUE = 1\n"})
    dest = tmp_path / "copy"
    dest.mkdir()
    await materialise(repo, sha, dest)

    pyc = dest / "pkg" / "__pycache__" / f"mod.{_TAG}.pyc"
    assert cache_path("pkg/mod.py") == f"pkg/__pycache__/mod.{_TAG}.pyc"
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b11  # hash-based, checked
    loaded = _python(dest, "-v", "-c", "import pkg.mod; print(pkg.mod.VALUE, pkg.mod.__file__)")
    assert loaded.stdout.split() == ["1", str(dest / "pkg" / "mod.py")]
    assert f"code object from '{pyc}'" in loaded.stderr

    (dest / "pkg" / "mod.py").write_text("VALUE = 2\n")  # the same size: only the hash tells
    again = _python(dest, "-c", "import pkg.mod; print(pkg.mod.VALUE)")
    assert again.stdout.strip() == "2"


async def test_a_source_that_warns_or_fails_to_compile_gets_no_bytecode(tmp_path: Path) -> None:
    """What warns while compiling is compiled in the sandbox, so a check run with `-W error` fails on
    it as on a fresh checkout; a syntax error is the sandbox's to report; neither stops the copy."""
    repo, sha = _repo_with(
        tmp_path,
        {"warns.py": 'PATTERN = "\\d+"\n', "broken.py": "def (:\n", "fine.py": "OK = True\n"},
    )
    dest = tmp_path / "copy"
    dest.mkdir()
    await materialise(repo, sha, dest)

    cached = {path.name for path in (dest / "__pycache__").iterdir()}
    assert cached == {f"fine.{_TAG}.pyc"}
    strict = _python(dest, "-W", "error", "-c", "import warns")
    assert strict.returncode != 0 and "invalid escape sequence" in strict.stderr
    assert "SyntaxError" in _python(dest, "-c", "import broken").stderr


async def test_the_tree_s_own_cache_paths_are_left_as_the_tree_has_them(tmp_path: Path) -> None:
    """A bytecode file the tree itself holds is written as it is, not replaced; a `__pycache__` that the
    tree makes a symlink stays a symlink, and nothing is written through it; a directory where the
    bytecode would go is left alone."""
    own = b"the tree's own bytes"
    repo, sha = _repo_with(
        tmp_path,
        {
            "own/x.py": "X = 1\n",
            "target/keep.txt": "kept\n",
            "linked/y.py": "Y = 1\n",
            "dir/z.py": "Z = 1\n",
            f"dir/__pycache__/z.{_TAG}.pyc/inside.txt": "a directory, not bytecode\n",
        },
        links={"linked/__pycache__": "../target"},
    )
    (repo / "own" / "__pycache__").mkdir()
    (repo / "own" / "__pycache__" / f"x.{_TAG}.pyc").write_bytes(own)
    plain_git(repo, "add", "-A", "-f")
    plain_git(repo, "commit", "-q", "-m", "own bytecode")
    sha = plain_git(repo, "rev-parse", "HEAD")
    dest = tmp_path / "copy"
    dest.mkdir()
    await materialise(repo, sha, dest)

    assert (dest / "own" / "__pycache__" / f"x.{_TAG}.pyc").read_bytes() == own
    assert os.readlink(dest / "linked" / "__pycache__") == "../target"
    assert sorted(path.name for path in (dest / "target").iterdir()) == ["keep.txt"]
    assert (dest / "dir" / "__pycache__" / f"z.{_TAG}.pyc").is_dir()
