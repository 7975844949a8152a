"""What mendbot costs a bot it is attached to, side by side on one loopback Discord (bot/trust/
loopback_discord.py): the same small host bot (a commands.Bot subclass with a prefix command and a
slash command, written below) run as `python bot.py` (bare) and as `mendbot attach -- python bot.py`,
the two alternating, several rounds (each going first in half of them), each a real process calling in
a channel of its own.

Prints, as `name value unit`:

- `latency_ratio_vs_bare_bot_<command>`: median time from a member's call to the bot's answer, as the
  loopback Discord sees it — from handing the call's event to the bot's connection to the arrival of
  the request that made the answer, none of the double's own work after it — attached over bare, per
  command (target ≤ 1.1);
- `idle_rss_delta_mb`: the bot process's resident memory once started and idle, attached minus bare,
  median (target ≤ 25; the action journal and store are threads of the bot's process: counted);
- `ready_ratio_vs_bare_bot`: median time from the process's start to the gateway's READY, attached
  over bare (target ≤ 1.3);
- and the medians themselves (`*_ms`, `*_mb`, `*_s`).

Then the same on the real public bots of `../shared/realbots/` (tests/harness/realbots.py; each copied
unedited into a git repository of its own in a temporary directory, given what its README asks for, and
adopted with `mendbot adopt`) that start without an outside server: the public template, discord.py's
basic example, PaulMaris's bot (its database switched off, as its config allows) and ministatus
(`pip install -e` of its copy, as its users install it, taken out again at the end). Each is run as its
users run it — `python <its entry>` (bare) and `mendbot attach -- python <its entry>` — on a loopback
Discord of its own, alternating, and called with its own commands, ones that answer without an outside
service and have no cooldown (a cooldown's reply would be timed instead). A first start of each, bare
and then attached, is not measured: its commands are synced once, as its README has its owner do, and
its bytecode and mendbot's data directory written. Prints, as `name value unit`, per bot
(`realbot_<bot>_…`):

- `realbot_<bot>_latency_ratio_<command>`: median latency attached over bare, per command (target
  ≤ 1.1), and `realbot_<bot>_{bare,attached}_latency_<command>_ms`;
- `realbot_<bot>_{bare,attached}_cpu_per_call_ms`: the bot process's CPU time (every thread's, user and
  system) over its calls, per call, median over the starts: what the latency ratio is made of, far
  steadier between runs than the latency itself (a figure apart; no target);
- `realbot_<bot>_{bare,attached}_calls_per_call` and `realbot_<bot>_calls_ratio`: the Python calls the
  bot's main thread makes over its calls, per call, under Python's profiler — a start of each of its
  own after the measured ones (the profiler slows every call), switched on over the calls only. It does
  not move with the machine at all, so it says whether a change made mendbot's part of a call smaller
  when the latency cannot (a figure apart; no target);
- `realbot_<bot>_ready_ratio`: median READY attached over bare (target ≤ 1.3), and
  `realbot_<bot>_{bare,attached}_ready_s`;
- `realbot_<bot>_idle_rss_delta_mb`: median idle RSS attached minus bare (target ≤ 25), and
  `realbot_<bot>_{bare,attached}_idle_rss_mb`.

A real bot absent from `../shared/realbots/` is skipped, saying so on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sizes import sized  # bench/, the script's directory: before anything reads sys.argv

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from mendbot.trust.loopback_discord import DiscordDouble  # noqa: E402
from mendbot.trust.loopback_discord_model import FakeChannel, message_text  # noqa: E402

ROUNDS = sized(6, 2)  # even: each goes first as often as the other
CALLS = sized(
    100, 10
)  # each command, per start: a median over its steady state more than over its first calls

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


# The bots' environment: this one's, but that bytecode is written — the unmeasured first starts write what
# a change left stale, which a measured start would otherwise compile again each time (attached: mendbot's).
_ENVIRONMENT = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def _after(said: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    return lambda message: int(message["id"]) > int(said["id"])


def _cpu_s(pid: int) -> float:
    """The CPU time (user and system, every thread's) the process has had so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    environment = {**_ENVIRONMENT, "ECHO_TOKEN": double.token}
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
            answer = await double.wait_for_message(_after(said), 10, channel=general)
            echo.append(_answered_ms(double, ("MESSAGE_CREATE", said["id"]), answer))
            assert message_text(answer) == f"hello {index}"
            interaction = await double.slash(general, "add", author="bob", a=index, b=1)
            answer = await double.response_to(interaction, timeout=10)
            add.append(_answered_ms(double, ("INTERACTION_CREATE", interaction["id"]), answer))
        return {"ready": ready, "rss": rss, "echo": statistics.median(echo), "add": statistics.median(add)}
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


# -- the real public bots ----------------------------------------------------------------------------

REALBOT_ROUNDS = sized(6, 1)  # even at full size: each goes first as often as the other
# Beside the repository (a clone's ../shared) or beside the worktrees' folder, as tests/harness/realbots.py
# finds them.
REALBOTS = next(
    (found for root in (REPO.parent, REPO.parent.parent) if (found := root / "shared" / "realbots").is_dir()),
    None,
)
IDENTITY = ["-c", "user.name=mendbot bench", "-c", "user.email=bench@mendbot.invalid"]

# discord.py pointed at the loopback Discord (argv 1 and 2) and logging in with the double's token whatever
# the bot gives it, as tests/harness/pointed.py does for the tests: a bot whose token is written in its
# source (discord.py's example) or read from its own file (PaulMaris's config/.env) plays its real one.
POINTED = """\
import os, runpy, sys, discord, yarl
discord.http.Route.BASE = sys.argv[1] + '/api/v10'
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(sys.argv[2])
login = discord.http.HTTPClient.static_login
async def static_login(self, _token):
    return await login(self, os.environ['POINTED_TOKEN'])
discord.http.HTTPClient.static_login = static_login
program = sys.argv[3:]
"""
# `python <program>`: a script, or `-m module args…` (argv as python would give it).
BARE = (
    POINTED
    + """\
sys.path[0] = '.'
if program[0] == '-m':
    sys.argv = program[1:]
    runpy.run_module(program[1], run_name='__main__', alter_sys=True)
else:
    sys.argv = program
    runpy.run_path(program[0], run_name='__main__')
"""
)
# `mendbot attach -- python <program>`, mendbot's own command line.
ATTACHED = (
    POINTED
    + """\
from mendbot.__main__ import main
sys.exit(main(['attach', '--', 'python', *program]))
"""
)


@dataclass(frozen=True)
class Call:
    """One of a bot's own commands as a member calls it — `!botinfo`, or `/status summary` (a slash
    command, its group's subcommand) — and a pattern its answer matches: an error's reply does not."""

    name: str
    said: str
    answer: str


@dataclass(frozen=True)
class RealBot:
    """A real bot of ../shared/realbots/, run as its users run it."""

    name: str  # in the figures' names: realbot_<name>_…
    folder: str
    entry: list[str]  # its program, after `python`
    calls: list[Call]
    only: list[str] | None = None  # those files of the folder alone: one example of a folder of examples
    ready_for_use: Callable[[Path], None] = lambda repo: None  # what its README asks for before a start
    installed: str = ""  # its distribution, `pip install -e .` of its copy as its README asks
    sync_flag: list[str] = field(default_factory=list)  # its command line's own, to sync its commands
    sync_said: str = ""  # or what its owner says once to sync them


def _template_env(repo: Path) -> None:
    """The template's README: a `.env` (git-ignored) with its token and prefix."""
    (repo / ".env").write_text("TOKEN=placeholder\nPREFIX=!\nINVITE_LINK=https://discord.invalid/invite\n")


def _paulmaris_without_database(repo: Path) -> None:
    """PaulMaris's bot without its MariaDB: `use_database = false`, committed as its owner would."""
    config = repo / "config" / "bot.toml"
    config.write_text(config.read_text().replace("use_database = true", "use_database = false", 1))
    if "use_database = false" not in config.read_text():
        raise RuntimeError(f"{config}: no `use_database = true` to switch off")
    _git(repo, "commit", "-qam", "no database")


REAL_BOTS = [
    RealBot(
        "template",
        "python-discord-bot-template",
        ["bot.py"],
        [
            Call("botinfo", "!botinfo", r"Owner:"),
            Call("serverinfo", "/serverinfo", r"Server ID"),
        ],
        ready_for_use=_template_env,
        sync_said="!sync global",  # its owner's command: the template syncs nothing by itself
    ),
    RealBot(
        "basic_bot",
        "rapptz-discordpy-examples",
        ["basic_bot.py"],
        [Call("add", "?add 1 2", r"^3$"), Call("cool_bot", "?cool bot", r"^Yes, the bot is cool\.$")],
        only=["basic_bot.py", "LICENSE"],
    ),
    RealBot(
        "paulmaris",
        "paulmarisoumary-discord-bot",
        ["main.py"],
        [Call("uptime", "$uptime", r"^:clock1: <t:\d+:R>"), Call("avatar", "/avatar", r"^https?://\S+")],
        ready_for_use=_paulmaris_without_database,
    ),
    RealBot(
        "ministatus",
        "thegamecracks-ministatus",
        ["-m", "ministatus", "start"],
        [Call("status_summary", "/status summary", r"No server statuses")],
        installed="ministatus",
        sync_flag=["--sync"],
    ),
]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *IDENTITY, "-C", str(repo), *args], check=True, capture_output=True)


