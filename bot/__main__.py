"""The `mendbot` command: run on Discord, play locally, or check the setup.

mendbot            run on Discord when DISCORD_TOKEN is set, else the local playground
mendbot run        run on Discord (needs DISCORD_TOKEN)
mendbot play       the local playground (a virtual Discord in the terminal; scriptable);
                   its own state in <data_dir>/playground (`--data-dir`, `--fresh`)
mendbot doctor     check configuration, database, git, model and forge access
mendbot worker     execute improvement runs from the PostgreSQL run queue (improve.run_on: workers)
mendbot adopt      inspect a bot repository you already have and write its mendbot.yaml
mendbot attach -- python bot.py
                   run your bot's own program with mendbot attached (`--play`: in the virtual Discord;
                   `--play --demo`: mendbot fixes a fault it seeds in a scratch copy of your bot)

When a deploy changes code the process cannot reload (`bot/`, `pyproject.toml`), the bot
drains and closes, and `run`/`play` end with `deploy.restart_exit_code` (26). Under a
supervisor (`MENDBOT_SUPERVISED=1`: the systemd unit, the Docker entry script) that exit code
is the whole story — the supervisor starts a fresh process. Without one, `mendbot run` (and the
interactive playground) re-executes itself in place with the same arguments; a scripted
playground just exits with 26, since the rest of its stdin belongs to the process that read it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mendbot.kernel import arenas, startgc
from mendbot.kernel.settings import (
    EX_CONFIG,
    ConfigError,
    Settings,
    load_settings,
    refuse_shard_subset,
    refuse_workers_without_store,
)
from mendbot.tools.command_line import command_line

if TYPE_CHECKING:
    from mendbot.kernel.log import Console
    from mendbot.runtime.app import MendBot
    from mendbot.runtime.services import Services
    from mendbot.tools.demo_agent import DemoModel
    from mendbot.tools.playground import Playground

__all__ = ["exit_code", "main", "should_reexec"]

EX_CRASHED = 1
EX_IN_USE = 75  # EX_TEMPFAIL: another playground holds the data directory (mendbot.tools.datadir)


def exit_code(bot: MendBot, settings: Settings) -> int:
    """How the process ends once the bot has closed: the restart code if it asked for a restart."""
    return settings.deploy.restart_exit_code if bot.restart_requested is not None else 0


def should_reexec(
    code: int, settings: Settings, *, command: str, interactive: bool, environ: Mapping[str, str]
) -> bool:
    """Whether to replace this process with a fresh one instead of exiting with the restart code."""
    if code != settings.deploy.restart_exit_code or environ.get("MENDBOT_SUPERVISED") == "1":
        return False
    return command == "run" or interactive


def _reexec(argv: list[str]) -> None:
    """Start the same command again in this process (new code, same pid, same terminal)."""
    print("mendbot: restarting to apply an update", file=sys.stderr, flush=True)
    logging.shutdown()  # execv runs no atexit handlers: flush the log files now
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "mendbot", *argv])


def main(argv: list[str] | None = None) -> int:
    arenas.cap()  # before any thread allocates
    with startgc.paused():  # until the bot is built (MendBot.setup_hook, the worker's start)
        return _main(sys.argv[1:] if argv is None else argv)


def _main(argv: list[str]) -> int:
    args = command_line().parse_args(argv)
    config_file: Path | None = getattr(args, "config", None)
    if args.command == "adopt":
        from mendbot.tools.adopt import adopt_main

        return adopt_main(Path(args.path), args.entry, check=not args.no_check)
    if args.command == "attach":
        if args.demo:
            from mendbot.tools.attach_demo import run_demo

            return run_demo(args.program, config=config_file, play=args.play, data_dir=args.data_dir)
        from mendbot.tools.attach_run import run_attached

        return run_attached(args.program, config=config_file, play=args.play)
    if args.command == "doctor":
        from mendbot.tools.doctor import run_doctor

        checks = asyncio.run(run_doctor(config_file))
        for check in checks:
            print(check)
        return 0 if all(check.ok for check in checks) else 1
    try:
        settings = load_settings(config_file)
        refuse_shard_subset(settings)
        refuse_workers_without_store(settings)
        command = args.command or ("run" if settings.discord_token else "play")
        if command == "worker" and settings.improve.run_on != "workers":
            raise ConfigError(
                "config error: `mendbot worker` executes runs the bot queues with improve.run_on: "
                "workers — set it in config.yaml (with database.url and forge.kind: github)"
            )
        if command == "run" and settings.discord_token is None:
            raise ConfigError(
                "config error: DISCORD_TOKEN is not set — put it in .env or the environment "
                "(see .env.example), or run `mendbot play` for the local playground"
            )
        demo = command == "play" and getattr(args, "demo", False)
        held: IO[str] | None = None  # the playground's lock on its data directory, kept until exit
        demo_model: DemoModel | None = None  # the demo's model server, stopped when the demo ends
        if command == "play":
            from mendbot.tools.datadir import DataDirInUse

            try:
                settings, held, demo_model = _prepare_play(args, config_file, settings, demo=demo)
            except DataDirInUse as exc:
                print(exc, file=sys.stderr)
                return EX_IN_USE
        else:
            _usable_data_dir(settings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG

    from mendbot.kernel.log import configure_logging
    from mendbot.trust.redact import Redactor

    interactive = sys.stdin.isatty()
    # In the playground the terminal belongs to the conversation: only warnings go to stderr,
    # unless a level was asked for (LOG_LEVEL, logging.level).
    # The demo's failures are seeded on purpose: their tracebacks go to the log file, not the story.
    # A failing command is one `!` line between the chat lines there, its traceback in the log file.
    quiet = "CRITICAL" if demo else "WARNING"
    console = configure_logging(
        settings.log_dir,
        console_level=settings.level or ("INFO" if command in ("run", "worker") else quiet),
        json_level=settings.level or "INFO",
        console_tracebacks=command not in ("run", "worker"),
        brief=command == "play" and settings.level is None,
        redactor=Redactor.from_settings(settings),
    )
    if command == "play" and settings.level is None:
        # no voice, and intent notices about the virtual gateway are noise here
        logging.getLogger("discord").setLevel(logging.ERROR)
    code = _run_command(command, settings, interactive=interactive, args=args, demo=demo, console=console)
    if demo_model is not None:
        demo_model.stop()
    if held is not None:
        held.close()  # the directory is free for the next playground (a re-exec takes it again)
    if should_reexec(code, settings, command=command, interactive=interactive, environ=os.environ):
        _reexec(argv)
    return code


def _run_command(
    command: str,
    settings: Settings,
    *,
    interactive: bool,
    args: argparse.Namespace,
    demo: bool,
    console: Console | None = None,
) -> int:
    """Run, work or play until done; the exit code."""
    if command == "run":
        return asyncio.run(_run(settings, console))
    if command == "worker":
        from mendbot.runtime.worker import run_worker

        return asyncio.run(run_worker(settings))
    if demo:
        return _play_until_done(
            settings, interactive=interactive and getattr(args, "interactive", False), demo=True
        )
    return _play_until_done(settings, interactive=interactive)


def _play_until_done(settings: Settings, *, interactive: bool, demo: bool = False) -> int:
    """The playground; Ctrl-C ends it like `quit` (exit 0), without a traceback."""
    try:
        return asyncio.run(_play(settings, interactive=interactive, demo=demo))
    except KeyboardInterrupt:
        print("\nbye", flush=True)
        return 0


def _usable_data_dir(settings: Settings) -> None:
    """The bot's own data directory can be made and written, or one config error line saying why."""
    from mendbot.tools.datadir import usable_dir

    usable_dir(settings.data_dir, "data_dir")


