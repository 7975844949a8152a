"""Incident replay, judged from outside: calls sent over the wire to a bot started from a checkout in the
sandbox, and judged by what a user would have seen — and by what the code raised on the way.

What is sent is the plan (`mendbot.improve.proof.replay_plan`): recorded failing calls, their neighbours, and
calls that worked.

**Who judges.** No verdict comes from the process under test — not a record it wrote, not a line it
printed. The bot process itself is the observer: it serves a loopback Discord
(`mendbot.trust.loopback_discord`) on a unix socket bound into the sandbox, starts the checkout's own `mendbot
run` (a host bot's own program) there through a launcher from the installed bot (`bot/trust/replay_launch.py`,
bound read-only: never the checkout's copy; the start is `mendbot.trust.host_start`'s, the smoke load's
too), and then, as a member in `#general`, sends each call (a message, or a slash command
with its options) and watches what comes back: the answer's text (as it is once the replay is over, edits
applied), no answer at all, or the bot's apology naming a bug ("Something went wrong on my side
(ZeroDivisionError)…", `mendbot.kernel.errors.named_bug`), and the time from the call to the first answer as
the observer measured it. The launcher also reports, on a second socket, every exception the checkout's
own frames raised and the frame that caught it, watched from before the checkout's first line ran; the
observer gives each to the call in whose window it was raised (`Raised`). The checkout runs on a fresh
copy of exactly its commit's tree (`Workspace.checkout`) in an environment that says nothing about being a
replay: the same for the base and the branch, with a config and a token like any other start.

What this does not catch: a change can detect the sandbox (no network, another user id) and behave
differently there; the deploy's own replay and watch against the live code are what see that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mendbot.improve.proof.replay_plan import ReplayCase, ReplayPlan, extension_of
from mendbot.kernel.errors import named_bug
from mendbot.kernel.log import get_logger
from mendbot.kernel.own_loop import on_own_loop
from mendbot.trust.host_start import (
    HostBot,
    NotStarted,
    launch_config,
    prepare_tree,
    started,
    write_launch,
)
from mendbot.trust.loopback_discord_model import message_text
from mendbot.trust.sandbox import Sandbox, SandboxUnavailable

if TYPE_CHECKING:  # the double (and aiohttp's server side) is loaded by the first replay, not at start
    from mendbot.trust.loopback_discord import DiscordDouble
    from mendbot.trust.loopback_discord_model import FakeChannel

__all__ = [
    "CALL_TIMEOUT_S",
    "HostBot",
    "Raised",
    "ReplayError",
    "ReplayResult",
    "Watch",
    "run_replay",
]

_log = get_logger(__name__)

READY_TIMEOUT_S = 60.0  # the checkout's bot connects to the observer within this
CALL_TIMEOUT_S = 15.0  # a recorded call answered within this, or "no answer"
# Discord's own deadline: a slash command not acknowledged (answered, or "thinking…") within 3 s fails
# for the user ("The application did not respond"), whatever the bot sends later.
ACK_TIMEOUT_S = 3.0
# After a call's first answer, the next call waits until nothing has moved (no message, no edit, no
# exception) for `_QUIET_S`, at most `_SETTLE_S`: what one call does is not taken for the next one's.
_QUIET_S = 0.05
_SETTLE_S = 0.6
_STOP_TIMEOUT_S = 5.0
_ARM_S = 5.0
_GUILD_S = 0.2  # after READY, the guild reaches the bot before the first call
_SYNC_S = 20.0  # after READY, the bot's slash commands are synced within this (or it has none to sync)
_REPLY_CHARS = 300
_MEMBER = "alice"


class ReplayError(Exception):
    """The replay itself could not run (no sandbox, the throwaway bot did not start); says why."""


@dataclass(frozen=True)
class Raised:
    """An exception the checkout's code raised during a call, as the launcher's watch saw it: its type,
    the innermost frame of the repository it was raised in, and the frame that caught it (the last frame
    it reached; `caught_in_repo` False means it left the repository's code: the framework took it)."""

    error_type: str
    file: str
    function: str
    line: int
    caught_file: str
    caught_function: str
    caught_in_repo: bool
    frames: tuple[str, ...] = ()  # the repository files it passed through

    @property
    def caught_where_raised(self) -> bool:
        return self.caught_in_repo and (self.caught_file, self.caught_function) == (self.file, self.function)


@dataclass(frozen=True)
class Watch:
    """The state of the launcher's exception watch over a whole replay."""

    on: bool = False  # the launcher connected and armed it
    tampered: str | None = None  # the code under test tried to turn it off ("sys.settrace")
    lost: bool = False  # its reports stopped before the replay ended (the connection closed, overflow)

    @property
    def trusted(self) -> bool:
        return self.on and self.tampered is None and not self.lost

    def problem(self) -> str | None:
        if self.tampered is not None:
            return f"the code under test tried to turn off the replay's watch ({self.tampered})"
        if self.lost:
            return "the replay's watch of raised exceptions stopped reporting before the replay ended"
        if not self.on:
            return "the replay's watch of raised exceptions did not start"
        return None


@dataclass(frozen=True)
class ReplayResult:
    """What the observer saw for one replayed call: what a user would have seen, and when."""

    key: str
    answered: bool
    reply: str  # what a user reads in the answer (content and embeds), cut short; "" without one
    error_type: str | None  # the bug the bot's apology names, if the answer is one
    duration_ms: float  # from the call to the first answer, measured by the observer
    raised: tuple[Raised, ...] = ()  # what the checkout's code raised during the call
    watch: Watch = field(default_factory=Watch)

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

    def escaped(self, files: list[str]) -> Raised | None:
        """An exception that left the handler's code (one of `files` on its way) for the framework: the
        answer is then the framework's handling of an error (a refusal), not the handler's result."""
        for raised in self.raised:
            if not raised.caught_in_repo and (not files or set(raised.frames) & set(files)):
                return raised
        return None


def _snippet(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


async def run_replay(
    checkout: Path,
    plan: ReplayPlan,
    *,
    sandbox: Sandbox,
    ready_timeout_s: float = READY_TIMEOUT_S,
    call_timeout_s: float = CALL_TIMEOUT_S,
    host: HostBot | None = None,
) -> dict[str, ReplayResult]:
    """Start `checkout`'s bot in the sandbox, send it the plan's replayable cases as a member would, and
    return what the observer saw for each (module docstring), by case key. ReplayError when the bot
    could not be started or did not connect: its output's last lines say why.

    For a `host` bot its own program is started (`mendbot attach`, the installed mendbot's, bound
    read-only into the sandbox), on a writable throwaway checkout holding a copy of its state (its data
    files, from the live checkout) and what it needs that git does not keep (its `files`, every secret
    value replaced: `mendbot.trust.host_start.prepare_tree`), with its token's variable — in the
    environment and in those files — the observer's token and nothing of the live environment but what
    mendbot.yaml says it reads."""
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
    observe = _observe(checkout, plan, sandbox, ready_timeout_s, call_timeout_s, host=host)
    return await on_own_loop(observe, stop_within_s=_STOP_TIMEOUT_S + 5)


class _Reports:
    """The launcher's watch as it reports: one JSON line per step of a raised exception."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.hello = False
        self.tampered: str | None = None
        self.lost = False
        self.open = False
        self.last = 0.0  # when the last report came in (the observer's clock)
        self.writers: list[asyncio.StreamWriter] = []
        self.done = asyncio.Event()
        self.hello_seen = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open = True
        self.writers.append(writer)
        try:
            while line := await reader.readline():
                self.last = time.monotonic()
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                kind = event.get("e") if isinstance(event, dict) else None
                if kind == "hello":
                    self.hello = True
                    self.hello_seen.set()
                elif kind == "tamper":
                    self.tampered = str(event.get("what"))[:80]
                elif kind == "overflow":
                    self.lost = True
                elif kind == "raise":
                    self.events.append(event)
        finally:
            self.open = False
            writer.close()
            self.done.set()

    async def close(self) -> None:
        """Stop reading: the launcher's connection ends with the replay (its process is gone by now)."""
        for writer in self.writers:
            writer.close()
        if self.writers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), _STOP_TIMEOUT_S)

    def watch(self, *, stopped: bool) -> Watch:
        """The watch's state; `stopped`: the replay is over (a connection closed before is a loss)."""
        return Watch(self.hello, self.tampered, self.lost or (self.hello and not self.open and not stopped))

    def raised_between(self, start: float, end: float) -> tuple[Raised, ...]:
        """The exceptions first raised in the window [start, end), each with where it went."""
        chains: dict[int, list[dict[str, Any]]] = {}
        for event in self.events:
            chains.setdefault(int(event.get("id", 0)), []).append(event)
        found = []
        for steps in chains.values():
            first, last = steps[0], steps[-1]
            if not start <= float(first.get("t", 0.0)) < end:
                continue
            found.append(
                Raised(
                    error_type=str(first.get("type")),
                    file=str(first.get("file")),
                    function=str(first.get("func")),
                    line=int(first.get("line") or 0),
                    caught_file=str(last.get("file")),
                    caught_function=str(last.get("func")),
                    caught_in_repo=bool(last.get("repo")),
                    frames=tuple(dict.fromkeys(str(s.get("file")) for s in steps if s.get("repo"))),
                )
            )
        return tuple(found)


