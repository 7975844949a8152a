"""LocalForge: proposals as branches of the bot's own repository plus rows in SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import pytest

from mendbot.db import proposals
from mendbot.db.connection import open_database
from mendbot.forge.base import Forge, ForgeError, HeadMovedError, MainMovedError, merged_ref
from mendbot.forge.local import MERGED_FROM_REF_PREFIX, NOTES_REF, LocalForge
from tests.harness.repo import git

BRANCH = "mendbot/7-fix-roll"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_repo(root: Path) -> tuple[Path, str]:
    """A repository on main with the run's branch one commit ahead; returns (repo, branch head)."""
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "roll.py").write_text("def roll():\n    return 0\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    git(root, "switch", "-q", "-c", BRANCH)
    (root / "roll.py").write_text("def roll():\n    return 4\n")
    git(root, "commit", "-q", "-am", "Fix roll\n\nRun-Id: 7")
    git(root, "switch", "-q", "main")
    return root, git(root, "rev-parse", BRANCH)


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    return make_repo(tmp_path / "repo")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_database(tmp_path / "mendbot.db")
    yield connection
    await connection.close()


def forge_for(repo: Path, db: aiosqlite.Connection) -> LocalForge:
    return LocalForge(repo, db, clock=lambda: NOW)


async def test_opens_proposal_for_branch_at_verified_sha(
    repo: tuple[Path, str], db: aiosqlite.Connection
) -> None:
    """A branch at the verified sha becomes an open local proposal with a local:// url and no number."""
    root, sha = repo
    forge: Forge = forge_for(root, db)
    proposal = await forge.open_proposal(
        run_id=7, branch=BRANCH, head_sha=sha, title="Fix roll", body="Diagnosis"
    )
    assert proposal.forge == "local"
    assert proposal.state == "open"
    assert proposal.url == f"local://proposals/{proposal.id}"
    assert proposal.number is None
    assert (proposal.run_id, proposal.branch, proposal.head_sha) == (7, BRANCH, sha)
    assert proposal.created_at == NOW.timestamp()
    assert await forge.get(proposal.id) == proposal
    assert await proposals.by_run(db, 7) == [proposal]


async def test_refuses_missing_branch(repo: tuple[Path, str], db: aiosqlite.Connection) -> None:
    """A branch that does not exist is refused and nothing is recorded."""
    root, sha = repo
    with pytest.raises(ForgeError, match="does not exist"):
        await forge_for(root, db).open_proposal(
            run_id=7, branch="mendbot/8-nope", head_sha=sha, title="t", body="b"
        )
    assert await proposals.by_run(db, 7) == []


async def test_refuses_sha_mismatch(repo: tuple[Path, str], db: aiosqlite.Connection) -> None:
    """A branch that moved past the verified commit is refused: only the verified sha is proposed."""
    root, verified = repo
    git(root, "switch", "-q", BRANCH)
    (root / "roll.py").write_text("def roll():\n    return 5\n")
    git(root, "commit", "-q", "-am", "unverified change")
    with pytest.raises(ForgeError, match="not the verified commit"):
        await forge_for(root, db).open_proposal(
            run_id=7, branch=BRANCH, head_sha=verified, title="t", body="b"
        )
    assert await proposals.by_run(db, 7) == []


async def test_proposal_survives_reopening_the_database(repo: tuple[Path, str], tmp_path: Path) -> None:
    """A proposal written before a restart is read back unchanged by a new forge on a new connection."""
    root, sha = repo
    db = await open_database(tmp_path / "restart.db")
    opened = await forge_for(root, db).open_proposal(
        run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b"
    )
    await db.close()
    db = await open_database(tmp_path / "restart.db")
    try:
        assert await forge_for(root, db).get(opened.id) == opened
    finally:
        await db.close()


async def test_comment_lands_as_git_note(repo: tuple[Path, str], db: aiosqlite.Connection) -> None:
    """Comments are appended as git notes on the proposal's head commit, by the bot's identity."""
    root, sha = repo
    forge = forge_for(root, db)
    proposal = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    await forge.comment(proposal.id, "checks passed")
    await forge.comment(proposal.id, "approved by alice")
    note = git(root, "notes", f"--ref={NOTES_REF}", "show", sha)
    assert note.splitlines() == ["checks passed", "", "approved by alice"]
    assert await forge.comments(proposal.id) == note
    assert git(root, "log", "-1", "--format=%an", f"refs/notes/{NOTES_REF}") == "mendbot"


async def test_close_marks_closed_and_notes_reason(repo: tuple[Path, str], db: aiosqlite.Connection) -> None:
    """Closing records the reason as a note and the state as closed; closing again changes nothing."""
    root, sha = repo
    forge = forge_for(root, db)
    proposal = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    await forge.close(proposal.id, "rejected by alice")
    await forge.close(proposal.id, "again")
    assert (await forge.get(proposal.id)).state == "closed"
    assert git(root, "notes", f"--ref={NOTES_REF}", "show", sha) == "Closed: rejected by alice"


async def test_unknown_proposal_is_a_forge_error(repo: tuple[Path, str], db: aiosqlite.Connection) -> None:
    """Asking for a proposal id that was never opened says so."""
    with pytest.raises(ForgeError, match="no proposal 99"):
        await forge_for(repo[0], db).get(99)


def commit_on(root: Path, branch: str, path: str, text: str, message: str) -> str:
    """Commit `text` to `path` on `branch` (switching there and back to main); returns the new sha."""
    git(root, "switch", "-q", branch)
    (root / path).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    sha = git(root, "rev-parse", "HEAD")
    git(root, "switch", "-q", "main")
    return sha


async def test_merge_records_the_verified_sha_without_touching_main(
    repo: tuple[Path, str], db: aiosqlite.Connection
) -> None:
    """merge() records the head at refs/mendbot/merged/<id> and the row as merged; main and files stay."""
    root, sha = repo
    main = git(root, "rev-parse", "main")
    forge: Forge = forge_for(root, db)
    proposal = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    result = await forge.merge(proposal.id, sha)
    assert (result.merged_sha, result.main_before, result.already_merged) == (sha, main, False)
    assert git(root, "rev-parse", merged_ref(proposal.id)) == sha
    assert git(root, "rev-parse", f"{MERGED_FROM_REF_PREFIX}{proposal.id}") == main
    merged = await forge.get(proposal.id)
    assert (merged.state, merged.head_sha) == ("merged", sha)
    assert git(root, "rev-parse", "main") == main
    assert git(root, "status", "--porcelain") == ""
    assert (root / "roll.py").read_text() == "def roll():\n    return 0\n"
    assert git(root, "notes", f"--ref={NOTES_REF}", "show", sha) == f"Merged into main (was {main[:12]})"


async def test_merge_refuses_a_branch_that_moved(repo: tuple[Path, str], db: aiosqlite.Connection) -> None:
    """A commit added to the branch after approval is HeadMovedError; nothing is recorded."""
    root, sha = repo
    forge = forge_for(root, db)
    proposal = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    commit_on(root, BRANCH, "roll.py", "def roll():\n    return 5\n", "unapproved")
    with pytest.raises(HeadMovedError, match="not the approved commit"):
        await forge.merge(proposal.id, sha)
    assert (await forge.get(proposal.id)).state == "open"
    assert git(root, "for-each-ref", "refs/mendbot/") == ""


async def test_merge_refuses_when_main_moved(repo: tuple[Path, str], db: aiosqlite.Connection) -> None:
    """Main no longer an ancestor of the approved head is MainMovedError carrying main's sha."""
    root, sha = repo
    forge = forge_for(root, db)
    proposal = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    moved = commit_on(root, "main", "README", "hello\n", "someone else's change")
    with pytest.raises(MainMovedError) as caught:
        await forge.merge(proposal.id, sha)
    assert caught.value.main_sha == moved
    assert (await forge.get(proposal.id)).state == "open"
    assert git(root, "for-each-ref", "refs/mendbot/") == ""


async def test_merging_again_returns_the_first_merge(
    repo: tuple[Path, str], db: aiosqlite.Connection
) -> None:
    """A second merge of the same sha is already_merged with the same result; another sha is refused."""
    root, sha = repo
    forge = forge_for(root, db)
    proposal = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    first = await forge.merge(proposal.id, sha)
    again = await forge.merge(proposal.id, sha)
    assert (again.merged_sha, again.main_before, again.already_merged) == (
        first.merged_sha,
        first.main_before,
        True,
    )
    with pytest.raises(ForgeError, match="already merged as"):
        await forge.merge(proposal.id, "f" * 40)


async def test_a_held_merge_blocks_the_next_one(repo: tuple[Path, str], db: aiosqlite.Connection) -> None:
    """While one merge has not reached main, another is refused: a fast-forward to it would skip the first."""
    root, sha = repo
    forge = forge_for(root, db)
    first = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    git(root, "branch", "mendbot/8-other", "main")
    other_sha = commit_on(root, "mendbot/8-other", "other.txt", "other\n", "other change")
    second = await forge.open_proposal(
        run_id=8, branch="mendbot/8-other", head_sha=other_sha, title="t", body="b"
    )
    await forge.merge(first.id, sha)
    with pytest.raises(ForgeError, match=f"proposal {first.id} was merged as .* has not reached it yet"):
        await forge.merge(second.id, other_sha)
    assert (await forge.get(second.id)).state == "open"


async def test_a_closed_proposal_is_not_merged(repo: tuple[Path, str], db: aiosqlite.Connection) -> None:
    """Merging a closed proposal is refused."""
    root, sha = repo
    forge = forge_for(root, db)
    proposal = await forge.open_proposal(run_id=7, branch=BRANCH, head_sha=sha, title="t", body="b")
    await forge.close(proposal.id, "rejected")
    with pytest.raises(ForgeError, match="is closed"):
        await forge.merge(proposal.id, sha)
