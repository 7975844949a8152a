"""A bot's own program started in the sandbox on a copy of its tree, connected to a loopback Discord that
watches it from outside: how the replay starts what it replays (`mendbot.improve.proof.replay`), and the
smoke load of a bot mendbot is attached to (`smoke_start`).

The tree is made ready first (`prepare_tree`): the bot's data files copied as they are (from its live
checkout, or from a snapshot of them a proof took: `snapshot_data`), and what it needs that git does not
keep (mendbot.yaml's `bot.files`) written with every secret value replaced
(`mendbot.trust.host_files`), its token's key given the loopback Discord's token. The program then runs as
its own entry point runs it — `mendbot attach` through the launcher (`mendbot.trust.replay_launch`, the
installed mendbot's copy bound read-only): its launcher, its constructor's arguments, its config objects,
whatever it does to start — with discord.py pointed at the observer over a unix socket, and with nothing
of the live environment but what mendbot.yaml says it reads.

**The smoke load.** The program is started once: the smoke passes when it identifies on the observer's
gateway within the time (its `setup_hook` has run: its extensions are loaded), no extension failed to
load — by the launcher's report of each `load_extension`, which sees a failure the program catches and
logs as well as one that stops it — and every extension mendbot.yaml names was loaded. Every file of the
tree is compiled first, in the sandbox too (`mendbot.trust.host_smoke`): a syntax error in a module the
start does not import fails it as well. The outcome is a list of lines, its reason last (`❌ your bot did
not start in the sandbox: ModuleNotFoundError: No module named 'asyncmy'`), each as a person would read
it. The launcher's report is the code's own word (it shares the bot's interpreter): it can fail a smoke
load, and a passing one proves nothing by itself — as for any check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from mendbot.kernel.process import kill
from mendbot.kernel.sections import HostConfig
from mendbot.kernel.waits import wait_for
from mendbot.trust import host_smoke, replay_launch
from mendbot.trust.host_files import copy_files
from mendbot.trust.loopback_discord_model import bot_token
from mendbot.trust.sandbox import MENDBOT_INSIDE, Sandbox

if TYPE_CHECKING:  # the double (and aiohttp's server side) is loaded by the first start, not at import
    from mendbot.trust.loopback_discord import DiscordDouble

__all__ = [
    "INSIDE",
    "HostBot",
    "NotStarted",
    "SmokeOutcome",
    "Started",
    "connected",
    "launch_config",
    "new_token",
    "prepare_tree",
    "smoke_start",
    "snapshot_data",
    "start_variables",
    "started",
    "stop",
    "tail",
    "write_launch",
]

INSIDE = "/run/mendbot/replay"  # where the observer's sockets, the config and the launcher are bound
_LAUNCHER = Path(replay_launch.__file__).resolve()
_COMPILER = Path(host_smoke.__file__).resolve()
_STOP_TIMEOUT_S = 5.0
_READY_REPORT_S = 5.0  # after identifying, READY reaches the bot (and its on_ready handlers) within this
_EXTENSIONS_QUIET_S = 0.3  # extensions loaded after READY (in on_ready) come in within this of each other
_EXTENSIONS_SETTLE_S = 3.0
_OUTPUT_SHOWN = 20  # the last lines of a program that did not start, shown before the reason
_SQLITE_LOGS = ("-wal", "-journal")  # a SQLite file's last writes, or what undoes an unfinished one
# The last line of a Python traceback: `ModuleNotFoundError: No module named 'x'`, `KeyError: 'TOKEN'`.
_RAISED = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Warning)\b(?::.*)?$")


class NotStarted(Exception):
    """The program did not start or did not connect; the message says why, with its output's last lines
    (`output`: all its lines, as they were then)."""

    def __init__(self, message: str, output: list[str] | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.output = output or []
        self.code = code  # its exit code; None: it did not end (it did not connect in time)


@dataclass
class Started:
    """A program started by `started`: the file its output goes to, and — once the block is over — whether
    it ended when asked to (`ended_when_asked`): then the sandbox copied what it wrote back to its
    checkout; killed from outside, nothing of it came back."""

    output: Path
    ended_when_asked: bool = False


@dataclass(frozen=True)
class HostBot:
    """A bot mendbot is attached to (mendbot.yaml's `bot:`), and its live checkout (where its state and
    the files git does not keep are)."""

    config: HostConfig
    live: Path


def new_token() -> str:
    """A token for a loopback Discord, shaped as Discord's are (a bot may check the form before logging in):
    what the bot's token variable is given where it is started."""
    return bot_token(0)


