"""mendbot: a Discord bot's self-repair, installed as the package `mendbot` (this folder is `bot/` in
mendbot's repository; pyproject.toml maps it to that name, so nothing of mendbot sits at the top level
where a bot's own `bot`, `cogs` or `utils` may be).

Loaded as an extension, it attaches to the bot that loads it: `await self.load_extension("mendbot")` in
the bot's `setup_hook` (or `mendbot attach -- python bot.py`, which does the same without the line). The
work is `mendbot.attach`'s, imported only then: importing `mendbot.kernel…` costs nothing more.
"""

from __future__ import annotations

from typing import Any

__all__ = ["setup", "teardown"]


async def setup(bot: Any) -> None:
    """discord.py's extension entry: attach mendbot to `bot` and add its cogs (`mendbot.attach`)."""
    from mendbot.attach import attach_extension

    await attach_extension(bot)


async def teardown(bot: Any) -> None:
    """discord.py removes mendbot's cogs with this extension; the attachment stays until the bot closes.

    After this, discord.py un-imports the extension's submodules — for `mendbot`, all of mendbot, while
    its attachment and services still run on the bot. Imported again, its modules would be new ones
    (another `Database` class, say) beside the running objects. So the extension, about to go, takes a
    name of its own: discord.py then drops only it, and mendbot's modules stay as they are."""
    globals()["__name__"] = f"{__name__} (the unloaded extension)"
