"""Ranking by evidence: following a bad value to where it was made, through arguments, attributes,
settings, configuration files, swallowed exceptions and the stored rows another command wrote."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from mendbot.db import actions as action_queries
from mendbot.db import handlers as handler_queries
from mendbot.db import incidents as incident_queries
from mendbot.db.connection import open_database
from mendbot.db.records import ActionRecord
from mendbot.improve.evidence.gather import build_evidence
from mendbot.improve.evidence.pack import EvidencePack
from tests.localise.repo import Commit, build_repo

NOW = time.time()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_database(tmp_path / "m.db")
    yield connection
    await connection.close()


def _line(text: str, needle: str) -> int:
    """The 1-based line of the first line of `text` (as written to the repository) holding `needle`."""
    lines = text.strip("\n").splitlines()
    return next(n for n, line in enumerate(lines, 1) if needle in line)


async def _failing(
    db: aiosqlite.Connection,
    frames: list[str],
    *,
    kind: str = "app:thing",
    error: str = "TypeError",
    extra: dict[str, object] | None = None,
) -> int:
    """Five failing actions with these frames, and the incident they opened."""
    await action_queries.insert_many(
        db,
        [
            ActionRecord(
                ts=NOW - 60 * n,
                kind=kind,
                source="Thing",
                ok=False,
                duration_ms=2.0,
                user_id=7,
                error_type=error,
                error_message="it broke",
                fingerprint="fp-flow",
                frames=frames,
                extra=extra or {},
            )
            for n in range(5)
        ],
    )
    return await incident_queries.insert(
        db,
        {
            "rule": "repeat",
            "rules": ["repeat"],
            "level": "error",
            "kind": kind,
            "fingerprint": "fp-flow",
            "state": "open",
            "summary": f"the same {error} 5 times",
            "first_seen": NOW - 3600,
            "last_seen": NOW,
            "count": 5,
            "user_ids": [7],
            "sample": {"error_type": error, "error_message": "it broke", "frames": frames},
            "updated_at": NOW,
        },
    )


async def _pack(db: aiosqlite.Connection, repo: Path, incident: int) -> EvidencePack:
    return await build_evidence(db, repo, incident_id=incident, description="it is broken", now=NOW)


async def _wrong_answer(
    db: aiosqlite.Connection, repo: Path, handler: tuple[str, str, int], complaint: str
) -> EvidencePack:
    """A complaint about a wrong answer of app:thing (no traceback), its handler known."""
    path, qualname, line = handler
    await handler_queries.replace_cog(
        db, "Thing", [handler_queries.HandlerLocation("app:thing", path, qualname, line, "Thing")], NOW
    )
    return await build_evidence(
        db, repo, incident_id=None, description=complaint, kind="app:thing", requester_id=7, now=NOW
    )


def _names(pack: EvidencePack) -> list[str]:
    return [f"{s.path}:{s.function}" for s in pack.suspects]


MATH = """
def mean(values: list[float]) -> float:
    return sum(values) / len(values)
"""
CALLER = """
from pkg.maths import mean


def report(numbers: list[float]) -> str:
    kept = [n for n in numbers if n >= 0]
    return f"{mean(kept):.2f}"
"""


async def test_the_frame_that_made_a_bad_argument_outranks_a_callee_edited_cosmetically(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """The caller's filter changed three days ago and empties the list; the callee that raised had
    only its signature retyped yesterday: the caller, which made the argument, ranks first."""
    bad = CALLER.replace("if n >= 0]", "if n > 100]")
    repo = build_repo(
        tmp_path / "repo",
        (
            Commit(300, "Add", {"pkg/__init__.py": "", "pkg/maths.py": MATH, "pkg/report.py": CALLER}),
            Commit(3, "Drop outliers", {"pkg/report.py": bad}),
            Commit(
                1, "Type it", {"pkg/maths.py": MATH.replace("values: list[float]", 'values: "list[float]"')}
            ),
        ),
    )
    frames = [
        f"pkg/report.py:{_line(bad, 'mean(kept)')}:report",
        f"pkg/maths.py:{_line(MATH, 'return sum')}:mean",
    ]
    pack = await _pack(db, repo, await _failing(db, frames, error="ZeroDivisionError"))
    assert _names(pack)[0] == "pkg/report.py:report", pack.suspects
    assert any("made the argument `values`" in reason for reason in pack.suspects[0].reasons)


STOCK = """
class Stock:
    def __init__(self) -> None:
        self.levels = {"apples": 12}

    def available(self, item: str) -> int:
        return self.levels.get(item, 0)
"""
COG = """
from pkg.stock import Stock


class Shop:
    def __init__(self, stock: Stock) -> None:
        self.stock = stock

    async def instock(self, ctx, item: str) -> None:
        await ctx.send(f"{self.stock.available(item)} left")
