"""`mendbot attach --play -- python bot.py`: a bot someone else wrote, with mendbot attached, in the
playground's virtual Discord with the playground's grammar — no Discord application, no token, no
network: its commands answer, its failure is recorded and announced in #dev."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

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


# The test's guard in the played process (a `sitecustomize` on its PYTHONPATH): a connection to anything
# but this machine is noted in $NETWORK_NOTES and refused, so a program that reached for Discord fails
# here instead of reaching it.
NETWORK_GUARD = """import os
import sys


def _guard(event, args):
    if event == "socket.getaddrinfo":
        host = args[0]
    elif event == "socket.connect" and isinstance(args[1], tuple):
        host = args[1][0]
    else:
        return
    host = host.decode() if isinstance(host, bytes) else host
    if host in (None, "127.0.0.1", "::1", "localhost"):
        return
    with open(os.environ["NETWORK_NOTES"], "a") as notes:
        notes.write(f"{event} {host}\\n")
    raise OSError(f"the test allows no connection to {host}")


sys.addaudithook(_guard)
"""

PORCH_BOT = '''"""Porch: a bot started the way its first argument says — `run`, `start`, or its own
`login` and then `connect` — with a cog that fails to load as its second says."""
import asyncio
import logging
import os
import sys

import discord
from discord.ext import commands

log = logging.getLogger("porch")
way = sys.argv[1]
broken = sys.argv[2] if len(sys.argv) > 2 else "none"


class Porch(commands.Bot):
    async def setup_hook(self) -> None:
        await self.load_extension("greetings")
        if broken == "caught":
            try:
                await self.load_extension("lamp")
            except commands.ExtensionError:
                log.exception("the lamp did not load")
        elif broken == "raised":
            await self.load_extension("lamp")


intents = discord.Intents.default()
intents.message_content = True
bot = Porch(command_prefix="!", intents=intents)


@bot.command()
async def where(ctx: commands.Context) -> None:
    gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    await ctx.send(f"REST at {discord.http.Route.BASE}, gateway at {gateway}")


async def start() -> None:
    async with bot:
        if broken == "early":  # before the bot starts, as discord.py's examples load extensions
            try:
                await bot.load_extension("lamp")
            except commands.ExtensionError as error:
                log.error("the lamp did not load: %s", error)
        await bot.start(os.environ["PORCH_TOKEN"])


async def login_then_connect() -> None:
    async with bot:
        await bot.login(os.environ["PORCH_TOKEN"])
        await bot.connect()
    print("the program went on after connect")


if way == "run":
    bot.run(os.environ["PORCH_TOKEN"])
elif way == "start":
    asyncio.run(start())
else:
    asyncio.run(login_then_connect())
'''
GREETINGS = """from discord.ext import commands


@commands.command()
async def hello(ctx: commands.Context) -> None:
    await ctx.send("hello from the porch")


async def setup(bot: commands.Bot) -> None:
    bot.add_command(hello)
"""
LAMP = """import porch_wiring  # a module nobody installed


async def setup(bot):
    pass
