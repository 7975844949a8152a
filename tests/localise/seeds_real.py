"""Seeded faults re-created from real bug-fix commits of public discord.py bots.

Each seed keeps the shape of a bug someone fixed in a public bot — where the fault sat, how it
showed, what a user would say about it — written anew here with its own cog, names and words (no
code is taken from the project that inspired it; `inspired_by` names the project and the change).
They are the half of the corpus not chosen while the ranking was built (`origin` "from real fixes").
"""

from __future__ import annotations

from mendbot.tools.world import VirtualWorld
from tests.harness.discord import bot_messages
from tests.localise.repo import Commit
from tests.localise.seeds import _HEAD, Drive, Seed, _nothing, _say, _slash, _then

__all__ = ["REAL_SEEDS"]

_REAL = "from real fixes"


def _history(
    name: str, files: dict[str, str], message: str, broken: dict[str, str], days: float = 2
) -> tuple[Commit, ...]:
    """The package `seed_<name>` as it worked 120 days ago, then the commit that broke it."""
    package: dict[str, str | None] = {
        f"seed_{name}/__init__.py": "",
        **{f"seed_{name}/{path}": text for path, text in files.items()},
    }
    return (
        Commit(120, f"Add {name}", package),
        Commit(days, message, {f"seed_{name}/{path}": str(text) for path, text in broken.items()}),
    )


def _setup(cog: str, *args: str) -> str:
    return f"""

async def setup(bot: commands.Bot) -> None:
    await bot.add_cog({cog}({", ".join(args)}))
"""


def _click(command: str, custom_id: str, times: int, **options: object) -> Drive:
    """Show the message `command` answers with, then press its `custom_id` button `times` times."""

    async def drive(world: VirtualWorld) -> None:
        await world.users["alice"].slash(world.general, command, **options)
        await world.quiesce()
        message = bot_messages(world, world.general)[-1]
        for _ in range(times):
            await world.users["alice"].click(message, custom_id=custom_id)
            await world.quiesce()

    return drive


# -- cat-bot: a leaderboard's places counted from zero ---------------------------------------------------

_BOARD = '''
"""Leaderboard lines."""


def placements(scores: dict[str, int]) -> list[str]:
    ordered = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    return [f"#{place + 1} {name}: {score} cats" for place, (name, score) in enumerate(ordered)]
'''
_CATS = (
    _HEAD
    + """
from seed_cats.board import placements

CATCHES = {"alice": 12, "bob": 30, "cleo": 7}


class Cats(commands.Cog):
    @app_commands.command(name="leaderboard", description="Who caught the most cats")
    async def leaderboard(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("\\n".join(placements(CATCHES)))
"""
    + _setup("Cats")
)
RANK_FROM_ZERO = Seed(
    "cats",
    "a leaderboard's places counted from zero",
    _history(
        "cats",
        {"board.py": _BOARD, "cog.py": _CATS},
        "Tidy the leaderboard lines",
        {"board.py": _BOARD.replace("#{place + 1} ", "#{place} ")},
    ),
    _slash("leaderboard", 3),
    "the leaderboard shows me one place higher than I really am, bob is #0",
    "app:leaderboard",
    "seed_cats/board.py",
    "placements",
    incident=False,
    origin=_REAL,
    inspired_by="milenakos/cat-bot PR #245 (leaderboard placement was the index, not index + 1)",
)

# -- flare-cogs CommandStats: a guild with no data yet -------------------------------------------------

_STATS = '''
"""Command counts per guild."""


def guild_totals(data: dict[str, dict[str, int]], guild_id: int) -> dict[str, int]:
    return data.get(str(guild_id), {})


def top_commands(totals: dict[str, int]) -> list[str]:
    return [name for name, _ in sorted(totals.items(), key=lambda item: -item[1])[:3]]
'''
_CMDSTATS = (
    _HEAD
    + """
from seed_cmdstats.stats import guild_totals, top_commands


class CommandStats(commands.Cog):
    def __init__(self) -> None:
        self.data: dict[str, dict[str, int]] = {"1": {"ping": 3}}

    @commands.command(name="cmdstats")
    async def cmdstats(self, ctx: commands.Context) -> None:
        totals = guild_totals(self.data, ctx.guild.id)
        await ctx.send(", ".join(top_commands(totals)) or "no commands used yet")
"""
    + _setup("CommandStats")
)
GUILD_WITHOUT_DATA = Seed(
    "cmdstats",
    "per-guild stats read for a guild with no data",
    _history(
        "cmdstats",
        {"stats.py": _STATS, "cog.py": _CMDSTATS},
        "Read guild totals directly",
        {"stats.py": _STATS.replace("return data.get(str(guild_id), {})", "return data[str(guild_id)]")},
    ),
    _say(*["!cmdstats"] * 5),
    "cmdstats falls over in this server",
    "command:cmdstats",
    "seed_cmdstats/stats.py",
    "guild_totals",
    origin=_REAL,
    inspired_by="flaree/flare-cogs PR #63 (CommandStats: KeyError for a guild that had no data)",
)

# -- Discord-AI-Chatbot: a configuration key spelled two ways -------------------------------------------

