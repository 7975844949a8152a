"""File claims: path normalisation and its refusals, ownership between live runs in real SQLite, the
queue behind an overlapping claim, bounded extension, release, and the guard enforcing the claim."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import pytest

from mendbot.db.connection import open_database
from mendbot.improve.agent.claims import (
    Claim,
    ClaimRefused,
    ClaimService,
    covers,
    normalise_path,
    overlapping,
    plan_files,
)
from mendbot.improve.runs import Run, RunService
from mendbot.trust.guard import GuardPolicy, ToolGuard

pytestmark = pytest.mark.engines

PROTECTED = ("bot/improve/", "prompts/agent/", "Makefile")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A worktree with a few files, a directory, a symlink inside and one pointing out."""
    root = tmp_path / "wt"
    (root / "cogs").mkdir(parents=True)
    (root / "cogs" / "dice.py").write_text("x = 1\n")
    (root / "cogs" / "remind.py").write_text("y = 2\n")
    (root / "bot" / "improve").mkdir(parents=True)
    (root / "bot" / "improve" / "guard.py").write_text("# guard\n")
    (root / ".env").write_text("TOKEN=x\n")
    (root / "alias.py").symlink_to(root / "cogs" / "dice.py")
    (tmp_path / "outside.py").write_text("z = 3\n")
    (root / "escape.py").symlink_to(tmp_path / "outside.py")
    return root


def _norm(root: Path, raw: str, *, security: bool = False) -> str:
    return normalise_path(root, raw, protected=PROTECTED, security=security)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        ("../outside.py", "outside the worktree"),
        ("/", "outside the worktree"),
        ("/etc/passwd", "outside the worktree"),
        (".", "whole repository"),
        ("cogs/..", "whole repository"),
        ("cogs/*.py", "pattern"),
        ("cogs/dice.py?", "pattern"),
        ("{cogs,bot}/x.py", "pattern"),
        ("~/notes.py", "home directory"),
        (".env", "environment file"),
        ("data/mendbot.db", "data/"),
        (".git/HEAD", ".git/"),
        ("escape.py", "outside the worktree"),
        ("bot/improve/guard.py", "protected"),
        ("Makefile", "protected"),
    ],
)
def test_a_claim_that_is_not_a_file_of_the_worktree_is_refused(tree: Path, raw: str, why: str) -> None:
    """`../`, `/`, the root, globs, home, secrets, .git, symlinks out and protected paths are refused."""
    with pytest.raises(ClaimRefused, match=why.replace(".", r"\.").replace("*", r"\*")):
        _norm(tree, raw)


def test_claims_resolve_like_the_guard(tree: Path) -> None:
    """Absolute, `./`, `..` inside and symlinked paths resolve to one repository-relative path."""
    assert _norm(tree, str(tree / "cogs" / "dice.py")) == "cogs/dice.py"
    assert _norm(tree, "./cogs/../cogs/dice.py") == "cogs/dice.py"
    assert _norm(tree, "alias.py") == "cogs/dice.py"
    assert _norm(tree, "cogs") == "cogs/"
    assert _norm(tree, "tests/test_new.py") == "tests/test_new.py"  # a file the run will create


def test_protected_paths_can_be_claimed_by_a_security_run(tree: Path) -> None:
    """With the security flag a protected file may be claimed; secrets never."""
    assert _norm(tree, "bot/trust/guard.py", security=True) == "bot/trust/guard.py"
    with pytest.raises(ClaimRefused):
        _norm(tree, ".env", security=True)


def test_overlap_is_by_file_directory_and_case() -> None:
    """Same file, a file inside a claimed directory, and a case-only difference all overlap."""
    assert overlapping(["cogs/dice.py"], ["cogs/dice.py", "cogs/remind.py"]) == ["cogs/dice.py"]
    assert overlapping(["cogs/"], ["cogs/dice.py", "bot/x.py"]) == ["cogs/dice.py"]
    assert overlapping(["Cogs/Dice.py"], ["cogs/dice.py"]) == ["cogs/dice.py"]
    assert overlapping(["cogs/dice.py"], ["cogs/dice.pyc", "cogs/dice"]) == []
    assert covers(["cogs/"], "cogs/a/b.py") and not covers(["cogs/dice.py"], "cogs/dice.pyi")


