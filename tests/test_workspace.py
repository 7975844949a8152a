"""Run worktrees: a fresh untracked branch from local main, the bot's commits and cleanup."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mendbot.improve.agent.workspace import (
    NothingToCommitError,
    Workspace,
    WorkspaceError,
    branch_name,
)
from tests.harness.repo import git


def _repo(path: Path) -> Path:
    """A small repository on main with two files and one commit."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text("print('hello')\n")
    (path / "old.txt").write_text("old\n")
    (path / ".gitignore").write_text("data/\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def _fails(repo: Path, *args: str) -> bool:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, check=False).returncode != 0


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return _repo(tmp_path / "repo")


@pytest.fixture
def workspace(repo: Path) -> Workspace:
    return Workspace(repo, repo / "data" / "worktrees")


def _tracks_origin(repo: Path, tmp_path: Path) -> None:
    """Give `repo` an origin whose main the local main tracks, and make git auto-track every branch."""
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(tmp_path / "origin.git"))
    git(repo, "remote", "add", "origin", str(tmp_path / "origin.git"))
    git(repo, "fetch", "-q", "origin")
    git(repo, "branch", "-q", "--set-upstream-to=origin/main", "main")
    git(repo, "config", "branch.autoSetupMerge", "always")
    git(repo, "config", "push.default", "upstream")


async def test_create_cuts_an_untracked_branch_from_local_main(
    repo: Path, workspace: Workspace, tmp_path: Path
) -> None:
    """The branch is mendbot/<id>-<slug> at main's sha and has no upstream, even when main tracks origin."""
    _tracks_origin(repo, tmp_path)
    assert git(repo, "rev-parse", "--abbrev-ref", "main@{upstream}") == "origin/main"

    worktree = await workspace.create(12, "Roll command: crashes on d0!")

    assert worktree.branch == "mendbot/12-roll-command-crashes-on-d0"
    assert worktree.path == (repo / "data" / "worktrees" / "run-12").resolve()
    assert worktree.base_sha == git(repo, "rev-parse", "main")
    assert git(worktree.path, "rev-parse", "--abbrev-ref", "HEAD") == worktree.branch
    assert git(worktree.path, "rev-parse", "HEAD") == worktree.base_sha
    assert _fails(repo, "rev-parse", "--abbrev-ref", f"{worktree.branch}@{{upstream}}")
    assert _fails(repo, "config", f"branch.{worktree.branch}.remote")
    assert _fails(repo, "config", f"branch.{worktree.branch}.merge")
    assert _fails(worktree.path, "push", "--dry-run")


async def test_create_starts_from_main_as_it_is_now(repo: Path, workspace: Workspace) -> None:
    """A worktree made after main moved starts at the new main, not at an older base."""
    first = await workspace.create(1, "first")
    (repo / "app.py").write_text("print('moved on')\n")
    git(repo, "commit", "-q", "-am", "main moves")

    second = await workspace.create(2, "second")

    assert second.base_sha == git(repo, "rev-parse", "main") != first.base_sha
    assert (second.path / "app.py").read_text() == "print('moved on')\n"


async def test_create_refuses_an_existing_directory(workspace: Workspace) -> None:
    """A leftover directory for the same run is not silently reused."""
    workspace.path_for(3).mkdir(parents=True)
    with pytest.raises(WorkspaceError, match="already exists"):
        await workspace.create(3, "again")


def test_branch_name_keeps_only_safe_characters() -> None:
    """Slugs are reduced to lowercase letters, digits and dashes, bounded, never empty."""
    assert branch_name(5, "Fix /roll — d0 ../../etc") == "mendbot/5-fix-roll-d0-etc"
    assert branch_name(6, "!!!") == "mendbot/6-change"
    assert len(branch_name(7, "x" * 200)) == len("mendbot/7-") + 40


