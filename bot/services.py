"""Assembly of mendbot's services: built once in `__main__` (or a test), passed into MendBot.

Nothing in cogs reaches for a module-level singleton; cogs use `bot.services`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiosqlite
import discord

from bot.chat import ChatService
from bot.daemons import Daemons
from bot.db import open_database
from bot.prompts import PromptRegistry
from bot.reminders import ReminderService
from bot.settings import Settings

__all__ = ["Services", "build_services"]

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


@dataclass
class Services:
    settings: Settings
    db: aiosqlite.Connection
    prompts: PromptRegistry
    chat: ChatService
    reminders: ReminderService
    clock: Callable[[], datetime]
    daemons: Daemons = field(default_factory=Daemons)
    closed: bool = False

    def health(self) -> dict[str, object]:
        """Figures for the health endpoint."""
        return {"reminders_scheduled": self.reminders.scheduled, "prompts": len(self.prompts.keys())}

    async def quiesce(self) -> None:
        """Wait until background services have processed everything handed to them so far."""

    async def aclose(self) -> None:
        """Stop background work and close the database; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self.reminders.stop()
        await self.daemons.stop_all()
        await self.db.close()


async def build_services(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = discord.utils.utcnow,
    prompts_dir: Path | None = None,
    watch_prompts: bool = True,
) -> Services:
    """Open the database, load prompts and build every service. Prompt errors are logged."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = await open_database(settings.db_path)
    prompts = PromptRegistry(prompts_dir or PROMPTS_DIR)
    prompts.load_all()
    secret = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else None
    services = Services(
        settings=settings,
        db=db,
        prompts=prompts,
        chat=ChatService(
            db, prompts, settings.chat, api_key=secret, base_url=settings.anthropic_base_url, clock=clock
        ),
        reminders=ReminderService(db, clock),
        clock=clock,
    )
    if watch_prompts:
        services.daemons.start("prompt-watcher", prompts.watch())
    return services