def test_plan_files_come_from_files_else_changes() -> None:
    """A plan's `files` list is the claim; without it, the files its changes name."""
    assert plan_files({"files": ["a.py", 3, "b.py"], "changes": [{"file": "c.py"}]}) == ["a.py", "b.py"]
    assert plan_files({"changes": [{"file": "c.py"}, {"change": "?"}, "x"]}) == ["c.py"]
    assert plan_files({"changes": "prose"}) == []


# -- ownership in SQLite ------------------------------------------------------------------------------


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_database(tmp_path / "mendbot.db")
    yield connection
    await connection.close()


@pytest.fixture
def runs(db: aiosqlite.Connection) -> RunService:
    return RunService(db, lambda: datetime.now(UTC))


def _service(db: aiosqlite.Connection, runs: RunService, *, wait_s: float = 5.0) -> ClaimService:
    return ClaimService(db, runs, protected=PROTECTED, extend_wait_s=wait_s, heartbeat_s=30.0)


async def _planning(runs: RunService, description: str) -> Run:
    run = await runs.create("fix", 1, None, None, description)
    for state in ("observing", "investigating", "planning"):
        run = await runs.transition(run.id, state, actor="test")
    return run


async def _no_wait(holders: dict[int, list[str]], first: bool) -> None:
    raise AssertionError(f"should not wait: {holders}")


async def test_disjoint_claims_are_both_recorded(
    db: aiosqlite.Connection, runs: RunService, tree: Path
) -> None:
    """Two live runs claiming different files both get their claim at once, recorded in SQLite."""
    claims = _service(db, runs)
    one, two = await _planning(runs, "one"), await _planning(runs, "two")
    first, refused = await claims.declare(one, tree, ["cogs/dice.py", "../x", "*.py"], on_wait=_no_wait)
    second, _ = await claims.declare(two, tree, ["cogs/remind.py"], on_wait=_no_wait)
    assert first.paths == ["cogs/dice.py"] and len(refused) == 2
    assert second.paths == ["cogs/remind.py"]
    assert await claims.paths_of(one.id) == ["cogs/dice.py"]


async def test_an_overlapping_claim_queues_until_the_holder_ends(
    db: aiosqlite.Connection, runs: RunService, tree: Path
) -> None:
    """A run claiming a file a live run holds waits (told who holds it) and gets it when that run ends."""
    claims = _service(db, runs)
    one, two = await _planning(runs, "one"), await _planning(runs, "two")
    await claims.declare(one, tree, ["cogs/"], on_wait=_no_wait)
    told: list[dict[int, list[str]]] = []
    waiting = asyncio.Event()

    async def on_wait(holders: dict[int, list[str]], first: bool) -> None:
        told.append(holders)
        waiting.set()

    queued = asyncio.create_task(claims.declare(two, tree, ["cogs/dice.py"], on_wait=on_wait))
    await asyncio.wait_for(waiting.wait(), 5)
    assert not queued.done() and told == [{one.id: ["cogs/"]}]
    await runs.transition(one.id, "editing", actor="test")  # still live: still waiting
    await asyncio.sleep(0.05)
    assert not queued.done()
    await runs.transition(one.id, "cancelled", actor="test")
    claim, _ = await asyncio.wait_for(queued, 5)
    assert claim.paths == ["cogs/dice.py"]


async def test_extension_waits_boundedly_then_says_who_holds_the_file(
    db: aiosqlite.Connection, runs: RunService, tree: Path
) -> None:
    """claim_files on a file another live run holds is refused after the bounded wait, naming the run."""
    claims = _service(db, runs, wait_s=0.2)
    one, two = await _planning(runs, "one"), await _planning(runs, "two")
    await claims.declare(one, tree, ["cogs/dice.py"], on_wait=_no_wait)
    claim, _ = await claims.declare(two, tree, ["cogs/remind.py"], on_wait=_no_wait)
    ok, answer = await claim.extend(["cogs/dice.py"], "need it")
    assert not ok and f"run #{one.id} holds `cogs/dice.py`" in answer
    assert claim.paths == ["cogs/remind.py"] and not claim.covers("cogs/dice.py")


