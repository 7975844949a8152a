"""The dashboard's server for a running bot: its pages read the bot's database and this process's status.

`__main__` starts it when `dashboard.enabled` (and always in the playground), beside the health port.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bot.dashboard.pages import PageReader
from bot.dashboard.server import DashboardServer
from bot.runtime.health import process_status

if TYPE_CHECKING:
    from bot.runtime.app import MendBot

__all__ = ["dashboard_server"]


def dashboard_server(bot: MendBot) -> DashboardServer | None:
    """The dashboard for `bot`, not yet started; None when its services have no sign-in."""
    services = bot.services
    if services.dashboard is None:
        return None
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
    config = services.dashboard.config
    return DashboardServer(reader, services.dashboard, config.host, config.port)