"""
WEBHOOK = "https://discord.com/api/webhooks/123456789012345678/" + "t0ken" * 14
ANNOUNCER = f'''"""Posts to a webhook that it is starting, then starts its bot."""
import asyncio
import os

import aiohttp
import discord


async def announce() -> None:
    async with aiohttp.ClientSession() as session:
        await discord.Webhook.from_url("{WEBHOOK}", session=session).send("porch starting")


asyncio.run(announce())
'''


def _porch(tmp_path: Path) -> Path:
    """The porch bot in a repository of its own, with its mendbot.yaml, and the network guard."""
    repo = tmp_path / "porch"
    files = {
        "bot.py": PORCH_BOT,
        "greetings.py": GREETINGS,
        "lamp.py": LAMP,
        "announce.py": ANNOUNCER,
        "mendbot.yaml": "data_dir: .mendbot\nhealth: {enabled: false}\nimprove: {autonomy: 'off'}\n"
        "observe: {announce_new_fingerprints: false}\n"
        "bot: {entry: [python, bot.py, run], token_env: PORCH_TOKEN}\n",
    }
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the porch bot")
    (tmp_path / "guard").mkdir()
    (tmp_path / "guard" / "sitecustomize.py").write_text(NETWORK_GUARD)
    return repo


async def _play_porch(
    tmp_path: Path, repo: Path, program: list[str], script: str, token: str | None = "a-real-token.never.sent"
) -> tuple[int, str, str]:
    """`mendbot attach --play -- PROGRAM` on the porch with `script` typed in: its exit code, standard
    output and error; the network guard found nothing the program reached for."""
    wheel = installed_wheel()
    notes = tmp_path / "network-notes"
    environment = {
        "PATH": f"{wheel.mendbot.parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(tmp_path / "guard"),
        "NETWORK_NOTES": str(notes),
        **({"PORCH_TOKEN": token} if token is not None else {}),
    }
    process = await asyncio.create_subprocess_exec(
        str(wheel.mendbot),
        "attach",
        "--play",
        "--",
        *program,
        cwd=repo,
        env=environment,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(script.encode()), 120)
    assert not notes.exists(), notes.read_text()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _mendbots_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("mendbot")]


@pytest.mark.parametrize("way", ["run", "start", "login"])
async def test_the_playground_is_sealed_whichever_way_the_bot_starts(tmp_path: Path, way: str) -> None:
    """`bot.run`, `await bot.start` and the bot's own `login` then `connect`: each is played in the
    virtual Discord and answers there, discord.py points at `discord.invalid`, nothing reaches for any
    network, and after its own `connect` the program goes on as after a bot that closed."""
    repo = _porch(tmp_path)
    code, out, err = await _play_porch(tmp_path, repo, ["python", "bot.py", way], "!hello\n!where\n")
    assert code == 0, err[-3000:]
    assert "hello from the porch" in out
    assert "REST at https://discord.invalid/api/v10, gateway at wss://discord.invalid/" in out
    assert ("the program went on after connect" in out) == (way == "login")
    assert "Traceback" not in err and _mendbots_lines(err) == [], err[-3000:]


async def test_a_program_reaching_discord_outside_the_playground_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    """A program that posts to a webhook of its own under --play is refused before any byte leaves: one
    line, naming the call but not the webhook's token, and exit 1."""
    repo = _porch(tmp_path)
    code, _, err = await _play_porch(tmp_path, repo, ["python", "announce.py"], "")
    assert code == 1 and "Traceback" not in err, err[-3000:]
    assert [line for line in err.splitlines() if line.strip()] == [
        "mendbot attach --play: your bot tried to reach Discord outside the playground (a webhook call: "
        "POST /webhooks/{webhook_id}/{webhook_token}) — the playground is a virtual Discord and nothing "
        "leaves this machine: run `mendbot attach` without --play to reach Discord"
    ]


async def test_a_bot_whose_token_variable_is_unset_plays_with_a_placeholder(tmp_path: Path) -> None:
    """`os.environ["PORCH_TOKEN"]` (mendbot.yaml's `bot.token_env`) with the variable unset: the program
    reads a placeholder instead of ending in a KeyError, and its bot plays."""
    repo = _porch(tmp_path)
    code, out, err = await _play_porch(tmp_path, repo, ["python", "bot.py", "start"], "!hello\n", token=None)
    assert code == 0 and "KeyError" not in err, err[-3000:]
    assert "hello from the porch" in out


RAN_WITHOUT = (
    "mendbot: extension `lamp` failed to load (ModuleNotFoundError: No module named 'porch_wiring') — your "
    "bot runs without it; mendbot recorded it: fix it, or ask mendbot to in your dev channel"
)
STOPPED = (
    "mendbot: your bot stopped: extension `lamp` failed to load (ModuleNotFoundError: No module named "
    "'porch_wiring') — mendbot recorded it; fix it, or ask mendbot to in your dev channel"
)
NOT_PLAYED = (
    "mendbot attach --play: your bot stopped before the playground was ready — nothing of your script "
    "was played"
)


@pytest.mark.parametrize(
    ("broken", "played", "said"),
    [
        ("caught", True, [RAN_WITHOUT]),
        ("early", True, [RAN_WITHOUT]),
        ("raised", False, [STOPPED, NOT_PLAYED]),
    ],
    ids=["caught-in-setup-hook", "caught-before-start", "raised-from-setup-hook"],
)
async def test_an_extension_that_fails_to_load_is_said_in_one_line(
    tmp_path: Path, broken: str, played: bool, said: list[str]
) -> None:
    """A cog that cannot be imported — its failure logged by the bot's own code, in its setup_hook or
    before it starts, or let out of its setup_hook: mendbot says which and why in one line; a bot that
    stopped before the playground was ready says the script was not played, and exits 1."""
    repo = _porch(tmp_path)
    code, out, err = await _play_porch(tmp_path, repo, ["python", "bot.py", "start", broken], "!hello\n")
    assert _mendbots_lines(err) == said, err[-3000:]
    assert ("hello from the porch" in out) == played
    assert code == (0 if played else 1), err[-3000:]


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