def _prepare_play(
    args: argparse.Namespace, config_file: Path | None, settings: Settings, *, demo: bool
) -> tuple[Settings, IO[str], DemoModel | None]:
    """The playground's data directory, claimed (and wiped for `--fresh` or the demo); for the demo, its
    world built and the settings for it."""
    from mendbot.tools.datadir import claim_data_dir

    chosen: str | None = getattr(args, "data_dir", None)
    if chosen is not None and not chosen.strip():
        raise ConfigError("config error: --data-dir is empty — name a directory, e.g. --data-dir play-data")
    settings.data_dir, held = claim_data_dir(
        settings.data_dir,
        Path(chosen) if chosen is not None else None,
        default="demo" if demo else "playground",
        fresh=demo or getattr(args, "fresh", False),
    )
    if not demo:
        return settings, held, None
    demo_settings, model = _demo_settings(config_file, settings.data_dir.resolve())
    return demo_settings, held, model


def _demo_settings(config_file: Path | None, directory: Path) -> tuple[Settings, DemoModel]:
    """The demo's world, rebuilt in its (wiped) directory: its repository made, its model started, the
    bot's settings pointed at them; the demo's repository first on the import path, so the cog the
    deploy reloads is the one the fix changed."""
    from mendbot.tools.demo import demo_overrides, prepare_repository
    from mendbot.tools.demo_agent import DemoModel

    repo = asyncio.run(prepare_repository(directory))
    if "cogs" in sys.modules:  # nothing may have imported the installed cogs before this point
        raise RuntimeError("cogs imported before the demo's repository was put on the path")
    sys.path.insert(0, str(repo))
    model = DemoModel()
    overrides = demo_overrides(directory, model.start())
    return load_settings(config_file, data_dir=directory, **overrides), model


