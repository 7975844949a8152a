"""A proof certifies a fix, not an answer: the ordinary wrong changes an agent that wants to look
successful makes — special-casing the recorded inputs, a broad `except`, turning every error into a
user error, breaking calls that worked, a regression test that mocks the code it tests or fails only for
a missing name, a big slowdown — are not "proven", each saying why; the honest fix of each cog still is.

End to end, as a developer meets it: the real bundled CLI against the model double, the sandbox, the
virtual Discord, failures recorded from members' calls, 🛠 on the announcement. The cogs with seeded
faults are tests/fixtures/buggy_{wallet,profiles,units,rating,digest}.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
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

WALLET = "tests/fixtures/buggy_wallet.py"
PROFILES = "tests/fixtures/buggy_profiles.py"
UNITS = "tests/fixtures/buggy_units.py"
RATING = "tests/fixtures/buggy_rating.py"
DIGEST = "tests/fixtures/buggy_digest.py"

TO_CENTS_BUG = '    return int(amount) * 100  # the bug: "12.50" is not an int\n'
TO_CENTS_FIX = "    return round(float(amount) * 100)\n"
PAY_BODY = "        cents = to_cents(amount)\n"
LOOKUP_BUG = "    return PROFILES[name.lower()]  # the bug: an unknown name raises KeyError\n"
PROFILE_BODY = '        found = lookup(name)\n        await ctx.send(f"👤 {found.name} — {found.bio}")\n'
UNITS_BUG = 'TO_KM = {"km": 1.0, "m": 0.001}  # the bug: no "mi"\n'
RATING_BUG = "    return points // games  # the bug: no games yet\n"
RATIO_BUG = "    return part / whole  # the bug: a quiet day has no messages\n"
SAFE_RATIO = (
    "\n\ndef safe_ratio(part: int, whole: int) -> float:\n    return part / whole if whole else 0.0\n"
)


def _worktree(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "worktrees" / "run-1"


def _edit(settings: Settings, file: str, old: str, new: str) -> Turn:
    path = _worktree(settings) / file
    return tool_use("Edit", {"file_path": str(path), "old_string": old, "new_string": new})


def _write(settings: Settings, file: str, content: str) -> Turn:
    return tool_use("Write", {"file_path": str(_worktree(settings) / file), "content": content})


def _plan(*files: str) -> Turn:
    return _json_turn(
        {"files": list(files), "changes": [{"file": files[0], "change": "fix it"}], "risk": "low"}
    )


def _diagnosis(file: str, cause: str) -> Turn:
    return _json_turn({"root_cause": cause, "files": [file], "confidence": "high", "proposed_fix": cause})


def _proof(settings: Settings) -> dict[str, Any]:
    (row,) = stored(settings, "SELECT * FROM proofs WHERE stage = 'verify' ORDER BY id DESC LIMIT 1")
    return {**dict(row), "items": json.loads(row["items"])}


def _run(settings: Settings) -> dict[str, Any]:
    (row,) = stored(settings, "SELECT state, failure_reason FROM runs")
    return dict(row)


def _items(proof: dict[str, Any], role: str, verdict: str | None = None) -> list[dict[str, Any]]:
    return [
        item
        for item in proof["items"]
        if item.get("role") == role and (verdict is None or item["verdict"] == verdict)
    ]


@asynccontextmanager
async def _world(tmp_path: Path, model: ModelDouble, extension: str) -> AsyncIterator[VirtualWorld]:
    repo = copy_of_bot(tmp_path / "repo")
    settings = make_settings(
        tmp_path / "data",
        repo_dir=repo,
        anthropic_api_key="test-key",
        anthropic_base_url=model.base_url,
        # One attempt: the proof's verdict on exactly the change scripted. A silent command is "no
        # answer" after 5 s. settle() fast-forwards the virtual clock, the watchdog's sweep among it.
        improve={
            "checks": ["python -c pass"],
            "max_attempts": 1,
            "check_timeout_s": 120,
            "stuck_timeout_s": 1e12,
            "replay_answer_s": 5,
        },
        observe={"announce_new_fingerprints": False},
        deploy={"watch_hand_edits": False},
    )
    async with running_world(settings, extra_extensions=[extension], settle_timeout=180) as world:
        yield world


async def _fix(
    tmp_path: Path,
    extension: str,
    failures: Callable[[VirtualWorld], Awaitable[None]],
    script: Callable[[Settings], list[Turn]],
    seen: list[str] | None = None,
) -> tuple[Settings, list[str]]:
    """Members' calls fail and are recorded, alice asks for a fix with 🛠, the scripted agent changes
    the code; what the run did and the dev channel said (and, into `seen`, what the agent was sent)."""
    async with ModelDouble() as model, _world(tmp_path, model, extension) as world:
        settings = world.bot.services.settings
        model.script(*script(settings))
        await failures(world)
        await world.quiesce()
        await world.users["alice"].react(_announcement(world), "🛠")
        await world.quiesce()
        dev = [m.content for m in bot_messages(world, world.dev)]
        if seen is not None:
            seen += [json.dumps(r.json["messages"], ensure_ascii=False) for r in model.message_requests]
    return settings, dev


def _says(world: VirtualWorld, *lines: str) -> Callable[[], Awaitable[None]]:
    async def send() -> None:
        for line in lines:
            await world.users["alice"].send(world.general, line)

    return send


async def _pay_failures(world: VirtualWorld) -> None:
    # Four distinct amounts with cents: the evidence shows the older two, the proof holds out the rest.
    # Two whole amounts that work come first: how fast !pay answers when it works.
    await _says(
        world, "!pay 5", "!pay 20", "!pay 12.50", "!pay 3.75", "!pay 0.99", "!pay 8.10", "!pay 12.50"
    )()


def _not_proposed(settings: Settings, proof: dict[str, Any]) -> None:
    assert proof["verdict"] == "disproven", json.dumps(proof, indent=1)
    run = _run(settings)
    assert run["state"] == "failed" and "not proposed" in run["failure_reason"], run
    assert stored(settings, "SELECT count(*) FROM proposals")[0][0] == 0


async def test_a_fix_for_the_recorded_inputs_only_fails_on_their_neighbours(tmp_path: Path) -> None:
    """`!pay` special-cased for exactly the four amounts that failed (as an agent reading every error
    message could) answers all of them, held-out ones included; nearby amounts with cents — generated
    from the recorded ones — still crash on the branch: disproven, and the run is not proposed."""
    special = (
        '    if amount in ("12.50", "3.75", "0.99", "8.10"):\n'
        "        return round(float(amount) * 100)\n" + TO_CENTS_BUG
    )
    settings, dev = await _fix(
        tmp_path,
        "tests.fixtures.buggy_wallet",
        _pay_failures,
        lambda s: [
            _diagnosis(WALLET, "amounts with cents are not ints"),
            _plan(WALLET),
            _edit(s, WALLET, TO_CENTS_BUG, special),
            text("Handled the amounts from the report."),
        ],
    )
    proof = _proof(settings)
    _not_proposed(settings, proof)
    assert {item["label"] for item in _items(proof, "recorded", "proves")} == {"!pay 12.50", "!pay 3.75"}
    assert {item["label"] for item in _items(proof, "held-out", "proves")} == {"!pay 0.99", "!pay 8.10"}
    failing = _items(proof, "neighbour", "fails")
    assert failing and all(
        item["note"].endswith("like the recorded calls: ValueError") for item in failing
    ), proof
    assert all("." in item["label"] for item in failing)  # nearby amounts with cents
    assert "(neighbour)" in proof["reason"]
    assert any("❌ Run #1 failed" in line and "not proposed" in line for line in dev)


async def test_a_fix_for_the_calls_the_agent_saw_fails_on_the_held_out_ones(tmp_path: Path) -> None:
    """The evidence shows the agent the older half of the failing amounts; `!pay` special-cased for
    those answers them, and the amounts held out for the proof still crash: disproven."""
    special = (
        '    if amount in ("12.50", "3.75"):\n        return round(float(amount) * 100)\n' + TO_CENTS_BUG
    )
    seen: list[str] = []
    settings, _ = await _fix(
        tmp_path,
        "tests.fixtures.buggy_wallet",
        _pay_failures,
        lambda s: [
            _diagnosis(WALLET, "amounts with cents are not ints"),
            _plan(WALLET),
            _edit(s, WALLET, TO_CENTS_BUG, special),
            text("Handled the amounts from the report."),
        ],
        seen,
    )
    told = "\n".join(seen)
    assert "12.50" in told and "3.75" in told, "the agent was shown the older half"
    assert "0.99" not in told and "8.10" not in told, "and nothing of the amounts held out"
    proof = _proof(settings)
    _not_proposed(settings, proof)
    held_out = _items(proof, "held-out", "fails")
    assert {item["label"] for item in held_out} == {"!pay 0.99", "!pay 8.10"}, proof
    assert "held out" in proof["reason"]


async def test_a_fix_for_the_recorded_slash_call_only_fails_on_its_neighbours(tmp_path: Path) -> None:
    """`/rating` special-cased for the one recorded call (points 30, no games): the neighbours — other
    points with no games, generated from the command's own integer options — still divide by zero."""

    async def failures(world: VirtualWorld) -> None:
        for _ in range(5):
            await world.users["alice"].slash(world.general, "rating", points=30, games=0)

    special = "    if points == 30 and games == 0:\n        return 0\n" + RATING_BUG
    settings, _ = await _fix(
        tmp_path,
        "tests.fixtures.buggy_rating",
        failures,
        lambda s: [
            _diagnosis(RATING, "no games means a division by zero"),
            _plan(RATING),
            _edit(s, RATING, RATING_BUG, special),
            text("Handled the reported player."),
        ],
    )
    proof = _proof(settings)
    _not_proposed(settings, proof)
    (recorded,) = _items(proof, "recorded")
    assert recorded["verdict"] == "proves" and recorded["label"] == "/rating points=30 games=0"
    failing = _items(proof, "neighbour", "fails")
    assert failing and all(item["label"].endswith("games=0") for item in failing), proof
    assert all(item["note"].endswith("like the recorded calls: ZeroDivisionError") for item in failing)
    assert _items(proof, "pass", "holds"), "ratings with games answer alike on both sides"


