"""A bot with an 8-ball used before the fault: a correct fix of its other command is proven whatever the
8-ball's probe happened to answer, and a change that alters what a deterministic command answers is still
refused. The plan is read from real SQLite records, the replay's answers are staged — each side's 8-ball
drawn from its own `random.Random`, seeded, so every draw is the same on every run."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from mendbot.db.connection import open_database
from mendbot.db.handlers import HandlerLocation, replace_cog
from mendbot.improve.proof.heldout import call_identity
from mendbot.improve.proof.judge import Timing, judge_replay
from mendbot.improve.proof.prover import _judge
from mendbot.improve.proof.replay import Raised, ReplayResult, Watch
from mendbot.improve.proof.replay_plan import ReplayPlan, plan_proof
from mendbot.improve.proof.verdict import Proof

EIGHT_BALL = ("It is certain.", "Ask again later.", "Very doubtful.", "Yes.", "My reply is no.")
QUESTION = "!8ball will it rain"
WATCHED = Watch(on=True)
_FRAMES = '["cogs/fun.py:12:divide"]'


def _ball(rng: random.Random) -> str:
    return f"🎱 {rng.choice(EIGHT_BALL)}"


def _base_probe_agrees(seed: int) -> bool:
    """The base's three answers to the 8-ball's probed call (the first three it draws) are one answer."""
    rng = random.Random(f"base {seed}")
    return len({_ball(rng) for _ in range(3)}) == 1


def _seeds() -> list[int]:
    """Ten draws: the first five whose base probe agrees by chance, and the first five that do not."""
    agreeing = [seed for seed in range(1000) if _base_probe_agrees(seed)][:5]
    return agreeing + [seed for seed in range(1000) if seed not in agreeing][:5]


async def _plans(tmp_path: Path, seeds: list[int]) -> dict[int, ReplayPlan]:
    """For each seed, the plan of these records: one member asked the 8-ball the same thing six times (its
    answers drawn live) and divided 8 by 2 twice, then `!div 6 0` and `!div 9 0` crashed in `divide`."""
    db = await open_database(tmp_path / "db.sqlite")
    plans = {}
    try:
        handlers = [
            HandlerLocation("command:8ball", "cogs/fun.py", "Fun.eight_ball", 5, "Fun"),
            HandlerLocation("command:div", "cogs/fun.py", "Fun.div", 10, "Fun"),
        ]
        await replace_cog(db, "Fun", handlers, 0)
        shown = {call_identity("command:div", {"name": "!div", "options": {"text": "!div 6 0"}})}
        for seed in seeds:
            await db.execute("DELETE FROM actions")
            await _record(db, seed)
            plans[seed] = await plan_proof(
                db, fingerprint="fp", kind=None, shown=shown, reach=["command:8ball", "command:div"]
            )
    finally:
        await db.close()
    return plans


async def _record(db: Any, seed: int) -> None:
    live = random.Random(f"live {seed}")
    rows: list[tuple[str, str, str | None]] = [("command:8ball", QUESTION, _ball(live)) for _ in range(6)]
    rows += [("command:div", "!div 8 2", "8 / 2 = 4")] * 2 + [("command:div", "!div 6 0", None)]
    rows.append(("command:div", "!div 9 0", None))
    for ts, (kind, text, reply) in enumerate(rows, start=1):
        ok = reply is not None
        await db.execute(
            "INSERT INTO actions (ts, kind, source, ok, duration_ms, guild_id, user_id, error_type,"
            " fingerprint, frames, invocation, reply) VALUES (?, ?, 'Fun', ?, 10.0, 5, 7, ?, ?, ?, ?, ?)",
            (
                float(ts),
                kind,
                int(ok),
                None if ok else "ZeroDivisionError",
                None if ok else "fp",
                None if ok else _FRAMES,
                json.dumps({"name": text.split()[0], "options": {"text": text}}),
                json.dumps({"text": reply, "messages": 1}) if ok else None,
            ),
        )


def _divided(key: str, text: str, *, fixed: bool, rounding: bool = False) -> ReplayResult:
    """What `!div a b` answers: the quotient; for a zero divisor the crash, or once fixed, "undefined"."""
    numbers = [int(found) for found in re.findall(r"-?\d+", text)]
    if len(numbers) != 2:
        return ReplayResult(key, True, "Usage: !div a b", None, 5.0, (), WATCHED)
    a, b = numbers
    if b != 0:
        quotient = f"{a / b:.1f}" if rounding else f"{a / b:g}"
        return ReplayResult(key, True, f"{a} / {b} = {quotient}", None, 5.0, (), WATCHED)
    if fixed:
        return ReplayResult(key, True, f"{a} / 0: undefined", None, 5.0, (), WATCHED)
    crash = Raised(
        "ZeroDivisionError", "cogs/fun.py", "divide", 12, "discord.ext.commands.core", "wrapped", False
    )
    apology = "Something went wrong on my side (ZeroDivisionError)."
    return ReplayResult(key, True, apology, "ZeroDivisionError", 5.0, (crash,), WATCHED)


def _proof(plan: ReplayPlan, seed: int, *, rounding: bool = False) -> Proof:
    """The replay judged: the base crashes on a zero divisor; the branch answers it (and, with
    `rounding`, also writes every other quotient with one decimal — a wrong change)."""
    base_rng, branch_rng = random.Random(f"base {seed}"), random.Random(f"branch {seed}")
    base: dict[str, ReplayResult] = {}
    branch: dict[str, ReplayResult] = {}
    for case in plan.replayable:
        if case.kind == "command:8ball":
            base[case.key] = ReplayResult(case.key, True, _ball(base_rng), None, 5.0, (), WATCHED)
            branch[case.key] = ReplayResult(case.key, True, _ball(branch_rng), None, 5.0, (), WATCHED)
        else:
            base[case.key] = _divided(case.key, case.text, fixed=False)
            branch[case.key] = _divided(case.key, case.text, fixed=True, rounding=rounding)
    items = judge_replay(plan, base, branch, timing=Timing(), source_of=lambda _path: None)
    return _judge(items, 1.0, plan)


async def test_a_correct_fix_beside_a_random_command_is_proven_in_every_draw(tmp_path: Path) -> None:
    """Ten seeded draws, five where the base's three answers to the 8-ball's probe agree: all proven."""
    seeds = _seeds()
    assert len(set(seeds)) == 10
    for seed, plan in (await _plans(tmp_path, seeds)).items():
        assert [case.role for case in plan.cases[:3]] == ["pass", "probe", "probe"]
        assert plan.cases[0].kind == "command:8ball"
        proof = _proof(plan, seed)
        assert proof.verdict == "proven", (seed, proof.reason)
        ball = [item for item in proof.items if item.label.startswith("!8ball")]
        assert ball and all(item.verdict == "holds" for item in ball)


async def test_a_change_that_alters_a_deterministic_commands_answer_is_still_refused(tmp_path: Path) -> None:
    """The same draws, a change that fixes the crash but writes `8 / 2 = 4.0` where the base wrote
    `8 / 2 = 4`: the 8-ball's randomness loosens nothing else, the proof is disproven."""
    for seed, plan in (await _plans(tmp_path, _seeds())).items():
        proof = _proof(plan, seed, rounding=True)
        assert proof.verdict == "disproven", seed
        broken = {item.label: item.note for item in proof.items if item.verdict == "fails"}
        assert broken["!div 8 2"] == "answers differently than on the base"
        assert not any(label.startswith("!8ball") for label in broken)
