"""Seeded faults in the shapes the first set did not have: wrong output three calls down, a failing
view button, one guild's configuration, a changed settings default, bad data stored earlier by
another command, a fault one attribute away, and an exception swallowed into a wrong answer.

`ALL_SEEDS` is the whole set the suite and the benchmark run (the first set, then these).
"""

from __future__ import annotations

from mendbot.tools.world import GUILD_NAME, VirtualWorld
from tests.harness.discord import bot_messages
from tests.localise.repo import Commit
from tests.localise.seeds import _HEAD, SEEDS, Drive, Seed, _slash, _then
from tests.localise.seeds_handlers import HANDLER_SEEDS
from tests.localise.seeds_real import REAL_SEEDS

__all__ = ["ALL_SEEDS", "NEW_SEEDS"]

# -- 18. wrong output three calls below the handler -----------------------------------------------

_FORMULAS = '''
"""Body-mass formulas."""


def bmi(weight_kg: float, height_m: float) -> float:
    return weight_kg / (height_m ** 2)


def ideal_weight(height_m: float) -> float:
    return 22 * height_m ** 2
'''
_BANDS = '''
"""Bands of the body-mass index."""

from seed_bmi.formulas import bmi

BANDS = [(18.5, "under"), (25.0, "normal"), (30.0, "over")]


def band(index: float) -> str:
    for limit, name in BANDS:
        if index < limit:
            return name
    return "obese"


def assess(weight_kg: float, height_m: float) -> tuple[float, str]:
    index = bmi(weight_kg, height_m)
    return index, band(index)
'''
_TEXT = '''
"""What /bmi says."""

from seed_bmi.bands import assess


def describe(weight_kg: float, height_m: float) -> str:
    index, name = assess(weight_kg, height_m)
    return f"BMI {index:.1f} ({name})"
'''
_BMI = (
    _HEAD
    + """
from seed_bmi.text import describe


class Bmi(commands.Cog):
    @app_commands.command(name="bmi", description="Body-mass index")
    async def bmi(self, interaction: discord.Interaction, weight: float, height: float) -> None:
        await interaction.response.send_message(describe(weight, height))
"""
)
_BMI_SETUP = """

async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Bmi())
"""
_BMI_INFO = """
    @app_commands.command(name="bmiinfo", description="What /bmi does")
    async def bmiinfo(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("/bmi takes kilograms and metres.")
"""
DEEP_WRONG_OUTPUT = Seed(
    "bmi",
    "wrong output three calls below the handler",
    (
        Commit(
            160,
            "Add /bmi",
            {
                "seed_bmi/__init__.py": "",
                "seed_bmi/formulas.py": _FORMULAS,
                "seed_bmi/bands.py": _BANDS,
                "seed_bmi/text.py": _TEXT,
                "seed_bmi/cog.py": _BMI + _BMI_SETUP,
            },
        ),
        Commit(
            3,
            "Fewer parentheses",
            {"seed_bmi/formulas.py": _FORMULAS.replace("(height_m ** 2)", "height_m * 2")},
        ),
        Commit(1, "Explain /bmi", {"seed_bmi/cog.py": _BMI + _BMI_INFO + _BMI_SETUP}),
    ),
    _slash("bmi", 3, weight=70.0, height=1.75),
    "/bmi gives wrong results: 70 kg at 1.75 m says BMI 20.0",
    "app:bmi",
    "seed_bmi/formulas.py",
    "bmi",
    incident=False,
)

# -- 19. a view's button whose callback fails --------------------------------------------------------