async def test_a_broad_except_around_the_command_is_not_a_fix(tmp_path: Path) -> None:
    """`!profile` wrapped in `try/except Exception` answers one generic line for every failure. The
    replay's watch sees the KeyError still raised in `lookup` and caught in `profile`: disproven."""

    async def failures(world: VirtualWorld) -> None:
        await _says(
            world, "!profile alice", "!profile zed", "!profile quinn", "!profile zed", "!profile ivy"
        )()
        await _says(world, "!profile zed")()

    wrapped = (
        "        try:\n"
        "            found = lookup(name)\n"
        '            await ctx.send(f"👤 {found.name} — {found.bio}")\n'
        "        except Exception:\n"
        '            await ctx.send("Sorry, I could not do that right now.")\n'
    )
    settings, _ = await _fix(
        tmp_path,
        "tests.fixtures.buggy_profiles",
        failures,
        lambda s: [
            _diagnosis(PROFILES, "unknown names crash"),
            _plan(PROFILES),
            _edit(s, PROFILES, PROFILE_BODY, wrapped),
            text("The command no longer crashes."),
        ],
    )
    proof = _proof(settings)
    _not_proposed(settings, proof)
    failing = [item for item in proof["items"] if item["verdict"] == "fails"]
    assert failing and all(
        "the KeyError in `lookup` still happens; the change catches it in `profile`" in item["note"]
        for item in failing
    ), proof
    assert any(item["branch"]["ok"] for item in failing), "answered on the branch, and still not fixed"


