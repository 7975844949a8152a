"""A staged rollout (bot/scale/rollout.py) with several `Cluster`s on one PostgreSQL database, each
process on its own checkout: the canary (shards 0) takes a merged fix first, the others only once its
watch passed; a regression on the canary takes the canary back and nobody else ever runs the fix."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mendbot.db import actions as action_queries
from mendbot.db.records import ActionRecord
from mendbot.improve.runs import Run
from mendbot.kernel.errors import UserError
from mendbot.kernel.settings import ConfigError
from mendbot.runtime.services import Services
from mendbot.scale.rollout import ROLLOUT_KEY, canary_regression
from tests.harness.discord import make_settings
from tests.test_cluster import WITHIN_S, _git, _process, _repo, _until

pytestmark = pytest.mark.engines

WINDOW_S = 1.5


class Said:
    """What the deploy says in the run's channel (the chat side, at the edge)."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def deployed(self, run: Run, text: str) -> None:
        self.texts.append(text)

    async def regressed(self, run: Run, text: str) -> None:
        self.texts.append(text)

    async def notify(self, run: Run, text: str) -> None:
        self.texts.append(text)


def _checkouts(tmp_path: Path, *names: str) -> tuple[str, str, dict[str, Path]]:
    """An origin with two commits (the second changes cogs/x.py) and one clone per process, each
    at the first commit: every process has its own checkout."""
    origin = tmp_path / "origin"
    first, second = _repo(origin)
    found = {}
    for name in names:
        found[name] = tmp_path / f"checkout-{name}"
        _git(tmp_path, "clone", "-q", "-b", "main", str(origin), str(found[name]))
        _git(found[name], "reset", "-q", "--hard", first)
    return first, second, found


def _canary(**deploy: Any) -> dict[str, Any]:
    return {"deploy": {"watch_hand_edits": False, "watch_window_s": WINDOW_S, "canary_shards": [0], **deploy}}


# A leadership that stays where it is for the whole test: these tests move no leader, and one that a
# loaded machine kept from confirming its connection within a quick lease (tests/test_cluster.py's one
# second) hands over mid-test, leaving the test to drive a process that no longer leads. No grace is
# needed on taking the lock: no earlier leader holds this test's database.
STEADY = {"retry_s": 0.1, "check_s": 1.0, "lease_s": 15.0, "grace_s": 0.5}


@contextlib.asynccontextmanager
async def _leader_first(
    tmp_path: Path, url: str, leader: str, other: str, repos: dict[str, Path], **overrides: Any
) -> AsyncIterator[tuple[Services, Services]]:
    """`leader` starts first and leads the whole test; `other` joins once it does."""
    async with _process(tmp_path, url, leader, timing=STEADY, repo_dir=repos[leader], **overrides) as first:
        await _until(lambda: first.cluster.leadership.is_leader and first.cluster.tail_position is not None)
        joining = _process(tmp_path, url, other, timing=STEADY, repo_dir=repos[other], **overrides)
        async with joining as second:
            yield first, second


async def _deployed_run(services: Services, base: str, merged: str) -> Run:
    """A run whose merge of `merged` onto `base` is recorded (the step before going live)."""
    runs = services.improve.runs
    run = await runs.create("fix", 1, None, None, "fix x")
    for state in ("editing", "verifying", "awaiting_approval"):
        await runs.transition(run.id, state, actor="test")
    return await runs.transition(run.id, "merging", actor="test", base_sha=base, verified_sha=merged)


def _quiet(services: Services) -> Said:
    said = Said()
    services.deploy.reporter = said
    services.deploy.prove_live = None  # no incident to replay: the watch decides
    return said


def _failure(process: str, *, frames: list[str] | None = None, ts: float | None = None) -> ActionRecord:
    return ActionRecord(
        ts=ts if ts is not None else time.time(),
        kind="command:x",
        source="test",
        ok=False,
        duration_ms=1.0,
        error_type="KeyError",
        error_message="'x'",
        fingerprint="fp-other",
        frames=frames or [],
        process=process,
    )


def _ok(process: str, ts: float) -> ActionRecord:
    return ActionRecord(ts=ts, kind="command:x", source="test", ok=True, duration_ms=1.0, process=process)


async def _state(services: Services, run_id: int) -> str:
    return (await services.improve.runs.get(run_id)).state


