"""The core every part of the deploy service shares: its collaborators and hooks, one ship at a time,
and the steps each part ends with (fail a run, close its proposal, say it in chat, swap the code).

`DeployService` (`mendbot.deploy.service`) is built from parts over this core, one module each: the watch
after a deploy (`mendbot.deploy.watches`), rollbacks (`mendbot.deploy.rollback`), re-verifying a branch that
moved (`mendbot.deploy.reverify`) and what people say after approving (`mendbot.deploy.signals`), with
shipping on top. A part uses only this core, never another part.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from mendbot.deploy.approval import ApprovalService
from mendbot.deploy.merge import Merger
from mendbot.deploy.queue import MergeQueue
from mendbot.deploy.recheck import RolesLookup
from mendbot.deploy.reload import Reloader, render
from mendbot.deploy.sources import ApprovalSources
from mendbot.forge.base import Forge, ForgeError, merged_ref, resolve_commit
from mendbot.improve.memory import Memory
from mendbot.improve.proof.verdict import LiveReplay
from mendbot.improve.runs import Run, RunService
from mendbot.kernel.drills import DRILL_USER_ID, is_drill_kind
from mendbot.kernel.errors import UserError
from mendbot.kernel.failpoints import Failpoints
from mendbot.kernel.log import get_logger
from mendbot.observe.incident import Incident
from mendbot.observe.incidents import IncidentService

if TYPE_CHECKING:
    from mendbot.kernel.settings import Settings

__all__ = ["DeployCore", "DeployReporter", "StagedRollout"]

_log = get_logger(__name__)


class DeployReporter(Protocol):
    """The chat side: post a message about a run (with a rollback button when it regressed)."""

    async def deployed(self, run: Run, text: str) -> None: ...

    async def regressed(self, run: Run, text: str) -> None: ...

    async def notify(self, run: Run, text: str) -> None:
        """A message about the run in its channel (re-verification, withdrawals, failures)."""
        ...


class StagedRollout(Protocol):
    """Several processes with a canary (bot/scale/rollout.py): a merged fix goes live on the canary
    first, its watch follows the canary's records only, and the others take it once that passes."""

    async def begin(self, run: Run, merged_sha: str) -> str | None:
        """Store a rollout of `merged_sha` at stage `canary` (before anything moves; the stored one
        when it is this run's already) and return the canary's name; None: no staged rollout."""
        ...

    def canary_is_here(self, canary: str) -> bool:
        """Whether this process is the canary (it then moves its own checkout as a deploy does)."""
        ...

    async def reach_canary(self, run: Run, merged_sha: str) -> str | None:
        """Once the canary runs `merged_sha` (this process: it did; another: told and waited for):
        None, and its watch starts now; else why it does not."""
        ...

    async def canary_of(self, run_id: int) -> str | None:
        """The canary whose records the watch of `run_id` follows (stage `canary`), else None."""
        ...

    async def judge(self, run_id: int) -> str | None:
        """At the end of the canary's watch: its error rate or latency worse than its own baseline
        (why), else None."""
        ...

    async def passed(self, run: Run) -> str:
        """The canary's watch passed: every process takes the fix (stage `all`); a line for chat."""
        ...

    async def regressed(self, run: Run, why: str) -> str:
        """The fix regressed on the canary: the canary goes back, every process ends on one commit
        (stage `rolled_back`); a line for chat."""
        ...


class _Watch(msgspec.Struct):
    run_id: int
    fingerprint: str | None
    files: set[str]
    task: asyncio.Task[None] | None = None
    process: str | None = None  # a canary's watch: only that process's records count


