"""The replay's launcher: the first code of a bot started from a checkout in the sandbox, before any of it.

`mendbot.improve.proof.replay` binds this file read-only into the sandbox (like `bot/trust/supervise.py`, the
copy that runs is the installed bot's, never the checkout's) and runs it with the checkout first on
`sys.path`:

    python /run/mendbot/replay/launch.py SOCKET CONFIG [MONITOR WATCHED [MENDBOT TOKEN_ENV]]

It points discord.py at the observer — the loopback Discord (`mendbot.trust.loopback_discord`) that the bot
process outside the sandbox serves on the unix socket `SOCKET`, bound in — and then hands over to the
checkout's own `mendbot run` (`mendbot.__main__.main`) with the config file `CONFIG`. It imports only the
standard library, aiohttp, yarl and discord.py before that. It stays whole: the sandbox binds this one
file into the bot's process, and nothing beside it.

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

`WATCHED` also names the replayed handlers (`entries`, qualified names: `Tab.split_it`, `Units.on_message`),
each reported when it starts and when it ends (not when it only awaits): how a listener, which answers
nobody, is seen to run and timed; and the directories of the checkout that are mendbot's own runner of
handlers rather than the bot's code (`runner`, in mendbot's own checkout): an exception that reaches them
has left the bot's code, as one that reaches discord.py has.

**When the bot is ready for the first call.** `{"e": "steady"}` is reported once every guild READY named
has been created in the bot's cache and, on a bot mendbot is attached to, mendbot's own cogs are added
(they are added once the bot has connected): the observer sends no call before, so that no call finds
the bot's cogs changing under it (a help command walking `bot.cogs` across an await would fail on
whichever side of the proof it happened to race).

**When the bot is done with a call.** Once READY is read, each member's message, interaction or reaction
is followed into every task made while discord.py handles it (a task factory on the bot's loop, and the
context asyncio copies into each task), and `{"e": "settled", "k": "MESSAGE_CREATE:<id>"}` is reported
when the last of them has ended: the observer need not wait out a call's time to learn that nothing will
answer it. A task factory the bot sets over the launcher's ends these reports (the observer waits as before).

**Task loops.** A task has no member to send it, so the observer asks the launcher over the same socket:
`{"task": NAME, "id": N}` runs one iteration of the loop whose body is NAME — found on the bot's cogs, or
among the loops started — on the bot's event loop, as the loop runs it (`Loop.__call__`), and reports
whether it returned or what it raised; `{"loops": 1, "id": N}` reports the loops the bot has started (the
launcher knows the client and every `Loop.start` from discord.py's own constructors).

**The end.** `{"stop": 1}` ends the process at once (`os._exit(0)`), as the replay of a bot mendbot is
attached to asks once its calls are over: the program's own end, after which the sandbox's supervisor
copies what it wrote in its checkout back (its data files: what the replay compares), which a kill from
outside would not let it do. A program that does not end when asked has its data read as unknown.

**What the bot sees of its process.** Before handing over, the launcher gives the bot the live bot's argv
and environment (`WATCHED`'s `appearance`: every variable the live bot has, by name, the values of all but
the harmless ones stand-ins: `mendbot.improve.proof.replay`), so nothing in either says that it is
replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dis
import importlib
import json
import os
import socket
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from types import CodeType, FrameType
from typing import Any

__all__ = ["main"]

API = "http://discord.invalid/api/v10"
GATEWAY = "ws://discord.invalid/gateway/"
_MAX_EVENTS = 20_000  # per replay: past this the watch says it overflowed and stops reporting
_TAG = "__mendbot_raised__"  # the sequence number the watch gives an exception it follows
# Exceptions that are how Python and asyncio move on, not failures: never followed.
_CONTROL_FLOW = (StopIteration, StopAsyncIteration, GeneratorExit)
_YIELD = dis.opmap["YIELD_VALUE"]  # where a coroutine's frame stops to await, as opposed to ending


def _absolute(filename: str) -> str:
    """A code object's file as an absolute path ("<frozen …>" and other pseudo-files as they are)."""
    return filename if filename.startswith("<") else os.path.abspath(filename)