_TALLY = '''
"""Poll tallies."""


class Tally:
    def __init__(self, options: list[str]) -> None:
        self.counts = {option: 0 for option in options}

    def add(self, option: str) -> int:
        self.counts[option.lower()] += 1
        return self.counts[option.lower()]
'''
_POLL = (
    _HEAD
    + """
from seed_poll.tally import Tally


class PollView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)
        self.tally = Tally(["yes", "no"])

    @discord.ui.button(label="Yes", custom_id="poll-yes")
    async def vote(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        count = self.tally.add(button.label or "")
        await interaction.response.send_message(f"{count} vote(s) for {button.label}", ephemeral=True)


class Poll(commands.Cog):
    @app_commands.command(name="poll", description="Start a poll")
    async def poll(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Vote!", view=PollView())


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Poll())
"""
)


def _clicks(times: int) -> Drive:
    """Post the poll, then press its button: the bot records each failing click as a
    `view:<View.callback>` action, as it records a failing command."""

    async def drive(world: VirtualWorld) -> None:
        await world.users["alice"].slash(world.general, "poll")
        await world.quiesce()
        message = bot_messages(world, world.general)[-1]
        for _ in range(times):
            await world.users["alice"].click(message, custom_id="poll-yes")
            await world.quiesce()

    return drive


VIEW_CALLBACK = Seed(
    "poll",
    "a view's button callback fails",
    (
        Commit(
            120,
            "Add polls",
            {"seed_poll/__init__.py": "", "seed_poll/tally.py": _TALLY, "seed_poll/cog.py": _POLL},
        ),
        Commit(
            2,
            "Normalise poll options",
            {
                "seed_poll/tally.py": _TALLY.replace(
                    "        self.counts[option.lower()] += 1\n        return self.counts[option.lower()]",
                    "        self.counts[option.upper()] += 1\n        return self.counts[option.upper()]",
                )
            },
        ),
    ),
    _clicks(5),
    "the vote button is broken",
    "view:PollView.vote",
    "seed_poll/tally.py",
    "Tally.add",
)

# -- 20. one guild's configuration -------------------------------------------------------------------

_GUILDS_JSON = (
    '{\n  "default": {"greeting": "Welcome, {member}!"},\n'
    f'  "{GUILD_NAME}": {{"greeting": "Hello {{member}}, read the rules!"}}\n}}\n'
)
_GUILD_CONFIG = '''
"""Per-server settings, from guilds.json next to this file."""

import json
from pathlib import Path


def guild_config(guild_name: str) -> dict:
    settings = json.loads(Path(__file__).with_name("guilds.json").read_text())
    return settings.get(guild_name, settings["default"])
'''
_WELCOME = (
    _HEAD
    + """
from seed_welcome.config import guild_config


class Welcome(commands.Cog):
    @app_commands.command(name="welcome", description="Welcome someone")
    async def welcome(self, interaction: discord.Interaction, person: str) -> None:
        template = guild_config(interaction.guild.name if interaction.guild else "")["greeting"]
        await interaction.response.send_message(template.format(member=person))


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Welcome())
"""
)
GUILD_CONFIG = Seed(
    "welcome",
    "one guild's configuration",
    (
        Commit(
            150,
            "Add /welcome with per-server greetings",
            {
                "seed_welcome/__init__.py": "",
                "seed_welcome/config.py": _GUILD_CONFIG,
                "seed_welcome/guilds.json": _GUILDS_JSON,
                "seed_welcome/cog.py": _WELCOME,
            },
        ),
        Commit(
            2,
            "Friendlier greeting for our server",
            {"seed_welcome/guilds.json": _GUILDS_JSON.replace("Hello {member}, read", "Hello {user}, read")},
        ),
    ),
    _slash("welcome", 5, person="bob"),
    "/welcome is broken on our server",
    "app:welcome",
    "seed_welcome/guilds.json",
    "guilds.json",
)

# -- 21. a changed default in a settings object --------------------------------------------------------

