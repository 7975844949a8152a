"""`mendbot attach --play`: a bot someone else wrote, with mendbot attached, in the playground's virtual
Discord — `#dev`, `#general`, the configured users and the playground's grammar, read from standard
input — so its developer sees mendbot observe, announce and fix their bot before creating an application.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from mendbot.kernel.settings import Settings
from mendbot.runtime.attachment import Attachment
from mendbot.tools.playground import Playground, stdin_lines
from mendbot.tools.world import VirtualWorld, WorldClock, virtual_world

__all__ = ["attached_world", "play_in_world"]


def attached_world(mend: Attachment, settings: Settings) -> AbstractAsyncContextManager[VirtualWorld]:
    """The playground's virtual Discord for a bot mendbot is attached to (its settle time, its state)."""
    clock = mend.services.clock
    return virtual_world(
        mend,
        settle_timeout=settings.playground.settle_timeout_s,
        clock=clock if isinstance(clock, WorldClock) else None,
        playground=True,
        state_dir=settings.data_dir,
    )


async def play_in_world(
    mend: Attachment, settings: Settings, *, ready: Callable[[], None] | None = None
) -> int:
    """Run the attached bot in a fresh virtual world until standard input ends (or `quit`); `ready` is
    called once the world is up, before the first line is read."""
    async with attached_world(mend, settings) as world:
        users = ", ".join(
            f"{user.name}{' (allow-listed)' if user.allowed else ''}" for user in settings.playground.users
        )
        print(
            f"mendbot playground ready — your bot ({type(mend.bot).__name__}) with mendbot attached; #dev, "
            f"#general; users: {users}. Type `help` for the grammar.",
            flush=True,
        )
        if ready is not None:
            ready()
        playground = Playground(world, echo=not sys.stdin.isatty())
        return await playground.run_lines(stdin_lines())
