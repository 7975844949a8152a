"""What the proof sends: calls that worked of every command the change can reach (with a probe and
neighbours) first, then the recorded failures — held out unless the agent's evidence showed them — and
their neighbours, generated over each call's own values. Real SQLite for the records, a real tree for
the imports."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from mendbot.db.connection import open_database
from mendbot.db.handlers import HandlerLocation, replace_cog
from mendbot.improve.proof.heldout import call_identity, shown_identities
from mendbot.improve.proof.neighbours import neighbours
from mendbot.improve.proof.replay_plan import affected_kinds, plan_proof

_CLOCK = itertools.count(1)


async def _record(
    db: Any, kind: str, text: str, *, ok: bool, ms: float = 10.0, reply: str | None = None, user: int = 1
) -> None:
    invocation = {"name": text.split(" ", 1)[0], "options": {"text": text}}
    await db.execute(
        "INSERT INTO actions (ts, kind, source, ok, duration_ms, guild_id, user_id, error_type, fingerprint,"
        " frames, invocation, reply) VALUES (?, ?, 'Cog', ?, ?, 5, ?, ?, ?, ?, ?, ?)",
        (
            float(next(_CLOCK)),
            kind,
            int(ok),
            ms,
            user,
            None if ok else "ValueError",
            None if ok else "fp",
            None if ok else json.dumps(["cogs/wallet.py:12:pay", "cogs/wallet.py:5:to_cents"]),
            json.dumps(invocation),
            json.dumps({"text": reply or f"answer to {text}"}) if ok else None,
        ),
    )


def test_neighbours_change_one_value_of_the_commands_own_kind() -> None:
    """A prefix command's numbers and whole words change one at a time (its name and the letters of a
    mixed token stay); a slash command's options keep their types; the same call has the same neighbours."""
    roll = neighbours("command:roll", {"name": "!roll", "options": {"text": "!roll 2d6"}}, 8)
    texts = [n["options"]["text"] for n in roll]
    assert len(texts) == 8 and all(t.startswith("!roll ") and "d" in t for t in texts)
    assert any(t.endswith("d6") and t != "!roll 2d6" for t in texts), "the count varies with sides kept"
    assert any(t.startswith("!roll 2d") and t != "!roll 2d6" for t in texts), "and the sides with count kept"
    assert roll == neighbours("command:roll", {"name": "!roll", "options": {"text": "!roll 2d6"}}, 8)
    rating = neighbours(
        "app:rating", {"name": "/rating", "options": {"points": 30, "games": 0, "ranked": True}}, 6
    )
    for other in rating:
        options = other["options"]
        assert isinstance(options["points"], int) and isinstance(options["games"], int)
        assert isinstance(options["ranked"], bool)
        changed = [k for k in options if options[k] != {"points": 30, "games": 0, "ranked": True}[k]]
        assert len(changed) == 1
    assert all(n["options"]["games"] >= 0 for n in rating), "a value keeps its sign"
    pay = neighbours("command:pay", {"name": "!pay", "options": {"text": "!pay 12.50"}}, 4)
    assert all(len(n["options"]["text"].split(".")[1]) == 2 for n in pay), "decimals keep their places"
    assert neighbours("command:ping", {"name": "!ping", "options": {"text": "!ping"}}, 4) == []


def test_the_agent_is_shown_the_older_half_of_the_distinct_failing_calls() -> None:
    """Distinct by command and options, ordered by when each first failed, rounded up."""
    calls = [
        (1.0, "command:pay", {"name": "!pay", "options": {"text": "!pay 1.5"}}),
        (2.0, "command:pay", {"name": "!pay", "options": {"text": "!pay 2.5"}}),
        (3.0, "command:pay", {"name": "!pay", "options": {"text": "!pay 1.5"}}),
        (4.0, "command:pay", {"name": "!pay", "options": {"text": "!pay 3.5"}}),
    ]
    shown = shown_identities(calls)
    assert shown == {call_identity("command:pay", calls[0][2]), call_identity("command:pay", calls[1][2])}
    assert len(shown_identities(calls[:1])) == 1


