"""Each bot shape of tests/fixtures/hosts/ the other way in than its whole loop (tests/test_attach_loop.py):
with the one line in its code where the loop ran `mendbot attach`, and the other way round. A real
process against the loopback Discord: its failure is recorded and announced in #dev, and its own
handlers — its commands, its Context, its error replies, its own `setup_hook`, `on_message`,
`get_context`, `process_commands` and `add_cog` — answer as before."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mendbot.trust.loopback_discord import DiscordDouble
from mendbot.trust.loopback_discord_model import message_text
from tests.harness.hosts import LiveHost, host_repo, write_config
from tests.harness.repo import git
from tests.test_attach_loop import ONE_LINE, _ask, _says


@dataclass(frozen=True)
class Shape:
    name: str
    entry: list[str]
    token: str
    failing: str
    failure_reply: str  # the bot's own error reply, or mendbot's apology when it has none
    works: tuple[str, str]  # a call its own code answers, and the answer
    one_line: tuple[str, str, str] | None = None  # (file, after, the line) — None: run by `mendbot attach`
    also: tuple[str, str] | None = None  # after `works`: a call its own overrides answer, and the answer
    env: dict[str, str] = field(default_factory=dict)


APOLOGY = "Something went wrong on my side (ZeroDivisionError)"
SHAPES = [
    Shape(
        "shelf",
        ["python", "bot.py"],
        "SHELF_TOKEN",
        "!stock dune",
        APOLOGY,
        ("!add solaris 0", "shelved 0 × solaris"),
        one_line=("bot.py", "    async def setup_hook(self) -> None:\n", ONE_LINE),
    ),
    Shape(
        "counter",
        ["python", "index.py"],
        "COUNTER_TOKEN",
        "+mean pears",
        "🧮 that did not add up (ZeroDivisionError)",
        ("+count apples 3", "apples: 3 in 1"),
        # its on_message counted both calls, its process_commands answered, mendbot's cogs came in through
        # its own add_cog (with its own one: 8 in all).
        also=("+heard", "heard 2 messages, 8 cogs added"),
    ),
    Shape(
        "single",
        ["python", "main.py"],
        "DISCORD_TOKEN",
        "$tip 30 0",
        APOLOGY,
        ("/split bill=20 people=2", "each pays 11"),
        one_line=(
            "main.py",
            'bot = commands.Bot(command_prefix="$", intents=intents)\n',
            'bot.setup_hook = lambda: bot.load_extension("mendbot")\n',
        ),
    ),
    Shape(
        "quiz",
        ["python", "-m", "quiz"],
        "QUIZ_TOKEN",
        "/score rounds=0",
        APOLOGY,
        ("?ask 1", "Q1: What is 6 × 7?"),
        env={"PYTHONPATH": "src"},
    ),
]


@pytest.mark.parametrize("shape", SHAPES, ids=[shape.name for shape in SHAPES])
async def test_the_other_way_in_records_announces_and_leaves_its_handlers(
    tmp_path: Path, shape: Shape
) -> None:
    """The bot, attached the other way in, answers its own calls as before, and a failure is recorded
    (answered by its own error handler when it has one) and announced in #dev."""
    repo = host_repo(tmp_path, shape.name)
    if shape.one_line is not None:
        file, after, line = shape.one_line
        source = (repo / file).read_text()
        (repo / file).write_text(source.replace(after, after + line, 1))
        git(repo, "commit", "-qam", "load mendbot")
    async with DiscordDouble() as discord_api:
        write_config(
            repo,
            discord_api,
            shape.entry,
            observe={"announce_new_fingerprints": False},
            bot={"path": ["src"] if shape.name == "quiz" else [], "token_env": shape.token},
        )
        program = shape.entry[1:] if shape.one_line is not None else None
        async with await LiveHost.start(
            discord_api, repo, shape.token, program=program, env=shape.env
        ) as bot:
            try:
                general, dev = discord_api.guild.channel("general"), discord_api.guild.channel("dev")
                call, answer = shape.works
                assert await _ask(discord_api, general, call) == answer
                if shape.also is not None:
                    call, answer = shape.also
                    assert await _ask(discord_api, general, call) == answer
                for _ in range(5):
                    assert shape.failure_reply in await _ask(discord_api, general, shape.failing)
                announced = await discord_api.wait_for_message(_says(r"Incident #1"), channel=dev)
                assert re.search(r"ZeroDivisionError", message_text(announced))
                # Who wrote is someone mendbot knows by name (stored as they wrote, before the failures).
                with sqlite3.connect(repo / ".mendbot" / "mendbot.db") as db:
                    names = [name for (name,) in db.execute("SELECT name FROM people")]
                assert names and not any(name.isdigit() for name in names), names
            except BaseException:
                print(bot.output(60))
                raise


async def test_a_bot_that_configures_logging_gets_no_raw_lines_of_mendbots(tmp_path: Path) -> None:
    """A bot that calls `logging.basicConfig(level=logging.INFO)` keeps its console: its own lines as it
    formats them, and nothing of mendbot's in structlog's raw form (`[warning  ] incident opened
    [mendbot.observe.incidents] announced=True channel_id=…`) — an incident is said in #dev, not there."""
    repo = host_repo(tmp_path, "counter")
    source = (repo / "index.py").read_text()
    (repo / "index.py").write_text(
        source.replace(
            "import os\n", "import logging\nimport os\n\nlogging.basicConfig(level=logging.INFO)\n", 1
        )
    )
    git(repo, "commit", "-qam", "log to the console")
    async with DiscordDouble() as discord_api:
        write_config(repo, discord_api, ["python", "index.py"], bot={"token_env": "COUNTER_TOKEN"})
        async with await LiveHost.start(discord_api, repo, "COUNTER_TOKEN") as bot:
            general, dev = discord_api.guild.channel("general"), discord_api.guild.channel("dev")
            for _ in range(5):
                await _ask(discord_api, general, "+mean pears")
            await discord_api.wait_for_message(_says(r"Incident #1"), channel=dev)
            console = bot.output()
    assert "INFO:discord.client:" in console  # the bot's own logging, as it set it up
    for raw in ("[warning", "[info", "announced=True", "[bot.", "incident opened"):
        assert raw not in console, console
