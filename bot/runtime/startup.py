"""Starting on Discord: log in, sync the slash commands, connect — and what each failure means.

A failure the operator has to fix (a rejected token, a command sync Discord refuses, a gateway close
code that no retry can change) becomes a `StartupFailure`: one line saying what is wrong and how to fix
it, and exit code 78 so a supervisor does not restart into the same wall. Discord being unreachable at
start (connection refused, DNS, timeouts, 5xx) is not a configuration problem: the start is retried
with exponential backoff, each attempt logged as one line. Once the gateway has connected, discord.py
reconnects and resumes by itself. Tracebacks of all of these go to the JSON log only.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import aiohttp
import discord

from mendbot.kernel.log import get_logger
from mendbot.kernel.settings import EX_CONFIG
from mendbot.kernel.waits import wait_for
from mendbot.runtime.app import CommandSyncFailed

if TYPE_CHECKING:
    from mendbot.runtime.app import MendBot

__all__ = ["Backoff", "StartupFailure", "explain", "is_network_failure", "start_on_discord"]

_log = get_logger(__name__)

_PORTAL = "the Developer Portal (https://discord.com/developers/applications)"

# Gateway close codes after which reconnecting cannot help (discord.py gives up on them too).
CLOSE_CODES: dict[int, str] = {
    4004: (
        "Discord rejected DISCORD_TOKEN at the gateway (close code 4004) — copy the bot token again "
        f"from {_PORTAL} (Bot → Reset Token) into .env"
    ),
    4010: (
        "Discord refused the shard this bot asked for (close code 4010, invalid shard) — check "
        "discord.shard_count and discord.shard_ids in config.yaml, or remove both"
    ),
    4011: (
        "Discord requires sharding with more shards for this bot (close code 4011: it is in too many "
        "servers for discord.shard_count) — raise discord.shard_count in config.yaml, or remove it so "
        "Discord's recommended count is used"
    ),
    4012: (
        "Discord refused the gateway API version (close code 4012) — upgrade discord.py: "
        "`make setup` after updating pyproject.toml"
    ),
    4013: (
        "Discord refused the gateway intents (close code 4013, invalid intents) — the intents mendbot "
        "asks for are not valid; reinstall a released mendbot version"
    ),
    4014: (
        "the Message Content intent is not enabled (close code 4014) — turn it on in "
        f"{_PORTAL} (Bot → Privileged Gateway Intents)"
    ),
}


class StartupFailure(Exception):
    """The start cannot succeed until someone changes something: `line` says what, `exit_code` is 78."""

    def __init__(self, line: str, exit_code: int = EX_CONFIG) -> None:
        super().__init__(line)
        self.line = line
        self.exit_code = exit_code


def _one_line(error: discord.HTTPException) -> str:
    return " ".join(f"{error.status} {error.text}".split())


def explain(exc: BaseException) -> StartupFailure | None:
    """The one-line failure for an exception that retrying cannot fix; None for anything else."""
    if isinstance(exc, discord.LoginFailure):
        return StartupFailure(
            "config error: Discord rejected DISCORD_TOKEN — copy the bot token again from "
            f"{_PORTAL} (Bot → Reset Token) into .env"
        )
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return StartupFailure(f"config error: {CLOSE_CODES[4014]}")
    if isinstance(exc, discord.ConnectionClosed) and exc.code in CLOSE_CODES:
        return StartupFailure(f"config error: {CLOSE_CODES[exc.code]}")
    if isinstance(exc, CommandSyncFailed):
        if exc.error.status in (403, 404):
            return StartupFailure(
                f"config error: Discord refused the slash-command sync to discord.dev_guild_id "
                f"{exc.guild_id} ({_one_line(exc.error)}) — the bot is not in that server or was "
                "invited without the applications.commands scope: fix discord.dev_guild_id in "
                "config.yaml, or invite the bot again (README, 'Going live', step 3)"
            )
        if exc.error.status == 400:
            return StartupFailure(
                f"start-up error: Discord rejected the slash-command definitions ({_one_line(exc.error)}) — "
                "a command breaks Discord's limits; `python -m mendbot.tools.smoke` names it"
            )
        return StartupFailure(
            f"start-up error: Discord refused the slash-command sync to discord.dev_guild_id "
            f"{exc.guild_id} ({_one_line(exc.error)})"
        )
    return None


def is_network_failure(exc: BaseException) -> bool:
    """Whether Discord could not be reached (or was down), looking through the exception's causes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError | aiohttp.ClientError | TimeoutError | discord.DiscordServerError):
            return True
        if isinstance(current, discord.HTTPException) and current.status == 429:
            return True
        current = current.__cause__ or current.__context__
    return False