_AISETTINGS = '''
"""What the chat listener is configured with."""

SETTINGS = {
    "REPLY_PREFIX": "bot,",
    "INSTRUCTIONS": "Answer in one short sentence.",
}
'''
_AICHAT = (
    _HEAD
    + """
from seed_aichat import settings


def answer(question: str, instructions: str) -> str:
    return f"({instructions[:12]}…) you asked: {question}"


class AiChat(commands.Cog):
    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or not message.content.startswith(settings.SETTINGS["REPLY_PREFIX"]):
            return
        instructions = settings.SETTINGS["INSTRUCTIONS"]
        await message.channel.send(answer(message.content, instructions))
"""
    + _setup("AiChat")
)
CONFIG_KEY_MISSPELLED = Seed(
    "aichat",
    "a configuration key spelled two ways",
    _history(
        "aichat",
        {"settings.py": _AISETTINGS, "cog.py": _AICHAT},
        "Reword the instructions",
        {
            "settings.py": _AISETTINGS.replace(
                '"INSTRUCTIONS": "Answer in one short sentence."',
                '"INSTRUCTIONSS": "Answer in one short, friendly sentence."',
            )
        },
    ),
    _say(*["bot, what is a cog?"] * 5),
    "the bot stopped replying when I start a message with bot,",
    "listener:on_message",
    "seed_aichat/settings.py",
    "SETTINGS",
    origin=_REAL,
    inspired_by="mishl-dev/Discord-AI-Chatbot PR #257 (KeyError: a configuration key with an extra letter)",
)

# -- flare-cogs cmdlogger: a setting the defaults no longer define --------------------------------------

_DEFAULTS = '''
"""Per-guild defaults of the command log."""


def guild_defaults() -> dict[str, bool]:
    return {"enabled": True, "ignore_owners": False}
'''
_CMDLOG = (
    _HEAD
    + """
from seed_cmdlog.defaults import guild_defaults


class CommandLog(commands.Cog):
    def __init__(self) -> None:
        self.conf = guild_defaults()
        self.entries: list[str] = []

    @commands.command(name="hello")
    async def hello(self, ctx: commands.Context) -> None:
        await ctx.send("hello!")

    @commands.Cog.listener()
    async def on_command_completion(self, ctx: commands.Context) -> None:
        if self.conf["enabled"] and not self.conf["ignore_owners"]:
            self.entries.append(ctx.command.qualified_name)
"""
    + _setup("CommandLog")
)
SETTING_NOT_DEFAULTED = Seed(
    "cmdlog",
    "a listener reads a setting the defaults no longer define",
    _history(
        "cmdlog",
        {"defaults.py": _DEFAULTS, "cog.py": _CMDLOG},
        "Rename the owners setting",
        {"defaults.py": _DEFAULTS.replace('"ignore_owners": False', '"skip_owners": False')},
    ),
    _say(*["!hello"] * 5),
    "command logging broke after the last update",
    "listener:on_command_completion",
    "seed_cmdlog/defaults.py",
    "guild_defaults",
    origin=_REAL,
    inspired_by="flaree/flare-cogs issue #182 (cmdlogger: KeyError 'ignore_owners' in on_command_completion)",
)

# -- SauriCogs application: questions saved wrongly by the command that sets them ----------------------

_APPLY = (
    _HEAD
    + """


class Apply(commands.Cog):
    def __init__(self) -> None:
        self.questions: dict[int, list[str]] = {}

    @app_commands.command(name="setquestions", description="Set the application questions")
    async def setquestions(self, interaction: discord.Interaction, questions: str) -> None:
        self.questions[interaction.guild_id] = [q.strip() for q in questions.split(";")]
        await interaction.response.send_message("Saved.")

    @app_commands.command(name="apply", description="Apply to join the staff")
    async def apply(self, interaction: discord.Interaction) -> None:
        asked = self.questions.get(interaction.guild_id, [])
        await interaction.response.send_message("\\n".join(f"{n}. {q}" for n, q in enumerate(asked, 1)))
"""
    + _setup("Apply")
)
SAVED_WRONGLY = Seed(
    "apply",
    "questions saved wrongly by the command that sets them",
    _history(
        "apply",
        {"cog.py": _APPLY},
        "Keep the questions as typed",
        {
            "cog.py": _APPLY.replace(
                'self.questions[interaction.guild_id] = [q.strip() for q in questions.split(";")]',
                "self.questions[interaction.guild_id] = questions.strip()",
            )
        },
    ),
    _then(_slash("setquestions", 1, questions="Why join?; How old are you?"), _slash("apply", 2)),
    "apply lists the questions one letter per line",
    "app:apply",
    "seed_apply/cog.py",
    "Apply.setquestions",
    incident=False,
    origin=_REAL,
    inspired_by=(
        "elijabesu/SauriCogs issue #48 (application: setapply questions saved them so apply read them wrong)"
    ),
)

# -- cyberdisc-bot: a background task that runs before the bot is ready --------------------------------

