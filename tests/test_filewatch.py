"""mendbot.kernel.filewatch on a real directory tree: what a change reports, in which batches, what never."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import structlog

from mendbot.kernel.filewatch import changed_files


class Batches:
    """The batches a running `changed_files` yielded, as they come."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[set[Path]] = asyncio.Queue()

    async def next(self, timeout: float = 30) -> set[Path]:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def none_within(self, seconds: float) -> bool:
        try:
            batch = await asyncio.wait_for(self.queue.get(), seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected batch {batch}")


@asynccontextmanager
async def watching(
    *roots: Path, keep: Callable[[Path], bool] = lambda _: True, debounce_ms: int = 300
) -> AsyncIterator[Batches]:
    batches = Batches()
    stop = asyncio.Event()
    started = asyncio.Event()

    async def run() -> None:
        changes = changed_files(roots, keep=keep, debounce_ms=debounce_ms, stop=stop)
        first = asyncio.ensure_future(anext(changes, None))
        await asyncio.sleep(0)  # the generator's first step has run: the roots are watched
        started.set()
        batch = await first
        while batch is not None:
            await batches.queue.put(batch)
            batch = await anext(changes, None)

    task = asyncio.create_task(run())
    await started.wait()
    try:
        yield batches
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)  # stopping ends the iteration


def _tree(root: Path) -> Path:
    (root / "cogs" / "games").mkdir(parents=True)
    (root / "cogs" / "games" / "dice.py").write_text("v1\n")
    (root / "cogs" / "__pycache__").mkdir()
    (root / "prompts").mkdir()
    (root / "pyproject.toml").write_text("[project]\n")
    (root / "README.md").write_text("readme\n")
    return root


async def test_a_burst_of_writes_to_a_nested_file_is_one_batch(tmp_path: Path) -> None:
    """Three quick saves of a file two levels down are one batch naming it, and nothing follows."""
    root = _tree(tmp_path)
    dice = root / "cogs" / "games" / "dice.py"
    async with watching(root / "cogs") as batches:
        for version in range(3):
            dice.write_text(f"v{version + 2}\n")
        assert await batches.next() == {dice}
        assert await batches.none_within(0.5)


async def test_created_removed_and_renamed_files_are_reported(tmp_path: Path) -> None:
    """A new file, a removed one and both names of a rename are each reported."""
    root = _tree(tmp_path)
    games = root / "cogs" / "games"
    async with watching(root / "cogs") as batches:
        (games / "coin.py").write_text("new\n")
        assert await batches.next() == {games / "coin.py"}
        (games / "dice.py").unlink()
        assert await batches.next() == {games / "dice.py"}
        (games / "coin.py").rename(games / "flip.py")
        assert await batches.next() == {games / "coin.py", games / "flip.py"}


async def test_a_new_directory_is_watched_and_what_landed_in_it_first_is_reported(tmp_path: Path) -> None:
    """A directory tree made at once is reported with its file, and watched for later edits."""
    root = _tree(tmp_path)
    async with watching(root / "cogs") as batches:
        package = root / "cogs" / "cards"
        (package / "deep").mkdir(parents=True)  # a whole tree at once, before any watch can be on it
        (package / "deep" / "deck.py").write_text("v1\n")
        assert root / "cogs" / "cards" / "deep" / "deck.py" in set().union(
            await batches.next(), *[await batches.next() for _ in range(batches.queue.qsize())]
        )
        await asyncio.sleep(0.4)
        (package / "deep" / "deck.py").write_text("v2\n")  # and the new directory is watched from now on
        assert await batches.next() == {package / "deep" / "deck.py"}


async def test_hidden_entries_bytecode_dirs_and_unkept_files_are_never_reported(tmp_path: Path) -> None:
    """Bytecode, swap and lock files, hidden directories and files `keep` refuses are never reported."""
    root = _tree(tmp_path)
    cogs = root / "cogs"
    async with watching(cogs, keep=lambda path: path.suffix == ".py") as batches:
        (cogs / "__pycache__" / "dice.cpython-311.pyc").write_bytes(b"\0")
        (cogs / "games" / ".dice.py.swp").write_text("swap\n")
        (cogs / "games" / ".#dice.py").write_text("lock\n")
        (cogs / "games" / "notes.txt").write_text("not kept\n")
        (cogs / ".git").mkdir()
        (cogs / ".git" / "x.py").write_text("hidden directory\n")
        assert await batches.none_within(0.6)
        (cogs / "games" / "dice.py").write_text("v2\n")
        assert await batches.next() == {cogs / "games" / "dice.py"}


async def test_a_file_root_is_seen_through_an_editors_rename_and_its_siblings_are_not(tmp_path: Path) -> None:
    """A file root replaced by rename (an editor's save) is reported; its directory's other files are not."""
    root = _tree(tmp_path)
    pyproject = root / "pyproject.toml"
    async with watching(pyproject) as batches:
        (root / "README.md").write_text("changed\n")
        assert await batches.none_within(0.5)
        saved = root / "pyproject.toml.tmp"
        saved.write_text("[project]\nname = 'x'\n")
        os.replace(saved, pyproject)  # how many editors save
        assert await batches.next() == {pyproject}


async def test_a_directory_moved_away_is_no_longer_watched(tmp_path: Path) -> None:
    """Edits in a directory moved out of the roots are not reported."""
    root = _tree(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    async with watching(root / "cogs") as batches:
        (root / "cogs" / "games").rename(elsewhere)
        assert await batches.none_within(0.5)  # a directory's move reports no file
        (elsewhere / "dice.py").write_text("outside the roots now\n")
        assert await batches.none_within(0.5)


async def test_roots_that_do_not_exist_are_skipped_and_stop_ends_it(tmp_path: Path) -> None:
    """A missing root is skipped, the others are watched, and setting `stop` ends the iteration."""
    root = _tree(tmp_path)
    async with watching(root / "missing", root / "prompts") as batches:
        (root / "prompts" / "persona.md").write_text("hi\n")
        assert await batches.next() == {root / "prompts" / "persona.md"}


async def test_without_inotify_it_says_so_and_yields_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where inotify cannot be had (another OS's libc), watching logs why and ends: the caller runs on."""
    monkeypatch.setitem(sys.modules, "asyncinotify", None)  # as its import fails off Linux
    root = _tree(tmp_path)
    with structlog.testing.capture_logs() as logs:
        batches = [batch async for batch in changed_files([root / "cogs"])]
    assert batches == []
    assert [log["event"] for log in logs] == ["file watching unavailable (it needs Linux's inotify)"]


def _queued_events_limit() -> int:
    return int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())


async def test_a_burst_beyond_the_kernels_queue_is_said_and_watching_goes_on(tmp_path: Path) -> None:
    """More changes at once than inotify queues log a warning, and later edits are still seen."""
    root = _tree(tmp_path)
    games = root / "cogs" / "games"
    overflowed = "too many file changes at once: some were not seen"
    async with watching(root / "cogs") as batches:
        with structlog.testing.capture_logs() as logs:
            for index in range(_queued_events_limit() // 2 + 100):  # a create and a close-write each
                (games / f"f{index}.py").write_text("")
            while overflowed not in [log["event"] for log in logs]:
                await batches.next()
        while True:  # what the burst left in the queue
            try:
                await batches.next(timeout=0.5)
            except TimeoutError:
                break
        (games / "dice.py").write_text("after the burst\n")
        assert await batches.next() == {games / "dice.py"}
