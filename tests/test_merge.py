"""Merger: rebase-and-reverify onto a moved main, and fast-forwarding the live checkout (real git)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from mendbot.db.connection import open_database
from mendbot.deploy.merge import Merger, RebaseConflict, own_change
from mendbot.forge.base import HeadMovedError, MainMovedError
from mendbot.forge.local import LocalForge
from mendbot.improve.agent.workspace import Workspace
from mendbot.trust.sandbox import Sandbox
from tests.harness.repo import PROJECT, git

BRANCH = "mendbot/7-fix-roll"
ROLL = "".join(f"line {n}\n" for n in range(1, 21))


def commit(root: Path, files: dict[str, str | None], message: str) -> str:
    """Write (or delete, for None) `files` in the checked-out branch, commit them, return the sha."""
    for name, text in files.items():
        if text is None:
            (root / name).unlink()
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD")


def small_repo(root: Path) -> tuple[Path, str, str]:
    """A repo on main with roll.txt and check.py, and BRANCH changing line 3; returns (repo, base, head)."""
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    base = commit(
        root,
        {
            "roll.txt": ROLL,
            "check.py": "import sys\nsys.exit('BROKEN' in open('roll.txt').read())\n",
            "notes.txt": "notes\n",
        },
        "initial",
    )
    git(root, "switch", "-q", "-c", BRANCH)
    head = commit(root, {"roll.txt": ROLL.replace("line 3\n", "line three\n")}, "Fix roll\n\nRun-Id: 7")
    git(root, "switch", "-q", "main")
    return root, base, head


def committed_bot(dest: Path) -> Path:
    """Like copy_of_bot, but only the project's committed files (`git archive HEAD`): edits in progress
    elsewhere in the working copy cannot make this test's smoke load fail."""
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=PROJECT, capture_output=True, check=True).stdout
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "copy of mendbot for a test")
    return dest


def on_main(root: Path, files: dict[str, str | None], message: str) -> str:
    """Someone else's commit on main, made in the live checkout (which has main checked out)."""
    return commit(root, files, message)


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    return small_repo(tmp_path / "repo")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_database(tmp_path / "mendbot.db")
    yield connection
    await connection.close()


def merger_for(root: Path, tmp_path: Path, checks: list[str] | None = None, *, smoke: bool = False) -> Merger:
    workspace = Workspace(root, tmp_path / "worktrees")
    return Merger(root, workspace, checks or [], 60, Sandbox(), smoke=smoke)