_DIGEST = (
    _HEAD
    + """


def render_digest(count: int) -> str:
    return f"Today: {count} new messages"


class Digest(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.post_digest.start()

    async def cog_unload(self) -> None:
        self.post_digest.cancel()

    @tasks.loop(hours=24)
    async def post_digest(self) -> None:
        channel = discord.utils.get(self.bot.get_all_channels(), name="general")
        await channel.send(render_digest(3))

    @post_digest.before_loop
    async def wait_for_ready(self) -> None:
        await self.bot.wait_until_ready()
"""
    + _setup("Digest", "bot")
)
TASK_BEFORE_READY = Seed(
    "digest",
    "a background task that runs before the bot is ready",
    _history(
        "digest",
        {"cog.py": _DIGEST},
        "Drop the start-up wait",
        {
            "cog.py": _DIGEST.replace(
                "\n    @post_digest.before_loop\n    async def wait_for_ready(self) -> None:\n"
                "        await self.bot.wait_until_ready()\n",
                "\n",
            )
        },
    ),
    _nothing,
    "the daily digest never gets posted",
    "task:post_digest",
    "seed_digest/cog.py",
    "Digest.post_digest",
    origin=_REAL,
    inspired_by=(
        "CyberDiscovery/cyberdisc-bot PR #394 (wait for the bot to be ready before the background task)"
    ),
)

# -- bdaybot / discord.py: local time instead of UTC ----------------------------------------------------

_ZONES = '''
"""Where the server keeps its clock."""

SERVER_UTC_OFFSET_HOURS = 0
'''
_TIMEFMT = '''
"""How times are shown."""

from datetime import datetime, timedelta

from seed_meeting import zones


def shown_time(at: datetime) -> str:
    return (at + timedelta(hours=zones.SERVER_UTC_OFFSET_HOURS)).strftime("%H:%M UTC")
'''
_MEETING = (
    _HEAD
    + """
from datetime import UTC, datetime

from seed_meeting.timefmt import shown_time

NEXT_MEETING = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)


class Meetings(commands.Cog):
    @app_commands.command(name="meeting", description="When the next meeting starts")
    async def meeting(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"The next meeting starts at {shown_time(NEXT_MEETING)}")
"""
    + _setup("Meetings")
)
LOCAL_NOT_UTC = Seed(
    "meeting",
    "a time shown in the host's zone as if it were UTC",
    _history(
        "meeting",
        {"zones.py": _ZONES, "timefmt.py": _TIMEFMT, "cog.py": _MEETING},
        "Show times in the server's local time",
        {"zones.py": _ZONES.replace("SERVER_UTC_OFFSET_HOURS = 0", "SERVER_UTC_OFFSET_HOURS = 1")},
    ),
    _slash("meeting", 2),
    "the meeting time it shows is an hour late compared to the calendar",
    "app:meeting",
    "seed_meeting/zones.py",
    "SERVER_UTC_OFFSET_HOURS",
    incident=False,
    origin=_REAL,
    inspired_by="clamytoe/bdaybot issue #2 and Rapptz/discord.py issue #633 (local time where UTC was meant)",
)

# -- discordLevelingSystem: a ranking sorted as text ---------------------------------------------------

_LEVELS = '''
"""Experience per member."""

XP = {"ada": 120, "bo": 9, "cy": 45}


def top(xp: dict[str, int], count: int = 3) -> list[tuple[str, int]]:
    return sorted(xp.items(), key=lambda item: item[1], reverse=True)[:count]
'''
_TOP = (
    _HEAD
    + """
from seed_xprank.levels import XP, top


class Ranks(commands.Cog):
    @app_commands.command(name="top", description="The members with the most xp")
    async def top(self, interaction: discord.Interaction) -> None:
        lines = [f"{n}. {name} ({xp} xp)" for n, (name, xp) in enumerate(top(XP), 1)]
        await interaction.response.send_message("\\n".join(lines))
"""
    + _setup("Ranks")
)
SORTED_AS_TEXT = Seed(
    "xprank",
    "a ranking sorted as text",
    _history(
        "xprank",
        {"levels.py": _LEVELS, "cog.py": _TOP},
        "Sort ranks the way they are shown",
        {"levels.py": _LEVELS.replace("key=lambda item: item[1]", "key=lambda item: str(item[1])")},
    ),
    _slash("top", 2),
    "the top list puts bo with 9 xp above ada with 120",
    "app:top",
    "seed_xprank/levels.py",
    "top",
    incident=False,
    origin=_REAL,
    inspired_by="Defxult/discordLevelingSystem issue #22 (the leaderboard did not sort users by rank)",
)

# -- Jumper-Plugins dicetable: a guard that refuses valid input -----------------------------------------

_DICE = '''
"""Rolling with a modifier."""

import random


class NegativeValue(ValueError):
    pass


def roll_total(count: int, sides: int, modifier: int, rng: random.Random) -> int:
    if count < 0:
        raise NegativeValue("The dice count can't be less than 0.")
    return sum(rng.randint(1, sides) for _ in range(count)) + modifier
'''
_DROLL = (
    _HEAD
    + """
import random

from seed_droll.dice import roll_total


class DiceTable(commands.Cog):
    @commands.command(name="droll")
    async def droll(self, ctx: commands.Context, count: int, sides: int, modifier: int = 0) -> None:
        await ctx.send(f"rolled {roll_total(count, sides, modifier, random.Random())}")
"""
    + _setup("DiceTable")
)
GUARD_REFUSES_VALID = Seed(
    "droll",
    "a guard that refuses valid input",
    _history(
        "droll",
        {"dice.py": _DICE, "cog.py": _DROLL},
        "Refuse negative values",
        {
            "dice.py": _DICE.replace(
                '    if count < 0:\n        raise NegativeValue("The dice count can\'t be less than 0.")',
                "    if count < 0 or modifier < 0:\n"
                '        raise NegativeValue("Values can\'t be less than 0.")',
            )
        },
    ),
    _say(*["!droll 2 6 -1"] * 5),
    "droll breaks with a negative modifier",
    "command:droll",
    "seed_droll/dice.py",
    "roll_total",
    origin=_REAL,
    inspired_by="Redjumpman/Jumper-Plugins issue #48 (dicetable: a negative modifier raised NegativeValue)",
)

