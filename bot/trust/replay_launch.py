"""The replay's launcher: the first code of a bot started from a checkout in the sandbox, before any of it.

`mendbot.improve.proof.replay` binds this file read-only into the sandbox (like `bot/trust/supervise.py`, the
copy that runs is the installed bot's, never the checkout's) and runs it with the checkout first on
`sys.path`:

    python /run/mendbot/replay/launch.py SOCKET CONFIG [MONITOR WATCHED [MENDBOT TOKEN_ENV]]

It points discord.py at the observer — the loopback Discord (`mendbot.trust.loopback_discord`) that the bot
process outside the sandbox serves on the unix socket `SOCKET`, bound in — and then hands over to the
checkout's own `mendbot run` (`mendbot.__main__.main`) with the config file `CONFIG`. It imports only the
standard library, aiohttp, yarl and discord.py before that.

A bot mendbot is attached to (not mendbot's own) is started by its own program instead: with `MENDBOT`,
the directory where the sandbox binds the installed mendbot read-only (`mendbot.trust.sandbox`), the
launcher imports the package `mendbot` from there — never from the checkout, which may hold a `mendbot`
of its own — and hands over to `mendbot attach --config CONFIG`, which runs the program mendbot.yaml
names, in the checkout, with mendbot attached. Whatever token that program logs in with (a literal in its
source, a value from a file of its own: the observer never sees the bot's real one), discord.py logs in
with the observer's, given in the environment variable `TOKEN_ENV` (mendbot.yaml's `bot.token_env`).

With `MONITOR`, each extension the bot loads is reported on it as it loads (or fails to: its error),
and READY when the bot reads it — what the smoke load of such a bot (`mendbot.trust.host_start`) waits
for and judges by; its `WATCHED` is `null`, and nothing else below is done for it.

**What the code raises, seen from outside it.** With `MONITOR` (a second unix socket the observer serves),
the launcher watches every exception raised in the checkout's own frames while the replayed calls run —
in the files `WATCHED` lists (a JSON list of paths relative to the checkout: the recorded failure's and
the replayed commands' handlers), or in all of them when it lists none. It
is set up before a line of the checkout is imported: an audit hook (which nothing can remove) refuses
every `sys.settrace`/`sys.setprofile` but the watch's own — the only way to turn a trace off short of
forging — and reports the attempt; and discord.py's gateway reader is wrapped so that the trace is armed
when READY arrives, before the first call (the bot's start, which no call depends on, runs untraced and
at full speed). The trace (line events off) follows only the checkout's frames and, once an exception is
seen there, the frames it propagates through up to the one that catches it. Each step goes to the
observer as one JSON line: the exception's type, the frame (the checkout's file relative to its root, or
the module outside it), the function, the line, and when (`time.monotonic()`, the clock the observer
reads too). Control flow is not reported (StopIteration, GeneratorExit, cancellation). The launcher
decides nothing: the observer attributes each exception to the replayed call in whose window it happened
and judges from that and from what the bot answered over the wire (`mendbot.improve.proof.replay`). Code
under test shares this interpreter, so a change written to forge could still hide its exceptions; the watch
can only take a verdict away (a failure that "still happens"), never give one, which is why that is enough.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import sys
import threading
import time
from types import CodeType, FrameType
from typing import Any

__all__ = ["main"]

API = "http://discord.invalid/api/v10"
GATEWAY = "ws://discord.invalid/gateway/"
_MAX_EVENTS = 20_000  # per replay: past this the watch says it overflowed and stops reporting
_TAG = "__mendbot_raised__"  # the sequence number the watch gives an exception it follows
# Exceptions that are how Python and asyncio move on, not failures: never followed.
_CONTROL_FLOW = (StopIteration, StopAsyncIteration, GeneratorExit)


def _absolute(filename: str) -> str:
    """A code object's file as an absolute path ("<frozen …>" and other pseudo-files as they are)."""
    return filename if filename.startswith("<") else os.path.abspath(filename)