def _watch_hand_edits(bot: MendBot, *, once_connected: bool = False) -> None:
    """Files edited by hand in cogs/ and prompts/ reload like a deploy: a daemon started outside the
    bot's own work, once the cogs (and so the reloader) are loaded — and, on Discord (`once_connected`),
    watching from when the bot has its gateway session: setting inotify up (ctypes finding the C
    library, ~10 ms) is nothing the bot's start needs to wait for."""
    from mendbot.deploy.watcher import HandEditWatcher

    services = bot.services
    reloader = services.deploy.reloader
    if not services.settings.deploy.watch_hand_edits or reloader is None:
        return

    async def report(text: str) -> None:
        await bot.send_dev(f"✋ Hand edit picked up:\n{text}"[:2000])

    watcher = HandEditWatcher(services.settings.repo_dir, reloader, report)

    async def watch() -> None:
        if once_connected:
            await bot.wait_for("connect")
        await watcher.run()

    services.daemons.start("hand-edit-watcher", watch())


def _close_on_signals(bot: MendBot) -> asyncio.Future[None]:
    """SIGTERM/SIGINT stop the bot gracefully: no new work, in-flight handlers drained (bot.close),
    then the caller's clean-up stops running runs as interrupted (resumable) and exits with 0.
    The returned future completes as soon as a signal arrives, so the caller knows why the session
    ended even if it ended while the bot was still closing; awaiting `bot.close()` waits for it.

    A signal after the first changes nothing: the first sets both to be ignored. The loop's handlers
    (`add_signal_handler`) are put back to the default action when the loop closes, and Python's own
    when the interpreter ends — a second SIGTERM arriving then, after "stopped", killed the process
    (143) instead of its clean exit; an ignored signal stays ignored until the process is gone."""
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[None] = loop.create_future()
    closing: list[asyncio.Task[None]] = []  # a reference, so the close is not garbage-collected

    def on_signal() -> None:
        if stopped.done():
            return
        stopped.set_result(None)
        closing.append(loop.create_task(bot.close()))

    def handler(signum: int, frame: object) -> None:
        # Runs in the main thread between two bytecodes; the loop takes it from there.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        with contextlib.suppress(RuntimeError):  # the loop is closed: the process is ending anyway
            loop.call_soon_threadsafe(on_signal)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
    return stopped