# -- DnD-Discord-Bot: a minus sign dropped ------------------------------------------------------------

_PARSE = '''
"""Reading "1d20 -5"."""


def parse_roll(text: str) -> tuple[int, int, int]:
    dice, _, rest = text.strip().partition(" ")
    count, sides = (int(part) for part in dice.lower().split("d"))
    modifier = int(rest) if rest else 0
    return count, sides, modifier
'''
_R = (
    _HEAD
    + """
import random

from seed_dnd.parse import parse_roll


class Dnd(commands.Cog):
    @commands.command(name="r")
    async def r(self, ctx: commands.Context, *, expression: str) -> None:
        count, sides, modifier = parse_roll(expression)
        rolled = [random.randint(1, sides) for _ in range(count)]
        await ctx.send(f"{expression}: {sum(rolled) + modifier}")
"""
    + _setup("Dnd")
)
SIGN_DROPPED = Seed(
    "dnd",
    "a minus sign dropped while parsing",
    _history(
        "dnd",
        {"parse.py": _PARSE, "cog.py": _R},
        "Accept +5 as a modifier",
        {
            "parse.py": _PARSE.replace(
                "modifier = int(rest) if rest else 0", 'modifier = int(rest.lstrip("+-")) if rest else 0'
            )
        },
    ),
    _say(*["!r 1d1 -5"] * 3),
    "!r 1d1 -5 gives 6, it adds the modifier instead of taking it away",
    "command:r",
    "seed_dnd/parse.py",
    "parse_roll",
    incident=False,
    origin=_REAL,
    inspired_by="JohnWhy/DnD-Discord-Bot issue #14 (a subtracted modifier was added)",
)

# -- dice-roller-bot: a modifier of zero answers nothing ----------------------------------------------

_ROLLER = '''
"""Evaluating "3d6+2"."""

import random
import re

TERM = re.compile(r"(?P<count>\\d+)d(?P<sides>\\d+)(?P<mod>[+-]\\d+)?")


def evaluate(expression: str) -> tuple[int, int | None]:
    match = TERM.fullmatch(expression)
    if match is None:
        return 0, None
    total = sum(random.randint(1, int(match["sides"])) for _ in range(int(match["count"])))
    modifier = int(match["mod"]) if match["mod"] is not None else 0
    return total + (modifier or 0), modifier
'''
_MOD = (
    _HEAD
    + """
from seed_modzero.roller import evaluate


class Mod(commands.Cog):
    @commands.command(name="mod")
    async def mod(self, ctx: commands.Context, expression: str) -> None:
        total, modifier = evaluate(expression)
        if modifier is not None:
            await ctx.send(f"{expression} = {total}")
"""
    + _setup("Mod")
)
ZERO_IS_NOTHING = Seed(
    "modzero",
    "a zero taken for nothing, so nothing is answered",
    _history(
        "modzero",
        {"roller.py": _ROLLER, "cog.py": _MOD},
        "Simplify the modifier",
        {
            "roller.py": _ROLLER.replace(
                'modifier = int(match["mod"]) if match["mod"] is not None else 0',
                'modifier = int(match["mod"] or 0) or None',
            )
        },
    ),
    _say(*["!mod 3d1+0"] * 3),
    "!mod says nothing at all when the modifier is 0",
    "command:mod",
    "seed_modzero/roller.py",
    "evaluate",
    incident=False,
    origin=_REAL,
    inspired_by="kreicer/dice-roller-bot issue #3 (the mod command gave no output for a modifier of 0)",
)

# -- Peribot: a reaction-role table keyed differently from the events ---------------------------------

_ROLES = '''
"""Which role each reaction gives."""

ROLE_FOR_EMOJI = {"🎮": "gamer", "🎨": "artist"}


def role_for(emoji: str) -> str:
    return ROLE_FOR_EMOJI[emoji]
'''
_REACTROLE = (
    _HEAD
    + """
from seed_reactrole.roles import role_for


class ReactionRoles(commands.Cog):
    def __init__(self) -> None:
        self.granted: list[tuple[int, str]] = []

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if payload.guild_id is None:
            return
        self.granted.append((payload.user_id, role_for(str(payload.emoji))))
"""
    + _setup("ReactionRoles")
)


async def _react_roles(world: VirtualWorld) -> None:
    post = await world.users["alice"].send(world.general, "pick your roles below")
    for user in ("alice", "mallory"):
        for emoji in ("🎮", "🎨"):
            await world.users[user].react(post, emoji)
            await world.quiesce()
    await world.users["alice"].unreact(post, "🎮")
    await world.users["alice"].react(post, "🎮")
    await world.quiesce()


REACTION_TABLE = Seed(
    "reactrole",
    "a reaction-role table keyed differently from the events",
    _history(
        "reactrole",
        {"roles.py": _ROLES, "cog.py": _REACTROLE},
        "Name the emoji in the role table",
        {
            "roles.py": _ROLES.replace(
                '{"🎮": "gamer", "🎨": "artist"}', '{":video_game:": "gamer", ":art:": "artist"}'
            )
        },
    ),
    _react_roles,
    "reacting with the controller emoji doesn't give me the gamer role",
    "listener:on_raw_reaction_add",
    "seed_reactrole/roles.py",
    "ROLE_FOR_EMOJI",
    origin=_REAL,
    inspired_by=(
        "jcsumlin/Peribot PR #34 (fix reaction roles) and SylteA/Discord-Bot PR #88 (raw reaction events)"
    ),
)