def _copied(source: Path, repo: Path, only: list[str] | None) -> Path:
    """A git repository (branch main, one commit) holding the bot as its authors wrote it."""
    if only is None:
        shutil.copytree(
            source, repo, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".git", "SOURCE.txt")
        )
    else:
        repo.mkdir(parents=True)
        for name in only:
            shutil.copyfile(source / name, repo / name)
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-qm", "the bot as its authors wrote it"],
    ):
        _git(repo, *args)
    return repo


def _pip(repo: Path, *args: str) -> None:
    """pip of the bench's own environment, in `repo` (no network: ministatus's build backend is installed
    with the real bots' requirements)."""
    bin_dir = Path(sys.executable).parent
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args],
        cwd=repo,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args)} in {repo.name}: {done.stdout}{done.stderr}")


def _adopted(repo: Path, double: DiscordDouble) -> str:
    """`mendbot adopt` in `repo`, then what it leaves to the developer (the dev server and its channel; as
    for the small bot, no health checks and no autonomy) written into mendbot.yaml and committed. The
    token's variable it found."""
    done = subprocess.run(
        [sys.executable, "-m", "mendbot", "adopt"], cwd=repo, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"mendbot adopt in {repo.name}: {done.stdout}{done.stderr}")
    config = yaml.safe_load((repo / "mendbot.yaml").read_text())
    config["discord"] = {"dev_guild_id": double.guild.id, "dev_channel_ids": [double.guild.channel("dev").id]}
    config["health"] = {"enabled": False}
    config["improve"] = {"autonomy": "off"}
    (repo / "mendbot.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    _git(repo, "add", "mendbot.yaml", ".gitignore")
    _git(repo, "commit", "-qm", "Add mendbot")
    return str(config["bot"]["token_env"])


@contextlib.asynccontextmanager
async def _started(
    double: DiscordDouble, repo: Path, program: list[str], env: dict[str, str], *, attached: bool
) -> AsyncIterator[tuple[int, float]]:
    """A start of the bot (bare or attached) in `repo`, until the gateway's READY: its pid and the seconds
    from its start to READY. Stopped (SIGTERM to its process group, then SIGKILL) on leaving."""
    log = repo.parent / f"{repo.name}.log"
    sessions = double.identified
    begun = time.perf_counter()
    with log.open("ab") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            ATTACHED if attached else BARE,
            double.url,
            double.gateway_url,
            *program,
            cwd=repo,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = begun + 120
        while double.identified == sessions:
            if process.returncode is not None or time.perf_counter() > deadline:
                how = "ended" if process.returncode is not None else "still without READY after 120 s"
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                raise RuntimeError(f"{repo.name} ({'attached' if attached else 'bare'}) {how}:\n{tail}")
            await asyncio.sleep(0.002)
        yield process.pid, time.perf_counter() - begun
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def _called(double: DiscordDouble, channel: FakeChannel, call: Call) -> float:
    """`call` said once by a member in `channel`: milliseconds until the bot's answer, which must match."""
    if call.said.startswith("/"):
        interaction = await double.slash(channel, call.said[1:], author="bob")
        answer = await double.response_to(interaction, timeout=10)
        took = _answered_ms(double, ("INTERACTION_CREATE", interaction["id"]), answer)
    else:
        said = await double.send_message(channel, call.said, author="bob")
        answer = await double.wait_for_message(_after(said), 10, channel=channel)
        took = _answered_ms(double, ("MESSAGE_CREATE", said["id"]), answer)
    if not re.search(call.answer, message_text(answer)):
        raise RuntimeError(f"{call.said} answered {message_text(answer)!r}, not /{call.answer}/")
    return took


def _answered_ms(double: DiscordDouble, asked: tuple[str, str], answer: dict[str, Any]) -> float:
    """From the moment the loopback Discord handed the member's call (its event and id) to the bot's
    connection to the moment the request that made the answer what it is reached it: the bot's time
    alone, not the double's own work around it (the echo of the answer to the bot, the search of the
    channel's history for it), which is the same bare and attached and would draw the ratio towards 1."""
    return (double.changed_at[answer["id"]] - double.sent_at[asked]) * 1000


def _own_channel(double: DiscordDouble) -> FakeChannel:
    # The double finds each answer by reading the channel's history, which every call lengthens: in a
    # shared channel a later start would wait longer for the same answer.
    channel = FakeChannel(f"bench-{len(double.guild.channels)}")
    double.guild.channels.append(channel)
    return channel


async def _base_checked(double: DiscordDouble) -> None:
    """Until mendbot has said, in #dev, how its check of the bot's commit went. It checks a commit it has
    not seen once, in the background after the bot connects (the bot's program started in the sandbox): a
    one-time cost per commit, kept once it ends, which the measured starts must find done rather than
    pay again, stopped half-way, at every start."""
    said = re.compile(r"^(✅|❌|⚠️) your bot ")
    await double.wait_for_message(
        lambda message: said.search(message_text(message)) is not None,
        180,
        channel=double.guild.channel("dev"),
    )


async def _settled(double: DiscordDouble) -> None:
    """Until a bot that has just had its READY is idle: 3 s (discord.py waits up to 2 s for the guilds
    before `on_ready`, where PaulMaris's bot syncs its commands), then until no REST request has come for
    a second (its own syncs and mendbot's done), 30 s at most."""
    await asyncio.sleep(3)
    deadline = time.perf_counter() + 30
    asked = len(double.requests)
    while time.perf_counter() < deadline:
        await asyncio.sleep(1)
        if len(double.requests) == asked:
            return
        asked = len(double.requests)


async def _measured(
    double: DiscordDouble, repo: Path, bot: RealBot, env: dict[str, str], *, attached: bool
) -> dict[str, float]:
    """One start of a real bot: its READY time, idle RSS, and the median latency of each of its calls."""
    channel = _own_channel(double)
    async with _started(double, repo, bot.entry, env, attached=attached) as (pid, ready):
        await _settled(double)
        figures = {"ready": ready, "rss": _rss_mb(pid)}
        took: dict[str, list[float]] = {call.name: [] for call in bot.calls}
        cpu = _cpu_s(pid)
        for _ in range(CALLS):
            for call in bot.calls:
                took[call.name].append(await _called(double, channel, call))
        figures["cpu"] = (_cpu_s(pid) - cpu) * 1000 / (CALLS * len(bot.calls))
    return figures | {name: statistics.median(times) for name, times in took.items()}


# On the profiled starts' path (`_profiled`): Python's profiler in the bot's process, switched on by
# SIGUSR1 (saying so in a file) and off by SIGUSR2, which writes what it counted.
_PROFILER = '''"""bench/attach.py's profiled start: the profiler over the bot's calls only."""
import cProfile, os, signal
from pathlib import Path

_OUT = os.environ.get("MENDBOT_BENCH_PROFILE")
if _OUT:
    _profile = cProfile.Profile()

    def _on(*_):
        _profile.enable()
        Path(_OUT + ".on").touch()

    def _off(*_):
        _profile.disable()
        _profile.dump_stats(_OUT + ".part")
        os.replace(_OUT + ".part", _OUT)

    signal.signal(signal.SIGUSR1, _on)
    signal.signal(signal.SIGUSR2, _off)
'''


async def _profiled(
    double: DiscordDouble, repo: Path, bot: RealBot, env: dict[str, str], *, attached: bool, scratch: Path
) -> float:
    """One start of a real bot with the profiler on over its calls: the Python calls its main thread made,
    per call."""
    site = scratch / "profiled-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_PROFILER)
    out = scratch / f"profile-{bot.name}-{'attached' if attached else 'bare'}"
    path = os.pathsep.join(part for part in (str(site), env.get("PYTHONPATH")) if part)
    channel = _own_channel(double)
    profiled = {**env, "PYTHONPATH": path, "MENDBOT_BENCH_PROFILE": str(out)}
    async with _started(double, repo, bot.entry, profiled, attached=attached) as (pid, _):
        await _settled(double)
        os.kill(pid, signal.SIGUSR1)
        await _appeared(Path(f"{out}.on"))
        for _ in range(CALLS):
            for call in bot.calls:
                await _called(double, channel, call)
        os.kill(pid, signal.SIGUSR2)
        await _appeared(out)
    counted: int = pstats.Stats(str(out)).total_calls  # type: ignore[attr-defined]
    return counted / (CALLS * len(bot.calls))


async def _appeared(path: Path, timeout: float = 30) -> None:
    deadline = time.perf_counter() + timeout
    while not await asyncio.to_thread(path.exists):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{path.name}: the profiled bot did not write it within {timeout:g}s")
        await asyncio.sleep(0.05)


async def _first_starts(double: DiscordDouble, repo: Path, bot: RealBot, env: dict[str, str]) -> None:
    """The unmeasured first starts, bare then attached: the bot's commands synced once as its owner does
    (its command line's flag, or its owner's command), its bytecode and data, and mendbot's, written."""
    async with _started(double, repo, [*bot.entry, *bot.sync_flag], env, attached=False):
        await _settled(double)
        if bot.sync_said:
            double.members.setdefault("owner", double.owner)  # the application's owner, as a member
            channel = _own_channel(double)
            said = await double.send_message(channel, bot.sync_said, author="owner")
            await double.wait_for_message(_after(said), 30, channel=channel)
    synced = {command["name"] for command in double.synced.get("global", [])}
    missing = [
        call.said
        for call in bot.calls
        if call.said.startswith("/") and call.said[1:].split()[0] not in synced
    ]
    if missing:
        raise RuntimeError(f"{bot.folder}: {', '.join(missing)} not synced by its first start")
    async with _started(double, repo, bot.entry, env, attached=True):
        await _settled(double)
        await _base_checked(double)


async def _realbot(bot: RealBot, source: Path, scratch: Path) -> dict[bool, list[dict[str, float]]]:
    """The rounds of one real bot, bare and attached alternating, on a loopback Discord of its own."""
    repo = _copied(source, scratch / bot.folder, bot.only)
    bot.ready_for_use(repo)
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    if bot.installed:
        await asyncio.to_thread(
            _pip, repo, "install", "--quiet", "--no-deps", "--no-build-isolation", "-e", "."
        )
    try:
        async with DiscordDouble() as double:
            token_env = _adopted(repo, double)
            home = scratch / f"{bot.folder}-home"
            env = {
                # The bot's own mendbot.yaml, not one the environment names.
                **{key: value for key, value in _ENVIRONMENT.items() if key != "MENDBOT_CONFIG"},
                token_env: double.token,
                "POINTED_TOKEN": double.token,
                # Its platform directories (ministatus's SQLite and log) kept in the scratch directory.
                # Not XDG_CACHE_HOME: mendbot's own cache there is the one its users have, warm.
                "XDG_DATA_HOME": str(home / "data"),
                "XDG_CONFIG_HOME": str(home / "config"),
                "XDG_STATE_HOME": str(home / "state"),
            }
            await _first_starts(double, repo, bot, env)
            for round_ in range(REALBOT_ROUNDS):
                for attached in (False, True) if round_ % 2 == 0 else (True, False):
                    runs[attached].append(await _measured(double, repo, bot, env, attached=attached))
            for attached in (False, True):
                calls = await _profiled(double, repo, bot, env, attached=attached, scratch=scratch)
                for run in runs[attached]:
                    run["calls"] = calls
    finally:
        if bot.installed:
            await asyncio.to_thread(_pip, repo, "uninstall", "--quiet", "--yes", bot.installed)
    return runs


def _print_realbot(bot: RealBot, runs: dict[bool, list[dict[str, float]]]) -> None:
    def median(attached: bool, key: str) -> float:
        return float(statistics.median(run[key] for run in runs[attached]))

    name = f"realbot_{bot.name}"
    for call in bot.calls:
        bare, with_mendbot = median(False, call.name), median(True, call.name)
        print(f"{name}_bare_latency_{call.name}_ms {bare:.2f} ms")
        print(f"{name}_attached_latency_{call.name}_ms {with_mendbot:.2f} ms")
        print(f"{name}_latency_ratio_{call.name} {with_mendbot / bare:.3f} ratio")
    print(f"{name}_bare_cpu_per_call_ms {median(False, 'cpu'):.2f} ms")
    print(f"{name}_attached_cpu_per_call_ms {median(True, 'cpu'):.2f} ms")
    print(f"{name}_bare_calls_per_call {median(False, 'calls'):.0f} calls")
    print(f"{name}_attached_calls_per_call {median(True, 'calls'):.0f} calls")
    print(f"{name}_calls_ratio {median(True, 'calls') / median(False, 'calls'):.3f} ratio")
    print(f"{name}_bare_idle_rss_mb {median(False, 'rss'):.1f} MB")
    print(f"{name}_attached_idle_rss_mb {median(True, 'rss'):.1f} MB")
    print(f"{name}_idle_rss_delta_mb {median(True, 'rss') - median(False, 'rss'):.1f} MB")
    print(f"{name}_bare_ready_s {median(False, 'ready'):.3f} s")
    print(f"{name}_attached_ready_s {median(True, 'ready'):.3f} s")
    print(f"{name}_ready_ratio {median(True, 'ready') / median(False, 'ready'):.3f} ratio", flush=True)


async def _realbots() -> None:
    with tempfile.TemporaryDirectory(prefix="mendbot-bench-attach-realbots-") as scratch:
        for bot in REAL_BOTS:
            source = REALBOTS / bot.folder if REALBOTS is not None else None
            if source is None or not source.is_dir():
                print(f"bench/attach.py: no {bot.folder} in ../shared/realbots/: skipped", file=sys.stderr)
                continue
            if absent := [name for name in bot.only or [] if not (source / name).is_file()]:
                print(
                    f"bench/attach.py: no {bot.folder}/{absent[0]} in ../shared/realbots/: skipped",
                    file=sys.stderr,
                )
                continue
            _print_realbot(bot, await _realbot(bot, source, Path(scratch)))


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
            environment = {**_ENVIRONMENT, "ECHO_TOKEN": double.token, "POINTED_TOKEN": double.token}
            async with _started(double, repo, ["bot.py"], environment, attached=True):
                await _base_checked(double)  # the one-time check of its commit, before the measured starts
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
    sys.stdout.flush()  # the small bot's lines before the real bots' minutes
    await _realbots()


if __name__ == "__main__":
    asyncio.run(main())