class _Watch:
    """The exception watch: which exceptions the checkout's frames raise, and where each is caught."""

    def __init__(
        self,
        root: str,
        sink: socket.socket,
        files: list[str] | None = None,
        entries: list[str] | None = None,
        runner: list[str] | None = None,
    ) -> None:
        self.root = root.rstrip("/") + "/"
        # Directories of the checkout that run the bot's handlers rather than being them (mendbot's own
        # recording and error path, in mendbot's own checkout): an exception that reaches them left the
        # bot's code, as one that reaches discord.py does.
        self.runner = tuple(self.root + path for path in runner or ())
        self.files = {self.root + path for path in files or ()}  # empty: every file under the root
        self.entries = set(entries or ())  # qualified names of the replayed handlers, in any file
        self.sink = sink
        self.lock = threading.Lock()
        self.inside: dict[CodeType, bool] = {}
        self.entry_codes: dict[CodeType, bool] = {}
        self.running: dict[int, str] = {}  # id of an entry frame under way → its qualified name
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
            return filename[len(self.root) :], not filename.startswith(self.runner)
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

    def entry(self, frame: FrameType, event: str, arg: Any) -> Any:
        """A replayed handler's own frame: when it starts and when it ends (not when it only awaits),
        and what it raises or lets through, like any watched frame."""
        if event == "return":
            opcode = frame.f_code.co_code[frame.f_lasti] if frame.f_lasti >= 0 else 0
            if opcode != _YIELD:  # the end, not an await: a return, or an exception going through
                name = self.running.pop(id(frame), None)
                if name is not None:
                    self.send({"e": "end", "t": time.monotonic(), "q": name})
            return self.entry
        self.local(frame, event, arg)
        return self.entry

    def enter(self, frame: FrameType, event: str, arg: Any) -> Any:
        code = frame.f_code
        inside = self.inside.get(code)
        if inside is None:
            path = _absolute(code.co_filename)
            inside = path in self.files if self.files else path.startswith(self.root)
            self.inside[code] = inside
            self.entry_codes[code] = code.co_qualname in self.entries and path.startswith(self.root)
        if self.entry_codes.get(code):
            frame.f_trace_lines = False
            if id(frame) not in self.running:  # its start; a coroutine's resumptions come here too
                self.running[id(frame)] = code.co_qualname
                self.send({"e": "start", "t": time.monotonic(), "q": code.co_qualname})
            return self.entry
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


def _watch(monitor: str, root: str, watched: dict[str, Any] | None = None, *, tracing: bool = True) -> _Watch:
    """The watch on the checkout at `root` (on the `files` of it `watched` names, or all; its handlers,
    `entries`, followed from start to end; its `runner` directories not the bot's code), reporting to the
    socket `monitor`: refusing anyone else's trace from now on; `arm()` starts the trace. Without
    `tracing` it only reports (the extensions loaded, READY): nothing is traced or refused."""
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sink.connect(monitor)
    names = {
        key: [str(item) for item in (watched or {}).get(key) or []] for key in ("files", "entries", "runner")
    }
    watch = _Watch(root, sink, names["files"], names["entries"], names["runner"])
    if tracing:
        sys.addaudithook(watch.audit)
    return watch


