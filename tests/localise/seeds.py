"""Seeded faults in the shapes real bot bugs take, each with the words a person would use about it.

Every seed is a cog package with a git history that brings one fault (sometimes with unrelated
commits after it), how to make the fault happen through the virtual Discord, the complaint, and
what a good localisation finds: the kind the request is about, the faulty file and function.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mendbot.tools.playground import VirtualWorld
from tests.localise.repo import Commit

__all__ = ["SEEDS", "Seed"]

Drive = Callable[[VirtualWorld], Awaitable[None]]


@dataclass(frozen=True)
class Seed:
    name: str  # the package is seed_<name>
    shape: str
    history: tuple[Commit, ...]
    drive: Drive
    complaint: str  # said to the bot in #dev, after the mention
    kind: str  # the kind the request must resolve to
    file: str  # the faulty file, relative to the repository
    function: str  # the faulty function's qualified name
    incident: bool = True  # whether the target is an incident (else the bare kind)
    observe: dict[str, Any] = field(default_factory=dict)
    lesson: dict[str, Any] | None = None  # a lesson stored before the complaint
    known_miss: str | None = None  # why the ranking is expected to miss (the test expects the miss)
    # "written with the code" (shapes chosen while building the ranking) or "from real fixes" (the
    # shape and complaint of a public bot's bug-fix commit, written anew); `inspired_by` names it.
    origin: str = "written with the code"
    inspired_by: str | None = None
    # Other kinds the request may fairly resolve to (the command that showed a view, a check's command):
    # the faulty code must be found from them all the same.
    accept: tuple[str, ...] = ()

    def right_kind(self, kind: str | None) -> bool:
        """Whether a request resolved to `kind` is about this fault."""
        return kind == self.kind or kind in self.accept

    @property
    def extension(self) -> str:
        return f"seed_{self.name}.cog"


def _slash(name: str, times: int, **options: Any) -> Drive:
    async def drive(world: VirtualWorld) -> None:
        for _ in range(times):
            await world.users["alice"].slash(world.general, name, **options)
        await world.quiesce()

    return drive


def _say(*lines: str) -> Drive:
    async def drive(world: VirtualWorld) -> None:
        for line in lines:
            await world.users["alice"].send(world.general, line)
        await world.quiesce()

    return drive


def _then(*drives: Drive) -> Drive:
    async def drive(world: VirtualWorld) -> None:
        for step in drives:
            await step(world)

    return drive


async def _nothing(world: VirtualWorld) -> None:
    await world.quiesce()


_HEAD = """
import discord
from discord import app_commands
from discord.ext import commands, tasks
"""

# -- 1. a crash in a helper below the cog ---------------------------------------------------------

_UNITS = '''
"""Length units."""

FACTORS = {"m": 1.0, "km": 1000.0, "mi": 1609.344, "ft": 0.3048}


def to_metres(value: float, unit: str) -> float:
    return value * FACTORS[unit.lower()]


def from_metres(value: float, unit: str) -> float:
    return value / FACTORS[unit.lower()]
'''
_CONVERT = (
    _HEAD
    + """
from seed_convert.units import from_metres, to_metres


class Convert(commands.Cog):
    @app_commands.command(name="convert", description="Convert a length")
    async def convert(self, interaction: discord.Interaction, value: float, unit: str, to: str) -> None:
        metres = to_metres(value, unit)
        result = from_metres(metres, to)
        await interaction.response.send_message(f"{value:g} {unit} = {result:.2f} {to}")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Convert())
"""
)
HELPER_CRASH = Seed(
    "convert",
    "crash in a helper below the cog",
    (
        Commit(
            200,
            "Add /convert",
            {
                "seed_convert/__init__.py": "",
                "seed_convert/units.py": _UNITS,
                "seed_convert/cog.py": _CONVERT,
            },
        ),
        Commit(
            2,
            "Accept unit symbols in capitals",
            {
                "seed_convert/units.py": _UNITS.replace(
                    "return value * FACTORS[unit.lower()]", "return value * FACTORS[unit.upper()]"
                )
            },
        ),
    ),
    _slash("convert", 5, value=3.0, unit="mi", to="km"),
    "/convert crashes for miles",
    "app:convert",
    "seed_convert/units.py",
    "to_metres",
)

# -- 2. a bad argument from the caller --------------------------------------------------------------

_MATHUTIL = '''
"""Small statistics."""


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def spread(values: list[float]) -> float:
    return max(values) - min(values)
'''
_STATS = (
    _HEAD
    + """
