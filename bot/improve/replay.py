"""Incident replay, judged from outside: the recorded calls, sent again over the wire to a bot started
from a checkout in the sandbox, and judged by what a user would have seen.

The recorder kept what each handler was asked (`invocation`). For a run's incident the replay picks at
most `MAX_REPLAYS` distinct recorded invocations — the failures with the incident's fingerprint, or, for a
latency or wrong-output complaint with no fingerprint, the kind's slowest calls. Invocations whose outcome
depends on state the recorder could not capture (a reaction on some message, a task iteration, an option
naming a member or a channel, a redacted value) are not sent: they are "not replayable", with the reason.

**Who judges.** No verdict comes from the process under test — not a record it wrote, not a line it
printed. The bot process itself is the observer: it serves a loopback Discord
(`bot.trust.loopback_discord`) on a unix socket bound into the sandbox, starts the checkout's own `mendbot
run` there through a launcher from the installed bot (`bot/trust/replay_launch.py`, bound read-only: never
the checkout's copy), and then, as a member in `#general`, sends each recorded call (a message, or a slash
command with its options) and watches what comes back: the answer's text, no answer at all, or the bot's
apology naming a bug ("Something went wrong on my side (ZeroDivisionError)…",
`bot.kernel.errors.named_bug`), and the time from the call to the first answer as the observer measured
it. The checkout runs on a fresh copy of exactly its commit's tree (`Workspace.checkout`) in an
environment that says nothing about being a replay: the same for the base and the branch, with a config
and a token like any other start.

What this does not catch: a change can detect the sandbox (no network, another user id) and behave
differently there; the deploy's own replay and watch against the live code are what see that.
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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bot.db import handlers as handler_queries
from bot.db import proofs as queries
from bot.db.core import Connection
from bot.kernel.errors import named_bug
from bot.kernel.log import get_logger
from bot.kernel.own_loop import on_own_loop
from bot.trust import replay_launch
from bot.trust.loopback_discord_model import message_text
from bot.trust.redact import REDACTED
from bot.trust.sandbox import Sandbox, SandboxUnavailable

if TYPE_CHECKING:  # the double (and aiohttp's server side) is loaded by the first replay, not at start
    from bot.trust.loopback_discord import DiscordDouble
    from bot.trust.loopback_discord_model import FakeChannel

__all__ = [
    "MAX_REPLAYS",
    "ReplayCase",
    "ReplayError",
    "ReplayPlan",
    "ReplayResult",
    "plan_replay",
    "run_replay",
]

_log = get_logger(__name__)

MAX_REPLAYS = 5
READY_TIMEOUT_S = 60.0  # the checkout's bot connects to the observer within this
CALL_TIMEOUT_S = 15.0  # a recorded call answered within this, or "no answer"
# Discord's own deadline: a slash command not acknowledged (answered, or "thinking…") within 3 s fails
# for the user ("The application did not respond"), whatever the bot sends later.
ACK_TIMEOUT_S = 3.0
_SETTLE_S = 0.3  # after the first answer, edits made at once (a "rolling…" then the result) still count
_STOP_TIMEOUT_S = 5.0
_REPLY_CHARS = 300
_LAUNCHER = Path(replay_launch.__file__).resolve()
_INSIDE = "/run/mendbot/replay"  # where the observer's socket, the config and the launcher are bound
_MEMBER = "alice"
_SNOWFLAKE_OPTION = re.compile(r"^[A-Za-z]+:\d+$")  # how the recorder keeps a member, role or channel


class ReplayError(Exception):
    """The replay itself could not run (no sandbox, the throwaway bot did not start); says why."""


@dataclass(frozen=True)
class ReplayCase:
    """One recorded invocation to send again; `unreplayable` is the reason it cannot be, if any."""

    key: str
    kind: str
    name: str
    options: dict[str, Any]
    fingerprint: str | None  # the failure it should reproduce; None for a latency case
    recorded_ms: float
    unreplayable: str | None = None
    error_type: str | None = None  # what was recorded as raised, for a failure

    @property
    def label(self) -> str:
        """What a person would have typed, e.g. `!roll 2d6` or `/temp value=100 scale=C`."""
        if self.kind.startswith("command:") or self.kind == "listener:on_message":
            return str(self.options.get("text") or self.options.get("content") or self.name)[:80]
        shown = " ".join(f"{key}={value}" for key, value in self.options.items())
        return f"{self.name} {shown}".strip()[:80]

    @property
    def slash(self) -> bool:
        return self.kind.startswith("app:")

    @property
    def text(self) -> str:
        """The message a member sends for a prefix command or a listener."""
        return str(self.options.get("text") or self.options.get("content") or "")


@dataclass(frozen=True)
class ReplayPlan:
    cases: list[ReplayCase]
    handlers: list[str]  # repository paths of the files that handle the kinds replayed
    latency: bool

    @property
    def replayable(self) -> list[ReplayCase]:
        return [case for case in self.cases if case.unreplayable is None]


@dataclass(frozen=True)
class ReplayResult:
    """What the observer saw for one replayed call: what a user would have seen, and when."""

    key: str
    answered: bool
    reply: str  # what a user reads in the answer (content and embeds), cut short; "" without one
    error_type: str | None  # the bug the bot's apology names, if the answer is one
    duration_ms: float  # from the call to the first answer, measured by the observer

    @property
    def ok(self) -> bool:
        return self.answered and self.error_type is None

    def shown(self) -> str:
        """The answer in a few words, for the proof's table."""
        if not self.answered:
            return "no answer"
        if self.error_type is not None:
            return f"error shown: {self.error_type}"
        return f"answered “{_snippet(self.reply)}”"


