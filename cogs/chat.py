"""Chat: answers when mentioned, replied to, or in a configured chat channel."""

from __future__ import annotations

import discord
from discord.ext import commands

from mendbot.kernel.log import get_logger
from mendbot.runtime.app import MendBot
from mendbot.trust.grammar import read_approval

_log = get_logger(__name__)


class Chat(commands.Cog):
    def __init__(self, bot: MendBot) -> None:
        self.bot = bot

    def _addressed(self, message: discord.Message) -> bool:
        me = self.bot.user
        if me is None or message.author.bot:
            return False
        if message.channel.id in self.bot.services.settings.discord.chat_channel_ids:
            return True
        if me in message.mentions:
            return True
        ref = message.reference
        resolved = ref.resolved if ref is not None else None
        return isinstance(resolved, discord.Message) and resolved.author.id == me.id

    async def _answered_by_the_approval_flow(self, message: discord.Message) -> bool:
        """A reply about shipping to a proposal's message: bot/cogs/ship.py answers it (approval or not)."""
        ref = message.reference
        if ref is None or ref.message_id is None or not read_approval(message.content).shipping:
            return False
        proposal = await self.bot.services.deploy.approvals.proposal_for_message(ref.message_id)
        return proposal is not None

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if not self._addressed(message):
            return
        ctx = await self.bot.get_context(message)
        if ctx.valid:  # a command addressed by mention: the command framework answers it
            return
        improve = self.bot.get_cog("Improve")
        if improve is not None and improve.claims(message):  # type: ignore[attr-defined]
            # "fix this" and friends in a dev channel are requests, not chat; a developer's message
            # the word grammar cannot place is decided there (by the model's tool call, or a question)
            return
        if await self._answered_by_the_approval_flow(message):
            return
        await self.answer(message)

    async def answer(self, message: discord.Message) -> None:
        """Answer a message addressed to the bot as chat."""
        assert self.bot.user is not None
        text = (
            message.content.replace(self.bot.user.mention, "").replace(f"<@!{self.bot.user.id}>", "").strip()
        )
        try:
            async with message.channel.typing():
                reply = await self.bot.services.chat.reply(
                    channel_id=message.channel.id,
                    guild_name=message.guild.name if message.guild else "direct messages",
                    author_id=message.author.id,
                    author_name=message.author.display_name,
                    message_id=message.id,
                    text=text or "(empty message)",
                    bot_id=self.bot.user.id,
                )
        except Exception as exc:
            # chat:reply is already recorded (a bug with its traceback, or the environment's failure):
            # raising again would record the same failure as this listener's and open a second incident.
            problem = self.bot.environment_problem(exc, message.channel, message.author.id)
            if problem is None:
                _log.error("chat reply failed", error=f"{type(exc).__name__}: {exc}")
            answer = (
                problem.reply
                if problem
                else f"I couldn't answer that ({type(exc).__name__}); it has been recorded."
            )
            await message.reply(answer, mention_author=False)
            return
        if reply is None:
            return
        for index, chunk in enumerate(reply.chunks):
            if index == 0:
                await message.reply(chunk, mention_author=False)
            else:
                await message.channel.send(chunk)


async def setup(bot: MendBot) -> None:
    await bot.add_cog(Chat(bot))