async def _until_state(services: Services, run_id: int, state: str, within: float = WITHIN_S) -> None:
    deadline = time.monotonic() + within
    while (await _state(services, run_id)) != state:
        assert time.monotonic() < deadline, f"run never became {state}: {await _state(services, run_id)}"
        await asyncio.sleep(0.05)


async def _until_stage(services: Services, stage: str, within: float = WITHIN_S) -> None:
    deadline = time.monotonic() + within
    while (await _stage(services)) != stage:
        assert time.monotonic() < deadline, f"the rollout never reached {stage}: {await _stage(services)}"
        await asyncio.sleep(0.05)


async def _stage(services: Services) -> str | None:
    from mendbot.db.runs import get_setting

    stored = await get_setting(services.db, ROLLOUT_KEY)
    return None if stored is None else str(stored["stage"])


def _loads(services: Services) -> list[str]:
    """Every commit this process is brought to from now on (its merge follower's moves)."""
    moved: list[str] = []
    follow = services.cluster.follow

    async def recorded(sha: str) -> bool:
        moved.append(sha)
        return await follow(sha)

    services.cluster.follow = recorded  # type: ignore[method-assign]
    return moved


async def test_the_canary_takes_the_fix_first_and_the_other_only_after_its_watch(
    postgres_url: str, tmp_path: Path
) -> None:
    """The leader (shards 1) merges: only the canary (shards 0) fast-forwards and reloads, the channel
    is told so, and the leader's own checkout moves only once the canary's watch passed."""
    first, second, repos = _checkouts(tmp_path, "a", "b")
    async with _leader_first(tmp_path, postgres_url, "b", "a", repos, **_canary()) as (leader, canary):
        said = _quiet(leader)
        run = await _deployed_run(leader, first, second)
        reply = await leader.deploy._go_live(run, second)
        assert "live on the canary (shards 0) — the others follow once its watch passes" in reply
        assert canary.cluster.loaded_sha == second and _git(repos["a"], "rev-parse", "HEAD") == second
        assert leader.cluster.loaded_sha == first and _git(repos["b"], "rev-parse", "HEAD") == first
        assert await _stage(leader) == "canary"
        shown = await leader.cluster.live_on(second, run.id)
        assert shown is not None and "**Rollout:** on the canary (shards 0) only" in shown
        assert f"shards 0 ✅ `{second[:7]}`, shards 1 at `{first[:7]}`" in shown
        with pytest.raises(UserError, match="live on the canary"):  # the watch takes it back, not a revert
            await leader.deploy.emergency_rollback(run.id, user_id=1)
        assert _git(repos["b"], "rev-parse", "HEAD") == first
        await asyncio.sleep(WINDOW_S / 2)
        assert leader.cluster.loaded_sha == first  # still mid-watch
        await _until_state(leader, run.id, "resolved")
        await _until(lambda: leader.cluster.loaded_sha == second)
        assert _git(repos["b"], "rev-parse", "HEAD") == second
        await _until_stage(leader, "done")
        assert any("every other process now fast-forwards" in text for text in said.texts), said.texts
        assert any("every process runs" in text for text in said.texts), said.texts


async def test_a_regression_on_the_canary_rolls_back_the_canary_only(
    postgres_url: str, tmp_path: Path
) -> None:
    """A failure in the touched code recorded by another process does not end the canary's watch; one
    recorded by the canary does: the canary goes back (a revert on top of the merge, with the old
    tree), every process ends on that commit, and the other never loaded the fix."""
    first, second, repos = _checkouts(tmp_path, "a", "b")
    async with _leader_first(tmp_path, postgres_url, "b", "a", repos, **_canary(watch_window_s=30)) as (
        leader,
        canary,
    ):
        said = _quiet(leader)
        moved = _loads(leader)
        run = await _deployed_run(leader, first, second)
        await leader.deploy._go_live(run, second)
        await action_queries.insert_many(leader.db, [_failure("shards 1", frames=["cogs/x.py:1:x"])])
        fed = await action_queries.last_id(leader.db)
        await _until(lambda: (leader.cluster.tail_position or 0) >= fed)  # the leader's tail has fed it
        assert await _state(leader, run.id) == "watching"
        await action_queries.insert_many(leader.db, [_failure("shards 0", frames=["cogs/x.py:1:x"])])
        await _until_state(leader, run.id, "rolled_back")  # regressed, then the canary taken back
        await _until_stage(leader, "done")
        revert = canary.cluster.loaded_sha
        assert revert not in (first, second) and leader.cluster.loaded_sha == revert
        for repo in repos.values():
            assert _git(repo, "rev-parse", "HEAD") == revert
            tree = _git(repo, "rev-parse", f"{revert}^{{tree}}")
            assert tree == _git(repo, "rev-parse", f"{first}^{{tree}}")
            assert _git(repo, "rev-parse", f"{revert}^") == second  # main does not end on the bad commit
        assert second not in moved  # the leader never loaded the fix
        regressed = next(text for text in said.texts if "regressed" in text)
        assert "on the canary (shards 0)" in regressed and "only the canary ever ran the fix" in regressed