from seed_stats.mathutil import mean, spread


class Stats(commands.Cog):
    @commands.command(name="average")
    async def average(self, ctx: commands.Context, *numbers: float) -> None:
        kept = [n for n in numbers if n >= 0]
        await ctx.send(f"average {mean(kept):.2f}")

    @commands.command(name="range")
    async def range_(self, ctx: commands.Context, *numbers: float) -> None:
        await ctx.send(f"range {spread(list(numbers)):.2f}")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Stats())
"""
)
BAD_ARGUMENT = Seed(
    "stats",
    "bad argument from a caller",
    (
        Commit(
            300,
            "Add statistics commands",
            {"seed_stats/__init__.py": "", "seed_stats/mathutil.py": _MATHUTIL, "seed_stats/cog.py": _STATS},
        ),
        Commit(
            3,
            "Ignore outliers in !average",
            {"seed_stats/cog.py": _STATS.replace("if n >= 0]", "if n > 100]  # outliers are typos")},
        ),
    ),
    _say(*["!average 3 4 5"] * 5),
    "the average command keeps failing",
    "command:average",
    "seed_stats/cog.py",
    "Stats.average",
)

# -- 3. bad state from __init__ ---------------------------------------------------------------------

_QUOTES = (
    _HEAD
    + """
import random

QUOTES = ["Simple is better than complex.", "Now is better than never.", "Errors should never pass silently."]


class Quotes(commands.Cog):
    def __init__(self) -> None:
        self.quotes = list(QUOTES)
        self.served = 0

    @app_commands.command(name="quote", description="A quote")
    async def quote(self, interaction: discord.Interaction) -> None:
        self.served += 1
        await interaction.response.send_message(random.choice(self.quotes))

    @app_commands.command(name="addquote", description="Add a quote")
    async def addquote(self, interaction: discord.Interaction, text: str) -> None:
        self.quotes.append(text)
        await interaction.response.send_message("Added.")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Quotes())
"""
)
BAD_INIT_STATE = Seed(
    "quotes",
    "bad state from __init__",
    (
        Commit(100, "Add quotes", {"seed_quotes/__init__.py": "", "seed_quotes/cog.py": _QUOTES}),
        Commit(
            2,
            "Remember who said each quote",
            {
                "seed_quotes/cog.py": _QUOTES.replace(
                    "self.quotes = list(QUOTES)", 'self.quotes = {quote: "unknown" for quote in QUOTES}'
                )
            },
        ),
    ),
    _slash("quote", 5),
    "/quote is broken",
    "app:quote",
    "seed_quotes/cog.py",
    "Quotes.__init__",
)

# -- 4. wrong output, no traceback --------------------------------------------------------------------

_FORMULAS = '''
"""Temperature conversions."""


def c_to_f(celsius: float) -> float:
    return celsius * 9 / 5 + 32


def f_to_c(fahrenheit: float) -> float:
    return (fahrenheit - 32) * 5 / 9
'''
_TEMP = (
    _HEAD
    + """
from seed_temp.formulas import c_to_f, f_to_c


class Temp(commands.Cog):
    @app_commands.command(name="temp", description="Convert a temperature")
    async def temp(self, interaction: discord.Interaction, value: float, scale: str) -> None:
        if scale.lower().startswith("c"):
            await interaction.response.send_message(f"{value:g} °C = {c_to_f(value):.1f} °F")
        else:
            await interaction.response.send_message(f"{value:g} °F = {f_to_c(value):.1f} °C")
"""
)
_TEMP_SETUP = """

