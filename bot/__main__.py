"""The `mendbot` command: run on Discord, play locally, or check the setup.

mendbot            run on Discord when DISCORD_TOKEN is set, else the local playground
mendbot run        run on Discord (needs DISCORD_TOKEN)
mendbot play       the local playground (a virtual Discord in the terminal; scriptable)
mendbot doctor     check configuration, database, git, model and forge access
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import discord

from bot.settings import EX_CONFIG, ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from bot.playground import Playground

__all__ = ["main"]

EX_CRASHED = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mendbot", description="A Discord bot that mends itself.")
    parser.add_argument("--config", type=Path, default=None, help="config file (default: config.yaml)")
    parser.add_argument("command", nargs="?", choices=["run", "play", "doctor"], default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "doctor":
        from bot.doctor import run_doctor

        checks = asyncio.run(run_doctor(args.config))
        for check in checks:
            print(check)
        return 0 if all(check.ok for check in checks) else 1
    try:
        settings = load_settings(args.config)
        command = args.command or ("run" if settings.discord_token else "play")
        if command == "run" and settings.discord_token is None:
            raise ConfigError(
                "config error: DISCORD_TOKEN is not set — put it in .env or the environment "
                "(see .env.example), or run `mendbot play` for the local playground"
            )
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG

    from bot.log import configure_logging

    interactive = sys.stdin.isatty()
    # In the playground the terminal belongs to the conversation: only warnings go to stderr.
    configure_logging(settings.log_dir, console_level="INFO" if command == "run" else "WARNING")
    if command == "play":  # no voice, and intent notices about the virtual gateway are noise here
        import logging

        logging.getLogger("discord").setLevel(logging.ERROR)
    if command == "run":
        return asyncio.run(_run(settings))
    return asyncio.run(_play(settings, interactive=interactive))


async def _run(settings: Settings) -> int:
    from bot.app import MendBot
    from bot.health import HealthServer
    from bot.services import build_services

    assert settings.discord_token is not None
    services = await build_services(settings)
    bot = MendBot(services)
    health = (
        HealthServer(bot, settings.health.host, settings.health.port) if settings.health.enabled else None
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
    try:
        if health is not None:
            await health.start()
        await bot.start(settings.discord_token.get_secret_value())
    except discord.LoginFailure:
        print(
            "config error: Discord rejected DISCORD_TOKEN — copy the bot token again from the "
            "Developer Portal (Bot → Reset Token) into .env",
            file=sys.stderr,
        )
        return EX_CONFIG
    except discord.PrivilegedIntentsRequired:
        print(
            "config error: the Message Content intent is not enabled — turn it on in the Developer "
            "Portal (Bot → Privileged Gateway Intents)",
            file=sys.stderr,
        )
        return EX_CONFIG
    finally:
        if not bot.is_closed():
            await bot.close()
        if health is not None:
            await health.stop()
        await services.aclose()
    return 0


async def _play(settings: Settings, *, interactive: bool) -> int:
    from bot.app import MendBot
    from bot.health import HealthServer
    from bot.playground import Playground, stdin_lines, virtual_world
    from bot.services import build_services

    services = await build_services(settings)
    bot = MendBot(services)
    health = (
        HealthServer(bot, settings.health.host, settings.health.port) if settings.health.enabled else None
    )
    try:
        async with virtual_world(bot) as world:
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
            playground = Playground(world, echo=not interactive)
            if interactive:
                return await _interactive(playground)
            return await playground.run_lines(stdin_lines())
    except TimeoutError as exc:
        print(f"! the bot did not finish reacting: {exc}", file=sys.stderr)
        return EX_CRASHED
    finally:
        if health is not None:
            await health.stop()
        await services.aclose()


async def _interactive(playground: Playground) -> int:
    from bot.playground import PlaygroundError

    async def show_background_output() -> None:
        while True:
            await asyncio.sleep(0.5)
            playground.print_changes()

    printer = asyncio.create_task(show_background_output())
    try:
        while True:
            try:
                line = await asyncio.to_thread(input, f"{playground.user} #{playground.channel}> ")
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


if __name__ == "__main__":
    sys.exit(main())
