"""The dashboard's server for a running bot: its pages read the bot's database and this process's status.

`__main__` starts it when `dashboard.enabled` (and always in the playground), beside the health port.
The sign-in asks this process's allow-list at every request, and — for someone allow-listed by a
role — Discord for the roles they hold now (kept for `ROLES_TTL_S`, so a page and its stream do not
each cost a REST call).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import discord

from mendbot.dashboard.pages import PageReader
from mendbot.dashboard.server import DashboardServer
from mendbot.dashboard.signin import RolesOf
from mendbot.runtime.health import process_status

if TYPE_CHECKING:
    from mendbot.runtime.app import MendBot

__all__ = ["ROLES_TTL_S", "dashboard_server"]

ROLES_TTL_S = 30.0


def _roles_lookup(bot: MendBot) -> RolesOf:
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


def dashboard_server(bot: MendBot) -> DashboardServer | None:
    """The dashboard for `bot`, not yet started; None when its services have no sign-in."""
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
        status=lambda: process_status(bot, started),
        clock=lambda: services.clock().timestamp(),
        audit_service=services.audit,
        names=services.people.name,
    )
    return DashboardServer(reader, signin, signin.config.host, signin.config.port)