async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Temp())
"""
_TEMP_INFO = """
    @app_commands.command(name="tempinfo", description="What /temp does")
    async def tempinfo(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("/temp converts between °C and °F.")
"""
WRONG_OUTPUT = Seed(
    "temp",
    "wrong output",
    (
        Commit(
            150,
            "Add /temp",
            {
                "seed_temp/__init__.py": "",
                "seed_temp/formulas.py": _FORMULAS,
                "seed_temp/cog.py": _TEMP + _TEMP_SETUP,
            },
        ),
        Commit(
            4,
            "Simplify the conversions",
            {"seed_temp/formulas.py": _FORMULAS.replace("* 9 / 5 + 32", "* 9 / 5 + 23")},
        ),
        Commit(1, "Explain /temp", {"seed_temp/cog.py": _TEMP + _TEMP_INFO + _TEMP_SETUP}),
    ),
    _slash("temp", 3, value=100.0, scale="C"),
    "/temp gives wrong results: 100 C comes out as 203 F",
    "app:temp",
    "seed_temp/formulas.py",
    "c_to_f",
    incident=False,
)

# -- 5. latency (a blocking call, no incident) -------------------------------------------------------

_DATA = '''
"""Sales figures."""

import time

ROWS = [("north", 12), ("south", 7), ("east", 9), ("west", 4)]


def lookup(region: str) -> int:
    return dict(ROWS).get(region, 0)


def totals() -> dict[str, int]:
    return {region: lookup(region) for region, _ in ROWS}
'''
_REPORT = (
    _HEAD
    + """
from seed_report.data import totals


class Report(commands.Cog):
    @app_commands.command(name="report", description="Sales by region")
    async def report(self, interaction: discord.Interaction) -> None:
        lines = [f"{region}: {count}" for region, count in sorted(totals().items())]
        await interaction.response.send_message("\\n".join(lines))


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Report())
"""
)
LATENCY = Seed(
    "report",
    "latency",
    (
        Commit(
            120,
            "Add /report",
            {"seed_report/__init__.py": "", "seed_report/data.py": _DATA, "seed_report/cog.py": _REPORT},
        ),
        Commit(
            2,
            "Be gentle with the sales backend",
            {
                "seed_report/data.py": _DATA.replace(
                    "    return dict(ROWS).get(region, 0)",
                    "    time.sleep(0.05)  # the backend rate-limits us\n"
                    "    return dict(ROWS).get(region, 0)",
                )
            },
        ),
    ),
    _slash("report", 4),
    "/report got really slow",
    "app:report",
    "seed_report/data.py",
    "lookup",
    incident=False,
)

# -- 6. a listener failing on some messages ------------------------------------------------------------

_PARSE = '''
"""Links in messages."""

from urllib.parse import urlsplit


def link_domain(url: str) -> str:
    return urlsplit(url).netloc.lower()
'''
_LINKS = (
    _HEAD
    + """
from seed_links.parse import link_domain


class Links(commands.Cog):
    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot:
            return
        for word in message.content.split():
            if word.startswith("http"):
                domain = link_domain(word)
                self.seen[domain] = self.seen.get(domain, 0) + 1


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Links())
"""
)
LISTENER = Seed(
    "links",
    "listener failing on some messages",
    (
        Commit(
            90,
            "Count linked domains",
            {"seed_links/__init__.py": "", "seed_links/parse.py": _PARSE, "seed_links/cog.py": _LINKS},
        ),
        Commit(
            2,
            "Count www.example.com and example.com as one domain",
            {
                "seed_links/parse.py": _PARSE.replace(
                    "    return urlsplit(url).netloc.lower()",
                    '    host = urlsplit(url).netloc.lower()\n    return host.split("www.")[1]',
                )
            },
        ),
    ),
    _say(
        "see https://www.python.org/about",
        *["docs at https://docs.python.org/3/"] * 5,
    ),
    "the link counter doesn't work on some messages",
    "listener:on_message",
    "seed_links/parse.py",
    "link_domain",
)

# -- 7. a task loop that stopped ---------------------------------------------------------------------

_FEED = '''
"""Exchange-rate feed."""

FEED = [
    {"pair": "EURUSD", "rate": "1.08"},
    {"pair": "GBPUSD", "rate": "1.27"},
    {"pair": "USDJPY", "rate": "n/a"},
]


def parse_rate(row: dict[str, str]) -> float | None:
    try:
        return float(row["rate"])
    except ValueError:
        return None
'''
_RATES = (
    _HEAD
    + """
