"""Smoke load: build a throwaway MendBot (never logged in), load every extension, check its commands.

`python -m mendbot.tools.smoke` prints ✅/❌ per extension (a failure with its error; the traceback goes to
stderr) and exits 0 only if every extension loaded and every app command it adds is one Discord would
accept: the payloads the start-up sync would send are checked against Discord's limits
(`mendbot.trust.command_limits`), so a change that loads here but would fail the sync at the next start
fails here. The bot's services run on a temp data dir with no config file, no `.env`, no health port
and no repository (`repo_dir` is the temp dir, so start-up cleans no worktrees), so nothing of the
deployment is read or touched. The verify gate runs it in the sandbox.

It imports whichever `bot` and `cogs` come first on `sys.path`: run in a worktree with
`PYTHONPATH=<worktree>` (as `mendbot.improve.agent.verify` does), it checks the worktree's code, not the live
one.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord

from mendbot.trust.command_limits import payload_problems

if TYPE_CHECKING:
    from mendbot.runtime.app import MendBot

__all__ = ["command_problems", "main", "smoke_load"]

EX_FAILED = 1


def _extension_of(module: str, extensions: list[str]) -> str:
    """The extension a command's module belongs to (a cog package's submodule counts as its package)."""
    matches = [name for name in extensions if module == name or module.startswith(name + ".")]
    return max(matches, key=len) if matches else module


async def command_problems(bot: MendBot) -> dict[str, list[str]]:
    """What Discord would reject in the commands a sync would send, by extension.

    Global commands are checked as one payload, and each guild's own commands together with the
    globals (at start the globals are copied to the dev guild and synced there with its commands).
    """
    tree = bot.tree
    scopes: dict[str, list[Any]] = {"global": tree.get_commands()}
    # discord.py has no public list of the guilds that have their own commands.
    for guild_id in getattr(tree, "_guild_commands", {}):
        scopes[f"guild {guild_id}"] = [*scopes["global"], *tree.get_commands(guild=discord.Object(guild_id))]
    found: dict[str, list[str]] = {}
    for scope, commands in scopes.items():
        if tree.translator is not None:
            payloads = [await command.get_translated_payload(tree, tree.translator) for command in commands]
        else:
            payloads = [command.to_dict(tree) for command in commands]
        owners = {
            payload["name"]: _extension_of(command.module or "", bot.extension_names)
            for command, payload in zip(commands, payloads, strict=True)
        }
        for problem in payload_problems(payloads, scope=scope):
            owner = owners.get(problem.command, "app commands")
            if str(problem) not in found.setdefault(owner, []):
                found[owner].append(str(problem))
    return found


async def smoke_load(data_dir: Path, extensions: Sequence[str] | None = None) -> dict[str, str | None]:
    """Each extension (default: every discovered one) mapped to None (loaded, commands valid) or what
    is wrong with it."""
    from mendbot.kernel.settings import load_settings
    from mendbot.runtime.app import MendBot
    from mendbot.runtime.services import build_services

    os.environ["MENDBOT_CONFIG"] = os.devnull
    settings = load_settings(data_dir=data_dir, repo_dir=data_dir, health={"enabled": False}, _env_file=None)
    services = await build_services(settings, watch_prompts=False)
    try:
        bot = MendBot(services, extensions=extensions)
        try:
            failures = await bot.load_extensions()
            problems = await command_problems(bot)
        finally:
            await bot.close()
        results = {name: failures.get(name) for name in bot.extension_names}
        for owner, messages in problems.items():
            text = "; ".join(messages)
            results[owner] = f"{results[owner]}; {text}" if results.get(owner) else f"app commands: {text}"
        return results
    finally:
        await services.aclose()


def main() -> int:
    from mendbot.kernel import startgc

    with startgc.paused():  # a short-lived process: importing and building the bot is most of it
        return _main()


def _main() -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):  # a check's pipe may default to ASCII without a locale
        sys.stdout.reconfigure(encoding="utf-8", errors="replace")
    with tempfile.TemporaryDirectory(prefix="mendbot-smoke-") as temp:
        data_dir = Path(temp) / "data"
        try:
            from mendbot.kernel.log import configure_logging
            from mendbot.trust.redact import Redactor

            configure_logging(data_dir / "logs", console_level="ERROR", redactor=Redactor())
            results = asyncio.run(smoke_load(data_dir))
        except Exception as exc:
            # The bot could not even be built (a broken import in bot/, say): the traceback is the report.
            traceback.print_exc()
            print(f"❌ could not build the bot: {type(exc).__name__}: {exc}")
            return EX_FAILED
    for name, error in results.items():
        print(f"✅ {name}" if error is None else f"❌ {name} — {error}")
    failed = sum(error is not None for error in results.values())
    print(f"{len(results) - failed}/{len(results)} extensions loaded with valid commands")
    return EX_FAILED if failed else 0


if __name__ == "__main__":
    sys.exit(main())
