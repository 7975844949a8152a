"""`mendbot attach -- python bot.py`: a bot's own program, run with mendbot attached to the bot it makes.

Like OpenTelemetry's `opentelemetry-instrument python app.py`, the runner changes nothing of the
program: it arranges, before the program's first line, that whatever discord.py bot the program builds
gets mendbot attached when it logs in (`Client.login`, wrapped in this process only: the bot's
`setup_hook` runs inside it, so every cog and extension the bot loads is seen), and then runs the
program as Python would (`runpy`: its `sys.argv`, its directory first on `sys.path`, `__main__`). The
attachment is the one the `mendbot` extension makes (`mendbot.runtime.standalone.attach_to`), and the
runner loads that extension too, so a bot that also has the one line loads it once.

With `--play` the bot does not connect to Discord: when the program starts it (`Client.start`, which
`bot.run()` calls, or its own `Client.login` before a `connect`), it is run in the playground's virtual
Discord instead — `#dev`, `#general`, the configured users and the playground's grammar, read from
standard input — and the program goes on when the playground ends, as after a bot that closed (a
`connect` then returns at once). Nothing else of the program reaches Discord either: discord.py is sealed
(bot/tools/playground_seal.py), and a token variable the program reads (`bot.token_env`) holds a
placeholder when it is not set.

With `--play --demo` the runner plays the demo's story on a scratch copy of the bot instead
(bot/tools/attach_demo.py).

What the runner cannot run is said in one line: a program that is not Python, one that ends without
ever starting a discord.py bot, an extension failing to load so that the program stops (one that fails
while the bot runs on is said too, once the bot has logged in), a program reaching Discord under
`--play`, and, under `--play`, a bot that stopped before the playground was ready to read the script.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord
import msgspec
from discord.ext import commands

from mendbot.kernel import startgc
from mendbot.kernel.settings import EX_CONFIG, ConfigError, Settings
from mendbot.runtime.attachment import Attachment
from mendbot.runtime.instrument import recording_of, wrapper_of
from mendbot.runtime.standalone import attach_to, host_settings
from mendbot.tools.playground_seal import LeftThePlayground, PlaygroundSeal
from mendbot.trust.loopback_discord_model import bot_token

if TYPE_CHECKING:
    from mendbot.tools.world import WorldClock

__all__ = ["AttachError", "Hooks", "Program", "parse_program", "run_attached", "run_program"]

EX_FAILED = 1
# Under --play, what the bot's token variable holds when it is not set: shaped as a bot token (some bots
# check the form before they log in), valid nowhere.
PLACEHOLDER_TOKEN = bot_token(0)
_START_AT_MOST_S = 10.0  # the garbage collector's pause for the program's start, at most
_PYTHONS = ("python", "python3", f"python{sys.version_info.major}.{sys.version_info.minor}")


class AttachError(Exception):
    """What `mendbot attach` was given cannot be run; the message is the whole explanation."""


class Program(msgspec.Struct, frozen=True):
    """A Python program: a script (`bot.py`), a directory with a `__main__.py` (`.`) or a module
    (`-m mybot`), and its arguments."""

    target: str
    module: bool
    args: list[str] = msgspec.field(default_factory=list)

    def __str__(self) -> str:
        return " ".join(["python", *(["-m"] if self.module else []), self.target, *self.args])


def parse_program(argv: list[str]) -> Program:
    """`python bot.py …`, `python -m pkg …` or `bot.py …` (what follows `--`)."""
    words = list(argv[1:] if argv and argv[0] == "--" else argv)
    if not words:
        raise AttachError(
            "mendbot attach: name your bot's program after `--`, e.g. `mendbot attach -- python bot.py`"
        )
    if Path(words[0]).name in _PYTHONS:
        words = words[1:]
    if words[:1] == ["-m"] and len(words) >= 2:
        return Program(words[1], True, words[2:])
    if not words or words[0].startswith("-"):
        raise AttachError(
            f"mendbot attach: `{' '.join(argv)}` is not a Python script or `-m module` — "
            "run your bot as `mendbot attach -- python bot.py` (or `python -m yourbot`)"
        )
    script = Path(words[0])
    # A directory runs its `__main__.py`, as `python .` does.
    runnable = (script.suffix == ".py" and script.is_file()) or (script / "__main__.py").is_file()
    if not runnable:
        raise AttachError(
            f"mendbot attach: {script} is not a Python file here — run it from your bot's directory, "
            "e.g. `mendbot attach -- python bot.py` (or `python .` for a directory with a __main__.py)"
        )
    return Program(str(script), False, words[1:])


Session = Callable[[Attachment, Settings], Awaitable[object]]


class Hooks:
    """What the runner puts on discord.py for the program's run: attaching at login; with `play`, a
    session in the virtual world (`session`: the playground on standard input, by default) instead of
    the gateway, and discord.py sealed against reaching Discord."""

    def __init__(
        self,
        settings: Settings,
        *,
        play: bool,
        session: Session | None = None,
        console_level: str = "WARNING",
        restart_at_exit: bool = True,
    ) -> None:
        self.settings = settings
        self.play = play
        self.session = session
        self.console_level = console_level
        self.restart_at_exit = restart_at_exit
        self.bots: list[Any] = []  # the bots the program started
        self.played = False
        self.ready = False  # the playground's world was up, ready to read the script
        self.stopped_by: commands.ExtensionError | None = None  # a failed extension stopped a bot's login
        # In the virtual Discord, mendbot's services read its clock (one clock for the whole world).
        self.clock: WorldClock | None = None
        if play:  # the virtual Discord (simcord) loads only for it: a bot on Discord never needs it
            from mendbot.tools.world import WorldClock

            self.clock = WorldClock()
        self.seal = PlaygroundSeal()
        # Under play: the clients whose start (or own login) is over — played, or not playable; a later
        # `connect` of theirs returns as after a bot that closed.
        self._started: weakref.WeakSet[Any] = weakref.WeakSet()
        # Extensions that failed to load before mendbot was attached (`async with bot: await
        # bot.load_extension(…)` before `start`, as discord.py's examples do), handed over at attach.
        self._early: weakref.WeakKeyDictionary[Any, dict[str, commands.ExtensionError]] = (
            weakref.WeakKeyDictionary()
        )
        self._said: set[tuple[int, str]] = set()  # (bot, extension) failures said on the console

    def install(self) -> None:
        """Wrap discord.Client's `login` and `start`, and extension loading, in this process; with `play`,
        `connect` too, and seal discord.py."""
        discord.Client.login = wrapper_of(discord.Client.login, self.login)  # type: ignore[method-assign]
        discord.Client.start = wrapper_of(discord.Client.start, self.start)  # type: ignore[method-assign]
        loading = commands.bot.BotBase.load_extension
        commands.bot.BotBase.load_extension = wrapper_of(loading, self.load_extension)  # type: ignore[method-assign]
        if self.play:
            for client in (discord.Client, discord.AutoShardedClient):
                client.connect = wrapper_of(client.connect, self.connect)  # type: ignore[method-assign]
            self.seal.install()

    async def login(self, original: Callable[..., Any], instance: Any, *args: Any, **kwargs: Any) -> Any:
        if self.play and not _in_world(instance):
            # The program's own login, before its own `connect`: the bot is played as at `start`.
            return await self._play(instance)
        await self.attach(instance, load=True)
        try:
            result = await original(instance, *args, **kwargs)
        except commands.ExtensionError as exc:
            self.stopped_by = exc  # said when the program has ended, whatever it made of it
            raise
        finally:
            startgc.resume()  # the bot is built: its setup_hook has run
        self._say_extension_failures(instance)
        return result

    async def attach(self, bot: Any, *, load: bool) -> Attachment | None:
        """mendbot's attachment on `bot` (None for a client without commands); with `load`, the `mendbot`
        extension loaded too."""
        if not isinstance(bot, commands.Bot | commands.AutoShardedBot):
            print(
                f"mendbot: {type(bot).__name__} is a discord.Client without commands — mendbot attaches to a "
                "commands.Bot or AutoShardedBot; it runs without mendbot",
                file=sys.stderr,
                flush=True,
            )
            return None
        if bot not in self.bots:
            self.bots.append(bot)
        mend = await attach_to(
            bot,
            self.settings,
            console_level=self.console_level,
            restart_at_exit=self.restart_at_exit,
            connecting=not self.play,  # the virtual Discord's world starts the daemons' work at once
            clock=self.clock,
        )
        for name, error in self._early.pop(bot, {}).items():
            mend.extension_failed(name, error)
        if load and "mendbot" not in bot.extensions:
            await bot.load_extension("mendbot")
        return mend

    async def start(self, original: Callable[..., Any], instance: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.play:
            return await original(instance, *args, **kwargs)
        return await self._play(instance)

    async def connect(self, original: Callable[..., Any], instance: Any, *args: Any, **kwargs: Any) -> Any:
        if instance in self._started:
            return None  # played, and closed: the program goes on as after a bot that closed
        return await original(instance, *args, **kwargs)

    async def load_extension(
        self, original: Callable[..., Any], instance: Any, name: str, /, *args: Any, **kwargs: Any
    ) -> Any:
        try:
            result = await original(instance, name, *args, **kwargs)
        except commands.ExtensionError as exc:
            if recording_of(instance) is None:  # mendbot not attached yet: it hears of it at attach
                self._early.setdefault(instance, {})[name] = exc
            raise
        self._early.get(instance, {}).pop(name, None)
        return result

    async def _play(self, bot: Any) -> None:
        """Run `bot` in the virtual world (once; mendbot attached), instead of on Discord."""
        if bot in self._started:
            return
        self._started.add(bot)
        # The `mendbot` extension is loaded at the login the virtual Discord makes, inside the bot's work
        # there (its cogs start tasks that wait for the world's gates).
        mend = await self.attach(bot, load=False)
        if mend is None:
            return
        from mendbot.tools.attach_play import play_in_world

        self.played = True
        startgc.resume()
        if self.session is not None:
            await self.session(mend, self.settings)
        else:
            await play_in_world(mend, self.settings, ready=self._world_ready)

    def _world_ready(self) -> None:
        self.ready = True

    def _say_extension_failures(self, bot: Any) -> None:
        """The bot has logged in (its setup_hook run): each extension that failed to load and that the bot
        runs on without, in one line on the console — #dev is told too, but may be far away."""
        recording = recording_of(bot)
        if not isinstance(recording, Attachment):
            return
        for name, why in recording.extension_failures.items():
            if (id(bot), name) in self._said or name == "mendbot":
                continue
            self._said.add((id(bot), name))
            print(
                f"mendbot: extension `{name}` failed to load ({why}) — your bot runs without it; mendbot "
                "recorded it: fix it, or ask mendbot to in your dev channel",
                file=sys.stderr,
                flush=True,
            )