async def _run(settings: Settings, console: Console | None = None) -> int:
    """`mendbot run`: the bot on Discord until it closes; the exit code (78 for a start it cannot make).

    The console is held until the bot is ready (or Discord is unreachable and the start retries): a
    configuration error found on the way (a rejected token, a refused intent) is then the first and only
    line printed, not the last of a dozen about loading prompts."""
    from mendbot.runtime.app import MendBot
    from mendbot.runtime.health import HealthServer
    from mendbot.runtime.services import build_services
    from mendbot.runtime.startup import StartupFailure, start_on_discord

    assert settings.discord_token is not None
    if console is not None:
        console.hold()
    services = await build_services(settings, connecting=True)
    bot = MendBot(services)
    shown = asyncio.create_task(_show_held_when_ready(bot, console))
    health = (
        HealthServer(bot, settings.health.host, settings.health.port) if settings.health.enabled else None
    )
    dashboard = None
    if settings.dashboard.enabled:  # opt-in on Discord: jinja2 and the pages load only then
        from mendbot.runtime.dashboard import dashboard_server

        dashboard = dashboard_server(bot)
    _close_on_signals(bot)
    try:
        if health is not None:
            await health.start()
        if dashboard is not None:
            await dashboard.start()
        await start_on_discord(
            bot,
            settings.discord_token.get_secret_value(),
            logged_in=lambda: _watch_hand_edits(bot, once_connected=True),
            retrying=console.show_held if console is not None else None,
        )
    except StartupFailure as failure:
        if console is not None:
            console.drop_held()  # what led up to it is in the log file; the line says what to fix
            console = None
        print(failure.line, file=sys.stderr, flush=True)
        return failure.exit_code
    finally:
        shown.cancel()
        if console is not None:
            console.show_held()
        if not bot.is_closed():
            await bot.close()
        if dashboard is not None:
            await dashboard.stop()
        if health is not None:
            await health.stop()
        await services.aclose()
    return exit_code(bot, settings)


async def _show_held_when_ready(bot: MendBot, console: Console | None) -> None:
    """Print the held start-up lines once the bot is on Discord."""
    if console is None:
        return
    await bot.wait_until_ready()
    console.show_held()


