"""A staged rollout with two real `mendbot run` processes (one shard each, each on its own checkout, one
PostgreSQL database, the Discord double): the canary takes the merged fix first; the leader, killed
with SIGKILL mid-watch, is replaced by the canary, which resumes the rollout from its stored stage; the
killed process, restarted meanwhile, stays on the old commit until the canary's watch passed. A
regression in the canary's own records rolls back the canary only: the other process never runs the
fix, and both end on the canary revert."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mendbot.db import actions as action_queries
from mendbot.db import core
from mendbot.db import proposals as proposal_queries
from mendbot.db.records import ActionRecord
from mendbot.db.runs import get_setting
from mendbot.improve.runs import RunService
from mendbot.scale.rollout import ROLLOUT_KEY
from mendbot.trust.loopback_discord import DiscordDouble
from tests.test_cluster import _git
from tests.test_cluster_processes import _free_port, _health, _processes, _start

pytestmark = pytest.mark.engines

WATCH_S = 12.0
WITHIN_S = 60.0


def _origin(path: Path, touched: str = "NOTES.md") -> tuple[str, str]:
    """A repository with two commits (the second writes `touched`, a file nothing loads)."""
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    (path / "NOTES.md").write_text("one\n")
    _git(path, "add", "-A")
    _git(path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "one")
    first = _git(path, "rev-parse", "HEAD")
    (path / touched).parent.mkdir(parents=True, exist_ok=True)
    (path / touched).write_text("two\n")
    _git(path, "add", "-A")
    _git(path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "two")
    return first, _git(path, "rev-parse", "HEAD")


def _config(
    root: Path,
    origin: Path,
    first: str,
    double: DiscordDouble,
    *,
    url: str,
    shard: int,
    port: int,
    watch_s: float = WATCH_S,
) -> Path:
    root.mkdir(parents=True)
    checkout = root / "checkout"
    if not checkout.exists():
        _git(root, "clone", "-q", str(origin), str(checkout))
        _git(checkout, "reset", "-q", "--hard", first)
    path = root / "config.yaml"
    path.write_text(
        f"data_dir: {root / 'data'}\nrepo_dir: {checkout}\n"
        f"health: {{enabled: true, port: {port}}}\n"
        f"deploy: {{watch_hand_edits: false, watch_window_s: {watch_s}, canary_shards: [0]}}\n"
        "improve: {autonomy: 'off'}\n"
        f"database: {{url: '{url}'}}\n"
        f"discord:\n  dev_guild_id: {double.guild.id}\n"
        f"  dev_channel_ids: [{double.guild.channel('dev').id}]\n"
        f"  shard_count: 2\n  shard_ids: [{shard}]\n"
    )
    return path


async def _merge_recorded(url: str, checkouts: list[Path], first: str, second: str) -> int:
    """A run whose merge of `second` the forge recorded (in every checkout: whichever leads finds it),
    `merging`: the leader's merge pass takes it from there."""
    db = await core.open_postgresql(url)
    try:
        runs = RunService(db, lambda: datetime.now(UTC))
        run = await runs.create("fix", 1, None, None, "fix the notes")
        for state in ("editing", "verifying", "awaiting_approval"):
            await runs.transition(run.id, state, actor="test")
        proposal = await proposal_queries.insert(
            db,
            run_id=run.id,
            forge="local",
            branch=f"mendbot/{run.id}-notes",
            head_sha=second,
            title="fix the notes",
            body="",
            now=time.time(),
            state="merged",
        )
        for checkout in checkouts:
            _git(checkout, "update-ref", f"refs/mendbot/merged/{proposal.id}", second)
        await runs.transition(
            run.id,
            "merging",
            actor="test",
            base_sha=first,
            verified_sha=second,
            head_sha=second,
            proposal_id=proposal.id,
        )
        return run.id
    finally:
        await db.close()


async def _stage(url: str) -> str | None:
    stored = await _setting(url, ROLLOUT_KEY)
    return None if stored is None else str(stored["stage"])


async def _setting(url: str, key: str) -> Any:
    db = await core.open_postgresql(url)
    try:
        return await get_setting(db, key)
    finally:
        await db.close()


async def _fail_in(url: str, process: str, frame: str, message: str) -> int:
    """Failures in `frame` as `process`'s writer stores them (tests/test_cluster_processes.py::_fail);
    the id of the last action stored."""
    db = await core.open_postgresql(url)
    try:
        records = [
            ActionRecord(
                ts=time.time(),
                kind="command:notes",
                source="test",
                ok=False,
                duration_ms=1.0,
                error_type="RuntimeError",
                error_message=message,
                fingerprint="fp-notes",
                frames=["cogs/notes.py:12:notes", frame],
                user_id=7,
                process=process,
            )
            for _ in range(2)
        ]
        await action_queries.insert_many(db, records)
        return await action_queries.last_id(db)
    finally:
        await db.close()


