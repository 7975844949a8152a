"""Start-up benchmark: mendbot side by side with a minimal discord.py bot, and the playground.

On one loopback Discord (bot/trust/loopback_discord.py) served by this process, it starts as
subprocesses, alternating which goes first, `RUNS` times each (after one warm-up start each, not
counted, which writes their bytecode and mendbot's database): (a) `mendbot run` with the double's token
and a model key, as a bot that chats and fixes itself runs (the real entry point, pointed at the double
by `tests.harness.pointed`; the default configuration but for the data directory, a free health port
and the double's guild as the dev guild) and (b)
`bench/minimal_bot.py`, a `commands.Bot` with one cog, one slash command and the tree synced to the
same guild. Each keeps its home across its starts, as an installed bot does.

"Ready" is from the spawn to the double answering IDENTIFY with READY: imports, set-up, login, the
command sync and the handshake — without discord.py's fixed wait for late guilds after READY
(`guild_ready_timeout`, 2 s), which both bots pay before `on_ready` and which would hide the
difference; "ready CPU" is the CPU seconds the process had used by then, which a loaded machine does
not stretch. "On ready" (to `on_ready`, the fixed wait included) is printed apart. Idle memory is read
3 s after READY, when both have gone quiet: the process's own RSS, and with every descendant process's
added. Then each bot answers 1,000 slash commands (mendbot `/roll 2d6`, each an action it records and
stores; the minimal bot `/hello`), one after another, each waited for; 3 s later the RSS with every
descendant's is read again: "after traffic".

Prints medians over the runs — `ready_s`, `ready_cpu_s`, `idle_rss_mb`, `idle_rss_with_children_mb`,
`rss_after_traffic_mb`, each with its `minimal_…` counterpart and `…_ratio_vs_minimal_bot`
(`ready_ratio_vs_minimal_bot`, `rss_after_traffic_ratio_vs_minimal_bot`, …), `children_at_idle`,
`children_after_traffic`, and apart `on_ready_s` with its ratio — then the playground's `play_ready_s`
and `play_idle_rss_mb`. `BENCH_STARTUP_RUNS` sets the number of starts.

What idle memory is made of: `discord_imports_rss_mb`, `card_imports_rss_mb` and
`card_settings_imports_rss_mb` are fresh interpreters that only import discord.py; that and the
product card's other runtime packages (pydantic, structlog as mendbot imports it, PyYAML, aiosqlite,
GitPython — of which a running bot now imports neither pydantic nor GitPython); that and mendbot's
settings (msgspec and the settings' Structs) — each with its ratio to the minimal bot's idle RSS.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mendbot.trust.loopback_discord import DiscordDouble  # noqa: E402

RUNS = int(os.environ.get("BENCH_STARTUP_RUNS", "5"))
IDLE_S = 3.0
TRAFFIC = 1000  # slash commands each bot answers before its memory is read again
# What a bench process must not pass on to the bots it starts.
# PYTHONDONTWRITEBYTECODE too: an installed bot starts from bytecode it wrote on its first start.
_DROPPED = (
    "MENDBOT_CONFIG",
    "DISCORD_TOKEN",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GITHUB_TOKEN",
    "PYTHONDONTWRITEBYTECODE",
)


class TimedDouble(DiscordDouble):
    """The double, noting when each IDENTIFY was answered with READY."""

    def __init__(self) -> None:
        super().__init__()
        self.ready_at: list[float] = []
        self.readied = asyncio.Event()

    async def _identify(self, ws: Any, data: dict[str, Any]) -> Any:
        session = await super()._identify(ws, data)
        if session is not None:
            self.ready_at.append(time.perf_counter())
            self.readied.set()
        return session


@dataclass(frozen=True)
class Start:
    """One start of a bot: seconds to READY and to on_ready, idle RSS (MB) alone and with descendants,
    and with descendants after the traffic."""

    on_ready_s: float
    ready_s: float
    ready_cpu_s: float  # CPU seconds the process had used at READY: what load on the machine cannot stretch
    rss_mb: float
    rss_with_children_mb: float
    children: int
    rss_after_traffic_mb: float
    children_after_traffic: int


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0  # a kernel thread or a zombie


def _cpu_s(pid: int) -> float:
    """User plus system CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _environment(double: TimedDouble, home: Path) -> dict[str, str]:
    (home / "home").mkdir(parents=True, exist_ok=True)
    return {
        **{k: v for k, v in os.environ.items() if k not in _DROPPED},
        "PYTHONPATH": str(REPO),
        "DISCORD_TOKEN": double.token,
        # A model key, as a bot that chats and fixes itself has one; nothing asks the model here, and
        # its URL is a closed loopback port should anything try.
        "ANTHROPIC_API_KEY": "bench-key",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        "HOME": str(home / "home"),
        "PYTHONUNBUFFERED": "1",
    }


