"""A staged rollout with two real `mendbot run` processes (one shard each, each on its own checkout, one
PostgreSQL database, the Discord double): the canary takes the merged fix first; the leader, killed
with SIGKILL mid-watch, is replaced by the canary, which resumes the rollout from its stored stage; the
killed process, restarted meanwhile, stays on the old commit until the canary's watch passed."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.db import core
from bot.db import proposals as proposal_queries
from bot.db.runs import get_setting
from bot.improve.runs import RunService
from bot.scale.rollout import ROLLOUT_KEY
from bot.trust.loopback_discord import DiscordDouble
from tests.test_cluster import _git
from tests.test_cluster_processes import _free_port, _health, _processes, _start

pytestmark = pytest.mark.engines

WATCH_S = 12.0
WITHIN_S = 60.0


def _origin(path: Path) -> tuple[str, str]:
    """A repository with two commits (the second changes a file nothing loads)."""
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    (path / "NOTES.md").write_text("one\n")
    _git(path, "add", "-A")
    _git(path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "one")
    first = _git(path, "rev-parse", "HEAD")
    (path / "NOTES.md").write_text("two\n")
    _git(path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qam", "two")
    return first, _git(path, "rev-parse", "HEAD")


def _config(
    root: Path, origin: Path, first: str, double: DiscordDouble, *, url: str, shard: int, port: int
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
        f"deploy: {{watch_hand_edits: false, watch_window_s: {WATCH_S}, canary_shards: [0]}}\n"
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
    db = await core.open_postgresql(url)
    try:
        stored = await get_setting(db, ROLLOUT_KEY)
        return None if stored is None else str(stored["stage"])
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
