"""The merge queue: approval order, and import-only rebase conflicts resolved (real git, sandboxed
re-verification) while every other conflict is left to the human."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from mendbot.deploy.import_conflicts import (
    change_without_imports,
    isort_configured,
    resolve_import_conflicts,
    resolve_import_hunks,
)
from mendbot.deploy.merge import RebaseConflict
from mendbot.deploy.queue import MergeQueue
from tests.harness.repo import git
from tests.test_merge import commit, merger_for, on_main, worktrees

BRANCH = "mendbot/8-use-os"
APP = (
    '"""The app."""\n\nimport sys\n\n\ndef main() -> int:\n    return len(sys.argv)\n\n\n'
    "def other() -> int:\n    return 2\n"
)
OTHER = "def other() -> int:"
RUFF_ISORT = '[tool.ruff]\nline-length = 100\n\n[tool.ruff.lint]\nselect = ["E", "F", "I"]\n'


def _conflict(ours: str, theirs: str, before: str = '"""Doc."""\n\n', after: str = "\n\nx = 1\n") -> str:
    return f"{before}<<<<<<< HEAD\n{ours}=======\n{theirs}>>>>>>> 1234567 (branch)\n{after}"


def test_an_import_only_hunk_becomes_the_union_of_both_sides() -> None:
    """Main's imports first, then the branch's that main lacks; a statement on both sides appears once."""
    text = _conflict("import json\nimport sys\n", "import os\nimport sys\n")
    assert resolve_import_hunks(text) == '"""Doc."""\n\nimport json\nimport sys\nimport os\n\n\nx = 1\n'


def test_multi_line_from_imports_are_kept_whole() -> None:
    """A parenthesised `from … import (…)` on one side is carried as one statement."""
    text = _conflict("from typing import Any\n", "from typing import (\n    Any,\n    cast,\n)\n")
    merged = resolve_import_hunks(text)
    assert merged is not None
    assert "from typing import Any\nfrom typing import (\n    Any,\n    cast,\n)\n" in merged


def test_a_diff3_hunk_ignores_the_common_ancestor() -> None:
    """With diff3 markers the base section is dropped; the two sides are united."""
    text = '"""Doc."""\n<<<<<<< HEAD\nimport a\n||||||| base\nimport z\n=======\nimport b\n>>>>>>> x\n'
    assert resolve_import_hunks(text) == '"""Doc."""\nimport a\nimport b\n'


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (_conflict("import os\n", "x = 2\n"), "code on one side"),
        (_conflict("import os\nprint(1)\n", "import sys\n"), "code beside imports"),
        (_conflict("import os\n", "import sys\n", before="x = 1\n"), "imports below code"),
        (
            _conflict("    import os\n", "    import sys\n", before="def f():\n", after="    return 1\n"),
            "imports inside a function",
        ),
        ('"""Doc."""\n<<<<<<< HEAD\nimport os\n=======\nimport sys\n', "an unterminated hunk"),
        ("import os\n", "no conflict at all"),
    ],
)
def test_anything_but_an_import_block_hunk_is_not_resolved(text: str, why: str) -> None:
    """Code in a hunk, imports below code or inside a function, broken markers: left to the human."""
    assert resolve_import_hunks(text) is None, why


def test_isort_is_detected_in_the_repositorys_ruff_configuration(tmp_path: Path) -> None:
    """`I` in lint.select (or extend-select, or ruff.toml) turns sorting on; its absence leaves it off."""
    (tmp_path / "pyproject.toml").write_text(RUFF_ISORT)
    assert isort_configured(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.ruff.lint]\nselect = ["E", "F"]\n')
    assert not isort_configured(tmp_path)
    (tmp_path / "ruff.toml").write_text('[lint]\nextend-select = ["I001"]\n')
    assert isort_configured(tmp_path)


def test_a_change_compared_without_imports_ignores_only_the_import_block() -> None:
    """Two versions differing only in imports have the same change; a code difference still shows."""
    before, after = APP, APP.replace("import sys\n", "import os\nimport sys\n")
    assert change_without_imports(before, after) == []
    assert change_without_imports(before, after.replace("len(", "max(1, len(")) != []


# -- rebasing in a real repository ------------------------------------------------------------------


def _app_repo(root: Path, *, isort: bool = True) -> tuple[str, str]:
    """main with app.py; BRANCH adds `import base64` and code using it; main then adds `import json` at the
    same place. Returns (base, head)."""
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    files: dict[str, str | None] = {"app.py": APP}
    if isort:
        files["pyproject.toml"] = RUFF_ISORT
    base = commit(root, files, "initial")
    git(root, "switch", "-q", "-c", BRANCH)
    branch_app = APP.replace("import sys\n", "import base64\nimport sys\n").replace(
        OTHER, "def encode() -> bytes:\n    return base64.b64encode(b'x')\n\n\n" + OTHER
    )
    head = commit(root, {"app.py": branch_app}, "use base64\n\nRun-Id: 8")
    git(root, "switch", "-q", "main")
    main_app = APP.replace("import sys\n", "import json\nimport sys\n") + (
        "\n\ndef dump() -> str:\n    return json.dumps(1)\n"
    )
    on_main(root, {"app.py": main_app}, "main uses json")
    return base, head


CHECK = "python -c 'import app; app.encode(); app.dump()'"


async def test_an_import_only_conflict_is_resolved_sorted_and_reverified(tmp_path: Path) -> None:
    """Both sides added an import at the same place: united, ruff-sorted, verified, the diff unchanged."""
    root = tmp_path / "repo"
    base, head = _app_repo(root)
    merger = merger_for(root, tmp_path, [CHECK])
    outcome = await merger.rebase_and_reverify(BRANCH, base, head, 8)
    assert outcome.resolved_imports == ["app.py"]
    assert outcome.verification.ok, outcome.verification.failure_report()
    assert not outcome.diff_changed
    merged = git(root, "show", f"{outcome.new_sha}:app.py")
    assert merged.startswith('"""The app."""\n\nimport base64\nimport json\nimport sys\n')
    assert "return base64.b64encode(b'x')" in merged and "return json.dumps(1)" in merged
    assert git(root, "rev-parse", BRANCH) == outcome.new_sha
    assert git(root, "rev-parse", f"{outcome.new_sha}^") == git(root, "rev-parse", "main")
    assert len(worktrees(root)) == 1


async def test_without_isort_configured_the_union_is_kept_as_it_is(tmp_path: Path) -> None:
    """No ruff isort in the repository: main's import, then the branch's, unsorted."""
    root = tmp_path / "repo"
    base, head = _app_repo(root, isort=False)
    outcome = await merger_for(root, tmp_path, [CHECK]).rebase_and_reverify(BRANCH, base, head, 8)
    assert outcome.resolved_imports == ["app.py"] and outcome.verification.ok
    assert git(root, "show", f"{outcome.new_sha}:app.py").startswith(
        '"""The app."""\n\nimport json\nimport base64\nimport sys\n'
    )


async def test_a_resolved_rebase_that_fails_the_checks_does_not_move_the_branch(tmp_path: Path) -> None:
    """The resolution is re-verified: a check it fails (and main passes) leaves the branch at the approved
    head. (A check main fails as well is main's doing, not the resolution's: tests/test_merge.py.)"""
    root = tmp_path / "repo"
    base, head = _app_repo(root)
    fails_with_the_change = "python -c 'import app, sys; sys.exit(hasattr(app, \"encode\"))'"
    outcome = await merger_for(root, tmp_path, [fails_with_the_change]).rebase_and_reverify(
        BRANCH, base, head, 8
    )
    assert outcome.resolved_imports == ["app.py"] and not outcome.verification.ok
    assert git(root, "rev-parse", BRANCH) == head


async def test_a_conflict_in_code_next_to_imports_is_left_to_the_human(tmp_path: Path) -> None:
    """Main changed the same code line too: RebaseConflict names the file; nothing is resolved or moved."""
    root = tmp_path / "repo"
    base, head = _app_repo(root)
    on_main(root, {"app.py": APP.replace("len(sys.argv)", "len(sys.argv) + 1")}, "main edits main()")
    git(root, "switch", "-q", BRANCH)
    head = commit(root, {"app.py": git(root, "show", f"{head}:app.py").replace("len(sys.argv)", "0")}, "edit")
    git(root, "switch", "-q", "main")
    with pytest.raises(RebaseConflict) as caught:
        await merger_for(root, tmp_path, [CHECK]).rebase_and_reverify(BRANCH, base, head, 8)
    assert caught.value.files == ["app.py"]
    assert git(root, "rev-parse", BRANCH) == head
    assert len(worktrees(root)) == 1


# -- order ------------------------------------------------------------------------------------------


async def test_merges_run_one_at_a_time_in_the_order_they_were_approved() -> None:
    """Three approvals at once: each merge starts after the previous ends; later ones hear who is ahead."""
    queue = MergeQueue()
    log: list[str] = []
    told: dict[int, list[int]] = {}
    gate = asyncio.Event()

    def job(run_id: int) -> Callable[[], Awaitable[str]]:
        async def merge() -> str:
            log.append(f"start {run_id}")
            if run_id == 3:
                await gate.wait()  # the first merge is slow
            await asyncio.sleep(0)
            log.append(f"end {run_id}")
            return f"merged {run_id}"

        return merge

    async def queued_for(run_id: int, ahead: list[int]) -> None:
        told[run_id] = ahead

    def on_queued(run_id: int) -> Callable[[list[int]], Awaitable[None]]:
        return lambda ahead: queued_for(run_id, ahead)

    tasks = [
        asyncio.create_task(queue.submit(run_id, job(run_id), on_queued=on_queued(run_id)))
        for run_id in (3, 1, 2)
    ]
    await asyncio.sleep(0.01)
    assert log == ["start 3"] and queue.pending == [3, 1, 2]
    gate.set()
    results = await asyncio.gather(*tasks)
    assert results == ["merged 3", "merged 1", "merged 2"]
    assert log == ["start 3", "end 3", "start 1", "end 1", "start 2", "end 2"]
    assert told == {1: [3], 2: [3, 1]} and queue.pending == []


async def test_a_failed_merge_does_not_stop_the_queue() -> None:
    """A merge that raises ends its turn; the next approved merge still runs."""
    queue = MergeQueue()

    async def broken() -> str:
        raise RuntimeError("git failed")

    async def fine() -> str:
        return "merged"

    first = asyncio.create_task(queue.submit(1, broken))
    second = asyncio.create_task(queue.submit(2, fine))
    with pytest.raises(RuntimeError):
        await first
    assert await second == "merged"


async def test_conflicts_in_a_non_python_file_or_through_a_link_are_not_touched(tmp_path: Path) -> None:
    """Only real .py files inside the tree are rewritten; all or nothing, so one such file stops all."""
    root, outside = tmp_path / "tree", tmp_path / "outside.py"
    root.mkdir()
    conflict = _conflict("import os\n", "import sys\n")
    (root / "ok.py").write_text(conflict)
    (root / "notes.txt").write_text(conflict)
    outside.write_text(conflict)
    (root / "link.py").symlink_to(outside)
    assert not await resolve_import_conflicts(root, ["ok.py", "notes.txt"])
    assert not await resolve_import_conflicts(root, ["ok.py", "link.py"])
    assert (root / "ok.py").read_text() == conflict and outside.read_text() == conflict
    assert await resolve_import_conflicts(root, ["ok.py"])
    assert "<<<<<<<" not in (root / "ok.py").read_text()
