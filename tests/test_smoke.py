"""The smoke check refuses app commands Discord would reject at the next start's sync.

Each rule is pinned twice: on a raw payload (`payload_problems`), and through `smoke_load` with a cog that
breaks it — whether discord.py refuses the cog at load or the payload check catches what it lets through.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mendbot.tools.smoke import smoke_load
from mendbot.trust.command_limits import payload_problems

REPO = Path(__file__).resolve().parent.parent
_modules = itertools.count()


def _option(name: str = "a", **fields: Any) -> dict[str, Any]:
    return {"type": 3, "name": name, "description": "an option", "required": True, **fields}


def _command(name: str = "cmd", **fields: Any) -> dict[str, Any]:
    return {"type": 1, "name": name, "description": "a command", "options": [], **fields}


def _sub(name: str, kind: int = 1, options: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": kind, "name": name, "description": "nested", "options": options or []}


def _choices(count: int, name_length: int = 5, value: str = "v") -> list[dict[str, Any]]:
    return [{"name": f"{i:0{name_length}d}", "value": f"{value}{i}"} for i in range(count)]


RULES: list[tuple[str, list[dict[str, Any]], str]] = [
    ("name too long", [_command("x" * 33)], "must be 1–32 characters"),
    ("empty name", [_command("")], "must be 1–32 characters"),
    ("name with a space", [_command("do it")], "may hold only letters, numbers"),
    ("upper-case name", [_command("Roll")], "must be lower-case"),
    ("upper-case option name", [_command(options=[_option("When")])], "must be lower-case"),
    ("localized name invalid", [_command(name_localizations={"de": "Würfel"})], "name (de)"),
    ("description too long", [_command(description="d" * 101)], "is 101 characters; Discord allows 1–100"),
    ("empty description", [_command(description="")], "is 0 characters; Discord allows 1–100"),
    (
        "option description too long",
        [_command(options=[_option(description="d" * 101)])],
        "option 'a' description: is 101 characters",
    ),
    ("option without description", [_command(options=[_option(description="…")])], "users see '…'"),
    (
        "26 options",
        [_command(options=[_option(f"o{i}") for i in range(26)])],
        "has 26 options; Discord allows 25",
    ),
    (
        "required after optional",
        [_command(options=[_option("first", required=False), _option("second")])],
        "'second': is required but comes after optional 'first'",
    ),
    ("26 choices", [_command(options=[_option(choices=_choices(26))])], "has 26 choices; Discord allows 25"),
    (
        "choice name too long",
        [_command(options=[_option(choices=_choices(1, name_length=101))])],
        "name is 101 characters; Discord allows 1–100",
    ),
    (
        "string choice value too long",
        [_command(options=[_option(choices=[{"name": "n", "value": "v" * 101}])])],
        "value is 101 characters",
    ),
    (
        "choices and autocomplete",
        [_command(options=[_option(choices=_choices(2), autocomplete=True)])],
        "both choices and autocomplete",
    ),
    (
        "over 4000 characters",
        [
            _command(
                options=[_option(f"o{i}", description="d" * 100, choices=_choices(2, 50)) for i in range(20)]
            )
        ],
        "characters in names, descriptions and choices; Discord allows 4000",
    ),
    ("101 slash commands", [_command(f"c{i}") for i in range(101)], "101 slash commands; Discord allows 100"),
    (
        "16 user menus",
        [{"type": 2, "name": f"Menu {i}", "description": ""} for i in range(16)],
        "16 user context menus; Discord allows 15",
    ),
    (
        "context menu with a description",
        [{"type": 3, "name": "Quote", "description": "quotes"}],
        "must have an empty description",
    ),
    ("duplicate command names", [_command("a"), _command("a")], "two commands of one type share this name"),
    ("duplicate option names", [_command(options=[_option("a"), _option("a")])], "is a duplicate name"),
    (
        "group inside a group",
        [_command(options=[_sub("g", 2, [_sub("h", 2, [_sub("s")])])])],
        "a group inside a group",
    ),
    (
        "group holding a plain option",
        [_command(options=[_sub("g", 2, [_option("x")])])],
        "may contain only subcommands",
    ),
    (
        "subcommands mixed with options",
        [_command(options=[_sub("s"), _option("x")])],
        "mixes subcommands with plain options",
    ),
    ("subcommand holding a subcommand", [_command(options=[_sub("s", 1, [_sub("t")])])], "cannot contain"),
]


@pytest.mark.parametrize(("rule", "payloads", "expected"), RULES, ids=[rule for rule, _, _ in RULES])
def test_payload_breaking_a_discord_limit_is_a_problem(
    rule: str, payloads: list[dict[str, Any]], expected: str
) -> None:
    """Each Discord limit broken in a payload is reported, naming the limit."""
    problems = [str(problem) for problem in payload_problems(payloads)]
    assert any(expected in problem for problem in problems), problems


def test_payload_within_every_limit_has_no_problems() -> None:
    """A command at the edges of the limits (32-char name, 100-char texts, 25 options/choices) passes."""
    options = [_option(f"o{i:02d}", description="d" * 30) for i in range(24)]
    options.append(_option("last", required=False, choices=_choices(25, name_length=10)))
    group = _command(
        "grp",
        options=[_sub("g", 2, [_sub("s", 1, [_option("x")])]), _sub("t", 1, [_option("y", required=False)])],
    )
    menus = [{"type": 3, "name": "Quote This", "description": ""}]
    payloads = [_command("x" * 32, description="d" * 100, options=options), group, *menus]
    payloads += [_command(f"c{i}") for i in range(98)]
    assert payload_problems(payloads) == []


# -- through the smoke load, with a cog that breaks the rule -----------------------------------------------

COG = """
import discord
from discord import app_commands
from discord.ext import commands


