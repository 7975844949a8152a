"""A bot whose start-up work runs long still connects to the virtual Discord (the playground, tests).

simcord gives a connecting bot a fixed 5 s to settle. A deploy a crash interrupted goes on at start-up
(git, the sandbox, the live replay): on a loaded machine that takes longer, and a restarted playground
used to exit 1 ("bot did not settle") instead of finishing the deploy. It now goes on once the bot is
connected, as bot work the world's next settle waits for.
"""

from __future__ import annotations

import asyncio
import time

from mendbot.kernel.settings import Settings
from mendbot.runtime.app import discover_extensions
from mendbot.tools.playground import virtual_world
from tests.harness.discord import make_bot


async def test_a_resumed_deploy_longer_than_the_connect_settle_does_not_fail_the_start(
    settings: Settings,
) -> None:
    bot = await make_bot(settings, discover_extensions())
    resumed: list[str] = []

    async def slow_machine() -> list[int]:
        # What a loaded machine makes of the resumed deploy's native work (git runs in a thread).
        await asyncio.to_thread(time.sleep, 6.0)
        resumed.append("continued")
        return []

    bot.services.deploy.continue_interrupted_deploys = slow_machine  # type: ignore[method-assign]
    try:
        async with virtual_world(bot) as world:
            assert resumed == ["continued"]  # finished before the world is handed over, not dropped
            assert world.bot.is_ready()
    finally:
        await bot.services.aclose()