"""


async def test_a_method_called_through_an_attribute_is_a_suspect(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """`self.stock.available(item)` resolves to `Stock.available` through the annotated parameter
    the attribute was set from; it makes the answer and changed last, so it ranks first."""
    repo = build_repo(
        tmp_path / "repo",
        (
            Commit(100, "Add", {"pkg/__init__.py": "", "pkg/stock.py": STOCK, "pkg/cog.py": COG}),
            Commit(2, "Plurals", {"pkg/stock.py": STOCK.replace("get(item, 0)", 'get(item + "s", 0)')}),
        ),
    )
    pack = await _wrong_answer(
        db, repo, ("pkg/cog.py", "Shop.instock", _line(COG, "async def instock")), "apples says 0"
    )
    assert _names(pack)[0] == "pkg/stock.py:Stock.available", pack.suspects


DEEP: dict[str, str | None] = {
    "pkg/__init__.py": "",
    "pkg/a.py": "from pkg.b import two\n\n\ndef one(x: float) -> float:\n    return two(x) + 1\n",
    "pkg/b.py": "from pkg.c import three\n\n\ndef two(x: float) -> float:\n    return three(x) * 2\n",
    "pkg/c.py": "from pkg.d import four\n\n\ndef three(x: float) -> float:\n    return four(x) - 1\n",
    "pkg/d.py": "def four(x: float) -> float:\n    return x / 3\n",
    "pkg/cog.py": "from pkg.a import one\n\n\nasync def handle(ctx, x: float) -> None:\n"
    '    await ctx.send(f"{one(x)}")\n',
}


async def test_callees_are_followed_more_than_two_levels_down(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """A wrong answer made four calls below the handler: the function that changed last, down
    there, is a suspect and ranks first."""
    repo = build_repo(
        tmp_path / "repo",
        (
            Commit(100, "Add", DEEP),
            Commit(2, "Thirds", {"pkg/d.py": str(DEEP["pkg/d.py"]).replace("x / 3", "x / 4")}),
        ),
    )
    pack = await _wrong_answer(db, repo, ("pkg/cog.py", "handle", 4), "handle says 7.5")
    assert _names(pack)[0] == "pkg/d.py:four", pack.suspects


SETTINGS = """
from dataclasses import dataclass


@dataclass
class ListingSettings:
    page_size: int = 5
"""
PAGES = """
from pkg.settings import ListingSettings