async def test_the_proof_plan_sends_what_worked_first_then_the_failures_and_their_neighbours(
    tmp_path: Path,
) -> None:
    """Roles and order: calls that worked (each kind's first probed again) and their neighbours, then the
    recorded failures — held out unless shown — then neighbours; the recorded fault's frame is kept."""
    db = await open_database(tmp_path / "db.sqlite")
    try:
        await _record(db, "command:pay", "!pay 5", ok=True, ms=8.0)
        await _record(db, "command:pay", "!pay 20", ok=True, ms=12.0)
        await _record(db, "command:pay", "!pay 12.50", ok=False)
        await _record(db, "command:pay", "!pay 3.75", ok=False)
        await _record(db, "command:balance", "!balance", ok=True)
        await replace_cog(
            db,
            "Wallet",
            [
                HandlerLocation("command:pay", "cogs/wallet.py", "Wallet.pay", 10, "Wallet"),
                HandlerLocation("command:balance", "cogs/wallet.py", "Wallet.balance", 20, "Wallet"),
            ],
            0,
        )
        shown = {call_identity("command:pay", {"name": "!pay", "options": {"text": "!pay 12.50"}})}
        plan = await plan_proof(
            db, fingerprint="fp", kind=None, shown=shown, reach=["command:pay", "command:balance"]
        )
    finally:
        await db.close()
    roles = [(case.role, case.label) for case in plan.cases]
    # Each kind's first call that worked goes three times: once as itself, twice as its probe (two
    # answers alike can be chance; three of a random command's seldom are).
    probed = [("pass", "!pay 20"), ("probe", "!pay 20"), ("probe", "!pay 20"), ("pass", "!balance")]
    assert roles[:4] == probed
    passing = [label for role, label in roles if role == "pass"]
    assert "!pay 5" in passing
    failing = [(role, label) for role, label in roles if role in ("recorded", "held-out")]
    assert failing == [("held-out", "!pay 3.75"), ("recorded", "!pay 12.50")]
    first_failure = roles.index(failing[0])
    assert all(role in ("pass", "probe", "neighbour") for role, _ in roles[:first_failure])
    failing_neighbours = [case for case in plan.cases[first_failure:] if case.role == "neighbour"]
    assert len(failing_neighbours) == 8 and all(case.label.startswith("!pay ") for case in failing_neighbours)
    assert plan.failure is not None and (plan.failure.file, plan.failure.function) == (
        "cogs/wallet.py",
        "to_cents",
    )
    assert plan.handlers == ["cogs/wallet.py"]
    assert {case.normal_ms for case in plan.cases if case.kind == "command:pay"} == {10.0}
    assert len({case.key for case in plan.cases}) == len(plan.cases)
    assert len({(case.kind, json.dumps(case.options)) for case in plan.cases if case.role != "probe"}) == len(
        [case for case in plan.cases if case.role != "probe"]
    ), "no call is sent twice but the probe"


async def test_the_plan_carries_the_commands_a_members_recorded_replies_showed_to_vary(
    tmp_path: Path,
) -> None:
    """One member asking the 8-ball the same thing got replies that kept changing (random words), and a
    ping replies that changed in numbers (shape); a reply reworded once by a deploy, and a greeting that
    names whoever asks, show nothing: those stay compared as their probe shows."""
    db = await open_database(tmp_path / "db.sqlite")
    try:
        for reply in ("🎱 Yes.", "🎱 No.", "🎱 No.", "🎱 Yes."):
            await _record(db, "command:8ball", "!8ball will it rain", ok=True, reply=reply)
        for reply in ("Pong! 42 ms", "Pong! 57 ms", "Pong! 40 ms"):
            await _record(db, "command:ping", "!ping", ok=True, reply=reply)
        for reply in ("Usage: !div a b", "Usage: !div a b", "Usage: !div A B", "Usage: !div A B"):
            await _record(db, "command:div", "!div", ok=True, reply=reply)
        for user, name in [(1, "Ann"), (2, "Bob"), (3, "Cy")] * 2:
            await _record(db, "command:hello", "!hello", ok=True, reply=f"Hi {name}!", user=user)
        kinds = ["command:8ball", "command:ping", "command:div", "command:hello"]
        plan = await plan_proof(db, fingerprint=None, kind=None, shown=set(), reach=kinds)
    finally:
        await db.close()
    assert plan.varies == {"command:8ball": "answered", "command:ping": "shape"}


def test_a_change_reaches_the_commands_whose_handlers_import_it(tmp_path: Path) -> None:
    """Handlers whose file is changed, or imports the changed file however indirectly — relative imports
    in a cog package, `from x import y` of a module, `import a.b` — are reached; the others are not."""
    files = {
        "cogs/wallet/__init__.py": "from . import commands\n",
        "cogs/wallet/commands.py": "from .helpers import money\n",
        "cogs/wallet/helpers.py": "from utils import money\n",
        "utils/__init__.py": "",
        "utils/money.py": "def cents(x):\n    return x\n",
        "cogs/dice.py": "import utils.dice\n",
        "utils/dice.py": "",
        "cogs/ping.py": "import json\n",
    }
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    handlers = [
        HandlerLocation("command:pay", "cogs/wallet/commands.py", "Wallet.pay", 1, "Wallet"),
        HandlerLocation("command:roll", "cogs/dice.py", "Dice.roll", 1, "Dice"),
        HandlerLocation("command:ping", "cogs/ping.py", "Ping.ping", 1, "Ping"),
    ]
    assert affected_kinds(handlers, ["utils/money.py"], tmp_path) == ["command:pay"]
    assert affected_kinds(handlers, ["utils/dice.py", "README.md"], tmp_path) == ["command:roll"]
    assert affected_kinds(handlers, ["cogs/ping.py"], tmp_path) == ["command:ping"]
    assert affected_kinds(handlers, ["docs/x.md"], tmp_path) == []
