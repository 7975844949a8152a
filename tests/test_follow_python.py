"""Suspects are found the way Python reaches the code: relative imports, `module.NAME` constants and
module-level instances, classes made through a module, operators and subscripts calling a class's own
methods, attributes set in `__init__`; ranked by evidence rather than call depth; and mendbot's own
listeners are never suspects of a fault in someone else's cog. Real git history, real SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from mendbot.db import actions as action_queries
from mendbot.db import handlers as handler_queries
from mendbot.db.connection import open_database
from mendbot.db.records import ActionRecord
from mendbot.improve.evidence.gather import build_evidence
from mendbot.improve.evidence.pack import EvidencePack
from tests.localise.repo import Commit, build_repo

NOW = 1_800_000_000.0
# One of mendbot's own cogs, as they are written: on mendbot's runtime.
_LISTENER = (
    "from mendbot.runtime.attachment import Attachment\n\n"
    "class {name}:\n    async def on_message(self, message):\n        return None\n"
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_database(tmp_path / "m.db")
    yield connection
    await connection.close()


def _line(repo: Path, path: str, needle: str) -> int:
    text = (repo / path).read_text()
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


async def _crash(
    db: aiosqlite.Connection, repo: Path, frames: list[tuple[str, str, str]], error: str = "TypeError"
) -> EvidencePack:
    """Three failures whose in-repo frames are (path, line's text, function), innermost last."""
    written = [f"{path}:{_line(repo, path, needle)}:{function}" for path, needle, function in frames]
    await action_queries.insert_many(
        db,
        [
            ActionRecord(
                ts=NOW - n,
                kind="app:shop",
                source="Shop",
                ok=False,
                duration_ms=1.0,
                error_type=error,
                error_message="boom",
                fingerprint="fp",
                frames=written,
            )
            for n in range(3)
        ],
    )
    return await build_evidence(db, repo, incident_id=None, description="", fingerprint="fp", now=NOW)


def _names(pack: EvidencePack, top: int = 3) -> list[str]:
    return [f"{s.path}:{s.function}" for s in pack.suspects[:top]]


def _repo(tmp_path: Path, old: dict[str, str | None], new: dict[str, str | None] | None = None) -> Path:
    history = [Commit(90, "Start", old)]
    if new:
        history.append(Commit(1, "Change", new))
    return build_repo(tmp_path / "repo", tuple(history), now=NOW)


async def test_a_helper_imported_relatively_in_a_cog_package_is_followed(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """`from . import helpers` in a cog package: the helper whose result the raising line used is a
    suspect — it changed yesterday."""
    helpers = "def parse(text):\n    return text.split(',')\n"
    cog = (
        "from . import helpers\n\n\n"
        "def total(text):\n    parts = helpers.parse(text)\n    return sum(parts)\n"
    )
    repo = _repo(
        tmp_path,
        {
            "shop/__init__.py": "",
            "shop/helpers.py": "def parse(text):\n    return [int(p) for p in text.split(',')]\n",
            "shop/cog.py": cog,
        },
        {"shop/helpers.py": helpers},
    )
    pack = await _crash(db, repo, [("shop/cog.py", "return sum(parts)", "total")])
    assert "shop/helpers.py:parse" in _names(pack)


async def test_a_constant_read_through_its_module_is_a_suspect(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """`settings.MAX_ITEMS` on the lines feeding the failure: the constant, changed yesterday, ranks in
    the top three with its file."""
    repo = _repo(
        tmp_path,
        {
            "shop/__init__.py": "",
            "shop/settings.py": "MAX_ITEMS = 5\nCURRENCY = 'EUR'\n",
            "shop/cog.py": "from shop import settings\n\n\ndef page(items):\n"
            "    size = settings.MAX_ITEMS\n    return items[len(items) // size]\n",
        },
        {"shop/settings.py": "MAX_ITEMS = 0\nCURRENCY = 'EUR'\n"},
    )
    pack = await _crash(db, repo, [("shop/cog.py", "return items[", "page")], "ZeroDivisionError")
    assert "shop/settings.py:MAX_ITEMS" in _names(pack)


async def test_a_method_reached_through_a_module_level_instance_is_followed(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """`config.DEFAULTS.page_size()` where `DEFAULTS = Defaults()` at module level: `Defaults.page_size`,
    changed yesterday, is a suspect."""
    config_old = "class Defaults:\n    def page_size(self):\n        return 10\n\n\nDEFAULTS = Defaults()\n"
    repo = _repo(
        tmp_path,
        {
            "shop/__init__.py": "",
            "shop/config.py": config_old,
            "shop/cog.py": "from shop import config\n\n\ndef pages(items):\n"
            "    size = config.DEFAULTS.page_size()\n    return len(items) // size\n",
        },
        {"shop/config.py": config_old.replace("return 10", "return 0")},
    )
    pack = await _crash(db, repo, [("shop/cog.py", "return len(items)", "pages")], "ZeroDivisionError")
    assert "shop/config.py:Defaults.page_size" in _names(pack)


async def test_a_class_made_through_a_module_and_its_subscript_are_followed(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """`cache = store.Cache()` then `cache[key].upper()` fails: `Cache.__getitem__` — reached by a
    subscript of an object made through a module — is a suspect."""
    store_old = (
        "class Cache:\n    def __init__(self):\n        self.data = {}\n\n"
        "    def __getitem__(self, key):\n        return self.data.get(key, '')\n"
    )
    repo = _repo(
        tmp_path,
        {
            "shop/__init__.py": "",
            "shop/store.py": store_old,
            "shop/cog.py": "from shop import store\n\n\ndef name(key):\n"
            "    cache = store.Cache()\n    value = cache[key]\n    return value.upper()\n",
        },
        {"shop/store.py": store_old.replace("self.data.get(key, '')", "self.data.get(key)")},
    )
    pack = await _crash(db, repo, [("shop/cog.py", "return value.upper()", "name")], "AttributeError")
    assert "shop/store.py:Cache.__getitem__" in _names(pack)


async def test_the_method_that_fed_an_attribute_into_the_raising_line_ranks(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """`self.rate` is read where it raised and was set by `configure` (not `__init__`) yesterday: the
    setter ranks first."""
    cog = (
        "class Shop:\n    def __init__(self):\n        self.rate = 1.0\n\n"
        "    def configure(self, settings):\n        self.rate = settings.get('rate', 1.0)\n\n"
        "    def price(self, amount):\n        return round(amount * self.rate, 2)\n"
    )
    repo = _repo(
        tmp_path,
        {"shop.py": cog},
        {"shop.py": cog.replace("settings.get('rate', 1.0)", "settings.get('rate')")},
    )
    pack = await _crash(db, repo, [("shop.py", "return round(", "Shop.price")])
    assert _names(pack, 1) == ["shop.py:Shop.configure"]


async def test_depth_does_not_outrank_evidence(db: aiosqlite.Connection, tmp_path: Path) -> None:
    """A wrong answer made three calls down, by the function that changed last: it ranks first, above a
    shallow sibling on the answer's path that changed a day earlier — depth is no evidence."""
    old = (
        "def rounding(value):\n    return round(value, 2)\n\n\n"
        "def rate(amount):\n    return rounding(amount * 0.2)\n\n\n"
        "def tax(amount):\n    return rate(amount)\n\n\n"
        "def fee(amount):\n    return 1.5\n\n\n"
        "def quote(amount):\n    return f'{amount + tax(amount) + fee(amount)} EUR'\n"
    )
    history = (
        Commit(90, "Start", {"quote.py": old}),
        Commit(2, "Name the fee", {"quote.py": old.replace("return 1.5", "return 1.50  # the handling fee")}),
        Commit(
            1,
            "Round to tens",
            {
                "quote.py": old.replace("return 1.5", "return 1.50  # the handling fee").replace(
                    "round(value, 2)", "round(value, -1)"
                )
            },
        ),
    )
    repo = build_repo(tmp_path / "repo", history, now=NOW)
    await handler_queries.replace_cog(
        db, "Quote", [handler_queries.HandlerLocation("app:quote", "quote.py", "quote", 17, "Quote")], NOW
    )
    pack = await build_evidence(
        db, repo, incident_id=None, description="/quote adds the wrong tax", kind="app:quote", now=NOW
    )
    assert _names(pack, 1) == ["quote.py:rounding"]


async def test_mendbots_own_listeners_are_never_suspects_for_a_users_cog(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """A complaint about `listener:on_message` where mendbot's own cogs listen too: only the user's
    listener and what it calls are suspects."""
    repo = _repo(
        tmp_path,
        {
            "cogs/links.py": "class Links:\n    async def on_message(self, message):\n"
            "        if message.guild.id % 2:\n            return\n"
            "        await message.add_reaction('🔗')\n",
            "bot/cogs/improve.py": _LISTENER.format(name="Improve"),
            "bot/cogs/ship.py": _LISTENER.format(name="Ship"),
        },
    )
    await handler_queries.replace_cog(
        db,
        "Links",
        [
            handler_queries.HandlerLocation(
                "listener:on_message", "cogs/links.py", "Links.on_message", 2, "Links"
            )
        ],
        NOW,
    )
    for cog in ("improve", "ship"):
        await handler_queries.replace_cog(
            db,
            cog.title(),
            [
                handler_queries.HandlerLocation(
                    "listener:on_message", f"cogs/{cog}.py", f"{cog.title()}.on_message", 2, cog.title()
                )
            ],
            NOW,
        )
    pack = await build_evidence(
        db, repo, incident_id=None, description="links skip some servers", kind="listener:on_message", now=NOW
    )
    assert pack.suspects and all(s.path == "cogs/links.py" for s in pack.suspects)


async def test_a_complaint_with_nothing_recorded_finds_its_handler_by_its_words(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """No incident, no failure, no kind named: 'new members never get the welcome message in some
    servers' leads to the member-join listener whose code says so — a non-empty evidence pack."""
    repo = _repo(
        tmp_path,
        {
            "cogs/welcome.py": "class Welcome:\n    async def greet(self, member):\n"
            "        if member.guild.id in self.quiet:\n            return\n"
            "        await member.send(f'Welcome to {member.guild.name}!')\n\n"
            "    async def stats(self, interaction):\n"
            "        await interaction.response.send_message('42 members')\n",
            "cogs/dice.py": "class Dice:\n    async def roll(self, interaction, sides: int):\n"
            "        await interaction.response.send_message(f'rolled a d{sides}')\n",
        },
    )
    await handler_queries.replace_cog(
        db,
        "Welcome",
        [
            handler_queries.HandlerLocation(
                "listener:on_member_join", "cogs/welcome.py", "Welcome.greet", 2, "Welcome"
            ),
            handler_queries.HandlerLocation("app:stats", "cogs/welcome.py", "Welcome.stats", 7, "Welcome"),
        ],
        NOW,
    )
    await handler_queries.replace_cog(
        db, "Dice", [handler_queries.HandlerLocation("app:roll", "cogs/dice.py", "Dice.roll", 2, "Dice")], NOW
    )
    pack = await build_evidence(
        db,
        repo,
        incident_id=None,
        description="new people never get the welcome message in some servers",
        now=NOW,
    )
    assert pack.kinds[:1] == ["listener:on_member_join"]
    assert _names(pack, 1) == ["cogs/welcome.py:Welcome.greet"]