# -- Dumb-Cogs welcome: a default channel Discord no longer has ---------------------------------------

_CHANNELS = '''
"""Where greetings go."""

import discord


def default_channel(guild: discord.Guild) -> discord.abc.GuildChannel | None:
    return guild.system_channel or (guild.text_channels[0] if guild.text_channels else None)


def welcome_channel_id(guild: discord.Guild) -> int:
    return default_channel(guild).id
'''
_GREETER = (
    _HEAD
    + """
from seed_greeter.channels import welcome_channel_id


class Greeter(commands.Cog):
    def __init__(self) -> None:
        self.settings: dict[int, dict[str, int]] = {}

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None:
            return
        self.settings.setdefault(message.guild.id, {"CHANNEL": welcome_channel_id(message.guild)})
"""
    + _setup("Greeter")
)
GONE_DEFAULT_CHANNEL = Seed(
    "greeter",
    "a default channel Discord no longer has",
    _history(
        "greeter",
        {"channels.py": _CHANNELS, "cog.py": _GREETER},
        "Use the guild's default channel",
        {
            "channels.py": _CHANNELS.replace(
                "return guild.system_channel or (guild.text_channels[0] if guild.text_channels else None)",
                "return guild.get_channel(guild.id)",
            )
        },
    ),
    _say(*["hi all"] * 5),
    "the greeter crashes on every message in general",
    "listener:on_message",
    "seed_greeter/channels.py",
    "default_channel",
    origin=_REAL,
    inspired_by=(
        "irdumbs/Dumb-Cogs issue #47 (welcome: server.default_channel is None since Discord removed it)"
    ),
)

# -- JDBot: a view's interaction_check that fails for slash commands ----------------------------------

_PAGER = '''
"""Paged messages."""

import discord


class Pager(discord.ui.View):
    def __init__(self, owner_id: int, pages: list[str]) -> None:
        super().__init__(timeout=None)
        self.owner_id = owner_id
        self.pages = pages
        self.index = 0

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return interaction.user.id == self.owner_id

    @discord.ui.button(label="Next", custom_id="pager-next")
    async def next_page(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.index = (self.index + 1) % len(self.pages)
        await interaction.response.edit_message(content=self.pages[self.index])
'''
_PAGES = (
    _HEAD
    + """
from seed_pager.view import Pager

PAGES = ["Rules 1/3: be kind", "Rules 2/3: no spam", "Rules 3/3: have fun"]


class Rules(commands.Cog):
    @app_commands.command(name="pages", description="The rules, page by page")
    async def pages(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(PAGES[0], view=Pager(interaction.user.id, PAGES))
"""
    + _setup("Rules")
)
VIEW_CHECK_FAILS = Seed(
    "pager",
    "a view's interaction_check that raises",
    _history(
        "pager",
        {"view.py": _PAGER, "cog.py": _PAGES},
        "Share the owner check with the prefix pager",
        {
            "view.py": _PAGER.replace(
                "return interaction.user.id == self.owner_id",
                "return interaction.user.id == self.ctx.author.id",
            )
        },
    ),
    _click("pages", "pager-next", 5),
    "the next button on the rules message fails every time",
    "view:Pager.interaction_check",
    "seed_pager/view.py",
    "Pager.interaction_check",
    origin=_REAL,
    inspired_by="JDsProjects/JDBot PR #116 (fix a view's interaction_check)",
)

# -- Trusty-cogs serverstats: a button reading an attribute its view renamed --------------------------

_SVIEWS = '''
"""The server stats message."""

import discord


class StatsView(discord.ui.View):
    def __init__(self, source: list[str]) -> None:
        super().__init__(timeout=None)
        self.source = source
        self.add_item(RefreshButton())


class RefreshButton(discord.ui.Button):
    def __init__(self) -> None:
        super().__init__(label="Refresh", custom_id="stats-refresh")

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("\\n".join(self.view.source), ephemeral=True)
'''
_SSTATS = (
    _HEAD
    + """
from seed_sstats.views import StatsView


class ServerStats(commands.Cog):
    @app_commands.command(name="serverstats", description="Numbers about this server")
    async def serverstats(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Server stats", view=StatsView(["members: 4", "channels: 2"]))
"""
    + _setup("ServerStats")
)
RENAMED_VIEW_ATTRIBUTE = Seed(
    "sstats",
    "a button reading an attribute its view renamed",
    _history(
        "sstats",
        {"views.py": _SVIEWS, "cog.py": _SSTATS},
        "Make the view's source private",
        {"views.py": _SVIEWS.replace("        self.source = source\n", "        self._source = source\n")},
    ),
    _click("serverstats", "stats-refresh", 5),
    "refresh on the server stats message is broken",
    "view:RefreshButton.callback",
    "seed_sstats/views.py",
    "RefreshButton.callback",
    origin=_REAL,
    inspired_by=(
        "TrustyJAID/Trusty-cogs PR #264 (serverstats: the button read the view's source by another name)"
    ),
)

# -- dice-roller-bot: a pattern made stricter, its failure swallowed ----------------------------------

