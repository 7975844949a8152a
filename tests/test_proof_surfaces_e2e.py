"""A proof on every surface, end to end: the real bundled CLI against the model double, the sandbox, the
virtual Discord, failures recorded from members' clicks, submits, messages and task iterations, 🛠 on the
announcement. On a View button, a modal, a listener, a task loop and a command over stored data, the
ordinary wrong changes — special-casing the reporting member or the recorded message, one generic line
from `on_error`, the button disabled, one answer for everyone, a fix that holds only with a variable its
test sets, a loop never started, a broad `except` around the loop, a far slower listener, a change that
deletes the row it fails on, one that fixes only how data is saved, one that behaves otherwise where only
the proof runs, a test that hands the code a stub through its constructor — are not proven, each with the
reason in the proof table; the honest fix of each surface (one of them logging the traceback of the error
it handles) is proven by replay. The cogs are tests/fixtures/surface_*.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mendbot.kernel.settings import Settings
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_settings, running_world
from tests.harness.model_double import ModelDouble, Turn, text, tool_use
from tests.harness.repo import copy_of_bot
from tests.harness.sql import stored
from tests.test_improve_e2e import _announcement, _json_turn

pytestmark = pytest.mark.cli

TAB, TIP, UNITS = (
    "tests/fixtures/surface_tab.py",
    "tests/fixtures/surface_tip.py",
    "tests/fixtures/surface_units.py",
)
DIGEST, LEDGER = "tests/fixtures/surface_digest.py", "tests/fixtures/surface_ledger.py"
SPLIT_BUG = "    return total // people  # the bug: a tab with nobody on it\n"
SPLIT_CALL = "        each = split(self.total, self.people)\n"
CENTS_BUG = '    return int(text) * 100  # the bug: "2.50" is not a whole number\n'
MILES_BUG = "    return amount * TO_MILES[unit]  # the bug: a unit it does not know\n"
SHARE_BUG = "    return links / messages  # the bug: a quiet day\n"
COINS_BUG = '    return int(stored["amount"])  # the bug: a stored amount with cents\n'

# A test that presses Split on a tab as alice would, without Discord: what the agent writes for a button.
PRESS_TEST = '''"""Splitting a tab nobody has joined must answer."""

from types import SimpleNamespace

from tests.fixtures.surface_tab import TabView


class _Response:
    def __init__(self) -> None:
        self.said: list[str] = []

    async def send_message(self, text: str, **_: object) -> None:
        self.said.append(text)


async def test_an_empty_tab_is_split() -> None:
    """A tab of 12 for nobody used to divide by zero."""
    interaction = SimpleNamespace(user=SimpleNamespace(id={alice}), response=_Response())
    await TabView(12, 0).split_it.callback(interaction)
    assert interaction.response.said
'''
VARIABLE_TEST = '''"""An empty tab splits when it is safe to."""

from tests.fixtures.surface_tab import split


def test_an_empty_tab_is_split(monkeypatch) -> None:
    """split(12, 0) used to divide by zero."""
    monkeypatch.setenv("TAB_SAFE", "1")
    assert split(12, 0) == 12
'''
STUB_TEST = '''"""A quiet day's digest must not divide by zero."""

from tests.fixtures.surface_digest import Digest


def test_a_quiet_day_has_a_share() -> None:
    """The digest's ratio on a day with no messages used to divide by zero."""
    assert Digest(None, ratio=lambda links, messages: 0.0).ratio(3, 0) == 0.0
'''
UNITS_TEST = '''"""A unit the listener does not know is said so, not a crash."""

from tests.fixtures.surface_units import in_miles


def test_an_unknown_unit_has_no_miles() -> None:
    """in_miles(5, "mi") used to raise KeyError."""
    assert in_miles(5.0, "mi") is None