from seed_rates.feed import FEED, parse_rate


class Rates(commands.Cog):
    def __init__(self) -> None:
        self.rates: dict[str, float | None] = {}

    async def cog_load(self) -> None:
        self.refresh_rates.start()

    async def cog_unload(self) -> None:
        self.refresh_rates.cancel()

    @tasks.loop(minutes=10)
    async def refresh_rates(self) -> None:
        for row in FEED:
            self.rates[row["pair"]] = parse_rate(row)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Rates())
"""
)
TASK_LOOP = Seed(
    "rates",
    "task loop",
    (
        Commit(
            60,
            "Refresh exchange rates",
            {"seed_rates/__init__.py": "", "seed_rates/feed.py": _FEED, "seed_rates/cog.py": _RATES},
        ),
        Commit(
            1,
            "Parse rates strictly",
            {
                "seed_rates/feed.py": _FEED.replace(
                    '    try:\n        return float(row["rate"])\n'
                    "    except ValueError:\n        return None",
                    '    return float(row["rate"])',
                )
            },
        ),
    ),
    _nothing,
    "the exchange rates stopped updating",
    "task:refresh_rates",
    "seed_rates/feed.py",
    "parse_rate",
)

# -- 8. bad stored data ----------------------------------------------------------------------------------

_STORE = '''
"""Levels, stored as JSON."""

import json
from pathlib import Path


class ProfileStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def save_level(self, user: int, level: int) -> None:
        data = self._read()
        data[str(user)] = {"level": level}
        self.path.write_text(json.dumps(data))

    def next_level(self, user: int) -> int:
        entry = self._read().get(str(user), {"level": 0})
        return entry["level"] + 1
'''
_PROFILE = (
    _HEAD
    + """
from seed_profile.store import ProfileStore


class Profile(commands.Cog):
    def __init__(self, store: ProfileStore) -> None:
        self.store = store

    @app_commands.command(name="setlevel", description="Set your level")
    async def setlevel(self, interaction: discord.Interaction, level: int) -> None:
        self.store.save_level(interaction.user.id, level)
        await interaction.response.send_message("Saved.")

    @app_commands.command(name="profile", description="Your next level")
    async def profile(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"next level: {self.store.next_level(interaction.user.id)}")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Profile(ProfileStore(bot.services.settings.data_dir / "profiles.json")))