async def _until(check: Any, within: float = WITHIN_S) -> Any:
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.1)  # polling the processes' health, not timing them


async def test_the_canary_first_and_a_killed_leader_s_rollout_resumed(
    tmp_path: Path, postgres_url: str
) -> None:
    """Shards 1 leads and merges: only the canary (shards 0) runs the fix; kill -9 of the leader
    mid-watch: the canary leads, resumes the watch and, once it passes, the restarted shards 1 —
    on the old commit until then — takes the fix: both end on it, stage done."""
    origin = tmp_path / "origin"
    first, second = _origin(origin)
    async with DiscordDouble() as double, aiohttp.ClientSession() as http:
        ports = {0: _free_port(), 1: _free_port()}
        roots = {shard: tmp_path / f"p{shard}" for shard in (0, 1)}
        configs = {
            shard: _config(
                roots[shard], origin, first, double, url=postgres_url, shard=shard, port=ports[shard]
            )
            for shard in (0, 1)
        }

        async def commit_of(shard: int) -> str | None:
            body = await _health(http, ports[shard])
            return None if body is None else body.get("commit")

        async def leads(shard: int) -> bool:
            body = await _health(http, ports[shard])
            return bool(body and body.get("leader") and body.get("actions_tail") is not None)

        async def ready(shard: int) -> bool:
            body = await _health(http, ports[shard])
            return bool(body and body.get("discord_ready"))

        leader = await _start(double, configs[1])
        async with _processes(leader):
            await _until(lambda: leads(1))
            canary = await _start(double, configs[0])
            async with _processes(canary):
                await _until(lambda: ready(0))
                await _until(lambda: ready(1))
                run_id = await _merge_recorded(
                    postgres_url, [roots[0] / "checkout", roots[1] / "checkout"], first, second
                )

                async def canary_runs_it() -> bool:
                    return await commit_of(0) == second

                await _until(canary_runs_it)
                assert await _stage(postgres_url) == "canary"
                assert await commit_of(1) == first
                assert _git(roots[1] / "checkout", "rev-parse", "HEAD") == first
                leader.kill()  # SIGKILL mid-watch: nothing finished, nothing cleaned
                await leader.wait()
                await _until(lambda: leads(0))
                restarted = await _start(double, configs[1])
                async with _processes(restarted):
                    await _until(lambda: ready(1))
                    runs_now = await commit_of(1)
                    if await _stage(postgres_url) == "canary":  # read after: the stage only moves on
                        assert runs_now == first  # restarted mid-canary: still the old code

                    async def both_run_it() -> bool:
                        return await commit_of(0) == second and await commit_of(1) == second

                    await _until(both_run_it)
                    assert _git(roots[1] / "checkout", "rev-parse", "HEAD") == second

                    async def done() -> bool:
                        return await _stage(postgres_url) == "done"

                    await _until(done)
                    db = await core.open_postgresql(postgres_url)
                    try:
                        run = await RunService(db, lambda: datetime.now(UTC)).get(run_id)
                    finally:
                        await db.close()
                    assert run.state == "resolved"


TOUCHED = "tools/notes.py"


