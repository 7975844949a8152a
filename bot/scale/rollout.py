"""A staged rollout: with several shard processes and `deploy.canary_shards`, a merged fix goes live on
the canary first and reaches the other processes only once the canary's watch passed.

The leader coordinates it through one stored setting, `cluster.rollout` (run id, merged sha, the sha
every process ran before, the canary, the stage and the time of each step), written before each
step acts, so that whichever process dies — the canary, another, the leader — the next leader
resumes from the stored stage:

- `canary`: the canary (and only it) fast-forwards and reloads; every other process follows
  `cluster.deployed`, which still names the code from before, so none loads the fix — not even one
  that restarts now. The live replay and the watch judge the code the canary runs by the canary's own
  records (`actions.process`): a failure coming back there, a new one in the touched code, and at the
  end of the window its error rate and latency against its own baseline (its records before the fix).
  Other merges wait their turn meanwhile.
- `all`: the watch passed; `cluster.deployed` names the fix and every process follows it.
- `rolled_back`: the fix regressed on the canary. A commit on top of the merge with the tree of the
  code from before (`DeployRollbacks.canary_revert`) is published: the canary goes back, the others
  move to it without reloading anything, and every process ends on one commit — main never keeps
  the bad change as its tip.
- `done`: every process runs the rollout's final commit.

`/run N` shows the stage and which process runs which commit (`Cluster.live_on`); /metrics shows the
commits (`mendbot_process_commit`). Without a canary, or with one process, none of this happens: the
leader publishes each merge to every process at once, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from mendbot.db import actions as action_queries
from mendbot.db.core import Connection
from mendbot.db.runs import get_setting, set_setting
from mendbot.deploy.service import DeployService
from mendbot.improve.runs import Run
from mendbot.kernel.log import get_logger
from mendbot.kernel.sections import ObserveConfig
from mendbot.kernel.settings import Settings
from mendbot.scale.leader import shards_name

__all__ = ["ROLLOUT_KEY", "ClusterView", "Rollout", "canary_name", "canary_regression"]

_log = get_logger(__name__)

ROLLOUT_KEY = "cluster.rollout"
_ENDED = ("regressed", "failed", "cancelled", "rejected", "rolled_back")


def canary_name(settings: Settings) -> str | None:
    """The canary's process name (as in `cluster.process.<name>`), or None without a canary."""
    shards = settings.deploy.canary_shards
    return shards_name(shards) if shards else None


def canary_regression(
    before: list[tuple[bool, float]], after: list[tuple[bool, float]], observe: ObserveConfig
) -> str | None:
    """Why the canary's records after the fix (`after`: ok, duration_ms) are worse than its own
    before it, or None. Error rate: at least `observe.error_rate.min_events` records after, and the
    rate at least doubled and up by 5 points or more. Latency: at least `observe.latency.min_samples`
    records on each side, and the p95 above `observe.latency.factor` times the baseline's (and above
    `observe.latency.min_ms`)."""
    rule = observe.error_rate
    if len(after) >= rule.min_events:
        rate_after = sum(not ok for ok, _ in after) / len(after)
        rate_before = sum(not ok for ok, _ in before) / len(before) if before else 0.0
        if rate_after >= rate_before + max(0.05, rate_before):
            return (
                f"its error rate is {rate_after:.0%} over {len(after)} actions since the fix, "
                f"against {rate_before:.0%} over {len(before)} before it"
            )
    latency = observe.latency
    if len(after) >= latency.min_samples and len(before) >= latency.min_samples:
        p95_after, p95_before = _p95([d for _, d in after]), _p95([d for _, d in before])
        if p95_after >= latency.min_ms and p95_after > latency.factor * p95_before:
            return (
                f"its p95 latency is {p95_after:.0f} ms since the fix, against {p95_before:.0f} ms before it"
            )
    return None


def _p95(durations: list[float]) -> float:
    ordered = sorted(durations)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


class ClusterView(Protocol):
    """What the rollout needs of this process's part of the cluster (bot/scale/cluster.py)."""

    loaded_sha: str | None

    @property
    def process_name(self) -> str: ...

    async def positions(self) -> dict[str, str]: ...

    async def record_position(self) -> None: ...

    async def publish(self, sha: str, reloaded: bool) -> None: ...

    async def nudge(self) -> None:
        """Wake every process's merge follower without changing `cluster.deployed`."""
        ...