_MODS = '''
"""Several dice terms at once: "2d20-1 4d4"."""

import re

TERM = re.compile(r"(?P<count>\\d+)d(?P<sides>\\d+)(?P<mod>[+-]\\d+)?")


def split(term: str) -> tuple[int, int, int]:
    match = TERM.fullmatch(term)
    return int(match["count"]), int(match["sides"]), int(match["mod"] or 0)
'''
_MODSCOG = (
    _HEAD
    + """
from seed_mods.terms import split


def highest(count: int, sides: int, modifier: int) -> int:
    return count * sides + modifier


class Mods(commands.Cog):
    @commands.command(name="mods")
    async def mods(self, ctx: commands.Context, *terms: str) -> None:
        try:
            best = [highest(*split(term)) for term in terms]
        except Exception:
            return
        await ctx.send(f"highest possible: {best}")
"""
    + _setup("Mods")
)
STRICT_PATTERN_SWALLOWED = Seed(
    "mods",
    "a stricter pattern whose failure is swallowed",
    _history(
        "mods",
        {"terms.py": _MODS, "cog.py": _MODSCOG},
        "Require the sign of a modifier",
        {"terms.py": _MODS.replace(')?")', ')")')},
    ),
    _say(*["!mods 2d20-1 4d4"] * 3),
    "!mods gives no answer when one of the dice has no modifier",
    "command:mods",
    "seed_mods/terms.py",
    "TERM",
    incident=False,
    origin=_REAL,
    inspired_by="kreicer/dice-roller-bot issue #1 (no answer when a roll held a die without a modifier)",
)

# -- reminder-bot: due times shifted by the host's zone -------------------------------------------------

_WHEN = '''
"""When a nudge is due."""

from datetime import datetime, timedelta

HOST_UTC_OFFSET_HOURS = -5


def seconds_until(now: datetime, delay_s: int) -> int:
    due = now + timedelta(seconds=delay_s)
    return int((due - now).total_seconds())
'''
_NUDGE = (
    _HEAD
    + """
from datetime import UTC, datetime

from seed_nudge.when import seconds_until


class Nudges(commands.Cog):
    @app_commands.command(name="nudge", description="Nudge me after some seconds")
    async def nudge(self, interaction: discord.Interaction, seconds: int) -> None:
        wait = seconds_until(datetime.now(UTC), seconds)
        await interaction.response.send_message(f"New nudge registered in {wait} seconds.")
"""
    + _setup("Nudges")
)
DUE_TIME_SHIFTED = Seed(
    "nudge",
    "due times shifted by the host's zone",
    _history(
        "nudge",
        {"when.py": _WHEN, "cog.py": _NUDGE},
        "Store due times in host time",
        {
            "when.py": _WHEN.replace(
                "due = now + timedelta(seconds=delay_s)",
                "due = now + timedelta(seconds=delay_s) - timedelta(hours=HOST_UTC_OFFSET_HOURS)",
            )
        },
    ),
    _slash("nudge", 2, seconds=10),
    "I asked for a nudge in 10 seconds and it says 18010 seconds",
    "app:nudge",
    "seed_nudge/when.py",
    "seconds_until",
    incident=False,
    origin=_REAL,
    inspired_by="reminder-bot/bot issue #14 (times off by the host's timezone hours)",
)

# -- SauriCogs marriage: a settings group name misspelled ---------------------------------------------

_MSTORE = '''
"""Prices of the marriage actions, per guild."""


def action_price(config: dict[str, dict[str, int]], action: str) -> int:
    return config["actions"][action]


def set_price(config: dict[str, dict[str, int]], action: str, price: int) -> None:
    config["actions"][action] = price
'''
_MARRIAGE = (
    _HEAD
    + """
from seed_marriage.store import action_price, set_price


class Marriage(commands.Cog):
    def __init__(self) -> None:
        self.config: dict[str, dict[str, int]] = {"actions": {"hug": 5, "kiss": 10}}

    @commands.command(name="changeprice")
    async def changeprice(self, ctx: commands.Context, action: str, price: int) -> None:
        old = action_price(self.config, action)
        set_price(self.config, action, price)
        await ctx.send(f"{action}: {old} → {price}")
"""
    + _setup("Marriage")
)
GROUP_MISSPELLED = Seed(
    "marriage",
    "a settings group name misspelled",
    _history(
        "marriage",
        {"store.py": _MSTORE, "cog.py": _MARRIAGE},
        "Split reading prices from setting them",
        {"store.py": _MSTORE.replace('return config["actions"][action]', 'return config["actoins"][action]')},
    ),
    _say(*["!changeprice hug 7"] * 5),
    "changeprice errors for every action",
    "command:changeprice",
    "seed_marriage/store.py",
    "action_price",
    origin=_REAL,
    inspired_by="elijabesu/SauriCogs issues #21 and #23 (marriage changeprice: a misspelled config group)",
)

# -- SauriCogs CookieStore: defaults without a group the commands use ---------------------------------