def page_count(items: list[str], settings: ListingSettings) -> int:
    return -(-len(items) // settings.page_size)
"""


async def test_a_settings_default_read_on_the_failing_path_is_the_first_suspect(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """`settings.page_size` is read where it raised; the settings class's default changed two days
    ago: the class is ranked first, with the field's line as the line that changed."""
    repo = build_repo(
        tmp_path / "repo",
        (
            Commit(140, "Add", {"pkg/__init__.py": "", "pkg/settings.py": SETTINGS, "pkg/pages.py": PAGES}),
            Commit(2, "Unpaged", {"pkg/settings.py": SETTINGS.replace("= 5", "= 0")}),
        ),
    )
    frames = [f"pkg/pages.py:{_line(PAGES, 'return')}:page_count"]
    pack = await _pack(db, repo, await _failing(db, frames, error="ZeroDivisionError"))
    assert _names(pack)[0] == "pkg/settings.py:ListingSettings", pack.suspects
    assert "page_size: int = 0" in pack.render()


CONFIG = """
import json
from pathlib import Path


def guild_config(name: str) -> dict:
    settings = json.loads(Path(__file__).with_name("guilds.json").read_text())
    return settings.get(name, settings["default"])
"""
WELCOME = """
from pkg.config import guild_config


def welcome(guild: str, person: str) -> str:
    template = guild_config(guild)["greeting"]
    return template.format(member=person)
"""
GUILDS = '{"default": {"greeting": "Hi {member}"}, "ours": {"greeting": "Hello {member}"}}\n'


async def test_a_configuration_file_read_on_the_failing_path_is_a_suspect(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """The failing line formats a template read through `guild_config`, which names guilds.json;
    one guild's entry changed yesterday: the file is ranked first and its text is shown."""
    repo = build_repo(
        tmp_path / "repo",
        (
            Commit(
                150,
                "Add",
                {
                    "pkg/__init__.py": "",
                    "pkg/config.py": CONFIG,
                    "pkg/welcome.py": WELCOME,
                    "pkg/guilds.json": GUILDS,
                },
            ),
            Commit(1, "Ours", {"pkg/guilds.json": GUILDS.replace("Hello {member}", "Hello {user}")}),
        ),
    )
    frames = [f"pkg/welcome.py:{_line(WELCOME, 'template.format')}:welcome"]
    pack = await _pack(db, repo, await _failing(db, frames, error="KeyError"))
    assert _names(pack)[0] == "pkg/guilds.json:guilds.json", pack.suspects
    assert "Hello {user}" in pack.render()


PRICES = """
PRICES = {"apples": "1.20"}


def parse_price(text: str) -> float:
    return float(text)


def price_of(item: str) -> float:
    try:
        return parse_price(PRICES[item])
    except (KeyError, ValueError):
        return 0.0
"""
PRICE_COG = """
from pkg.prices import price_of


async def price(ctx, item: str) -> None:
    await ctx.send(f"{item} cost {price_of(item):.2f}")
"""


async def test_a_call_whose_exception_is_swallowed_into_a_fallback_is_a_suspect(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """`price_of` turns any error of `parse_price` into 0.0; parse_price changed three days ago and
    the handler's wording yesterday: parse_price ranks first, with the reason said."""
    repo = build_repo(
        tmp_path / "repo",
        (
            Commit(100, "Add", {"pkg/__init__.py": "", "pkg/prices.py": PRICES, "pkg/cog.py": PRICE_COG}),
            Commit(
                3, "Commas", {"pkg/prices.py": PRICES.replace("float(text)", 'float(text.replace(".", ","))')}
            ),
            Commit(1, "Each", {"pkg/cog.py": PRICE_COG.replace(":.2f}", ":.2f} each")}),
        ),
    )
    pack = await _wrong_answer(db, repo, ("pkg/cog.py", "price", 4), "apples cost 0.00")
    assert _names(pack)[0] == "pkg/prices.py:parse_price", pack.suspects
    assert any("swallowed by price_of" in reason for reason in pack.suspects[0].reasons)


BOOK = """
FIELDS = ("name", "points")


def record(db, user: int, name: str, points: int) -> dict:
    values = [name, points]
    return dict(zip(FIELDS, values))
"""
BOARD = """
def leaderboard(rows: list[dict]) -> str:
    ranked = sorted(rows, key=lambda row: row["points"] + 0, reverse=True)
    return ", ".join(row["name"] for row in ranked)
"""


async def test_the_code_that_wrote_a_row_the_failing_action_read_is_a_suspect(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """The failing actions read a row whose recorded writer is `record` (nothing in the source ties
    the two): the writer, changed three days ago, ranks first; the lambda inside the raising
    function does not count that function twice."""
    bad = BOOK.replace("values = [name, points]", "values = [name, str(points)]")
    repo = build_repo(
        tmp_path / "repo",
        (
            Commit(110, "Add", {"pkg/__init__.py": "", "pkg/book.py": BOOK, "pkg/board.py": BOARD}),
            Commit(3, "Text", {"pkg/book.py": bad}),
        ),
    )
    line = _line(BOARD, "ranked = sorted")
    frames = [f"pkg/board.py:{line}:leaderboard", f"pkg/board.py:{line}:<lambda>"]
    read = {
        "table": "scores",
        "row": "7",
        "written_by": "app:score",
        "writer": [f"pkg/book.py:{_line(bad, 'return dict')}:record"],
        "written_at": NOW - 600,
    }
    pack = await _pack(db, repo, await _failing(db, frames, extra={"read_rows": [read]}))
    assert _names(pack)[0] == "pkg/book.py:record", pack.suspects
    assert "written by app:score" in " ".join(pack.suspects[0].reasons)
    board = next(s for s in pack.suspects if s.function == "leaderboard")
    assert not any("above the raise" in reason for reason in board.reasons)


AUDIT = """
SEEN: list[int] = []


def note(value: int) -> None:
    SEEN.append(value)
"""
CALC = """
def ratio(a: int, b: int) -> float:
    return a / b
"""
HANDLER = """
from pkg.audit import note
from pkg.calc import ratio


def handle(a: int, b: int) -> float:
    note(a)
    return ratio(a, b)
"""


async def test_a_function_called_on_the_failing_path_is_a_suspect_with_its_commits(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """`note` ran on the failing path (called by a frame) but is not in the traceback: it is a
    suspect, and the recent commit touching its file is shown with the suspects' history."""
    repo = build_repo(
        tmp_path / "repo",
        (
            Commit(
                90,
                "Add",
                {"pkg/__init__.py": "", "pkg/audit.py": AUDIT, "pkg/calc.py": CALC, "pkg/cog.py": HANDLER},
            ),
            Commit(
                1,
                "Note the second value",
                {"pkg/audit.py": AUDIT.replace("SEEN.append(value)", "SEEN.append(-value)")},
            ),
        ),
    )
    frames = [
        f"pkg/cog.py:{_line(HANDLER, 'return ratio')}:handle",
        f"pkg/calc.py:{_line(CALC, 'return')}:ratio",
    ]
    pack = await _pack(db, repo, await _failing(db, frames, error="ZeroDivisionError"))
    note = next(s for s in pack.suspects if s.function == "note")
    assert any("called on the failing path by handle" in reason for reason in note.reasons)
    assert "pkg/audit.py" in [history.path for history in pack.histories]
    assert "Note the second value" in pack.render()
