"""How the proof judges each replayed call: from what the base and the branch answered over the wire, what
their code raised (the launcher's watch), and how long each took — never from what the code under test
says about itself.

A call the plan sent (`mendbot.improve.proof.replay_plan`) becomes one proof item by its role and by the
base's outcome:

- **a recorded failing call** (shown to the agent or held out) proves the fix when it failed on the base
  and is answered on the branch *without the recorded error happening*: if the watch saw the recorded
  exception type raised again in the recorded function and caught — by a caller, or there by a broad
  `except` — the call is not fixed ("the ZeroDivisionError in `scale_for` still happens; the change
  catches it in `roll`"). Caught where it is raised by a handler naming it (`except KeyError:` around a
  lookup) is a fix of that function, and counts;
- **a neighbour** that failed the same way on the base (same exception type, raised in the same function)
  is a failing call like the recorded ones; one that answered on the base is a call that worked;
- **a call that worked** (recorded, or a neighbour) must work alike on the branch: an error, no answer,
  or another answer breaks it. How alike (`mendbot.improve.proof.answers`) is read off evidence the change
  cannot touch, and the loosest of it wins: the base's three answers to one call (the probe) — all equal,
  compared exactly; differing only in numbers, by shape; otherwise only by answering (random words) — and
  the live bot's recorded replies to one member asking the same thing (the plan's `varies`), which show
  a random command for what it is when its probe happened to answer alike three times. A kind with
  neither is compared by shape. Ids, mentions and times never count. For a complaint with no exception
  (a wrong or slow answer) the complained command's answers are compared only by answering: fixing a
  wrong answer changes it.

Every item that answered on both sides is also timed: an answer more than `slowdown_factor` times slower
than its usual time (the base's answer to it, or for a failing call the base's answers to the command's
calls that worked, and the command's recorded median), and at least `slowdown_min_ms` slower, is
**slow**, which caps the proof at unproven. A failing call that is now answered with a **refusal** — an
exception the framework answers, such as a `UserError` — is **refused**, which caps it too, when the
recorded error is still raised and turned into that refusal, or when the call's neighbours that worked on
the base got results: the input still gets no result. Whether refusing it is right is the reviewer's call
("ship it unproven"). One **flag** is shown for the reviewer and decides nothing: the same answer for
every failing input where those neighbours got their own (a fix often does answer a whole class of failing
input one way: "no games yet").
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import msgspec

from mendbot.improve.proof.answers import Comparison, alike, level_of, loosest, masked
from mendbot.improve.proof.replay import Raised, ReplayResult
from mendbot.improve.proof.replay_plan import Failure, ReplayCase, ReplayPlan
from mendbot.improve.proof.verdict import ItemVerdict, ProofItem, Side

__all__ = ["Timing", "handler_breadth", "judge_replay", "slow_calls"]

_LATENCY_FACTOR = 0.5  # a latency fix must at least halve the replayed call's time
# How much slower than its crash a fixed call may answer when nothing else says how fast the command is.
_CRASH_MARGIN_MS = 1000.0


@dataclass(frozen=True)
class Timing:
    """When an answer counts as slow: `factor` times the reference and `min_ms` more than it."""

    factor: float = 5.0
    min_ms: float = 250.0
    latency_min_ms: float = 100.0  # a latency complaint's call is slow on the base from this


def handler_breadth(source: str, line: int, error_type: str) -> Literal["broad", "specific", "none"]:
    """How the code at `line` of `source` catches `error_type` raised there: by a handler that names it
    (or a base class of it but `Exception`), by a broad one (bare, `Exception`, `BaseException`, or
    `contextlib.suppress` of one of those), or by none it can be seen to have (innermost first)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return "none"
    bases = _bases(error_type)
    enclosing: list[tuple[int, list[ast.expr | None]]] = []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list) or not body or not isinstance(body[0], ast.stmt):
            continue
        if not body[0].lineno <= line <= (body[-1].end_lineno or body[-1].lineno):
            continue
        if isinstance(node, ast.Try | ast.TryStar):
            enclosing.append((body[0].lineno, [handler.type for handler in node.handlers]))
        elif isinstance(node, ast.With | ast.AsyncWith):
            caught = [
                arg
                for item in node.items
                if isinstance(call := item.context_expr, ast.Call) and _name(call.func) == "suppress"
                for arg in call.args
            ]
            if caught:
                enclosing.append((body[0].lineno, list(caught)))
    for _, handlers in sorted(enclosing, key=lambda found: -found[0]):
        for expression in handlers:
            names = _names(expression)
            if names is None or names & {"Exception", "BaseException"}:
                return "broad"
            if names & bases:
                return "specific"
    return "none"


