"""Several processes on one PostgreSQL database: one leader does the once-only work for them all."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mendbot.db import actions as action_queries
from mendbot.db import cluster as cluster_queries
from mendbot.db import core
from mendbot.db import incidents as incident_queries
from mendbot.db import runs as run_queries
from mendbot.db.records import ActionRecord
from mendbot.db.runs import get_setting, set_setting
from mendbot.observe.incident import Incident
from mendbot.runtime.services import Services, build_services
from mendbot.scale.cluster import DEPLOYED_KEY, TAIL_KEY, ActionTail
from mendbot.scale.leader import PostgresLeader, SoleLeader, leadership_for, lock_key, shares_database
from tests.harness.discord import make_settings

pytestmark = pytest.mark.engines

FAST = {"retry_s": 0.1, "check_s": 0.3, "lease_s": 1.0}
# How long a condition may take before the test fails: a ceiling, not a settle time (it is reached only
# when the condition never comes); a loaded machine stretches a leadership's hand-over and a reload.
WITHIN_S = 60.0


class CountingAnnouncer:
    """Announcements made by one process, as (incident id, kind)."""

    def __init__(self) -> None:
        self.announced: list[tuple[int | None, str]] = []

    async def announce(self, incident: Incident) -> tuple[int, int] | None:
        self.announced.append((incident.id, incident.kind))
        return 1, 1000 + len(self.announced)

    async def update(self, incident: Incident) -> tuple[int, int] | None:
        return None


@contextlib.asynccontextmanager
async def _process(
    tmp_path: Path, url: str, name: str, *, timing: dict[str, float] = FAST, **overrides: Any
) -> AsyncIterator[Services]:
    """One bot process's services (no Discord) on the shared database, running shard a=0, b=1, …
    of four, with a quick leadership (`timing`: the leadership's, the same for every process)."""
    shards = {"shard_count": 4, "shard_ids": [ord(name) - ord("a")]}
    settings = make_settings(tmp_path / name / "data", database={"url": url}, discord=shards, **overrides)
    leadership = PostgresLeader(url, lock_key("mendbot"), application_name=name, **timing)
    services = await build_services(settings, watch_prompts=False, leadership=leadership)
    services.cluster.poll_s = 0.1
    services.incidents.announcer = CountingAnnouncer()
    try:
        yield services
    finally:
        await services.aclose()


def _announced(*processes: Services) -> list[tuple[int | None, str]]:
    found: list[tuple[int | None, str]] = []
    for services in processes:
        announcer = services.incidents.announcer
        assert isinstance(announcer, CountingAnnouncer)
        found += announcer.announced
    return found


async def _until(condition: Callable[[], bool], within: float = WITHIN_S) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def _leader_of(*processes: Services) -> Services:
    """The process that leads, once it tails the actions (what is stored from then on is fed)."""
    await _until(lambda: any(_tailing(p) for p in processes))
    return next(p for p in processes if _tailing(p))


def _tailing(services: Services) -> bool:
    return services.cluster.leadership.is_leader and services.cluster.tail_position is not None


def _fail(services: Services, kind: str, message: str, user_id: int = 7) -> None:
    services.recorder.record(
        kind, "test", ok=False, duration_ms=1.0, error=RuntimeError(message), user_id=user_id
    )


def _record(ts: float, kind: str = "task:tick") -> ActionRecord:
    return ActionRecord(ts=ts, kind=kind, source="test", ok=True, duration_ms=1.0)


# -- the tail ---------------------------------------------------------------------------------


async def test_tail_returns_each_new_action_once_in_bounded_batches(postgres_url: str) -> None:
    """The tail returns rows stored after its start, by id, a batch at a time, each once."""
    db = await core.open_postgresql(postgres_url)
    try:
        await action_queries.insert_many(db, [_record(1.0, "task:old")])
        tail = ActionTail(db, await action_queries.last_id(db), batch=2)
        await action_queries.insert_many(db, [_record(2.0 + n, f"task:{n}") for n in range(3)])
        first = await tail.poll()
        assert [r.kind for r in first] == ["task:0", "task:1"] and tail.behind
        second = await tail.poll()
        assert [r.kind for r in second] == ["task:2"] and not tail.behind
        assert await tail.poll() == []
        assert tail.settled == await action_queries.last_id(db)
    finally:
        await db.close()


async def test_tail_waits_for_a_row_committed_after_a_later_one(postgres_url: str) -> None:
    """A row whose id is below one already returned, committed later, is still returned once."""
    db = await core.open_postgresql(postgres_url)
    try:
        tail = ActionTail(db, 0)
        slow = await psycopg.AsyncConnection.connect(postgres_url)
        insert = "INSERT INTO actions (ts, kind, source, ok, duration_ms) VALUES (%s, %s, 'test', 1, 1)"
        await slow.execute(insert, (1.0, "task:slow"))  # holds its id, not committed yet
        await action_queries.insert_many(db, [_record(2.0, "task:fast")])
        assert [r.kind for r in await tail.poll()] == ["task:fast"]
        assert tail.settled == 0  # the slow row's id is still open
        await slow.commit()
        await slow.close()
        assert [r.kind for r in await tail.poll()] == ["task:slow"]
        assert await tail.poll() == []
        assert tail.settled == 2
    finally:
        await db.close()


async def test_tail_gives_up_on_a_gap_of_a_rolled_back_insert(postgres_url: str) -> None:
    """An id nobody will ever commit (a rolled-back insert) holds the position for gap_wait_s only."""
    now = [0.0]
    db = await core.open_postgresql(postgres_url)
    try:
        tail = ActionTail(db, 0, gap_wait_s=5.0, clock=lambda: now[0])
        async with await psycopg.AsyncConnection.connect(postgres_url) as lost:
            await lost.execute(
                "INSERT INTO actions (ts, kind, source, ok, duration_ms) VALUES (1, 'x', 't', 1, 1)"
            )
            await lost.rollback()
        await action_queries.insert_many(db, [_record(2.0)])
        assert len(await tail.poll()) == 1 and tail.settled == 0
        now[0] = 4.9
        assert await tail.poll() == [] and tail.settled == 0
        now[0] = 5.0
        assert await tail.poll() == [] and tail.settled == 2
    finally:
        await db.close()


# -- leadership in the services ---------------------------------------------------------------


async def test_sqlite_is_led_by_its_only_process_and_keeps_the_recorder_feed(tmp_path: Path) -> None:
    """Without database.url the process leads alone: /health says so, no merge hand-over is set."""
    settings = make_settings(tmp_path / "data")
    assert isinstance(leadership_for(settings), SoleLeader)
    services = await build_services(settings, watch_prompts=False)
    try:
        await _until(lambda: services.cluster.leadership.is_leader)
        health = services.health()
        assert health["leader"] is True and health["leadership"] == "sole"
        assert services.deploy.hand_over is None and services.deploy.went_live is None
        assert (
            "run-watchdog" in services.daemons.running() and "leader-work" not in services.daemons.running()
        )
    finally:
        await services.aclose()


async def test_one_process_running_every_shard_on_postgresql_leads_alone(
    postgres_url: str, tmp_path: Path
) -> None:
    """database.url with every shard here: the only bot process, led as on SQLite (no election wait,
    the recorder feeds incidents in process)."""
    settings = make_settings(tmp_path / "data", database={"url": postgres_url})
    assert isinstance(leadership_for(settings), SoleLeader) and not shares_database(settings)
    services = await build_services(settings, watch_prompts=False)
    try:
        assert not services.cluster.shared and services.deploy.hand_over is None
        assert "leader-work" not in services.daemons.running()
    finally:
        await services.aclose()


def test_postgresql_leadership_is_named_for_the_process_shards(postgres_url: str, tmp_path: Path) -> None:
    """On PostgreSQL the lock's holder names the shards it runs (pg_stat_activity shows it)."""
    settings = make_settings(
        tmp_path / "data", database={"url": postgres_url}, discord={"shard_count": 4, "shard_ids": [2, 3]}
    )
    leadership = leadership_for(settings)
    assert isinstance(leadership, PostgresLeader)
    assert leadership.name.startswith("mendbot shards 2,3 pid ")
    assert leadership.key == lock_key("mendbot")


async def test_an_incident_on_a_follower_is_announced_once_by_the_leader(
    postgres_url: str, tmp_path: Path
) -> None:
    """A follower's failures reach the leader through the database: one incident, one announcement,
    and the follower reads it (to answer "fix this") from the database."""
    async with _process(tmp_path, postgres_url, "a") as a, _process(tmp_path, postgres_url, "b") as b:
        leader = await _leader_of(a, b)
        follower = b if leader is a else a
        assert follower.health()["leader"] is False and leader.health()["leader"] is True
        _fail(follower, "command:roll", "boom 1")
        _fail(follower, "command:roll", "boom 2")
        await follower.recorder.flush()
        await _until(lambda: len(_announced(a, b)) == 1)
        await _until(lambda: bool(follower.incidents.active()))
        [(incident_id, kind)] = _announced(leader)
        assert kind == "command:roll"
        assert [i.id for i in follower.incidents.active()] == [incident_id]
        await asyncio.sleep(0.5)
        assert len(_announced(a, b)) == 1
        assert await get_setting(leader.db, TAIL_KEY) == await action_queries.last_id(leader.db)


async def test_a_follower_resolving_an_incident_is_not_undone_by_the_leader(
    postgres_url: str, tmp_path: Path
) -> None:
    """State changed on a follower reaches the leader's copy instead of being overwritten by it."""
    async with _process(tmp_path, postgres_url, "a") as a, _process(tmp_path, postgres_url, "b") as b:
        leader = await _leader_of(a, b)
        follower = b if leader is a else a
        _fail(follower, "command:roll", "boom")
        await follower.recorder.flush()
        await _until(lambda: bool(follower.incidents.active()))
        incident_id = follower.incidents.active()[0].id
        assert incident_id is not None
        await follower.incidents.set_state(incident_id, "resolved", 42)
        await _until(lambda: not leader.incidents.active())
        _fail(leader, "task:other", "unrelated")  # the leader keeps writing incidents meanwhile
        await leader.recorder.flush()
        await _until(lambda: len(_announced(a, b)) == 2)
        await leader.incidents.quiesce()
        row = await incident_queries.by_id(leader.db, incident_id)
        assert row is not None and row["state"] == "resolved" and row["closed_by"] == 42


async def test_failover_the_new_leader_announces_the_next_incident_once(
    postgres_url: str, tmp_path: Path
) -> None:
    """When the leader goes, the other leads: a storm already announced is not announced again,
    a new one is announced once, and the tail goes on from the stored position."""
    a_stack = _process(tmp_path, postgres_url, "a")
    a = await a_stack.__aenter__()
    try:
        await _until(lambda: _tailing(a))  # a leads before b starts: b only ever follows it
        async with _process(tmp_path, postgres_url, "b") as b:
            _fail(b, "command:roll", "first storm")
            await b.recorder.flush()
            await _until(lambda: len(_announced(a)) == 1)
            await a.incidents.quiesce()
            await _until(lambda: a.cluster.tail_position == _last(a))
            await a_stack.__aexit__(None, None, None)
            await _until(lambda: _tailing(b))
            _fail(b, "command:roll", "first storm")  # the same bug again: the same incident
            _fail(b, "command:dice", "second storm")
            await b.recorder.flush()
            await _until(lambda: len(_announced(b)) == 1)
            await asyncio.sleep(0.5)
            assert [kind for _, kind in _announced(b)] == ["command:dice"]
            rows = await incident_queries.list_by_state(b.db, ("open",), 10)
            assert sorted(row["kind"] for row in rows) == ["command:dice", "command:roll"]
    finally:
        await a_stack.__aexit__(None, None, None)


async def test_a_new_leader_does_not_call_a_failure_new_that_another_process_saw_before(
    postgres_url: str, tmp_path: Path
) -> None:
    """A fingerprint first recorded after the next leader started, seen and closed long ago under the
    previous leader, is not announced as "a new kind of failure" when it comes back."""
    quick = {"cooldown_s": 1}
    a_stack = _process(tmp_path, postgres_url, "a", observe=quick)
    a = await a_stack.__aenter__()
    try:
        await _until(lambda: _tailing(a))  # a leads before b starts: b only ever follows it
        async with _process(tmp_path, postgres_url, "b", observe=quick) as b:
            failure = _failure(a.incidents.now(), "fp-seen")
            await action_queries.insert_many(a.db, [failure])
            await _until(lambda: len(_announced(a)) == 1)
            await a.incidents.quiesce()
            [(incident_id, _)] = _announced(a)
            assert incident_id is not None
            await a.incidents.set_state(incident_id, "resolved", 42)
            await asyncio.sleep(1.2)  # past the cooldown: it would be announced as new, not reopened
            await a_stack.__aexit__(None, None, None)
            await _until(lambda: b.cluster.tail_position is not None)
            await action_queries.insert_many(b.db, [_failure(b.incidents.now(), "fp-seen")])
            await _until(lambda: _fed(b) >= 1)
            await b.incidents.quiesce()
            assert _announced(b) == []
    finally:
        await a_stack.__aexit__(None, None, None)


async def test_failures_recorded_while_nobody_leads_are_announced_by_the_next_leader(
    postgres_url: str, tmp_path: Path
) -> None:
    """Records stored between the old leader's last tail position and the new leader's start are fed
    then: a new kind of failure among them is announced (its fingerprint row notwithstanding)."""
    a_stack = _process(tmp_path, postgres_url, "a")
    a = await a_stack.__aenter__()
    try:
        await _until(lambda: a.cluster.tail_position is not None)
        await a_stack.__aexit__(None, None, None)
        db = await core.open_postgresql(postgres_url)  # as a process's writer stores it
        try:
            await action_queries.insert_many(db, [_failure(time.time(), "fp-while-alone")])
        finally:
            await db.close()
        async with _process(tmp_path, postgres_url, "b") as b:
            await _until(lambda: len(_announced(b)) == 1)
            assert _announced(b)[0][1] == "command:seen"
    finally:
        await a_stack.__aexit__(None, None, None)


def _failure(ts: float, fingerprint: str) -> ActionRecord:
    return ActionRecord(
        ts=ts,
        kind="command:seen",
        source="test",
        ok=False,
        duration_ms=1.0,
        error_type="RuntimeError",
        error_message="seen",
        fingerprint=fingerprint,
    )


def _fed(services: Services) -> int:
    return services.detector.processed


def _last(services: Services) -> int | None:
    return services.cluster.tail_position


def _open_roll_incident(fingerprint: str) -> Incident:
    """An open `command:roll` incident, not yet announced."""
    return Incident(
        rule="repeat",
        rules=["repeat"],
        level="error",
        kind="command:roll",
        fingerprint=fingerprint,
        state="open",
        summary="boom",
        first_seen=1.0,
        last_seen=1.0,
        count=3,
        user_ids=set(),
        sample={},
    )


async def test_a_new_leader_announces_an_incident_its_predecessor_stored_but_did_not_announce(
    postgres_url: str, tmp_path: Path
) -> None:
    """An incident row without an announcement (its leader died in between) is announced by the
    next leader, once."""
    db = await core.open_postgresql(postgres_url)
    try:
        incident = _open_roll_incident("fp")
        incident_id = await incident_queries.insert(db, incident.row(1.0))
    finally:
        await db.close()
    async with _process(tmp_path, postgres_url, "a") as a:
        await _until(lambda: len(_announced(a)) == 1)
        assert _announced(a) == [(incident_id, "command:roll")]
    async with _process(tmp_path, postgres_url, "b") as b:
        await _until(lambda: b.cluster.tail_position is not None)
        await asyncio.sleep(0.3)
        assert _announced(b) == []


async def test_a_copy_taken_before_the_announcement_is_not_announced_again(
    postgres_url: str, tmp_path: Path
) -> None:
    """A process that read an incident before its leader stored the announcement holds a copy without
    it; taking over, it asks the row and announces nothing (the dev channel got it once)."""
    async with _process(tmp_path, postgres_url, "a") as a:
        await _until(lambda: _tailing(a))
        async with _process(tmp_path, postgres_url, "b") as b:
            incident = _open_roll_incident("fp-copied")
            incident_id = await incident_queries.insert(b.db, incident.row(b.incidents.now()))
            await b.incidents.refresh()  # b's copy: no announcement yet
            await incident_queries.update(b.db, incident_id, {"channel_id": 10, "message_id": 20})
            await b.incidents.refresh()
            assert await b.incidents.announce_unannounced() == 0
            assert _announced(b) == []
            copy = next(i for i in b.incidents.active() if i.id == incident_id)
            assert (copy.channel_id, copy.message_id) == (10, 20)


async def test_a_merge_handed_over_is_shipped_by_the_leader_only(postgres_url: str, tmp_path: Path) -> None:
    """An approval counted on a follower is merged by the leader (NOTIFY mendbot_deploy), once."""
    async with _process(tmp_path, postgres_url, "a") as a, _process(tmp_path, postgres_url, "b") as b:
        leader = await _leader_of(a, b)
        follower = b if leader is a else a
        shipped: dict[str, list[int]] = {"a": [], "b": []}

        def fake_ship(name: str) -> Any:
            async def ship(run_id: int, *, actor: str) -> str:
                shipped[name].append(run_id)
                await follower.improve.runs.transition(run_id, "deployed", actor=actor)
                return "merged"

            return ship

        a.deploy.ship = fake_ship("a")  # type: ignore[method-assign]
        b.deploy.ship = fake_ship("b")  # type: ignore[method-assign]
        run = await _merging_run(follower)
        for services in (a, b):
            services.cluster.deploy_ready.set()
        reply = await follower.deploy.hand_over(run)  # type: ignore[misc]
        assert "merge queue" in reply
        await _until(lambda: bool(shipped["a"] or shipped["b"]))
        await asyncio.sleep(0.5)
        leader_name = "a" if leader is a else "b"
        assert shipped == {leader_name: [run], "ab".replace(leader_name, ""): []}


async def test_a_merge_the_leader_did_not_finish_is_taken_up_by_the_next_leader(
    postgres_url: str, tmp_path: Path
) -> None:
    """A leader that goes mid-merge leaves the run `merging`: the next leader ships it (from its
    recorded merge, if any: DeployService._merge_and_deploy), and only it."""
    a_stack = _process(tmp_path, postgres_url, "a")
    a = await a_stack.__aenter__()
    try:
        await _until(lambda: _tailing(a))  # a leads before b starts: b only ever follows it
        async with _process(tmp_path, postgres_url, "b") as b:
            started = asyncio.Event()
            b_shipped: list[int] = []

            async def hangs(run_id: int, *, actor: str) -> str:
                started.set()
                await asyncio.Event().wait()  # the process dies before the merge ends
                return ""

            async def ships(run_id: int, *, actor: str) -> str:
                b_shipped.append(run_id)
                return "merged"

            a.deploy.ship = hangs  # type: ignore[method-assign]
            b.deploy.ship = ships  # type: ignore[method-assign]
            run_id = await _merging_run(b)
            for services in (a, b):
                services.cluster.deploy_ready.set()
            await b.deploy.hand_over(run_id)  # type: ignore[misc]
            await asyncio.wait_for(started.wait(), WITHIN_S)
            await a_stack.__aexit__(None, None, None)
            await _until(lambda: b_shipped == [run_id])
            assert b_shipped == [run_id]  # b shipped it, once; a's merge never ended
    finally:
        await a_stack.__aexit__(None, None, None)


async def test_the_leader_watches_a_deploy_with_every_process_records(
    postgres_url: str, tmp_path: Path
) -> None:
    """The watch after a deploy is resumed by the leader only, and a failure in the touched code
    recorded by any process marks the run regressed."""
    async with _process(tmp_path, postgres_url, "a") as a, _process(tmp_path, postgres_url, "b") as b:
        leader = await _leader_of(a, b)
        follower = b if leader is a else a
        run_id = await _merging_run(follower)
        await follower.improve.runs.transition(
            run_id, "deployed", actor="test", detail={"merged_sha": "0" * 40, "files": ["cogs/x.py"]}
        )
        for services in (a, b):
            services.cluster.deploy_ready.set()
        await _until(lambda: run_id in leader.deploy._watches)
        assert follower.deploy._watches == {}
        failure = ActionRecord(
            ts=leader.incidents.now(),
            kind="command:x",
            source="test",
            ok=False,
            duration_ms=1.0,
            error_type="KeyError",
            error_message="'x'",
            fingerprint="fp-x",
            frames=["cogs/x.py:3:x"],
        )
        await action_queries.insert_many(follower.db, [failure])  # as the follower's writer stores it
        await _until(lambda: run_id not in leader.deploy._watches)
        await leader.deploy.quiesce()
        await _until_state(leader, run_id, "regressed")


async def _until_state(services: Services, run_id: int, state: str) -> None:
    for _ in range(100):
        if (await services.improve.runs.get(run_id)).state == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never became {state}")


async def test_a_process_starting_leaves_other_processes_runs_alone(
    postgres_url: str, tmp_path: Path
) -> None:
    """On a shared database a starting process does not mark runs in flight interrupted: they may
    be another process's (on SQLite they are its own, stopped by its restart)."""
    async with _process(tmp_path, postgres_url, "a") as a:
        run = await a.improve.runs.create("fix", 1, None, None, "in flight on a")
        await a.improve.runs.transition(run.id, "editing", actor="test")
        async with _process(tmp_path, postgres_url, "b") as b:
            assert (await b.improve.runs.get(run.id)).state == "editing"
            assert b.boot_notices == []


async def _merging_run(services: Services) -> int:
    runs = services.improve.runs
    run = await runs.create("fix", 1, None, None, "fix it")
    for state in ("editing", "verifying", "awaiting_approval", "merging"):
        await runs.transition(run.id, state, actor="test")
    return run.id


# -- a merge reaches every process ------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _has(repo: Path, sha: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "cat-file", "-e", sha], check=False).returncode == 0


def _repo(path: Path) -> tuple[str, str]:
    """A git repo on main with two commits (the second changes a cog); returns both shas."""
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    _git(path, "config", "user.email", "t@example.com")
    _git(path, "config", "user.name", "t")
    (path / "cogs").mkdir()
    (path / "cogs" / "x.py").write_text("X = 1\n")
    _git(path, "add", "-A")
    _git(path, "commit", "-qm", "one")
    first = _git(path, "rev-parse", "HEAD")
    (path / "cogs" / "x.py").write_text("X = 2\n")
    _git(path, "commit", "-qam", "two")
    return first, _git(path, "rev-parse", "HEAD")


async def test_a_published_merge_is_followed_by_every_other_process(
    postgres_url: str, tmp_path: Path
) -> None:
    """A merge that went live on one process (`went_live`: the `cluster.deployed` row and NOTIFY
    mendbot_deployed) is followed by the others: on the shared checkout they reload what changed
    since the code they run; one that was not listening catches up when it starts."""
    repo = tmp_path / "repo"
    first, second = _repo(repo)
    async with (
        _process(tmp_path, postgres_url, "a", repo_dir=repo) as a,
        _process(tmp_path, postgres_url, "b", repo_dir=repo) as b,
    ):
        assert a.deploy.went_live == a.cluster.publish and a.deploy.hand_over == a.cluster.hand_over
        a.cluster.loaded_sha = first  # it runs the code of the first commit
        assert b.deploy.went_live is not None
        await b.deploy.went_live(second, True)
        await _until(lambda: a.cluster.loaded_sha == second)
        assert a.health()["merge_follow_problem"] is None
        assert await get_setting(a.db, DEPLOYED_KEY) == {
            "sha": second,
            "at": pytest.approx(b.incidents.now(), abs=60),
        }
    _git(repo, "reset", "-q", "--hard", first)
    async with _process(tmp_path, postgres_url, "c", repo_dir=repo) as c:  # started after the NOTIFY
        await _until(lambda: c.cluster.loaded_sha == second)
        assert _git(repo, "rev-parse", "HEAD") == second


async def test_a_process_with_hand_edits_does_not_follow_and_says_so(
    postgres_url: str, tmp_path: Path
) -> None:
    """A follower whose checkout has hand edits is not fast-forwarded: health names the reason."""
    repo = tmp_path / "repo"
    first, second = _repo(repo)
    _git(repo, "reset", "-q", "--hard", first)
    (repo / "cogs" / "x.py").write_text("X = 'edited by hand'\n")
    async with _process(tmp_path, postgres_url, "a", repo_dir=repo) as a:
        await set_setting(a.db, DEPLOYED_KEY, {"sha": second, "at": 0})
        await cluster_queries.notify(a.db, "mendbot_deployed", second)
        await _until(lambda: a.health()["merge_follow_problem"] is not None)
        problem = str(a.health()["merge_follow_problem"])
        assert "uncommitted changes" in problem and second[:12] in problem
        assert a.cluster.loaded_sha == first
        assert _git(repo, "rev-parse", "HEAD") == first
        assert (repo / "cogs" / "x.py").read_text() == "X = 'edited by hand'\n"


async def test_an_unknown_merged_commit_is_reported_not_followed(postgres_url: str, tmp_path: Path) -> None:
    """A published commit the repository does not have (local forge: nothing to fetch) is refused."""
    repo = tmp_path / "repo"
    _, second = _repo(repo)
    async with _process(tmp_path, postgres_url, "a", repo_dir=repo) as a:
        assert await a.cluster.follow("f" * 40) is False
        assert "not in the live checkout" in str(a.cluster.follow_problem)
        assert a.cluster.loaded_sha == second


async def test_with_the_github_forge_a_follower_fetches_the_merged_commit(
    postgres_url: str, tmp_path: Path
) -> None:
    """A follower whose checkout lacks the merged commit fetches main from the forge's remote, then
    fast-forwards to it."""
    origin = tmp_path / "origin"
    first, _ = _repo(origin)
    _git(origin, "reset", "-q", "--hard", first)
    live = tmp_path / "live"
    _git(tmp_path, "clone", "-q", str(origin), str(live))  # has the first commit only
    (origin / "cogs" / "x.py").write_text("X = 3\n")
    _git(origin, "commit", "-qam", "merged on the forge")
    second = _git(origin, "rev-parse", "HEAD")
    assert not _has(live, second)
    forge = {"kind": "github", "repository": "owner/bot", "remote_url": str(origin)}
    async with _process(tmp_path, postgres_url, "a", repo_dir=live, forge=forge, github_token="t") as a:
        assert a.cluster.loaded_sha == first
        assert await a.cluster.follow(second) is True
        assert _git(live, "rev-parse", "HEAD") == second and a.cluster.follow_problem is None


async def test_a_leader_that_found_the_merge_live_already_reloads_it_as_a_follower_would(
    postgres_url: str, tmp_path: Path
) -> None:
    """A new leader finishing a merge whose checkout a dead leader had moved did not reload it: it
    follows its own notification and reloads what differs from the code it runs."""
    repo = tmp_path / "repo"
    first, second = _repo(repo)
    async with _process(tmp_path, postgres_url, "a", repo_dir=repo) as a:
        a.cluster.loaded_sha = first
        assert a.deploy.went_live is not None
        await a.deploy.went_live(second, False)
        assert a.cluster.loaded_sha == first
        await _until(lambda: a.cluster.loaded_sha == second)


async def test_the_workers_progress_is_relayed_once_by_the_leader(postgres_url: str, tmp_path: Path) -> None:
    """With runs on workers and several bot processes, a worker's progress and report reach Discord
    once: the leader relays them (any process may post by channel id), followers do not."""
    from mendbot.improve.relay import DatabaseReporter
    from tests.harness.github_double import GitHubDouble
    from tests.harness.repo import git
    from tests.test_worker import TOKEN, RecordingReporter

    bare = tmp_path / "remote.git"
    bare.mkdir()
    git(bare, "init", "-q", "--bare", "-b", "main")
    async with GitHubDouble(bare, token=TOKEN) as github:
        workers: dict[str, Any] = {
            "improve": {"run_on": "workers"},
            "forge": {
                "kind": "github",
                "repository": github.repository,
                "api_url": github.api_url,
                "remote_url": github.git_url,
            },
            "github_token": TOKEN,
        }
        async with (
            _process(tmp_path, postgres_url, "a", **workers) as a,
            _process(tmp_path, postgres_url, "b", **workers) as b,
        ):
            reporters = {"a": RecordingReporter(), "b": RecordingReporter()}
            a.improve.reporter, b.improve.reporter = reporters["a"], reporters["b"]
            leader = await _leader_of(a, b)
            # The relay's first catch-up sets where news begins (what came before is history): the
            # worker writes after it, as a worker's run always comes after the bot's start.
            for _ in range(int(WITHIN_S / 0.05)):
                if await run_queries.get_setting(leader.db, "run_relay.last_event_id") is not None:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the leader's relay never caught up")
            run = await leader.improve.runs.create("fix", 1, 5, None, "run on a worker")
            worker = DatabaseReporter(a.db, a.improve.runs, "worker:test")
            await worker.progress(run, ["🔍 looking"])
            await worker.report(run, "done")
            await _until(lambda: any(r.reports for r in reporters.values()))
            await asyncio.sleep(1.0)  # a follower relaying too would have posted by now
    relayed = [
        (name, r.progress_calls, r.reports) for name, r in reporters.items() if r.progress_calls or r.reports
    ]
    assert len(relayed) == 1, relayed
    [(name, progress, reports)] = relayed
    assert name == ("a" if leader is a else "b")
    assert [lines for _, lines in progress] == [["🔍 looking"]] and [text for _, text in reports] == ["done"]
