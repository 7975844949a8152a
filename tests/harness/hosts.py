"""Bots someone else wrote, for mendbot to attach to: the shapes in tests/fixtures/hosts/, each copied
into a git repository of its own, and run as a real process — `mendbot attach` on its own program —
against the loopback Discord (bot/trust/loopback_discord.py).

    repo = host_repo(tmp_path, "shelf")
    async with DiscordDouble() as discord_api:
        write_config(repo, discord_api, allowed=[alice_id])
        async with await LiveHost.start(discord_api, repo, "SHELF_TOKEN") as bot:
            ...                          # attached and ready: mendbot's commands synced to the dev guild
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path
from typing import Any, Self

import yaml

from mendbot.trust.loopback_discord import DiscordDouble
from tests.harness.live_bot import PROJECT, merged
from tests.harness.repo import git
from tests.harness.wheel import installed_wheel

__all__ = ["HOSTS", "LiveHost", "host_repo", "write_config"]

HOSTS = PROJECT / "tests" / "fixtures" / "hosts"
_DROPPED = ("MENDBOT_CONFIG", "DISCORD_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GITHUB_TOKEN")


def host_repo(tmp_path: Path, shape: str, source: Path | None = None) -> Path:
    """A git repository (branch main, one commit) holding the bot `shape` (or the tree at `source`)."""
    repo = tmp_path / shape
    shutil.copytree(source or HOSTS / shape, repo, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"{shape}: the bot as its authors wrote it")
    return repo


def write_config(repo: Path, double: DiscordDouble, entry: list[str], **sections: Any) -> Path:
    """mendbot.yaml for the bot in `repo` on `double`: its dev guild and #dev, data in `.mendbot`,
    autonomy off, hand edits not watched and no check of the committed HEAD at start (a test says when a
    run or a check starts); `sections` merged over."""
    base: dict[str, Any] = {
        "data_dir": ".mendbot",
        "repo_dir": ".",
        "health": {"enabled": False},
        "discord": {"dev_guild_id": double.guild.id, "dev_channel_ids": [double.guild.channel("dev").id]},
        "deploy": {"watch_hand_edits": False},
        "improve": {"autonomy": "off", "check_base_at_start": False},
        "bot": {"entry": entry},
    }
    path = repo / "mendbot.yaml"
    path.write_text(yaml.safe_dump(merged(base, sections), sort_keys=False))
    return path


class LiveHost:
    """`mendbot attach` on a bot's own program, as a process against the loopback Discord."""

    def __init__(self, process: asyncio.subprocess.Process, repo: Path, output: Path) -> None:
        self.process = process
        self.repo = repo
        self.output_path = output

    @classmethod
    async def start(
        cls,
        double: DiscordDouble,
        repo: Path,
        token_env: str,
        *,
        args: list[str] | None = None,
        program: list[str] | None = None,
        env: dict[str, str] | None = None,
        home: Path | None = None,
        ready_timeout: float = 60,
    ) -> LiveHost:
        """Start `mendbot attach [ARGS]` in `repo` (its mendbot.yaml) with the double's token in
        `token_env` — or, with `program` (`["bot.py"]`), that script itself, as `python bot.py` would,
        for a bot that loads mendbot in its own code — and wait until mendbot's commands are synced to
        the dev guild."""
        home = home or repo.parent / f"{repo.name}-home"
        (home / "home").mkdir(parents=True, exist_ok=True)
        output = home / "output.log"
        base = {k: v for k, v in os.environ.items() if k not in _DROPPED}
        environment = {
            **base,
            token_env: double.token,
            "POINTED_TOKEN": double.token,  # a token written in the bot's source plays its real one
            "HOME": str(home / "home"),
            "CLAUDE_CONFIG_DIR": str(home / "home" / ".claude"),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        # mendbot as users install it: the wheel's, in a virtualenv of its own (tests/harness/wheel.py).
        # The checkout is on the path only while the harness is imported: left there, its sample bot's
        # `cogs` would shadow a bot's own `cogs` directory without an __init__.py.
        start = f"import sys; sys.path.insert(0, {str(PROJECT)!r}); import tests.harness.pointed as p; "
        if program is None:
            start += f"sys.path.remove({str(PROJECT)!r}); sys.exit(p.main(sys.argv[1:]))"
            argv = ["-c", start, double.url, double.gateway_url, "--", "attach", *(args or [])]
        else:  # the program alone, discord.py pointed at the double, nothing of mendbot but its own line
            start = (
                f"import sys; sys.path.insert(0, {str(PROJECT)!r}); "
                "import runpy, tests.harness.pointed as p; "
                f"sys.path.remove({str(PROJECT)!r}); p.point(sys.argv[1], sys.argv[2]); "
                "sys.argv = sys.argv[3:]; sys.path[0] = '.'; "
                "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True) "
                "if sys.argv[0] == '-m' else runpy.run_path(sys.argv[0], run_name='__main__')"
            )
            argv = ["-c", start, double.url, double.gateway_url, *program]

        with output.open("ab") as sink:
            process = await asyncio.create_subprocess_exec(
                str(installed_wheel().python),
                *argv,
                cwd=repo,
                env=environment,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=sink,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        host = cls(process, repo, output)
        try:
            await host.wait_synced(double, ready_timeout)
        except BaseException:
            await host.stop()
            raise
        return host

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def output(self, last: int | None = None) -> str:
        text = self.output_path.read_text(errors="replace") if self.output_path.exists() else ""
        return text if last is None else "\n".join(text.splitlines()[-last:])

    def failure(self, what: str) -> AssertionError:
        state = "running" if self.running else f"exited {self.process.returncode}"
        return AssertionError(f"{what} (the bot {state}); its last output:\n{self.output(40)}")

    async def wait_synced(self, double: DiscordDouble, timeout: float) -> None:
        """Until mendbot's `/runs` is synced to the dev guild (synced once the bot connects) and the bot
        was sent READY and its guild on its gateway session."""

        async def poll() -> None:
            while self.running:
                synced = double.synced.get(str(double.guild.id), [])
                if any(command["name"] == "runs" for command in synced) and double.greeted:
                    return  # what the test sends next reaches the bot after READY and its guild
                await asyncio.sleep(0.05)  # polling the double, not timing the bot
            raise self.failure("ended before mendbot was attached and synced")

        try:
            await asyncio.wait_for(poll(), timeout)
        except TimeoutError:
            raise self.failure(f"not synced within {timeout}s") from None

    async def stop(self, timeout: float = 30) -> int:
        """SIGTERM to its process group (then SIGKILL); its exit code."""
        if self.running:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                os.killpg(self.process.pid, signal.SIGKILL)
        return await self.process.wait()
