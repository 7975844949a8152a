"""Real-Discord path benchmark, against the loopback Discord double (bot/trust/loopback_discord.py).

Prints `discord_login_to_ready_s` (login, cog load, command sync, IDENTIFY to READY; median of several
starts; discord.py's wait for late guilds set to 0.05 s as in the tests), `discord_resume_s` (a dropped
gateway connection to RESUMED, median) and `command_limits_check_ms` (the smoke check's payload
validation of every shipped command, median of 200).

`ready_after_outage_s`: Discord unreachable for 6 s (the loopback Discord stops listening after
dropping the gateway), then back; the time from its return to the shard's RESUMED — how long the bot
keeps its users waiting once Discord answers again (median of 5, target ≤ 3). Beside it, the same with
discord.py's own reconnect backoff on the shard (`ready_after_outage_discordpy_s`, the reference).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from discord.backoff import ExponentialBackoff  # noqa: E402

from mendbot.kernel.log import configure_logging  # noqa: E402
from mendbot.runtime.app import MendBot  # noqa: E402
from mendbot.runtime.services import build_services  # noqa: E402
from mendbot.runtime.startup import start_on_discord  # noqa: E402
from mendbot.trust.command_limits import payload_problems  # noqa: E402
from mendbot.trust.loopback_discord import DiscordDouble  # noqa: E402
from mendbot.trust.redact import Redactor  # noqa: E402
from tests.harness.discord import make_settings  # noqa: E402

RUNS = 5
OUTAGE_S = 6.0


async def one_start(workdir: Path) -> tuple[float, float, float]:
    async with DiscordDouble() as double:
        with double.pointed_at():
            settings = make_settings(
                workdir / "data", discord_token=double.token, discord={"dev_guild_id": double.guild.id}
            )
            services = await build_services(settings, watch_prompts=False)
            bot = MendBot(services, guild_ready_timeout=0.05)
            started = time.perf_counter()
            task = asyncio.create_task(start_on_discord(bot, double.token))
            try:
                await asyncio.wait_for(bot.wait_until_ready(), timeout=60)
                ready = time.perf_counter() - started
                resumed = asyncio.ensure_future(bot.wait_for("resumed"))
                dropped = time.perf_counter()
                await double.drop_gateway()
                await resumed
                resume = time.perf_counter() - dropped
                payloads = [command.to_dict(bot.tree) for command in bot.tree.get_commands()]
                checks = []
                for _ in range(200):
                    began = time.perf_counter()
                    assert payload_problems(payloads) == []
                    checks.append((time.perf_counter() - began) * 1000)
                return ready, resume, statistics.median(checks)
            finally:
                await bot.close()
                await task
                await services.aclose()


async def one_outage(workdir: Path, *, reference: bool) -> float:
    """Seconds from Discord's return after a 6 s outage to the shard's RESUMED."""
    async with DiscordDouble() as double:
        with double.pointed_at():
            settings = make_settings(
                workdir / "data", discord_token=double.token, discord={"dev_guild_id": double.guild.id}
            )
            services = await build_services(settings, watch_prompts=False)
            bot = MendBot(services, guild_ready_timeout=0.05)
            task = asyncio.create_task(start_on_discord(bot, double.token))
            try:
                await asyncio.wait_for(bot.wait_until_ready(), timeout=60)
                shard = bot.get_shard(0)
                assert shard is not None
                if reference:  # discord.py's own backoff, as before GatewayBackoff
                    shard._parent._backoff = ExponentialBackoff()
                disconnected = asyncio.ensure_future(bot.wait_for("disconnect"))
                await double.refuse()
                await double.drop_gateway()
                await disconnected
                await asyncio.sleep(OUTAGE_S)
                resumed = asyncio.ensure_future(bot.wait_for("resumed"))
                back = time.perf_counter()
                await double.accept()
                await asyncio.wait_for(resumed, timeout=300)
                return time.perf_counter() - back
            finally:
                await bot.close()
                await task
                await services.aclose()


async def main() -> None:
    configure_logging(
        Path(tempfile.mkdtemp(prefix="mendbot-bench-logs-")), console_level="ERROR", redactor=Redactor()
    )
    results = []
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory(prefix="mendbot-bench-") as temp:
            results.append(await one_start(Path(temp)))
    print(f"discord_login_to_ready_s {statistics.median(r[0] for r in results):.3f} s")
    print(f"discord_resume_s {statistics.median(r[1] for r in results):.3f} s")
    print(f"command_limits_check_ms {statistics.median(r[2] for r in results):.3f} ms")
    logging.getLogger("discord").setLevel(logging.CRITICAL)  # each refused attempt logs a traceback
    for reference, name in ((False, "ready_after_outage_s"), (True, "ready_after_outage_discordpy_s")):
        waits = []
        for _ in range(RUNS):
            with tempfile.TemporaryDirectory(prefix="mendbot-bench-") as temp:
                waits.append(await one_outage(Path(temp), reference=reference))
        shown = " ".join(f"{wait:.2f}" for wait in waits)
        print(f"{name} {statistics.median(waits):.3f} s  (6 s outage; runs: {shown})")


if __name__ == "__main__":
    asyncio.run(main())
