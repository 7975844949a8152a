"""Leader and followers: which process runs the once-only work, and how a merge reaches them all.

One bot process (SQLite, or PostgreSQL with every shard in this process) leads alone
(`SoleLeader`): the recorder feeds incidents, the detector and the deploy watch in process, and this
module only runs the stuck-run watchdog.

Several processes, each running some of the Discord shards (`discord.shard_ids`, which settings
allow only with `database.url`), share one PostgreSQL database; one of them leads (`PostgresLeader`,
an advisory lock). Every process records its actions and answers commands.
Only the leader, while it leads:

- tails the shared `actions` table (`ActionTail`: new rows by id, in bounded batches) and feeds
  every process's records to incidents, the anomaly detector and the deploy watch — so incidents
  are opened, announced and handed to the autonomy service by the leader only;
- runs the stuck-run watchdog;
- merges: an approval counted on any process (the run is then `merging` in the database) is
  handed over with `NOTIFY mendbot_deploy`; the leader merges every `merging` run it is not
  merging already (the existing guards; a run a dead leader left `merging` goes on from its
  recorded merge), resumes watches and interrupted deploys when it becomes leader, and posts the
  outcome in the run's channel;
- publishes each merge that went live: the `cluster.deployed` setting plus `NOTIFY
  mendbot_deployed, '<sha>'`. Every process follows it (`follow`): fetch it (GitHub forge),
  fast-forward its checkout with the deploy guard and reload what differs from the code it runs.
  One that cannot (hand edits) says so in its log and /health and stays where it is.
- with `deploy.canary_shards`, stages each merge (bot/scale/rollout.py): the canary takes it first,
  the others only once the canary's watch passed; a regression there takes the canary back.

Nothing is announced twice or lost across a change of leader: the new leader reads the incidents from the
database before it feeds anything (a storm an old leader announced attaches to that incident), it
starts the tail at the position the old leader stored after the incidents of every record before it
were written (`cluster.actions_seen`; records after it are fed again, so nothing is lost), with
the detector's windows restored from the records before it (a storm that began under the old leader
goes on counting), and it announces a stored incident that has no announcement yet (the old leader
died in between).
Followers read incidents from the database (`IncidentService.refresh`) every `poll_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec

from mendbot.db import actions as action_queries
from mendbot.db import cluster as queries
from mendbot.db.core import Connection
from mendbot.db.records import ActionRecord
from mendbot.db.runs import get_setting, set_setting
from mendbot.deploy.service import DeployService
from mendbot.forge.base import resolve_commit
from mendbot.improve.service import SelfImprovementAgent
from mendbot.kernel.daemons import Daemons
from mendbot.kernel.log import get_logger
from mendbot.kernel.settings import Settings
from mendbot.observe.detector import AnomalyDetector, restore_windows
from mendbot.observe.incidents import IncidentService
from mendbot.scale.leader import Leadership, process_label, shares_database
from mendbot.scale.rollout import Rollout, canary_name

__all__ = [
    "DEPLOYED_CHANNEL",
    "DEPLOYED_KEY",
    "DEPLOY_CHANNEL",
    "PROCESS_PREFIX",
    "TAIL_KEY",
    "ActionTail",
    "Cluster",
]

_log = get_logger(__name__)

DEPLOY_CHANNEL = "mendbot_deploy"  # payload: a run id whose approval was counted (now `merging`)
DEPLOYED_CHANNEL = "mendbot_deployed"  # payload: the commit that went live on the leader
TAIL_KEY = "cluster.actions_seen"  # every action id up to this one was fed by a leader
DEPLOYED_KEY = "cluster.deployed"  # {"sha": …, "at": …}: the last commit that went live
PROCESS_PREFIX = "cluster.process."  # + the process's shards: {"sha": …, "at": …}, the code it runs


class ActionTail:
    """New rows of `actions` by id, each once, in batches of at most `batch`.

    Ids come from one sequence, but a writer's transaction may commit after a later one: an id
    missing below the highest seen is waited for up to `gap_wait_s` (a rolled-back insert leaves a
    gap for ever). `settled` is the id up to which every row has been returned or given up on.
    """

    def __init__(
        self,
        db: Connection,
        settled: int,
        *,
        batch: int = 500,
        gap_wait_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self.settled = settled
        self.batch = batch
        self.gap_wait_s = gap_wait_s
        self._clock = clock
        self._seen: set[int] = set()  # returned, above `settled`
        self._gaps: dict[int, float] = {}  # missing id → when it was first missed
        self._scanned = settled  # ids up to here were checked for gaps
        self.behind = False  # the last batch was full: poll again at once

    async def poll(self) -> list[ActionRecord]:
        found = await action_queries.after(self._db, self.settled, self.batch)
        self.behind = len(found) == self.batch
        fresh = [record for row_id, record in found if row_id not in self._seen]
        self._seen.update(row_id for row_id, _ in found)
        now = self._clock()
        top = max(self._seen, default=self.settled)
        for missing in range(self._scanned + 1, top):
            if missing not in self._seen:
                self._gaps.setdefault(missing, now)
        self._scanned = max(self._scanned, top)
        while True:
            following = self.settled + 1
            if following in self._seen:
                self._seen.discard(following)
                self._gaps.pop(following, None)
            elif following in self._gaps and now - self._gaps[following] >= self.gap_wait_s:
                del self._gaps[following]
            else:
                break
            self.settled = following
        return fresh


class Cluster(msgspec.Struct, dict=True):
    """This process's part: leader work while it leads, following merges always (module docstring).

    (`dict=True`: one process's instance can be given a method of its own, as a test that follows
    one process's moves among several does.)"""

    settings: Settings
    db: Connection
    leadership: Leadership
    incidents: IncidentService
    detector: AnomalyDetector
    deploy: DeployService
    improve: SelfImprovementAgent
    poll_s: float = 0.5
    batch: int = 500
    lookback_s: float = 60.0  # a leader absent longer does not replay older records
    gap_wait_s: float = 5.0
    deploy_poll_s: float = 2.0  # merging runs are looked for this often even without a notification
    # Set by the Ship cog once chat is up: merges, watches and their reports need it.
    deploy_ready: asyncio.Event = msgspec.field(default_factory=asyncio.Event)
    loaded_sha: str | None = None  # the commit whose code this process runs
    follow_problem: str | None = None  # why the live checkout is not at the last merge
    tail_position: int | None = None
    rollout: Rollout | None = None  # with a canary configured (bot/scale/rollout.py)
    _shipping: set[int] = msgspec.field(default_factory=set)
    _tasks: set[asyncio.Task[Any]] = msgspec.field(default_factory=set)

    @property
    def shared(self) -> bool:
        """Whether other bot processes share the database (`shares_database`)."""
        return shares_database(self.settings)

    @property
    def repo(self) -> Path:
        return self.settings.repo_dir.resolve()

    async def start(self, daemons: Daemons) -> None:
        """Start the leadership and this process's part as daemons (bot/kernel/daemons.py)."""
        daemons.start("leadership", self.leadership.run())
        daemons.start("run-watchdog", self.leadership.while_leader(self.improve.watchdog))
        if not self.shared:
            return
        self.loaded_sha = await _head(self.repo)
        await self.record_position()
        self.deploy.hand_over = self.hand_over
        self.deploy.went_live = self.publish
        if canary_name(self.settings) is not None:
            self.rollout = Rollout(self.settings, self.db, self.deploy, self, self.incidents.now)
            self.deploy.rollout = self.rollout
        daemons.start("leader-work", self.leadership.while_leader(self.lead))
        daemons.start("incident-refresh", self._refresh_while_following())
        daemons.start("merge-follower", self._follow_merges())

    @property
    def process_name(self) -> str:
        """This process among the others: the shards it runs (stable across its restarts)."""
        return process_label(self.settings)

    async def record_position(self) -> None:
        """Store which commit this process runs, for every process's /metrics and /run to show."""
        if self.loaded_sha is None:
            return
        try:
            await set_setting(
                self.db,
                PROCESS_PREFIX + self.process_name,
                {"sha": self.loaded_sha, "at": self.incidents.now()},
            )
        except Exception:
            _log.exception("storing this process's commit failed")

    async def positions(self) -> dict[str, str]:
        """Which commit each bot process runs, by process name (empty with a single process)."""
        if not self.shared:
            return {}
        stored = await queries.settings_under(self.db, PROCESS_PREFIX)
        return {name: str(value.get("sha", "")) for name, value in stored.items()}

    async def live_on(self, merged_sha: str, run_id: int | None = None) -> str | None:
        """For /run: which process runs the run's merged commit and which does not (None with a single
        process, where the deploy report says it all), after the stage of the run's staged rollout."""
        positions = await self.positions()
        if not positions:
            return None
        parts = [
            f"{name} ✅ `{sha[:7]}`" if sha == merged_sha else f"{name} at `{sha[:7]}`"
            for name, sha in positions.items()
        ]
        shown = "**Live on:** " + ", ".join(parts)
        stage = await self.rollout.describe(run_id) if self.rollout and run_id is not None else None
        return f"{stage}\n{shown}" if stage else shown

    def health(self) -> dict[str, object]:
        return {
            "commit": self.loaded_sha,
            "leader": self.leadership.is_leader,
            "leadership": self.leadership.name,
            "merge_follow_problem": self.follow_problem,
            "actions_tail": self.tail_position,
        }

    def feed(self, record: ActionRecord) -> None:
        """What the recorder subscription does in a single process, for a record of any process."""
        # Incidents count a record before the detector sees it (bot/runtime/services.py says why).
        self.incidents.observe(record)
        self.detector.process(record)
        self.deploy.observe(record)

    # -- the leader ---------------------------------------------------------------------------

    async def lead(self) -> None:
        """The once-only work of a term as leader; cancelled when leadership is lost."""
        try:
            tail = await self._begin_term()
            _log.info("leader tails actions", after_id=tail.settled)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._tail(tail))
                group.create_task(self._coordinate_merges())
        finally:
            self.deploy.stop()  # watch timers: the next leader resumes them from the runs' events
            if self.rollout is not None:
                self.rollout.stop()  # ...and the rollout from its stored stage
            # A merge must not go on beside the next leader's: it resumes this one from the
            # database (the run is still `merging`; a recorded merge is not merged again).
            for task in list(self._tasks):
                task.cancel()
            self.tail_position = None

    async def _begin_term(self) -> ActionTail:
        """Catch up with the database before feeding anything (module docstring); tried until it
        works — a leader whose term work ended on a storage error would hold the lock doing nothing."""
        while True:
            try:
                await self.incidents.refresh()
                announced = await self.incidents.announce_unannounced()
                if announced:
                    _log.warning("incidents announced for a previous leader", count=announced)
                tail = ActionTail(
                    self.db, await self._start_position(), batch=self.batch, gap_wait_s=self.gap_wait_s
                )
                # Fingerprints recorded before are not new, wherever they were recorded — but those
                # first seen in the records about to be fed are: the previous leader may not have
                # announced them (what this process loaded when it started may hold them already).
                first = await action_queries.after(self.db, tail.settled, 1)
                before = first[0][1].ts if first else self.incidents.now()
                self.detector.use_known(await action_queries.known_fingerprints(self.db, before=before))
                # The windows go on from what the records before the tail's start put in them.
                await restore_windows(self.db, self.detector, upto=tail.settled, now=self.incidents.now())
                return tail
            except Exception:
                _log.exception("starting the leader's work failed; trying again")
                await asyncio.sleep(self.deploy_poll_s)

    async def _start_position(self) -> int:
        stored = await get_setting(self.db, TAIL_KEY)
        position = int(stored) if stored is not None else await action_queries.last_id(self.db)
        recent = await action_queries.last_id_before(self.db, self.incidents.now() - self.lookback_s)
        return max(position, recent)

    async def _tail(self, tail: ActionTail) -> None:
        stored: int | None = None  # the start is stored too: a next leader goes on from here at least
        while True:
            try:
                await self.incidents.refresh()
                records = await tail.poll()
                for record in records:
                    self.feed(record)
                # Stored only once the incidents these records opened have rows: a leader that
                # dies before then leaves them to be fed again by the next one.
                await self.incidents.quiesce()
                if tail.settled != stored:
                    await set_setting(self.db, TAIL_KEY, tail.settled)
                    stored = self.tail_position = tail.settled
            except Exception:
                _log.exception("action tail failed; trying again")
                tail.behind = False
            if not tail.behind:
                await asyncio.sleep(self.poll_s)

    async def _coordinate_merges(self) -> None:
        await self.deploy_ready.wait()
        try:
            await self.deploy.resume_watches()
            await self.deploy.announce_resumed_watches("a new leader took up its watch")
            await self.deploy.continue_interrupted_deploys()
            if self.rollout is not None:
                await self.rollout.resume()
        except Exception:
            _log.exception("resuming deploys failed")
        async for _ in self._notifications(DEPLOY_CHANNEL, self.deploy_poll_s):
            try:
                await self.merge_approved()
            except Exception:
                _log.exception("looking for approved merges failed")

    async def merge_approved(self) -> None:
        merging = [run for run in await self.improve.runs.active() if run.state == "merging"]
        # A fix on the canary only: other merges wait until it passes or goes back.
        holding = await self.rollout.holding() if self.rollout is not None else None
        for run in sorted(merging, key=lambda run: run.updated_at):
            if run.id in self._shipping or (holding is not None and run.id != holding):
                continue
            self._shipping.add(run.id)
            task = asyncio.get_running_loop().create_task(self._ship(run.id), name=f"ship-{run.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _ship(self, run_id: int) -> None:
        try:
            text = await self.deploy.ship(run_id, actor="leader")
            if self.deploy.reporter is not None:
                await self.deploy.reporter.notify(await self.improve.runs.get(run_id), text)
        except Exception:
            _log.exception("handed-over merge failed", run_id=run_id)
        finally:
            self._shipping.discard(run_id)

    async def hand_over(self, run_id: int) -> str:
        """DeployService: an approval counted here; the leader merges (whichever process that is).

        The run is `merging` in the database already: the notification only wakes the leader's
        `merge_approved` pass, which also runs every `deploy_poll_s` and when a process starts leading."""
        if self.shared:
            await queries.notify(self.db, DEPLOY_CHANNEL, str(run_id))
        _log.info("merge handed to the leader", run_id=run_id)
        return f"🔀 Run #{run_id} is in the merge queue; the outcome is posted in its channel."

    async def publish(self, sha: str, reloaded: bool) -> None:
        """DeployService: `sha` went live here; every other process follows it. One that found the
        checkout there already (a previous leader moved it and died) did not reload: it follows
        its own notification like the others."""
        if reloaded:
            self.loaded_sha = sha
            await self.record_position()
        await set_setting(self.db, DEPLOYED_KEY, {"sha": sha, "at": self.incidents.now()})
        await queries.notify(self.db, DEPLOYED_CHANNEL, sha)
        _log.info("merge published", sha=sha)

    async def nudge(self) -> None:
        """Wake every process's merge follower (a rollout's stage changed) without publishing."""
        await queries.notify(self.db, DEPLOYED_CHANNEL, "rollout")

    # -- every process ------------------------------------------------------------------------

    async def _refresh_while_following(self) -> None:
        """Followers read incidents from the database (the leader refreshes in its tail)."""
        while True:
            await asyncio.sleep(self.poll_s)
            if self.leadership.is_leader:
                continue
            try:
                await self.incidents.refresh()
            except Exception:
                _log.exception("incident refresh failed")

    async def _follow_merges(self) -> None:
        async for _ in self._notifications(DEPLOYED_CHANNEL, 30.0):
            try:
                # The canary of a staged rollout runs its fix; every process else the last publish.
                target = await self.rollout.target() if self.rollout is not None else None
                if target is None:
                    stored = await get_setting(self.db, DEPLOYED_KEY)
                    target = str(stored["sha"]) if stored and stored.get("sha") else None
                if target is not None and target != self.loaded_sha:
                    await self.follow(target)
            except Exception:
                _log.exception("following a merge failed")

    async def follow(self, sha: str) -> bool:
        """Bring this process to the merged `sha`; False (and why, in health) if it cannot."""
        forge = self.deploy.forge
        if await resolve_commit(self.repo, sha) is None and forge.name == "github":
            await forge.main_sha()  # fetches main from GitHub, where the merge is
        if await resolve_commit(self.repo, sha) is None and self.rollout is not None:
            await self.rollout.materialise(sha)  # a canary's revert: built here from the stored rollout
        live, report = await self.deploy.follow(sha, self.loaded_sha or "")
        if not live.ok:
            if self.follow_problem is None:
                _log.warning("merge not followed", sha=sha, reason=live.reason)
            self.follow_problem = f"not at the merged {sha[:12]}: {live.reason}"
            return False
        self.loaded_sha, self.follow_problem = sha, None
        await self.record_position()
        _log.info("merge followed", sha=sha, reload=report)
        return True

    async def _notifications(self, channel: str, every: float) -> AsyncIterator[str | None]:
        """The payloads of `NOTIFY channel`, and None after each (re)connect and `every` s of quiet:
        a notification sent while nobody listened is found by looking at the database then."""
        import psycopg  # a cluster is on PostgreSQL; a sole process never loads the driver
        from psycopg import sql

        url = self.settings.database.url
        assert url is not None
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    yield None
                    while True:
                        heard = False
                        async for notice in conn.notifies(timeout=every, stop_after=1):
                            heard = True
                            yield notice.payload
                        if not heard:
                            yield None
            except (psycopg.Error, OSError) as exc:
                _log.warning("listening failed; connecting again", channel=channel, error=str(exc))
            await asyncio.sleep(1.0)

    async def quiesce(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        if self.rollout is not None:
            self.rollout.stop()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def _head(repo: Path) -> str | None:
    try:
        return await resolve_commit(repo, "HEAD")
    except Exception:
        return None  # not a git repository: there is nothing to follow
