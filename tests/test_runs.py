"""Runs: the persisted state machine, its events and costs, and what a restart does to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import aiosqlite
import pytest

from mendbot.db import open_database
from mendbot.improve.runs import (
    ROLLBACK_FROM,
    STATE_ICONS,
    TERMINAL_STATES,
    TRANSITIONS,
    InvalidTransition,
    RunNotFound,
    RunService,
    RunState,
    slugify,
    state_label,
)
from mendbot.kernel.errors import UserError

ALICE = 1001


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_database(tmp_path / "runs.db")
    yield connection
    await connection.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runs(db: aiosqlite.Connection, clock: FakeClock) -> RunService:
    return RunService(db, clock)


FIX_PATH: list[RunState] = [
    "observing",
    "investigating",
    "planning",
    "editing",
    "verifying",
    "editing",
    "verifying",
    "proposing",
    "awaiting_approval",
    "merging",
    "deployed",
    "watching",
    "resolved",
]


async def test_create_persists_a_queued_run_with_a_created_event(runs: RunService) -> None:
    """A new run is queued, slugged from its description, and logged as created by the requester."""
    run = await runs.create("fix", ALICE, 55, 7, "The /roll command is broken — again!", security=True)
    assert (run.state, run.slug, run.security, run.incident_id) == (
        "queued",
        "the-roll-command-is-broken-again",
        True,
        7,
    )
    [event] = await runs.events(run.id)
    assert (event.event, event.actor, event.state) == ("created", f"user:{ALICE}", "queued")


def test_slug_is_short_ascii_words() -> None:
    """Slugs keep lowercase ASCII words, cut at a word boundary within 40 characters."""
    slug = slugify("Café crashes when déjà-vu happens during a very long and winding description")
    assert slug == "cafe-crashes-when-deja-vu-happens-during"
    assert len(slug) <= 40
    assert slugify("💥💥") == "run"


async def test_legal_path_through_the_whole_machine(runs: RunService, clock: FakeClock) -> None:
    """A fix run walks every stage to resolved, including a retry after failed checks."""
    run = await runs.create("fix", ALICE, None, None, "fix it")
    for state in FIX_PATH:
        clock.advance(1)
        run = await runs.transition(run.id, state, actor="pipeline")
    assert run.state == "resolved" and run.terminal
    transitions = [e.state for e in await runs.events(run.id) if e.event == "transition"]
    assert transitions == FIX_PATH


async def test_investigate_run_ends_with_a_report_and_never_plans(runs: RunService) -> None:
    """An investigate run may end reported after investigating, but may not move on to planning."""
    run = await runs.create("investigate", ALICE, None, None, "why")
    for state in ("observing", "investigating"):
        run = await runs.transition(run.id, state, actor="pipeline")
    with pytest.raises(InvalidTransition, match="never edit"):
        await runs.transition(run.id, "planning", actor="pipeline")
    run = await runs.transition(run.id, "reported", actor="pipeline")
    assert run.state == "reported"


async def test_illegal_transition_is_refused_and_changes_nothing(runs: RunService) -> None:
    """Skipping a stage or leaving a terminal state raises InvalidTransition and writes nothing."""
    run = await runs.create("fix", ALICE, None, None, "fix it")
    with pytest.raises(InvalidTransition, match="queued → verifying"):
        await runs.transition(run.id, "verifying", actor="pipeline")
    await runs.transition(run.id, "cancelled", actor=f"user:{ALICE}")
    with pytest.raises(InvalidTransition):
        await runs.transition(run.id, "observing", actor="pipeline")
    assert (await runs.get(run.id)).state == "cancelled"
    assert [e.state for e in await runs.events(run.id)] == ["queued", "cancelled"]
    assert not issubclass(InvalidTransition, UserError)  # a bug in the caller, not a user mistake


def test_transition_table_shape() -> None:
    """Terminal states lead nowhere but, for a merged run, to its rollback; every active state can fail
    or be cancelled."""
    for state, targets in TRANSITIONS.items():
        if state in TERMINAL_STATES:
            assert targets == ({"rolled_back"} if state in ROLLBACK_FROM else set())
        else:
            assert {"failed", "cancelled"} <= targets
    assert "interrupted" not in TRANSITIONS["awaiting_approval"]
    assert {"rejected", "cancelled"} <= TRANSITIONS["awaiting_approval"]
    assert "regressed" in TRANSITIONS["watching"]


async def test_cost_accumulates_across_transitions_and_events(runs: RunService) -> None:
    """Costs given with transitions and events add up on the run and are kept per event."""
    run = await runs.create("fix", ALICE, None, None, "fix it")
    await runs.transition(run.id, "observing", actor="pipeline")
    await runs.transition(run.id, "investigating", actor="pipeline")
    await runs.transition(run.id, "planning", actor="agent", cost_usd=0.25)
    await runs.event(run.id, "check_failed", actor="pipeline", detail={"check": "pytest"}, cost_usd=0.5)
    run = await runs.transition(run.id, "editing", actor="agent", cost_usd=0.125)
    assert run.cost_usd == pytest.approx(0.875)
    assert sum(e.cost_usd for e in await runs.events(run.id)) == pytest.approx(0.875)


async def test_fields_are_updated_and_events_record_actor_and_detail(
    runs: RunService, clock: FakeClock
) -> None:
    """Transition fields are stored; each event keeps its time, actor, state and JSON detail."""
    run = await runs.create("fix", ALICE, None, None, "fix it")
    for state in ("observing", "investigating", "planning"):
        await runs.transition(run.id, state, actor="pipeline")
    clock.advance(30)
    run = await runs.transition(
        run.id,
        "editing",
        actor="pipeline",
        branch="mendbot/1-fix-it",
        worktree="/w/1",
        base_sha="abc",
        attempts=1,
    )
    assert (run.branch, run.worktree, run.base_sha, run.attempts) == ("mendbot/1-fix-it", "/w/1", "abc", 1)
    await runs.event(run.id, "guard_denied", actor="agent", detail={"tool": "Bash", "command": "git push"})
    last = (await runs.events(run.id))[-1]
    assert (last.event, last.actor, last.state) == ("guard_denied", "agent", "editing")
    assert last.detail == {"tool": "Bash", "command": "git push"}
    assert last.ts == clock.now.timestamp()
    with pytest.raises(TypeError, match="state"):
        await runs.transition(run.id, "verifying", actor="pipeline", state="resolved")


async def test_fail_records_stage_and_reason(runs: RunService) -> None:
    """fail() ends the run as failed with the stage and reason on the run and in the event."""
    run = await runs.create("fix", ALICE, None, None, "fix it")
    await runs.transition(run.id, "observing", actor="pipeline")
    run = await runs.fail(run.id, "budget", "spent $2.00 of $2.00", actor="pipeline")
    assert (run.state, run.failure_stage, run.failure_reason) == ("failed", "budget", "spent $2.00 of $2.00")
    assert (await runs.events(run.id))[-1].detail == {"stage": "budget", "reason": "spent $2.00 of $2.00"}


async def test_update_sets_bookkeeping_without_an_event(runs: RunService) -> None:
    """update() stores e.g. the status message id and logs no event."""
    run = await runs.create("fix", ALICE, None, None, "fix it")
    run = await runs.update(run.id, status_message_id=99)
    assert run.status_message_id == 99
    assert len(await runs.events(run.id)) == 1


async def test_unknown_run_is_a_user_error(runs: RunService) -> None:
    """Asking for a run that does not exist raises RunNotFound naming it; find() returns None."""
    with pytest.raises(RunNotFound, match="#42"):
        await runs.get(42)
    assert await runs.find(42) is None


async def test_list_recent_and_active(runs: RunService) -> None:
    """list_recent is newest first; active leaves out finished and interrupted runs."""
    first = await runs.create("fix", ALICE, None, None, "one")
    second = await runs.create("fix", ALICE, None, None, "two")
    third = await runs.create("fix", ALICE, None, None, "three")
    await runs.transition(first.id, "cancelled", actor="system")
    await runs.transition(third.id, "interrupted", actor="system")
    assert [r.id for r in await runs.list_recent(2)] == [third.id, second.id]
    assert [r.id for r in await runs.active()] == [second.id]


async def _walk(runs: RunService, description: str, states: list[RunState]) -> int:
    run = await runs.create("fix", ALICE, None, None, description)
    for state in states:
        await runs.transition(run.id, state, actor="pipeline")
    return run.id


async def test_restart_interrupts_mid_run_runs_only(tmp_path: Path, clock: FakeClock) -> None:
    """After reopening, mid-run runs become interrupted; approvable and finished runs are untouched."""
    path = tmp_path / "restart.db"
    db = await open_database(path)
    runs = RunService(db, clock)
    editing = await _walk(runs, "editing", FIX_PATH[:4])
    queued = await _walk(runs, "queued", [])
    approvable = await _walk(runs, "approvable", FIX_PATH[:9])
    done = await _walk(runs, "done", ["observing", "investigating", "reported"])
    await db.close()  # the process dies

    db = await open_database(path)
    runs = RunService(db, clock)
    marked = await runs.mark_interrupted_on_start()
    assert sorted(r.id for r in marked) == [editing, queued]
    assert {r.interrupted_from for r in marked} == {"editing", "queued"}
    assert (await runs.get(approvable)).state == "awaiting_approval"
    assert (await runs.get(done)).state == "reported"
    last = (await runs.events(editing))[-1]
    assert (last.actor, last.state, last.detail) == ("system", "interrupted", {"was": "editing"})
    assert await runs.mark_interrupted_on_start() == []
    await db.close()


async def test_interrupted_run_resumes_only_where_it_stopped(runs: RunService) -> None:
    """An interrupted run resumes where it stopped, starts over from queued, or ends; nothing else."""
    run_id = await _walk(runs, "resume me", FIX_PATH[:4])
    await runs.mark_interrupted_on_start()
    with pytest.raises(InvalidTransition, match="interrupted while editing"):
        await runs.transition(run_id, "verifying", actor=f"user:{ALICE}")
    run = await runs.transition(run_id, "editing", actor=f"user:{ALICE}", detail={"resume": True})
    assert (run.state, run.interrupted_from) == ("editing", None)
    other = await _walk(runs, "cancel me", ["observing"])
    await runs.mark_interrupted_on_start()
    assert (await runs.transition(other, "cancelled", actor=f"user:{ALICE}")).state == "cancelled"
    again = await _walk(runs, "start over", FIX_PATH[:5])
    await runs.mark_interrupted_on_start()
    assert (await runs.transition(again, "queued", actor=f"user:{ALICE}")).state == "queued"


def test_every_state_has_an_icon_of_its_own() -> None:
    """Each run state has an icon, and no two share one: /runs showed ⏳ for resolved, deployed and
    watching alike."""
    assert set(STATE_ICONS) == set(get_args(RunState))
    assert len(set(STATE_ICONS.values())) == len(STATE_ICONS)
    assert state_label("rolled_back") == "⏪ rolled back" and state_label("resolved") == "✅ resolved"


async def test_a_rolled_back_run_has_its_own_state(runs: RunService) -> None:
    """A deployed, watching, resolved or regressed run that is rolled back ends `rolled_back` (it kept
    reading "resolved"); one rolled back already only gets the event; nothing else can be."""
    for before in ("deployed", "watching", "resolved", "regressed"):
        assert "rolled_back" in TRANSITIONS[before]
    assert [state for state, nexts in TRANSITIONS.items() if "rolled_back" in nexts] == sorted(ROLLBACK_FROM)
    run = await runs.create("fix", 1, None, None, "fix the roll")
    for state in ("observing", "investigating", "planning", "editing", "verifying", "proposing",
                  "awaiting_approval", "merging", "deployed", "watching", "resolved"):  # fmt: skip
        await runs.transition(run.id, state, actor="pipeline")
    undone = await runs.rolled_back(run.id, actor="user:7", detail={"revert_sha": "abc"})
    again = await runs.rolled_back(run.id, actor="user:7", detail={"revert_sha": "def"})
    events = await runs.events(run.id)
    assert undone.state == again.state == "rolled_back" and "rolled_back" in TERMINAL_STATES
    assert [e.event for e in events[-2:]] == ["transition", "rolled_back"]
    assert events[-2].detail == {"revert_sha": "abc"} and events[-2].actor == "user:7"