class Rollout:
    """The leader's side of a staged rollout, and every process's reading of it (module docstring).
    It is `DeployService.rollout` (mendbot.deploy.deploy_core.StagedRollout)."""

    def __init__(
        self,
        settings: Settings,
        db: Connection,
        deploy: DeployService,
        cluster: ClusterView,
        now: Callable[[], float],
        *,
        wait_s: float = 120.0,
        poll_s: float = 0.2,
    ) -> None:
        self.settings = settings
        self.db = db
        self.deploy = deploy
        self.cluster = cluster
        self.now = now
        self.wait_s = wait_s  # how long the canary (then everyone) is given to run a commit
        self.poll_s = poll_s
        self.canary = canary_name(settings)
        self._tasks: set[asyncio.Task[None]] = set()

    async def stored(self) -> dict[str, Any] | None:
        found = await get_setting(self.db, ROLLOUT_KEY)
        return found if isinstance(found, dict) and found.get("run_id") is not None else None

    async def _store(self, state: dict[str, Any]) -> None:
        await set_setting(self.db, ROLLOUT_KEY, state)

    # -- every process ----------------------------------------------------------------------------

    async def target(self) -> str | None:
        """The commit this process must run by the rollout, if it says so: the fix for the canary at
        stage `canary` (every other process follows `cluster.deployed`)."""
        state = await self.stored()
        if state and state["stage"] == "canary" and state["canary"] == self.cluster.process_name:
            return str(state["sha"])
        return None

    async def materialise(self, sha: str) -> bool:
        """Build the stored canary revert in this checkout if `sha` is it and it is missing here."""
        state = await self.stored()
        if not state or state.get("revert") != sha:
            return False
        made = await self.deploy.canary_revert(
            int(state["run_id"]), str(state["sha"]), str(state["previous"]), float(state["rolled_back_at"])
        )
        if made != sha:
            _log.warning("canary revert differs here", expected=sha, made=made)
        return made == sha

    async def holding(self) -> int | None:
        """The run whose fix is on the canary only: other merges wait until it passes or goes back."""
        state = await self.stored()
        return int(state["run_id"]) if state and state["stage"] == "canary" else None

    async def describe(self, run_id: int) -> str | None:
        """For /run: the rollout's stage, when `run_id` has the latest rollout."""
        state = await self.stored()
        if not state or int(state["run_id"]) != run_id:
            return None
        canary, sha = state["canary"], str(state["sha"])[:7]
        shown = {
            "canary": f"on the canary ({canary}) only — the others follow once its watch passes",
            "all": f"the canary ({canary}) passed; every process is taking `{sha}`",
            "rolled_back": (
                f"regressed on the canary ({canary}), which is being taken back to the code from before;"
                " only the canary ever ran the fix"
            ),
            "done": f"the canary ({canary}) passed; every process runs `{sha}`",
        }.get(str(state["stage"]), str(state["stage"]))
        if state["stage"] == "done" and state.get("revert"):
            shown = (
                f"regressed on the canary ({canary}); every process runs `{str(state['revert'])[:7]}`"
                " (the code from before); only the canary ever ran the fix"
            )
        return f"**Rollout:** {shown}"

    # -- the leader (mendbot.deploy.deploy_core.StagedRollout) ----------------------------------------

    async def begin(self, run: Run, merged_sha: str) -> str | None:
        if self.canary is None:
            return None
        state = await self.stored()
        if (
            state
            and int(state["run_id"]) == run.id
            and state["sha"] == merged_sha
            and state["stage"] == "canary"
        ):
            return str(state["canary"])  # a leader before this one began it: go on
        positions = await self.cluster.positions()
        if len(positions) < 2 or self.canary not in positions:
            _log.warning("no staged rollout: the canary is not among the processes", canary=self.canary)
            return None
        previous = self.cluster.loaded_sha or positions.get(self.cluster.process_name, "")
        await self._store(
            {
                "run_id": run.id,
                "sha": merged_sha,
                "previous": previous,
                "canary": self.canary,
                "stage": "canary",
                "started_at": self.now(),
            }
        )
        _log.info("rollout on the canary", run_id=run.id, sha=merged_sha, canary=self.canary)
        return self.canary

    def canary_is_here(self, canary: str) -> bool:
        return canary == self.cluster.process_name

    async def reach_canary(self, run: Run, merged_sha: str) -> str | None:
        state = await self.stored()
        assert state is not None and state["canary"] is not None
        canary = str(state["canary"])
        if self.canary_is_here(canary):  # the deploy moved this checkout and reloaded
            self.cluster.loaded_sha = merged_sha
            await self.cluster.record_position()
        else:
            await self.cluster.nudge()
            if not await self._until_at({canary}, merged_sha):
                shown = (await self.cluster.positions()).get(canary, "")
                return f"it did not run `{merged_sha[:7]}` within {self.wait_s:.0f} s (it runs `{shown[:7]}`)"
        state["canary_at"] = state.get("canary_at") or self.now()
        await self._store(state)
        return None

    async def canary_of(self, run_id: int) -> str | None:
        state = await self.stored()
        if state and int(state["run_id"]) == run_id and state["stage"] == "canary":
            return str(state["canary"])
        return None

    async def judge(self, run_id: int) -> str | None:
        state = await self.stored()
        if not state or int(state["run_id"]) != run_id:
            return None
        since = float(state.get("canary_at") or state["started_at"])
        baseline_s = max(self.settings.observe.error_rate.window_s, self.settings.deploy.watch_window_s)
        canary = str(state["canary"])
        before = await action_queries.outcomes_of_process(
            self.db, canary, since=since - baseline_s, until=since
        )
        after = await action_queries.outcomes_of_process(self.db, canary, since=since, until=self.now() + 1)
        return canary_regression(before, after, self.settings.observe)

    async def passed(self, run: Run) -> str:
        state = await self.stored()
        if not state or int(state["run_id"]) != run.id or state["stage"] != "canary":
            return ""
        state.update(stage="all", all_at=self.now())
        await self._store(state)  # before anyone moves: a next leader publishes it again
        return await self._finish_all(state)

    async def regressed(self, run: Run, why: str) -> str:
        state = await self.stored()
        if not state or int(state["run_id"]) != run.id or state["stage"] != "canary":
            return f"`/rollback {run.id}` to undo it."
        state.update(stage="rolled_back", why=why[:500], rolled_back_at=self.now())
        await self._store(state)  # before acting: a next leader finishes the rollback
        return await self._finish_rollback(state)

    async def resume(self) -> None:
        """A new leader: go on from the stored stage (module docstring), and say so in the run's channel."""
        state = await self.stored()
        if not state or state["stage"] == "done":
            return
        run = await self.deploy.runs.get(int(state["run_id"]))
        text = ""
        if state["stage"] == "canary" and run.state in _ENDED:
            state.update(stage="rolled_back", why=f"the run {run.state}", rolled_back_at=self.now())
            await self._store(state)
            text = await self._finish_rollback(state)
        elif state["stage"] == "canary" and run.state == "resolved":
            state.update(stage="all", all_at=self.now())
            await self._store(state)
            text = await self._finish_all(state)
        elif state["stage"] == "canary":
            await self.cluster.nudge()  # the canary goes on (or catches up); its watch is resumed
        elif state["stage"] == "all":
            text = await self._finish_all(state)
        elif state["stage"] == "rolled_back":
            text = await self._finish_rollback(state)
        if text and self.deploy.reporter is not None:
            await self.deploy.reporter.notify(
                run, f"▶️ Run #{run.id}: a new leader took up its rollout. {text}"
            )

    async def _finish_all(self, state: dict[str, Any]) -> str:
        sha = str(state["sha"])
        await self.cluster.publish(sha, False)
        self._until_done(state, sha)
        return (
            f"🚦 The canary's watch passed: every other process now fast-forwards to `{sha[:7]}` and reloads."
        )

    async def _finish_rollback(self, state: dict[str, Any]) -> str:
        run_id = int(state["run_id"])
        revert = state.get("revert")
        if not revert:
            revert = await self.deploy.canary_revert(
                run_id, str(state["sha"]), str(state["previous"]), float(state["rolled_back_at"])
            )
            state["revert"] = revert
            await self._store(state)
            await self.deploy.runs.rolled_back(
                run_id, actor="rollout", detail={"revert_sha": revert, "canary": state["canary"]}
            )
        await self.cluster.publish(str(revert), False)
        self._until_done(state, str(revert))
        return (
            f"⏪ Rolled back on the canary ({state['canary']}): only the canary ever ran the fix; every"
            f" process goes to `{str(revert)[:7]}` (the code from before it, on top of the merge)."
        )

    def _until_done(self, state: dict[str, Any], sha: str) -> None:
        """In the background (the leader itself follows under the deploy's lock, which a ship holds):
        once every process runs `sha`, stage `done` and say so; else say who is behind."""

        async def wait() -> None:
            run = await self.deploy.runs.get(int(state["run_id"]))
            names = set(await self.cluster.positions())
            if await self._until_at(names, sha):
                state.update(stage="done", done_at=self.now())
                await self._store(state)
                text = f"✅ Run #{run.id}: every process runs `{sha[:7]}` ({', '.join(sorted(names))})."
            else:
                text = f"⚠️ Run #{run.id}: not every process runs `{sha[:7]}` yet. " + await self._behind(sha)
            if self.deploy.reporter is not None:
                await self.deploy.reporter.notify(run, text)

        task = asyncio.get_running_loop().create_task(wait(), name="rollout-done")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait for the background waits (tests, the benchmark)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def stop(self) -> None:
        """Leadership lost or shutting down: the next leader resumes from the stored stage."""
        for task in list(self._tasks):
            task.cancel()

    async def _until_at(self, names: set[str], sha: str) -> bool:
        """Wait (up to `wait_s`) until every process in `names` runs `sha`."""
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while True:
            positions = await self.cluster.positions()
            if all(positions.get(name) == sha for name in names):
                return True
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(self.poll_s)

    async def _behind(self, sha: str) -> str:
        behind = [
            f"{name} at `{at[:7]}`" for name, at in (await self.cluster.positions()).items() if at != sha
        ]
        return "Not there yet: " + ", ".join(behind) + " (`/run` shows where each process is)."
