"""What the proof replays and how it judges: real SQLite for the recorded calls, plain values for the
verdicts (the sandboxed runs themselves are exercised end to end in tests/test_proof_e2e.py)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from mendbot.db import proofs
from mendbot.db.connection import open_database
from mendbot.db.handlers import HandlerLocation, replace_cog
from mendbot.improve.proof.judge import Timing
from mendbot.improve.proof.prover import _judge, _replay_items, changed_lines, changed_tests
from mendbot.improve.proof.replay import ReplayResult, _appearance
from mendbot.improve.proof.replay_plan import MAX_REPLAYS, Failure, ReplayCase, ReplayPlan, plan_replay
from mendbot.improve.proof.retime import quickest
from mendbot.improve.proof.test_item import Request as _Request
from mendbot.improve.proof.test_item import TestRun as _TestRun
from mendbot.improve.proof.test_item import test_item as _test_item
from mendbot.improve.proof.verdict import Proof, ProofItem, Side
from tests.harness.repo import git

_CLOCK = itertools.count(1)  # each record newer than the one before


async def _record(
    db: Any, kind: str, invocation: dict[str, Any] | None, *, ok: bool = False, ms: float = 2.0
) -> None:
    await db.execute(
        "INSERT INTO actions (ts, kind, source, ok, duration_ms, error_type, fingerprint, invocation)"
        " VALUES (?, ?, 'Cog', ?, ?, ?, ?, ?)",
        (
            float(next(_CLOCK)),
            kind,
            int(ok),
            ms,
            None if ok else "ValueError",
            None if ok else "fp",
            json.dumps(invocation) if invocation else None,
        ),
    )


async def test_replay_plan_marks_what_cannot_be_replayed_with_the_reason(tmp_path: Path) -> None:
    """Events other than messages and reactions, a task's hooks, member options, redacted values and
    missing invocations are not replayable; a reaction, a task's iteration and a command are."""
    db = await open_database(tmp_path / "db.sqlite")
    try:
        await _record(db, "app:warn", {"name": "/warn", "options": {"user": "Member:123"}})
        await _record(
            db, "listener:on_raw_reaction_add", {"name": "on_raw_reaction_add", "options": {"emoji": "👍"}}
        )
        await _record(db, "listener:on_member_join", {"name": "on_member_join", "options": {"arg": "x"}})
        await _record(db, "task:refresh.before_loop", {"name": "task:refresh", "options": {"iteration": 0}})
        await _record(db, "task:refresh", {"name": "task:refresh", "options": {"iteration": 3}})
        await _record(db, "app:login", {"name": "/login", "options": {"password": "[redacted]"}})
        await _record(db, "command:ping", None)
        await _record(db, "command:roll", {"name": "!roll", "options": {"text": "!roll 2d6"}})
        await _record(db, "command:roll", {"name": "!roll", "options": {"text": "!roll 2d6"}})  # a duplicate
        await replace_cog(
            db, "Dice", [HandlerLocation("command:roll", "cogs/dice.py", "Dice.roll", 1, "Dice")], 0
        )
        plan = await plan_replay(db, fingerprint="fp", kind=None, limit=10)
        capped = await plan_replay(db, fingerprint="fp", kind=None)
    finally:
        await db.close()
    reasons = {case.kind: case.unreplayable for case in plan.cases}
    assert len(plan.cases) == 8 and len(capped.cases) == MAX_REPLAYS  # distinct invocations, capped
    assert reasons["command:ping"] == "no invocation was recorded for it"
    assert reasons["command:roll"] is None
    assert sorted(case.label for case in plan.replayable) == [
        "!roll 2d6",
        "task `refresh`, one iteration",
        "👍 on a message (on_raw_reaction_add)",
    ]
    assert plan.handlers == ["cogs/dice.py"] and not plan.latency
    assert "names a Discord object (Member)" in str(reasons["app:warn"])
    assert "the `on_member_join` event cannot be made again" in str(reasons["listener:on_member_join"])
    assert reasons["task:refresh.before_loop"] == "a task loop's start or stop hook"
    assert "redacted" in str(reasons["app:login"])


async def test_latency_plan_replays_the_slowest_completed_calls(tmp_path: Path) -> None:
    """Without a fingerprint the kind's slowest completed calls are replayed, slowest first."""
    db = await open_database(tmp_path / "db.sqlite")
    try:
        for ms, text in ((5, "!report a"), (400, "!report b"), (90, "!report c")):
            await _record(
                db, "command:report", {"name": "!report", "options": {"text": text}}, ok=True, ms=ms
            )
        plan = await plan_replay(db, fingerprint=None, kind="command:report")
    finally:
        await db.close()
    assert plan.latency and [case.label for case in plan.cases] == ["!report b", "!report c", "!report a"]