"""
)
BAD_STORED_DATA = Seed(
    "profile",
    "bad stored data",
    (
        Commit(
            80,
            "Add profiles",
            {
                "seed_profile/__init__.py": "",
                "seed_profile/store.py": _STORE,
                "seed_profile/cog.py": _PROFILE,
            },
        ),
        Commit(
            3,
            "Store levels as text for the CSV export",
            {"seed_profile/store.py": _STORE.replace('{"level": level}', '{"level": str(level)}')},
        ),
    ),
    _then(_slash("setlevel", 1, level=3), _slash("profile", 5)),
    "/profile is broken since yesterday",
    "app:profile",
    "seed_profile/store.py",
    "ProfileStore.save_level",
)

# -- 9. a recent commit elsewhere in the file --------------------------------------------------------------

_FMT = '''
"""Formatting of rolls."""


def average(rolls: list[int]) -> float:
    return sum(rolls) / len(rolls)


def listing(rolls: list[int]) -> str:
    return ", ".join(str(roll) for roll in rolls)
'''
_DICE = (
    _HEAD
    + '''
import random

from seed_dice.fmt import average, listing

DEFAULT_DICE = 2
SIDES = 6


def _describe(count: int, sides: int) -> str:
    """How a roll is announced."""
    if count == 1:
        return f"one d{sides}"
    return f"{count}d{sides}"


def _banner(text: str) -> str:
    """A little decoration around a result."""
    return f"🎲 {text} 🎲"


class QuickDice(commands.Cog):
    """Dice without notation."""

    @commands.command(name="flip")
    async def flip(self, ctx: commands.Context) -> None:
        await ctx.send(_banner(random.choice(["heads", "tails"])))

    @commands.command(name="many")
    async def many(self, ctx: commands.Context, count: int = 3) -> None:
        rolls = [random.randint(1, SIDES) for _ in range(count)]
        await ctx.send(_banner(f"{_describe(count, SIDES)}: {listing(rolls)}"))

    @commands.command(name="quickroll")
    async def quickroll(self, ctx: commands.Context) -> None:
        rolls = [random.randint(1, SIDES) for _ in range(DEFAULT_DICE)]
        await ctx.send(f"{listing(rolls)} (average {average(rolls):.1f})")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(QuickDice())
'''
)
ELSEWHERE_IN_FILE = Seed(
    "dice",
    "recent commit elsewhere in the file",
    (
        Commit(
            200,
            "Add dice",
            {"seed_dice/__init__.py": "", "seed_dice/fmt.py": _FMT, "seed_dice/cog.py": _DICE},
        ),
        Commit(
            2,
            "Make the default roll configurable",
            {"seed_dice/cog.py": _DICE.replace("DEFAULT_DICE = 2", "DEFAULT_DICE = 0  # set per server")},
        ),
    ),
    _say(*["!quickroll"] * 5),
    "quickroll errors out every time",
    "command:quickroll",
    "seed_dice/cog.py",
    "QuickDice.quickroll",
)

# -- 10. a misleading message ------------------------------------------------------------------------------

_CODEC = '''
"""Backups as base64 JSON."""

import base64
import json


def decode(blob: str) -> dict:
    return json.loads(base64.b64decode(blob).decode("utf-8"))


def encode(data: dict) -> str:
    return base64.b64encode(json.dumps(data).encode("utf-8")).decode("ascii")
'''
_BACKUP = (
    _HEAD
    + """
from seed_backup.codec import decode, encode

SAMPLE = encode({"notes": 3, "tags": 2})


class Backup(commands.Cog):
    @app_commands.command(name="restore", description="Restore a backup")
    async def restore(self, interaction: discord.Interaction, blob: str = "") -> None:
        try:
            data = decode(blob or SAMPLE)
        except ValueError:
            await interaction.response.send_message("That backup file is corrupt.")
            return
        await interaction.response.send_message(f"Restored {len(data)} item(s).")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Backup())
"""
)
MISLEADING_MESSAGE = Seed(
    "backup",
    "misleading message",
    (
        Commit(
            90,
            "Add /restore",
            {"seed_backup/__init__.py": "", "seed_backup/codec.py": _CODEC, "seed_backup/cog.py": _BACKUP},
        ),
        Commit(
            2,
            "Read backups made on Windows",
            {"seed_backup/codec.py": _CODEC.replace('.decode("utf-8"))', '.decode("utf-16"))')},
        ),
    ),
    _slash("restore", 3),
    "/restore says the file is corrupt but the file is fine",
    "app:restore",
    "seed_backup/codec.py",
    "decode",
    incident=False,
)

# -- 11. asyncio.gather -------------------------------------------------------------------------------------

_API = '''
"""Weather stations."""

import asyncio

STATIONS = {
    "oslo": {"temp": 4, "wind": 7, "gusts": 11},
    "rome": {"temp": 18, "wind": 3, "gusts": 5},
    "lima": {"temp": 21, "wind": 4},
}


async def fetch_city(city: str) -> dict:
    await asyncio.sleep(0)
    return normalise(city, STATIONS[city])


def normalise(city: str, raw: dict) -> dict:
    return {"city": city.title(), "temp": raw["temp"], "wind": raw["wind"]}
'''
_WEATHER = (
    _HEAD
    + """
import asyncio

from seed_weather.api import fetch_city


