"""How the proof judges replayed calls, on plain values: a fix must stop the failing calls and their
neighbours failing without the error still happening, keep what worked working, and not get far slower;
flags are shown, not verdicts. (The replays themselves run end to end in tests/test_proof_overfit_e2e.py.)"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mendbot.improve.proof.answers import Comparison, masked, shape
from mendbot.improve.proof.judge import Timing, handler_breadth, judge_replay, slow_calls
from mendbot.improve.proof.prover import _judge
from mendbot.improve.proof.replay import Raised, ReplayResult, Watch
from mendbot.improve.proof.replay_plan import Failure, ReplayCase, ReplayPlan
from mendbot.improve.proof.verdict import Proof

WATCHED = Watch(on=True)
FAILURE = Failure("ZeroDivisionError", "cogs/dice.py", "scale_for")
SOURCE = {
    "cogs/dice.py": (
        "def scale_for(sides):\n"  # 1
        "    try:\n"  # 2
        "        return 60 // (sides - 6)\n"  # 3
        "    except ZeroDivisionError:\n"  # 4
        "        return 1\n"  # 5
        "\n"
        "def broad(sides):\n"  # 7
        "    try:\n"  # 8
        "        return 60 // (sides - 6)\n"  # 9
        "    except Exception:\n"  # 10
        "        return 1\n"  # 11
    )
}


def _case(key: str, role: str, text: str, **fields: Any) -> ReplayCase:
    failing = role in ("recorded", "held-out")
    return ReplayCase(
        key,
        "command:roll",
        "!roll",
        {"text": text},
        "fp" if failing else None,
        5.0,
        error_type="ZeroDivisionError" if failing else None,
        role=role,  # type: ignore[arg-type]
        **fields,
    )


def _raised(where: tuple[str, str], caught: tuple[str, str], *, repo: bool = True, line: int = 3) -> Raised:
    return Raised("ZeroDivisionError", where[0], where[1], line, caught[0], caught[1], repo, (where[0],))


def _apology(key: str, ms: float = 5.0) -> ReplayResult:
    crash = _raised(("cogs/dice.py", "scale_for"), ("discord.ext.commands.core", "wrapped"), repo=False)
    return ReplayResult(
        key, True, "Something went wrong on my side (ZeroDivisionError).", "ZeroDivisionError", ms, (crash,),
        WATCHED,
    )  # fmt: skip


def _answer(key: str, text: str, ms: float = 5.0, raised: tuple[Raised, ...] = ()) -> ReplayResult:
    return ReplayResult(key, True, text, None, ms, raised, WATCHED)


def _judged(
    cases: list[ReplayCase],
    base: list[ReplayResult],
    branch: list[ReplayResult],
    varies: dict[str, Comparison] | None = None,
) -> Proof:
    files = {"command:roll": ["cogs/dice.py"]}
    plan = ReplayPlan(cases, ["cogs/dice.py"], False, FAILURE, files, varies or {})
    items = judge_replay(
        plan,
        {r.key: r for r in base},
        {r.key: r for r in branch},
        timing=Timing(),
        source_of=SOURCE.get,
    )
    return _judge(items, 1.0, plan)


def test_handler_breadth_names_the_handler_that_catches_the_line() -> None:
    """A handler naming the error (or one of its bases) is specific; bare, Exception and suppress(Exception)
    are broad; a line outside any try is caught by none there."""
    source = SOURCE["cogs/dice.py"]
    assert handler_breadth(source, 3, "ZeroDivisionError") == "specific"
    assert handler_breadth(source, 9, "ZeroDivisionError") == "broad"
    assert handler_breadth(source, 1, "ZeroDivisionError") == "none"
    arithmetic = "try:\n    x = 1 // 0\nexcept ArithmeticError:\n    pass\n"
    assert handler_breadth(arithmetic, 2, "ZeroDivisionError") == "specific"
    other = "try:\n    x = 1 // 0\nexcept KeyError:\n    pass\n"
    assert handler_breadth(other, 2, "ZeroDivisionError") == "none"
    suppressed = "import contextlib\nwith contextlib.suppress(Exception):\n    x = 1 // 0\n"
    assert handler_breadth(suppressed, 3, "ZeroDivisionError") == "broad"
    bare = "try:\n    x = 1 // 0\nexcept:\n    pass\n"
    assert handler_breadth(bare, 2, "ZeroDivisionError") == "broad"


def test_masks_leave_what_a_person_reads() -> None:
    """Ids, mentions and times are blanked for every comparison; numbers only for a shape."""
    assert masked("<@123456789012345678> rolled at 12:30:01") == masked(
        "<@987654321098765432> rolled at 09:00:00"
    )
    assert masked("🎲 2d6 → 7") != masked("🎲 2d6 → 9")
    assert shape("🎲 2d6 → 7") == shape("🎲 2d6 → 9")


def test_an_error_still_raised_and_caught_by_a_caller_is_not_fixed() -> None:
    """The recorded ZeroDivisionError is raised again in `scale_for` and caught in `roll`: answered, but
    not fixed."""
    caught = _raised(("cogs/dice.py", "scale_for"), ("cogs/dice.py", "roll"))
    proof = _judged(
        [_case("1", "recorded", "!roll 2d6")], [_apology("1")], [_answer("1", "oops", raised=(caught,))]
    )
    (item,) = proof.items
    assert proof.verdict == "disproven" and item.verdict == "fails"
    assert item.note == "the ZeroDivisionError in `scale_for` still happens; the change catches it in `roll`"


def test_an_error_caught_where_raised_by_a_broad_handler_is_not_fixed() -> None:
    """Raised and caught in the same function by `except Exception`: not fixed either."""
    caught = _raised(("cogs/dice.py", "scale_for"), ("cogs/dice.py", "scale_for"), line=9)
    proof = _judged(
        [_case("1", "recorded", "!roll 2d6")], [_apology("1")], [_answer("1", "🎲 7", raised=(caught,))]
    )
    assert proof.verdict == "disproven" and "with a broad `except` there" in proof.items[0].note


def test_an_error_handled_where_raised_by_a_handler_naming_it_is_a_fix() -> None:
    """`except ZeroDivisionError:` around the division in `scale_for` itself fixes that function."""
    caught = _raised(("cogs/dice.py", "scale_for"), ("cogs/dice.py", "scale_for"), line=3)
    proof = _judged(
        [_case("1", "recorded", "!roll 2d6")], [_apology("1")], [_answer("1", "🎲 7", raised=(caught,))]
    )
    assert proof.verdict == "proven" and proof.items[0].verdict == "proves"


def test_a_neighbour_that_failed_the_same_way_must_be_fixed_too() -> None:
    """A neighbour failing with the recorded error in the recorded function is a failing call: still
    failing on the branch disproves; one that failed some other way on the base is left out."""
    cases = [
        _case("1", "recorded", "!roll 2d6"),
        _case("2", "neighbour", "!roll 3d6", parent="1"),
        _case("3", "neighbour", "!roll 2d0", parent="1"),
    ]
    other = ReplayResult(
        "3", True, "Something went wrong on my side (KeyError).", "KeyError", 5.0, (), WATCHED
    )
    proof = _judged(
        cases, [_apology("1"), _apology("2"), other], [_answer("1", "🎲 7"), _apology("2"), _answer("3", "x")]
    )
    assert [(item.label, item.role, item.verdict) for item in proof.items] == [
        ("!roll 2d6", "recorded", "proves"),
        ("!roll 3d6", "neighbour", "fails"),
    ]
    assert proof.verdict == "disproven" and "(neighbour)" in proof.reason


def test_calls_that_worked_are_compared_as_the_probe_allows() -> None:
    """A deterministic command (two equal answers to the probe) must answer exactly alike; a random one
    only in shape; an error or silence on the branch breaks it."""
    cases = [
        _case("1", "pass", "!roll 2d8"),
        _case("2", "probe", "!roll 2d8", parent="1"),
        _case("3", "neighbour", "!roll 2d9", parent="1"),
    ]
    same = [_answer("1", "🎲 2d8 → 9"), _answer("2", "🎲 2d8 → 9"), _answer("3", "🎲 2d9 → 4")]
    exact = _judged(cases, same, [_answer("1", "🎲 2d8 → 10"), _answer("2", "x"), _answer("3", "🎲 2d9 → 4")])
    assert exact.items[0].verdict == "fails" and exact.items[0].note == "answers differently than on the base"
    random = [_answer("1", "🎲 2d8 → 9"), _answer("2", "🎲 2d8 → 3"), _answer("3", "🎲 2d9 → 4")]
    holds = _judged(
        cases, random, [_answer("1", "🎲 2d8 → 12"), _answer("2", "y"), _answer("3", "🎲 2d9 → 8")]
    )
    assert [item.verdict for item in holds.items] == ["holds", "holds"]
    broken = _judged(cases, random, [_apology("1"), _answer("2", "y"), _answer("3", "ok")])
    assert broken.items[0].note == "worked on the base; error on the branch: ZeroDivisionError"
    assert broken.verdict == "disproven"


def test_a_random_command_that_answered_alike_twice_by_chance_is_not_taken_for_deterministic() -> None:
    """A roll answers 9 to the call, 3 to the first probe and 9 again to the second — chance, for a die:
    compared by shape, so the branch's other rolls hold (the pipeline bench's proof failed on
    such a coincidence: "answers differently than on the base" for calls that worked)."""
    cases = [
        _case("1", "pass", "!roll 2d8"),
        _case("2", "probe", "!roll 2d8", parent="1"),
        _case("3", "probe", "!roll 2d8", parent="1"),
        _case("4", "pass", "!roll 1d20"),
    ]
    base = [_answer("1", "🎲 2d8 → 9"), _answer("2", "🎲 2d8 → 3"), _answer("3", "🎲 2d8 → 9")]
    base.append(_answer("4", "🎲 1d20 → 17"))
    branch = [_answer("1", "🎲 2d8 → 12"), _answer("2", "y"), _answer("3", "z"), _answer("4", "🎲 1d20 → 2")]
    proof = _judged(cases, base, branch)
    assert [item.verdict for item in proof.items] == ["holds", "holds"]


def test_a_probe_that_answered_alike_by_chance_does_not_tighten_its_kind() -> None:
    """Two probed calls of one command: the first's answers differ in numbers, the last's happened to
    agree (a d20 lands on 17 three times): the whole kind is compared by shape, the loosest shown."""
    cases = [
        _case("1", "pass", "!roll 2d8"),
        _case("2", "probe", "!roll 2d8", parent="1"),
        _case("3", "probe", "!roll 2d8", parent="1"),
        _case("4", "pass", "!roll 1d20"),
        _case("5", "probe", "!roll 1d20", parent="4"),
        _case("6", "probe", "!roll 1d20", parent="4"),
    ]
    base = [_answer(key, f"🎲 2d8 → {n}") for key, n in (("1", 9), ("2", 3), ("3", 5))]
    base += [_answer(key, "🎲 1d20 → 17") for key in ("4", "5", "6")]
    branch = [_answer(key, f"🎲 2d8 → {n}") for key, n in (("1", 12), ("2", 2), ("3", 7))]
    branch += [_answer(key, f"🎲 1d20 → {n}") for key, n in (("4", 2), ("5", 11), ("6", 17))]
    proof = _judged(cases, base, branch)
    assert [item.verdict for item in proof.items] == ["holds", "holds"]


def test_a_command_seen_to_vary_live_is_compared_loosely_whatever_its_probe_answered() -> None:
    """The live records showed the 8-ball answering random words: its probe's three equal answers do
    not make it exact; a command nothing showed to vary is still compared exactly."""
    ball = [
        replace(_case("1", "pass", "!8ball will it rain"), kind="command:8ball"),
        replace(_case("2", "probe", "!8ball will it rain", parent="1"), kind="command:8ball"),
        replace(_case("3", "probe", "!8ball will it rain", parent="1"), kind="command:8ball"),
    ]
    roll = [
        _case("4", "pass", "!roll 2d8"),
        _case("5", "probe", "!roll 2d8", parent="4"),
        _case("6", "probe", "!roll 2d8", parent="4"),
    ]
    base = [_answer(key, "🎱 Yes.") for key in "123"] + [_answer(key, "🎲 2d8 → 9") for key in "456"]
    branch = [_answer(key, "🎱 Very doubtful.") for key in "123"]
    branch += [_answer(key, "🎲 2d8 → 10") for key in "456"]
    proof = _judged([*ball, *roll], base, branch, {"command:8ball": "answered"})
    assert [item.verdict for item in proof.items] == ["holds", "fails"]
    assert proof.items[1].note == "answers differently than on the base"
    unseen = _judged([*ball, *roll], base, branch)
    assert [item.verdict for item in unseen.items] == ["fails", "fails"]


def test_a_far_slower_answer_caps_the_proof_at_unproven() -> None:
    """Answered, but 40× slower than the command answers when it works: slow, and the proof unproven."""
    cases = [_case("1", "recorded", "!roll 2d6"), _case("2", "neighbour", "!roll 2d7", parent="1")]
    proof = _judged(
        cases,
        [_apology("1"), _answer("2", "🎲 6", ms=20)],
        [_answer("1", "🎲 7", ms=900), _answer("2", "🎲 5", ms=800)],
    )
    assert [item.verdict for item in proof.items] == ["slow", "slow"]
    assert proof.verdict == "unproven" and proof.reason.startswith("the failure is gone, but")
    feedback = proof.feedback()
    assert feedback is not None and "slow: 900 ms" in feedback and "no slower" in feedback


def test_a_fix_is_timed_against_the_replay_where_nothing_of_its_command_answered() -> None:
    """The only failing call fixed, nothing of its command answered on the base: the crash's time in
    this replay (433 ms on a busy machine) says how fast the call runs here, not the live bot's usual
    22 ms; a fix that answers 1.5 s later than that is slow still."""
    cases = [replace(_case("1", "recorded", "$tip 30 0"), normal_ms=22.0)]
    crash = _apology("1", ms=433.0)
    proof = _judged(cases, [crash], [_answer("1", "each pays 34", ms=279)])
    assert proof.verdict == "proven", proof.items
    slow = _judged(cases, [crash], [_answer("1", "each pays 34", ms=2500)])
    assert [item.verdict for item in slow.items] == ["slow"]


def test_a_first_call_is_timed_against_its_own_crash_when_that_was_slower() -> None:
    """The recorded call comes first on both sides and pays for what warms up (149 ms on the base on a
    busy machine, where its command's other calls answered in 13 ms): a fix answering it in 321 ms is not
    slow; one answering in 2.5 s is."""
    cases = [
        replace(_case("1", "recorded", "$tip 30 0"), normal_ms=13.0),
        _case("2", "worked", "$tip 30 2"),
    ]
    base = [_apology("1", ms=149.0), _answer("2", "each pays 17", ms=13.0)]
    proof = _judged(
        cases, base, [_answer("1", "each pays 34", ms=321.0), _answer("2", "each pays 17", ms=14)]
    )
    assert proof.verdict == "proven", proof.items
    slow = _judged(
        cases, base, [_answer("1", "each pays 34", ms=2500.0), _answer("2", "each pays 17", ms=14)]
    )
    assert slow.items[0].verdict == "slow"


def test_the_calls_slow_on_the_branch_come_with_the_time_past_which_the_judge_calls_them_slow() -> None:
    """What a branch timed again is held to (the prover stops timing it at the first call slow again): each
    slow call with the time past which it is slow — one millisecond past it slow for the judge too, one
    within it not; a call that is not slow is not named."""
    cases = [
        _case("1", "recorded", "!roll 2d6"),
        _case("2", "neighbour", "!roll 2d7", parent="1"),
        _case("3", "worked", "!roll 1d6"),
    ]
    base = [_apology("1"), _answer("2", "🎲 6", ms=20), _answer("3", "🎲 4", ms=30)]
    branch = [_answer("1", "🎲 7", ms=900), _answer("2", "🎲 5", ms=800), _answer("3", "🎲 2", ms=40)]
    files = {"command:roll": ["cogs/dice.py"]}
    plan = ReplayPlan(cases, ["cogs/dice.py"], False, FAILURE, files, {})
    as_dict = {r.key: r for r in base}
    limits = slow_calls(plan, as_dict, {r.key: r for r in branch}, timing=Timing(), source_of=SOURCE.get)
    assert set(limits) == {"1", "2"}
    for key, limit in limits.items():
        for took, slow in ((limit + 1, True), (limit - 1, False)):
            timed = [replace(r, duration_ms=took) if r.key == key else r for r in branch]
            judged = judge_replay(
                plan, as_dict, {r.key: r for r in timed}, timing=Timing(), source_of=SOURCE.get
            )
            verdicts = {item.label: item.verdict for item in judged}
            assert (verdicts[cases[int(key) - 1].label] == "slow") is slow, (key, took, verdicts)


def test_a_little_slower_is_not_slow() -> None:
    """Noise is not a slowdown: 20 ms → 60 ms is within the configured margin."""
    cases = [_case("1", "recorded", "!roll 2d6"), _case("2", "neighbour", "!roll 2d7", parent="1")]
    proof = _judged(
        cases,
        [_apology("1"), _answer("2", "🎲 6", ms=20)],
        [_answer("1", "🎲 7", ms=60), _answer("2", "🎲 5", ms=60)],
    )
    assert proof.verdict == "proven"


def test_a_refusal_where_nearby_inputs_get_results_caps_the_proof_and_one_answer_for_all_is_flagged() -> None:
    """The same refusal for every failing input, where neighbours that worked got results: each such
    item is refused (the proof at most unproven, saying why) and flagged for its one answer."""
    refusal = Raised("UserError", "cogs/dice.py", "roll", 9, "discord.ext.commands.core", "wrapped", False,
                     ("cogs/dice.py",))  # fmt: skip
    cases = [
        _case("1", "recorded", "!roll 2d6"),
        _case("2", "neighbour", "!roll 3d6", parent="1"),
        _case("3", "neighbour", "!roll 2d7", parent="1"),
        _case("4", "neighbour", "!roll 2d9", parent="1"),
    ]
    no = "Six-sided dice are not supported."
    proof = _judged(
        cases,
        [_apology("1"), _apology("2"), _answer("3", "🎲 2d7 → 5"), _answer("4", "🎲 2d9 → 11")],
        [_answer("1", no, raised=(refusal,)), _answer("2", no, raised=(refusal,)), _answer("3", "🎲 2d7 → 9"),
         _answer("4", "🎲 2d9 → 3")],
    )  # fmt: skip
    refused = [item for item in proof.items if item.verdict == "refused"]
    assert [item.label for item in refused] == ["!roll 2d6", "!roll 3d6"]
    assert all("answers with a refusal (UserError from `roll`) where nearby" in item.note for item in refused)
    assert all(any("the same answer" in flag for flag in item.flags) for item in refused)
    assert proof.verdict == "unproven" and "refusal" in proof.reason
    assert "⚠️ the same answer" in proof.table() and "⚠️ the same answer" in proof.chat()


def test_one_answer_for_every_failing_input_is_a_flag_not_a_verdict() -> None:
    """A fix that answers every failing input one way ("no games yet") is proven, with a flag to read."""
    cases = [
        _case("1", "recorded", "!roll 2d6"),
        _case("2", "neighbour", "!roll 3d6", parent="1"),
        _case("3", "neighbour", "!roll 2d7", parent="1"),
        _case("4", "neighbour", "!roll 2d9", parent="1"),
    ]
    proof = _judged(
        cases,
        [_apology("1"), _apology("2"), _answer("3", "🎲 2d7 → 5"), _answer("4", "🎲 2d9 → 11")],
        [_answer("1", "🎲 nothing"), _answer("2", "🎲 nothing"), _answer("3", "🎲 2d7 → 9"),
         _answer("4", "🎲 2d9 → 3")],
    )  # fmt: skip
    assert proof.verdict == "proven" and "⚠️ 2 flags to read" in proof.headline()


def test_an_error_caught_where_raised_and_turned_into_a_refusal_is_refused() -> None:
    """`except ValueError: raise UserError(...)` where the error is raised: the input still gets no
    result — refused, whatever the neighbours did."""
    caught = _raised(("cogs/dice.py", "scale_for"), ("cogs/dice.py", "scale_for"), line=3)
    refusal = Raised("UserError", "cogs/dice.py", "scale_for", 4, "discord.ext.commands.core", "wrapped",
                     False, ("cogs/dice.py",))  # fmt: skip
    proof = _judged(
        [_case("1", "recorded", "!roll 2d6")],
        [_apology("1")],
        [_answer("1", "Six sides are not allowed.", raised=(caught, refusal))],
    )
    (item,) = proof.items
    assert item.verdict == "refused" and proof.verdict == "unproven"
    assert item.note.endswith("in `scale_for` still happens; the change turns it into a refusal (UserError)")


def test_a_watch_turned_off_by_the_branch_is_not_a_fix() -> None:
    """The branch tried to remove the launcher's trace: its answers cannot be taken as fixed."""
    tampered = Watch(on=True, tampered="sys.settrace")
    branch = ReplayResult("1", True, "🎲 7", None, 5.0, (), tampered)
    proof = _judged([_case("1", "recorded", "!roll 2d6")], [_apology("1")], [branch])
    assert proof.verdict == "disproven" and "tried to turn off the replay's watch" in proof.items[0].note


def test_feedback_never_shows_the_inputs_the_agent_was_not_shown() -> None:
    """Held-out and neighbour calls are fed back by their command only; the agent cannot special-case them."""
    cases = [
        _case("1", "recorded", "!roll 2d6"),
        _case("2", "held-out", "!roll 5d6"),
        _case("3", "neighbour", "!roll 3d6", parent="1"),
    ]
    proof = _judged(cases, [_apology("1"), _apology("2"), _apology("3")], [_answer("1", "ok"), _apology("2"),
                                                                          _apology("3")])  # fmt: skip
    feedback = proof.feedback()
    assert feedback is not None and "5d6" not in feedback and "3d6" not in feedback
    assert "a call you were not shown, `!roll`" in feedback and "a nearby call, `!roll`" in feedback
    assert "held out 0/1 fixed" in proof.chat() and "neighbours 0/1 fixed" in proof.chat()


def test_a_bot_with_its_own_error_reply_fails_by_what_its_code_raised() -> None:
    """A bot whose own error handler answers "Oops! ZeroDivisionError" shows no mendbot apology: the
    recorded error leaving `scale_for` for the framework is the failure, on the base and on the branch."""
    crash = _raised(("cogs/dice.py", "scale_for"), ("discord.ext.commands.core", "wrapped"), repo=False)
    own = ReplayResult("1", True, "Oops! ZeroDivisionError", None, 5.0, (crash,), WATCHED)
    fixed = _judged([_case("1", "recorded", "!roll 2d6")], [own], [_answer("1", "🎲 7")])
    assert fixed.verdict == "proven" and fixed.items[0].verdict == "proves"
    still = _judged([_case("1", "recorded", "!roll 2d6")], [own], [own])
    assert still.verdict == "disproven"
    assert (
        still.items[0].note
        == "the ZeroDivisionError in `scale_for` still happens and reaches the bot's error handling"
    )


def test_a_bots_own_error_reply_on_the_base_reads_as_the_failure_it_is() -> None:
    """The base's cell of a bot that answers its failures itself ("Oops, something went wrong.") is the
    failure it is — ❌ with the error raised and what the bot's handler said — not "✅ answered", and the
    chat's proof line says so too."""
    crash = _raised(("cogs/dice.py", "scale_for"), ("discord.ext.commands.core", "wrapped"), repo=False)
    own = ReplayResult("1", True, "Oops, something went wrong.", None, 5.0, (crash,), WATCHED)
    proof = _judged([_case("1", "recorded", "!roll 2d6")], [own], [_answer("1", "🎲 7")])
    base = proof.items[0].base
    assert base is not None and base.ok is False
    assert (
        base.cell()
        == "❌ ZeroDivisionError in `scale_for`, its error reply “Oops, something went wrong.” (5 ms)"
    )
    assert (
        "✅ answered “Oops" not in proof.chat() and "base ❌ ZeroDivisionError in `scale_for`" in proof.chat()
    )
    assert proof.items[0].branch is not None and proof.items[0].branch.cell().startswith("✅ answered “🎲 7”")