def _mendbot_command(double: TimedDouble, home: Path) -> list[str]:
    config = {
        "data_dir": str(home / "data"),
        "repo_dir": str(REPO),
        "health": {"host": "127.0.0.1", "port": _free_port()},
        "discord": {"dev_guild_id": double.guild.id},
    }
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    pointed = ["-m", "tests.harness.pointed", double.url, double.gateway_url, "--"]
    return [sys.executable, *pointed, "--config", str(home / "config.yaml"), "run"]


def _minimal_command(double: TimedDouble, _: Path) -> list[str]:
    minimal = str(REPO / "bench" / "minimal_bot.py")
    return [sys.executable, minimal, double.url, double.gateway_url, str(double.guild.id)]


async def _watch_output(
    process: asyncio.subprocess.Process, sink: Path, ready: Callable[[str], bool], said: asyncio.Event
) -> float:
    """Copy the bot's output to `sink`; the time of its first line saying it is ready (0 if none),
    when `said` is set."""
    assert process.stdout is not None
    seen = 0.0
    with sink.open("wb") as out:
        async for line in process.stdout:
            if not seen and ready(line.decode(errors="replace")):
                seen = time.perf_counter()
                said.set()
            out.write(line)
    return seen


def _mendbot_ready(line: str) -> bool:
    return re.search(r"\[info\s*\] ready\b", line) is not None  # mendbot.runtime.app's on_ready


def _minimal_ready(line: str) -> bool:
    return line.strip() == "ready"


def _with_children_mb(pid: int) -> tuple[float, int]:
    """The RSS of process `pid` and every descendant's, and how many descendants there are."""
    children = _descendants(pid)
    return _rss_mb(pid) + sum(_rss_mb(child) for child in children), len(children)


async def traffic(double: TimedDouble, slash: tuple[str, dict[str, str]]) -> None:
    """`TRAFFIC` slash commands in #general, one after another, each answered before the next."""
    name, options = slash
    general = double.guild.channel("general")
    for _ in range(TRAFFIC):
        interaction = await double.slash(general, name, author="bob", **options)
        await double.response_to(interaction, timeout=30)