_LIMITS = '''
"""Settings of the shop listing."""

from dataclasses import dataclass


@dataclass
class ListingSettings:
    page_size: int = 5
    currency: str = "EUR"
'''
_PAGES = '''
"""Paging of long lists."""

from seed_shop.settings import ListingSettings


def page_count(items: list[str], settings: ListingSettings) -> int:
    return -(-len(items) // settings.page_size)


def page(items: list[str], number: int, settings: ListingSettings) -> list[str]:
    start = number * settings.page_size
    return items[start : start + settings.page_size]
'''
_SHOP = (
    _HEAD
    + """
from seed_shop.pages import page, page_count
from seed_shop.settings import ListingSettings

ITEMS = [f"item {n}" for n in range(12)]


class Shop(commands.Cog):
    def __init__(self) -> None:
        self.settings = ListingSettings()

    @app_commands.command(name="shop", description="What is for sale")
    async def shop(self, interaction: discord.Interaction) -> None:
        pages = page_count(ITEMS, self.settings)
        shown = ", ".join(page(ITEMS, 0, self.settings))
        await interaction.response.send_message(f"{shown} (page 1 of {pages})")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Shop())
"""
)
CONFIG_DEFAULT = Seed(
    "shop",
    "a changed default in a settings object",
    (
        Commit(
            140,
            "Add /shop",
            {
                "seed_shop/__init__.py": "",
                "seed_shop/settings.py": _LIMITS,
                "seed_shop/pages.py": _PAGES,
                "seed_shop/cog.py": _SHOP,
            },
        ),
        Commit(
            2,
            "Show the whole list unless a page size is set",
            {"seed_shop/settings.py": _LIMITS.replace("page_size: int = 5", "page_size: int = 0")},
        ),
    ),
    _slash("shop", 5),
    "/shop is broken",
    "app:shop",
    "seed_shop/settings.py",
    "ListingSettings",
)

# -- 22. bad data stored earlier by another command ------------------------------------------------------

_BOOK = '''
"""Scores, kept in the bot's database."""

from mendbot.db import cog_rows

FIELDS = ("name", "points")


class ScoreBook:
    def __init__(self, db) -> None:
        self.db = db

    async def record(self, user: int, name: str, points: int) -> None:
        values = [name, points]
        await cog_rows.put(self.db, "scores", str(user), dict(zip(FIELDS, values)))

    async def everyone(self) -> list[dict]:
        return list((await cog_rows.all_rows(self.db, "scores")).values())
'''
_BOARD = '''
"""The leaderboard."""


def leaderboard(rows: list[dict]) -> str:
    ranked = sorted(rows, key=lambda row: row["points"] + 0, reverse=True)
    return "\\n".join(f"{row['name']}: {row['points']}" for row in ranked)
'''
_SCORES = (
    _HEAD
    + """
from seed_scores.board import leaderboard
from seed_scores.book import ScoreBook


class Scores(commands.Cog):
    def __init__(self, book: ScoreBook) -> None:
        self.book = book

    @app_commands.command(name="score", description="Record your points")
    async def score(self, interaction: discord.Interaction, points: int) -> None:
        await self.book.record(interaction.user.id, interaction.user.name, points)
        await interaction.response.send_message("Recorded.")

    @app_commands.command(name="leaders", description="The leaderboard")
    async def leaders(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(leaderboard(await self.book.everyone()) or "No scores yet.")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Scores(ScoreBook(bot.services.db)))
"""
)
PROVENANCE = Seed(
    "scores",
    "bad data written earlier by another command",
    (
        Commit(
            110,
            "Add scores",
            {
                "seed_scores/__init__.py": "",
                "seed_scores/book.py": _BOOK,
                "seed_scores/board.py": _BOARD,
                "seed_scores/cog.py": _SCORES,
            },
        ),
        Commit(
            3,
            "Keep points as typed, for the export",
            {"seed_scores/book.py": _BOOK.replace("values = [name, points]", "values = [name, f'{points}']")},
        ),
        Commit(
            1,
            "Say when there are no scores",
            {"seed_scores/board.py": _BOARD + "\n\nEMPTY = 'No scores yet.'\n"},
        ),
    ),
    _then(_slash("score", 1, points=7), _slash("leaders", 5)),
    "/leaders is broken",
    "app:leaders",
    "seed_scores/book.py",
    "ScoreBook.record",
)