async def test_the_canary_s_error_rate_against_its_own_baseline_rolls_it_back(
    postgres_url: str, tmp_path: Path
) -> None:
    """Failures nowhere near the touched code, on the canary only, well above its own rate before the
    fix: at the end of the window the canary is rolled back; the same failures on the other process
    would not count."""
    first, second, repos = _checkouts(tmp_path, "a", "b")
    async with _leader_first(tmp_path, postgres_url, "b", "a", repos, **_canary()) as (leader, canary):
        _quiet(leader)
        now = time.time()
        before = [_ok("shards 0", now - 30 + n) for n in range(10)]
        await action_queries.insert_many(leader.db, before)
        run = await _deployed_run(leader, first, second)
        await leader.deploy._go_live(run, second)
        later = time.time()
        await action_queries.insert_many(
            leader.db,
            [_failure("shards 0", ts=later) for _ in range(5)]
            + [_failure("shards 1", ts=later) for _ in range(9)],
        )
        await _until_state(leader, run.id, "rolled_back")  # regressed, then the canary taken back
        events = await leader.improve.runs.events(run.id)
        why = next(e.detail["canary"] for e in events if e.state == "regressed")
        assert "error rate is 100%" in why and "against 0%" in why
        await _until_stage(leader, "done")
        assert canary.cluster.loaded_sha == leader.cluster.loaded_sha != second


def test_the_baseline_rule_counts_a_rate_or_latency_that_got_worse() -> None:
    """Error rate doubled and 5 points up, or p95 above the factor, is a regression; as before is not."""
    observe = make_settings(Path("/tmp/unused-data")).observe
    steady = [(True, 10.0)] * 30 + [(False, 10.0)] * 3
    assert canary_regression(steady, steady, observe) is None
    worse = [(True, 10.0)] * 20 + [(False, 10.0)] * 10
    assert "error rate" in str(canary_regression(steady, worse, observe))
    slow = [(True, 200.0)] * 30
    assert "p95 latency is 200 ms" in str(canary_regression([(True, 60.0)] * 30, slow, observe))


async def test_a_new_leader_resumes_the_rollout_and_a_restarted_process_stays_behind(
    postgres_url: str, tmp_path: Path
) -> None:
    """The leader (shards 1) stops mid-canary without finishing: the canary leads, resumes the canary's
    watch from the stored stage, and promotes the fix when it passes; the process restarting meanwhile
    on shards 1 stays on the old commit until then."""
    first, second, repos = _checkouts(tmp_path, "a", "b")
    # The canary's watch must outlast the leader's stop, the hand-over (its lease's grace) and the other
    # process's restart, which took over 3 s on a loaded machine: the window ran out and the stage was
    # already "all" when the test looked for "canary".
    overrides = _canary(watch_window_s=10.0)
    b_stack = _process(tmp_path, postgres_url, "b", repo_dir=repos["b"], **overrides)
    b = await b_stack.__aenter__()
    try:
        await _until(lambda: b.cluster.leadership.is_leader and b.cluster.tail_position is not None)
        async with _process(tmp_path, postgres_url, "a", repo_dir=repos["a"], **overrides) as a:
            _quiet(b)
            said = _quiet(a)
            run = await _deployed_run(b, first, second)
            await b.deploy._go_live(run, second)
            assert a.cluster.loaded_sha == second and await _stage(a) == "canary"
            await b_stack.__aexit__(None, None, None)  # gone mid-watch: nothing finished, nothing cleaned
            a.cluster.deploy_ready.set()
            await _until(lambda: a.cluster.leadership.is_leader and run.id in a.deploy._watches)
            assert a.deploy._watches[run.id].process == "shards 0"  # resumed as the canary's watch
            async with _process(tmp_path, postgres_url, "b", repo_dir=repos["b"], **overrides) as b2:
                moved = _loads(b2)
                assert b2.cluster.loaded_sha == first
                await asyncio.sleep(1.0)
                assert b2.cluster.loaded_sha == first and await _stage(a) == "canary"
                await _until_state(a, run.id, "resolved")
                await _until(lambda: b2.cluster.loaded_sha == second)
                assert moved == [second] and _git(repos["b"], "rev-parse", "HEAD") == second
                await _until_stage(a, "done")
                assert any("every other process now fast-forwards" in text for text in said.texts), said.texts
    finally:
        await b_stack.__aexit__(None, None, None)


