"""Leadership benchmark: how long until another process leads when the leader is killed?

Prints one `name value unit` line per figure (diagnostics go to stderr):

- `leader_failover_s`: a real PostgreSQL (the tests' embedded server, on a unix socket) and three
  `python` processes, each a `PostgresLeader` on one key with the product's default timing
  (retry 1 s, check 1 s, lease 3 s, grace 3.5 s). The leader is killed with SIGKILL; the figure
  is the time from the kill to a follower announcing it leads (the median of 5 rounds; a new
  follower replaces each killed leader). The bench checks that no follower led before the kill.
  Target ≤ 10.
- `leader_failover_max_s`: the slowest of those rounds.

Run from the repo root: `.venv/bin/python bench/leader.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from bot.leader import lock_key  # noqa: E402
from tests.harness.postgres import start_postgres  # noqa: E402

ROUNDS = 5
KEY = lock_key("bench:leader")

CHILD = """
import asyncio, sys, time
import structlog
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
from bot.leader import PostgresLeader

async def main():
    async with PostgresLeader(sys.argv[1], int(sys.argv[2]), application_name=sys.argv[3]) as leader:
        async for change in leader.changes():
            print("gained" if change.leader else "lost", change.at, flush=True)

asyncio.run(main())
"""


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _emit(name: str, value: float, unit: str, digits: int = 2) -> None:
    print(f"{name} {value:.{digits}f} {unit}", flush=True)


class _Cluster:
    """Leadership processes on one key; every line they print lands in one queue."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.events: asyncio.Queue[tuple[str, str, float]] = asyncio.Queue()
        self._readers: list[asyncio.Task[None]] = []
        self._count = 0

    async def spawn(self) -> str:
        self._count += 1
        name = f"bench-leader-{self._count}"
        with self.log.open("a") as errors:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CHILD,
                self.url,
                str(KEY),
                name,
                stdout=asyncio.subprocess.PIPE,
                stderr=errors,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        self.processes[name] = process
        self._readers.append(asyncio.ensure_future(self._read(name, process)))
        return name

    async def _read(self, name: str, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            kind, at = line.decode().split()
            await self.events.put((name, kind, float(at)))

    async def connected(self, names: set[str], timeout: float = 30.0) -> None:
        """Wait until each of `names` has its lock connection open on the server."""
        deadline = time.monotonic() + timeout
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                cursor = await conn.execute(
                    "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
                )
                if names <= {row[0] for row in await cursor.fetchall()}:
                    return
                await asyncio.sleep(0.05)
        raise TimeoutError(f"{sorted(names)} did not connect within {timeout:.0f} s (see {self.log})")

    async def next_gain(self, timeout: float = 60.0) -> tuple[str, float]:
        while True:
            name, kind, at = await asyncio.wait_for(self.events.get(), timeout=timeout)
            if kind == "gained":
                return name, at

    async def kill(self, name: str) -> float:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await process.wait()
        return killed

    async def close(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        for reader in self._readers:
            reader.cancel()


async def failover(url: str, log: Path) -> list[float]:
    cluster = _Cluster(url, log)
    try:
        first = await cluster.spawn()
        leader, _ = await cluster.next_gain()
        assert leader == first
        followers = {await cluster.spawn(), await cluster.spawn()}
        await cluster.connected(followers)
        times: list[float] = []
        for round_ in range(1, ROUNDS + 1):
            await asyncio.sleep(1.0)  # the followers have each tried and failed to lock
            if not cluster.events.empty():
                early = cluster.events.get_nowait()
                raise AssertionError(f"a follower changed state before the kill: {early}")
            killed = await cluster.kill(leader)
            leader, gained = await cluster.next_gain()
            if gained < killed:
                raise AssertionError(f"{leader} led before the leader was killed")
            times.append(gained - killed)
            _note(f"round {round_}: {leader} leads {gained - killed:.2f} s after the kill")
            followers.discard(leader)
            followers.add(await cluster.spawn())
            await cluster.connected(followers)
        return times
    finally:
        await cluster.close()


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mendbot-leader-bench-") as tmp:
        # Readable by the server's own user when the embedded server runs as root.
        os.chmod(tmp, 0o755)
        server = start_postgres(Path(tmp) / "data")
        if isinstance(server, str):
            raise SystemExit(server)
        try:
            url = server.url(server.create_database())
            times = await failover(url, Path(tmp) / "children.log")
        finally:
            server.stop()
    _emit("leader_failover_s", statistics.median(times), "s")
    _emit("leader_failover_max_s", max(times), "s")


if __name__ == "__main__":
    asyncio.run(main())