def _in_world(client: Any) -> bool:
    """Whether `client` is in the virtual Discord (simcord has replaced its HTTP client: its own login)."""
    from simcord.http import FakeHTTPClient

    return isinstance(getattr(client, "http", None), FakeHTTPClient)


def _run(program: Program, path: list[Path]) -> None:
    """Run the program as `python` would, in this process (its exceptions propagate); `path`: the
    bot's own import directories (a `src/` layout), after the program's."""
    sys.path[0:0] = [str(directory) for directory in path]
    if program.module:
        sys.argv = [program.target, *program.args]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(program.target, run_name="__main__", alter_sys=True)
        return
    script = Path(program.target).resolve()
    sys.argv = [program.target, *program.args]
    if not script.is_dir():  # a directory is put first on the path by run_path itself, as by `python .`
        sys.path.insert(0, str(script.parent))
    runpy.run_path(str(script), run_name="__main__")


def run_attached(argv: list[str], *, config: Path | None = None, play: bool = False) -> int:
    """`mendbot attach [--play] [-- PROGRAM…]`: the exit code. Without a program, the one mendbot.yaml
    names (`bot.entry`)."""
    # The collector stays paused while the program imports and builds its bot, as for mendbot's own,
    # until the bot has logged in (its `setup_hook` run, mendbot attached) — or for 10 s at most.
    startgc.resume_at_the_latest(_START_AT_MOST_S)
    try:
        settings = host_settings(config)
        assert settings.bot is not None  # host_settings refuses a file without it
        program = parse_program(argv or settings.bot.entry)
    except (AttachError, ConfigError) as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG
    if play:
        settings.data_dir = settings.data_dir / "playground"
        # The program reads its token as it always does (`os.environ["DISCORD_TOKEN"]`); none is needed
        # here, and none reaches Discord.
        os.environ.setdefault(settings.bot.token_env, PLACEHOLDER_TOKEN)
    hooks = Hooks(settings, play=play)
    hooks.install()
    return run_program(program, settings, hooks)