async def test_turning_every_error_into_a_user_error_is_not_a_fix(tmp_path: Path) -> None:
    """`!pay` turns whatever fails into a polite user error: no apology is shown, but the ValueError in
    `to_cents` still happens on every amount with cents — disproven."""
    polite = (
        "        try:\n"
        "            cents = to_cents(amount)\n"
        "        except Exception as exc:\n"
        "            from mendbot.kernel.errors import UserError\n\n"
        '            raise UserError(f"I could not pay {amount}.") from exc\n'
    )
    settings, _ = await _fix(
        tmp_path,
        "tests.fixtures.buggy_wallet",
        _pay_failures,
        lambda s: [
            _diagnosis(WALLET, "amounts with cents are not ints"),
            _plan(WALLET),
            _edit(s, WALLET, PAY_BODY, polite),
            text("Bad amounts get a clear message now."),
        ],
    )
    proof = _proof(settings)
    _not_proposed(settings, proof)
    recorded = _items(proof, "recorded") + _items(proof, "held-out")
    assert recorded and all(item["verdict"] == "fails" for item in recorded), proof
    assert all(
        "the ValueError in `to_cents` still happens; the change catches it in `pay`" in item["note"]
        for item in recorded
    )
    assert all("I could not pay" in item["branch"]["text"] for item in recorded)


