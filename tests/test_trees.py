"""Trees the agent touched are data: committed from bytes, refused when they carry what cannot be made
inert, materialised exactly — and the bot's git never runs a program a tree or a repository in it names."""

from __future__ import annotations

import os
import subprocess
from importlib.util import cache_from_source
from pathlib import Path

import pytest

from mendbot.improve.agent.workspace import Workspace, WorkspaceError, Worktree
from mendbot.kernel.git import git
from mendbot.trust.trees import HostileTree, check_change, materialise, symlink_problem
from tests.harness.repo import copy_of_bot
from tests.harness.repo import git as plain_git


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_of_bot(tmp_path / "repo")


@pytest.fixture
def workspace(repo: Path, tmp_path: Path) -> Workspace:
    return Workspace(repo, tmp_path / "worktrees")


@pytest.fixture
async def worktree(workspace: Workspace) -> Worktree:
    return await workspace.create(1, "trees")


def _embedded_repository_with_a_filter(where: Path, marker: Path) -> None:
    """What sandboxed code can make: a repository inside the worktree whose own config defines a clean
    filter that `.gitattributes` routes every file to — the program git would run on the host."""
    where.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(where)], check=True)
    subprocess.run(
        ["git", "-C", str(where), "config", "filter.evil.clean", f"touch {marker}; cat"], check=True
    )
    (where / ".gitattributes").write_text("* filter=evil\n")
    (where / "payload.txt").write_text("hello\n")
    subprocess.run(
        ["git", "-C", str(where), "-c", "user.name=x", "-c", "user.email=x@x", "add", "-A"], check=True
    )
    marker.unlink(missing_ok=True)  # `git add` in there ran it, as the sandboxed code itself may
    subprocess.run(
        ["git", "-C", str(where), "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", "x"],
        check=True,
    )
    marker.unlink(missing_ok=True)
    (where / "payload.txt").write_text("changed, so a status would filter it again\n")


async def test_an_embedded_repository_is_refused_and_its_filter_never_runs(
    workspace: Workspace, worktree: Worktree, tmp_path: Path
) -> None:
    """The commit refuses the embedded repository by name; neither it nor the bot's `git status` on the
    worktree runs the filter its config defines."""
    marker = tmp_path / "filter-ran"
    _embedded_repository_with_a_filter(worktree.path / "sub", marker)
    (worktree.path / "cogs" / "dice.py").write_text("# an ordinary change too\n")

    with pytest.raises(HostileTree) as refused:
        await workspace.commit(worktree, "try it", 1)
    status = await git(worktree.path, "status", "--porcelain")
    diff = await git(worktree.path, "diff", "--stat")

    assert "an embedded repository at `sub/.git`" in str(refused.value)
    assert not marker.exists()
    assert "sub" in status.output and diff.code == 0
    assert await workspace.head(worktree) == worktree.base_sha  # nothing was committed


async def test_a_gitlink_committed_elsewhere_is_refused(repo: Path, workspace: Workspace) -> None:
    """A branch made outside the pipeline (a hand commit, a worker, the forge) that adds a gitlink is
    refused by the check every head passes before it is checked out or verified."""
    base = plain_git(repo, "rev-parse", "HEAD")
    plain_git(repo, "update-index", "--add", "--cacheinfo", f"160000,{base},vendored")
    plain_git(repo, "commit", "-qm", "add a gitlink")
    head = plain_git(repo, "rev-parse", "HEAD")

    with pytest.raises(HostileTree) as refused:
        await check_change(repo, base, head)

    assert "a gitlink (another repository) at `vendored`" in str(refused.value)


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("../../.env", "a symlink leaving the tree"),
        ("/etc/passwd", "a symlink leaving the tree"),
        ("../data/mendbot.db", "a symlink to a secret path"),
        ("../.git/config", "a symlink into git's own files"),
    ],
)
async def test_a_symlink_out_of_the_tree_or_to_a_secret_is_refused(
    workspace: Workspace, worktree: Worktree, target: str, why: str
) -> None:
    """A symlink pointing outside the worktree, at a secret path or into git's files fails the run."""
    (worktree.path / "cogs" / "link").symlink_to(target)

    with pytest.raises(HostileTree) as refused:
        await workspace.commit(worktree, "link", 1)

    assert why in str(refused.value) and "`cogs/link`" in str(refused.value)


