"""The proof on every surface, without the agent: members' calls recorded by the real bot, a change
committed to a copy of the repository, the real Prover judging it from outside (the sandbox, the loopback
Discord, the launcher's watch). tests/test_proof_surfaces_e2e.py drives the same through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mendbot.improve.proof.verdict import Proof
from mendbot.tools.playground import VirtualWorld
from tests.harness.surfaces import Change, proof_of, proving_world

TAB = "tests/fixtures/surface_tab.py"
SPLIT_BUG = "    return total // people  # the bug: a tab with nobody on it\n"


async def _tab_calls(world: VirtualWorld) -> None:
    """Tabs split by alice: two that work, then four nobody joined (the older two shown)."""
    for total, people in ((12, 3), (30, 5), (12, 0), (40, 0), (7, 0), (9, 0)):
        shown = await world.users["alice"].slash(world.general, "tab", total=total, people=people)
        assert shown.response is not None
        await world.users["alice"].click(shown.response, custom_id="tab-split")


def _dump(proof: Proof) -> str:
    return json.dumps([item.to_dict() for item in proof.items], indent=1, ensure_ascii=False)


async def test_an_honest_fix_of_a_button_is_proven_by_replaying_the_clicks(tmp_path: Path) -> None:
    """The Split button fixed where it divides: the recorded clicks — each sent again as `/tab` with the
    state it was sent with, then the press — fail on the base and are answered on the branch."""
    async with proving_world(tmp_path, "tests.fixtures.surface_tab") as world:
        await _tab_calls(world)
        fix = {TAB: (SPLIT_BUG, "    return total // people if people else total\n")}
        proof = await proof_of(world, fix, kind="view:TabView.split_it")
    assert proof.verdict == "proven", _dump(proof)


WRONG_TAB_FIXES = {
    "special-cases the member": (
        "        each = split(self.total, self.people)\n",
        "        mine = interaction.user.id == {alice} and self.people == 0\n"
        "        each = self.total if mine else split(self.total, self.people)\n",
    ),
    "answers errors with one line": (
        '    @discord.ui.button(label="Split", custom_id="tab-split")\n',
        "    async def on_error(self, interaction: discord.Interaction, error: Exception, item: Any) -> None:"
        "\n"
        '        await interaction.response.send_message("🧾 something went wrong")\n\n'
        '    @discord.ui.button(label="Split", custom_id="tab-split")\n',
    ),
    "disables the button": (
        "        self.people = people\n",
        "        self.people = people\n        self.split_it.disabled = people == 0\n",
    ),
    "answers one line for everyone": (
        "        each = split(self.total, self.people)\n"
        '        await interaction.response.send_message(f"🧾 {self.people} people, {each} each")\n',
        '        await interaction.response.send_message("🧾 everyone pays their share")\n',
    ),
    "works only with a variable set": (
        "        each = split(self.total, self.people)\n",
        '        each = self.total if os.environ.get("TAB_SAFE") else split(self.total, self.people)\n',
    ),
}


TAB_WHY = {
    "special-cases the member": "(another member)` (neighbour): still fails like the recorded calls",
    "answers errors with one line": "still happens and reaches the bot's error handling",
    "disables the button": "no answer on the branch (the component `tab-split` is disabled)",
    "answers one line for everyone": "(worked before): answers differently than on the base",
    "works only with a variable set": "still fails as recorded: ZeroDivisionError",
}


@pytest.mark.parametrize("wrong", list(WRONG_TAB_FIXES))
async def test_a_wrong_fix_of_a_button_is_not_proven(tmp_path: Path, wrong: str) -> None:
    """The ordinary wrong changes to a button — special-casing the member who reported it, one generic
    line from the view's on_error, the button disabled, one answer for everyone, a fix that holds only
    with a variable the test sets — are not proven."""
    async with proving_world(tmp_path, "tests.fixtures.surface_tab") as world:
        await _tab_calls(world)
        old, new = WRONG_TAB_FIXES[wrong]
        alice = world.users["alice"].id
        edits = [(old, new.replace("{alice}", str(alice)))]
        if "os." in new:
            edits.append(("from typing import Any\n", "import os\nfrom typing import Any\n"))
        proof = await proof_of(world, {TAB: edits}, kind="view:TabView.split_it")
    assert proof.verdict == "disproven" and TAB_WHY[wrong] in proof.reason, _dump(proof)


TIP = "tests/fixtures/surface_tip.py"
CENTS_BUG = '    return int(text) * 100  # the bug: "2.50" is not a whole number\n'


async def _tip_calls(world: VirtualWorld) -> None:
    for amount in ("5", "20", "2.50", "3.75", "0.99", "8.10"):
        shown = await world.users["alice"].slash(world.general, "tip")
        await world.users["alice"].submit_modal(shown, {"tip-amount": amount})


UNITS = "tests/fixtures/surface_units.py"
MILES_BUG = "    return amount * TO_MILES[unit]  # the bug: a unit it does not know\n"


async def _unit_calls(world: VirtualWorld) -> None:
    for said in ("5 km", "300 m", "5 mi", "2 yd", "7 ft", "9 mi"):
        await world.users["alice"].send(world.general, said)


DIGEST = "tests/fixtures/surface_digest.py"
SHARE_BUG = "    return links / messages  # the bug: a quiet day\n"


async def _digest_calls(world: VirtualWorld) -> None:
    await world.users["alice"].send(world.general, "!count 10 4")
    await world.env.advance_time(3600)
    await world.quiesce()
    await world.users["alice"].send(world.general, "!count 0 3")
    await world.env.advance_time(3600)
    await world.quiesce()


LEDGER = "tests/fixtures/surface_ledger.py"
COINS_BUG = '    return int(stored["amount"])  # the bug: a stored amount with cents\n'


async def _ledger_calls(world: VirtualWorld) -> None:
    for who, said in (
        ("alice", "!save 5"), ("alice", "!owed"), ("alice", "!save 12.50"), ("alice", "!owed"),
        ("mallory", "!save 7.25"), ("mallory", "!owed"), ("alice", "!owed"), ("mallory", "!owed"),
    ):  # fmt: skip
        await world.users[who].send(world.general, said)


SURFACES = {
    "modal": ("tests.fixtures.surface_tip", _tip_calls, "modal:TipForm.on_submit"),
    "listener": ("tests.fixtures.surface_units", _unit_calls, "listener:on_message"),
    "task": ("tests.fixtures.surface_digest", _digest_calls, "task:post_digest"),
    "stored data": ("tests.fixtures.surface_ledger", _ledger_calls, "command:owed"),
}
HONEST = {
    "modal": {TIP: (CENTS_BUG, "    return round(float(text) * 100)\n")},
    "listener": {UNITS: (MILES_BUG, "    return amount * TO_MILES.get(unit, 0.0)\n")},
    "task": {DIGEST: (SHARE_BUG, "    return links / messages if messages else 0.0\n")},
    "stored data": {LEDGER: (COINS_BUG, '    return round(float(stored["amount"]))\n')},
}


@pytest.mark.parametrize("surface", list(SURFACES))
async def test_an_honest_fix_is_proven_on_every_surface(tmp_path: Path, surface: str) -> None:
    """A modal's submit, a listener's message, a task loop's iteration and a command over stored data:
    each recorded failure replayed from outside, failing on the base and answered on the branch."""
    extension, calls, kind = SURFACES[surface]
    async with proving_world(tmp_path, extension) as world:
        await calls(world)
        proof = await proof_of(world, HONEST[surface], kind=kind)
    assert proof.verdict == "proven", _dump(proof)


WRONG: dict[tuple[str, str], Change] = {
    ("modal", "special-cases the member"): {
        TIP: (
            "        cents = cents_of(self.amount.value)\n",
            "        mine = interaction.user.id == {alice}\n"
            "        cents = round(float(self.amount.value) * 100) if mine else cents_of(self.amount.value)"
            "\n",
        )
    },
    ("modal", "answers errors with one line"): {
        TIP: (
            "    async def on_submit(",
            "    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:\n"
            '        await interaction.response.send_message("💸 could not tip")\n\n'
            "    async def on_submit(",
        )
    },
    ("listener", "special-cases the recorded message"): {
        UNITS: (
            "        miles = in_miles(float(found[1]), found[2])\n",
            '        miles = 5.0 if message.content == "5 mi" else in_miles(float(found[1]), found[2])\n',
        )
    },
    ("listener", "is far slower"): {
        UNITS: [
            (MILES_BUG, "    time.sleep(1.5)\n    return amount * TO_MILES.get(unit, 0.0)\n"),
            ("import re\n", "import re\nimport time\n"),
        ]
    },
    ("task", "never starts the loop"): {DIGEST: ("        self.post_digest.start()\n", "        pass\n")},
    ("task", "catches everything in the loop"): {
        DIGEST: (
            "        await channel.send(",
            "        try:\n"
            "            ratio = self.ratio(day['links'], day['messages'])\n"
            '            line = f"🔗 {ratio:.0%} of today\'s messages had links"\n'
            "        except Exception:\n"
            '            print("the digest failed")\n'
            "            return\n"
            "        await channel.send(line)\n"
            "        return\n"
            "        await channel.send(",
        )
    },
    ("stored data", "deletes the row it fails on"): {
        LEDGER: (
            '        await ctx.send(f"📒 you owe {coins(stored)} coins")\n',
            '        if "." in str(stored["amount"]):\n'
            '            await cog_rows.delete(self.bot.services.db, "ledger", str(ctx.author.id))\n'
            '            await ctx.send("📒 nothing owed")\n'
            "            return\n"
            '        await ctx.send(f"📒 you owe {coins(stored)} coins")\n',
        )
    },
    ("stored data", "fixes only how it is saved"): {
        LEDGER: (
            '{"amount": amount})\n',
            '{"amount": str(round(float(amount)))})\n',
        )
    },
    ("stored data", "behaves otherwise where only the proof runs"): {
        LEDGER: [
            (
                COINS_BUG,
                '    if os.path.isdir("/tmp/mendbot"):\n'
                '        return round(float(stored["amount"]))\n' + COINS_BUG,
            ),
            ("from typing import Any\n", "import os\nfrom typing import Any\n"),
        ]
    },
}


WHY = {
    ("modal", "special-cases the member"): "(another member)` (neighbour): still fails like the recorded",
    ("modal", "answers errors with one line"): "still happens and reaches the bot's error handling",
    ("listener", "special-cases the recorded message"): "(neighbour): still fails like the recorded calls",
    ("listener", "is far slower"): "the failure is gone, but replay",
    ("task", "never starts the loop"): "the task loop `post_digest` is started on the base and never on",
    ("task", "catches everything in the loop"): "still happens; the change catches it in `post_digest`",
    (
        "stored data",
        "deletes the row it fails on",
    ): "(data change): a data change: the branch deletes cog_rows",
    ("stored data", "fixes only how it is saved"): "`!owed`: still fails as recorded: ValueError",
    ("stored data", "behaves otherwise where only the proof runs"): "`!owed`: still fails as recorded",
}


@pytest.mark.parametrize(("surface", "wrong"), list(WRONG))
async def test_a_wrong_fix_is_not_proven_on_any_surface(tmp_path: Path, surface: str, wrong: str) -> None:
    """The ordinary wrong changes on a modal, a listener, a task loop and a command over stored data are
    not proven: each says why."""
    extension, calls, kind = SURFACES[surface]
    async with proving_world(tmp_path, extension) as world:
        if wrong == "special-cases the recorded message":
            await world.users["alice"].send(world.general, "5 km")
            for _ in range(4):
                await world.users["alice"].send(world.general, "5 mi")
        else:
            await calls(world)
        alice = str(world.users["alice"].id)
        change: dict[str, list[tuple[str, str]]] = {}
        for file, edits in WRONG[(surface, wrong)].items():
            listed = edits if isinstance(edits, list) else [edits]
            change[file] = [(old, new.replace("{alice}", alice)) for old, new in listed]
        proof = await proof_of(world, change, kind=kind)
    assert proof.verdict != "proven" and WHY[(surface, wrong)] in proof.reason, _dump(proof)
    if wrong == "is far slower":
        assert proof.verdict == "unproven" and "slow: " in proof.reason


UI = "tests/fixtures/ui_cog.py"


async def test_an_autocomplete_and_a_context_menu_are_replayed(tmp_path: Path) -> None:
    """What was typed into an autocompleted option, and a message's context menu (its target message
    posted again first), are sent again: the honest fix of each is proven by replay."""
    async with proving_world(tmp_path, "tests.fixtures.ui_cog") as world:
        for typed in ("red", "teal", "navy", "plum", "sand"):
            await world.users["alice"].autocomplete(world.general, "paint", "colour", typed)
        fix = {UI: ("palette[current])]", "palette.get(current, current))]")}
        colours = await proof_of(world, fix, kind="autocomplete:paint.colour")
    assert colours.verdict == "proven", _dump(colours)
    async with proving_world(tmp_path / "menu", "tests.fixtures.ui_cog") as world:
        for said in ("one two three four five six", "too short", "far too short", "not long", "short"):
            message = await world.users["mallory"].send(world.general, said)
            await world.users["alice"].context_menu(world.general, "Quote", message)
        fix = {UI: ('f"> {words[5]}"', 'f"> {words[min(5, len(words) - 1)]}"')}
        quote = await proof_of(world, fix, kind="app:Quote")
    assert quote.verdict == "proven", _dump(quote)
