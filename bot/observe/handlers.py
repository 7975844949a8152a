"""The map from every recorded kind to the function that handles it, read off a loaded cog.

A fault with no traceback names only a kind (`app:convert` got slow, `task:refresh` stopped
posting); the evidence needs the file and function behind it. The kinds are spelled exactly as
the recorder spells them (bot/runtime/recording.py, bot/runtime/entry_points.py,
bot/runtime/hooks.py): `app:<qualified name>` for app commands and the context menus the cog put on
the tree, `command:<qualified name>` for prefix and hybrid commands, `listener:<event>` for
listeners, `task:<body name>` for `tasks.loop`s (their `before_loop`/`after_loop` hooks too),
`autocomplete:<command>.<option>` for autocomplete callbacks, `check:<predicate>` for the checks
of its commands and its own `cog_check`/`interaction_check`, `cog:<Cog>.cog_load` and
`cog:<Cog>.cog_unload` for its hooks. Views and modals are not on the cog: they are read from the
source (bot/improve/evidence/handler_scan.py). Only functions inside one of the repository roots
are mapped (a cog from site-packages is not ours to mend). A function's qualified name is kept as
the source index names it (`factory.predicate`, not `factory.<locals>.predicate`); the kind keeps
Python's, as the recorder writes it.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import discord
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
    [
        *(
            f"bot/cogs/{name}.py"
            for name in ("audit", "dashboard", "devmode", "drill", "improve", "incidents", "ship")
        ),
        "cogs/chat.py",  # the sample bot's conversation and help, mendbot's own bot's
        "cogs/help.py",
    ]
)


def is_mendbots_own(path: str, source: str | None = None) -> bool:
    """Whether a file (as the handler map names it) is one of mendbot's own cogs. With its `source`:
    only if it is written on mendbot's runtime — a bot mendbot is attached to may have a `cogs/help.py`
    of its own, and mendbot's cogs are not in that bot's repository."""
    if path not in MENDBOT_COG_FILES:
        return False
    return source is None or "from mendbot.runtime" in source


def _code_of(function: Any) -> tuple[Any, Any] | None:
    target = inspect.unwrap(function)
    target = getattr(target, "__func__", target)
    code = getattr(target, "__code__", None)
    return (target, code) if code is not None else None


def _location(kind: str | None, function: Any, cog: str, prefixes: tuple[str, ...]) -> HandlerLocation | None:
    """Where `function` is, for `kind` (None: `check:` and its own qualified name, as the recorder
    names a check that raised)."""
    found = _code_of(function)
    if found is None:
        return None
    target, code = found
    path = relative_path(code.co_filename, prefixes)
    if path is None:
        return None
    qualname = str(getattr(code, "co_qualname", target.__qualname__))
    return HandlerLocation(
        kind or f"check:{qualname}", path, qualname.replace("<locals>.", ""), code.co_firstlineno, cog
    )


def _overrides(cog: commands.Cog, hook: str) -> Any:
    """The cog's own `hook` (a method its class defines), or None for discord.py's default."""
    method = getattr(type(cog), hook, None)
    defined = getattr(commands.Cog, hook, None)
    return None if method is None or method is defined else method


def _context_menus(cog: commands.Cog, tree: Any) -> list[app_commands.ContextMenu]:
    """The context menus on the tree whose callback is one of the cog's methods (discord.py has them
    added by hand, usually in the cog's `__init__`)."""
    if tree is None:
        return []
    found = []
    for kind in (discord.AppCommandType.message, discord.AppCommandType.user):
        for menu in tree.walk_commands(type=kind):
            if isinstance(menu, app_commands.ContextMenu) and getattr(menu.callback, "__self__", None) is cog:
                found.append(menu)
    return found


def cog_handlers(cog: commands.Cog, roots: tuple[Path, ...], tree: Any = None) -> list[HandlerLocation]:
    """Every in-repo handler of a cog: its app commands and their autocomplete callbacks, the context
    menus it put on `tree` (the bot's command tree), its commands, the checks of both, listeners, task
    loops and their hooks, and its own hooks (`cog_load`, `cog_unload`, `cog_check`)."""
    prefixes = root_prefixes(roots)
    name = cog.qualified_name
    found: list[HandlerLocation | None] = []
    for app in cog.walk_app_commands():
        if isinstance(app, app_commands.Command):
            found.append(_location(f"app:{app.qualified_name}", app.callback, name, prefixes))
            for option, parameter in app._params.items():
                if parameter.autocomplete is not None:
                    kind = f"autocomplete:{app.qualified_name}.{option}"
                    found.append(_location(kind, parameter.autocomplete, name, prefixes))
        found += [_location(None, check, name, prefixes) for check in getattr(app, "checks", [])]
    for menu in _context_menus(cog, tree):
        found.append(_location(f"app:{menu.qualified_name}", menu.callback, name, prefixes))
        found += [_location(None, check, name, prefixes) for check in menu.checks]
    for command in cog.walk_commands():
        found.append(_location(f"command:{command.qualified_name}", command.callback, name, prefixes))
        found += [_location(None, check, name, prefixes) for check in command.checks]
    for event, method in cog.get_listeners():
        found.append(_location(f"listener:{event}", method, name, prefixes))
    for attribute in dir(cog):
        loop = getattr(cog, attribute, None)
        if isinstance(loop, tasks.Loop):
            body = inspect.unwrap(loop.coro)
            for part in (body, loop._before_loop, loop._after_loop):
                if part is not None:
                    found.append(_location(f"task:{body.__name__}", part, name, prefixes))
    for hook in ("cog_load", "cog_unload"):
        method = _overrides(cog, hook)
        if method is not None:
            found.append(_location(f"cog:{name}.{hook}", method, name, prefixes))
    for hook in ("cog_check", "interaction_check", "bot_check"):
        method = _overrides(cog, hook)
        if method is not None:
            found.append(_location(None, method, name, prefixes))
    unique = {(h.kind, h.path, h.qualname): h for h in found if h is not None}
    return [unique[key] for key in sorted(unique)]