async def test_extension_is_granted_when_the_holder_ends_during_the_wait(
    db: aiosqlite.Connection, runs: RunService, tree: Path
) -> None:
    """claim_files waiting on another run's file gets it as soon as that run ends, and records it."""
    claims = _service(db, runs, wait_s=30)
    one, two = await _planning(runs, "one"), await _planning(runs, "two")
    await claims.declare(one, tree, ["cogs/dice.py"], on_wait=_no_wait)
    claim, _ = await claims.declare(two, tree, ["cogs/remind.py"], on_wait=_no_wait)
    asking = asyncio.create_task(claim.extend(["cogs/dice.py"], "need it"))
    await asyncio.sleep(0.05)
    assert not asking.done()
    await runs.fail(one.id, "planning", "gave up", actor="test")
    ok, answer = await asyncio.wait_for(asking, 5)
    assert ok and "cogs/dice.py" in answer and claim.covers("cogs/dice.py")
    events = [e.event for e in await runs.events(two.id)]
    assert "claim_extended" in events


async def test_an_extension_with_a_refused_path_claims_nothing(
    db: aiosqlite.Connection, runs: RunService, tree: Path
) -> None:
    """claim_files with one bad path (a glob) claims none of the paths and says why."""
    claims = _service(db, runs)
    run = await _planning(runs, "one")
    claim, _ = await claims.declare(run, tree, ["cogs/dice.py"], on_wait=_no_wait)
    ok, answer = await claim.extend(["cogs/remind.py", "bot/*"], "more")
    assert not ok and "pattern" in answer and claim.paths == ["cogs/dice.py"]
    assert await claims.paths_of(run.id) == ["cogs/dice.py"]


async def test_claims_of_runs_no_longer_live_do_not_count_and_are_released_at_start_up(
    db: aiosqlite.Connection, runs: RunService, tree: Path
) -> None:
    """An interrupted run's claim blocks nobody, and start-up deletes it; a live one stays."""
    claims = _service(db, runs)
    stopped, live = await _planning(runs, "stopped"), await _planning(runs, "live")
    await claims.declare(stopped, tree, ["cogs/dice.py"], on_wait=_no_wait)
    await claims.declare(live, tree, ["cogs/remind.py"], on_wait=_no_wait)
    await runs.mark_interrupted_on_start()  # both become interrupted, as after a crash
    await runs.transition(live.id, "queued", actor="test")  # resumed
    assert await claims.holders(0, ["cogs/dice.py", "cogs/remind.py"]) == {live.id: ["cogs/remind.py"]}
    assert await claims.release_ended() == 1
    assert await claims.paths_of(stopped.id) == [] and await claims.paths_of(live.id) == ["cogs/remind.py"]


async def test_a_merged_run_holds_nothing(db: aiosqlite.Connection, runs: RunService, tree: Path) -> None:
    """Once a run's change is merged (deployed, watching) its files are free for the next run."""
    claims = _service(db, runs)
    merged, other = await _planning(runs, "merged"), await _planning(runs, "other")
    await claims.declare(merged, tree, ["cogs/dice.py"], on_wait=_no_wait)
    for state in ("editing", "verifying", "proposing", "awaiting_approval", "merging"):
        await runs.transition(merged.id, state, actor="test")
    assert await claims.holders(other.id, ["cogs/dice.py"]) == {merged.id: ["cogs/dice.py"]}
    await runs.transition(merged.id, "deployed", actor="test")
    claim, _ = await claims.declare(other, tree, ["cogs/dice.py"], on_wait=_no_wait)
    assert claim.paths == ["cogs/dice.py"]


# -- the guard --------------------------------------------------------------------------------------


