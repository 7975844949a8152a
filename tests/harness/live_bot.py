"""`mendbot run` as a real process against the loopback Discord (bot/trust/loopback_discord.py).

The process is the real entry point with discord.py's REST base and gateway pointed at the double
(`python -m tests.harness.pointed API GATEWAY -- --config X run`), so everything between a
gateway event and a REST call runs as in production. Each instance has its own directory (config,
data, private HOME, captured output) and health port, so a test can run several — shards of one
bot sharing a database, or a restart over the same data::

    async with DiscordDouble() as discord_api:
        config = live_config(discord_api, tmp_path / "bot0", repo_dir=repo, access={...})
        async with await LiveBot.start(discord_api, config, tmp_path / "bot0", code=repo) as bot:
            ...                                  # ready: /health/ready answered 200
        # stopped with SIGTERM (then killed if it hangs); `bot.output()` holds what it printed

`LiveBot.start` waits for `/health/ready`; if the process ends first, or the wait times out, the
error carries the end of its output. `stop()` sends SIGTERM and waits (then SIGKILL); `kill()` is -9.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any, Self

import aiohttp
import yaml

from mendbot.trust.loopback_discord import DiscordDouble

__all__ = ["PROJECT", "LiveBot", "free_port", "live_config", "merged"]

PROJECT = Path(__file__).resolve().parents[2]
# Names a test process may carry that must not leak into the bot under test.
_DROPPED = ("MENDBOT_CONFIG", "DISCORD_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GITHUB_TOKEN")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` laid over it, sections (dicts) merged key by key."""
    result = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def live_config(
    double: DiscordDouble, home: Path, *, repo_dir: Path | None = None, **sections: Any
) -> dict[str, Any]:
    """A config.yaml (as a dict) for a bot on `double`: data under `home/data`, a free health port,
    the double's guild as the dev guild with its #dev, hand-edit watching off (the test edits files),
    autonomy off (a test says when a run starts); `sections` are merged over it."""
    base: dict[str, Any] = {
        "data_dir": str(home / "data"),
        "repo_dir": str(repo_dir or home),
        "health": {"enabled": True, "host": "127.0.0.1", "port": free_port()},
        "discord": {
            "dev_guild_id": double.guild.id,
            "dev_channel_ids": [double.guild.channel("dev").id],
        },
        "deploy": {"watch_hand_edits": False},
        "improve": {"autonomy": "off"},
    }
    return merged(base, sections)


def _prepare(home: Path, config: dict[str, Any]) -> tuple[Path, Path]:
    """The instance's directory, private HOME and config file; (config path, output path)."""
    (home / "home").mkdir(parents=True, exist_ok=True)
    config_path = home / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config_path, home / "output.log"


class LiveBot:
    """One `mendbot run` process; `start` it, then `stop()`/`kill()` it (or use `async with`)."""

    def __init__(
        self, process: asyncio.subprocess.Process, home: Path, config: dict[str, Any], output: Path
    ) -> None:
        self.process = process
        self.home = home
        self.config = config
        self.output_path = output
        self.health_port: int = int(config["health"]["port"])
        self.data_dir = Path(config["data_dir"])

    @classmethod
    async def start(
        cls,
        double: DiscordDouble,
        config: dict[str, Any],
        home: Path,
        *,
        code: Path = PROJECT,
        env: dict[str, str] | None = None,
        ready_timeout: float = 60,
        wait_ready: bool = True,
    ) -> LiveBot:
        """Write `config` to `home/config.yaml` and start `mendbot run` in `home` with `code` first on
        PYTHONPATH (a `copy_of_bot()` repository, for a bot that must import the code it deploys).

        Its environment: the double's token, a private HOME and CLAUDE_CONFIG_DIR under `home`, the
        Claude CLI's non-essential traffic off, and `env` (e.g. ANTHROPIC_BASE_URL of a ModelDouble,
        ANTHROPIC_API_KEY) over that. Waits for /health/ready unless `wait_ready` is false.
        """
        config_path, output = _prepare(home, config)
        base = {k: v for k, v in os.environ.items() if k not in _DROPPED}
        environment = {
            **base,
            "PYTHONPATH": str(code),
            "DISCORD_TOKEN": double.token,
            "HOME": str(home / "home"),
            "CLAUDE_CONFIG_DIR": str(home / "home" / ".claude"),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        with output.open("wb") as sink:  # the child keeps its own descriptor
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.harness.pointed",
                double.url,
                double.gateway_url,
                "--",
                "--config",
                str(config_path),
                "run",
                cwd=home,
                env=environment,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=sink,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # a signal to the test's group does not reach it
            )
        bot = cls(process, home, config, output)
        if wait_ready:
            try:
                await bot.wait_ready(ready_timeout)
            except BaseException:
                await bot.kill()
                raise
        return bot

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def output(self, last: int | None = None) -> str:
        """What the process printed (stdout and stderr), or its `last` lines."""
        text = self.output_path.read_text(errors="replace") if self.output_path.exists() else ""
        return text if last is None else "\n".join(text.splitlines()[-last:])

    def log_events(self) -> list[dict[str, Any]]:
        """The JSON log lines the bot wrote under its data dir (logs/mendbot.jsonl)."""
        path = self.data_dir / "logs" / "mendbot.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def failure(self, what: str) -> AssertionError:
        """An assertion error naming `what` went wrong, with the end of the bot's output."""
        state = "running" if self.running else f"exited {self.process.returncode}"
        return AssertionError(f"{what} (mendbot {state}); its last output:\n{self.output(40)}")

    async def health(self, path: str = "/health/ready") -> tuple[int, dict[str, Any]]:
        """One request to the health endpoint: (status, JSON body)."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.health_port}{path}") as response,
        ):
            return response.status, await response.json(content_type=None)

    async def wait_ready(self, timeout: float = 60) -> dict[str, Any]:
        """Poll /health/ready until it answers 200 (its body); fails at once if the process ends."""

        async def poll() -> dict[str, Any]:
            while self.running:
                with contextlib.suppress(aiohttp.ClientError, json.JSONDecodeError):
                    status, body = await self.health()
                    if status == 200:
                        return body
                await asyncio.sleep(0.1)  # polling the endpoint, not timing the bot
            raise self.failure("ended before it was ready")

        try:
            return await asyncio.wait_for(poll(), timeout)
        except TimeoutError:
            raise self.failure(f"not ready within {timeout}s") from None

    async def dump_stacks(self) -> str:
        """Every thread's Python stack, printed by the bot into its output (SIGUSR1, it keeps running);
        the output's new part. For a failure message when the bot seems stuck."""
        if not self.running:
            return ""
        before = len(self.output())
        self.process.send_signal(signal.SIGUSR1)
        for _ in range(50):  # faulthandler writes from the signal handler: the dump ends with the main thread
            dumped = self.output()[before:]
            if "<module>" in dumped or not self.running:
                break
            await asyncio.sleep(0.1)  # polling the output file, not timing the bot
        return self.output()[before:]

    async def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; its exit code."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.kill()
        return await self.process.wait()

    async def kill(self) -> int:
        """kill -9, as a crash would; its exit code (-9 unless it had already ended)."""
        if self.running:
            self.process.kill()
        return await self.process.wait()