async def test_a_fifo_is_refused(workspace: Workspace, worktree: Worktree) -> None:
    """A fifo (or a device, a socket) cannot be a file of a change."""
    os.mkfifo(worktree.path / "cogs" / "pipe")

    with pytest.raises(HostileTree, match="a fifo at `cogs/pipe`"):
        await workspace.commit(worktree, "fifo", 1)


async def test_a_symlink_inside_the_tree_is_kept_and_shown_as_a_symlink(
    workspace: Workspace, worktree: Worktree
) -> None:
    """A symlink within the tree is committed as a symlink and the proposal's diffstat shows its target."""
    (worktree.path / "cogs" / "dice_alias.py").symlink_to("dice.py")
    sha = await workspace.commit(worktree, "alias", 1)

    links = await workspace.check_change(worktree.base_sha, sha)
    diffstat = await workspace.diffstat(worktree, worktree.base_sha)

    assert [(link.path, link.target) for link in links] == [("cogs/dice_alias.py", "dice.py")]
    assert "symlink `cogs/dice_alias.py` → `dice.py`" in diffstat


async def test_the_commit_takes_what_add_all_would(
    repo: Path, workspace: Workspace, worktree: Worktree, tmp_path: Path
) -> None:
    """New, changed, deleted and executable files are committed; ignored ones are not; the message ends
    with the Run-Id trailer; a fresh materialised copy of the commit holds exactly its tree."""
    (worktree.path / "new_tool.sh").write_text("#!/bin/sh\necho hi\n")
    (worktree.path / "new_tool.sh").chmod(0o755)
    (worktree.path / "cogs" / "dice.py").write_text("# changed\n")
    (worktree.path / "cogs" / "remind.py").unlink()
    (worktree.path / "stale.pyc").write_bytes(b"ignored by *.pyc")
    (worktree.path / "data" / "state.db").parent.mkdir(exist_ok=True)
    (worktree.path / "data" / "state.db").write_text("ignored by data/*")

    sha = await workspace.commit(worktree, "several changes", 7)

    files = plain_git(repo, "diff", "--name-status", worktree.base_sha, sha).splitlines()
    assert sorted(files) == ["A\tnew_tool.sh", "D\tcogs/remind.py", "M\tcogs/dice.py"]
    assert plain_git(repo, "ls-tree", sha, "new_tool.sh").startswith("100755 blob")
    assert plain_git(repo, "log", "-1", "--format=%B", sha).strip().endswith("Run-Id: 7")
    assert plain_git(repo, "log", "-1", "--format=%an", sha) == "mendbot"
    dest = tmp_path / "copy"
    dest.mkdir()
    await materialise(repo, sha, dest)
    listed = set(plain_git(repo, "ls-tree", "-r", "--name-only", sha).splitlines())
    on_disk = {
        path.relative_to(dest).as_posix()
        for path in dest.rglob("*")
        if path.is_symlink() or not path.is_dir()
    }
    # Exactly the commit's files, and beside its Python files their bytecode (mendbot.trust.bytecode).
    compiled = {path for path in on_disk if "__pycache__" in path.split("/")}
    assert on_disk - compiled == listed
    assert cache_from_source("cogs/dice.py") in compiled
    assert compiled <= {cache_from_source(path) for path in listed if path.endswith(".py")}
    assert (
        os.access(dest / "new_tool.sh", os.X_OK) and (dest / "cogs" / "dice.py").read_text() == "# changed\n"
    )


async def test_a_repository_whose_config_defines_a_driver_gets_no_worktree(
    repo: Path, workspace: Workspace
) -> None:
    """A filter, diff or merge driver in the repository's own config could be selected by any tree's
    .gitattributes: no run starts there, and the reason says which and what to do."""
    plain_git(repo, "config", "diff.anything.textconv", "sh -c 'touch /tmp/x'")

    with pytest.raises(WorkspaceError) as refused:
        await workspace.create(2, "driver")

    assert "diff.anything.textconv" in str(refused.value)
    assert "remove them from .git/config" in str(refused.value)


def test_symlink_rules() -> None:
    """A target is judged lexically from the link's directory: inside and not secret, or refused."""
    assert symlink_problem("a/b/link", "../c.py") is None
    assert symlink_problem("a/link", "b/../../../x") is not None
    assert symlink_problem("link", ".env") is not None
    assert symlink_problem("link", "") is not None
