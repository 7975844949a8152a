"""mendbot as an extension of your bot: what `load_extension("mendbot")` does (`mendbot.setup` calls it).

mendbot attaches to the bot instance (`mendbot.runtime.standalone.attach_to`: the settings of
`mendbot.yaml`, its services, the instrumentor on the bot) and adds its own cogs (`mendbot.cogs`) — the
announcements, "fix this", "ship it", `/runs`, `/dashboard`, … — in the configured dev guild. The bot is
not subclassed or rewritten; its handlers run as before.

Loaded by `mendbot attach` as well, and a second time by the bot's own line, it changes nothing.
Unloading it removes mendbot's cogs; the recording comes off when the bot closes.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

__all__ = ["attach_extension", "surfaced"]


async def attach_extension(bot: Any) -> None:
    """Attach mendbot to `bot` (once) and add its cogs — once the bot has connected, when it has not yet
    (bot/runtime/attachment.py: `start_surface`)."""
    from mendbot.runtime.standalone import attach_to

    mend = await attach_to(bot)
    await mend.add_surface(lambda: _add_cogs(bot))


async def surfaced(bot: Any) -> None:
    """Until mendbot, attached to `bot`, has added its own cogs (or could not); at once if it is not
    attached. The replay's launcher sends no call before (bot/trust/replay_launch.py: `_Steady`)."""
    from mendbot.runtime.attachment import NotAttached, attached

    with contextlib.suppress(NotAttached):
        await attached(bot).surfaced()


async def _add_cogs(bot: Any) -> None:
    from mendbot.runtime.attachment import SURFACE

    for name in SURFACE:
        module = importlib.import_module(f"mendbot.cogs.{name}")
        await module.setup(bot)