def _plan(latency: bool = False) -> ReplayPlan:
    case = ReplayCase(
        "1", "command:roll", "!roll", {"text": "!roll 2d6"}, None if latency else "fp", 300.0,
        error_type=None if latency else "ValueError",
    )  # fmt: skip
    return ReplayPlan([case], ["cogs/dice.py"], latency)


def _result(*, answered: bool = True, error: str | None = None, ms: float = 2.0) -> dict[str, ReplayResult]:
    reply = f"Something went wrong on my side ({error})." if error else ("🎲 7" if answered else "")
    return {"1": ReplayResult("1", answered, reply, error, ms)}


def _items(
    plan: ReplayPlan, base: dict[str, ReplayResult], branch: dict[str, ReplayResult]
) -> list[ProofItem]:
    return _replay_items(plan, base, branch, Timing(latency_min_ms=50), lambda path: None)


def test_replay_that_fails_on_the_base_and_is_answered_on_the_branch_proves() -> None:
    """The base shows the recorded error, the branch answers: the item proves the fix."""
    (item,) = _items(_plan(), _result(error="ValueError"), _result())
    assert item.verdict == "proves" and "as recorded" in item.note
    assert item.base is not None and item.base.text == "error shown: ValueError"
    assert item.branch is not None and item.branch.text == "answered “🎲 7”"


def test_replay_of_a_deleted_command_fails() -> None:
    """Nothing answers on the branch: the item says the fix does not hold."""
    (item,) = _items(_plan(), _result(error="ValueError"), _result(answered=False))
    assert item.verdict == "fails" and item.note == "no answer on the branch"
    assert _judge([item], 1.0, _plan()).verdict == "disproven"


def test_an_answer_that_is_another_error_still_fails() -> None:
    """The branch answers, but with the apology for another bug: not a fix."""
    (item,) = _items(_plan(), _result(error="ValueError"), _result(error="KeyError"))
    assert item.verdict == "fails" and item.note == "fails with another error: KeyError"


def test_latency_replay_proves_only_a_real_drop() -> None:
    """A latency item proves when the branch answers in at most half the base's time, and fails otherwise."""
    (dropped,) = _items(_plan(True), _result(ms=400), _result(ms=3))
    (still,) = _items(_plan(True), _result(ms=400), _result(ms=350))
    (never,) = _items(_plan(True), _result(ms=4), _result(ms=3))
    assert dropped.verdict == "proves" and dropped.note == "first answer sooner: 400 ms → 3 ms"
    assert still.verdict == "fails" and "still slow" in still.note
    assert never.verdict == "neutral"


def test_a_call_timed_again_keeps_its_shorter_time_only_where_it_answered_alike() -> None:
    """A stall on one replay is taken back by the other; a second replay that answered otherwise (or not
    at all) lends no time, and what the call answered is always the first replay's."""

    def kept(first: dict[str, ReplayResult], second: dict[str, ReplayResult] | str) -> ReplayResult:
        both = quickest(first, second)
        assert isinstance(both, dict)
        return both["1"]

    stalled = _result(ms=900.0)
    assert kept(stalled, _result(ms=4.0)).duration_ms == 4.0
    assert kept(_result(ms=4.0), stalled).duration_ms == 4.0
    assert kept(stalled, _result(error="ValueError", ms=1.0)).duration_ms == 900.0
    assert kept(stalled, _result(answered=False, ms=1.0)).duration_ms == 900.0
    assert kept(stalled, "the bot did not start").duration_ms == 900.0
    assert kept(stalled, _result(ms=4.0)).reply == "🎲 7"


def test_verdicts_and_feedback() -> None:
    """proves → proven; only neutral items → unproven; a no-proof test is fed back to the agent."""
    proves = ProofItem("replay", "!roll 2d6", Side(False, "E"), Side(True, "ok"), "proves", "n")
    useless = ProofItem(
        "test", "tests/test_x.py", Side(True, "1 passed"), Side(True, "1 passed"), "no_proof", "passes"
    )
    neutral = ProofItem("replay", "/x", None, None, "neutral", "not replayable: a task")
    assert _judge([proves, useless], 1.0, _plan()).verdict == "proven"
    assert _judge([neutral], 1.0, _plan()).verdict == "unproven"
    assert _judge([], 1.0, ReplayPlan([], [], False)).reason.endswith("nothing was recorded to replay")
    feedback = Proof("proven", "r", [proves, useless]).feedback()
    assert feedback is not None and "tests/test_x.py" in feedback and "!roll" not in feedback
    assert Proof("proven", "r", [proves]).feedback() is None