class Weather(commands.Cog):
    @app_commands.command(name="weather", description="Weather in a few cities")
    async def weather(self, interaction: discord.Interaction, cities: str = "oslo rome lima") -> None:
        reports = await asyncio.gather(*(fetch_city(city) for city in cities.split()))
        text = ", ".join(f"{r['city']} {r['temp']}°C wind {r['wind']}" for r in reports)
        await interaction.response.send_message(text)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Weather())
"""
)
GATHER = Seed(
    "weather",
    "asyncio.gather",
    (
        Commit(
            100,
            "Add /weather",
            {"seed_weather/__init__.py": "", "seed_weather/api.py": _API, "seed_weather/cog.py": _WEATHER},
        ),
        Commit(
            2,
            "Report gusts rather than the mean wind",
            {"seed_weather/api.py": _API.replace('"wind": raw["wind"]}', '"wind": raw["gusts"]}')},
        ),
    ),
    _slash("weather", 5),
    "weather is broken",
    "app:weather",
    "seed_weather/api.py",
    "normalise",
)

# -- 12. a regression after a lesson --------------------------------------------------------------------

_TZ = '''
"""Time zones."""

OFFSETS = {"utc": 0.0, "cet": 1.0, "ist": 5.5}


def offset_for(zone: str) -> float:
    return OFFSETS.get(zone.lower(), 0.0)


def label(zone: str) -> str:
    return zone.upper()
'''
_CLOCK = (
    _HEAD
    + """
from seed_clock.tz import label, offset_for


class Clock(commands.Cog):
    @app_commands.command(name="time", description="A UTC hour in another zone")
    async def time_in(self, interaction: discord.Interaction, zone: str, hour: int) -> None:
        local = (hour + offset_for(zone)) % 24
        await interaction.response.send_message(f"{hour:02d}:00 UTC is {local:g}h in {label(zone)}")
"""
)
_CLOCK_SETUP = """