_CCONFIG = '''
"""Defaults of a guild's cookie store."""

DEFAULT_GUILD = {"items": {}, "roles": {}}
'''
_COOKIES = (
    _HEAD
    + """
import copy

from seed_cookies.config import DEFAULT_GUILD


class CookieStore(commands.Cog):
    def __init__(self) -> None:
        self.guilds: dict[int, dict[str, dict[str, int]]] = {}

    def store(self, guild_id: int) -> dict[str, dict[str, int]]:
        return self.guilds.setdefault(guild_id, copy.deepcopy(DEFAULT_GUILD))

    @app_commands.command(name="cookierole", description="Sell a role for cookies")
    async def cookierole(self, interaction: discord.Interaction, role: str, price: int) -> None:
        self.store(interaction.guild_id)["roles"][role] = price
        await interaction.response.send_message(f"{role} now costs {price} cookies")
"""
    + _setup("CookieStore")
)
DEFAULTS_MISSING_GROUP = Seed(
    "cookies",
    "defaults without a group the commands use",
    _history(
        "cookies",
        {"config.py": _CCONFIG, "cog.py": _COOKIES},
        "Items are enough for now",
        {"config.py": _CCONFIG.replace('{"items": {}, "roles": {}}', '{"items": {}}')},
    ),
    _slash("cookierole", 5, role="vip", price=50),
    "adding a role with /cookierole fails",
    "app:cookierole",
    "seed_cookies/config.py",
    "DEFAULT_GUILD",
    origin=_REAL,
    inspired_by="elijabesu/SauriCogs issue #75 (CookieStore: KeyError 'roles' when adding a role)",
)

# -- discord-super-utils: a comparison method reading the wrong attribute -----------------------------

_MEMBERS = '''
"""Standings on the ladder."""

from dataclasses import dataclass


@dataclass
class Standing:
    name: str
    xp: int

    def __lt__(self, other: "Standing") -> bool:
        return self.xp < other.xp
'''
_LADDER = (
    _HEAD
    + """
from seed_ladder.members import Standing

XP = {"ada": 120, "bo": 9}


class Ladder(commands.Cog):
    @app_commands.command(name="ladder", description="The ladder")
    async def ladder(self, interaction: discord.Interaction) -> None:
        standings = sorted((Standing(name, xp) for name, xp in XP.items()), reverse=True)
        await interaction.response.send_message(", ".join(s.name for s in standings))
"""
    + _setup("Ladder")
)
COMPARISON_WRONG_ATTRIBUTE = Seed(
    "ladder",
    "a comparison method reading the wrong attribute",
    _history(
        "ladder",
        {"members.py": _MEMBERS, "cog.py": _LADDER},
        "Compare standings by net xp",
        {"members.py": _MEMBERS.replace("return self.xp < other.xp", "return self.xp < other.net")},
    ),
    _slash("ladder", 5),
    "the ladder breaks as soon as two people have xp",
    "app:ladder",
    "seed_ladder/members.py",
    "Standing.__lt__",
    origin=_REAL,
    inspired_by=(
        "discordsuperutils/discord-super-utils issue #7 (a leaderboard failed with two members or more)"
    ),
)

# -- shaheen: a decorator's module no longer imported --------------------------------------------------

_ROTATE = (
    _HEAD
    + """

STATUSES = ["watching the logs", "playing with cogs"]


class StatusRotation(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.turn = 0

    async def cog_load(self) -> None:
        self.rotate.start()

    @tasks.loop(minutes=30)
    async def rotate(self) -> None:
        self.turn = (self.turn + 1) % len(STATUSES)
"""
    + _setup("StatusRotation", "bot")
)
MISSING_IMPORT = Seed(
    "rotate",
    "a decorator's module no longer imported",
    _history(
        "rotate",
        {"cog.py": _ROTATE},
        "Tidy the imports",
        {
            "cog.py": _ROTATE.replace(
                "from discord.ext import commands, tasks", "from discord.ext import commands"
            )
        },
    ),
    _nothing,
    "the rotate extension doesn't load any more",
    "extension:seed_rotate.cog",
    "seed_rotate/cog.py",
    "StatusRotation.rotate",
    origin=_REAL,
    inspired_by="solomonchidera/shaheen PR #72 (NameError: tasks.loop used without importing tasks)",
)

# -- nextcord example: an optional modal field left empty ---------------------------------------------

_PETTEXT = '''
"""What the pet form says back."""


def describe(name: str, description: str) -> str:
    return f"{name}: {description or 'no description'}"
'''
_PET = (
    _HEAD
    + """
from seed_pet.text import describe


class PetForm(discord.ui.Modal, title="Your pet"):
    name = discord.ui.TextInput(label="Name", custom_id="pet-name")
    description = discord.ui.TextInput(label="Description", custom_id="pet-description", required=False)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(describe(self.name.value, self.description.value))


class Pets(commands.Cog):
    @app_commands.command(name="pet", description="Tell us about your pet")
    async def pet(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(PetForm())
"""
    + _setup("Pets")
)


async def _pet_forms(world: VirtualWorld) -> None:
    for _ in range(5):
        shown = await world.users["alice"].slash(world.general, "pet")
        await world.users["alice"].submit_modal(shown, {"pet-name": "Rex", "pet-description": ""})
        await world.quiesce()


OPTIONAL_FIELD_EMPTY = Seed(
    "pet",
    "an optional modal field left empty",
    _history(
        "pet",
        {"text.py": _PETTEXT, "cog.py": _PET},
        "Show the first word of the description",
        {
            "text.py": _PETTEXT.replace(
                "return f\"{name}: {description or 'no description'}\"",
                'return f"{name}: {description.split()[0]}"',
            )
        },
    ),
    _pet_forms,
    "the pet form fails when I leave the description empty",
    "modal:PetForm.on_submit",
    "seed_pet/text.py",
    "describe",
    origin=_REAL,
    inspired_by="nextcord/nextcord issue #749 (a modal's optional input read as if filled: IndexError)",
)