async def _observe(
    checkout: Path,
    plan: ReplayPlan,
    sandbox: Sandbox,
    ready_timeout_s: float,
    call_timeout_s: float,
    *,
    host: HostBot | None = None,
) -> dict[str, ReplayResult]:
    from mendbot.trust.loopback_discord import DiscordDouble

    with tempfile.TemporaryDirectory(prefix="mendbot-replay-") as scratch:
        shared = Path(scratch)
        reports = _Reports()
        server = await asyncio.start_unix_server(reports.serve, path=str(shared / "monitor.sock"))
        try:
            async with DiscordDouble(unix_socket=shared / "discord.sock", echo=False) as observer:
                _prepare(shared, observer, plan, host)
                begun = time.monotonic()
                async with _started(
                    sandbox, checkout, observer, shared, ready_timeout_s, host=host
                ) as output:
                    general = observer.guild.channel("general")
                    await _armed(reports)
                    if any(case.slash for case in plan.replayable):
                        await _synced(observer)
                    ready = time.monotonic()
                    seen: list[tuple[ReplayCase, _Seen]] = []
                    for case in plan.replayable:
                        seen.append((case, await _call(observer, general, case, call_timeout_s, reports)))
                    ended = time.monotonic()
                    _log.info(
                        "replayed",
                        checkout=str(checkout),
                        cases=len(seen),
                        start_s=round(ready - begun, 2),
                        calls_s=round(ended - ready, 2),
                        raised=len(reports.events),
                        output=output.name,
                    )
                    watch = reports.watch(stopped=False)
                    results = {}
                    for index, (case, call) in enumerate(seen):
                        until = seen[index + 1][1].started if index + 1 < len(seen) else ended
                        results[case.key] = call.result(
                            case.key, observer, general, reports.raised_between(call.started, until), watch
                        )
        finally:
            server.close()
            await reports.close()
            await server.wait_closed()
    return results


