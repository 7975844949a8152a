"""The smoke load of a bot mendbot is attached to: run inside the sandbox, on a checkout of its repository.

`mendbot.improve.agent.verify` binds this file read-only into the sandbox (the copy that runs is the installed
mendbot's, never the checkout's) and runs it with the checkout as the working directory:

    python /run/mendbot/smoke/host_smoke.py SPEC

`SPEC` (JSON) names the bot class (`module:Class`, or none for a bot the program builds from discord.py's
own class), its extensions, the directories its imports start from and the environment it reads. The
smoke load then

- compiles every Python file of the tree (a syntax error anywhere is a failure, imported or not);
- imports the module of the bot class — a module that starts its bot when imported (`bot.run(…)` at
  module level) stops at that call, which is refused here, with its class already defined — and builds a
  throwaway instance of that class, never logged in;
- loads every extension into it, each one ✅ or ❌ with its error.

It imports only the standard library and discord.py before the bot's own code, and none of mendbot: the
bot's modules keep their own names (a `bot.py` is `bot`). The exit status is 0 only if everything
compiled, the bot was built and every extension loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

__all__ = ["main"]

_SKIPPED_DIRS = {".git", ".venv", "venv", "env", "node_modules", "__pycache__", ".mendbot", ".tox"}


class _NoRun(Exception):
    """A bot asked to connect during the smoke load (`run`/`start`/`login` at import)."""


def _compile_all(root: Path) -> list[str]:
    failures = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = Path(directory) / name
            try:
                compile(path.read_bytes(), str(path.relative_to(root)), "exec", dont_inherit=True)
            except (SyntaxError, ValueError) as exc:
                failures.append(f"{path.relative_to(root)}: {type(exc).__name__}: {exc}")
    return failures


def _import_stopping_at_run(name: str) -> Any:
    """Import module `name`; a bot started at its top level stops there, the module kept as it got."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with contextlib.suppress(_NoRun):
        spec.loader.exec_module(module)
    return module


def _build(bot_class: str | None) -> Any:
    import discord
    from discord.ext import commands

    if bot_class is None:
        return commands.Bot(command_prefix="!", intents=discord.Intents.default())
    module_name, _, qualname = bot_class.partition(":")
    target: Any = _import_stopping_at_run(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    try:
        return target()
    except TypeError:
        return target(command_prefix="!", intents=discord.Intents.default())


async def _load(spec: dict[str, Any]) -> tuple[dict[str, str | None], str | None]:
    try:
        bot = _build(spec.get("bot_class"))
    except Exception as exc:
        traceback.print_exc()
        return {}, f"{type(exc).__name__}: {exc}"
    results: dict[str, str | None] = {}
    try:
        for name in spec.get("extensions") or []:
            try:
                await bot.load_extension(name)
            except Exception as exc:
                cause = exc.__cause__ or exc
                traceback.print_exception(cause)
                results[name] = f"{type(cause).__name__}: {cause}"
            else:
                results[name] = None
    finally:
        for name in list(bot.extensions):
            with contextlib.suppress(Exception):  # an unload failing says nothing the load did not
                await bot.unload_extension(name)
    return results, None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: host_smoke.py SPEC\n")
        return 2
    spec: dict[str, Any] = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    root = Path.cwd()
    for name, value in (spec.get("env") or {}).items():
        os.environ.setdefault(str(name), str(value))
    for directory in reversed([str(root), *(str(root / p) for p in spec.get("path") or [])]):
        sys.path.insert(0, directory)

    import discord

    async def refused(*_: Any, **__: Any) -> Any:
        raise _NoRun

    def refused_run(*_: Any, **__: Any) -> Any:
        raise _NoRun

    discord.Client.run = refused_run  # type: ignore[method-assign]
    discord.Client.start = refused  # type: ignore[method-assign]
    discord.Client.login = refused  # type: ignore[method-assign]

    failed = 0
    for failure in _compile_all(root):
        print(f"❌ {failure}")
        failed += 1
    results, problem = asyncio.run(_load(spec))
    if problem is not None:
        print(f"❌ could not build the bot ({spec.get('bot_class') or 'commands.Bot'}): {problem}")
        return 1
    for name, error in results.items():
        print(f"✅ {name}" if error is None else f"❌ {name} — {error}")
    failed += sum(error is not None for error in results.values())
    print(f"{len(results) - sum(e is not None for e in results.values())}/{len(results)} extensions loaded")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