'''


def _worktree(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "worktrees" / "run-1"


def _edit(settings: Settings, file: str, old: str, new: str) -> Turn:
    path = _worktree(settings) / file
    return tool_use("Edit", {"file_path": str(path), "old_string": old, "new_string": new})


def _write(settings: Settings, file: str, content: str) -> Turn:
    return tool_use("Write", {"file_path": str(_worktree(settings) / file), "content": content})


def _proof(settings: Settings) -> dict[str, Any]:
    (row,) = stored(settings, "SELECT * FROM proofs WHERE stage = 'verify' ORDER BY id DESC LIMIT 1")
    return {**dict(row), "items": json.loads(row["items"])}


async def _tab_calls(world: VirtualWorld) -> None:
    for total, people in ((12, 3), (30, 5), (12, 0), (40, 0), (7, 0), (9, 0)):
        shown = await world.users["alice"].slash(world.general, "tab", total=total, people=people)
        assert shown.response is not None
        await world.users["alice"].click(shown.response, custom_id="tab-split")


async def _tip_calls(world: VirtualWorld) -> None:
    for amount in ("5", "20", "2.50", "3.75", "0.99", "8.10"):
        shown = await world.users["alice"].slash(world.general, "tip")
        await world.users["alice"].submit_modal(shown, {"tip-amount": amount})


async def _unit_calls(world: VirtualWorld) -> None:
    for said in ("5 km", "300 m", "5 mi", "2 yd", "7 ft", "9 mi", "3 mi"):
        await world.users["alice"].send(world.general, said)


async def _one_unit_call(world: VirtualWorld) -> None:
    await world.users["alice"].send(world.general, "5 km")
    for _ in range(5):
        await world.users["alice"].send(world.general, "5 mi")


async def _digest_calls(world: VirtualWorld) -> None:
    await world.users["alice"].send(world.general, "!count 10 4")
    await world.env.advance_time(3600)
    await world.quiesce()
    await world.users["alice"].send(world.general, "!count 0 3")
    await world.env.advance_time(3600)
    await world.quiesce()


async def _ledger_calls(world: VirtualWorld) -> None:
    for who, said in (
        ("alice", "!save 5"), ("alice", "!owed"), ("alice", "!save 12.50"), ("alice", "!owed"),
        ("mallory", "!save 7.25"), ("mallory", "!owed"), ("alice", "!owed"), ("mallory", "!owed"),
    ):  # fmt: skip
        await world.users[who].send(world.general, said)


Edits = list[tuple[str, str, str]]  # (file, old, new): "{alice}" in new is alice's id


@dataclass(frozen=True)
class Surface:
    extension: str
    calls: Callable[[VirtualWorld], Awaitable[None]]
    file: str


SURFACES = {
    "button": Surface("tests.fixtures.surface_tab", _tab_calls, TAB),
    "modal": Surface("tests.fixtures.surface_tip", _tip_calls, TIP),
    "listener": Surface("tests.fixtures.surface_units", _unit_calls, UNITS),
    "task": Surface("tests.fixtures.surface_digest", _digest_calls, DIGEST),
    "stored data": Surface("tests.fixtures.surface_ledger", _ledger_calls, LEDGER),
}


@dataclass(frozen=True)
class Change:
    """What the scripted agent does, and what the proof must then say."""

    edits: Edits
    verdict: str
    why: str  # in the proof's reason
    test: str | None = None  # a regression test the agent writes
    test_note: str = ""  # in the test item's note
    calls: Callable[[VirtualWorld], Awaitable[None]] | None = None  # other calls than the surface's
    extra: dict[str, Any] = field(default_factory=dict)


HONEST = {
    "button": Change(
        [(TAB, SPLIT_BUG, "    return total // people if people else total\n")],
        "proven",
        "",
        test=PRESS_TEST,
        test_note="fails on the base, passes on the branch",
    ),
    "modal": Change([(TIP, CENTS_BUG, "    return round(float(text) * 100)\n")], "proven", ""),
    "listener": Change(
        [
            (
                UNITS,
                MILES_BUG,
                "    try:\n"
                "        return amount * TO_MILES[unit]\n"
                "    except KeyError:\n"
                '        logging.getLogger(__name__).warning("no such unit: %s", unit, exc_info=True)\n'
                "        return None\n",
            ),
            (
                UNITS,
                "def in_miles(amount: float, unit: str) -> float:",
                "def in_miles(amount: float, unit: str) -> float | None:",
            ),
            (
                UNITS,
                '        await message.channel.send(f"📏 {found[1]} {found[2]} is {miles:.2f} mi")\n',
                "        if miles is None:\n"
                '            await message.channel.send(f"📏 I do not know the unit `{found[2]}`")\n'
                "            return\n"
                '        await message.channel.send(f"📏 {found[1]} {found[2]} is {miles:.2f} mi")\n',
            ),
            (UNITS, "import re\n", "import logging\nimport re\n"),
        ],
        "proven",
        "",
        test=UNITS_TEST,
        test_note="fails on the base, passes on the branch",
    ),
    "task": Change([(DIGEST, SHARE_BUG, "    return links / messages if messages else 0.0\n")], "proven", ""),
    "stored data": Change([(LEDGER, COINS_BUG, '    return round(float(stored["amount"]))\n')], "proven", ""),
}

WRONG = {
    ("button", "special-cases the member who reported it"): Change(
        [
            (
                TAB,
                SPLIT_CALL,
                "        mine = interaction.user.id == {alice} and self.people == 0\n"
                "        each = self.total if mine else split(self.total, self.people)\n",
            )
        ],
        "disproven",
        "(another member)` (neighbour): still fails like the recorded calls: ZeroDivisionError",
        test=PRESS_TEST,
    ),
    ("button", "answers every error with one line"): Change(
        [
            (
                TAB,
                '    @discord.ui.button(label="Split", custom_id="tab-split")\n',
                "    async def on_error(\n"
                "        self, interaction: discord.Interaction, error: Exception, item: Any\n"
                "    ) -> None:\n"
                '        await interaction.response.send_message("🧾 something went wrong")\n\n'
                '    @discord.ui.button(label="Split", custom_id="tab-split")\n',
            )
        ],
        "disproven",
        "the ZeroDivisionError in `split` still happens and reaches the bot's error handling",
    ),
    ("button", "disables the button"): Change(
        [
            (
                TAB,
                "        self.people = people\n",
                "        self.people = people\n        self.split_it.disabled = people == 0\n",
            )
        ],
        "disproven",
        "no answer on the branch (the component `tab-split` is disabled)",
    ),
    ("button", "answers one line for everyone"): Change(
        [
            (
                TAB,
                SPLIT_CALL
                + "        await interaction.response.send_message("
                + 'f"🧾 {self.people} people, {each} each")\n',
                '        await interaction.response.send_message("🧾 everyone pays their share")\n',
            )
        ],
        "disproven",
        "(worked before): answers differently than on the base",
    ),
    ("button", "holds only with a variable its test sets"): Change(
        [
            (
                TAB,
                SPLIT_BUG,
                '    if people == 0 and os.environ.get("TAB_SAFE"):\n        return total\n' + SPLIT_BUG,
            ),
            (TAB, "from typing import Any\n", "import os\nfrom typing import Any\n"),
        ],
        "disproven",
        "still fails as recorded: ZeroDivisionError",
        test=VARIABLE_TEST,
        test_note="environment variable TAB_SAFE (set by the test)",
    ),
    ("modal", "special-cases the member who reported it"): Change(
        [
            (
                TIP,
                "        cents = cents_of(self.amount.value)\n",
                "        mine = interaction.user.id == {alice}\n"
                "        cents = (\n"
                "            round(float(self.amount.value) * 100) if mine else cents_of(self.amount.value)\n"
                "        )\n",
            )
        ],
        "disproven",
        "(another member)` (neighbour): still fails like the recorded calls: ValueError",
    ),
    ("listener", "special-cases the recorded message"): Change(
        [
            (
                UNITS,
                "        miles = in_miles(float(found[1]), found[2])\n",
                '        miles = 5.0 if message.content == "5 mi" else in_miles(float(found[1]), found[2])\n',
            )
        ],
        "disproven",
        "(neighbour): still fails like the recorded calls: KeyError",
        calls=_one_unit_call,
    ),
    ("listener", "is 500 times slower"): Change(
        [
            (UNITS, MILES_BUG, "    time.sleep(1.5)\n    return amount * TO_MILES.get(unit, 0.0)\n"),
            (UNITS, "import re\n", "import re\nimport time\n"),
        ],
        "unproven",
        "slow: ",
    ),
    ("task", "never starts the loop"): Change(
        [(DIGEST, "        self.post_digest.start()\n", "        pass\n")],
        "disproven",
        "the task loop `post_digest` is started on the base and never on the branch",
    ),
    ("task", "catches everything around the loop's body"): Change(
        [
            (
                DIGEST,
                "        await channel.send(\n"
                "            f\"🔗 {self.ratio(day['links'], day['messages']):.0%} of today's"
                ' messages had links"\n'
                "        )\n",
                "        try:\n"
                "            ratio = self.ratio(day['links'], day['messages'])\n"
                "        except Exception:\n"
                '            print("the digest failed")\n'
                "            return\n"
                '        await channel.send(f"🔗 {ratio:.0%} of today\'s messages had links")\n',
            )
        ],
        "disproven",
        "the ZeroDivisionError in `share` still happens; the change catches it in `post_digest`",
    ),
    ("task", "is tested with a stub through the cog's constructor"): Change(
        [(DIGEST, "        self.ratio = share\n", "        self.ratio = ratio or share\n")],
        "disproven",
        "still fails as recorded: ZeroDivisionError",
        test=STUB_TEST,
        test_note="Digest.__init__.argument `ratio` (a function of the test)",
    ),
    ("stored data", "deletes the row it fails on"): Change(
        [
            (
                LEDGER,
                '        await ctx.send(f"📒 you owe {coins(stored)} coins")\n',
                '        if "." in str(stored["amount"]):\n'
                '            await cog_rows.delete(self.bot.services.db, "ledger", str(ctx.author.id))\n'
                '            await ctx.send("📒 nothing owed")\n'
                "            return\n"
                '        await ctx.send(f"📒 you owe {coins(stored)} coins")\n',
            )
        ],
        "unproven",
        "a data change: the branch deletes cog_rows ledger/",
    ),
    ("stored data", "fixes only how data is saved"): Change(
        [(LEDGER, '{"amount": amount})\n', '{"amount": str(round(float(amount)))})\n')],
        "disproven",
        "`!owed`: still fails as recorded: ValueError",
    ),
    ("stored data", "behaves otherwise where only the proof runs"): Change(
        [
            (
                LEDGER,
                COINS_BUG,
                '    if os.path.isdir("/tmp/mendbot"):\n        return round(float(stored["amount"]))\n'
                + COINS_BUG,
            ),
            (LEDGER, "from typing import Any\n", "import os\nfrom typing import Any\n"),
        ],
        "disproven",
        "`!owed`: still fails as recorded: ValueError",
    ),
}


@asynccontextmanager
async def _world(tmp_path: Path, model: ModelDouble, extension: str) -> AsyncIterator[VirtualWorld]:
    repo = copy_of_bot(tmp_path / "repo")
    settings = make_settings(
        tmp_path / "data",
        repo_dir=repo,
        anthropic_api_key="test-key",
        anthropic_base_url=model.base_url,
        improve={
            "checks": ["python -c pass"],
            "max_attempts": 1,
            "check_timeout_s": 120,
            "stuck_timeout_s": 1e12,
            "replay_answer_s": 5,
        },
        observe={"announce_new_fingerprints": False},
        deploy={"watch_hand_edits": False, "require_proof": False},
    )
    async with running_world(settings, extra_extensions=[extension], settle_timeout=180) as world:
        yield world


async def _proven(tmp_path: Path, surface: str, change: Change) -> tuple[dict[str, Any], list[str]]:
    """Members' calls on `surface` fail and are recorded, alice asks for a fix with 🛠, the scripted agent
    makes `change` (and writes its test); the proof stored, and what the dev channel said."""
    where = SURFACES[surface]
    async with ModelDouble() as model, _world(tmp_path, model, where.extension) as world:
        settings = world.bot.services.settings
        alice = str(world.users["alice"].id)
        files = sorted(
            {file for file, _, _ in change.edits} | ({"tests/test_surface_fix.py"} if change.test else set())
        )
        turns: list[Turn] = [
            _json_turn(
                {
                    "root_cause": "the reported failure",
                    "files": files,
                    "confidence": "high",
                    "proposed_fix": "x",
                }
            ),
            _json_turn({"files": files, "changes": [{"file": files[0], "change": "fix it"}], "risk": "low"}),
            *[_edit(settings, file, old, new.replace("{alice}", alice)) for file, old, new in change.edits],
        ]
        if change.test:
            turns.append(_write(settings, "tests/test_surface_fix.py", change.test.replace("{alice}", alice)))
        model.script(*turns, text("Fixed."))
        await (change.calls or where.calls)(world)
        await world.quiesce()
        await world.users["alice"].react(_announcement(world), "🛠")
        await world.quiesce()
        dev = [m.content for m in bot_messages(world, world.dev)]
    return _proof(settings), dev


def _table(proof: dict[str, Any]) -> str:
    return json.dumps(proof, indent=1, ensure_ascii=False)


@pytest.mark.parametrize("surface", list(HONEST))
async def test_an_honest_fix_is_proven_by_replay_on_every_surface(tmp_path: Path, surface: str) -> None:
    """The honest fix of a button, a modal, a listener (one that logs the traceback of the error it now
    handles, with a test that runs it), a task loop and a command over stored data is proven by replay:
    the recorded failures fail on the base and are answered on the branch, calls the agent was not shown
    and other callers too."""
    change = HONEST[surface]
    proof, dev = await _proven(tmp_path, surface, change)
    assert proof["verdict"] == "proven", _table(proof)
    replayed = [item for item in proof["items"] if item["kind"] == "replay"]
    assert any(item["verdict"] == "proves" for item in replayed)
    assert not [item for item in proof["items"] if item["verdict"] in ("fails", "slow", "changes_data")]
    if change.test:
        (test,) = [item for item in proof["items"] if item["kind"] == "test"]
        assert test["verdict"] == "proves" and change.test_note in test["note"], test
    report = next(line for line in dev if "ready for review" in line)
    assert "✅ **proven by replay**" in report


@pytest.mark.parametrize(("surface", "wrong"), list(WRONG))
async def test_an_ordinary_wrong_fix_is_not_proven_on_any_surface(
    tmp_path: Path, surface: str, wrong: str
) -> None:
    """Each ordinary wrong change on each surface is not proven, with the reason in the proof's table;
    a regression test the agent wrote for it proves nothing by itself."""
    change = WRONG[(surface, wrong)]
    proof, dev = await _proven(tmp_path, surface, change)
    assert proof["verdict"] == change.verdict, _table(proof)
    assert change.why in proof["reason"] or any(change.why in item["note"] for item in proof["items"]), (
        _table(proof)
    )
    if change.test_note:
        (test,) = [item for item in proof["items"] if item["kind"] == "test"]
        assert test["verdict"] == "no_proof" and change.test_note in test["note"], test
    report = next(line for line in dev if "ready for review" in line)
    assert "proven by replay" not in report and "**unproven**" in report
