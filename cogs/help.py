"""/help: what mendbot does and how to ask it, rendered from the commands that are actually loaded."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from mendbot.runtime.app import MendBot

_WORDS = (
    "**Plain words** — mention me (or reply to me) to chat; it needs a model key. In a dev channel, "
    'allow-listed developers can also say "fix this", "investigate that error", "status", '
    '"cancel run 3", "pause" or "resume", and reply **ship it** / **don\'t ship** to a proposal '
    "(or react ✅ / ❌ on it). 🔍 / 🛠 on an incident announcement asks me to investigate / fix it."
)


def usage(command: app_commands.Command[Any, Any, Any]) -> str:
    """`/name <required> [optional] — description`, as Discord's client shows it."""
    params = " ".join(f"<{p.name}>" if p.required else f"[{p.name}]" for p in command.parameters)
    return f"`/{command.qualified_name}{' ' + params if params else ''}` — {command.description}"


def render_help(tree: app_commands.CommandTree[Any], guild: discord.abc.Snowflake | None) -> str:
    """Every slash command by the cog it belongs to, then the plain-word requests."""
    by_cog: dict[str, list[str]] = {}
    for command in tree.walk_commands(guild=guild):
        if isinstance(command, app_commands.Command):
            cog = getattr(command.binding, "qualified_name", None) or "Other"
            by_cog.setdefault(cog, []).append(usage(command))
    lines = ["**mendbot** — a chat bot that watches itself, and fixes itself when a developer asks."]
    for cog in sorted(by_cog):
        lines.append(f"**{cog}**")
        lines.extend(f"• {line}" for line in sorted(by_cog[cog]))
    lines.append(_WORDS)
    return "\n".join(lines)[:2000]


class Help(commands.Cog):
    def __init__(self, bot: MendBot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="What I do and how to ask me.")
    async def help(self, interaction: discord.Interaction[MendBot]) -> None:
        guild = discord.Object(interaction.guild_id) if interaction.guild_id else None
        await interaction.response.send_message(render_help(self.bot.tree, guild), ephemeral=True)


async def setup(bot: MendBot) -> None:
    await bot.add_cog(Help(bot))