def _snippet(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _unreplayable(kind: str, invocation: dict[str, Any] | None) -> str | None:
    if not invocation:
        return "no invocation was recorded for it"
    options = invocation.get("options") or {}
    if not isinstance(options, dict):
        return "its options were not recorded"
    if any(REDACTED in str(value) for value in options.values()):
        return "an option was redacted when it was recorded"
    if kind.startswith("command:"):
        return None if options.get("text") else "the command's text was not recorded"
    if kind == "listener:on_message":
        return None if options.get("content") else "the message's content was not recorded"
    if kind.startswith("app:"):
        if " " in str(invocation.get("name", "")).strip():
            return "a subcommand: the replay sends top-level commands only"
        for name, value in options.items():
            if isinstance(value, str) and _SNOWFLAKE_OPTION.match(value):
                what = value.split(":")[0]
                return f"option `{name}` names a Discord object ({what}) the recorder kept only by id"
        return None
    what = kind.split(":", 1)[0]
    return f"a {what} depends on state the recorder could not capture (messages, time, stored data)"


async def plan_replay(
    db: Connection, *, fingerprint: str | None, kind: str | None, limit: int = MAX_REPLAYS
) -> ReplayPlan:
    """What to replay for a run: the incident's failures, else (latency, wrong output) the kind's
    slowest calls."""
    latency = fingerprint is None
    if fingerprint is not None:
        calls = await queries.failing_calls(db, fingerprint)
    elif kind is not None:
        calls = await queries.slowest_calls(db, kind)
    else:
        calls = []
    cases: list[ReplayCase] = []
    seen: set[str] = set()
    for call in calls:
        identity = json.dumps([call.kind, call.invocation], sort_keys=True, default=str)
        if identity in seen:
            continue
        seen.add(identity)
        invocation = call.invocation or {}
        cases.append(
            ReplayCase(
                key=str(len(cases) + 1),
                kind=call.kind,
                name=str(invocation.get("name") or call.kind.split(":", 1)[-1]),
                options=dict(invocation.get("options") or {}),
                fingerprint=fingerprint,
                recorded_ms=call.duration_ms,
                unreplayable=_unreplayable(call.kind, call.invocation),
                error_type=call.error_type,
            )
        )
        if len(cases) >= limit:
            break
    kinds = {case.kind for case in cases if case.unreplayable is None}
    handlers = sorted({location.path for location in await handler_queries.for_kinds(db, kinds)})
    return ReplayPlan(cases, handlers, latency)


async def run_replay(
    checkout: Path,
    plan: ReplayPlan,
    *,
    sandbox: Sandbox,
    ready_timeout_s: float = READY_TIMEOUT_S,
    call_timeout_s: float = CALL_TIMEOUT_S,
) -> dict[str, ReplayResult]:
    """Start `checkout`'s bot in the sandbox, send it the plan's replayable cases as a member would, and
    return what the observer saw for each (module docstring), by case key. ReplayError when the bot
    could not be started or did not connect: its output's last lines say why."""
    if not plan.replayable:
        return {}
    try:
        await sandbox.probe()
    except SandboxUnavailable as exc:
        raise ReplayError(f"no sandbox to replay in: {exc}") from exc
    # The observer runs on an event loop of its own, in a thread, with a context of its own: the times
    # it measures are the bot's, not this loop's load, and nothing of a virtual clock (the playground's
    # simcord keeps one in context variables) can reach its waits. Cancelled (a shutdown), it stops the
    # sandboxed bot and ends at once, instead of holding the process until the replay is over.
    observe = _observe(checkout, plan, sandbox, ready_timeout_s, call_timeout_s)
    return await on_own_loop(observe, stop_within_s=_STOP_TIMEOUT_S + 5)


async def _observe(
    checkout: Path, plan: ReplayPlan, sandbox: Sandbox, ready_timeout_s: float, call_timeout_s: float
) -> dict[str, ReplayResult]:
    from bot.trust.loopback_discord import DiscordDouble

    with tempfile.TemporaryDirectory(prefix="mendbot-replay-") as scratch:
        shared = Path(scratch)
        async with DiscordDouble(unix_socket=shared / "discord.sock", echo=False) as observer:
            _prepare(shared, observer, plan)
            async with _started(sandbox, checkout, observer, shared, ready_timeout_s) as output:
                general = observer.guild.channel("general")
                results = {}
                for case in plan.replayable:
                    results[case.key] = await _call(observer, general, case, call_timeout_s)
                _log.info("replayed", checkout=str(checkout), cases=len(results), output=output.name)
    return results


def extension_of(path: str) -> str:
    """The extension that holds a handler file: `cogs/dice.py` → `cogs.dice`, a cog package's submodule
    → the package, any other module → itself."""
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    if parts[:1] == ["cogs"] and len(parts) > 2:
        parts = parts[:2]
    return ".".join(parts)


def _prepare(shared: Path, observer: DiscordDouble, plan: ReplayPlan) -> None:
    """The launcher and a config like any start's: its data in the sandbox's /tmp, the observer's guild
    as the dev guild (the slash commands sync there), the extensions that handle the replayed kinds,
    nothing started by itself."""
    observer.member(_MEMBER)
    shutil.copyfile(_LAUNCHER, shared / "launch.py")
    config = {
        "data_dir": "/tmp/mendbot",
        "repo_dir": "/tmp/mendbot",  # no repository: the bot under test never runs git or a fix
        "health": {"enabled": False},
        "discord": {
            "dev_guild_id": observer.guild.id,
            "dev_channel_ids": [observer.guild.channel("dev").id],
            "extensions": sorted({extension_of(path) for path in plan.handlers}) or None,
        },
        "deploy": {"watch_hand_edits": False},
        "improve": {"autonomy": "off"},
    }
    (shared / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    os.chmod(shared, 0o755)


@contextlib.asynccontextmanager
async def _started(
    sandbox: Sandbox, checkout: Path, observer: DiscordDouble, shared: Path, ready_timeout_s: float
) -> AsyncIterator[Path]:
    """The checkout's `mendbot run` in the sandbox, connected to `observer`; stopped after the block.
    Yields the file its output goes to."""
    async with sandbox.jail(checkout, git_dir=None, writable=False, binds={shared: _INSIDE}) as jail:
        env = jail.environment({"DISCORD_TOKEN": observer.token, "PYTHONUNBUFFERED": "1"})
        argv = [jail.python, f"{_INSIDE}/launch.py", f"{_INSIDE}/discord.sock", f"{_INSIDE}/config.yaml"]
        command = jail.command(argv, env, wall_s=ready_timeout_s + 10 * 60)
        output = jail.scratch / "replay-output.log"
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
        try:
            await _connected(observer, process, output, ready_timeout_s)
            yield output
        finally:
            await _stop(process)


async def _connected(
    observer: DiscordDouble, process: asyncio.subprocess.Process, output: Path, timeout_s: float
) -> None:
    """Until the bot has identified on the gateway (its cogs are loaded and its commands synced by then)."""
    deadline = time.monotonic() + timeout_s
    while observer.identified == 0:
        if process.returncode is not None:
            raise ReplayError(f"the bot did not start (exit code {process.returncode}): {_tail(output)}")
        if time.monotonic() > deadline:
            raise ReplayError(f"the bot did not connect within {timeout_s:.0f} s: {_tail(output)}")
        await asyncio.sleep(0.05)
    await asyncio.sleep(_SETTLE_S)  # READY and the guild reach it before the first call


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), _STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def _call(
    observer: DiscordDouble, channel: FakeChannel, case: ReplayCase, timeout_s: float
) -> ReplayResult:
    """Send one recorded call as a member and wait for the answer a user would see."""
    started = time.monotonic()
    try:
        if case.slash:
            options = {key: value for key, value in case.options.items()}
            interaction = await observer.slash(channel, case.name.lstrip("/"), author=_MEMBER, **options)
            await observer.acknowledged(interaction, timeout=min(ACK_TIMEOUT_S, timeout_s))
            answer = await observer.response_to(interaction, timeout=timeout_s)
        else:
            said = await observer.send_message(channel, case.text, author=_MEMBER)
            answer = await observer.wait_for_message(
                lambda message: int(message["id"]) > int(said["id"]), timeout_s, channel=channel
            )
    except LookupError as exc:  # a slash command the checkout's bot did not sync
        return ReplayResult(case.key, False, f"not answered: {exc}", None, 0.0)
    except AssertionError:  # not acknowledged within Discord's 3 s, or no answer within the time
        return ReplayResult(case.key, False, "", None, (time.monotonic() - started) * 1000)
    duration_ms = (time.monotonic() - started) * 1000
    await asyncio.sleep(_SETTLE_S)
    current = next((m for m in observer.bot_messages(channel) if m["id"] == answer["id"]), answer)
    text = message_text(current)[:_REPLY_CHARS]
    return ReplayResult(case.key, True, text, named_bug(text), duration_ms)


def _tail(output: Path) -> str:
    try:
        text = output.read_text(errors="replace")
    except OSError:
        return "no output"
    shown = [line for line in text.strip().splitlines() if line.strip()]
    return " / ".join(shown[-3:])[-400:] or "no output"