class Broken(commands.Cog):
{body}


async def setup(bot):
{setup}
"""

PARAMS = ", ".join(f"p{i}: int" for i in range(26))
DESCRIBED = ", ".join(f'p{i}="option {i}"' for i in range(26))

COGS: list[tuple[str, str, str, str]] = [
    (
        "description over 100",
        f'''    @app_commands.command(name="bad", description="{"d" * 101}")
    async def bad(self, interaction: discord.Interaction) -> None: ...''',
        "    await bot.add_cog(Broken())",
        "/bad description: is 101 characters",
    ),
    (
        "option without a description",
        """    @app_commands.command(name="bad", description="ok")
    async def bad(self, interaction: discord.Interaction, a: int) -> None: ...""",
        "    await bot.add_cog(Broken())",
        "/bad option 'a' description: is missing",
    ),
    (
        "26 options",
        f"""    @app_commands.command(name="bad", description="ok")
    @app_commands.describe({DESCRIBED})
    async def bad(self, interaction: discord.Interaction, {PARAMS}) -> None: ...""",
        "    await bot.add_cog(Broken())",
        "/bad: has 26 options; Discord allows 25",
    ),
    (
        "26 choices",
        """    @app_commands.command(name="bad", description="ok")
    @app_commands.describe(a="pick one")
    @app_commands.choices(a=[app_commands.Choice(name=f"c{i}", value=i) for i in range(26)])
    async def bad(self, interaction: discord.Interaction, a: int) -> None: ...""",
        "    await bot.add_cog(Broken())",
        "has 26 choices; Discord allows 25",
    ),
    (
        "choice name over 100",
        f'''    @app_commands.command(name="bad", description="ok")
    @app_commands.describe(a="pick one")
    @app_commands.choices(a=[app_commands.Choice(name="{"n" * 101}", value=1)])
    async def bad(self, interaction: discord.Interaction, a: int) -> None: ...''',
        "    await bot.add_cog(Broken())",
        "name is 101 characters",
    ),
    (
        "over 4000 characters",
        """    @app_commands.command(name="bad", description="ok")
    @app_commands.describe(a="pick one")
    @app_commands.choices(a=[app_commands.Choice(name=f"{i:0100d}", value="v" * 100) for i in range(25)])
    async def bad(self, interaction: discord.Interaction, a: str) -> None: ...""",
        "    await bot.add_cog(Broken())",
        "Discord allows 4000",
    ),
    (
        "upper-case name",
        """    @app_commands.command(name="Bad", description="ok")
    async def bad(self, interaction: discord.Interaction) -> None: ...""",
        "    await bot.add_cog(Broken())",
        "must be all lower-case",
    ),
    (
        "name over 32",
        f'''    @app_commands.command(name="{"b" * 33}", description="ok")
    async def bad(self, interaction: discord.Interaction) -> None: ...''',
        "    await bot.add_cog(Broken())",
        "must be between 1-32 characters",
    ),
    (
        "101 global commands",
        "    pass",
        """    async def callback(interaction: discord.Interaction) -> None: ...
    for i in range(101):
        bot.tree.add_command(app_commands.Command(name=f"c{i}", description="ok", callback=callback))""",
        "maximum number of slash commands exceeded",
    ),
    (
        "groups nested three deep",
        "    pass",
        """    outer = app_commands.Group(name="outer", description="ok")
    middle = app_commands.Group(name="middle", description="ok", parent=outer)
    app_commands.Group(name="inner", description="ok", parent=middle)
    bot.tree.add_command(outer)""",
        "groups can only be nested at most one level",
    ),
]


@pytest.mark.parametrize("case", COGS, ids=[rule for rule, _, _, _ in COGS])
async def test_smoke_fails_a_cog_whose_commands_discord_would_reject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: tuple[str, str, str, str]
) -> None:
    """A cog breaking a Discord limit fails the smoke load with the limit named, while dice still passes."""
    _, body, setup, expected = case
    name = f"smoke_broken_{next(_modules)}"
    (tmp_path / f"{name}.py").write_text(COG.format(body=body, setup=setup))
    monkeypatch.syspath_prepend(str(tmp_path))
    results = await smoke_load(tmp_path / "data", extensions=["cogs.dice", name])
    assert results["cogs.dice"] is None
    error = results[name]
    assert error is not None and expected in error, error


def test_smoke_check_passes_the_shipped_cogs() -> None:
    """`python -m mendbot.tools.smoke` on this repository: every extension loads, every command fits
    Discord."""
    result = subprocess.run(
        [sys.executable, "-m", "mendbot.tools.smoke"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("extensions loaded with valid commands")
    assert "❌" not in result.stdout
    # A clean load logs nothing: a cog's background work waiting for a login that never comes waits.
    assert "Traceback" not in result.stderr and "properly initialised" not in result.stderr, result.stderr


def test_smoke_check_exits_1_and_names_the_command(tmp_path: Path) -> None:
    """A worktree cog with an over-long description fails `python -m mendbot.tools.smoke`, naming the
    command."""
    worktree = tmp_path / "worktree"
    worktree.mkdir()
    for part in ("bot", "cogs", "prompts"):
        subprocess.run(["cp", "-r", str(REPO / part), str(worktree / part)], check=True)
    dice = worktree / "cogs" / "dice.py"
    dice.write_text(
        dice.read_text().replace(
            'description="Roll dice, e.g. 2d6+1 or d20."', 'description="' + "r" * 120 + '"'
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "mendbot.tools.smoke"],
        cwd=worktree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(worktree), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("❌")]
    assert line.startswith("❌ cogs.dice — app commands: /roll description: is 120 characters")
    total = len(list((worktree / "cogs").glob("[!_]*.py")))
    assert result.stdout.splitlines()[-1] == f"{total - 1}/{total} extensions loaded with valid commands"