def _bases(error_type: str) -> set[str]:
    known = getattr(builtins, error_type, None)
    if isinstance(known, type) and issubclass(known, BaseException):
        return {cls.__name__ for cls in known.__mro__} - {"Exception", "BaseException", "object"}
    return {error_type}


def _name(expression: ast.expr) -> str:
    if isinstance(expression, ast.Name):
        return expression.id
    if isinstance(expression, ast.Attribute):
        return expression.attr
    return ""


def _names(expression: ast.expr | None) -> set[str] | None:
    """The exception names a handler's type names; None for a bare `except:`."""
    if expression is None:
        return None
    if isinstance(expression, ast.Tuple):
        return {_name(element) for element in expression.elts}
    return {_name(expression)}


def _side(result: ReplayResult | None) -> Side:
    if result is None:
        return Side(None, "not run")
    return Side(result.ok, result.shown(), result.duration_ms / 1000 if result.answered else None)


def _failed_side(result: ReplayResult, raised: Raised) -> Side:
    """The base of a bot that answers its failures itself: the error its code raised is the failure, and
    what its error handler said ("Oops, something went wrong.") is that failure's reply, not an answer."""
    said = result.shown().removeprefix("answered ")
    text = f"{raised.error_type} in `{raised.function}`, its error reply {said}"
    return Side(False, text, result.duration_ms / 1000)


def _no_answer(after: ReplayResult) -> str:
    """ "no answer on the branch", with why when the observer knows (a button disabled, a listener that
    did not run)."""
    why = after.reply.removeprefix("not answered: ") if after.reply.startswith("not answered: ") else ""
    return f"no answer on the branch ({why})" if why else "no answer on the branch"


def _recorded_side(case: ReplayCase) -> str:
    return f"recorded: {case.error_type}" if case.error_type else "recorded"


