"""The dashboard's server for a running bot: its pages read the bot's database and this process's status.

`__main__` starts it when `dashboard.enabled` (and always in the playground), beside the health port; on a
bot mendbot is attached to, `attach_to` does when its mendbot.yaml enables it (bot/runtime/standalone.py).
The sign-in asks this process's allow-list at every request, and — for someone allow-listed by a
role — Discord for the roles they hold now (kept for `ROLES_TTL_S`, so a page and its stream do not
each cost a REST call).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import discord

from mendbot.dashboard.pages import PageReader
from mendbot.dashboard.server import DashboardServer
from mendbot.dashboard.signin import RolesOf
from mendbot.runtime.attachment import Attachment
from mendbot.runtime.health import process_status

if TYPE_CHECKING:
    from mendbot.runtime.app import MendBot

__all__ = ["ROLES_TTL_S", "attached_status", "dashboard_server"]

ROLES_TTL_S = 30.0


def _roles_lookup(bot: MendBot | Attachment) -> RolesOf:
    """The member's roles in the dev guild (or any guild of the bot's) as Discord has them now."""
    seen: dict[int, tuple[float, list[int] | None]] = {}

    async def roles_of(user_id: int) -> list[int] | None:
        now = time.monotonic()
        cached = seen.get(user_id)
        if cached is not None and now - cached[0] < ROLES_TTL_S:
            return cached[1]
        if not bot.is_ready():  # no guilds to ask yet: unknown, which refuses without ending anything
            raise RuntimeError("not connected to Discord yet")
        guild_id = bot.services.settings.discord.dev_guild_id
        roles: list[int] | None = None
        for guild in bot.guilds:
            if guild_id is not None and guild.id != guild_id:
                continue
            try:
                member = await guild.fetch_member(user_id)
            except discord.NotFound:
                continue
            roles = [role.id for role in member.roles]
            break
        seen[user_id] = (now, roles)
        return roles

    return roles_of


def attached_status(mend: Attachment, started: float) -> dict[str, object]:
    """The status panel's figures for a bot mendbot is attached to: those `process_status` gives mendbot's
    own, read from the bot as discord.py has it (one shard unless it is sharded)."""
    bot = mend.bot
    latency = bot.latency if math.isfinite(bot.latency) else None
    shards = list(getattr(bot, "shards", {}).items()) or [(0, None)]
    return {
        "uptime_s": round(time.monotonic() - started, 1),
        "discord_ready": bot.is_ready(),
        "accepting": mend.accepting,
        "cogs": sorted(bot.cogs),
        "extension_failures": mend.extension_failures,
        "inflight": mend.inflight,
        "shard_count": bot.shard_count or 1,
        "shards": [
            {
                "id": shard_id,
                "connected": bot.is_ready() and not (shard is not None and shard.is_closed()),
                "latency_ms": None if latency is None else round(latency * 1000, 1),
            }
            for shard_id, shard in shards
        ],
        **mend.services.health(),
    }


def dashboard_server(bot: MendBot | Attachment) -> DashboardServer | None:
    """The dashboard for `bot` (mendbot's own, or the attachment on a bot it did not build), not yet
    started; None when its services have no sign-in."""
    services = bot.services
    signin = services.dashboard
    if signin is None:
        return None
    if signin.access is None:
        signin.access = services.access
    if signin.roles_of is None:
        signin.roles_of = _roles_lookup(bot)
    started = time.monotonic()
    reader = PageReader(
        db=services.db,
        settings=services.settings,
        redactor=services.redactor,
        status=(
            (lambda: attached_status(bot, started))
            if isinstance(bot, Attachment)
            else (lambda: process_status(bot, started))
        ),
        clock=lambda: services.clock().timestamp(),
        audit_service=services.audit,
        names=services.people.name,
    )
    return DashboardServer(reader, signin, signin.config.host, signin.config.port)
