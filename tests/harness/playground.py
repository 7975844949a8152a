"""`mendbot play` as a real process, driven line by line: send a line, wait for what it prints.

For tests where the running bot must import the code it deploys (a temp copy of the repository,
first on PYTHONPATH), and for kill/restart tests.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from tests.harness.patience import within
from tests.harness.repo import python_path

__all__ = ["PlaygroundProcess"]


class PlaygroundProcess:
    def __init__(self, process: asyncio.subprocess.Process, stderr: Path) -> None:
        self.process = process
        self.stderr = stderr  # what the process said there: shown when it ends unexpectedly
        self.lines: list[str] = []

    @classmethod
    async def start(cls, config: Path, *, code: Path, env: dict[str, str] | None = None) -> PlaygroundProcess:
        """Start the playground with `code` (a repository copy) first on PYTHONPATH."""
        base = {k: v for k, v in os.environ.items() if k != "MENDBOT_CONFIG"}
        # One file per start, next to the config: a restarted process does not write over the first's.
        started = len(list(config.parent.glob("playground-stderr-*")))
        stderr = config.parent / f"playground-stderr-{started}.txt"
        with stderr.open("wb") as sink:  # the child keeps its own copy of the descriptor
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "mendbot",
                "--config",
                str(config),
                "play",
                cwd=config.parent,
                env={**base, "PYTHONPATH": python_path(code), **(env or {})},
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=sink,
            )
        playground = cls(process, stderr)
        await playground.expect(r"playground ready", timeout=60)
        return playground

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def expect(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """Read output until a line matches `pattern` (lines read so far are kept in `lines`); `timeout` is
        the deadline on a quiet machine (tests/harness/patience.py)."""
        assert self.process.stdout is not None
        regex = re.compile(pattern)
        for line in self.lines:
            if match := regex.search(line):
                self.lines.remove(line)
                return match

        async def read() -> re.Match[str]:
            assert self.process.stdout is not None
            while raw := await self.process.stdout.readline():
                line = raw.decode(errors="replace").rstrip("\n")
                if match := regex.search(line):
                    return match
                self.lines.append(line)
            code = await self.process.wait()
            last, said = self.lines[-15:], self.stderr.read_text(errors="replace")[-3000:]
            raise AssertionError(
                f"output ended (exit {code}) without {pattern!r}; last lines: {last}; stderr: {said}"
            )

        try:
            return await within(read(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"no {pattern!r} within {timeout}s (longer on a busy machine); last lines: {self.lines[-15:]}"
            ) from None

    async def finish(self, timeout: float = 60) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        assert self.process.returncode is not None
        return self.process.returncode
