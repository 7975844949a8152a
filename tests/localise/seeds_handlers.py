"""Seeded faults in the handlers a command leaves behind: an autocomplete callback, a check factory, a
modal's `on_submit`, a message context menu, a coroutine never awaited, a paginator's button, a
permission bitmask and a loop left running by `cog_unload` — and a task a bare word about a command
hides. The shapes of faults found in public bots (issue 54), written anew here with cogs, names and
words of their own.

Each complaint says what went wrong the way a person would — what the bot says, shows, posts, keeps
doing or never does — and names neither the command nor the error. `accept` lists the other kinds a
request may fairly resolve to (the command that sent the view, the check's command): what is measured
with them is that the faulty code is found from whichever part the words lead to.
"""

from __future__ import annotations

from mendbot.tools.world import VirtualWorld
from tests.harness.discord import bot_messages
from tests.localise.repo import Commit
from tests.localise.seeds import _HEAD, Seed, _say, _slash, _then

__all__ = ["HANDLER_SEEDS"]

_ORIGIN = "handler kinds"


def _history(
    name: str, files: dict[str, str], message: str, broken: dict[str, str], days: float = 2
) -> tuple[Commit, ...]:
    """The package `seed_<name>` as it worked 150 days ago, then the commit that broke it."""
    package: dict[str, str | None] = {
        f"seed_{name}/__init__.py": "",
        **{f"seed_{name}/{path}": text for path, text in files.items()},
    }
    return (
        Commit(150, f"Add {name}", package),
        Commit(days, message, {f"seed_{name}/{path}": str(text) for path, text in broken.items()}),
    )


def _setup(cog: str, *args: str) -> str:
    return f"""

async def setup(bot: commands.Bot) -> None:
    await bot.add_cog({cog}({", ".join(args)}))
"""


# -- an autocomplete callback that suggests nothing -------------------------------------------------

_PLACES = '''
"""The towns the forecast knows."""

TOWNS = ["Aberdeen", "Bergen", "Bremen", "Brest", "Cadiz", "Dublin", "Dundee", "Galway"]


def starting_with(typed: str, towns: list[str]) -> list[str]:
    typed = typed.strip().lower()
    return [town for town in towns if town.lower().startswith(typed)][:25]
'''
_FORECAST = (
    _HEAD
    + """
from seed_forecast.places import TOWNS, starting_with


class Forecast(commands.Cog):
    @app_commands.command(name="forecast", description="Tomorrow's weather in a town")
    async def forecast(self, interaction: discord.Interaction, town: str) -> None:
        await interaction.response.send_message(f"{town}: sunny spells, 14 °C")

    @forecast.autocomplete("town")
    async def town_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=town, value=town) for town in starting_with(current, TOWNS)]
"""
    + _setup("Forecast")
)


async def _type_towns(world: VirtualWorld) -> None:
    for typed in ("bre", "du", "g", "ab"):
        await world.users["alice"].autocomplete(world.general, "forecast", "town", typed)
        await world.quiesce()


AUTOCOMPLETE_EMPTY = Seed(
    "forecast",
    "an autocomplete callback's filter that matches nothing",
    _history(
        "forecast",
        {"places.py": _PLACES, "cog.py": _FORECAST},
        "Compare town names as they are written",
        {"places.py": _PLACES.replace("if town.lower().startswith(typed)", "if town.startswith(typed)")},
    ),
    _type_towns,
    "when I start typing a town name no suggestions come up any more",
    "autocomplete:forecast.town",
    "seed_forecast/places.py",
    "starting_with",
    incident=False,
    origin=_ORIGIN,
)

# -- a check factory whose predicate reads a table that lost its key --------------------------------

_ROLES = '''
"""Which role may do which action."""

ROLE_FOR = {"announce": "Herald", "pin": "Archivist"}
'''
_ANNOUNCE = (
    _HEAD
    + """
from seed_announce import roles


def allowed_to(action: str):
    async def predicate(ctx: commands.Context) -> bool:
        wanted = roles.ROLE_FOR[action]
        return wanted in {role.name for role in getattr(ctx.author, "roles", [])}

    return commands.check(predicate)


class Announce(commands.Cog):
    @commands.command(name="announce")
    @allowed_to("announce")
    async def announce(self, ctx: commands.Context, *, text: str) -> None:
        await ctx.send(f"📣 {text}")
"""
    + _setup("Announce")
)
CHECK_FACTORY = Seed(
    "announce",
    "a check factory's predicate reading a table that lost its key",
    _history(
        "announce",
        {"roles.py": _ROLES, "cog.py": _ANNOUNCE},
        "Name actions after what they post",
        {"roles.py": _ROLES.replace('"announce": "Herald"', '"announcement": "Herald"')},
        days=3,
    ),
    _say(*["!announce the fair opens at noon"] * 5),
    "heralds can't post announcements since yesterday, the bot just falls over",
    "check:allowed_to.<locals>.predicate",
    "seed_announce/roles.py",
    "ROLE_FOR",
    origin=_ORIGIN,
    accept=("command:announce",),
)