# -- Red-DiscordBot downloader: an entry written without the key its reader needs ---------------------

_REGISTRY = (
    _HEAD
    + """


class Registry(commands.Cog):
    def __init__(self) -> None:
        self.installed: dict[str, dict[str, str]] = {}

    @commands.command(name="install")
    async def install(self, ctx: commands.Context, name: str) -> None:
        self.installed[name] = {"prefix": f"cogs.{name}", "repo": "main"}
        await ctx.send(f"installed {name}")

    @commands.command(name="uninstall")
    async def uninstall(self, ctx: commands.Context, name: str) -> None:
        entry = self.installed.get(name)
        if entry is None:
            await ctx.send(f"{name} is not installed")
            return
        await ctx.send(f"removed {entry['prefix']}")
"""
    + _setup("Registry")
)
ENTRY_WITHOUT_KEY = Seed(
    "registry",
    "an entry written without the key its reader needs",
    _history(
        "registry",
        {"cog.py": _REGISTRY},
        "Record where an installed cog lives",
        {
            "cog.py": _REGISTRY.replace(
                '{"prefix": f"cogs.{name}", "repo": "main"}', '{"path": f"cogs/{name}.py", "repo": "main"}'
            )
        },
    ),
    _say("!install weather", *["!uninstall weather"] * 5),
    "uninstall throws for anything installed since the update",
    "command:uninstall",
    "seed_registry/cog.py",
    "Registry.install",
    origin=_REAL,
    inspired_by=(
        "Cog-Creators/Red-DiscordBot issue #2237, PR #2238 (Downloader: KeyError 'prefix' on uninstall)"
    ),
)

# -- sir-lancebot AoC: a select menu for a day without data -------------------------------------------

_AOCSTATS = '''
"""Who finished which Advent of Code day."""


def leaders(data: dict[str, list[str]], day: str) -> str:
    return ", ".join(data.get(f"day-{day}", [])) or "nobody yet"
'''
_AOCVIEW = '''
"""The day picker under the leaderboard."""

import discord

from seed_aoc.stats import leaders

DAYS = [discord.SelectOption(label=f"Day {day}", value=str(day)) for day in (1, 2, 3)]


class DayView(discord.ui.View):
    def __init__(self, data: dict[str, list[str]]) -> None:
        super().__init__(timeout=None)
        self.data = data

    @discord.ui.select(custom_id="aoc-day", options=DAYS)
    async def pick(self, interaction: discord.Interaction, select: discord.ui.Select) -> None:
        await interaction.response.send_message(leaders(self.data, select.values[0]), ephemeral=True)
'''
_AOC = (
    _HEAD
    + """
from seed_aoc.view import DayView

FINISHED = {"day-1": ["ada", "bo"], "day-2": ["ada"]}


class Aoc(commands.Cog):
    @app_commands.command(name="aoc", description="Advent of Code standings")
    async def aoc(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Pick a day", view=DayView(FINISHED))
"""
    + _setup("Aoc")
)


async def _pick_day(world: VirtualWorld) -> None:
    await world.users["alice"].slash(world.general, "aoc")
    await world.quiesce()
    message = bot_messages(world, world.general)[-1]
    for _ in range(5):
        await world.users["alice"].select(message, ["3"], custom_id="aoc-day")
        await world.quiesce()


DAY_WITHOUT_DATA = Seed(
    "aoc",
    "a select menu's choice with no data behind it",
    _history(
        "aoc",
        {"stats.py": _AOCSTATS, "view.py": _AOCVIEW, "cog.py": _AOC},
        "Read the day's finishers directly",
        {
            "stats.py": _AOCSTATS.replace(
                '", ".join(data.get(f"day-{day}", [])) or "nobody yet"', '", ".join(data[f"day-{day}"])'
            )
        },
    ),
    _pick_day,
    "picking day 3 in the aoc menu breaks",
    "view:DayView.pick",
    "seed_aoc/stats.py",
    "leaders",
    origin=_REAL,
    inspired_by="python-discord/sir-lancebot PR #857 (AoC day-and-star view reading a day's data by key)",
)

REAL_SEEDS = (
    RANK_FROM_ZERO,
    GUILD_WITHOUT_DATA,
    CONFIG_KEY_MISSPELLED,
    SETTING_NOT_DEFAULTED,
    SAVED_WRONGLY,
    TASK_BEFORE_READY,
    LOCAL_NOT_UTC,
    SORTED_AS_TEXT,
    GUARD_REFUSES_VALID,
    SIGN_DROPPED,
    ZERO_IS_NOTHING,
    REACTION_TABLE,
    GONE_DEFAULT_CHANNEL,
    VIEW_CHECK_FAILS,
    RENAMED_VIEW_ATTRIBUTE,
    STRICT_PATTERN_SWALLOWED,
    DUE_TIME_SHIFTED,
    GROUP_MISSPELLED,
    DEFAULTS_MISSING_GROUP,
    COMPARISON_WRONG_ATTRIBUTE,
    MISSING_IMPORT,
    OPTIONAL_FIELD_EMPTY,
    ENTRY_WITHOUT_KEY,
    DAY_WITHOUT_DATA,
)
