"""What mendbot costs a bot it is attached to, side by side on one loopback Discord (bot/trust/
loopback_discord.py): the same small host bot (a commands.Bot subclass with a prefix command and a
slash command, written below) run as `python bot.py` (bare) and as `mendbot attach -- python bot.py`,
the two alternating, several rounds (each going first in half of them), each a real process calling in
a channel of its own.

Prints, as `name value unit`:

- `latency_ratio_vs_bare_bot_<command>`: median time from a member's call to the bot's answer, as the
  loopback Discord sees it, attached over bare, per command (target ≤ 1.1);
- `idle_rss_delta_mb`: the bot process's resident memory once started and idle, attached minus bare,
  median (target ≤ 25; the action journal and store are threads of the bot's process: counted);
- `ready_ratio_vs_bare_bot`: median time from the process's start to the gateway's READY, attached
  over bare (target ≤ 1.3);
- and the medians themselves (`*_ms`, `*_mb`, `*_s`).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mendbot.trust.loopback_discord import DiscordDouble  # noqa: E402
from mendbot.trust.loopback_discord_model import FakeChannel, message_text  # noqa: E402

ROUNDS = 6  # even: each goes first as often as the other
CALLS = 100  # each command, per start: a median over its steady state more than over its first calls

HOST = '''"""A small bot: `!echo <words>` and `/add a b`."""
import os

import discord
from discord.ext import commands


class Echo(commands.Bot):
    def __init__(self):
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(command_prefix="!", intents=intents)

    async def setup_hook(self):
        @self.command()
        async def echo(ctx, *, words: str):
            await ctx.send(words)

        @self.tree.command(name="add", description="Add two numbers")
        async def add(interaction: discord.Interaction, a: int, b: int):
            await interaction.response.send_message(str(a + b))

        await self.tree.sync()


if __name__ == "__main__":
    Echo().run(os.environ["ECHO_TOKEN"])
'''


def _after(said: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    return lambda message: int(message["id"]) > int(said["id"])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _one(double: DiscordDouble, repo: Path, *, attached: bool) -> dict[str, Any]:
    """One start of the host bot (bare or attached): its READY time, idle RSS and call latencies."""
    point = (
        "import runpy, sys, discord, yarl; "
        "discord.http.Route.BASE = sys.argv[1] + '/api/v10'; "
        "discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(sys.argv[2]); "
    )
    if attached:  # mendbot's command line, as `mendbot attach -- python bot.py` runs it
        root = str(REPO)
        start = point + (
            f"sys.path.insert(0, {root!r}); from mendbot.__main__ import main; sys.path.remove({root!r}); "
            "sys.exit(main(['attach', '--', 'python', 'bot.py']))"
        )
    else:
        start = (
            point + "sys.argv = ['bot.py']; sys.path[0] = '.'; runpy.run_path('bot.py', run_name='__main__')"
        )
    # A channel of its own: the double finds each answer by reading the channel's history, which every
    # call lengthens, so in a shared one a later start would wait longer for the same answer.
    general = FakeChannel(f"bench-{len(double.guild.channels)}")
    double.guild.channels.append(general)
    sessions = double.identified
    begun = time.perf_counter()
    environment = {**os.environ, "ECHO_TOKEN": double.token}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        start,
        double.url,
        double.gateway_url,
        cwd=repo,
        env=environment,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while double.identified == sessions:
            if process.returncode is not None:
                raise RuntimeError(f"the bot ended before READY ({'attached' if attached else 'bare'})")
            await asyncio.sleep(0.002)
        ready = time.perf_counter() - begun
        await asyncio.sleep(1.5)  # settled: the guild in, the sync done
        rss = _rss_mb(process.pid)
        echo, add = [], []
        for index in range(CALLS):
            said = await double.send_message(general, f"!echo hello {index}", author="bob")
            sent = time.perf_counter()
            answer = await double.wait_for_message(_after(said), 10, channel=general)
            echo.append((time.perf_counter() - sent) * 1000)
            assert message_text(answer) == f"hello {index}"
            sent = time.perf_counter()
            interaction = await double.slash(general, "add", author="bob", a=index, b=1)
            await double.response_to(interaction, timeout=10)
            add.append((time.perf_counter() - sent) * 1000)
        return {"ready": ready, "rss": rss, "echo": statistics.median(echo), "add": statistics.median(add)}
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mendbot-bench-attach-") as scratch:
        repo = Path(scratch) / "echo"
        repo.mkdir()
        (repo / "bot.py").write_text(HOST)
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "echo"]):
            await asyncio.to_thread(
                subprocess.run, ["git", "-C", str(repo), *args], check=True, capture_output=True
            )
        runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        async with DiscordDouble() as double:
            (repo / "mendbot.yaml").write_text(
                "data_dir: .mendbot\nhealth: {enabled: false}\nimprove: {autonomy: 'off'}\n"
                f"discord: {{dev_guild_id: {double.guild.id}, "
                f"dev_channel_ids: [{double.guild.channel('dev').id}]}}\n"
                "bot: {entry: [python, bot.py], token_env: ECHO_TOKEN}\n"
            )
            for round_ in range(ROUNDS):
                # Which goes first alternates, as in bench/startup.py.
                for attached in (False, True) if round_ % 2 == 0 else (True, False):
                    runs[attached].append(await _one(double, repo, attached=attached))

    def median(attached: bool, key: str) -> float:
        return float(statistics.median(run[key] for run in runs[attached]))

    for command in ("echo", "add"):
        bare, with_mendbot = median(False, command), median(True, command)
        print(f"bare_latency_{command}_ms {bare:.2f} ms")
        print(f"attached_latency_{command}_ms {with_mendbot:.2f} ms")
        print(f"latency_ratio_vs_bare_bot_{command} {with_mendbot / bare:.3f} ratio")
    print(f"bare_idle_rss_mb {median(False, 'rss'):.1f} MB")
    print(f"attached_idle_rss_mb {median(True, 'rss'):.1f} MB")
    print(f"idle_rss_delta_mb {median(True, 'rss') - median(False, 'rss'):.1f} MB")
    print(f"bare_ready_s {median(False, 'ready'):.3f} s")
    print(f"attached_ready_s {median(True, 'ready'):.3f} s")
    print(f"ready_ratio_vs_bare_bot {median(True, 'ready') / median(False, 'ready'):.3f} ratio")


if __name__ == "__main__":
    asyncio.run(main())
