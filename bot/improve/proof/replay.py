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
import functools
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mendbot.improve.proof.bot_data import BotData, State
from mendbot.improve.proof.replay_calls import (
    ACK_TIMEOUT_S,
    CALL_TIMEOUT_S,
    ReplayResult,
    Seen,
    call,
    prepare_people,
)
from mendbot.improve.proof.replay_plan import ReplayCase, ReplayPlan, extension_of
from mendbot.improve.proof.replay_reports import Raised, Reports, Watch
from mendbot.kernel.log import get_logger
from mendbot.kernel.own_loop import on_own_loop
from mendbot.kernel.waits import wait_for
from mendbot.trust.host_start import (
    HostBot,
    NotStarted,
    Started,
    launch_config,
    prepare_tree,
    start_variables,
    started,
    write_launch,
)
from mendbot.trust.sandbox import Sandbox, SandboxUnavailable

if TYPE_CHECKING:  # the double (and aiohttp's server side) is loaded by the first replay, not at start
    from mendbot.trust.loopback_discord import DiscordDouble

__all__ = [
    "ACK_TIMEOUT_S",
    "CALL_TIMEOUT_S",
    "BotData",
    "HostBot",
    "Raised",
    "ReplayError",
    "ReplayResult",
    "Watch",
    "run_replay",
]

_log = get_logger(__name__)

READY_TIMEOUT_S = 60.0  # the checkout's bot connects to the observer within this
_STOP_TIMEOUT_S = 5.0
_ARM_S = 5.0
_STEADY_S = 30.0  # after READY, the bot has its guilds (and a host bot mendbot's cogs) within this
_SYNC_S = 20.0  # after READY, the bot's slash commands are synced within this (or it has none to sync)
# mendbot's own runner of a bot's handlers, in its own checkout: the recording, the error path, the capture
_RUNNER = ("bot/runtime/", "bot/observe/", "bot/kernel/")
# Variables of the live environment whose values the bot under proof sees as they are; every other one it
# sees by name only (a value of the same length that means nothing).
_HARMLESS = frozenset({"LANG", "LANGUAGE", "TZ", "TERM", "SHELL", "USER", "LOGNAME", "PATH", "PWD"})


class ReplayError(Exception):
    """The replay itself could not run (no sandbox, the throwaway bot did not start); says why."""