async def test_changed_tests_are_added_or_modified_test_files_only(tmp_path: Path) -> None:
    """test_*.py and *_test.py files the change adds or modifies count; deletions and other files do not."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_old.py").write_text("x = 1\n")
    (repo / "tests" / "test_gone.py").write_text("x = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "start")
    base = git(repo, "rev-parse", "HEAD")
    (repo / "tests" / "test_old.py").write_text("x = 2\n")
    (repo / "tests" / "test_gone.py").unlink()
    (repo / "tests" / "dice_test.py").write_text("x = 1\n")
    (repo / "tests" / "helpers.py").write_text("x = 1\n")
    (repo / "bot.py").write_text("x = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "change")
    head = git(repo, "rev-parse", "HEAD")
    assert await changed_tests(repo, base, head) == ["tests/dice_test.py", "tests/test_old.py"]


async def test_proof_rows_round_trip(tmp_path: Path) -> None:
    """A stored proof comes back as it was stored, newest per stage."""
    db = await open_database(tmp_path / "db.sqlite")
    try:
        for verdict in ("disproven", "proven"):
            await proofs.insert(
                db, run_id=3, stage="verify", sha="b", base_sha="a", verdict=verdict, reason="r",
                items=[{"kind": "replay"}], overhead_s=2.5, now=1.0,
            )  # fmt: skip
        row = await proofs.latest(db, 3, "verify")
        assert await proofs.latest(db, 3, "deploy") is None
    finally:
        await db.close()
    assert row is not None and row.verdict == "proven" and row.items == [{"kind": "replay"}]


def _run(ok: bool | None, ran: list[int] | None = None, *, read: bool = False) -> _TestRun:
    coverage = None if ran is None else {"cogs/dice.py": {"changed": [4, 5], "ran": ran}}
    return _TestRun(Side(ok, "1 passed" if ok else "1 failed"), coverage, ["cogs/dice.py"] if read else [])


def test_a_test_proves_only_when_it_runs_the_change() -> None:
    """Failing on the base and passing on the branch is not enough: the test must run a changed line,
    and not read a changed file's source."""
    base = _run(False)
    request = _Request(["tests/test_x.py"], {"cogs/dice.py": [4, 5]}, ["cogs/dice.py"], None, set())
    proves = _test_item(request, base, _run(True, [5]))
    idle = _test_item(request, base, _run(True, []))
    unmeasured = _test_item(request, base, _run(True, None))
    reader = _test_item(request, base, _run(True, [5], read=True))
    assert proves.verdict == "proves" and "runs 1 of 2 changed lines" in proves.note
    assert idle.verdict == "no_proof" and "does not exercise the change" in idle.note
    assert unmeasured.verdict == "no_proof"
    assert reader.verdict == "no_proof" and "reads the source of a file your change made" in reader.note


def test_what_the_gate_asks_for() -> None:
    """`deploy.require_proof`: "test" takes a proven or a tested fix, "replay" only a proven one, "off"
    anything; a tested fix never reads as proven."""
    replay = ProofItem("replay", "!roll", Side(False, "e"), Side(True, "a"), "proves", "")
    test = ProofItem("test", "t.py", Side(False, "f"), Side(True, "p"), "proves", "")
    by_replay, by_test = Proof("proven", "r", [replay, test]), Proof("tested", "r", [test])
    unproven = Proof("unproven", "r", [])
    assert (by_replay.basis, by_test.basis, unproven.basis) == ("replay", "test", None)
    assert by_replay.meets("replay") and by_replay.meets("test")
    assert by_test.meets("test") and not by_test.meets("replay") and not by_test.proven
    assert unproven.meets("off") and not unproven.meets("test")
    assert "**tested** (not proven)" in by_test.headline() and "proven by" not in by_test.headline()


def test_a_test_alone_makes_a_proof_tested_never_proven() -> None:
    """The change's own test proving the fix, with nothing replayed (the failure cannot be), is tested;
    with a replay item that proves too, proven; a replay that fails disproves whatever the test says."""
    test = ProofItem("test", "t.py", Side(False, "f"), Side(True, "p"), "proves", "")
    proves = ProofItem("replay", "!roll", Side(False, "e"), Side(True, "a"), "proves", "", "recorded")
    fails = ProofItem("replay", "!roll", Side(False, "e"), Side(False, "e"), "fails", "still", "recorded")
    unreplayable = ReplayCase("1", "listener:on_guild_join", "x", {}, "fp", 1.0, "no payload")
    alone = _judge([test], 0.0, ReplayPlan([unreplayable], [], False))
    assert alone.verdict == "tested" and "could not be replayed: no payload" in alone.reason
    assert _judge([test, proves], 0.0, ReplayPlan([], [], False)).verdict == "proven"
    assert _judge([test, fails], 0.0, ReplayPlan([], [], False)).verdict == "disproven"


