"""LocalForge: proposals as branches of the bot's own repository plus rows in SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import pytest

from bot.db import proposals
from bot.db.connection import open_database
from bot.forge import Forge, ForgeError, LocalForge
from bot.forge.local import NOTES_REF
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