class _Tasks:
    """One iteration of a task loop, run when the observer asks (a task has no member to send it): the
    loop found by its body's name on the bot's cogs (or among the loops started), its body run once on
    the bot's event loop as the loop itself runs it (`Loop.__call__`), and how it went reported — it
    returned, or what it raised. Which loops are running is reported too: a loop the base starts and
    the branch does not is a loop that stopped working. Asked to stop, it ends the process."""

    def __init__(self, watch: _Watch, sink: socket.socket) -> None:
        self.watch = watch
        self.sink = sink
        self.clients: weakref.WeakSet[Any] = weakref.WeakSet()
        self.started: weakref.WeakSet[Any] = weakref.WeakSet()

    def install(self) -> None:
        """Know the bot's client and every loop started, from discord.py's own constructors."""
        import discord
        from discord.ext import tasks

        made, start = discord.Client.__init__, tasks.Loop.start
        clients, started = self.clients, self.started

        def client_made(client: Any, *args: Any, **kwargs: Any) -> None:
            clients.add(client)
            made(client, *args, **kwargs)

        def loop_started(loop: Any, *args: Any, **kwargs: Any) -> Any:
            started.add(loop)
            return start(loop, *args, **kwargs)

        discord.Client.__init__ = client_made  # type: ignore[method-assign,assignment]
        tasks.Loop.start = loop_started  # type: ignore[method-assign,assignment]
        threading.Thread(target=self.serve, name="mendbot-replay-tasks", daemon=True).start()

    def loops(self) -> dict[str, Any]:
        from discord.ext import tasks

        found: dict[str, Any] = {}
        for client in list(self.clients):
            for cog in list(getattr(client, "cogs", {}).values()):
                for name in dir(cog):
                    with contextlib.suppress(Exception):
                        value = getattr(cog, name)
                        if isinstance(value, tasks.Loop):
                            found.setdefault(getattr(value.coro, "__name__", name), value)
        for loop in list(self.started):
            found.setdefault(getattr(loop.coro, "__name__", "?"), loop)
        return found

    def serve(self) -> None:
        reader = self.sink.makefile("r", encoding="utf-8")
        for line in reader:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                asked = json.loads(line)
                if "task" in asked:
                    self.iterate(str(asked["task"]), int(asked["id"]))
                elif "stop" in asked:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(0)
                elif "loops" in asked:
                    started = sorted({getattr(loop.coro, "__name__", "?") for loop in list(self.started)})
                    self.watch.send(
                        {"e": "loops", "id": int(asked["id"]), "started": started, "t": time.monotonic()}
                    )

    def iterate(self, name: str, ask: int) -> None:
        loop = self.loops().get(name)
        client = next(iter(list(self.clients)), None)
        bot_loop = getattr(client, "loop", None)
        if loop is None or bot_loop is None:
            self.watch.send({"e": "iteration", "id": ask, "found": False, "t": time.monotonic()})
            return

        async def once() -> None:
            try:
                await loop()
            except Exception as exc:
                self.watch.send(
                    {"e": "iteration", "id": ask, "found": True, "raised": type(exc).__name__,
                     "t": time.monotonic()}
                )  # fmt: skip
            else:
                self.watch.send({"e": "iteration", "id": ask, "found": True, "t": time.monotonic()})

        asyncio.run_coroutine_threadsafe(once(), bot_loop)


# The member's event (`MESSAGE_CREATE:<id>`, …) whose handling made the task that is running: set while
# discord.py dispatches it, and carried into every task made from there on, as asyncio copies the context.
_EVENT: contextvars.ContextVar[str] = contextvars.ContextVar("mendbot_replay_event")
_SETTLED_EVENTS = (b'"MESSAGE_CREATE"', b'"INTERACTION_CREATE"', b'"MESSAGE_REACTION_ADD"')


class _Settling:
    """When the bot has done everything a member's event made it do: the tasks discord.py made to handle
    it, the tasks those made, and so on, all ended — reported as `{"e": "settled", "k": KEY}` (KEY the
    event's type and id: `MESSAGE_CREATE:<message id>`), so that the observer need not wait out its time
    to learn that nothing will answer. Known from a task factory on the bot's loop that counts, per event,
    the live tasks made in its context; a factory the bot installs over it ends the reports (the observer
    then waits as before). A task the event only woke (one awaiting `wait_for`) is not counted: the
    observer allows a moment for it after the report."""

    def __init__(self, watch: _Watch) -> None:
        self.watch = watch
        self.live: dict[str, int] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.factory: Any = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        made = loop.get_task_factory()
        live = self.live

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
            task = made(loop, coro, **kwargs) if made is not None else asyncio.Task(coro, loop=loop, **kwargs)
            key = _EVENT.get(None)
            if key is not None and key in live:
                live[key] += 1
                task.add_done_callback(lambda _task: self.end(key))
            return task

        loop.set_task_factory(factory)
        self.loop, self.factory = loop, factory

    def key(self, raw: bytes) -> str | None:
        """`TYPE:id` of a member's message, interaction or reaction; None for every other gateway event."""
        if not any(kind in raw for kind in _SETTLED_EVENTS):
            return None
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            event = json.loads(raw)
            data = event.get("d") or {}
            ident = data.get("id") if event.get("t") != "MESSAGE_REACTION_ADD" else data.get("message_id")
            if event.get("t") and ident is not None:
                return f"{event['t']}:{ident}"
        return None

    def begin(self, key: str) -> None:
        self.live[key] = self.live.get(key, 0) + 1

    def end(self, key: str) -> None:
        left = self.live.get(key, 0) - 1
        if left > 0:
            self.live[key] = left
            return
        self.live.pop(key, None)
        if self.loop is not None and self.loop.get_task_factory() is self.factory:
            self.watch.send({"e": "settled", "k": key, "t": time.monotonic()})