def worktrees(root: Path) -> list[str]:
    return [
        line
        for line in git(root, "worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    ]


# -- local merge + live update ----------------------------------------------------------------------


async def test_local_merge_and_live_update_fast_forward_main_to_the_verified_sha(
    repo: tuple[Path, str, str], tmp_path: Path, db: aiosqlite.Connection
) -> None:
    """LocalForge.merge then update_live_checkout: main is the verified sha, tree clean, change on disk."""
    root, _, head = repo
    forge = LocalForge(root, db)
    proposal = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=head, title="t", body="b")
    result = await forge.merge(proposal.id, head)
    live = await merger_for(root, tmp_path).update_live_checkout(result.merged_sha)
    assert live.ok, live.reason
    assert (live.old_sha, live.new_sha, live.changed_files) == (result.main_before, head, ["roll.txt"])
    assert git(root, "rev-parse", "refs/heads/main") == head
    assert git(root, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(root, "status", "--porcelain") == ""
    assert "line three\n" in (root / "roll.txt").read_text()


async def test_live_update_lists_added_modified_and_deleted_files(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    """A fast-forward over several commits reports every path between old and new, deletions included."""
    root, _, head = repo
    old = git(root, "rev-parse", "HEAD")
    git(root, "switch", "-q", BRANCH)
    target = commit(root, {"cogs/new.py": "x = 1\n", "notes.txt": None}, "more")
    git(root, "switch", "-q", "main")
    live = await merger_for(root, tmp_path).update_live_checkout(target)
    assert live.ok, live.reason
    assert (live.old_sha, live.new_sha) == (old, target)
    assert sorted(live.changed_files) == ["cogs/new.py", "notes.txt", "roll.txt"]
    assert not (root / "notes.txt").exists() and (root / "cogs" / "new.py").exists()
    assert head in git(root, "rev-list", "main")


async def test_a_live_checkout_with_hand_edits_is_refused_and_untouched(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    """Uncommitted edits to a tracked file refuse the update with the file named; HEAD and the edit stay."""
    root, _, head = repo
    old = git(root, "rev-parse", "HEAD")
    (root / "roll.txt").write_text("hand edit\n")
    merger = merger_for(root, tmp_path)
    assert "roll.txt" in (await merger.live_checkout_problem() or "")
    live = await merger.update_live_checkout(head)
    assert not live.ok
    assert "uncommitted changes to tracked files (roll.txt)" in live.reason
    assert (live.old_sha, live.new_sha, live.changed_files) == (old, old, [])
    assert git(root, "rev-parse", "HEAD") == old
    assert (root / "roll.txt").read_text() == "hand edit\n"


async def test_an_untracked_file_in_the_way_is_refused_by_git_and_nothing_changes(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    """Untracked files do not count as hand edits, but one the update would overwrite makes git refuse."""
    root, _, _ = repo
    old = git(root, "rev-parse", "HEAD")
    git(root, "switch", "-q", BRANCH)
    target = commit(root, {"cogs/new.py": "x = 1\n"}, "add a cog")
    git(root, "switch", "-q", "main")
    (root / "scratch.txt").write_text("mine\n")
    (root / "cogs").mkdir()
    (root / "cogs" / "new.py").write_text("hand written\n")
    merger = merger_for(root, tmp_path)
    assert await merger.live_checkout_problem() is None
    live = await merger.update_live_checkout(target)
    assert not live.ok and "git refused" in live.reason and "cogs/new.py" in live.reason
    assert git(root, "rev-parse", "HEAD") == old == live.new_sha
    assert (root / "cogs" / "new.py").read_text() == "hand written\n"


async def test_live_update_refuses_a_checkout_not_on_main(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    """A live checkout switched to another branch is not updated."""
    root, _, head = repo
    git(root, "switch", "-q", "-c", "experiment")
    live = await merger_for(root, tmp_path).update_live_checkout(head)
    assert not live.ok and live.reason == "the live checkout is on experiment, not main"
    assert git(root, "rev-parse", "main") != head


async def test_live_update_refuses_what_is_not_a_fast_forward(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    """When main has a commit the target lacks, the update is refused instead of merging or resetting."""
    root, _, head = repo
    moved = on_main(root, {"notes.txt": "moved\n"}, "main moved")
    live = await merger_for(root, tmp_path).update_live_checkout(head)
    assert not live.ok and "cannot fast-forward" in live.reason
    assert git(root, "rev-parse", "HEAD") == moved
    assert git(root, "status", "--porcelain") == ""


async def test_live_update_to_the_current_head_is_a_no_op(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    """Updating to where main already is succeeds with no changed files."""
    root, _, _ = repo
    current = git(root, "rev-parse", "HEAD")
    live = await merger_for(root, tmp_path).update_live_checkout(current)
    assert live.ok and live.changed_files == [] and live.new_sha == current


# -- rebase and re-verify ---------------------------------------------------------------------------


async def test_rebase_onto_an_unrelated_change_keeps_the_diff_and_reverifies(
    tmp_path: Path, db: aiosqlite.Connection
) -> None:
    """Main moved elsewhere: rebased in a temp worktree, smoke-verified, diff unchanged, branch (and run
    worktree) moved, and the merge then succeeds."""
    root = committed_bot(tmp_path / "repo")
    workspace = Workspace(root, tmp_path / "worktrees")
    run_tree = await workspace.create(7, "fix roll")
    dice = run_tree.path / "cogs" / "dice.py"
    dice.write_text(dice.read_text() + "\n# rolled with care\n")
    head = await workspace.commit(run_tree, "fix roll", 7)
    forge = LocalForge(root, db)
    proposal = await forge.open_proposal(run_id=7, branch=run_tree.branch, head_sha=head, title="t", body="b")
    moved = on_main(root, {"NOTES.md": "an unrelated change\n"}, "main moved")
    with pytest.raises(MainMovedError):
        await forge.merge(proposal.id, head)

    merger = Merger(root, workspace, [], 120, Sandbox())
    outcome = await merger.rebase_and_reverify(run_tree.branch, run_tree.base_sha, head, 7)

    assert outcome.verification.ok, outcome.verification.failure_report()
    assert "✅ cogs.dice" in outcome.verification.checks[-1].output_tail
    assert outcome.verification.sha == outcome.new_sha != head
    assert not outcome.diff_changed and outcome.onto == moved
    assert git(root, "rev-parse", f"{outcome.new_sha}^") == moved
    assert git(root, "rev-parse", run_tree.branch) == outcome.new_sha
    assert git(run_tree.path, "rev-parse", "HEAD") == outcome.new_sha
    assert git(run_tree.path, "status", "--porcelain") == ""
    assert len(worktrees(root)) == 2  # the live checkout and the run's; the rebase worktree is gone
    result = await forge.merge(proposal.id, outcome.new_sha)
    assert result.merged_sha == outcome.new_sha


async def test_main_changing_the_same_lines_is_a_rebase_conflict(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    """Main rewrote the line the proposal changes: RebaseConflict names the file; the branch stays put."""
    root, base, head = repo
    on_main(root, {"roll.txt": ROLL.replace("line 3\n", "line THREE\n")}, "main rewrote line 3")
    with pytest.raises(RebaseConflict) as caught:
        await merger_for(root, tmp_path).rebase_and_reverify(BRANCH, base, head, 7)
    assert caught.value.files == ["roll.txt"]
    assert git(root, "rev-parse", BRANCH) == head
    assert len(worktrees(root)) == 1
    assert not (tmp_path / "worktrees" / "rebase-7").exists()


async def test_main_already_making_part_of_the_change_changes_the_diff(tmp_path: Path) -> None:
    """Main made one of the proposal's two hunks itself: the rebase is clean but diff_changed is True."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    base = commit(root, {"roll.txt": ROLL}, "initial")
    git(root, "switch", "-q", "-c", BRANCH)
    both = ROLL.replace("line 1\n", "line one\n").replace("line 15\n", "line fifteen\n")
    head = commit(root, {"roll.txt": both}, "two hunks")
    git(root, "switch", "-q", "main")
    on_main(root, {"roll.txt": ROLL.replace("line 1\n", "line one\n")}, "main made the first hunk")
    outcome = await merger_for(root, tmp_path).rebase_and_reverify(BRANCH, base, head, 7)
    assert outcome.diff_changed
    assert outcome.verification.ok
    assert git(root, "show", f"{outcome.new_sha}:roll.txt") == both.rstrip("\n")


async def test_failed_reverification_leaves_the_branch_where_it_was(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    """The rebased commit fails the checks (main's check now refuses what the change wrote, though main
    itself passes it): the outcome says so and the branch is not moved."""
    root, base, head = repo
    stricter = "import sys\nsys.exit('line three' in open('roll.txt').read())\n"
    on_main(root, {"notes.txt": "notes\n", "check.py": stricter}, "main's check is stricter")
    outcome = await merger_for(root, tmp_path, ["python check.py"]).rebase_and_reverify(BRANCH, base, head, 7)
    assert not outcome.verification.ok
    assert outcome.verification.checks[0].on_base is None
    assert not outcome.diff_changed
    assert outcome.new_sha != head
    assert git(root, "rev-parse", BRANCH) == head
    assert len(worktrees(root)) == 1


async def test_a_check_main_fails_itself_does_not_hold_the_rebase_back(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    """Main broke the check on its own: the rebased change fails it the same way, which is main's doing,
    not the change's — shown as failing on main too, and the branch moves."""
    root, base, head = repo
    on_main(root, {"notes.txt": "notes\n", "roll.txt": ROLL + "BROKEN\n"}, "main broke the check")
    outcome = await merger_for(root, tmp_path, ["python check.py"]).rebase_and_reverify(BRANCH, base, head, 7)
    assert outcome.verification.ok
    (check,) = outcome.verification.checks
    assert not check.ok and check.on_base == "main"
    assert check.line().startswith("⚠️ python check.py (") and "fails on main too" in check.line()
    assert git(root, "rev-parse", BRANCH) == outcome.new_sha


async def test_rebase_refuses_a_branch_that_is_not_at_the_approved_head(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    """A branch that moved since approval is HeadMovedError before anything is rebased."""
    root, base, head = repo
    with pytest.raises(HeadMovedError):
        await merger_for(root, tmp_path).rebase_and_reverify(BRANCH, base, "0" * 40, 7)
    assert git(root, "rev-parse", BRANCH) == head


async def test_rebase_onto_an_explicit_commit_with_the_merge_base_found(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    """`onto` chooses the new base (a remote forge's main); an empty base_sha means the merge base."""
    root, _, head = repo
    git(root, "switch", "-q", "-c", "upstream")
    upstream = commit(root, {"notes.txt": "upstream\n"}, "upstream moved")
    git(root, "switch", "-q", "main")
    outcome = await merger_for(root, tmp_path).rebase_and_reverify(BRANCH, "", head, 7, onto=upstream)
    assert outcome.verification.ok and not outcome.diff_changed
    assert outcome.onto == upstream
    assert git(root, "rev-parse", f"{BRANCH}^") == upstream


def test_own_change_ignores_line_numbers_and_blob_ids_only() -> None:
    """Shifted hunks and other blob ids compare equal; a different line, or a binary's blob, does not."""
    before = "diff --git a/x b/x\nindex 111..222 100644\n--- a/x\n+++ b/x\n@@ -3 +3 @@\n-a\n+b\n"
    shifted = "diff --git a/x b/x\nindex 333..444 100644\n--- a/x\n+++ b/x\n@@ -9 +9 @@ f()\n-a\n+b\n"
    other = before.replace("+b", "+c")
    assert own_change(before) == own_change(shifted)
    assert own_change(before) != own_change(other)
    binary = "diff --git a/i b/i\nindex {}..{} 100644\nBinary files a/i and b/i differ\n"
    assert own_change(binary.format(1, 2)) != own_change(binary.format(1, 3))