async def one_bot(
    double: TimedDouble,
    command: list[str],
    home: Path,
    is_ready: Callable[[str], bool],
    slash: tuple[str, dict[str, str]],
) -> Start:
    """One start of the bot `command` runs, until idle, then the traffic, then SIGTERM."""
    double.readied.clear()
    before = len(double.ready_at)
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=home,
        env=_environment(double, home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    said_ready = asyncio.Event()
    output = asyncio.ensure_future(_watch_output(process, home / "output.log", is_ready, said_ready))
    try:
        while len(double.ready_at) == before:
            waiter = asyncio.ensure_future(double.readied.wait())
            await asyncio.wait({waiter, output}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if output.done() or time.perf_counter() - started > 60:
                text = (home / "output.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{command[1:3]} did not connect:\n{text}")
        connected = double.ready_at[before] - started
        connect_cpu = _cpu_s(process.pid)
        await asyncio.sleep(IDLE_S)
        own = _rss_mb(process.pid)
        with_children, children = _with_children_mb(process.pid)
        await asyncio.wait_for(said_ready.wait(), 60)  # on_ready: served from then on
        await traffic(double, slash)
        await asyncio.sleep(IDLE_S)
        after_traffic, children_after = _with_children_mb(process.pid)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                process.kill()
                await process.wait()
    ready_at = await output
    if not ready_at:
        raise RuntimeError(f"{command[1:3]} never said it was ready")
    return Start(
        ready_at - started,
        connected,
        connect_cpu,
        own,
        with_children,
        children,
        after_traffic,
        children_after,
    )


def _said_ready(home: Path) -> bool:
    text = (home / "output.log").read_text(errors="replace")
    return any(_mendbot_ready(line) or _minimal_ready(line) for line in text.splitlines())


def play_start(workdir: Path) -> tuple[float, float]:
    """The playground's start: spawn to its ready line, and its RSS a second later."""
    (workdir / "config.yaml").write_text("health: {enabled: false}\n")
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "play"],
        cwd=workdir,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    line = process.stdout.readline()
    ready = time.perf_counter() - started
    if "playground ready" not in line:
        process.kill()
        raise RuntimeError(f"unexpected first line: {line!r}")
    time.sleep(1.0)  # idle
    rss = _rss_mb(process.pid)
    process.stdin.close()
    process.wait(timeout=30)
    return ready, rss


# What the idle figures are made of: a process that only imports these, and nothing more. The card's
# runtime packages are discord.py and those a running bot needs beside it (claude-agent-sdk only in a run).
# structlog as `mendbot.kernel.log` imports it: without rich, which a dev install has and mendbot never uses.
_CARD = ("discord.ext.commands", "pydantic.main", "mendbot.kernel.log", "yaml", "aiosqlite", "git")
_IMPORTS = {
    "discord_imports": _CARD[:1],  # the minimal bot's library
    "card_imports": _CARD,
    # and what mendbot adds for its settings: msgspec and the settings' Structs
    "card_settings_imports": (*_CARD, "mendbot.kernel.settings"),
}
_IMPORTS_ONLY = (
    "import gc, importlib, sys\n"
    "for name in sys.argv[1:]:\n"
    "    importlib.import_module(name)\n"
    "gc.collect()\n"
    "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmRSS:')))\n"
)


def imports_rss_mb(modules: tuple[str, ...]) -> float:
    """The RSS of a fresh interpreter that has imported `modules` and nothing else."""
    found = subprocess.run(
        [sys.executable, "-c", _IMPORTS_ONLY, *modules], capture_output=True, text=True, check=True
    )
    return int(found.stdout) / 1024


def _median(values: list[float]) -> float:
    return statistics.median(values)


async def side_by_side() -> None:
    mendbot: list[Start] = []
    minimal: list[Start] = []
    # Each bot keeps its home (config, data) across its starts, as an installed bot does: the warm-up
    # start (run -1, not counted) writes its bytecode and makes its database.
    with tempfile.TemporaryDirectory(prefix="mendbot-bench-start-") as temp:
        homes = {"mendbot": Path(temp) / "mendbot", "minimal": Path(temp) / "minimal"}
        for home in homes.values():
            home.mkdir()
        double = TimedDouble()
        async with double:
            roll = ("roll", {"notation": "2d6"})
            hello: tuple[str, dict[str, str]] = ("hello", {})
            bots = [
                (mendbot, _mendbot_command(double, homes["mendbot"]), homes["mendbot"], _mendbot_ready, roll),
                (
                    minimal,
                    _minimal_command(double, homes["minimal"]),
                    homes["minimal"],
                    _minimal_ready,
                    hello,
                ),
            ]
            for run in range(-1, RUNS):
                # alternate which starts first, so neither always meets a warmer page cache
                for results, command, home, is_ready, slash in bots if run % 2 == 0 else reversed(bots):
                    start = await one_bot(double, command, home, is_ready, slash)
                    if run >= 0:
                        results.append(start)

    def both(field: str) -> tuple[float, float]:
        return _median([getattr(s, field) for s in mendbot]), _median([getattr(s, field) for s in minimal])

    for field, name, unit in (
        ("ready_s", "ready", "s"),
        ("ready_cpu_s", "ready_cpu", "s"),
        ("rss_mb", "idle_rss", "MB"),
        ("rss_with_children_mb", "idle_rss_with_children", "MB"),
        ("rss_after_traffic_mb", "rss_after_traffic", "MB"),
        ("on_ready_s", "on_ready", "s"),  # apart: with discord.py's fixed 2 s wait for late guilds
    ):
        ours, theirs = both(field)
        figure = f"{name}_{unit.lower()}"
        print(f"{figure} {ours:.3f} {unit}" if unit == "s" else f"{figure} {ours:.1f} {unit}")
        print(
            f"minimal_{figure} {theirs:.3f} {unit}"
            if unit == "s"
            else f"minimal_{figure} {theirs:.1f} {unit}"
        )
        print(f"{name}_ratio_vs_minimal_bot {ours / theirs:.2f} x")
    print(f"children_at_idle {max(s.children for s in mendbot)}")
    print(f"children_after_traffic {max(s.children_after_traffic for s in mendbot)}")
    _, minimal_rss = both("rss_mb")
    for name, modules in _IMPORTS.items():
        rss = _median([imports_rss_mb(modules) for _ in range(3)])
        print(f"{name}_rss_mb {rss:.1f} MB")
        print(f"{name}_ratio_vs_minimal_bot {rss / minimal_rss:.2f} x")


def main() -> None:
    asyncio.run(side_by_side())
    readies, rsses = [], []
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory() as tmp:
            ready, rss = play_start(Path(tmp))
        readies.append(ready)
        rsses.append(rss)
    print(f"play_ready_s {_median(readies):.2f} s")
    print(f"play_idle_rss_mb {_median(rsses):.1f} MB")


if __name__ == "__main__":
    main()