def run_program(program: Program, settings: Settings, hooks: Hooks) -> int:
    """Run the program once, its bot attached through `hooks`; the exit code, what it could not run said
    in one line."""
    code, failed = 0, False
    try:
        # The bot's import directories are its program's, from where it runs (its checkout).
        _run(program, [Path.cwd() / directory for directory in (settings.bot.path if settings.bot else [])])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EX_FAILED)
    except KeyboardInterrupt:
        return 0
    except commands.ExtensionError as exc:
        hooks.stopped_by = exc
        code, failed = EX_FAILED, True
    except LeftThePlayground as exc:
        print(exc, file=sys.stderr)
        code, failed = EX_FAILED, True
    except Exception:
        traceback.print_exc()  # the program's own failure, as Python would show it
        code, failed = EX_FAILED, True
    if hooks.stopped_by is not None:  # raised here, or caught by the program on its way out
        cause = hooks.stopped_by.__cause__ or hooks.stopped_by
        print(
            f"mendbot: your bot stopped: extension `{hooks.stopped_by.name}` failed to load "
            f"({type(cause).__name__}: {cause}) — mendbot recorded it; fix it, or ask mendbot to in your "
            "dev channel",
            file=sys.stderr,
        )
        hooks.stopped_by = None
    if not hooks.bots and not failed:
        print(
            f"mendbot: `{program}` ended without starting a discord.py bot — mendbot attaches to the bot "
            "your program runs (`bot.run(…)` or `await bot.start(…)`): is this your bot's entry point?",
            file=sys.stderr,
        )
        return EX_FAILED if code == 0 else code
    if hooks.bots and hooks.play and hooks.session is None and not hooks.ready:
        # Whatever the program made of it (it may catch the failure and end with 0), the script was not read.
        print(
            "mendbot attach --play: your bot stopped before the playground was ready — nothing of your "
            "script was played",
            file=sys.stderr,
        )
        return code or EX_FAILED
    return code