class _Judge:
    def __init__(
        self,
        plan: ReplayPlan,
        base: dict[str, ReplayResult],
        branch: dict[str, ReplayResult],
        timing: Timing,
        source_of: Callable[[str], str | None],
    ) -> None:
        self.plan = plan
        self.base = base
        self.branch = branch
        self.timing = timing
        self.source_of = source_of
        self.cases = {case.key: case for case in plan.cases}
        self.levels = self._levels()

    # -- reading the base ------------------------------------------------------------------

    def _levels(self) -> dict[str, Comparison]:
        """How alike each kind's answers must be: the loosest of what the live bot's recorded replies
        showed (the plan's `varies`) and what each of the kind's probes showed on the base — the call and
        every repeat of it answered alike (exactly, or in shape), or it is compared by answering. One
        probe that happened to answer alike never tightens what other evidence showed."""
        answers: dict[str, list[ReplayResult | None]] = {}
        for case in self.plan.replayable:
            if case.role != "probe" or case.parent is None:
                continue
            answers.setdefault(case.parent, [self.base.get(case.parent)]).append(self.base.get(case.key))
        levels: dict[str, Comparison] = dict(self.plan.varies)
        for parent, results in answers.items():
            replies = [result.reply for result in results if result is not None and result.ok]
            if len(replies) < len(results):
                continue  # one did not answer: nothing to read off
            kind = self.cases[parent].kind
            levels[kind] = loosest(levels.get(kind), level_of(replies))
        return levels

    def level(self, case: ReplayCase) -> Comparison:
        if self.plan.latency and case.kind == self._target_kind():
            return "answered"  # a wrong or slow answer's fix changes the complained command's answers
        return self.levels.get(case.kind, "shape")

    def _target_kind(self) -> str | None:
        failing = [c for c in self.plan.cases if c.role in ("recorded", "held-out")]
        return failing[0].kind if failing else None

    def failed_as_recorded(self, result: ReplayResult, case: ReplayCase) -> bool:
        """The base shows the fault for this call. A recorded failing call: any failure (an error shown,
        or no answer). A neighbour: the recorded error, raised in the recorded function when the watch
        saw it — failing the same way, not some other way. Either way, the recorded error raised in the
        recorded function and left to the framework is the fault, whatever the bot's own error handler
        answered (a bot with a handler of its own says something else than mendbot's apology)."""
        failure = self.plan.failure
        if failure is not None and result.watch.trusted and self._escaped_at(result, failure):
            return True
        if case.role in ("recorded", "held-out"):
            return not result.ok
        if failure is None or result.error_type != failure.error_type:
            return False
        if result.watch.trusted and failure.function:
            return self._raised_at(result, failure) is not None
        return True

    def _escaped_at(self, result: ReplayResult, failure: Failure) -> bool:
        raised = self._raised_at(result, failure)
        return raised is not None and not raised.caught_in_repo

    @staticmethod
    def _raised_at(result: ReplayResult, failure: Failure) -> Raised | None:
        for raised in result.raised:
            if raised.error_type == failure.error_type and (raised.file, raised.function) == (
                failure.file,
                failure.function,
            ):
                return raised
        return None

    # -- the items --------------------------------------------------------------------------

    def items(self) -> list[ProofItem]:
        judged: list[tuple[ReplayCase, ProofItem]] = []
        for case in self.plan.replayable:
            if case.role == "probe":
                continue
            before, after = self.base.get(case.key), self.branch.get(case.key)
            if before is None or after is None:
                note = "the replay did not run it"
                judged.append(
                    (case, ProofItem("replay", case.label, _side(before), _side(after), "neutral", note))
                )
                continue
            item = self._item(case, before, after)
            if item is not None:
                judged.append((case, item))
        judged = [(case, self._timed(case, item)) for case, item in judged]
        return self._flagged(judged)

    def _item(self, case: ReplayCase, before: ReplayResult, after: ReplayResult) -> ProofItem | None:
        stopped = self._loop_stopped(case, before, after)
        if stopped is not None:
            return stopped
        if case.role in ("recorded", "held-out"):
            if self.plan.latency:
                return self._latency(case, before, after)
            if not self.failed_as_recorded(before, case):
                note = "does not fail on the base either"
                return ProofItem(
                    "replay", case.label, _side(before), _side(after), "neutral", note, case.role
                )
            return self._fixed(case, before, after, case.role)
        if case.role == "neighbour" and self.failed_as_recorded(before, case):
            return self._fixed(case, before, after, "neighbour")
        if before.ok:
            return self._holds(case, before, after)
        return None  # a neighbour that failed otherwise on the base: another fault, not this one's

    @staticmethod
    def _loop_stopped(case: ReplayCase, before: ReplayResult, after: ReplayResult) -> ProofItem | None:
        """A task whose loop the base starts and the branch never does: an iteration run by hand proves
        nothing of a loop that no longer runs."""
        name = case.kind.split(":", 1)[1]
        if case.family != "task" or before.loops is None or after.loops is None:
            return None
        if name not in before.loops or name in after.loops:
            return None
        role = case.role if case.role in ("recorded", "held-out", "neighbour") else "pass"
        note = f"the task loop `{name}` is started on the base and never on the branch"
        return ProofItem("replay", case.label, _side(before), _side(after), "fails", note, role)

    def _fixed(self, case: ReplayCase, before: ReplayResult, after: ReplayResult, role: str) -> ProofItem:
        base_side, branch_side = _side(before), _side(after)
        failure = self.plan.failure
        escaped = self._raised_at(before, failure) if failure is not None and before.ok else None
        if escaped is not None and not escaped.caught_in_repo:  # the bot's own error reply, not an answer
            base_side = _failed_side(before, escaped)

        def item(verdict: ItemVerdict, note: str) -> ProofItem:
            return ProofItem("replay", case.label, base_side, branch_side, verdict, note, role)

        if not after.answered:
            return item("fails", _no_answer(after))
        if after.error_type is not None:
            recorded = self.plan.failure.error_type if self.plan.failure else case.error_type
            still = (
                "still fails as recorded" if role != "neighbour" else "still fails like the recorded calls"
            )
            what = still if after.error_type == recorded else "fails with another error"
            return item("fails", f"{what}: {after.error_type}")
        if problem := after.watch.problem():
            if before.watch.trusted:
                return item("fails", problem)
        elif (caught := self._still_happens(after)) is not None:
            return item("fails", caught)
        elif (converted := self._converted(case, after)) is not None:
            return item("refused", converted)
        recorded = self.plan.failure.error_type if self.plan.failure else case.error_type
        same = recorded is not None and before.error_type == recorded
        where = "as recorded" if same and role != "neighbour" else "the same way" if same else ""
        return item("proves", f"fails on the base {where}".strip() + ", answered on the branch")

    def _still_happens(self, after: ReplayResult) -> str | None:
        """The recorded error raised again on the branch and caught: by whom, or None."""
        failure = self.plan.failure
        if failure is None or not failure.function:
            return None
        raised = self._raised_at(after, failure)
        if raised is None:
            return None
        happens = f"the {failure.error_type} in `{failure.function}` still happens"
        if not raised.caught_where_raised:
            if not raised.caught_in_repo:
                return f"{happens} and reaches the bot's error handling"
            return f"{happens}; the change catches it in `{raised.caught_function}`"
        source = self.source_of(raised.file)
        breadth = handler_breadth(source, raised.line, raised.error_type) if source is not None else "none"
        if breadth == "specific":
            return None  # handled where it is raised, by a handler naming it: that function's fix
        return f"{happens}; the change catches it with a broad `except` there"

    def _converted(self, case: ReplayCase, after: ReplayResult) -> str | None:
        """The recorded error raised again, caught where it is raised and turned into a refusal the
        framework answers (a `UserError`): the input still gets no result, only a politer answer."""
        failure = self.plan.failure
        raised = self._raised_at(after, failure) if failure is not None and failure.function else None
        if raised is None or not raised.caught_where_raised:
            return None
        refusal = after.escaped(self.plan.handler_files.get(case.kind, []))
        if refusal is None or raised.file not in refusal.frames:
            return None
        return (
            f"the {raised.error_type} in `{raised.function}` still happens; the change turns it into a"
            f" refusal ({refusal.error_type})"
        )

    def _holds(self, case: ReplayCase, before: ReplayResult, after: ReplayResult) -> ProofItem:
        base_side, branch_side = _side(before), _side(after)

        def item(verdict: ItemVerdict, note: str) -> ProofItem:
            return ProofItem("replay", case.label, base_side, branch_side, verdict, note, "pass")

        if not after.answered:
            return item("fails", f"worked on the base; {_no_answer(after)}")
        if after.error_type is not None:
            return item("fails", f"worked on the base; error on the branch: {after.error_type}")
        how = self.level(case)
        if not alike(before.reply, after.reply, how):
            shown = "answers differently" if how == "exact" else "answers in another shape"
            return item("fails", f"{shown} than on the base")
        return item("holds", "answers as on the base")

    def _latency(self, case: ReplayCase, before: ReplayResult, after: ReplayResult) -> ProofItem:
        base_side, branch_side = _side(before), _side(after)

        def item(verdict: ItemVerdict, note: str) -> ProofItem:
            return ProofItem("replay", case.label, base_side, branch_side, verdict, note, case.role)

        if not after.ok:
            what = (
                "no answer on the branch"
                if not after.answered
                else f"error on the branch: {after.error_type}"
            )
            return item("fails", what)
        if not before.answered or before.duration_ms < self.timing.latency_min_ms:
            return item("neutral", "not slow on the base either")
        if after.duration_ms <= before.duration_ms * _LATENCY_FACTOR:
            return item(
                "proves", f"first answer sooner: {before.duration_ms:.0f} ms → {after.duration_ms:.0f} ms"
            )
        still = (
            f"still slow: {after.duration_ms:.0f} ms on the branch, {before.duration_ms:.0f} ms on the base"
        )
        return item("fails", still)

    def _timed(self, case: ReplayCase, item: ProofItem) -> ProofItem:
        """`item`, slow where the branch answered later than `_slow_from` allows."""
        limit = self._slow_from(case, item)
        after = self.branch.get(case.key)
        if limit is None or after is None:
            return item
        reference, slow_from = limit
        if after.duration_ms > slow_from:
            note = (
                f"slow: {after.duration_ms:.0f} ms on the branch, where it usually answers in"
                f" {reference:.0f} ms"
            )
            return msgspec.structs.replace(item, verdict="slow", note=note)
        return item

    def _slow_from(self, case: ReplayCase, item: ProofItem) -> tuple[float, float] | None:
        """The call's usual time, and the time past which its branch answer is slow: `factor` times the
        usual time and `min_ms` more than it (None: an item not judged by its time).

        An answer far slower than the command's usual time is slow. The usual time is the base's
        answer to the same call for a call that worked, and for a failing one (whose base answer was the
        crash) the base's answers to the command's calls that worked, or the crash's own time when it was
        longer (a first call pays for what warms up, on both sides). Where none of them answered in the
        replay, the recorded usual time was taken on the live bot, maybe on a quieter machine: the crash's
        own time in this replay says how fast the call runs here, with a wider margin."""
        before, after = self.base.get(case.key), self.branch.get(case.key)
        if item.verdict in ("fails", "neutral") or before is None or after is None or not after.answered:
            return None
        floor = self.timing.min_ms
        if item.verdict == "holds":
            reference = max(before.duration_ms, case.normal_ms or 0.0)
        else:
            worked = [
                self.base[c.key].duration_ms
                for c in self.plan.replayable
                if c.kind == case.kind and c.key in self.base and self.base[c.key].ok and not c.failing
            ]
            if worked:
                known = [*worked, *([case.normal_ms] if case.normal_ms else [])]
                # This call's own crash on the base, in this replay, came at the same point of the bot's
                # life (its first calls pay for what warms up): never a reference lower than it.
                reference = max(sorted(known)[len(known) // 2], case.normal_ms or 0.0, before.duration_ms)
            else:  # the crash's own time: a fix may do more work than crashing did, so a wider margin
                reference = max(before.duration_ms, case.normal_ms or 0.0)
                floor = max(floor, _CRASH_MARGIN_MS)
        return reference, max(self.timing.factor * reference, reference + floor)

    def slow_limits(self) -> dict[str, float]:
        """Each call whose branch answer is slow, by key, with the time past which an answer to it is."""
        found: dict[str, float] = {}
        for case in self.plan.replayable:
            before, after = self.base.get(case.key), self.branch.get(case.key)
            if case.role == "probe" or before is None or after is None:
                continue
            item = self._item(case, before, after)
            limit = self._slow_from(case, item) if item is not None else None
            if limit is not None and after.duration_ms > limit[1]:
                found[case.key] = limit[1]
        return found

    # -- flags --------------------------------------------------------------------------------

    def _flagged(self, judged: list[tuple[ReplayCase, ProofItem]]) -> list[ProofItem]:
        """The fixed failing calls of each command answered with a refusal where their neighbours that
        worked got results (refused), or with one answer for all where those got their own (a flag)."""
        flags: dict[str, list[str]] = {}
        refused: dict[str, str] = {}
        fixed = [
            (case, item)
            for case, item in judged
            if item.verdict == "proves" and item.role in ("recorded", "held-out", "neighbour")
        ]
        for kind in {case.kind for case, _ in fixed}:
            mine = [case for case, _ in fixed if case.kind == kind]
            worked = self._worked_answers(kind)
            answers = {masked(self.branch[case.key].reply) for case in mine}
            if len(mine) >= 2 and len(answers) == 1 and len(set(worked)) >= 2:
                (answer,) = answers
                for case in mine:
                    flags.setdefault(case.key, []).append(
                        f"the same answer “{answer[:60]}” for every failing input, where other inputs get"
                        " their own"
                    )
            if not worked:
                continue
            files = self.plan.handler_files.get(kind, [])
            for case in mine:
                escaped = self.branch[case.key].escaped(files)
                if escaped is not None:
                    refused[case.key] = (
                        f"answers with a refusal ({escaped.error_type} from `{escaped.function}`) where"
                        " nearby inputs get results"
                    )
        out = []
        for case, item in judged:
            judged_item = (
                msgspec.structs.replace(item, verdict="refused", note=refused[case.key])
                if case.key in refused
                else item
            )
            flagged = (*judged_item.flags, *flags.get(case.key, ()))
            out.append(msgspec.structs.replace(judged_item, flags=flagged))
        return out

    def _worked_answers(self, kind: str) -> list[str]:
        """The base's answers to the neighbours of this kind's failing calls that worked there, without
        the framework answering an error: what nearby inputs get when the code works."""
        failing = {case.key for case in self.plan.replayable if case.failing and case.kind == kind}
        found = []
        for case in self.plan.replayable:
            result = self.base.get(case.key)
            if case.role != "neighbour" or case.parent not in failing or result is None or not result.ok:
                continue
            if result.escaped(self.plan.handler_files.get(kind, [])) is None:
                found.append(masked(result.reply))
        return found


def judge_replay(
    plan: ReplayPlan,
    base: dict[str, ReplayResult],
    branch: dict[str, ReplayResult],
    *,
    timing: Timing,
    source_of: Callable[[str], str | None],
) -> list[ProofItem]:
    """The proof items of a replay of `plan` on the base and on the branch (module docstring);
    `source_of(path)` reads a file of the branch's committed tree (None: not there)."""
    return _Judge(plan, base, branch, timing, source_of).items()


def slow_calls(
    plan: ReplayPlan,
    base: dict[str, ReplayResult],
    branch: dict[str, ReplayResult],
    *,
    timing: Timing,
    source_of: Callable[[str], str | None],
) -> dict[str, float]:
    """The calls whose answer on the branch is slow (`judge_replay`'s "slow" items), by case key, each with
    the time past which an answer to it is slow: timed again, a call answered later than that is slow
    still, whatever the calls after it take."""
    return _Judge(plan, base, branch, timing, source_of).slow_limits()