class Backoff:
    """Delays between attempts: from `initial`, doubling, at most `maximum` seconds — each drawn
    between half and all of that (jitter), so a bot is back within a few seconds of Discord answering
    however long it was away, and bots do not come back in step."""

    def __init__(self, initial: float = 1.0, maximum: float = 5.0) -> None:
        self.initial = initial
        self.maximum = maximum

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield random.uniform(delay / 2, delay)
            delay = min(delay * 2, self.maximum)


async def _wait_or_closed(bot: MendBot, delay: float) -> bool:
    """Sleep `delay` seconds; True when the bot was closed meanwhile (SIGTERM during a retry)."""
    with contextlib.suppress(TimeoutError):
        await wait_for(bot.wait_closed(), timeout=delay)
    return bot.is_closed()


async def _retry_or_fail(
    bot: MendBot,
    exc: Exception,
    step: str,
    delays: Iterator[float],
    retrying: Callable[[], None] | None = None,
) -> bool:
    """Raise the StartupFailure for `exc`, or wait for the next attempt (False: the bot was closed)."""
    failure = explain(exc)
    if failure is not None:
        _log.error("start-up failed", reason=failure.line, exc_info=exc, console=False)
        raise failure from exc
    if not is_network_failure(exc):
        raise exc
    if retrying is not None:
        retrying()
    delay = next(delays)
    summary = " ".join(f"{type(exc).__name__}: {exc}".split()) or type(exc).__name__
    # The console gets one line per attempt; the traceback goes to the JSON log only.
    _log.warning(f"Discord unreachable ({step}): retrying in {delay:.1f}s", error=summary)
    _log.info("unreachable at start", step=step, exc_info=exc, console=False)
    return not await _wait_or_closed(bot, delay)


async def start_on_discord(
    bot: MendBot,
    token: str,
    *,
    backoff: Backoff | None = None,
    logged_in: Callable[[], None] | None = None,
    retrying: Callable[[], None] | None = None,
) -> None:
    """Log in (loads the cogs, syncs the commands) and stay connected until the bot closes.

    Raises `StartupFailure` for what retrying cannot fix; retries what the network broke; returns when
    the bot is closed (SIGTERM, a restart). `logged_in` runs once, between login and the first connect;
    `retrying` before each wait to retry (Discord unreachable: not a configuration error).
    """
    backoff = backoff or Backoff()
    delays = backoff.delays()
    while True:
        try:
            await bot.login(token)
            break
        except Exception as exc:
            # static_login opened an HTTP session (owning its connector) before it failed: close both,
            # and let the next attempt make its own (it builds a connector only when there is none).
            await bot.http.close()
            bot.http.connector = discord.utils.MISSING
            if not await _retry_or_fail(bot, exc, "logging in", delays, retrying):
                return
    if logged_in is not None:
        logged_in()
    delays = backoff.delays()
    while not bot.is_closed():
        try:
            await bot.connect()
            return
        except Exception as exc:
            # Once a shard has a gateway session discord.py reconnects it by itself (and retries a
            # shard that fails to connect), so what reaches us then is final. Before that, asking
            # Discord for the shard count (`/gateway/bot`) can fail: a network failure is retried here.
            if explain(exc) is None and not (not bot.shards and is_network_failure(exc)):
                raise
            if not await _retry_or_fail(bot, exc, "connecting to the gateway", delays, retrying):
                return