# -- a modal's on_submit that posts an empty line ----------------------------------------------------

_ENTRIES = '''
"""How a piece of feedback is written to the channel."""

LIMIT = 200


def entry_line(topic: str, text: str, author: str) -> str:
    body = text[:LIMIT] + ("…" if len(text) > LIMIT else "")
    return f"[{topic}] {body} — {author}"
'''
_FEEDBACK = (
    _HEAD
    + """
from seed_feedback.entries import entry_line


class FeedbackForm(discord.ui.Modal, title="Feedback"):
    topic = discord.ui.TextInput(label="Topic", custom_id="fb-topic")
    text = discord.ui.TextInput(
        label="What you think", custom_id="fb-text", style=discord.TextStyle.paragraph
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        line = entry_line(self.topic.value, self.text.value, interaction.user.name)
        await interaction.response.send_message(line)


class Feedback(commands.Cog):
    @app_commands.command(name="feedback", description="Tell us what you think")
    async def feedback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(FeedbackForm())
"""
    + _setup("Feedback")
)


async def _send_feedback(world: VirtualWorld) -> None:
    for topic, said in (("music", "more jazz please"), ("events", "a quiz night on fridays")):
        shown = await world.users["alice"].slash(world.general, "feedback")
        await world.users["alice"].submit_modal(shown, {"fb-topic": topic, "fb-text": said})
        await world.quiesce()


MODAL_SUBMIT = Seed(
    "feedback",
    "a modal's on_submit that posts an empty line",
    _history(
        "feedback",
        {"entries.py": _ENTRIES, "cog.py": _FEEDBACK},
        "Cut long feedback",
        {"entries.py": _ENTRIES.replace("text[:LIMIT] +", "text[LIMIT:] +")},
    ),
    _send_feedback,
    "whatever people write in the form, the line it posts is blank between the brackets and the name",
    "modal:FeedbackForm.on_submit",
    "seed_feedback/entries.py",
    "entry_line",
    incident=False,
    origin=_ORIGIN,
    accept=("app:feedback",),
)

# -- a message context menu that credits the wrong person --------------------------------------------

_BOOK = '''
"""The quotes people saved."""

from dataclasses import dataclass


@dataclass
class Quote:
    text: str
    by: str


class QuoteBook:
    def __init__(self) -> None:
        self.quotes: list[Quote] = []

    def add(self, text: str, said_by: str, saved_by: str) -> Quote:
        quote = Quote(text, said_by)
        self.quotes.append(quote)
        return quote
'''
_QUOTING = (
    _HEAD
    + """
from seed_quoting.book import QuoteBook


class Quoting(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.book = QuoteBook()
        self.menu = app_commands.ContextMenu(name="Save quote", callback=self.save_quote)
        bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    async def save_quote(self, interaction: discord.Interaction, message: discord.Message) -> None:
        quote = self.book.add(message.content, message.author.display_name, interaction.user.display_name)
        await interaction.response.send_message(f"Saved: “{quote.text}” — {quote.by}")

    @app_commands.command(name="quotes", description="The quotes saved so far")
    async def quotes(self, interaction: discord.Interaction) -> None:
        lines = [f"“{q.text}” — {q.by}" for q in self.book.quotes] or ["No quotes yet."]
        await interaction.response.send_message("\\n".join(lines))
"""
    + _setup("Quoting", "bot")
)


async def _save_quotes(world: VirtualWorld) -> None:
    said = await world.users["mallory"].send(world.general, "the cake was never the point")
    await world.quiesce()
    for _ in range(2):
        await world.users["alice"].context_menu(world.general, "Save quote", said)
        await world.quiesce()


CONTEXT_MENU = Seed(
    "quoting",
    "a message context menu that credits the wrong person",
    _history(
        "quoting",
        {"book.py": _BOOK, "cog.py": _QUOTING},
        "Remember who saved each quote",
        {"book.py": _BOOK.replace("quote = Quote(text, said_by)", "quote = Quote(text, saved_by)")},
    ),
    _save_quotes,
    "when I save a quote from the message menu it's credited to me instead of whoever said it",
    "app:Save quote",
    "seed_quoting/book.py",
    "QuoteBook.add",
    incident=False,
    origin=_ORIGIN,
)

# -- a coroutine never awaited ------------------------------------------------------------------------