async def test_a_regression_on_the_canary_rolls_back_the_canary_only(
    tmp_path: Path, postgres_url: str
) -> None:
    """Shards 1 leads and merges a change to TOUCHED; the canary (shards 0) runs it. Failures in
    that file recorded by shards 1 (which does not run the fix) leave the canary's watch alone; the
    same failures recorded by the canary regress it: stage `rolled_back`, both processes end on the
    canary revert (the first commit's tree, on top of the merge), the channel is told only the
    canary ran the fix — and shards 1 never ran the merged commit."""
    origin = tmp_path / "origin"
    first, second = _origin(origin, TOUCHED)
    async with DiscordDouble() as double, aiohttp.ClientSession() as http:
        ports = {0: _free_port(), 1: _free_port()}
        roots = {shard: tmp_path / f"p{shard}" for shard in (0, 1)}
        configs = {  # a long window: the regression ends the watch, its end is never waited for
            shard: _config(
                roots[shard],
                origin,
                first,
                double,
                url=postgres_url,
                shard=shard,
                port=ports[shard],
                watch_s=120.0,
            )
            for shard in (0, 1)
        }

        async def health(shard: int) -> dict[str, Any]:
            return await _health(http, ports[shard]) or {}

        async def leads() -> bool:
            body = await health(1)
            return bool(body.get("leader")) and body.get("actions_tail") is not None

        async def ready(shard: int) -> bool:
            return bool((await health(shard)).get("discord_ready"))

        leader = await _start(double, configs[1])
        async with _processes(leader):
            await _until(leads)
            canary = await _start(double, configs[0])
            async with _processes(canary):
                await _until(lambda: ready(0))
                await _until(lambda: ready(1))
                async with _commits_of(http, ports[1], postgres_url, "shards 1") as seen_on_1:
                    run_id = await _merge_recorded(
                        postgres_url, [roots[0] / "checkout", roots[1] / "checkout"], first, second
                    )

                    async def canary_runs_it() -> bool:
                        return (await health(0)).get("commit") == second

                    await _until(canary_runs_it)
                    assert await _stage(postgres_url) == "canary"
                    frame = f"{TOUCHED}:1:tidy"

                    # Shards 1 does not run the fix: its failures say nothing about it.
                    elsewhere = await _fail_in(postgres_url, "shards 1", frame, "leader storm")

                    async def tailed(upto: int) -> bool:
                        return int((await health(1)).get("actions_tail") or 0) >= upto

                    await _until(lambda: tailed(elsewhere))
                    await asyncio.sleep(0.5)  # a regression the leader's watch saw would be stored by now
                    assert await _stage(postgres_url) == "canary"

                    # The canary runs it: the same failures there are the fix's.
                    await _fail_in(postgres_url, "shards 0", frame, "canary storm")

                    async def rolled_back() -> dict[str, Any] | None:
                        state = await _setting(postgres_url, ROLLOUT_KEY)
                        return state if state.get("revert") else None

                    state = await _until(rolled_back)
                    assert state["stage"] in ("rolled_back", "done") and "all_at" not in state, state
                    assert "canary storm" in state["why"], state
                    revert = str(state["revert"])

                    async def both_run_the_revert() -> bool:
                        return (await health(0)).get("commit") == revert == (await health(1)).get("commit")

                    await _until(both_run_the_revert)

                    async def done() -> bool:
                        return await _stage(postgres_url) == "done"

                    await _until(done)
                assert second not in seen_on_1 and revert in seen_on_1, seen_on_1
                await _ended_on_the_revert(postgres_url, run_id, roots, (first, second, revert), double)


@contextlib.asynccontextmanager
async def _commits_of(http: aiohttp.ClientSession, port: int, url: str, name: str) -> AsyncIterator[set[str]]:
    """Every commit the process `name` says it runs (its /health and its stored position), sampled
    in the background while inside."""
    seen: set[str] = set()

    async def sample() -> None:
        while True:
            seen.add(str((await _health(http, port) or {}).get("commit")))
            position = await _setting(url, f"cluster.process.{name}")
            if isinstance(position, dict):
                seen.add(str(position.get("sha")))
            await asyncio.sleep(0.05)

    sampler = asyncio.get_running_loop().create_task(sample())
    try:
        yield seen
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler


async def _ended_on_the_revert(
    url: str, run_id: int, roots: dict[int, Path], shas: tuple[str, str, str], double: DiscordDouble
) -> None:
    """Both checkouts on the canary revert (the first commit's tree, on top of the merge), shards 1's
    never at the merge; the run regressed, and the channel told that only the canary ran the fix."""
    first, second, revert = shas
    for shard in (0, 1):
        checkout = roots[shard] / "checkout"
        assert _git(checkout, "rev-parse", "HEAD") == revert
        assert _git(checkout, "rev-parse", "HEAD^") == second
        assert _git(checkout, "rev-parse", "HEAD^{tree}") == _git(checkout, "rev-parse", f"{first}^{{tree}}")
    moves = _git(roots[1] / "checkout", "reflog", "--format=%H", "HEAD").split()  # newest first
    assert second not in moves[: moves.index(first)], moves  # since the reset to the first commit
    db = await core.open_postgresql(url)
    try:
        run = await RunService(db, lambda: datetime.now(UTC)).get(run_id)
    finally:
        await db.close()
    assert run.state == "rolled_back"  # regressed on the canary, then taken back
    dev = str(double.guild.channel("dev").id)
    said = [
        str(m["content"]) for m in double.messages if m["channel_id"] == dev and f"#{run_id}" in m["content"]
    ]
    regressed = next(text for text in said if f"Run #{run_id} regressed" in text)
    assert "on the canary (shards 0)" in regressed and "canary storm" in regressed, said
    assert "only the canary ever ran the fix" in regressed, regressed
    assert not any("leader storm" in text for text in said), said