class _Steady:
    """When the bot is as a member's call will find it: every guild READY named is in its cache (its
    GUILD_CREATE read) and, on a bot mendbot is attached to, mendbot's own cogs are added (they are added
    once the bot has connected: a call sent meanwhile could find the bot's cogs changing under it).
    Reported once as `{"e": "steady"}`; the observer sends its first call after it."""

    def __init__(self, watch: _Watch, surfaced: Callable[[Any], Awaitable[None]] | None) -> None:
        self.watch = watch
        self.surfaced = surfaced
        self.waiting: set[str] | None = None  # READY's guilds not yet created (None: READY not read)
        self.task: asyncio.Task[None] | None = None

    def read(self, raw: bytes, ws: Any) -> None:
        """A gateway message discord.py has just handled: READY (the guilds to wait for), a GUILD_CREATE."""
        if self.task is not None or not (b'"READY"' in raw or b'"GUILD_CREATE"' in raw):
            return
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            event = json.loads(raw)
            data = event.get("d") or {}
            if event.get("t") == "READY":  # each shard's: the guilds it will create
                self.waiting = (self.waiting or set()) | {
                    str(guild.get("id")) for guild in data.get("guilds") or ()
                }
            elif event.get("t") == "GUILD_CREATE" and self.waiting is not None:
                self.waiting.discard(str(data.get("id")))
        if self.waiting is not None and not self.waiting:
            self.task = asyncio.get_running_loop().create_task(self._report(ws))

    async def _report(self, ws: Any) -> None:
        if self.surfaced is not None:
            with contextlib.suppress(Exception):  # whatever keeps it from saying, the bot is as it is
                await self.surfaced(ws._connection._get_client())
        self.watch.send({"e": "steady", "t": time.monotonic()})


async def _mendbot_surfaced(client: Any) -> None:
    """Until the installed mendbot attached to `client` has added its cogs: asked of its public face, as
    its entry point is found (`_installed_mendbot`)."""
    await importlib.import_module("mendbot.attach").surfaced(client)


def _armed_at_ready(
    watch: _Watch,
    *,
    tracing: bool = True,
    surfaced: Callable[[Any], Awaitable[None]] | None = None,
) -> None:
    """When discord.py reads READY (the bot has started, and no call has been sent yet): say so, and arm
    the watch's trace; once the bot is steady (`_Steady`, awaiting `surfaced`), say that too."""
    import discord.gateway

    received = discord.gateway.DiscordWebSocket.received_message
    seen = False
    settling = _Settling(watch)
    steady = _Steady(watch, surfaced)

    async def reading(self: discord.gateway.DiscordWebSocket, msg: Any, /) -> None:
        nonlocal seen
        raw = _bytes(msg) if isinstance(msg, str | bytes) and (tracing or not seen) else None
        if not seen and raw is not None and b'"READY"' in raw:
            seen = True
            watch.send({"e": "ready", "t": time.monotonic()})
            if tracing:
                watch.arm()
                settling.install(asyncio.get_running_loop())
        key = settling.key(raw) if seen and tracing and raw is not None else None
        if key is None:
            await received(self, msg)
            if seen and tracing and raw is not None:
                steady.read(raw, self)
            return
        settling.begin(key)
        token = _EVENT.set(key)
        try:
            await received(self, msg)
        finally:
            _EVENT.reset(token)
            settling.end(key)

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


def _appear(appearance: dict[str, Any] | None) -> None:
    """What the bot under proof sees of its process made to be what the live bot's shows: its argv and
    its environment (the variables the live bot has, most of their values stand-ins; nothing that says it
    is replayed). Python has read what it needed of the sandbox's own by now (its path)."""
    if not appearance:
        return
    argv = appearance.get("argv")
    if isinstance(argv, list) and argv:
        sys.argv = [str(arg) for arg in argv]
    env = appearance.get("env")
    if isinstance(env, dict):
        os.environ.clear()
        os.environ.update({str(name): str(value) for name, value in env.items()})


def main(argv: list[str]) -> int:
    argv = list(argv)  # what the launcher was given, whatever the bot is made to see as its argv
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
        if isinstance(watched, list):
            watched = {"files": watched}
        watch = _watch(argv[3], os.getcwd(), watched, tracing=tracing)
        _reporting_extensions(watch)
        # A bot mendbot is attached to is steady once mendbot's own cogs are added too.
        surfaced = _mendbot_surfaced if len(argv) == 7 else None
        _armed_at_ready(watch, tracing=tracing, surfaced=surfaced)
        if tracing:
            _Tasks(watch, watch.sink).install()
            _appear((watched or {}).get("appearance"))
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