def _prepare(shared: Path, observer: DiscordDouble, plan: ReplayPlan, host: HostBot | None = None) -> None:
    """The launcher and a config like any start's (`host_start.launch_config`), with the extensions that
    handle the replayed kinds for mendbot's own bot."""
    observer.member(_MEMBER)
    extensions = sorted({extension_of(path) for path in plan.handlers}) or None
    write_launch(shared, launch_config(observer, host.config if host else None, extensions), plan.watched)


@contextlib.asynccontextmanager
async def _started(
    sandbox: Sandbox,
    checkout: Path,
    observer: DiscordDouble,
    shared: Path,
    ready_timeout_s: float,
    *,
    host: HostBot | None = None,
) -> AsyncIterator[Path]:
    """The checkout's bot started and connected (`host_start.started`), a host bot's tree made ready
    first (its state, its files with their secrets replaced); ReplayError when it does not connect."""
    if host is not None:
        for problem in prepare_tree(checkout, host, observer.token):
            _log.warning("a file the bot needs was not copied into the replay", problem=problem)
    try:
        async with started(sandbox, checkout, observer, shared, ready_timeout_s, host=host) as output:
            yield output
    except NotStarted as exc:
        raise ReplayError(str(exc)) from None


async def _synced(observer: DiscordDouble) -> None:
    """Until the bot's slash commands are synced, at most `_SYNC_S`. A bot mendbot is attached to has
    them synced to the dev guild once it has connected and mendbot's half that runs fixes has come up —
    after READY, later still on a busy machine: a slash command sent before would be taken for one the
    bot does not have, on both sides."""
    deadline = time.monotonic() + _SYNC_S
    while time.monotonic() < deadline:
        if str(observer.guild.id) in observer.synced or "global" in observer.synced:
            return
        await asyncio.sleep(0.05)


async def _armed(reports: _Reports) -> None:
    """Until the launcher's watch says it is on (it arms when the bot reads READY), at most `_ARM_S`."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reports.hello_seen.wait(), _ARM_S)
    await asyncio.sleep(_GUILD_S)


@dataclass
class _Seen:
    """One call as it went: when it was sent, its first answer (None: none) and how long that took."""

    started: float
    answer: dict[str, Any] | None
    duration_ms: float
    note: str = ""

    def result(
        self,
        key: str,
        observer: DiscordDouble,
        channel: FakeChannel,
        raised: tuple[Raised, ...],
        watch: Watch,
    ) -> ReplayResult:
        if self.answer is None:
            return ReplayResult(key, False, self.note, None, self.duration_ms, raised, watch)
        current = next(
            (m for m in observer.bot_messages(channel) if m["id"] == self.answer["id"]), self.answer
        )
        text = message_text(current)[:_REPLY_CHARS]
        return ReplayResult(key, True, text, named_bug(text), self.duration_ms, raised, watch)


async def _call(
    observer: DiscordDouble, channel: FakeChannel, case: ReplayCase, timeout_s: float, reports: _Reports
) -> _Seen:
    """Send one call as a member and wait for the first answer a user would see, then for quiet."""
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
        return _Seen(started, None, 0.0, f"not answered: {exc}")
    except AssertionError:  # not acknowledged within Discord's 3 s, or no answer within the time
        return _Seen(started, None, (time.monotonic() - started) * 1000)
    seen = _Seen(started, answer, (time.monotonic() - started) * 1000)
    await _quiet(observer, reports)
    return seen


async def _quiet(observer: DiscordDouble, reports: _Reports) -> None:
    """Until nothing moved for `_QUIET_S` (messages, edits, the watch's reports), at most `_SETTLE_S`."""
    deadline = time.monotonic() + _SETTLE_S
    while time.monotonic() < deadline:
        changes, events = observer.changes, len(reports.events)
        await asyncio.sleep(_QUIET_S)
        if observer.changes == changes and len(reports.events) == events:
            return
