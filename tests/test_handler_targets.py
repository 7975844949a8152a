"""Every recorded kind is a target of its own: a complaint about what a button, a select, a form, an
autocomplete, a context menu, a check, a task loop, a listener or a cog's load and unload hooks do finds
that handler — not the command next to it — and its evidence pack has its suspects, with nothing
recorded failing."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import discord
import pytest
from discord.ext import commands

from mendbot.db.connection import open_database
from mendbot.improve.evidence.gather import build_evidence
from mendbot.improve.evidence.handler_scan import declared_handlers
from mendbot.improve.evidence.target import resolve_target
from mendbot.observe.handlers import cog_handlers
from tests.harness.repo import git
from tests.localise.driver import rendered_suspects

NOW = 1_800_000_000.0

_FILES = {
    "garden/__init__.py": "",
    "garden/catalogue.py": '''
        """Seeds the shop sells."""

        SEEDS = ["basil", "beetroot", "carrot", "chard", "leek"]


        def matching(typed: str) -> list[str]:
            return [seed for seed in SEEDS if seed.startswith(typed.strip().lower())][:25]
    ''',
    "garden/watering.py": '''
        """How much water a bed needs."""


        def litres_for(bed: str, size_m2: float) -> float:
            return round(size_m2 * 4.5, 1)
    ''',
    "garden/beds.py": '''
        """What is planted where."""

        BEDS = {"north": "carrots and leeks", "south": "tomatoes"}


        def describe(bed: str) -> str:
            return f"The {bed} bed holds {BEDS.get(bed, 'nothing yet')}"
    ''',
    "garden/journal.py": '''
        """Lines of the garden journal."""


        def journal_line(day: str, note: str) -> str:
            return f"{day}: {note.strip()}"
    ''',
    "garden/tips.py": '''
        """Turning a message into a gardening tip."""


        def tip_text(content: str, author: str) -> str:
            return f"Tip from {author}: {content[:200]}"
    ''',
    "garden/roles.py": '''
        """Who may do what in the garden."""

        GARDENER_ROLES = {"Gardener", "Head gardener"}


        def is_gardener(role_names: set[str]) -> bool:
            return bool(role_names & GARDENER_ROLES)
    ''',
    "garden/growth.py": '''
        """How the plants grow each tick."""


        def grown(height_cm: float, hours: float) -> float:
            return height_cm + 0.2 * hours
    ''',
    "garden/greeting.py": '''
        """What new members are told."""


        def welcome_text(name: str) -> str:
            return f"Welcome to the allotment, {name}! Say hi in #seedlings."
    ''',
    "garden/settings.py": '''
        """The garden's settings."""

        SETTINGS = {"tick_minutes": 30, "beds": 2}


        def tick_minutes() -> int:
            return int(SETTINGS["tick_minutes"])
    ''',
    "garden/cog.py": '''
        """The garden: beds, seeds, a journal and a growth loop."""

        import discord
        from discord import app_commands
        from discord.ext import commands, tasks

        from garden.beds import describe
        from garden.catalogue import matching
        from garden.greeting import welcome_text
        from garden.growth import grown
        from garden.journal import journal_line
        from garden.roles import is_gardener
        from garden.settings import tick_minutes
        from garden.tips import tip_text
        from garden.watering import litres_for


        def gardener_only():
            async def predicate(ctx: commands.Context) -> bool:
                return is_gardener({role.name for role in getattr(ctx.author, "roles", [])})

            return commands.check(predicate)


        class Journal(discord.ui.Modal, title="Journal"):
            day = discord.ui.TextInput(label="Day")
            note = discord.ui.TextInput(label="Note")

            async def on_submit(self, interaction: discord.Interaction) -> None:
                await interaction.response.send_message(journal_line(self.day.value, self.note.value))


        class Beds(discord.ui.View):
            @discord.ui.button(label="Water")
            async def water(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
                await interaction.response.send_message(f"{litres_for('north', 3.0)} litres")

            @discord.ui.select(options=[discord.SelectOption(label=bed) for bed in ("north", "south")])
            async def pick_bed(self, interaction: discord.Interaction, select: discord.ui.Select) -> None:
                await interaction.response.send_message(describe(select.values[0]))


        class Garden(commands.Cog):
            def __init__(self, bot: commands.Bot) -> None:
                self.bot = bot
                self.height = 10.0
                self.menu = app_commands.ContextMenu(name="Pin as tip", callback=self.pin_tip)
                bot.tree.add_command(self.menu)

            async def cog_load(self) -> None:
                self.tick.change_interval(minutes=tick_minutes())
                self.tick.start()

            async def cog_unload(self) -> None:
                self.tick.cancel

            async def pin_tip(self, interaction: discord.Interaction, message: discord.Message) -> None:
                await interaction.response.send_message(tip_text(message.content, message.author.name))

            @app_commands.command(name="beds", description="The garden beds")
            async def beds(self, interaction: discord.Interaction) -> None:
                await interaction.response.send_message("The beds:", view=Beds())

            @app_commands.command(name="journal", description="Write in the journal")
            async def journal(self, interaction: discord.Interaction) -> None:
                await interaction.response.send_modal(Journal())

            @app_commands.command(name="plant", description="Plant a seed")
            async def plant(self, interaction: discord.Interaction, seed: str) -> None:
                await interaction.response.send_message(f"Planted {seed}")

            @plant.autocomplete("seed")
            async def seed_names(self, interaction: discord.Interaction, current: str) -> list:
                return [app_commands.Choice(name=name, value=name) for name in matching(current)]

            @commands.command(name="harvest")
            @gardener_only()
            async def harvest(self, ctx: commands.Context) -> None:
                await ctx.send("Harvested!")

            @commands.Cog.listener()
            async def on_member_join(self, member: discord.Member) -> None:
                await member.send(welcome_text(member.display_name))

            @tasks.loop(minutes=30)
            async def tick(self) -> None:
                self.height = grown(self.height, 0.5)

            @tick.before_loop
            async def ready(self) -> None:
                await self.bot.wait_until_ready()


        async def setup(bot: commands.Bot) -> None:
            await bot.add_cog(Garden(bot))
    ''',
}


@pytest.fixture(scope="module")
def garden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bot's repository with one cog holding a handler of every kind, each over a helper of its own."""
    repo = tmp_path_factory.mktemp("garden") / "repo"
    for name, text in _FILES.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "The garden")
    return repo


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_database(tmp_path / "m.db")
    yield connection
    await connection.close()


@pytest.mark.parametrize(
    ("complaint", "kind", "suspect"),
    [
        (
            "clicking water on the beds gives a silly amount",
            "view:Beds.water",
            "garden/watering.py:litres_for",
        ),
        (
            "picking a bed in the dropdown describes the wrong bed",
            "view:Beds.pick_bed",
            "garden/beds.py:describe",
        ),
        (
            "what I write in the journal form comes out mangled",
            "modal:Journal.on_submit",
            "garden/journal.py:journal_line",
        ),
        (
            "when I start typing a seed name no suggestions come up",
            "autocomplete:plant.seed",
            "garden/catalogue.py:matching",
        ),
        (
            "right-clicking a message to pin it as a tip credits the wrong person",
            "app:Pin as tip",
            "garden/tips.py:tip_text",
        ),
        (
            "gardeners are told they aren't allowed in, whatever roles they have",
            "check:gardener_only.<locals>.predicate",
            "garden/roles.py:is_gardener",
        ),
        ("the plants never grow any more", "task:tick", "garden/growth.py:grown"),
        (
            "when someone joins the server they are welcomed to the wrong channel",
            "listener:on_member_join",
            "garden/greeting.py:welcome_text",
        ),
        (
            "the garden extension doesn't load any more since the settings changed",
            "cog:Garden.cog_load",
            "garden/settings.py:tick_minutes",
        ),
        (
            "since the garden extension was reloaded the plants grow twice as fast",
            ("task:tick", "cog:Garden.cog_load", "cog:Garden.cog_unload"),
            "garden/cog.py:Garden.cog_unload",
        ),
    ],
    ids=[
        "button",
        "select",
        "modal",
        "autocomplete",
        "context-menu",
        "check",
        "task",
        "listener",
        "cog_load",
        "cog_unload",
    ],
)
async def test_a_complaint_about_a_handler_finds_it_and_its_suspects(
    db: aiosqlite.Connection, garden: Path, complaint: str, kind: str | tuple[str, ...], suspect: str
) -> None:
    """The words lead to the handler of that kind (a loop's or its hooks', for a loop left running),
    and its rendered evidence lists its suspect among the first three."""
    target = await resolve_target(db, complaint, replied_incident_id=None, now=NOW, roots=[garden])
    assert target.kind in ((kind,) if isinstance(kind, str) else kind), target.candidates
    pack = await build_evidence(
        db, garden, incident_id=None, description=complaint, kind=target.kind, now=NOW
    )
    assert suspect in rendered_suspects(pack.render())[:3], pack.suspects


def test_the_source_declares_every_handler_kind_as_the_recorder_spells_it(garden: Path) -> None:
    """Views, selects, modals, autocomplete, context menus, checks, loops and their hooks, listeners
    and cog hooks are read from the source, kinds spelled as the recorder spells them."""
    found = {(h.kind, h.qualname) for h in declared_handlers(garden)}
    assert found >= {
        ("view:Beds.water", "Beds.water"),
        ("view:Beds.pick_bed", "Beds.pick_bed"),
        ("modal:Journal.on_submit", "Journal.on_submit"),
        ("autocomplete:plant.seed", "Garden.seed_names"),
        ("app:Pin as tip", "Garden.pin_tip"),
        ("check:gardener_only.<locals>.predicate", "gardener_only.predicate"),
        ("task:tick", "Garden.tick"),
        ("task:tick", "Garden.ready"),
        ("listener:on_member_join", "Garden.on_member_join"),
        ("cog:Garden.cog_load", "Garden.cog_load"),
        ("cog:Garden.cog_unload", "Garden.cog_unload"),
        ("app:plant", "Garden.plant"),
        ("command:harvest", "Garden.harvest"),
    }


async def test_a_loaded_cog_maps_its_checks_autocomplete_menus_and_hooks(garden: Path) -> None:
    """The running map read off a loaded cog holds what the recorder records of it beyond its commands."""
    import sys

    sys.path.insert(0, str(garden))
    try:
        from garden.cog import Garden  # the fixture's cog, imported as the bot would

        bot = commands.Bot(command_prefix="!", intents=discord.Intents.none())
        cog: Any = Garden(bot)
        await bot.add_cog(cog)
        found = {(h.kind, h.path, h.qualname) for h in cog_handlers(cog, (garden,), bot.tree)}
        cog.tick.cancel()  # its own cog_unload forgets to (the fault the cog_unload case is about)
        await bot.close()
    finally:
        sys.path.remove(str(garden))
        for name in [m for m in sys.modules if m == "garden" or m.startswith("garden.")]:
            del sys.modules[name]
    assert found >= {
        ("autocomplete:plant.seed", "garden/cog.py", "Garden.seed_names"),
        ("check:gardener_only.<locals>.predicate", "garden/cog.py", "gardener_only.predicate"),
        ("app:Pin as tip", "garden/cog.py", "Garden.pin_tip"),
        ("task:tick", "garden/cog.py", "Garden.ready"),
        ("cog:Garden.cog_load", "garden/cog.py", "Garden.cog_load"),
        ("cog:Garden.cog_unload", "garden/cog.py", "Garden.cog_unload"),
    }