async def test_changed_lines_are_the_new_versions_lines(tmp_path: Path) -> None:
    """The lines a change wrote in each source (not test) file; a deletion counts the lines around it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "a.py").write_text("one\ntwo\nthree\nfour\n")
    (repo / "b.py").write_text("x\ny\nz\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "start")
    base = git(repo, "rev-parse", "HEAD")
    (repo / "a.py").write_text("one\nTWO\nthree\nfour\nfive\n")
    (repo / "b.py").write_text("x\nz\n")
    (repo / "test_a.py").write_text("assert True\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "change")
    head = git(repo, "rev-parse", "HEAD")
    assert await changed_lines(repo, base, head) == {"a.py": [2, 5], "b.py": [1, 2]}


def _tests_run(ok: bool, entry: dict[str, Any], **more: Any) -> _TestRun:
    coverage = {"cogs/dice.py": {"changed": [4, 5], "ran": [5]}}
    side = Side(ok, "1 passed" if ok else "1 failed")
    outcome = {"outcome": "passed", "error_type": None} if ok else entry
    return _TestRun(side, coverage, tests={"tests/test_x.py::test_it": outcome}, **more)


def test_a_test_proves_only_the_reported_failure() -> None:
    """On the base the test must fail with the reported error through the reported function — not for a
    name the change adds, not at collection — and it may not replace the code it tests."""
    failure = Failure("ZeroDivisionError", "cogs/dice.py", "scale_for")
    request = _Request(
        ["tests/test_x.py"], {"cogs/dice.py": [4, 5]}, ["cogs/dice.py"], failure, {"safe_scale"}
    )
    reported = {
        "outcome": "failed",
        "error_type": "ZeroDivisionError",
        "message": "division by zero",
        "reaches": True,
    }
    missing = {"outcome": "failed", "error_type": "AttributeError", "message": "no attribute 'safe_scale'"}
    branch = _tests_run(True, {})
    assert _test_item(request, _tests_run(False, reported), branch).verdict == "proves"
    wrong = _test_item(request, _tests_run(False, missing), branch)
    assert wrong.verdict == "no_proof"
    assert (
        "fails with AttributeError (no attribute 'safe_scale'), not with the reported ZeroDivisionError"
        in wrong.note
    )
    elsewhere = _test_item(request, _tests_run(False, {**reported, "reaches": False}), branch)
    assert elsewhere.verdict == "no_proof" and "in `scale_for`" in elsewhere.note
    mocked = _test_item(
        request,
        _tests_run(False, reported),
        _tests_run(True, {}, patched={"tests/test_x.py::test_it": ["dice.scale_for (monkeypatch.setattr)"]}),
    )
    assert mocked.verdict == "no_proof" and "replaces the code it tests (dice.scale_for" in mocked.note
    uncollected = _TestRun(
        Side(False, "1 error"), None, collect_errors=["ImportError: cannot import name 'safe_scale'"]
    )
    assert "cannot even be collected" in _test_item(request, uncollected, branch).note
    no_failure = _Request(request.tests, request.sources, request.watched, None, {"safe_scale"})
    named = _test_item(no_failure, _tests_run(False, missing), branch)
    assert named.verdict == "no_proof" and "only because `safe_scale` is missing" in named.note
    assert (
        _test_item(no_failure, _tests_run(False, {**missing, "error_type": "AssertionError"}), branch).verdict
        == "proves"
    )


def test_a_stored_proof_item_carries_no_secret() -> None:
    """Every text of an item (label, sides, note, flags) goes through the redactor before it is stored."""
    leak = "sk-ant-secret"
    item = ProofItem(
        "replay", f"!say {leak}", Side(False, f"error {leak}"), Side(True, f"answered {leak}"), "proves",
        f"note {leak}", "recorded", (f"flag {leak}",),
    )  # fmt: skip
    stored = json.dumps(item.redacted(lambda text: text.replace(leak, "[redacted]")).to_dict())
    assert leak not in stored and stored.count("[redacted]") == 5


def test_the_replayed_process_sees_the_live_variables_by_name_but_not_mendbots_own_switches(
    monkeypatch: Any,
) -> None:
    """A failpoint armed in the live process (MENDBOT_FAILPOINTS) would be read by mendbot in the
    replayed one, stand-in value and all: mendbot's own switches stay out; the bot's own variables are
    there by name, their values stand-ins, and the replay's own on top."""
    monkeypatch.setenv("MENDBOT_FAILPOINTS", "deploy.after_merge=kill")
    monkeypatch.setenv("WEATHER_API_KEY", "k-123456789")
    env = _appearance({"DISCORD_TOKEN": "replay-token"}, lambda text: text)["env"]
    assert "MENDBOT_FAILPOINTS" not in env
    assert len(env["WEATHER_API_KEY"]) == len("k-123456789") and env["WEATHER_API_KEY"] != "k-123456789"
    assert env["DISCORD_TOKEN"] == "replay-token"