async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Clock())
"""
_ZONES = """
    @app_commands.command(name="zones", description="Known zones")
    async def zones(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("utc, cet, ist")
"""
REGRESSION_AFTER_LESSON = Seed(
    "clock",
    "regression after a lesson",
    (
        Commit(
            200,
            "Add /time",
            {
                "seed_clock/__init__.py": "",
                "seed_clock/tz.py": _TZ,
                "seed_clock/cog.py": _CLOCK + _CLOCK_SETUP,
            },
        ),
        Commit(
            5,
            "Tidy zone lookups",
            {"seed_clock/tz.py": _TZ.replace("OFFSETS.get(zone.lower(), 0.0)", "OFFSETS.get(zone, 0.0)")},
        ),
        Commit(1, "List the zones", {"seed_clock/cog.py": _CLOCK + _ZONES + _CLOCK_SETUP}),
    ),
    _slash("time", 3, zone="IST", hour=10),
    "/time is wrong again for IST",
    "app:time",
    "seed_clock/tz.py",
    "offset_for",
    incident=False,
    lesson={
        "files": ["seed_clock/tz.py"],
        "root_cause": "offset_for compared zone names case-sensitively, so 'IST' fell back to 0",
    },
)

# -- 13. two faults at once -------------------------------------------------------------------------------

_NUMBERS = '''
"""Numbers out of text."""


def numbers(text: str) -> list[int]:
    return [int(token) for token in text.split()]
'''
_AVG = '''
"""Averages."""


def avg(values: list[int]) -> float:
    return sum(values) / len(values)
'''
_CALC = (
    _HEAD
    + """
from seed_calc.averages import avg
from seed_calc.parse import numbers


class Calc(commands.Cog):
    @app_commands.command(name="sum", description="Add numbers")
    async def sum_(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.response.send_message(str(sum(numbers(text))))

    @app_commands.command(name="avg", description="Average of numbers")
    async def avg_(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.response.send_message(f"{avg(numbers(text)):.2f}")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Calc())
"""
)
TWO_FAULTS = Seed(
    "calc",
    "two faults at once",
    (
        Commit(
            100,
            "Add /sum and /avg",
            {
                "seed_calc/__init__.py": "",
                "seed_calc/parse.py": _NUMBERS,
                "seed_calc/averages.py": _AVG,
                "seed_calc/cog.py": _CALC,
            },
        ),
        Commit(
            3,
            "Numbers are comma-separated",
            {"seed_calc/parse.py": _NUMBERS.replace("text.split()", 'text.split(",")')},
        ),
        Commit(
            1,
            "Leave the first sample out of averages",
            {"seed_calc/averages.py": _AVG.replace("/ len(values)", "/ len(values[1:])")},
        ),
    ),
    _then(_slash("avg", 5, text="7"), _slash("sum", 5, text="1 2 3")),
    "/sum fails on every input",
    "app:sum",
    "seed_calc/parse.py",
    "numbers",
)

# -- 14. a prefix command crashing two calls deep ------------------------------------------------------

_TEXT = '''
"""Greetings."""


def initials(name: str) -> str:
    return "".join(part[0] for part in name.split()).upper()


def greeting(name: str) -> str:
    return f"Hello {name.title() or 'there'}!"
'''
_GREET = (
    _HEAD
    + """
from seed_greet.text import greeting


class Greet(commands.Cog):
    @commands.command(name="greet")
    async def greet(self, ctx: commands.Context, *, name: str = "") -> None:
        await ctx.send(greeting(name))


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Greet())
"""
)
DEEP_PREFIX = Seed(
    "greet",
    "prefix command crashing in a helper's helper",
    (
        Commit(
            150,
            "Add !greet",
            {"seed_greet/__init__.py": "", "seed_greet/text.py": _TEXT, "seed_greet/cog.py": _GREET},
        ),
        Commit(
            2,
            "Greet by first name",
            {
                "seed_greet/text.py": _TEXT.replace(
                    "def greeting(name: str) -> str:\n    return f\"Hello {name.title() or 'there'}!\"",
                    "def first_name(name: str) -> str:\n    return name.split()[0]\n\n\n"
                    'def greeting(name: str) -> str:\n    return f"Hello {first_name(name).title()}!"',
                )
            },
        ),
    ),
    _say(*["!greet"] * 5),
    "!greet crashes when I give no name",
    "command:greet",
    "seed_greet/text.py",
    "first_name",
)

# -- 15. a latency incident from the detector -----------------------------------------------------------

_INDEX = '''
"""Search over the docs."""

DOCS = [f"doc {n}: notes about data pipelines, part {n}" for n in range(12)]


def matches(query: str) -> list[str]:
    return [doc for doc in DOCS if query in doc.lower()]


def rank(results: list[str], query: str) -> list[str]:
    return sorted(results, key=lambda doc: doc.lower().index(query))
'''
_SEARCH = (
    _HEAD
    + """
from seed_search.index import matches, rank


class Search(commands.Cog):
    @app_commands.command(name="search", description="Search the docs")
    async def search(self, interaction: discord.Interaction, query: str) -> None:
        found = rank(matches(query.lower()), query.lower())
        await interaction.response.send_message("\\n".join(found[:3]) or "Nothing found.")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Search())
"""
)
LATENCY_INCIDENT = Seed(
    "search",
    "latency incident",
    (
        Commit(
            100,
            "Add /search",
            {"seed_search/__init__.py": "", "seed_search/index.py": _INDEX, "seed_search/cog.py": _SEARCH},
        ),
        Commit(
            2,
            "Rank results by fuzzy similarity",
            {
                "seed_search/index.py": _INDEX.replace(
                    "def rank(results: list[str], query: str) -> list[str]:\n"
                    "    return sorted(results, key=lambda doc: doc.lower().index(query))",
                    "def similarity(doc: str, query: str) -> int:\n"
                    "    score = 0\n"
                    "    for _ in range(2000):  # stabilise the score over many passes\n"
                    "        score = sum(1 for a, b in zip(doc, query * 10) if a == b)\n"
                    "    return score\n\n\n"
                    "def rank(results: list[str], query: str) -> list[str]:\n"
                    "    return sorted(results, key=lambda doc: -similarity(doc, query))",
                )
            },
        ),
    ),
    _then(_slash("search", 10, query="zzz"), _slash("search", 5, query="data")),
    "search takes forever now",
    "app:search",
    "seed_search/index.py",
    "similarity",
    # The slow ranking costs ~25 ms a call on a fast core against ~0.6 ms before: a floor of 30 ms
    # made the incident depend on the machine (no incident on a fast one). 5 ms is far above the
    # fast calls and far below the slow ones wherever the suite runs.
    observe={"latency": {"window": 5, "baseline": 10, "min_samples": 5, "min_ms": 5}},
)

# -- 16. wrong output from a constant -------------------------------------------------------------------

_MONEY = '''
"""Money helpers."""

TIP_RATE = 0.15


def tip_for(amount: float) -> float:
    return round(amount * TIP_RATE, 2)


def share(amount: float, people: int) -> float:
    return round(amount / people, 2)
'''
_TIP = (
    _HEAD
    + """
