"""Two real `mendbot run` processes, one shard each, on one PostgreSQL database and the Discord double:
when the leader is killed (SIGKILL) the other leads and announces the next incident, exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mendbot.db import actions as action_queries
from mendbot.db import core
from mendbot.db.records import ActionRecord
from mendbot.trust.loopback_discord import DiscordDouble

pytestmark = pytest.mark.engines

REPO = Path(__file__).resolve().parent.parent
WITHIN_S = 60.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _config(root: Path, double: DiscordDouble, url: str, shard: int, port: int) -> Path:
    root.mkdir(parents=True)
    path = root / "config.yaml"
    path.write_text(
        f"data_dir: {root / 'data'}\nrepo_dir: {root}\n"
        f"health: {{enabled: true, port: {port}}}\n"
        "deploy: {watch_hand_edits: false}\n"
        "improve: {autonomy: 'off'}\n"
        f"database: {{url: '{url}'}}\n"
        f"discord:\n  dev_guild_id: {double.guild.id}\n"
        f"  dev_channel_ids: [{double.guild.channel('dev').id}]\n"
        f"  shard_count: 2\n  shard_ids: [{shard}]\n"
    )
    return path


async def _start(double: DiscordDouble, config: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "MENDBOT_CONFIG"}
    env.update(PYTHONPATH=str(REPO), DISCORD_TOKEN=double.token, MENDBOT_SUPERVISED="1")
    with (config.parent / "stderr.txt").open("wb") as stderr:  # the child keeps its own copy
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.harness.pointed",
            double.url,
            double.gateway_url,
            "--",
            "--config",
            str(config),
            "run",
            cwd=config.parent,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )


async def _health(http: aiohttp.ClientSession, port: int) -> dict[str, Any] | None:
    try:
        async with http.get(f"http://127.0.0.1:{port}/health") as response:
            body: dict[str, Any] = await response.json()
            return body
    except (aiohttp.ClientError, ValueError):
        return None


async def _until(check: Callable[[], Any], within: float = WITHIN_S) -> Any:
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.1)  # polling the processes' health, not timing them


def _announcements(double: DiscordDouble) -> list[str]:
    dev = str(double.guild.channel("dev").id)
    return [
        str(embed.get("title", "")) + str(embed.get("description", ""))
        for message in double.messages
        if message["channel_id"] == dev
        for embed in message["embeds"]
    ]


async def _fail(url: str, kind: str, message: str) -> None:
    """Failures as a process's writer stores them (any process: the leader reads the table)."""
    db = await core.open_postgresql(url)
    try:
        now = time.time()
        records = [
            ActionRecord(
                ts=now,
                kind=kind,
                source="test",
                ok=False,
                duration_ms=1.0,
                error_type="RuntimeError",
                error_message=message,
                fingerprint=f"fp-{kind}",
                user_id=7,
            )
            for _ in range(2)
        ]
        await action_queries.insert_many(db, records)
    finally:
        await db.close()


@contextlib.asynccontextmanager
async def _processes(*started: asyncio.subprocess.Process) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for process in started:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), timeout=30)
            if process.returncode is None:
                process.kill()


async def test_killed_leader_the_other_process_announces_the_next_incident_once(
    tmp_path: Path, postgres_url: str
) -> None:
    """kill -9 of the leading process: the other leads within seconds and announces the next
    incident once; the incident the dead leader announced is not announced again."""
    async with DiscordDouble() as double:
        ports = [_free_port(), _free_port()]
        configs = [
            _config(tmp_path / f"p{shard}", double, postgres_url, shard, ports[shard]) for shard in (0, 1)
        ]
        processes = [await _start(double, config) for config in configs]
        async with _processes(*processes), aiohttp.ClientSession() as http:

            async def leader() -> list[int]:
                for index, port in enumerate(ports):
                    body = await _health(http, port)
                    if body and body.get("leader") and body.get("actions_tail") is not None:
                        return [index]
                return []

            [first] = await _until(leader)
            await _until(lambda: _all_ready(http, ports))
            await _fail(postgres_url, "command:roll", "first storm")
            await _until(_async(lambda: len(_announcements(double)) >= 1))
            processes[first].kill()  # SIGKILL: no drain, no goodbye
            await processes[first].wait()
            killed_at = time.monotonic()
            other = 1 - first

            async def other_leads() -> bool:
                body = await _health(http, ports[other])
                return bool(body and body.get("leader"))

            await _until(other_leads)
            assert time.monotonic() - killed_at < 15
            await _fail(postgres_url, "command:roll", "first storm")  # the same storm goes on
            await _fail(postgres_url, "command:dice", "second storm")
            await _until(_async(lambda: len(_announcements(double)) >= 2))
            await asyncio.sleep(1.5)  # anything announced twice would be by now (the tail polls every 0.5 s)
            texts = _announcements(double)
            assert len(texts) == 2, texts
            assert "the `roll` command" in texts[0] and "the `dice` command" in texts[1]


async def _all_ready(http: aiohttp.ClientSession, ports: list[int]) -> bool:
    for port in ports:
        body = await _health(http, port)
        if not (body and body.get("discord_ready")):
            return False
    return True


def _async(check: Callable[[], bool]) -> Callable[[], Any]:
    async def checked() -> bool:
        return check()

    return checked
