"""A fresh checkout comes with the bytecode of its Python files (mendbot.trust.bytecode): a sandboxed
process imports them without compiling, a source changed since is never run from a stale pyc, the
bot's own process compiles none of them, and nothing is written through a link or over a file the tree
holds, nor from a cache another may write."""

from __future__ import annotations

import asyncio
import os
import py_compile
import sys
from importlib.util import cache_from_source
from pathlib import Path

import pytest

from mendbot.kernel import user_cache
from mendbot.trust.sandbox import Sandbox
from mendbot.trust.trees import materialise
from tests.harness.repo import git

MODULE = "ANSWER = 41\n"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache of the test's own: what another test compiled is not this one's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _repo(path: Path, files: dict[str, str], links: dict[str, str] | None = None) -> Path:
    path.mkdir()
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    for name, target in (links or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path / name)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A", "--force")
    git(path, "commit", "-q", "-m", "files")
    return path


def _checkout(repo: Path, dest: Path) -> Path:
    dest.mkdir()
    asyncio.run(materialise(repo, "HEAD", dest))
    return dest


async def _run_inside(tree: Path, *argv: str) -> str:
    """What `python argv…` printed, run in a read-only jail of `tree`."""
    async with Sandbox().jail(tree, git_dir=None, writable=False) as jail:
        result = await jail.run([jail.python, *argv], jail.environment(), wall_s=60)
    return result.process.output


def _cache() -> Path:
    folder = user_cache.folder(f"bytecode/{sys.implementation.cache_tag}")
    assert folder is not None
    return folder


def test_a_sandboxed_import_of_a_checkout_uses_its_bytecode_and_never_a_stale_one(tmp_path: Path) -> None:
    """Imported in the sandbox (no bytecode written there), the checkout's module comes from the pyc
    placed beside it; once its text changes — same size, same time stamp, so that a time-stamped pyc
    would still be taken — the new text runs."""
    repo = _repo(tmp_path / "repo", {"pkg/__init__.py": "", "pkg/answer.py": MODULE})
    tree = _checkout(repo, tmp_path / "tree")
    pyc = Path(cache_from_source(str(tree / "pkg" / "answer.py")))
    assert pyc.is_file()
    show = "import pkg.answer; print('answer', pkg.answer.ANSWER)"

    placed = sorted(pyc.parent.iterdir())
    first = asyncio.run(_run_inside(tree, "-v", "-c", show))
    source = tree / "pkg" / "answer.py"
    stamp = source.stat()
    source.write_text(MODULE.replace("41", "42"))
    os.utime(source, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert source.stat().st_size == stamp.st_size
    second = asyncio.run(_run_inside(tree, "-c", show))

    assert f"# {pyc} matches {source}" in first, first[-3000:]
    assert "answer 41" in first
    assert "answer 42" in second, second
    assert sorted(pyc.parent.iterdir()) == placed, "the sandbox wrote bytecode"


def test_the_bots_own_process_compiles_nothing_of_the_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change's files are compiled in a child process of their own, never under the bot's interpreter
    lock: the checkout gets its bytecode with compiling refused in the bot's process."""

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("the bot's own process compiled a file of the tree")

    monkeypatch.setattr(py_compile, "compile", refused)
    tree = _checkout(_repo(tmp_path / "repo", {"mod.py": MODULE}), tmp_path / "tree")

    assert Path(cache_from_source(str(tree / "mod.py"))).is_file()


def test_only_what_compiles_gets_bytecode_and_test_modules_are_left_to_pytest(tmp_path: Path) -> None:
    """A module that does not compile is left to Python (the others still get theirs); test modules and
    conftest.py, which pytest compiles itself, get none."""
    files = {
        "good.py": MODULE,
        "broken.py": "def (:\n",
        "tests/conftest.py": "",
        "tests/test_good.py": "def test_it():\n    assert True\n",
        "tests/helper.py": MODULE,
    }
    tree = _checkout(_repo(tmp_path / "repo", files), tmp_path / "tree")

    placed = {Path(pyc).relative_to(tree).as_posix() for pyc in tree.rglob("*.pyc")}
    assert placed == {cache_from_source("good.py"), cache_from_source("tests/helper.py")}


def test_nothing_is_written_through_a_link_or_over_a_file_the_tree_holds(tmp_path: Path) -> None:
    """A tree whose `__pycache__` is a link to a folder outside it, or that holds a file where a pyc
    would go, keeps them as they are: nothing is written outside, nothing replaced."""
    outside = tmp_path / "outside"
    outside.mkdir()
    own = cache_from_source("kept.py")
    repo = _repo(
        tmp_path / "repo",
        {"linked/mod.py": MODULE, "kept.py": MODULE, own: "the tree's own file", "plain.py": MODULE},
        links={"linked/__pycache__": str(outside)},
    )
    tree = _checkout(repo, tmp_path / "tree")

    assert list(outside.iterdir()) == []
    assert (tree / own).read_text() == "the tree's own file"
    assert Path(cache_from_source(str(tree / "plain.py"))).is_file()


def test_a_cache_another_may_write_is_not_used(tmp_path: Path) -> None:
    """The cache is read and written only while it is this user's alone: made writable by the group,
    a checkout gets no bytecode from it (and Python compiles as before)."""
    repo = _repo(tmp_path / "repo", {"mod.py": MODULE})
    _checkout(repo, tmp_path / "warm")
    cache = _cache()
    assert any(cache.rglob("*.pyc"))
    cache.chmod(0o770)
    try:
        tree = _checkout(repo, tmp_path / "tree")
    finally:
        cache.chmod(0o700)
    assert not list(tree.rglob("*.pyc"))


def test_the_cache_keeps_only_the_newest(tmp_path: Path) -> None:
    """Past its bound, the oldest files of a cache folder are forgotten first."""
    for index in range(5):
        path = tmp_path / f"{index}.pyc"
        path.write_bytes(b"x")
        os.utime(path, ns=(index * 10**9, index * 10**9))
    (tmp_path / "other.json").write_text("{}")

    user_cache.keep_newest(tmp_path, "*.pyc", 2)

    assert sorted(path.name for path in tmp_path.iterdir()) == ["3.pyc", "4.pyc", "other.json"]