async def test_commit_uses_the_bot_identity_and_a_run_id_trailer(repo: Path, tmp_path: Path) -> None:
    """The commit is authored and committed by the bot (not the repo's user), with Run-Id, hooks skipped."""
    git(repo, "config", "user.name", "Someone Else")
    git(repo, "config", "user.email", "someone@example.invalid")
    hook = repo / ".git" / "hooks" / "post-commit"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path / 'hook-ran'}\n")
    hook.chmod(0o755)
    workspace = Workspace(repo, repo / "data" / "worktrees", identity=("mendbot", "bot@mendbot.invalid"))
    worktree = await workspace.create(7, "greeting")
    (worktree.path / "app.py").write_text("print('hello, world')\n")

    sha = await workspace.commit(worktree, "Greet the world\n\nThe greeting was too short.", 7)

    assert sha == git(worktree.path, "rev-parse", "HEAD")
    assert git(worktree.path, "log", "-1", "--format=%an <%ae>|%cn <%ce>") == (
        "mendbot <bot@mendbot.invalid>|mendbot <bot@mendbot.invalid>"
    )
    assert git(worktree.path, "log", "-1", "--format=%s") == "Greet the world"
    assert git(worktree.path, "log", "-1", "--format=%(trailers:key=Run-Id,valueonly)") == "7"
    assert git(repo, "rev-parse", worktree.branch) == sha
    assert git(repo, "rev-parse", "main") == worktree.base_sha
    assert not (tmp_path / "hook-ran").exists()


async def test_commit_without_changes_raises(workspace: Workspace) -> None:
    """An agent that changed nothing leaves nothing to commit, and that is an error, not an empty commit."""
    worktree = await workspace.create(8, "nothing")
    with pytest.raises(NothingToCommitError):
        await workspace.commit(worktree, "nothing", 8)


async def test_diff_diffstat_and_changed_files(workspace: Workspace) -> None:
    """The committed change since base: modified, added and deleted files, as diff, stat and names."""
    worktree = await workspace.create(9, "changes")
    (worktree.path / "app.py").write_text("print('hello')\nprint('again')\n")
    (worktree.path / "new.py").write_text("VALUE = 1\n")
    (worktree.path / "old.txt").unlink()
    await workspace.commit(worktree, "change things", 9)

    diff = await workspace.diff(worktree, worktree.base_sha)
    stat = await workspace.diffstat(worktree, worktree.base_sha)

    assert "+print('again')" in diff and "+VALUE = 1" in diff and "-old" in diff
    assert "3 files changed" in stat
    assert sorted(await workspace.changed_files(worktree, worktree.base_sha)) == [
        "app.py",
        "new.py",
        "old.txt",
    ]


async def test_remove_keeps_the_branch_unless_asked(repo: Path, workspace: Workspace) -> None:
    """Removing a worktree deletes its directory and registration; the branch goes only on request."""
    kept = await workspace.create(10, "kept")
    dropped = await workspace.create(11, "dropped")

    await workspace.remove(kept)
    await workspace.remove(dropped.path, delete_branch=True)

    assert not kept.path.exists() and not dropped.path.exists()
    listed = git(repo, "worktree", "list", "--porcelain")
    assert str(kept.path) not in listed and str(dropped.path) not in listed
    assert git(repo, "branch", "--list", kept.branch).strip().endswith(kept.branch)
    assert git(repo, "branch", "--list", dropped.branch) == ""


async def test_cleanup_stray_after_a_crash(repo: Path, workspace: Workspace) -> None:
    """After a crash: unknown worktrees, a bare leftover directory and a vanished worktree are cleared."""
    keep = await workspace.create(20, "resumable")
    stray = await workspace.create(21, "stray")
    vanished = await workspace.create(22, "vanished")
    (stray.path / "half-written.py").write_text("x = \n")
    leftover = workspace.worktrees_dir / "run-23"
    (leftover / "cogs").mkdir(parents=True)
    (leftover / "cogs" / "dice.py").write_text("# half a checkout\n")
    shutil.rmtree(vanished.path)

    removed = await workspace.cleanup_stray({keep.path})

    assert sorted(removed) == sorted([stray.path, leftover])
    assert sorted(p.name for p in workspace.worktrees_dir.iterdir()) == ["run-20"]
    listed = git(repo, "worktree", "list", "--porcelain")
    assert str(keep.path) in listed
    assert str(stray.path) not in listed and str(vanished.path) not in listed
    assert git(repo, "branch", "--list", stray.branch) != ""  # a branch may back an open proposal


async def test_cleanup_prunes_a_vanished_worktree_when_nothing_else_is_stray(
    repo: Path, workspace: Workspace
) -> None:
    """Only git's record of a worktree whose directory is gone is left: it is pruned all the same (the
    start skips git only when git holds no worktree records at all)."""
    vanished = await workspace.create(24, "vanished")
    shutil.rmtree(vanished.path)
    assert await workspace.cleanup_stray(set()) == []
    assert str(vanished.path) not in git(repo, "worktree", "list", "--porcelain")
    assert not list((repo / ".git").glob("worktrees/*"))
    assert await workspace.cleanup_stray(set()) == []  # no records: nothing for git to do