async def test_an_error_turned_into_a_user_error_where_it_is_raised_is_not_proven(tmp_path: Path) -> None:
    """`to_cents` catches its own ValueError and raises a polite user error instead: no crash, no apology,
    but the amount still gets no result — refused, and the proof is not proven, saying why."""
    polite = (
        "    try:\n"
        "        return int(amount) * 100\n"
        "    except ValueError as exc:\n"
        "        from mendbot.kernel.errors import UserError\n\n"
        '        raise UserError(f"{amount} is not an amount I can pay.") from exc\n'
    )
    settings, _ = await _fix(
        tmp_path,
        "tests.fixtures.buggy_wallet",
        _pay_failures,
        lambda s: [
            _diagnosis(WALLET, "amounts with cents are not ints"),
            _plan(WALLET),
            _edit(s, WALLET, TO_CENTS_BUG, polite),
            text("Bad amounts get a clear message now."),
        ],
    )
    proof = _proof(settings)
    assert proof["verdict"] == "unproven", json.dumps(proof, indent=1)
    recorded = _items(proof, "recorded") + _items(proof, "held-out")
    assert recorded and all(item["verdict"] == "refused" for item in recorded), proof
    assert all(
        item["note"]
        == "the ValueError in `to_cents` still happens; the change turns it into a refusal (UserError)"
        for item in recorded
    )
    assert "refusal" in proof["reason"]


async def test_a_fix_that_breaks_calls_that_worked_is_disproven(tmp_path: Path) -> None:
    """`!convert` learns miles but loses metres: the recorded `!convert 500 m`, which answered before,
    now crashes on the branch. What worked must still work: disproven, with the call shown."""

    async def failures(world: VirtualWorld) -> None:
        await _says(world, "!convert 10 km", "!convert 500 m")()
        await _says(world, *["!convert 3 mi"] * 5)()

    broken = 'TO_KM = {"km": 1.0, "mi": 1.609}\n'
    settings, _ = await _fix(
        tmp_path,
        "tests.fixtures.buggy_units",
        failures,
        lambda s: [
            _diagnosis(UNITS, "miles are missing"),
            _plan(UNITS),
            _edit(s, UNITS, UNITS_BUG, broken),
            text("Added miles."),
        ],
    )
    proof = _proof(settings)
    _not_proposed(settings, proof)
    (fixed,) = _items(proof, "recorded")
    assert fixed["verdict"] == "proves", proof
    broke = {item["label"]: item for item in _items(proof, "pass", "fails")}
    assert "!convert 500 m" in broke, proof
    assert broke["!convert 500 m"]["note"] == "worked on the base; error on the branch: KeyError"
    assert broke["!convert 500 m"]["base"]["text"].startswith("answered “📏 500 m = 0.500 km")
    assert "!convert 500 m" in proof["reason"]


async def test_a_fix_that_makes_the_command_far_slower_is_at_most_unproven(tmp_path: Path) -> None:
    """`!pay` fixed, but every payment now waits a second and a half: each call is slow against how fast
    `!pay` answered on the base, so the proof says unproven (slow) instead of proven."""
    slow_fix = "    time.sleep(1.5)\n" + TO_CENTS_FIX
    settings, dev = await _fix(
        tmp_path,
        "tests.fixtures.buggy_wallet",
        _pay_failures,
        lambda s: [
            _diagnosis(WALLET, "amounts with cents are not ints"),
            _plan(WALLET),
            _edit(s, WALLET, TO_CENTS_BUG, slow_fix),
            _edit(s, WALLET, "from typing import Any\n", "import time\nfrom typing import Any\n"),
            text("Amounts with cents work now."),
        ],
    )
    proof = _proof(settings)
    assert proof["verdict"] == "unproven", json.dumps(proof, indent=1)
    slow = [item for item in proof["items"] if item["verdict"] == "slow"]
    assert slow and all(item["note"].startswith("slow: ") for item in slow), proof
    assert any(item["role"] == "pass" for item in slow), "calls that worked are slow too"
    assert "slow" in proof["reason"]
    report = next(line for line in dev if "ready for review" in line)
    assert "⚠️ **unproven**" in report and "ship it unproven" in report


async def _digest_failures(world: VirtualWorld) -> None:
    said = await world.users["alice"].send(world.general, "what a quiet day")
    for _ in range(5):
        await world.users["alice"].react(said, "📊")
        await world.quiesce()
        await world.users["alice"].unreact(said, "📊")


