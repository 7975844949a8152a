"""mendbot as an extension of your bot: `await self.load_extension("mendbot")` in its `setup_hook`.

Installed as the top-level module `mendbot` (pyproject.toml maps this package to that name), so a bot
loads it like any extension, before its own: mendbot attaches to the bot instance
(`mendbot.runtime.standalone.attach_to`: the settings of `mendbot.yaml`, its services, the instrumentor on
the bot) and adds its own cogs — the announcements, "fix this", "ship it", `/runs`, `/dashboard`, … —
in the configured dev guild. The bot is not subclassed or rewritten; its handlers run as before.

Loaded by `mendbot attach` as well, and a second time by the bot's own line, it changes nothing.
Unloading it removes mendbot's cogs; the recording comes off when the bot closes.

mendbot's own package is named `bot`, as a bot's main module often is: the program's directory comes
first on `sys.path`, so mendbot's package is imported here from where mendbot is installed, before
anything of it is needed. mendbot's cogs are this package's submodules (its `__path__` includes
mendbot's `cogs/` directory), so they never meet a `cogs` package of the bot's own.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

__all__ = ["setup", "teardown"]

_ROOT = Path(__file__).resolve().parents[2]  # where mendbot is installed: its bot/ and cogs/


def _mendbot_package() -> None:
    """Make `bot` mendbot's own package, from where it is installed (not the program's `bot.py`)."""
    package = _ROOT / "bot"
    found = sys.modules.get("bot")
    if found is not None:
        if Path(getattr(found, "__file__", None) or "").resolve().parent == package:
            return
        raise ImportError(
            "mendbot cannot load: a module named `bot` of the program's own is already imported, and "
            "`bot` is mendbot's package — load mendbot first, or run the bot with `mendbot attach -- …`"
        )
    spec = importlib.util.spec_from_file_location(
        "bot", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bot"] = module
    spec.loader.exec_module(module)


_mendbot_package()
__path__.append(str(_ROOT / "cogs"))  # mendbot's cogs, as submodules of this extension


async def setup(bot: Any) -> None:
    """Attach mendbot to `bot` (once) and add its cogs — once the bot has connected, when it has not yet
    (bot/runtime/attachment.py: `start_surface`)."""
    from mendbot.runtime.standalone import attach_to

    mend = await attach_to(bot)
    await mend.add_surface(lambda: _add_cogs(bot))


async def _add_cogs(bot: Any) -> None:
    from mendbot.runtime.attachment import SURFACE

    for name in SURFACE:
        module = importlib.import_module(f"{__name__}.{name}")
        await module.setup(bot)


async def teardown(bot: Any) -> None:
    """discord.py removes mendbot's cogs with this extension; the attachment stays until the bot closes."""