class _Watch:
    """The exception watch: which exceptions the checkout's frames raise, and where each is caught."""

    def __init__(self, root: str, sink: socket.socket, files: list[str] | None = None) -> None:
        self.root = root.rstrip("/") + "/"
        self.files = {self.root + path for path in files or ()}  # empty: every file under the root
        self.sink = sink
        self.lock = threading.Lock()
        self.inside: dict[CodeType, bool] = {}
        self.sent = 0
        self.next_id = 0
        self.armed = False
        self.arming = False  # the watch's own settrace calls are under way
        self.broken = False

    def send(self, event: dict[str, Any]) -> None:
        if self.broken:
            return
        with self.lock:
            self.sent += 1
            if self.sent > _MAX_EVENTS:
                event = {"e": "overflow"} if self.sent == _MAX_EVENTS + 1 else {}
                if not event:
                    return
            try:
                self.sink.sendall((json.dumps(event, separators=(",", ":")) + "\n").encode())
            except OSError:
                self.broken = True

    def where(self, frame: FrameType) -> tuple[str, bool]:
        filename = _absolute(frame.f_code.co_filename)
        if filename.startswith(self.root):
            return filename[len(self.root) :], True
        return str(frame.f_globals.get("__name__") or filename), False

    def local(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "exception" and not _control_flow(arg[1]):
            exc = arg[1]
            seq = getattr(exc, _TAG, None)
            path, repo = self.where(frame)
            if seq is None:
                if not repo:
                    return self.local  # raised and seen outside the checkout: not ours to follow
                with self.lock:
                    self.next_id += 1
                    seq = self.next_id
                # An exception type with __slots__ cannot carry it: followed in this frame only.
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(exc, _TAG, seq)
            self.send(
                {
                    "e": "raise",
                    "t": time.monotonic(),
                    "id": seq,
                    "type": type(exc).__name__,
                    "file": path,
                    "func": frame.f_code.co_name,
                    "line": frame.f_lineno,
                    "repo": repo,
                }
            )
            caller = frame.f_back
            if caller is not None and caller.f_trace is None:
                # Where it goes next is followed too, so the frame that catches it is seen.
                caller.f_trace_lines = False
                caller.f_trace = self.local
        return self.local

    def enter(self, frame: FrameType, event: str, arg: Any) -> Any:
        code = frame.f_code
        inside = self.inside.get(code)
        if inside is None:
            path = _absolute(code.co_filename)
            inside = path in self.files if self.files else path.startswith(self.root)
            self.inside[code] = inside
        if not inside:
            return None
        frame.f_trace_lines = False
        return self.local

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if self.arming or event not in ("sys.settrace", "sys.setprofile"):
            return
        caller = sys._getframe(1)
        if self.armed and event == "sys.settrace" and caller.f_code.co_filename == threading.__file__:
            return  # a new thread taking the watch's own trace function (threading.settrace)
        self.send({"e": "tamper", "what": event, "t": time.monotonic()})
        raise RuntimeError(f"{event} is not allowed while the replay watches this process")

    def arm(self) -> None:
        """Trace from now on, in this thread and every thread started after."""
        if self.armed:
            return
        self.arming = True
        try:
            threading.settrace(self.enter)
            sys.settrace(self.enter)
        finally:
            self.arming = False
        self.armed = True
        self.send({"e": "hello", "t": time.monotonic(), "pid": os.getpid()})


def _control_flow(exc: BaseException) -> bool:
    if isinstance(exc, _CONTROL_FLOW):
        return True
    return type(exc).__name__ == "CancelledError"


def _watch(monitor: str, root: str, files: list[str] | None = None, *, tracing: bool = True) -> _Watch:
    """The watch on the checkout at `root` (on `files` of it, or all), reporting to the socket `monitor`:
    refusing anyone else's trace from now on; `arm()` starts the trace. Without `tracing` it only
    reports (the extensions loaded, READY): nothing is traced or refused."""
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sink.connect(monitor)
    watch = _Watch(root, sink, files)
    if tracing:
        sys.addaudithook(watch.audit)
    return watch


def _armed_at_ready(watch: _Watch, *, tracing: bool = True) -> None:
    """When discord.py reads READY (the bot has started, and no call has been sent yet): say so, and arm
    the watch's trace."""
    import discord.gateway

    received = discord.gateway.DiscordWebSocket.received_message
    seen = False

    async def reading(self: discord.gateway.DiscordWebSocket, msg: Any, /) -> None:
        nonlocal seen
        if not seen and isinstance(msg, str | bytes) and b'"READY"' in _bytes(msg):
            seen = True
            watch.send({"e": "ready", "t": time.monotonic()})
            if tracing:
                watch.arm()
        await received(self, msg)

    discord.gateway.DiscordWebSocket.received_message = reading  # type: ignore[method-assign]


def _reporting_extensions(watch: _Watch) -> None:
    """Each extension the bot loads, reported as it loads or fails to (`load_extension` wrapped on
    discord.py's own class, before the program builds its bot): the smoke load's list. mendbot's own
    extension is not the bot's."""
    from discord.ext import commands

    load = commands.bot.BotBase.load_extension

    async def loading(self: Any, name: str, *, package: str | None = None) -> None:
        try:
            await load(self, name, package=package)
        except BaseException as exc:
            cause = exc.__cause__ or exc
            if name != "mendbot" and not isinstance(exc, commands.ExtensionAlreadyLoaded):
                error = f"{type(cause).__name__}: {cause}"[:300]
                watch.send({"e": "ext", "name": name, "error": error, "t": time.monotonic()})
            raise
        if name != "mendbot":
            watch.send({"e": "ext", "name": name, "error": None, "t": time.monotonic()})

    commands.bot.BotBase.load_extension = loading  # type: ignore[method-assign]


def _bytes(msg: str | bytes) -> bytes:
    return msg if isinstance(msg, bytes) else msg.encode(errors="replace")


def _installed_mendbot(root: str) -> Any:
    """The package `mendbot` from the installed copy bound at `root`; its entry point
    (`mendbot.__main__.main`)."""
    import importlib.util

    package = f"{root}/mendbot"
    spec = importlib.util.spec_from_file_location(
        "mendbot", f"{package}/__init__.py", submodule_search_locations=[package]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mendbot"] = module
    spec.loader.exec_module(module)
    return importlib.import_module("mendbot.__main__").main


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 5, 7):
        sys.stderr.write("usage: launch.py SOCKET CONFIG [MONITOR WATCHED [MENDBOT TOKEN_ENV]]\n")
        return 2
    socket_path, config = argv[1], argv[2]
    observer_token = os.environ.get(argv[6]) if len(argv) == 7 else None
    import aiohttp
    import discord.gateway
    import discord.http
    import yarl

    login = discord.http.HTTPClient.static_login

    async def static_login(self: discord.http.HTTPClient, token: str) -> Any:
        # Every REST call and the gateway go through the session made here: over the socket.
        self.connector = aiohttp.UnixConnector(path=socket_path)
        return await login(self, observer_token or token)

    discord.http.HTTPClient.static_login = static_login  # type: ignore[method-assign]
    discord.http.Route.BASE = API
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(GATEWAY)

    if len(argv) >= 5:
        with open(argv[4], encoding="utf-8") as listed:
            watched = json.load(listed)
        tracing = watched is not None  # null: the smoke load's start, which reports but traces nothing
        files = [str(path) for path in watched or ()]
        watch = _watch(argv[3], os.getcwd(), files, tracing=tracing)
        _reporting_extensions(watch)
        _armed_at_ready(watch, tracing=tracing)
    if len(argv) == 7:  # a bot mendbot is attached to: its own program, with the installed mendbot
        attached = _installed_mendbot(argv[5])
        code = int(attached(["attach", "--config", config]))
        # The program is over. A bot it stopped without closing (an extension that failed in its
        # setup_hook) leaves threads behind that would hold the process until the sandbox's wall clock:
        # it ends now, so that whoever waits for it learns at once that it did not start.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    # The checkout's own entry point, whatever it imports: named, so that nothing in the installed bot
    # depends on it.
    mendbot = importlib.import_module("mendbot.__main__").main
    return int(mendbot(["--config", config, "run"]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