async def test_without_a_canary_every_process_takes_the_merge_at_once(
    postgres_url: str, tmp_path: Path
) -> None:
    """No canary configured: a merge goes live on the leader and is published to every process at
    once, as before; nothing is staged."""
    first, second, repos = _checkouts(tmp_path, "a", "b")
    async with _leader_first(tmp_path, postgres_url, "b", "a", repos) as (leader, other):
        assert leader.deploy.rollout is None and leader.cluster.rollout is None
        _quiet(leader)
        run = await _deployed_run(leader, first, second)
        reply = await leader.deploy._go_live(run, second)
        assert "canary" not in reply and leader.cluster.loaded_sha == second
        await _until(lambda: other.cluster.loaded_sha == second)
        assert await _stage(leader) is None


async def test_a_lone_process_with_a_canary_configured_takes_the_merge_as_before(
    postgres_url: str, tmp_path: Path
) -> None:
    """The canary's process is not among the processes (only shards 1 runs): nothing is staged."""
    first, second, repos = _checkouts(tmp_path, "b")
    async with _process(tmp_path, postgres_url, "b", repo_dir=repos["b"], **_canary()) as alone:
        await _until(lambda: alone.cluster.leadership.is_leader)
        _quiet(alone)
        run = await _deployed_run(alone, first, second)
        reply = await alone.deploy._go_live(run, second)
        assert "canary" not in reply and alone.cluster.loaded_sha == second
        assert await _stage(alone) is None


def test_a_canary_needs_shard_processes_on_postgresql(tmp_path: Path) -> None:
    """deploy.canary_shards without database.url and discord.shard_ids is a config error naming both."""
    from mendbot.kernel.settings import refuse_shard_subset

    settings = make_settings(tmp_path / "data", deploy={"canary_shards": [0]})
    with pytest.raises(ConfigError, match=r"database\.url and discord\.shard_ids"):
        refuse_shard_subset(settings)


@pytest.mark.parametrize("stage", ["all", "rolled_back"])
async def test_a_new_leader_finishes_the_stage_a_dead_leader_stored(
    postgres_url: str, tmp_path: Path, stage: str
) -> None:
    """A leader died right after storing `all` (the fix not published yet) or `rolled_back` (no revert
    made yet): the next leader finishes that step, and every process ends on one commit."""
    from mendbot.db.runs import set_setting

    first, second, repos = _checkouts(tmp_path, "a", "b")
    _git(repos["a"], "reset", "-q", "--hard", second)  # the canary runs the fix
    async with _leader_first(tmp_path, postgres_url, "b", "a", repos, **_canary()) as (leader, canary):
        run = await leader.improve.runs.create("fix", 1, None, None, "fix x")
        await set_setting(
            leader.db,
            ROLLOUT_KEY,
            {
                "run_id": run.id,
                "sha": second,
                "previous": first,
                "canary": "shards 0",
                "stage": stage,
                "started_at": time.time() - 10,
                "rolled_back_at": time.time(),
            },
        )
        for services in (leader, canary):
            services.cluster.deploy_ready.set()
        await _until_stage(leader, "done")
        final = leader.cluster.loaded_sha
        assert canary.cluster.loaded_sha == final
        assert final == second if stage == "all" else final not in (first, second)