def prepare_tree(checkout: Path, host: HostBot, token: str, data: Path | None = None) -> list[str]:
    """Make `checkout` ready for the bot to start there: its data files copied as they are — from `data`
    (a snapshot of them, `snapshot_data`) or else from the live checkout — its `files` with their secrets
    replaced (the token's key given `token`). One line for each file that could not be copied, and why."""
    _copy_data(data or host.live, checkout, host.config.data_files, fresh=data is not None)
    return copy_files(host.live, checkout, host.config.files, token_keys=[host.config.token_env], token=token)


def snapshot_data(live: Path, names: list[str], into: Path) -> None:
    """The data files `names` of the live checkout `live` (a SQLite file with its write-ahead log) copied
    into `into` under the same repository paths: what each side of a proof starts from."""
    into.mkdir(parents=True, exist_ok=True)
    _copy_data(live, into, names, fresh=True)


def _copy_data(source_root: Path, target_root: Path, names: list[str], *, fresh: bool) -> None:
    """Each of `names` copied from `source_root` into `target_root` where it stays inside it. `fresh`: a
    SQLite file's write-ahead log and journal are copied as they are too, and the ones a former start
    left in the target removed (a fresh copy of a database with an old log is another database)."""
    for name in names:
        source, target = source_root / name, target_root / name
        if not source.is_file() or not target.resolve().is_relative_to(target_root.resolve()):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if fresh:
            for suffix in (*_SQLITE_LOGS, "-shm"):  # the shared memory index is rebuilt from the log
                side = Path(f"{target}{suffix}")
                if side.is_symlink() or side.is_file():
                    side.unlink()
        shutil.copyfile(source, target)
        for suffix in _SQLITE_LOGS if fresh else ():
            side = Path(f"{source}{suffix}")
            if side.is_file() and not side.is_symlink():
                shutil.copyfile(side, Path(f"{target}{suffix}"))