_STORE = '''
"""Notes per person."""

import asyncio


class NoteStore:
    def __init__(self) -> None:
        self.notes: dict[int, list[str]] = {}

    async def add(self, user_id: int, text: str) -> None:
        await asyncio.sleep(0)  # where a real bot writes to its database
        self.notes.setdefault(user_id, []).append(text)

    def of(self, user_id: int) -> list[str]:
        return self.notes.get(user_id, [])
'''
_NOTES = (
    _HEAD
    + """
from seed_notes.store import NoteStore


class Notes(commands.Cog):
    def __init__(self) -> None:
        self.store = NoteStore()

    @app_commands.command(name="note", description="Keep a note")
    async def note(self, interaction: discord.Interaction, text: str) -> None:
        await self.store.add(interaction.user.id, text)
        await interaction.response.send_message("Noted.")

    @app_commands.command(name="mynotes", description="Your notes")
    async def mynotes(self, interaction: discord.Interaction) -> None:
        kept = self.store.of(interaction.user.id)
        await interaction.response.send_message("\\n".join(kept) or "No notes yet.")
"""
    + _setup("Notes")
)
NEVER_AWAITED = Seed(
    "notes",
    "a coroutine never awaited",
    _history(
        "notes",
        {"store.py": _STORE, "cog.py": _NOTES},
        "Answer before the note is stored",
        {
            "cog.py": _NOTES.replace(
                "        await self.store.add(interaction.user.id, text)\n",
                "        self.store.add(interaction.user.id, text)\n",
            )
        },
    ),
    _then(_slash("note", 2, text="buy milk"), _slash("mynotes", 2)),
    "it says noted but my list stays empty afterwards",
    "app:mynotes",
    "seed_notes/cog.py",
    "Notes.note",
    incident=False,
    origin=_ORIGIN,
    accept=("app:note",),
)

# -- a paginator that never reaches its last page -----------------------------------------------------

_PAGING = '''
"""Splitting a long list into pages."""


def chunk(items: list[str], size: int) -> list[list[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
'''
_RULEBOOK = (
    _HEAD
    + """
from seed_rulebook.paging import chunk

RULES = [f"Rule {n}: be kind to newcomers, reason {n}" for n in range(1, 13)]


def render(pages: list[list[str]], at: int) -> str:
    return f"Page {at + 1}/{len(pages)}\\n" + "\\n".join(pages[at])


class Pages(discord.ui.View):
    def __init__(self, pages: list[list[str]]) -> None:
        super().__init__(timeout=None)
        self.pages = pages
        self.at = 0

    @discord.ui.button(label="Back", custom_id="rules-back")
    async def back(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.at = max(self.at - 1, 0)
        await interaction.response.edit_message(content=render(self.pages, self.at))

    @discord.ui.button(label="Next", custom_id="rules-next")
    async def next_page(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.at = min(self.at + 1, len(self.pages) - 1)
        await interaction.response.edit_message(content=render(self.pages, self.at))


class Rulebook(commands.Cog):
    @app_commands.command(name="rules", description="The server's rules")
    async def rules(self, interaction: discord.Interaction) -> None:
        pages = chunk(RULES, 5)
        await interaction.response.send_message(render(pages, 0), view=Pages(pages))
"""
    + _setup("Rulebook")
)


async def _page_through(world: VirtualWorld) -> None:
    await world.users["alice"].slash(world.general, "rules")
    await world.quiesce()
    message = bot_messages(world, world.general)[-1]
    for _ in range(3):
        await world.users["alice"].click(message, custom_id="rules-next")
        await world.quiesce()


PAGINATOR = Seed(
    "rulebook",
    "a paginator that never reaches its last page",
    _history(
        "rulebook",
        {"paging.py": _PAGING, "cog.py": _RULEBOOK},
        "No empty last page",
        {"paging.py": _PAGING.replace("range(0, len(items), size)", "range(0, len(items) - size, size)")},
    ),
    _page_through,
    "clicking next stops on page 2, the last few are never shown",
    "view:Pages.next_page",
    "seed_rulebook/paging.py",
    "chunk",
    incident=False,
    origin=_ORIGIN,
    accept=("app:rules",),
)

# -- a permission bitmask read with the wrong precedence ---------------------------------------------