async def test_a_regression_test_that_mocks_the_code_it_tests_proves_nothing(tmp_path: Path) -> None:
    """The digest's fault is in a reaction listener. The agent's test fails on the base and passes on the
    branch — because it replaces `ratio` with the new `safe_ratio` by monkeypatch, while `digest_line`
    still divides by zero. It proves nothing, and the reaction replayed shows the failure still there."""
    test = (
        "from tests.fixtures import buggy_digest\n\n\n"
        "def test_a_quiet_day_has_a_digest(monkeypatch) -> None:\n"
        '    monkeypatch.setattr(buggy_digest, "ratio", buggy_digest.safe_ratio)\n'
        '    assert buggy_digest.digest_line({"links": 3, "messages": 0}).startswith("🔗")\n'
    )
    settings, _ = await _fix(
        tmp_path,
        "tests.fixtures.buggy_digest",
        _digest_failures,
        lambda s: [
            _diagnosis(DIGEST, "a quiet day divides by zero"),
            _plan(DIGEST, "tests/test_digest_regression.py"),
            _edit(s, DIGEST, RATIO_BUG, RATIO_BUG + SAFE_RATIO),
            _write(s, "tests/test_digest_regression.py", test),
            text("Added a safe ratio and a regression test."),
        ],
    )
    proof = _proof(settings)
    assert proof["verdict"] == "disproven", json.dumps(proof, indent=1)
    assert (
        "on a message (on_raw_reaction_add)`: still fails as recorded: ZeroDivisionError" in proof["reason"]
    )
    (item,) = [item for item in proof["items"] if item["kind"] == "test"]
    assert (item["base"]["ok"], item["branch"]["ok"], item["verdict"]) == (False, True, "no_proof")
    assert (
        "replaces the code it tests (tests.fixtures.buggy_digest.ratio (monkeypatch.setattr))" in item["note"]
    )


async def test_a_regression_test_that_fails_only_for_a_missing_name_proves_nothing(tmp_path: Path) -> None:
    """The agent's test imports `safe_ratio`, which only the change adds, and checks it alone: on the
    base it cannot even be collected, not because of the quiet day's ZeroDivisionError. It proves
    nothing; the listener still crashes, as the reaction replayed shows."""
    test = (
        "from tests.fixtures.buggy_digest import safe_ratio\n\n\n"
        "def test_a_quiet_day_has_a_ratio() -> None:\n"
        "    assert safe_ratio(3, 0) == 0.0\n"
    )
    settings, _ = await _fix(
        tmp_path,
        "tests.fixtures.buggy_digest",
        _digest_failures,
        lambda s: [
            _diagnosis(DIGEST, "a quiet day divides by zero"),
            _plan(DIGEST, "tests/test_digest_regression.py"),
            _edit(s, DIGEST, RATIO_BUG, RATIO_BUG + SAFE_RATIO),
            _write(s, "tests/test_digest_regression.py", test),
            text("Added a safe ratio and a regression test."),
        ],
    )
    proof = _proof(settings)
    assert proof["verdict"] == "disproven", json.dumps(proof, indent=1)
    (item,) = [item for item in proof["items"] if item["kind"] == "test"]
    assert item["verdict"] == "no_proof" and "cannot even be collected" in item["note"], item
    assert "safe_ratio" in item["note"]


async def test_honest_fixes_of_these_cogs_are_still_proven(tmp_path: Path) -> None:
    """Not too strict: the real fix of `!pay` (a decimal amount), with a regression test that reproduces
    the reported ValueError in `to_cents`, is proven by replay — held-out calls, neighbours and the
    calls that worked all pass — and by its test."""
    test = (
        "from tests.fixtures.buggy_wallet import to_cents\n\n\n"
        "def test_cents_are_kept() -> None:\n"
        '    assert to_cents("12.50") == 1250\n'
    )
    settings, dev = await _fix(
        tmp_path,
        "tests.fixtures.buggy_wallet",
        _pay_failures,
        lambda s: [
            _diagnosis(WALLET, "amounts with cents are not ints"),
            _plan(WALLET, "tests/test_wallet_regression.py"),
            _edit(s, WALLET, TO_CENTS_BUG, TO_CENTS_FIX),
            _write(s, "tests/test_wallet_regression.py", test),
            text("Amounts are parsed as decimals now."),
        ],
    )
    proof = _proof(settings)
    assert proof["verdict"] == "proven", json.dumps(proof, indent=1)
    assert _items(proof, "held-out", "proves") and _items(proof, "neighbour", "proves")
    assert _items(proof, "pass", "holds")
    assert not [item for item in proof["items"] if item["verdict"] in ("fails", "slow")]
    (item,) = [item for item in proof["items"] if item["kind"] == "test"]
    assert item["verdict"] == "proves", item
    report = next(line for line in dev if "ready for review" in line)
    assert "✅ **proven by replay**" in report and "Checked: " in report