async def _play(settings: Settings, *, interactive: bool, demo: bool = False) -> int:
    from mendbot.runtime.app import MendBot
    from mendbot.runtime.dashboard import dashboard_server
    from mendbot.runtime.health import HealthServer
    from mendbot.runtime.services import build_services
    from mendbot.tools.playground import Playground, WorldClock, stdin_lines, virtual_world

    clock = WorldClock()
    services = await build_services(settings, clock=clock)
    bot = MendBot(services)
    health = (
        HealthServer(bot, settings.health.host, settings.health.port) if settings.health.enabled else None
    )
    dashboard = dashboard_server(bot)  # the playground always serves it: a newcomer sees it at once
    try:
        async with virtual_world(
            bot,
            settle_timeout=settings.playground.settle_timeout_s,
            clock=clock,
            playground=True,
            state_dir=settings.data_dir,
        ) as world:
            stopped = _close_on_signals(bot)
            _watch_hand_edits(bot)
            if health is not None:
                await health.start()
            users = ", ".join(
                f"{user.name}{' (allow-listed)' if user.allowed else ''}"
                for user in settings.playground.users
            )
            print(
                f"mendbot playground ready — #dev, #general; users: {users}. Type `help` for the grammar.",
                flush=True,
            )
            if dashboard is not None and await dashboard.start(any_port=True) is not None:
                await _print_dashboard_link(services, world.users)
            playground = Playground(world, echo=not interactive)
            session = asyncio.ensure_future(
                _demo(playground, interactive=interactive)
                if demo
                else _interactive(playground)
                if interactive
                else playground.run_lines(stdin_lines())
            )
            restart = asyncio.ensure_future(bot.wait_for_restart())
            endings: set[asyncio.Future[Any]] = {session, restart, stopped}
            try:
                await asyncio.wait(endings, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                # Cancelled from outside: the session may be mid-line (the virtual Discord settling);
                # let it stop before the world shuts down, which cannot overlap one of its operations.
                session.cancel()
                restart.cancel()
                await asyncio.gather(session, restart, return_exceptions=True)
                raise
            if stopped.done():
                return await _stopped_by_signal(bot, session, restart, services)
            if not restart.done():
                restart.cancel()
                return session.result()
            session.cancel()
            # The session may also have failed on the closed bot: the restart is what matters.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await session
            print(f"↻ mendbot restarts to apply an update ({restart.result()})", flush=True)
            return exit_code(bot, settings)
    except TimeoutError as exc:
        print(f"! the bot did not finish reacting: {exc}", file=sys.stderr)
        return EX_CRASHED
    finally:
        if dashboard is not None:
            await dashboard.stop()
        if health is not None:
            await health.stop()
        await services.aclose()


async def _print_dashboard_link(services: Services, users: Mapping[str, Any]) -> None:
    """The playground's first allow-listed user's sign-in link, so a newcomer can open the dashboard."""
    allowed = next((user.name for user in services.settings.playground.users if user.allowed), None)
    if services.dashboard is None or allowed is None or allowed not in users:
        return
    link = await services.dashboard.link(users[allowed].id)
    if link is not None:
        minutes = services.settings.dashboard.link_ttl_s // 60
        print(
            f"dashboard: {link}  (signs {allowed} in, once, within {minutes} min; `/dashboard` in #dev "
            "gives a new link)",
            flush=True,
        )


async def _stopped_by_signal(
    bot: MendBot, session: asyncio.Future[int], restart: asyncio.Future[str], services: Services
) -> int:
    """The bot was closed by SIGTERM/SIGINT (drained): end the session, stop runs as resumable, exit 0."""
    restart.cancel()
    session.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await session
    await bot.close()  # the close the signal started: handlers drained, cogs unloaded
    await services.improve.shutdown()  # before the virtual world cancels the bot's tasks
    print("mendbot stopped (signal): running runs are interrupted and resumable", flush=True)
    return 0


async def _demo(playground: Playground, *, interactive: bool) -> int:
    """The demo's story; with `interactive`, its first steps, then the terminal is the newcomer's."""
    from mendbot.tools.demo import DemoScript, interactive_hint

    script = DemoScript(playground)
    if not interactive:
        return await script.run()
    playground.echo = True  # the scene is played for the newcomer: show who typed what
    await script.run(steps=2)
    playground.echo = False
    print(interactive_hint(script), flush=True)
    return await _interactive(playground)


async def _interactive(playground: Playground) -> int:
    from mendbot.tools.playground import PlaygroundError

    async def show_background_output() -> None:
        while True:
            await asyncio.sleep(0.5)
            playground.print_changes()

    printer = asyncio.create_task(show_background_output())
    try:
        while True:
            try:
                line = await _read_line(f"{playground.user} #{playground.channel}> ")
            except EOFError:
                return 0
            if line.strip().lower() in {"quit", "exit"}:
                return 0
            try:
                await playground.execute(line.strip()) if line.strip() else None
            except PlaygroundError as exc:
                print(f"! {exc}")
    finally:
        printer.cancel()


async def _read_line(prompt: str) -> str:
    """A line from the terminal, read on a daemon thread: a prompt still waiting must not keep the
    process from ending.

    (asyncio.to_thread's executor is joined when the loop closes, which would hang a restart
    until someone pressed Enter.) The thread reads the file descriptor itself, not `sys.stdin`: a
    daemon thread blocked inside stdin's buffered reader holds its lock, and the interpreter, finding
    it taken at exit, aborted the process (Ctrl-C ended the playground with SIGABRT instead of 0).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def deliver(line: str | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(line or "")

    def read() -> None:
        line: str | None = None
        error: BaseException | None = None
        sys.stdout.write(prompt)
        sys.stdout.flush()
        data = b""
        try:
            while not data.endswith(b"\n"):
                chunk = os.read(0, 1)  # a byte at a time: what follows the line stays for the next read
                if not chunk:
                    break
                data += chunk
        except OSError:
            data = b""
        if data:
            line = data.decode(errors="replace").rstrip("\r\n")
        else:
            error = EOFError()
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(deliver, line, error)

    threading.Thread(target=read, name="playground-input", daemon=True).start()
    return await future


if __name__ == "__main__":
    sys.exit(main())