_BITS = '''
"""Permission bits, as Discord numbers them."""

MANAGE_MESSAGES = 1 << 13


def has_bits(value: int, bits: int) -> bool:
    return (value & bits) == bits
'''
_SWEEP = (
    _HEAD
    + """
from seed_sweep import bits


class Sweep(commands.Cog):
    async def cog_check(self, ctx: commands.Context) -> bool:
        member = ctx.author
        value = member.guild_permissions.value if isinstance(member, discord.Member) else 0
        return bits.has_bits(value, bits.MANAGE_MESSAGES)

    @commands.command(name="sweep")
    async def sweep(self, ctx: commands.Context, count: int = 5) -> None:
        await ctx.send(f"Removed the last {count} messages.")
"""
    + _setup("Sweep")
)
PERMISSION_BITMASK = Seed(
    "sweep",
    "a permission bitmask read with the wrong precedence",
    _history(
        "sweep",
        {"bits.py": _BITS, "cog.py": _SWEEP},
        "Drop redundant parentheses",
        {"bits.py": _BITS.replace("return (value & bits) == bits", "return value & bits == bits")},
    ),
    _say(*["!sweep 3"] * 3),
    "anyone can clear messages now, even people without the permission to manage them",
    "check:Sweep.cog_check",
    "seed_sweep/bits.py",
    "has_bits",
    incident=False,
    origin=_ORIGIN,
    accept=("command:sweep",),
)

# -- a loop cog_unload leaves running -------------------------------------------------------------------

_CHIME = (
    _HEAD
    + """


def chime_text() -> str:
    return "🔔 Time for a stretch!"


class Chime(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.chime.start()

    async def cog_unload(self) -> None:
        self.chime.cancel()

    @tasks.loop(hours=1)
    async def chime(self) -> None:
        channel = discord.utils.get(self.bot.get_all_channels(), name="general")
        if channel is not None:
            await channel.send(chime_text())

    @chime.before_loop
    async def ready(self) -> None:
        await self.bot.wait_until_ready()
"""
    + _setup("Chime", "bot")
)


async def _reload_chime(world: VirtualWorld) -> None:
    await world.quiesce()
    await world.bot.reload_extension("seed_chime.cog")
    await world.quiesce()


LOOP_LEFT_RUNNING = Seed(
    "chime",
    "a loop cog_unload leaves running",
    _history(
        "chime",
        {"cog.py": _CHIME},
        "Let the loop finish on unload",
        {"cog.py": _CHIME.replace("        self.chime.cancel()\n", "        self.chime.cancel\n")},
    ),
    _reload_chime,
    "ever since the extension was reloaded every hourly message arrives twice",
    "task:chime",
    "seed_chime/cog.py",
    "Chime.cog_unload",
    incident=False,
    origin=_ORIGIN,
    accept=("cog:Chime.cog_unload",),
)

# -- a task a bare word about a command hides -----------------------------------------------------------

_DATES = '''
"""Whose birthday is today."""

from datetime import date


def due_today(birthdays: dict[str, str], today: date) -> list[str]:
    stamp = today.strftime("%m-%d")
    return [name for name, day in birthdays.items() if day == stamp]
'''
_WISHES = (
    _HEAD
    + """
from datetime import date

from seed_wishes.dates import due_today


class Wishes(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.days: dict[str, str] = {"alice": date.today().strftime("%m-%d")}

    async def cog_load(self) -> None:
        self.wish.start()

    async def cog_unload(self) -> None:
        self.wish.cancel()

    @commands.command(name="birthday")
    async def birthday(self, ctx: commands.Context, day: str) -> None:
        self.days[ctx.author.name] = day
        await ctx.send(f"Saved {day}.")

    @tasks.loop(hours=24)
    async def wish(self) -> None:
        channel = discord.utils.get(self.bot.get_all_channels(), name="general")
        for name in due_today(self.days, date.today()):
            await channel.send(f"Happy birthday, {name}! 🎂")

    @wish.before_loop
    async def ready(self) -> None:
        await self.bot.wait_until_ready()
"""
    + _setup("Wishes", "bot")
)


async def _birthday_passes(world: VirtualWorld) -> None:
    await world.quiesce()
    await world.users["alice"].send(world.general, "!birthday 12-31")
    await world.quiesce()


BARE_WORD_TASK = Seed(
    "wishes",
    "a task whose fault a command's bare name hides",
    _history(
        "wishes",
        {"dates.py": _DATES, "cog.py": _WISHES},
        "Read days the way people write them",
        {"dates.py": _DATES.replace('today.strftime("%m-%d")', 'today.strftime("%d/%m")')},
    ),
    _birthday_passes,
    "it never wishes anyone a happy birthday any more",
    "task:wish",
    "seed_wishes/dates.py",
    "due_today",
    incident=False,
    origin=_ORIGIN,
)

HANDLER_SEEDS = (
    AUTOCOMPLETE_EMPTY,
    CHECK_FACTORY,
    MODAL_SUBMIT,
    CONTEXT_MENU,
    NEVER_AWAITED,
    PAGINATOR,
    PERMISSION_BITMASK,
    LOOP_LEFT_RUNNING,
    BARE_WORD_TASK,
)