async def run_replay(
    checkout: Path,
    plan: ReplayPlan,
    *,
    sandbox: Sandbox,
    ready_timeout_s: float = READY_TIMEOUT_S,
    call_timeout_s: float = CALL_TIMEOUT_S,
    host: HostBot | None = None,
    data: BotData | None = None,
    redact: Callable[[str], str] = str,
    enough: Callable[[str, float], bool] | None = None,
) -> dict[str, ReplayResult]:
    """Start `checkout`'s bot in the sandbox, send it the plan's replayable cases as a member would, and
    return what the observer saw for each (module docstring), by case key. ReplayError when the bot
    could not be started or did not connect: its output's last lines say why. With `enough`, the cases
    after the first one answered for which `enough(key, milliseconds to its answer)` is true are not sent.

    With `data`, mendbot's own bot starts from that copy of the live bot's stored data, mounted writable
    where the live bot keeps it, and a `host` bot from that copy of its data files, written into the
    checkout before each start; what it left is read into `data.after` once it stopped (for a host bot,
    once it ended when asked: its writes come back from the sandbox only then; else `data.unread` says
    why not). `redact` says
    which values of the live environment are secrets (the bot under proof sees the live environment's
    variables by name, their values stand-ins but for the harmless ones).

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
    timeouts = (ready_timeout_s, call_timeout_s)
    observe = _observe(checkout, plan, sandbox, timeouts, host=host, data=data, redact=redact, enough=enough)
    return await on_own_loop(observe, stop_within_s=_STOP_TIMEOUT_S + 5)


async def _observe(
    checkout: Path,
    plan: ReplayPlan,
    sandbox: Sandbox,
    timeouts: tuple[float, float],
    *,
    host: HostBot | None = None,
    data: BotData | None = None,
    redact: Callable[[str], str] = str,
    enough: Callable[[str, float], bool] | None = None,
) -> dict[str, ReplayResult]:
    """The plan's cases sent to the checkout's bot, in one start of it — or, when the bot has stored data
    that calls may change, in two: the failing calls and their neighbours first, then the calls that
    worked, each from a fresh copy of the data as it was (a call that worked must not rewrite the row
    the failure met before the failure is sent, nor a fixed failure the rows a call that worked reads)."""
    results: dict[str, ReplayResult] = {}
    first: tuple[State | None, str | None] | None = None  # what the first start left of the data
    for cases in _phases(plan, data):
        phase = replace(plan, cases=cases)
        results.update(
            await _observe_once(
                checkout,
                phase,
                sandbox,
                timeouts,
                host=host,
                data=data,
                redact=redact,
                people=plan.replayable,
                enough=enough,
            )
        )
        if data is not None and first is None:
            first = (data.after, data.unread)
        if enough and any(r.answered and enough(key, r.duration_ms) for key, r in results.items()):
            break
    if data is not None and first is not None:
        data.after, data.unread = first
    return results


def _phases(plan: ReplayPlan, data: BotData | None) -> list[list[ReplayCase]]:
    keys = {case.key for case in plan.cases if case.role in ("recorded", "held-out")}
    failing = [case for case in plan.cases if case.key in keys or case.parent in keys]
    working = [case for case in plan.cases if case not in failing]
    if data is None or not data.state(data.snapshot) or not failing or not working:
        return [plan.cases]
    return [failing, working]


def _needs_commands(case: ReplayCase) -> bool:
    """Whether sending the case (or what showed its view) takes an application command the bot syncs."""
    shown = case.shown_by
    while isinstance(shown, dict):
        if str(shown.get("name") or "").startswith("/"):
            return True
        shown = shown.get("shown_by")
    return case.slash or case.target is not None


async def _observe_once(
    checkout: Path,
    plan: ReplayPlan,
    sandbox: Sandbox,
    timeouts: tuple[float, float],
    *,
    host: HostBot | None,
    data: BotData | None,
    redact: Callable[[str], str],
    people: list[ReplayCase],
    enough: Callable[[str, float], bool] | None,
) -> dict[str, ReplayResult]:
    from mendbot.trust.loopback_discord import DiscordDouble

    ready_timeout_s, call_timeout_s = timeouts
    with tempfile.TemporaryDirectory(prefix="mendbot-replay-") as scratch:
        shared = Path(scratch) / "run"
        shared.mkdir()
        copy = Path(scratch) / "data"
        reports = Reports()
        server = await asyncio.start_unix_server(reports.serve, path=str(shared / "monitor.sock"))
        try:
            async with DiscordDouble(unix_socket=shared / "discord.sock", echo=False) as observer:
                _prepare(shared, observer, plan, host, data=data, redact=redact, people=people)
                mounts: dict[Path, str] = {}
                if data is not None and data.inside is not None:
                    shutil.copytree(data.snapshot, copy)
                    mounts = {copy: data.inside}
                in_tree = data is not None and data.inside is None  # a host bot's files, in its checkout
                begun = time.monotonic()
                async with _started(
                    sandbox,
                    checkout,
                    observer,
                    shared,
                    ready_timeout_s,
                    host=host,
                    mounts=mounts,
                    data=data.snapshot if in_tree and data is not None else None,
                    # the launcher ends the program (no answer to wait for): its writes come back
                    ask_to_stop=functools.partial(reports.ask, {"stop": 1}, 0) if in_tree else None,
                ) as start:
                    general = observer.guild.channel("general")
                    await _armed(reports)
                    if any(_needs_commands(case) for case in plan.replayable):
                        await _synced(observer)
                    ready = time.monotonic()
                    seen: list[tuple[ReplayCase, Seen]] = []
                    for case in plan.replayable:
                        entries = plan.entries.get(case.kind)
                        sent = await call(observer, general, case, call_timeout_s, reports, entries=entries)
                        seen.append((case, sent))
                        if enough and sent.answer is not None and enough(case.key, sent.duration_ms):
                            break
                    ended = time.monotonic()
                    _log.info(
                        "replayed",
                        checkout=str(checkout),
                        cases=len(seen),
                        start_s=round(ready - begun, 2),
                        calls_s=round(ended - ready, 2),
                        raised=len(reports.events),
                        output=start.output.name,
                    )
                    watch = reports.watch(stopped=False)
                    results = {}
                    for index, (case, went) in enumerate(seen):
                        until = seen[index + 1][1].started if index + 1 < len(seen) else ended
                        results[case.key] = went.result(
                            case.key, observer, general, reports.raised_between(went.started, until), watch
                        )
                if data is not None and not in_tree:  # the bot has stopped: what it left of its data
                    data.after = data.state(copy)
                elif data is not None:  # only what a program that ended when asked wrote came back
                    data.after = data.state(checkout) if start.ended_when_asked else None
                    data.unread = None if start.ended_when_asked else "its bot did not end when asked"
        finally:
            server.close()
            await reports.close(_STOP_TIMEOUT_S)
            await server.wait_closed()
    return results


def _prepare(
    shared: Path,
    observer: DiscordDouble,
    plan: ReplayPlan,
    host: HostBot | None = None,
    *,
    data: BotData | None = None,
    redact: Callable[[str], str] = str,
    people: list[ReplayCase] | None = None,
) -> None:
    """The launcher and a config like any start's (`host_start.launch_config`): the extensions that handle
    the replayed kinds for mendbot's own bot, its data where the live bot keeps it (a copy, with `data`),
    the recorded callers in the observer's guild (the dev guild, where the slash commands sync), what the
    launcher watches, and what the bot is to see of its process."""
    prepare_people(observer, plan.replayable if people is None else people)
    extensions = sorted({extension_of(path) for path in plan.handlers}) or None
    config = launch_config(
        observer, host.config if host else None, extensions, data_dir=data.inside if data else None
    )
    watched = {
        "files": plan.watched,
        "entries": sorted({name for names in plan.entries.values() for name in names}),
        # mendbot's own runner of handlers is no part of the bot's code: an error that reaches it left
        # the handler (on a bot mendbot is attached to, mendbot is not in the checkout at all)
        "runner": [] if host is not None else list(_RUNNER),
        "appearance": _appearance(start_variables(observer, host), redact),
    }
    write_launch(shared, config, watched)


def _appearance(variables: dict[str, str], redact: Callable[[str], str]) -> dict[str, Any]:
    """What the bot under proof is to see of its process: the live bot's argv and every variable of its
    environment, by name — the harmless ones (locale, time zone, PATH, the user's name) with their values,
    every other one with a value of the same length that means nothing, so that no value of the live
    environment enters the sandbox but those — with the replay's own variables on top (its token, what
    mendbot.yaml says the bot reads); the sandbox's HOME and TMPDIR stay. mendbot's own switches
    (`MENDBOT_…`: failpoints, its config's path) are the live process's, not the bot's: a stand-in for one
    would be read by mendbot in the replayed process."""
    env: dict[str, str] = {}
    for name, value in os.environ.items():
        if name.startswith("MENDBOT_"):
            continue
        harmless = (name in _HARMLESS or name.startswith("LC_")) and redact(value) == value
        env[name] = value if harmless else _stand_in(value)
    env.update({name: value for name, value in variables.items() if name != "PYTHONUNBUFFERED"})
    env.update({"HOME": "/tmp", "TMPDIR": "/tmp"})
    argv = [arg if redact(arg) == arg else _stand_in(arg) for arg in sys.argv]
    return {"argv": argv, "env": env}


def _stand_in(value: str) -> str:
    """A value as long as `value` (at most 64 characters) that means nothing."""
    return secrets.token_urlsafe(48)[: min(len(value), 64)]


@contextlib.asynccontextmanager
async def _started(
    sandbox: Sandbox,
    checkout: Path,
    observer: DiscordDouble,
    shared: Path,
    ready_timeout_s: float,
    *,
    host: HostBot | None = None,
    mounts: dict[Path, str] | None = None,
    data: Path | None = None,
    ask_to_stop: Callable[[], Awaitable[object]] | None = None,
) -> AsyncIterator[Started]:
    """The checkout's bot started and connected (`host_start.started`), a host bot's tree made ready
    first (its data files — from the snapshot `data` when given — and its files with their secrets
    replaced), `mounts` (its data's copy) writable where the live bot keeps them; ReplayError when it
    does not connect."""
    if host is not None:
        for problem in prepare_tree(checkout, host, observer.token, data):
            _log.warning("a file the bot needs was not copied into the replay", problem=problem)
    try:
        async with started(
            sandbox,
            checkout,
            observer,
            shared,
            ready_timeout_s,
            host=host,
            mounts=mounts,
            ask_to_stop=ask_to_stop,
        ) as start:
            yield start
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


async def _armed(reports: Reports) -> None:
    """Until the launcher's watch says it is on (it arms when the bot reads READY), at most `_ARM_S`, and
    the bot is steady — its guilds in its cache, a host bot's mendbot cogs added — at most `_STEADY_S`:
    the first call finds the bot as a member's would, not still changing under it."""
    with contextlib.suppress(TimeoutError):
        await wait_for(reports.hello_seen.wait(), _ARM_S)
    if reports.hello:
        with contextlib.suppress(TimeoutError):
            await wait_for(reports.steady.wait(), _STEADY_S)
