"""The map from every recorded kind to the function that handles it, read off a loaded cog.

A fault with no traceback names only a kind (`app:convert` got slow, `task:refresh` stopped
posting); the evidence needs the file and function behind it. The kinds are spelled exactly as
the recorder spells them (bot/runtime/recording.py): `app:<qualified name>` for app commands,
`command:<qualified name>` for prefix and hybrid commands, `listener:<event>` for listeners and
`task:<body name>` for `tasks.loop`s. Only functions inside one of the repository roots are
mapped (a cog from site-packages is not ours to mend).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from discord import app_commands
from discord.ext import commands, tasks

from mendbot.db.handlers import HandlerLocation
from mendbot.observe.fingerprint import relative_path, root_prefixes

__all__ = ["MENDBOT_COG_FILES", "cog_handlers", "is_mendbots_own"]

# mendbot's own cogs — the improvement loop, approvals, chat, incidents, help, audit, dashboard, dev
# mode and drills — as the handler map names their files. They listen to the same events as the cogs
# they look after (`listener:on_message`, `listener:on_raw_reaction_add`), and are never the suspect
# of a fault in someone else's cog.
MENDBOT_COG_FILES = frozenset(
    f"cogs/{name}.py"
    for name in ("audit", "chat", "dashboard", "devmode", "drill", "help", "improve", "incidents", "ship")
)


def is_mendbots_own(path: str, source: str | None = None) -> bool:
    """Whether a file (as the handler map names it) is one of mendbot's own cogs. With its `source`:
    only if it is written on mendbot's runtime — a bot mendbot is attached to may have a `cogs/help.py`
    of its own, and mendbot's cogs are not in that bot's repository."""
    if path not in MENDBOT_COG_FILES:
        return False
    return source is None or "from mendbot.runtime" in source


def _location(
    kind: str, function: Callable[..., Any], cog: str, prefixes: tuple[str, ...]
) -> HandlerLocation | None:
    target = inspect.unwrap(function)
    target = getattr(target, "__func__", target)
    code = getattr(target, "__code__", None)
    if code is None:
        return None
    path = relative_path(code.co_filename, prefixes)
    if path is None:
        return None
    return HandlerLocation(kind, path, target.__qualname__, code.co_firstlineno, cog)


def cog_handlers(cog: commands.Cog, roots: tuple[Path, ...]) -> list[HandlerLocation]:
    """Every in-repo handler of a cog: its app commands, commands, listeners and task loops."""
    prefixes = root_prefixes(roots)
    name = cog.qualified_name
    found: list[HandlerLocation | None] = []
    for app in cog.walk_app_commands():
        if isinstance(app, app_commands.Command):
            found.append(_location(f"app:{app.qualified_name}", app.callback, name, prefixes))
    for command in cog.walk_commands():
        found.append(_location(f"command:{command.qualified_name}", command.callback, name, prefixes))
    for event, method in cog.get_listeners():
        found.append(_location(f"listener:{event}", method, name, prefixes))
    for attribute in dir(cog):
        loop = getattr(cog, attribute, None)
        if isinstance(loop, tasks.Loop):
            body = inspect.unwrap(loop.coro)
            found.append(_location(f"task:{body.__name__}", body, name, prefixes))
    unique = {(h.kind, h.path, h.qualname): h for h in found if h is not None}
    return [unique[key] for key in sorted(unique)]