class DeployCore:
    """The state and the shared steps of `DeployService`."""

    def __init__(
        self,
        *,
        settings: Settings,
        runs: RunService,
        approvals: ApprovalService,
        forge: Forge,
        merger: Merger,
        incidents: IncidentService,
        memory: Memory,
        clock: Callable[[], datetime],
        failpoints: Failpoints | None = None,
    ) -> None:
        self._settings = settings
        self._failpoints = failpoints if failpoints is not None else Failpoints.from_environ()
        self.failpoints = self._failpoints  # the process's one set: fire drills arm theirs in it
        self._config = settings.deploy
        self.runs = runs
        self.approvals = approvals
        self.forge = forge
        self.merger = merger
        self._incidents = incidents
        self._memory = memory
        self._clock = clock
        self._watches: dict[int, _Watch] = {}
        self._ship_lock = asyncio.Lock()  # one merge/deploy at a time: the live checkout is shared
        self.queue = MergeQueue()  # ...and approved merges take their turn in approval order
        self.reloader: Reloader | None = None
        self.reporter: DeployReporter | None = None
        self.roles_of: RolesLookup | None = None  # the chat side: an approver's current roles
        # The chat side: messages read again from Discord (approvals and objections follow the human
        # across a restart). None: no Discord attached — approvals from messages and reactions do not
        # count at merge time, since nothing can confirm them.
        self.sources: ApprovalSources | None = None
        # The incident replay against the deployed code (mendbot.improve.proof.verdict): a line for the
        # report, and whether it shows the fix not holding live (the run then regresses at once).
        self.prove_live: Callable[[Run, str], Awaitable[LiveReplay]] | None = None
        # The replay after an emergency rollback: whether the calls behave as before the fix (a line).
        self.prove_rollback: Callable[[Run, str], Awaitable[str]] | None = None
        # The anomaly detector's `forget(kind, fingerprint)`: a fix went live, so the failures before it
        # no longer count toward its kind's error rate — and `recall`, when it is rolled back and they do
        # again (mendbot.observe.detector). Unset: nothing to tell.
        self.fixed: Callable[[str, str | None], None] | None = None
        self.unfixed: Callable[[str, str | None], None] | None = None
        # Proves a proposal branch's new head after a hand commit (mendbot.improve), one line for the chat.
        self.reprove: Callable[[Run, str], Awaitable[str]] | None = None
        # Set by a host that must finish starting before interrupted deploys go on at start-up (the
        # virtual Discord gives a connecting bot a fixed few seconds to settle; a resumed deploy's git,
        # sandbox and replay can take longer on a loaded machine, and must not fail the start).
        self.resume_gate: Callable[[], Awaitable[None]] | None = None
        self._background: set[asyncio.Task[None]] = set()
        # The live replays under way (`replay_live`), and whether this process is stopping: a stop does
        # not wait for a replay, which the next start runs again (mendbot.deploy.watches).
        self._replays: set[asyncio.Task[LiveReplay]] = set()
        self._stopping = False
        self._resumed_watches: list[tuple[_Watch, float]] = []
        # Several processes on one database (bot/scale/cluster.py): an approved merge is handed to the
        # leader (`hand_over(run_id)` returns the chat reply), and a merge that went live is told
        # to the other processes (`went_live(sha, reloaded)`: whether this process reloaded it
        # too). Unset: this process merges and is the only one.
        self.hand_over: Callable[[int], Awaitable[str]] | None = None
        self.went_live: Callable[[str, bool], Awaitable[None]] | None = None
        # With a canary configured (deploy.canary_shards) the fix goes live on it first.
        self.rollout: StagedRollout | None = None

    async def replay_live(self, run: Run, merged_sha: str) -> LiveReplay:
        """The replay of the run's incident against the deployed commit (`prove_live`), as a step a stop
        interrupts instead of waiting for: the process stopping (SIGTERM; a restart past its drain)
        cancels it, and whoever awaited it with it — the run stays `deployed` without a `proof_live`
        event, and the next start replays it and finishes the deploy's report
        (`announce_resumed_watches`)."""
        if self.prove_live is None:
            return LiveReplay()
        if self._stopping:
            raise asyncio.CancelledError  # not begun: the next start runs it
        task = asyncio.ensure_future(self.prove_live(run, merged_sha))
        self._replays.add(task)
        self._failpoints.hit("deploy.during_live_replay")
        try:
            return await task
        except asyncio.CancelledError:
            task.cancel()  # the caller was cancelled (or the stop cancelled the replay): end both
            await asyncio.wait([task], timeout=15)
            raise
        finally:
            self._replays.discard(task)

    def stopping(self) -> None:
        """The process is stopping: interrupt the live replays under way, and begin none."""
        self._stopping = True
        for task in list(self._replays):
            task.cancel()

    async def cancel_background(self, timeout: float) -> None:
        """Stop this service's background work (a re-verification, a deploy resumed at start) where it
        is, and wait up to `timeout` for it to unwind: the next start takes it up again."""
        pending = [task for task in self._background if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    async def is_drill_run(self, run: Run) -> bool:
        """Whether `run` is a fire drill's (bot/improve/drill.py): requested by the drill user, or on
        an incident of the drill path. Such a run never merges, whoever approves it."""
        if run.requester_id == DRILL_USER_ID:
            return True
        if run.incident_id is None:
            return False
        try:
            return is_drill_kind((await self._incidents.fetch(run.incident_id)).kind)
        except UserError:
            return False

    async def _refuse_drill(self, run: Run, actor: str) -> str:
        """A drill's proposal is closed and its run ended, never merged (whatever anyone said)."""
        current = await self.runs.get(run.id)
        await self.runs.event(run.id, "drill_never_merges", actor=actor)
        if current.state == "awaiting_approval":
            await self.runs.transition(run.id, "rejected", actor="pipeline", detail={"drill": True})
        elif not current.terminal:  # merging (handed over, resumed): it fails instead
            await self._fail(current, "a fire drill's proposal never merges")
        await self.close_proposal_of(current, "a fire drill's proposal never merges")
        _log.warning("drill run refused at merge", run_id=run.id, actor=actor)
        return (
            f"🧯 Run #{run.id} is a fire drill: its proposal never merges. It is closed; nothing was merged."
        )

    async def _recorded_merge(self, run: Run) -> str | None:
        """The commit the run's merge was recorded as, if the forge recorded one (any earlier process)."""
        if run.proposal_id is None:
            return None
        return await resolve_commit(self._settings.repo_dir, merged_ref(run.proposal_id))

    async def _incident(self, incident_id: int | None) -> Incident | None:
        if incident_id is None:
            return None
        try:
            return await self._incidents.fetch(incident_id)
        except UserError:
            return None

    async def _fix_undone(self, run: Run) -> None:
        """`run`'s fix is rolled back: the failures before it count toward its incident's kind again."""
        incident = await self._incident(run.incident_id)
        if incident is not None and self.unfixed is not None:
            self.unfixed(incident.kind, incident.fingerprint)

    async def _fail(self, run: Run, reason: str) -> None:
        """End the run as failed with `reason` and close its proposal; the caller says so in chat."""
        current = await self.runs.get(run.id)
        if current.terminal:
            return
        await self.runs.fail(run.id, current.state, reason, actor="pipeline")
        if current.proposal_id is not None:
            await self._close(current.proposal_id, f"run {run.id} failed: {reason[:200]}")

    async def _close(self, proposal_id: int, reason: str) -> None:
        try:
            await self.forge.close(proposal_id, reason)
        except ForgeError as exc:  # merged already, or the forge is unreachable: say so, don't wedge
            _log.warning("proposal_close_failed", proposal_id=proposal_id, error=str(exc))

    async def close_proposal_of(self, run: Run, reason: str) -> None:
        """Close the run's proposal if it is still open (a cancelled, failed or rolled-back run)."""
        if run.proposal_id is not None:
            proposal = await self.forge.get(run.proposal_id)
            if proposal.state == "open":
                await self._close(proposal.id, reason)

    async def _notify(self, run: Run, text: str) -> None:
        if self.reporter is not None:
            await self.reporter.notify(run, text)

    def in_background(self, coro: Any) -> None:
        """Run `coro` as this service's work: `quiesce()` waits for it."""
        self._in_background(coro)

    def _in_background(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @contextlib.asynccontextmanager
    async def _swapping_code(self) -> AsyncIterator[Callable[[list[str]], Awaitable[str]]]:
        """Write the live checkout and reload inside: the hand-edit watcher waits, then sees it applied."""
        if self.reloader is None:

            async def unattached(changed_files: list[str]) -> str:
                return "(no reloader attached: restart to load the change)"

            yield unattached
            return
        reloader = self.reloader
        async with reloader.applying() as apply:

            async def reload(changed_files: list[str]) -> str:
                return render(await apply(reloader.classify(changed_files)))

            yield reload

    async def quiesce(self) -> None:
        """Wait for in-flight ships and re-verifications; watches are long timers and are not waited for."""
        while self._background:
            await asyncio.wait(list(self._background))
        async with self._ship_lock:
            pass
