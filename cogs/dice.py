"""/roll: dice notation like `2d6+1`."""

from __future__ import annotations

from discord import app_commands
from discord.ext import commands

from mendbot.features import dice
from mendbot.runtime.app import MendBot


class Dice(commands.Cog):
    @commands.hybrid_command(name="roll", description="Roll dice, e.g. 2d6+1 or d20.")  # type: ignore[arg-type]  # mypy cannot solve its generics
    @app_commands.describe(notation="dice like 2d6+1, d20 or 4d6-2 (default 1d6)")
    async def roll(self, ctx: commands.Context[MendBot], notation: str = "1d6") -> None:
        """Roll dice written like 2d6+1, d20 or 4d6-2."""
        result = dice.roll(dice.parse(notation))
        await ctx.send(f"🎲 `{result.spec}` → {result.sum_text()} = **{result.total}**")


async def setup(bot: MendBot) -> None:
    await bot.add_cog(Dice())