from seed_tip.money import share, tip_for


class Tip(commands.Cog):
    @commands.command(name="tip")
    async def tip(self, ctx: commands.Context, amount: float) -> None:
        await ctx.send(f"Tip on {amount:.2f}: {tip_for(amount):.2f}")

    @commands.command(name="share")
    async def share_(self, ctx: commands.Context, amount: float, people: int = 2) -> None:
        await ctx.send(f"Each pays {share(amount, people):.2f}")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Tip())
"""
)
WRONG_CONSTANT = Seed(
    "tip",
    "wrong output from a constant",
    (
        Commit(
            150,
            "Add !tip and !share",
            {"seed_tip/__init__.py": "", "seed_tip/money.py": _MONEY, "seed_tip/cog.py": _TIP},
        ),
        Commit(
            2,
            "Tip rate as a percentage",
            {"seed_tip/money.py": _MONEY.replace("TIP_RATE = 0.15", "TIP_RATE = 0.015")},
        ),
        Commit(1, "Say who pays", {"seed_tip/cog.py": _TIP.replace("Each pays", "Everyone pays")}),
    ),
    _say("!tip 100", "!tip 40"),
    "!tip is off by a lot, 100 gives a tip of 1.50",
    "command:tip",
    "seed_tip/money.py",
    "tip_for",
    incident=False,
)

# -- 17. a bad argument, then a cosmetic edit of the callee: the argument's maker still ranks first --

_MEAN_COG = _STATS.replace("seed_stats.mathutil", "seed_mean.mathutil")
CONFLICTING_HISTORY = Seed(
    "mean",
    "bad argument, then a cosmetic edit of the callee",
    (
        Commit(
            300,
            "Add statistics commands",
            {"seed_mean/__init__.py": "", "seed_mean/mathutil.py": _MATHUTIL, "seed_mean/cog.py": _MEAN_COG},
        ),
        Commit(
            3,
            "Ignore outliers in !average",
            {"seed_mean/cog.py": _MEAN_COG.replace("if n >= 0]", "if n > 100]  # outliers are typos")},
        ),
        Commit(
            1,
            "Type the statistics helpers",
            {
                "seed_mean/mathutil.py": _MATHUTIL.replace(
                    "def mean(values: list[float]) -> float:", 'def mean(values: "list[float]") -> float:'
                )
            },
        ),
    ),
    _say(*["!average 3 4 5"] * 5),
    "the average command keeps failing",
    "command:average",
    "seed_mean/cog.py",
    "Stats.average",
)

SEEDS = (
    HELPER_CRASH,
    BAD_ARGUMENT,
    BAD_INIT_STATE,
    WRONG_OUTPUT,
    LATENCY,
    LISTENER,
    TASK_LOOP,
    BAD_STORED_DATA,
    ELSEWHERE_IN_FILE,
    MISLEADING_MESSAGE,
    GATHER,
    REGRESSION_AFTER_LESSON,
    TWO_FAULTS,
    DEEP_PREFIX,
    LATENCY_INCIDENT,
    WRONG_CONSTANT,
    CONFLICTING_HISTORY,
)