def _guard(tree: Path, claim: Claim) -> ToolGuard:
    return ToolGuard(GuardPolicy(worktree=tree, protected_paths=PROTECTED, claim=claim))


@pytest.mark.parametrize("tool", ["Edit", "Write", "MultiEdit"])
def test_an_edit_outside_the_claim_is_denied_with_how_to_extend(tree: Path, tool: str) -> None:
    """Every write tool on an unclaimed file is denied; the reason names the claim and claim_files."""
    decision = _guard(tree, Claim(1, tree, False, ["cogs/dice.py"])).check(
        tool,
        {"file_path": str(tree / "cogs" / "remind.py"), "content": "", "old_string": "y", "new_string": "z"},
    )
    assert not decision.allowed
    assert "cogs/remind.py is outside this run's claim (cogs/dice.py)" in decision.reason
    assert "claim_files" in decision.reason


def test_a_notebook_edit_outside_the_claim_is_denied(tree: Path) -> None:
    """NotebookEdit is a write tool too."""
    decision = _guard(tree, Claim(1, tree, False, ["cogs/dice.py"])).check(
        "NotebookEdit", {"notebook_path": str(tree / "n.ipynb"), "new_source": ""}
    )
    assert not decision.allowed and "outside this run's claim" in decision.reason


def test_edits_inside_the_claim_and_reads_anywhere_are_allowed(tree: Path) -> None:
    """Claimed files (also through a symlink to them) may be edited; reading is not limited by the claim."""
    guard = _guard(tree, Claim(1, tree, False, ["cogs/dice.py"]))
    assert guard.check("Edit", {"file_path": str(tree / "cogs" / "dice.py")}).allowed
    assert guard.check("Edit", {"file_path": "alias.py"}).allowed  # resolves to the claimed file
    assert guard.check("Read", {"file_path": str(tree / "cogs" / "remind.py")}).allowed


def test_an_extended_claim_is_honoured_at_once(tree: Path) -> None:
    """After the claim grows (claim_files), the same edit the guard denied is allowed."""
    claim = Claim(1, tree, False, ["cogs/dice.py"])
    guard = _guard(tree, claim)
    edit = {"file_path": str(tree / "cogs" / "remind.py")}
    assert not guard.check("Edit", edit).allowed
    claim.paths.append("cogs/remind.py")
    assert guard.check("Edit", edit).allowed


def test_a_directory_claim_covers_new_files_under_it(tree: Path) -> None:
    """A claimed directory lets the agent create a file inside it, and nothing outside."""
    guard = _guard(tree, Claim(1, tree, False, ["tests/claims/"]))
    assert guard.check("Write", {"file_path": str(tree / "tests" / "claims" / "test_x.py")}).allowed
    assert not guard.check("Write", {"file_path": str(tree / "tests" / "test_x.py")}).allowed


def test_ruff_rewriting_unclaimed_files_is_denied(tree: Path) -> None:
    """`ruff format` / `ruff check --fix` may rewrite only claimed files (the whole tree is refused)."""
    guard = ToolGuard(
        GuardPolicy(worktree=tree, protected_paths=PROTECTED, claim=Claim(1, tree, False, ["cogs/dice.py"])),
        confine=lambda argv, wall: " ".join(argv),
    )
    assert guard.check("Bash", {"command": "ruff format cogs/dice.py"}).allowed
    denied = guard.check("Bash", {"command": "ruff format cogs/remind.py"})
    assert not denied.allowed and "outside this run's claim" in denied.reason
    assert not guard.check("Bash", {"command": "ruff check --fix ."}).allowed
    assert guard.check("Bash", {"command": "ruff check cogs/remind.py"}).allowed  # no rewrite


def test_a_run_without_a_claim_is_not_limited_by_one(tree: Path) -> None:
    """Investigations and rollbacks carry no claim: the guard's other rules alone decide."""
    guard = ToolGuard(GuardPolicy(worktree=tree, protected_paths=PROTECTED))
    assert guard.check("Edit", {"file_path": str(tree / "cogs" / "remind.py")}).allowed
