"""`mendbot attach --play -- python bot.py`: a bot someone else wrote, with mendbot attached, in the
playground's virtual Discord with the playground's grammar — no Discord application, no token, no
network: its commands answer, its failure is recorded and announced in #dev."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.harness.hosts import host_repo
from tests.harness.repo import git
from tests.harness.wheel import installed_wheel

SCRIPT = """\
!add solaris 0
!stock dune
!stock dune
!stock dune
!stock dune
!stock dune
#dev
wait
"""


async def test_a_bot_plays_in_the_virtual_discord_with_mendbot_attached(tmp_path: Path) -> None:
    """Its own `!add` answers, its failing `!stock` gets mendbot's apology, and #dev shows the incident;
    the program ends when the script does, with nothing of a real Discord touched, and nothing of mendbot
    fails on the way in or out (no traceback, no handler map written to a closed database)."""
    repo = host_repo(tmp_path, "shelf")
    (repo / "mendbot.yaml").write_text(
        "data_dir: .mendbot\nhealth: {enabled: false}\nimprove: {autonomy: 'off'}\n"
        "observe: {announce_new_fingerprints: false}\n"
        "bot: {entry: [python, bot.py], token_env: SHELF_TOKEN}\n"
    )
    wheel = installed_wheel()
    environment = {"PATH": f"{wheel.mendbot.parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    process = await asyncio.create_subprocess_exec(
        str(wheel.mendbot),
        "attach",
        "--play",
        cwd=repo,
        env={**environment, "SHELF_TOKEN": "never-used"},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(SCRIPT.encode()), 120)
    shown = out.decode()
    assert process.returncode == 0, err.decode()[-2000:]
    assert "mendbot playground ready — your bot (ShelfBot) with mendbot attached" in shown
    assert "shelved 0 × solaris" in shown
    assert shown.count("Something went wrong on my side (ZeroDivisionError)") == 5
    assert "Incident #1: the `stock` command" in shown, shown[-3000:]
    said = shown + err.decode()
    assert "Traceback" not in said and "handler map failed" not in said, said[-3000:]


LISTENER_BOT = '''"""A bot with background work of its own: a local socket server and a queue consumer."""
import asyncio
import os

import discord
from discord.ext import commands


class Relay(commands.Bot):
    async def setup_hook(self) -> None:
        self.inbox: asyncio.Queue[str] = asyncio.Queue()
        server = await asyncio.start_server(self.on_socket, "127.0.0.1", 0)
        self.loop.create_task(self.serve(server))
        self.loop.create_task(self.consume())

    async def serve(self, server: asyncio.Server) -> None:
        async with server:
            await server.serve_forever()

    async def consume(self) -> None:
        while True:
            self.last = await self.inbox.get()

    async def on_socket(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()


bot = Relay(command_prefix="!", intents=discord.Intents.all())


@bot.command()
async def relay(ctx: commands.Context, *, words: str) -> None:
    await bot.inbox.put(words)
    await ctx.send(f"relayed: {words}")


bot.run(os.environ["RELAY_TOKEN"])
'''


async def test_a_bot_with_background_work_of_its_own_is_answered(tmp_path: Path) -> None:
    """A bot whose own tasks wait for good on things outside Discord (a socket server's serve_forever, a
    queue consumer) is answered line by line — the virtual Discord did not settle before — and its
    messages are signed with its name, not mendbot's."""
    repo = tmp_path / "relay"
    repo.mkdir()
    (repo / "bot.py").write_text(LISTENER_BOT)
    (repo / "mendbot.yaml").write_text(
        "data_dir: .mendbot\nhealth: {enabled: false}\nimprove: {autonomy: 'off'}\n"
        "bot: {entry: [python, bot.py], token_env: RELAY_TOKEN}\n"
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the relay bot")
    wheel = installed_wheel()
    process = await asyncio.create_subprocess_exec(
        str(wheel.mendbot),
        "attach",
        "--play",
        cwd=repo,
        env={"PATH": f"{wheel.mendbot.parent}:/usr/bin:/bin", "HOME": str(tmp_path), "RELAY_TOKEN": "x"},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(b"!relay one\n!relay two\n"), 120)
    shown = out.decode()
    assert process.returncode == 0, err.decode()[-2000:]
    assert "[#general] Relay (m1): relayed: one" in shown, shown[-2000:] + err.decode()[-2000:]
    assert "[#general] Relay (m2): relayed: two" in shown