def launch_config(
    observer: DiscordDouble,
    host: HostConfig | None,
    extensions: list[str] | None,
    *,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """The config the launcher starts mendbot with, like any start's: its data in `data_dir` (a replay's
    copy of the bot's data, where the live bot keeps it) or the sandbox's /tmp, the observer's guild as
    the dev guild, nothing started by itself. For mendbot's own bot, `extensions` (None: all); for a
    `host`, its own program, as mendbot.yaml runs it."""
    discord: dict[str, Any] = {
        "dev_guild_id": observer.guild.id,
        "dev_channel_ids": [observer.guild.channel("dev").id],
    }
    config: dict[str, Any] = {
        "data_dir": data_dir or "/tmp/mendbot",
        "repo_dir": data_dir or "/tmp/mendbot",  # no repository: the bot under test never runs git or a fix
        "health": {"enabled": False},
        "discord": discord,
        "deploy": {"watch_hand_edits": False},
        "improve": {"autonomy": "off", "check_base_at_start": False},
    }
    if host is None:
        discord["extensions"] = extensions
    else:  # its extensions are its own business
        config["bot"] = {key: value for key, value in msgspec.to_builtins(host).items() if key != "checks"}
    return config


def write_launch(shared: Path, config: dict[str, Any], watched: list[str] | dict[str, Any] | None) -> None:
    """The launcher, its config and what it watches (None: it only reports; a list: the files; a dict: the
    replay's, `mendbot.trust.replay_launch`) in `shared`, bound into the sandbox at `INSIDE`."""
    import yaml  # PyYAML loads with the first start, not at every start of mendbot (bot/kernel/yamldoc.py)

    shutil.copyfile(_LAUNCHER, shared / "launch.py")
    (shared / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (shared / "watched.json").write_text(json.dumps(watched))
    os.chmod(shared, 0o755)


@contextlib.asynccontextmanager
async def started(
    sandbox: Sandbox,
    checkout: Path,
    observer: DiscordDouble,
    shared: Path,
    ready_timeout_s: float,
    *,
    host: HostBot | None = None,
    writable: bool = True,
    binds: dict[Path, str] | None = None,
    mounts: dict[Path, str] | None = None,
    ask_to_stop: Callable[[], Awaitable[object]] | None = None,
) -> AsyncIterator[Started]:
    """The checkout's `mendbot run` (a host bot's own program, with mendbot attached) in the sandbox,
    connected to `observer`, with `mounts` writable where they go (a replay's copy of the bot's data);
    stopped after the block — first by `ask_to_stop` if given (the launcher ends the program: a writable
    jail's writes come back to the checkout), then from outside; killed at once if the block is cancelled.
    NotStarted when it ended or did not connect within `ready_timeout_s`."""
    async with sandbox.jail(
        checkout, git_dir=None, writable=writable, binds={shared: INSIDE, **(binds or {})}, mounts=mounts
    ) as jail:
        env = jail.environment(start_variables(observer, host))
        argv = [
            jail.python,
            f"{INSIDE}/launch.py",
            f"{INSIDE}/discord.sock",
            f"{INSIDE}/config.yaml",
            f"{INSIDE}/monitor.sock",
            f"{INSIDE}/watched.json",
            *([MENDBOT_INSIDE, host.config.token_env] if host is not None else []),
        ]
        command = jail.command(argv, env, wall_s=ready_timeout_s + 10 * 60)
        output = jail.scratch / "start-output.log"
        with output.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                *command,
                cwd=jail.worktree,
                env={},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=sink,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        start = Started(output)
        cancelled = False
        try:
            await connected(observer, process, output, ready_timeout_s)
            yield start
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            if cancelled:
                # A stop's drain or a run's deadline: nothing will read what it would write back, and
                # asking it, then waiting out its SIGTERM, would hold the cancellation for up to 10 s.
                if process.returncode is None:  # as `stop`: never signal a group that may be gone
                    await kill(process)
            else:
                if ask_to_stop is not None and process.returncode is None:
                    start.ended_when_asked = await _ended_when_asked(process, ask_to_stop)
                await stop(process)


async def _ended_when_asked(
    process: asyncio.subprocess.Process, ask: Callable[[], Awaitable[object]]
) -> bool:
    """Whether the program ended cleanly within `_STOP_TIMEOUT_S` of being asked to: the supervisor exits
    0 only after its copy-back went through."""
    with contextlib.suppress(OSError, ConnectionError):
        await ask()
    with contextlib.suppress(TimeoutError):
        await wait_for(process.wait(), _STOP_TIMEOUT_S)
    return process.returncode == 0


def start_variables(observer: DiscordDouble, host: HostBot | None) -> dict[str, str]:
    """The variables the bot starts with: its token's the observer's, and for a `host` what mendbot.yaml
    says it reads — nothing else of the live environment."""
    if host is not None:
        return {**host.config.env, host.config.token_env: observer.token, "PYTHONUNBUFFERED": "1"}
    return {"DISCORD_TOKEN": observer.token, "PYTHONUNBUFFERED": "1"}


async def connected(
    observer: DiscordDouble, process: asyncio.subprocess.Process, output: Path, timeout_s: float
) -> None:
    """Until the bot has identified on the gateway (its cogs are loaded and its commands synced by then)."""
    deadline = time.monotonic() + timeout_s
    while observer.identified == 0:
        if process.returncode is not None:
            raise NotStarted(
                f"the bot did not start (exit code {process.returncode}): {tail(output)}",
                _lines(output),
                process.returncode,
            )
        if time.monotonic() > deadline:
            raise NotStarted(
                f"the bot did not connect within {timeout_s:.0f} s: {tail(output)}", _lines(output)
            )
        await asyncio.sleep(0.05)


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await wait_for(process.wait(), _STOP_TIMEOUT_S)
        except TimeoutError:
            await kill(process)


def _lines(output: Path) -> list[str]:
    try:
        text = output.read_text(errors="replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.strip().splitlines() if line.strip()]


def tail(output: Path) -> str:
    """The output's last three lines, on one line."""
    return " / ".join(_lines(output)[-3:])[-400:] or "no output"


def _raised(lines: list[str]) -> str | None:
    """The last exception a traceback in `lines` ends with (`ModuleNotFoundError: No module named 'x'`)."""
    for line in reversed(lines):
        if _RAISED.match(line.strip()):
            return line.strip()[:300]
    return None


@dataclass
class _Reports:
    """The launcher's reports of a start: each extension loaded (None) or failed (its error), READY."""

    extensions: dict[str, str | None] = field(default_factory=dict)
    last: float = 0.0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while line := await reader.readline():
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(event, dict):
                    continue
                if event.get("e") == "ext" and isinstance(event.get("name"), str):
                    error = event.get("error")
                    # A failure stays one: loading it again later does not take it back.
                    if self.extensions.get(event["name"]) is None:
                        self.extensions[event["name"]] = str(error) if error is not None else None
                    self.last = time.monotonic()
                elif event.get("e") == "ready":
                    self.ready.set()
        finally:
            writer.close()
            self.done.set()

    async def settled(self) -> None:
        """Until READY was reported and no extension came in for a moment (those an `on_ready` loads)."""
        with contextlib.suppress(TimeoutError):
            await wait_for(self.ready.wait(), _READY_REPORT_S)
        deadline = time.monotonic() + _EXTENSIONS_SETTLE_S
        while time.monotonic() < deadline:
            if time.monotonic() - max(self.last, 0.0) >= _EXTENSIONS_QUIET_S:
                return
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        if self.writers:
            with contextlib.suppress(TimeoutError):
                await wait_for(self.done.wait(), _STOP_TIMEOUT_S)


@dataclass(frozen=True)
class SmokeOutcome:
    """The smoke load's lines, its reason last; `ok` when the bot started with everything loaded."""

    ok: bool
    lines: list[str]
    duration_s: float


async def _compiled(sandbox: Sandbox, checkout: Path, shared: Path, timeout_s: float) -> list[str]:
    """Every Python file of the tree compiled in the sandbox: a line for each that does not."""
    shutil.copyfile(_COMPILER, shared / "host_smoke.py")
    os.chmod(shared, 0o755)
    async with sandbox.jail(checkout, git_dir=None, writable=False, binds={shared: INSIDE}) as jail:
        ran = await jail.run([jail.python, f"{INSIDE}/host_smoke.py"], jail.environment(), wall_s=timeout_s)
    if ran.limit:
        return [f"❌ compiling every file: {ran.limit}"]
    lines = [line for line in ran.process.output.splitlines() if line.startswith("❌")]
    if ran.process.code != 0 and not lines:
        lines = [f"❌ compiling every file failed (exit code {ran.process.code})"]
    return lines


async def smoke_start(
    checkout: Path,
    host: HostBot,
    sandbox: Sandbox,
    *,
    token: str,
    timeout_s: float,
    redact: Callable[[str], str] = str,
) -> SmokeOutcome:
    """The smoke load of a host bot on `checkout` (made ready by `prepare_tree` with `token`): module
    docstring. Its output reaches the lines only through `redact`."""
    from mendbot.trust.loopback_discord import DiscordDouble

    begun = time.monotonic()
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mendbot-smoke-") as scratch:
        shared = Path(scratch)
        compile_failures = await _compiled(sandbox, checkout, shared, timeout_s)
        lines += compile_failures
        reports = _Reports()
        server = await asyncio.start_unix_server(reports.serve, path=str(shared / "monitor.sock"))
        failure: str | None = None
        try:
            async with DiscordDouble(unix_socket=shared / "discord.sock", echo=False) as observer:
                observer.token = token
                write_launch(shared, launch_config(observer, host.config, None), None)
                remaining = max(1.0, timeout_s - (time.monotonic() - begun))
                try:
                    async with started(
                        sandbox, checkout, observer, shared, remaining, host=host, writable=False
                    ):
                        await reports.settled()
                except NotStarted as exc:
                    lines += [f"│ {line}" for line in exc.output[-_OUTPUT_SHOWN:]]
                    failure = _not_started(exc)
        finally:
            server.close()
            await reports.close()
            await server.wait_closed()
    for name, error in reports.extensions.items():
        lines.append(f"✅ {name}" if error is None else f"❌ {name} — {error}")
    failed = [name for name, error in reports.extensions.items() if error is not None]
    missing = [name for name in host.config.extensions if name not in reports.extensions]
    problems = []  # each a reason the smoke load fails, the weightiest last
    if compile_failures:
        problems.append(f"{len(compile_failures)} file(s) of your bot do not compile")
    if failure is None:
        loaded = len(reports.extensions) - len(failed)
        lines.append(f"{loaded}/{len(reports.extensions)} extensions loaded; your bot connected")
        if missing:
            shown = ", ".join(f"`{name}`" for name in missing)
            problems.append(
                f"your bot started without {shown}, which mendbot.yaml's bot.extensions names — take out of "
                "bot.extensions what your bot does not load"
            )
        if failed:
            problems.append(f"{len(failed)} extension(s) of your bot failed to load: {', '.join(failed)}")
    elif failed:  # an extension that stopped the program is the reason it did not start
        name = failed[0]
        why = reports.extensions[name]
        problems.append(f"your bot did not start in the sandbox: extension `{name}` failed to load ({why})")
    else:
        problems.append(failure)
    lines += problems
    return SmokeOutcome(not problems, [redact(line) for line in lines], time.monotonic() - begun)


def _not_started(exc: NotStarted) -> str:
    """Why the program did not start, in one line: the exception it ended with when it says one, and what
    to change for the usual reasons."""
    raised = _raised(exc.output)
    ended = f"it ended with exit code {exc.code}" if exc.code is not None else "it did not connect in time"
    why = raised or ended
    return f"your bot did not start in the sandbox: {why}{_hint(raised, exc.code)}"


_MODULE = re.compile(r"No module named '([\w.]+)'")
_FILE = re.compile(r"No such file or directory: '([^']+)'")


def _hint(raised: str | None, code: int | None) -> str:
    """What to change, for a start that failed the usual ways."""
    if raised is None:
        if code is None:
            return " — does it wait for something only your machine has (a prompt, a server)?"
        return ""
    if (module := _MODULE.search(raised)) is not None:
        top = module[1].split(".")[0]
        return f" — install `{top}` where mendbot runs (your bot's virtualenv)"
    if (file := _FILE.search(raised)) is not None:
        return f" — name `{file[1]}` in mendbot.yaml's bot.files if git does not keep it"
    if raised.startswith("KeyError"):
        return " — a setting is missing: give it in mendbot.yaml's bot.env, or name its file in bot.files"
    if any(word in raised for word in ("Connect call failed", "Connection refused", "ConnectionRefused")):
        return " — it needs a server the sandbox cannot reach: mendbot starts your bot only without it"
    return ""