# -- 23. a fault one attribute away (self.store.method) ---------------------------------------------

_STOCK = '''
"""Stock levels."""


class Stock:
    def __init__(self) -> None:
        self.levels = {"apples": 12, "pears": 4, "plums": 0}

    def available(self, item: str) -> int:
        return self.levels.get(item, 0)

    def reserve(self, item: str, count: int) -> bool:
        if self.available(item) >= count:
            self.levels[item] -= count
            return True
        return False
'''
_STORE_COG = (
    _HEAD
    + """
from seed_stock.stock import Stock


class Store(commands.Cog):
    def __init__(self, stock: Stock) -> None:
        self.stock = stock

    @app_commands.command(name="instock", description="How many are left")
    async def instock(self, interaction: discord.Interaction, item: str) -> None:
        await interaction.response.send_message(f"{self.stock.available(item)} {item} left")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Store(Stock()))
"""
)
ATTRIBUTE_CALL = Seed(
    "stock",
    "a fault one attribute away",
    (
        Commit(
            130,
            "Add /instock",
            {"seed_stock/__init__.py": "", "seed_stock/stock.py": _STOCK, "seed_stock/cog.py": _STORE_COG},
        ),
        Commit(
            2,
            "Look items up by their plural",
            {
                "seed_stock/stock.py": _STOCK.replace(
                    "self.levels.get(item, 0)", 'self.levels.get(item + "s", 0)'
                )
            },
        ),
        Commit(1, "Clearer reply", {"seed_stock/cog.py": _STORE_COG.replace("} left", "} still in stock")}),
    ),
    _slash("instock", 3, item="apples"),
    "/instock gives wrong results: apples says 0 still in stock but we have 12",
    "app:instock",
    "seed_stock/stock.py",
    "Stock.available",
    incident=False,
)

# -- 24. an exception swallowed into a wrong answer -----------------------------------------------------

_PRICES = '''
"""Prices from the price list."""

PRICE_LIST = {"apples": "1.20", "pears": "0.90", "plums": "2.10"}


def parse_price(text: str) -> float:
    return float(text)


def price_of(item: str) -> float:
    try:
        return parse_price(PRICE_LIST[item])
    except (KeyError, ValueError):
        return 0.0
'''
_PRICE_COG = (
    _HEAD
    + """
from seed_price.prices import price_of


class Price(commands.Cog):
    @app_commands.command(name="price", description="The price of an item")
    async def price(self, interaction: discord.Interaction, item: str) -> None:
        await interaction.response.send_message(f"{item} cost {price_of(item):.2f} each")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Price())
"""
)
SWALLOWED = Seed(
    "price",
    "an exception swallowed into a wrong answer",
    (
        Commit(
            100,
            "Add /price",
            {"seed_price/__init__.py": "", "seed_price/prices.py": _PRICES, "seed_price/cog.py": _PRICE_COG},
        ),
        Commit(
            3,
            "Accept prices written with a decimal comma",
            {
                "seed_price/prices.py": _PRICES.replace(
                    "return float(text)", 'return float(text.replace(".", ","))'
                )
            },
        ),
        Commit(1, "Say each", {"seed_price/cog.py": _PRICE_COG.replace("cost", "costs")}),
    ),
    _slash("price", 3, item="apples"),
    "/price gives wrong results: apples costs 0.00",
    "app:price",
    "seed_price/prices.py",
    "parse_price",
    incident=False,
)

NEW_SEEDS = (
    DEEP_WRONG_OUTPUT,
    VIEW_CALLBACK,
    GUILD_CONFIG,
    CONFIG_DEFAULT,
    PROVENANCE,
    ATTRIBUTE_CALL,
    SWALLOWED,
)
ALL_SEEDS = SEEDS + NEW_SEEDS + REAL_SEEDS + HANDLER_SEEDS
