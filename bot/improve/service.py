"""SelfImprovementAgent: from an allow-listed request to a verified proposal (or a report).

A run goes observe → investigate → plan → edit → verify → propose (fix) or observe →
investigate → report (investigate), each stage a persisted transition with its actor and cost.
The coding agent works in a fresh worktree under the guard — from the first read-only session on,
so not even an investigation runs in the live checkout — and every command it runs, like every
check, runs in the OS sandbox (`bot.trust.sandbox`); fix runs refuse to start without one. The pipeline
— not the agent — commits, refuses a change to protected paths unless the run has the security
flag, verifies the exact commit, scans the diff for secrets and opens the proposal. A change that
does not pass the checks is fed back to the agent up to `max_attempts` times and is never
proposed otherwise; a check that reached a sandbox limit (its timeout, the process count, /tmp, the
worktree's growth, CPU time) ends the run with that reason instead.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bot.db import incidents as incident_queries
from bot.db import proofs as proof_queries
from bot.db.core import Connection
from bot.forge.base import Forge, ForgeError, Proposal
from bot.improve.claims import LIVE_STATES, Claim, ClaimService, covers, plan_files
from bot.improve.evidence import build_evidence
from bot.improve.memory import Lesson, Memory
from bot.improve.policy import Policy
from bot.improve.proof import LiveReplay, Proof, Prover, load_proof
from bot.improve.runs import (
    BUSY_STATES,
    TRANSITIONAL_STATES,
    InvalidTransition,
    Run,
    RunEvent,
    RunKind,
    RunOrigin,
    RunService,
    RunState,
    slugify,
)
from bot.improve.verify import Verification, verify_commit
from bot.improve.workspace import (
    HostileTree,
    NothingToCommitError,
    Workspace,
    Worktree,
    branch_name,
    scan_for_secrets,
)
from bot.kernel.errors import UserError
from bot.kernel.log import bind_context, get_logger
from bot.kernel.prompts import PromptRegistry
from bot.kernel.settings import Settings
from bot.trust.gateway import ModelGateway
from bot.trust.guard import Decision
from bot.trust.path_rules import protected_entry
from bot.trust.sandbox import Sandbox, SandboxUnavailable
from bot.trust.sanitize import untrusted_block

if TYPE_CHECKING:  # the agent module loads claude-agent-sdk (~0.5 s): only when a run starts
    from bot.improve.agent import AgentResult, CodeAgent
    from bot.improve.queue import RunQueue

__all__ = ["RunReporter", "SelfImprovementAgent"]

_log = get_logger(__name__)
_JSON_BLOCK = re.compile(r"```json\s*(\{.*?\})\s*```", re.S)

STAGES = ("observing", "investigating", "planning", "editing", "verifying", "proposing")
# How long a cancel of a run on a worker waits for the worker to stop it (the agent answers an
# interrupt within seconds) before answering with the state the run is in.
REMOTE_CANCEL_WAIT_S = 30.0


class RunReporter(Protocol):
    """The chat side of a run: one status message edited in place, and the final report."""

    async def progress(self, run: Run, lines: list[str]) -> None: ...

    async def report(self, run: Run, text: str) -> None: ...


@dataclass
class _Live:
    """What a running run holds in memory: its task, its agent and its progress lines."""

    task: asyncio.Task[None] | None = None
    agent: CodeAgent | None = None
    worktree: Worktree | None = None
    lines: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    cancelled_by: int | None = None
    # The agent step under way, for the status message: what it is doing now and since when.
    step: str | None = None
    step_started: float = 0.0
    step_calls: int = 0
    reported_at: float = 0.0  # when the status message was last edited (monotonic)
    pending_report: asyncio.Task[None] | None = None
    claim: Claim | None = None  # the files this run may change, from its plan (bot.improve.claims)


def parse_json_block(text: str) -> dict[str, Any]:
    """The last ```json block of an agent's answer, or {} when there is none or it is invalid."""
    for raw in reversed(_JSON_BLOCK.findall(text)):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return {}


class SelfImprovementAgent:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Connection,
        runs: RunService,
        policy: Policy,
        memory: Memory,
        workspace: Workspace,
        forge: Forge,
        prompts: PromptRegistry,
        agent_factory: Callable[[], CodeAgent],
        sandbox: Sandbox,
        gateway: ModelGateway,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._config = settings.improve
        self._db = db
        self.runs = runs
        self.policy = policy
        self.memory = memory
        self.workspace = workspace
        self.forge = forge
        self._prompts = prompts
        self._agent_factory = agent_factory
        self.sandbox = sandbox
        self.gateway = gateway
        self._clock = clock
        self._live: dict[int, _Live] = {}
        self._starting = asyncio.Lock()
        self.prover = Prover(
            db=db,
            workspace=workspace,
            sandbox=sandbox,
            test_timeout_s=self._config.check_timeout_s,
            latency_min_ms=settings.observe.latency.min_ms,
            redact=runs.redactor.text,
            now=lambda: clock().timestamp(),
        )
        self.claims = ClaimService(
            db,
            runs,
            protected=self._config.protected_paths,
            extend_wait_s=self._config.claim_wait_s,
            heartbeat_s=ClaimService.heartbeat_for(self._config.stuck_timeout_s),
        )
        self.reporter: RunReporter | None = None
        # With `improve.run_on: workers`, the queue runs are deferred to (set by the assembly); None:
        # runs execute in this process.
        self.queue: RunQueue | None = None
        # Who executes the runs started here, as recorded in their "executor" events: a restart
        # interrupts only its own process's runs (see on_startup).
        self.executor_name = "bot"

    # -- requests -------------------------------------------------------------------------------

    async def request(
        self,
        *,
        kind: RunKind,
        requester_id: int,
        channel_id: int | None,
        incident_id: int | None,
        description: str,
        security: bool = False,
        fingerprint: str | None = None,
        target_kind: str | None = None,
    ) -> Run:
        """Start a run for an (already authorised) requester, within the policy's limits — or return
        the live run already on the same target (see `request_or_join`).

        `fingerprint` and `target_kind` say what the request is about when no incident covers it
        (a failure never announced, a command that got slow or answers wrongly): the evidence
        is gathered for them.
        """
        run, _ = await self.request_or_join(
            kind=kind,
            requester_id=requester_id,
            channel_id=channel_id,
            incident_id=incident_id,
            description=description,
            security=security,
            fingerprint=fingerprint,
            target_kind=target_kind,
        )
        return run

    async def request_or_join(
        self,
        *,
        kind: RunKind,
        requester_id: int,
        channel_id: int | None,
        incident_id: int | None,
        description: str,
        security: bool = False,
        fingerprint: str | None = None,
        target_kind: str | None = None,
        redo_of: int | None = None,
        origin: RunOrigin = "requested",
    ) -> tuple[Run, bool]:
        """(run, joined): one run per target, whatever `improve.concurrency` allows.

        A request for an incident that a live run is already on — or, without an incident, for the
        same thing in the same words — joins that run (`joined` True) instead of starting a second
        one on another branch. The check and the creation happen under one lock, so two requests
        arriving together produce one run. `origin` says whose it is (the bot's own: `autonomous`),
        which decides the limits and the budget it is held to.
        """
        await self.ensure_ready(kind)
        description = description.strip()[:2000] or "(no description)"
        async with self._starting:  # check-then-create must be atomic, or two requests pass one limit
            existing = await self._live_run_on(incident_id, description)
            if existing is not None:
                _log.info(
                    "run_joined", run_id=existing.id, requester_id=requester_id, incident_id=incident_id
                )
                await self.runs.event(
                    existing.id, "joined", actor=f"user:{requester_id}", detail={"kind": kind}
                )
                return existing, True
            await self.policy.check_start(requester_id, origin)
            run = await self.runs.create(
                kind, requester_id, channel_id, incident_id, description, security=security, origin=origin
            )
            if fingerprint is not None or target_kind is not None:
                await self.runs.event(
                    run.id,
                    "target",
                    actor=f"user:{requester_id}",
                    detail={"fingerprint": fingerprint, "kind": target_kind},
                )
            if redo_of is not None:
                await self.runs.event(
                    run.id, "redo_of", actor=f"user:{requester_id}", detail={"run_id": redo_of}
                )
                await self.runs.event(
                    redo_of, "superseded_by", actor=f"user:{requester_id}", detail={"run_id": run.id}
                )
            await self._launch(run)
        return run, False

    async def _live_run_on(self, incident_id: int | None, description: str) -> Run | None:
        """The live run (not yet deployed, not finished) on the same incident or the same request."""
        slug = slugify(description)
        for run in await self.runs.active():
            if run.state in ("deployed", "watching"):
                continue  # that change already landed; a new request is a new concern
            if incident_id is not None and run.incident_id == incident_id:
                return run
            if incident_id is None and run.incident_id is None and run.slug == slug:
                return run
        return None

    async def redo(self, run_id: int, user_id: int) -> tuple[Run, bool]:
        """Run again on the same target from the current main; the new proposal supersedes the old one.

        For a run that ended (failed — e.g. main moved and conflicts — rejected, cancelled, regressed)
        or is interrupted or awaiting approval (its proposal is closed and the run cancelled first).
        """
        old = await self.runs.get(run_id)
        if old.state not in (
            "failed",
            "rejected",
            "cancelled",
            "regressed",
            "interrupted",
            "awaiting_approval",
        ):
            raise UserError(
                f"Run #{run_id} is {old.state}; only a run that ended or awaits approval can be redone."
            )
        if old.state in ("interrupted", "awaiting_approval"):
            await self.runs.transition(run_id, "cancelled", actor=f"user:{user_id}", detail={"redo": True})
            old = await self.runs.get(run_id)
        await self.close_proposal(old, f"superseded: redone by user {user_id}")
        return await self.request_or_join(
            kind=old.kind,
            requester_id=user_id,
            channel_id=old.channel_id,
            incident_id=old.incident_id,
            description=old.description,
            security=old.security,
            redo_of=old.id,
        )

    async def close_proposal(self, run: Run, reason: str) -> None:
        """Close the run's proposal if it is still open: a cancelled or failed run leaves none behind."""
        if run.proposal_id is None:
            return
        try:
            proposal = await self.forge.get(run.proposal_id)
            if proposal.state == "open":
                await self.forge.close(proposal.id, reason)
        except ForgeError as exc:  # the forge is unreachable: say so in the log, never wedge the run
            _log.warning("proposal_close_failed", run_id=run.id, proposal_id=run.proposal_id, error=str(exc))

    async def wait(self, run_id: int) -> Run:
        """The run once its pipeline here has ended (at once when it is not running here)."""
        live = self._live.get(run_id)
        if live is not None and live.task is not None:
            await asyncio.wait([live.task])
        return await self.runs.get(run_id)

    async def _launch(self, run: Run) -> None:
        """Execute the queued run here, or hand it to the workers; a run that cannot be queued fails
        at once, with the reason reported, rather than waiting in "queued" for nobody."""
        if self.queue is None:
            self._start_local(run.id)
            return
        await self.runs.event(run.id, "executor", actor="system", detail={"executor": "workers"})
        try:
            job_id = await self.queue.defer(run.id)
        except Exception as exc:
            _log.exception("run_defer_failed", run_id=run.id)
            reason = f"could not queue it for a worker: {type(exc).__name__}: {exc}"
            await self.runs.fail(run.id, "queued", reason, actor="system")
            await self._report(run.id, f"❌ Run #{run.id} failed: {reason}")
            return
        _log.info("run_deferred", run_id=run.id, job_id=job_id)

    def _start_local(self, run_id: int) -> asyncio.Task[None]:
        live = self._live[run_id] = _Live()
        live.task = asyncio.get_running_loop().create_task(self._execute(run_id), name=f"run-{run_id}")
        return live.task

    async def start_here(self, run_id: int, *, job_id: int | None = None) -> asyncio.Task[None] | None:
        """A worker takes a queued run: record that this process executes it, and start it here.

        None when the run is no longer queued (cancelled or failed while it waited).
        """
        run = await self.runs.get(run_id)
        if run.state != "queued":
            _log.warning("run_not_queued", run_id=run_id, state=run.state)
            return None
        await self.runs.event(
            run_id,
            "executor",
            actor=self.executor_name,
            detail={"executor": self.executor_name, "job_id": job_id},
        )
        return self._start_local(run_id)

    async def stop_here(self, run_id: int) -> None:
        """Stop a run executing in this process as a shutdown does: it becomes interrupted (resumable)."""
        live = self._live.get(run_id)
        if live is not None and live.task is not None and not live.task.done():
            await self._stop(live)

    async def cancel_requested_by(self, run_id: int) -> int | None:
        """Who asked (on the bot) to cancel a run a worker holds: its last "cancel_requested" event."""
        requested = [e for e in await self.runs.events(run_id) if e.event == "cancel_requested"]
        return int(requested[-1].detail.get("user_id", 0)) if requested else None

    async def cancel_here(self, run_id: int) -> None:
        """On a worker: the cancel someone asked for on the bot, as a local cancel."""
        live = self._live.get(run_id)
        if live is None or live.task is None or live.task.done():
            return
        live.cancelled_by = await self.cancel_requested_by(run_id)
        await self._stop(live)  # without a request (the watchdog failed the run): just stop

    async def cancel(self, run_id: int, user_id: int) -> Run:
        run = await self.runs.get(run_id)
        live = self._live.get(run_id)
        if live is None or live.task is None or live.task.done():
            if self.queue is not None and run.state in BUSY_STATES:
                return await self._cancel_remote(run, user_id)
            if run.state == "awaiting_approval":
                await self.runs.transition(run_id, "cancelled", actor=f"user:{user_id}")
                run = await self.runs.get(run_id)
                await self.close_proposal(run, f"run {run_id} cancelled by user {user_id}")
                return run
            raise UserError(f"Run #{run_id} is not running (it is {run.state}).")
        live.cancelled_by = user_id
        await self._stop(live)
        return await self.runs.get(run_id)

    async def _cancel_remote(self, run: Run, user_id: int) -> Run:
        """Cancel a run the workers have: a job still waiting is cancelled here; a running one is
        aborted, and its worker interrupts the agent and ends the run as cancelled (as a local cancel)."""
        assert self.queue is not None
        await self.runs.event(
            run.id, "cancel_requested", actor=f"user:{user_id}", detail={"user_id": user_id}
        )
        job_id = await self.queue.job_of(run.id)
        status = await self.queue.abort(job_id) if job_id is not None else None
        if status is None or status.value == "cancelled":  # no worker has it: it never started
            run = await self.runs.transition(run.id, "cancelled", actor=f"user:{user_id}")
            await self._report(run.id, f"⏹ Run #{run.id} cancelled before a worker started it.")
            return run
        deadline = time.monotonic() + REMOTE_CANCEL_WAIT_S
        while time.monotonic() < deadline:
            run = await self.runs.get(run.id)
            if run.state not in BUSY_STATES:
                break
            await asyncio.sleep(0.2)
        return run

    @staticmethod
    async def _stop(live: _Live) -> None:
        """Interrupt the agent and let the run unwind; cancel the task only if it does not."""
        assert live.task is not None
        if live.agent is not None:
            await live.agent.interrupt()
            await asyncio.wait([live.task], timeout=10)  # an interrupted session ends on its own, cleanly
        if not live.task.done():
            live.task.cancel()
            await asyncio.wait([live.task], timeout=30)

    async def pause(self, user_id: int) -> int:
        """Stop new runs and interrupt running ones; returns how many were interrupted."""
        await self.policy.pause(user_id)
        running = [run_id for run_id, live in self._live.items() if live.task and not live.task.done()]
        if (
            self.queue is not None
        ):  # and those the workers hold: waiting ones first, before a worker takes them
            held = [
                run for run in await self.runs.active() if run.state in BUSY_STATES and run.id not in running
            ]
            running += [run.id for run in sorted(held, key=lambda run: run.state != "queued")]
        for run_id in running:
            await self.cancel(run_id, user_id)
        return len(running)

    async def resume(self, user_id: int) -> None:
        await self.policy.resume(user_id)

    async def resume_run(self, run_id: int, user_id: int) -> Run:
        """Continue an interrupted run from the start of its pipeline, under the same id."""
        run = await self.runs.get(run_id)
        if run.state != "interrupted":
            raise UserError(f"Run #{run_id} is {run.state}; only interrupted runs can be resumed.")
        await self.ensure_ready(run.kind)
        await self.policy.check_start(user_id)
        run = await self.runs.transition(run_id, "queued", actor=f"user:{user_id}", detail={"resumed": True})
        await self._launch(run)
        return run

    @property
    def available(self) -> bool:
        """Self-improvement needs the bot's own git checkout to work on."""
        return (self._settings.repo_dir / ".git").exists()

    async def ensure_ready(self, kind: RunKind = "fix") -> None:
        """Refuse, saying what to configure, when a run could not possibly work (or not safely)."""
        if not self.available:
            raise UserError(
                f"I can't work on my code: {self._settings.repo_dir.resolve()} is not a git repository. "
                "Run me from a clone (repo_dir in config.yaml)."
            )
        if self._settings.anthropic_api_key is None:
            raise UserError("I can't work on my code without a model: set ANTHROPIC_API_KEY in .env.")
        if kind == "fix":
            try:
                await self.sandbox.probe()
            except SandboxUnavailable as exc:
                raise UserError(
                    f"I won't change my code here: fixes run their code in an OS sandbox, and {exc}."
                    " `mendbot doctor` checks it."
                ) from None

    async def rollback(self, *, target_run_id: int, requester_id: int, channel_id: int | None) -> Run:
        """A run that reverts `target_run_id`'s merge on a branch, then verifies and proposes it.

        It carries the target's security flag: undoing a change to protected paths touches them too.
        """
        await self.ensure_ready("fix")
        target, merged = await self.runs.merged(target_run_id)
        assert target.base_sha is not None
        async with self._starting:
            await self.policy.check_start(requester_id)
            run = await self.runs.create(
                "fix",
                requester_id,
                channel_id,
                target.incident_id,
                f"roll back run {target.id}: {target.description[:80]}",
                security=target.security,
            )
            await self.runs.event(
                run.id,
                "rollback_of",
                actor=f"user:{requester_id}",
                detail={"run_id": target.id, "merged_sha": merged, "base_sha": target.base_sha},
            )
            live = self._live[run.id] = _Live()
            live.task = asyncio.get_running_loop().create_task(
                self._execute_rollback(run.id, target.base_sha, merged), name=f"run-{run.id}"
            )
        return run

    async def _execute_rollback(self, run_id: int, base_sha: str, merged_sha: str) -> None:
        live = self._live[run_id]
        run = await self.runs.get(run_id)
        with bind_context(run_id=run_id):
            try:
                live.worktree = await self.workspace.create(run.id, run.slug)
                run = await self._stage(
                    run,
                    "editing",
                    f"⏪ reverting `{merged_sha[:7]}` on `{live.worktree.branch}`",
                    branch=live.worktree.branch,
                    worktree=str(live.worktree.path),
                    base_sha=live.worktree.base_sha,
                )
                await self.workspace.apply_reverse(live.worktree, base_sha, merged_sha)
                diagnosis = {"root_cause": f"rolling back {merged_sha[:10]}"}
                plan = {
                    "changes": f"revert {base_sha[:10]}..{merged_sha[:10]}",
                    "risk": "low",
                    "rollback": "re-apply the reverted change",
                }
                await self._verify_and_propose(
                    run=run,
                    live=live,
                    diagnosis=diagnosis,
                    plan=plan,
                    fingerprint=None,
                    lesson_note="",
                    attempts=1,
                )
            except _StageFailure as failure:
                current = await self.runs.get(run_id)
                await self.runs.fail(run_id, current.state, failure.reason, actor="pipeline")
                await self._report(run_id, f"❌ Rollback run #{run_id} failed: {failure.reason}")
            except Exception as exc:
                _log.exception("rollback run failed unexpectedly")
                current = await self.runs.get(run_id)
                if current.state not in ("failed", "cancelled"):
                    await self.runs.fail(
                        run_id, current.state, f"{type(exc).__name__}: {exc}", actor="system"
                    )
                await self._report(run_id, f"❌ Rollback run #{run_id} failed: {type(exc).__name__}: {exc}")
            finally:
                current = await self.runs.get(run_id)
                if current.state in ("failed", "cancelled"):
                    await self.close_proposal(current, f"rollback run {run_id} {current.state}")
                if live.worktree is not None and current.state != "awaiting_approval":
                    await self.workspace.remove(live.worktree, delete_branch=True)
                self._live.pop(run_id, None)

    async def on_startup(self) -> list[Run]:
        """After a restart: mark runs that were mid-flight interrupted and remove stray worktrees."""
        # With workers, runs the queue holds or a worker executes are not this process's to interrupt:
        # a dead worker's runs are interrupted by the workers (bot.runtime.worker) or the watchdog.
        interrupted = await self.runs.mark_interrupted_on_start(
            owner=self.executor_name if self.queue is not None else None
        )
        await self.claims.release_ended()
        if not self.available:
            _log.warning(
                "self-improvement unavailable: repo_dir is not a git repository",
                repo_dir=str(self._settings.repo_dir.resolve()),
            )
            return interrupted
        waiting = {Path(run.worktree) for run in await self.runs.active() if run.worktree}
        removed = await self.workspace.cleanup_stray(keep=waiting)
        if removed:
            _log.warning("stray worktrees removed", count=len(removed))
        return interrupted

    async def watchdog(self) -> None:
        """Sweep for stuck runs for as long as the bot runs (a daemon: see `sweep_stuck`)."""
        while True:
            await asyncio.sleep(min(60.0, self._config.stuck_timeout_s / 4))
            try:
                await self.sweep_stuck()
            except Exception:
                _log.exception("watchdog sweep failed")

    async def sweep_stuck(self, now: float | None = None) -> list[Run]:
        """Fail every run that made no progress for `improve.stuck_timeout_s` in a transitional state.

        Nothing else would ever move such a run (a hung check, a git command that never returns, a
        lost task): it is failed with the reason, its proposal closed, its work stopped if it is
        running here, and the failure reported in its channel — a state a person can act on (`redo`).
        """
        now = self._clock().timestamp() if now is None else now
        limit = self._config.stuck_timeout_s
        failed = []
        for stuck in await self.runs.active():
            if stuck.state not in TRANSITIONAL_STATES or now - stuck.updated_at < limit:
                continue
            minutes = (now - stuck.updated_at) / 60
            reason = f"stuck: no progress while {stuck.state} for {minutes:.0f} min (watchdog)"
            try:
                run = await self.runs.fail(stuck.id, stuck.state, reason, actor="watchdog")
            except InvalidTransition:
                continue  # it moved on meanwhile
            live = self._live.get(run.id)
            if live is not None and live.task is not None and not live.task.done():
                await self._stop(live)
            elif self.queue is not None and (job_id := await self.queue.job_of(run.id)) is not None:
                await self.queue.abort(job_id)  # its worker stops it (the run already failed)
            await self.close_proposal(run, reason)
            _log.warning("run_stuck", run_id=run.id, state=run.failure_stage, minutes=round(minutes))
            await self._report(
                run.id,
                f"⏱ Run #{run.id} failed: it made no progress while {run.failure_stage} for "
                f"{minutes:.0f} min. Reply `redo` to this message to start it again.",
            )
            failed.append(run)
        return failed

    async def quiesce(self) -> None:
        tasks = [live.task for live in self._live.values() if live.task is not None and not live.task.done()]
        if tasks:
            await asyncio.wait(tasks)

    async def shutdown(self) -> None:
        """Stop running runs for a shutdown: they become interrupted and resumable."""
        running = [live for live in self._live.values() if live.task is not None and not live.task.done()]
        await asyncio.gather(*(self._stop(live) for live in running))
        await self.gateway.aclose()

    # -- the pipeline ---------------------------------------------------------------------------

    async def _execute(self, run_id: int) -> None:
        run = await self.runs.get(run_id)
        live = self._live[run_id]
        with bind_context(run_id=run_id):
            try:
                await self._pipeline(run, live)
            except asyncio.CancelledError:
                await self._stopped(run_id, live)
            except Exception as exc:
                _log.exception("run failed unexpectedly")
                current = await self.runs.get(run_id)
                if current.state not in ("failed", "cancelled", "interrupted"):
                    await self.runs.fail(
                        run_id, current.state, f"{type(exc).__name__}: {exc}", actor="system"
                    )
                await self._report(run_id, f"❌ Run #{run_id} failed: {type(exc).__name__}: {exc}")
            finally:
                current = await self.runs.get(run_id)
                if current.state in ("failed", "cancelled"):
                    await self.close_proposal(current, f"run {run_id} {current.state}")
                if live.worktree is not None and current.state != "awaiting_approval":
                    await self.workspace.remove(live.worktree, delete_branch=True)
                if current.state not in LIVE_STATES:
                    await self.claims.release(run_id)
                self._live.pop(run_id, None)

    async def _stopped(self, run_id: int, live: _Live) -> None:
        run = await self.runs.get(run_id)
        if live.cancelled_by is not None:
            await self.runs.transition(run_id, "cancelled", actor=f"user:{live.cancelled_by}")
            await self._report(run_id, f"⏹ Run #{run_id} cancelled during {run.state}.")
        elif run.state not in ("interrupted", "failed", "cancelled"):
            await self.runs.transition(run_id, "interrupted", actor="system", detail={"was": run.state})

    async def _stage(self, run: Run, state: RunState, line: str, **fields: Any) -> Run:
        live = self._live[run.id]
        run = await self.runs.transition(run.id, state, actor="pipeline", **fields)
        live.lines.append(line)
        await self._progress(run)
        return run

    async def _progress(self, run: Run) -> None:
        if self.reporter is None:
            return
        live = self._live.get(run.id)
        lines = list(live.lines) if live else []
        if live is not None:
            live.reported_at = time.monotonic()
            if live.step is not None:
                lines.append(await self._step_line(run, live))
        try:
            await self.reporter.progress(run, [self.runs.redactor.text(line) for line in lines])
        except Exception:
            _log.exception("progress report failed")

    async def _step_line(self, run: Run, live: _Live) -> str:
        """What the agent is doing right now: model turns so far, its latest tool call, time in this step."""
        turns = sum(1 for event in await self.runs.events(run.id) if event.event == "model_request")
        elapsed = time.monotonic() - live.step_started
        return (
            f"  ↳ {live.step} · turn {turns} · {live.step_calls} tool call(s) · {elapsed:.0f}s in this step"
        )

    def _saw_tool_call(self, run_id: int, decision: Decision) -> None:
        """The guard's verdict on each tool call (on the agent's task): note it, edit the status soon."""
        live = self._live.get(run_id)
        if live is None or live.step is None:
            return
        target = decision.target if len(decision.target) <= 60 else "…" + decision.target[-59:]
        if decision.target.startswith("/") and live.worktree is not None:
            # Paths inside the worktree are shown from the repository root, as a person reads them.
            root = str(live.worktree.path.resolve()) + "/"
            target = decision.target.removeprefix(root)
        verdict = "" if decision.allowed else " (denied)"
        live.step = f"{decision.tool} `{target[:60]}`{verdict}"
        live.step_calls += 1
        self._progress_soon(run_id, live)

    def _progress_soon(self, run_id: int, live: _Live) -> None:
        """Edit the status message now, or once the throttle interval has passed; one edit pending at most."""
        if live.pending_report is not None and not live.pending_report.done():
            return
        wait = max(0.0, live.reported_at + self._config.progress_interval_s - time.monotonic())

        async def report_later() -> None:
            await asyncio.sleep(wait)
            if live.step is not None:
                await self._progress(await self.runs.get(run_id))

        live.pending_report = asyncio.get_running_loop().create_task(report_later())

    def _start_step(self, live: _Live, what: str) -> None:
        live.step, live.step_started, live.step_calls = what, time.monotonic(), 0

    def _end_step(self, live: _Live) -> None:
        """The step is over: no late edit may overwrite what the pipeline reports next."""
        live.step = None
        if live.pending_report is not None:
            live.pending_report.cancel()
            live.pending_report = None

    async def _report(self, run_id: int, text: str) -> None:
        if self.reporter is None:
            return
        try:
            await self.reporter.report(await self.runs.get(run_id), self.runs.redactor.text(text))
        except Exception:
            _log.exception("final report failed")

    async def _agent(self, run: Run, prompt: str, *, read_only: bool) -> AgentResult:
        live = self._live[run.id]
        assert live.worktree is not None, "the agent works in the run's worktree, never the live checkout"
        agent = live.agent = self._agent_factory()
        remaining = await self.policy.remaining_run_budget(await self.runs.get(run.id))
        if remaining <= 0:
            raise _StageFailure("budget", "the run's budget is spent")
        # The agent reaches the model only through the gateway, with a token for this session: the
        # real key never enters its world, and every request is capped to what the budget has left.
        await self.gateway.start()
        token = self.gateway.open_session(run.id)
        self._start_step(live, "🤖 the agent is starting")
        try:
            result = await agent.run(
                prompt=prompt,
                system_prompt=self._prompts.get("agent/system").body,
                worktree=live.worktree.path,
                read_only=read_only,
                security=run.security,
                max_turns=self._config.max_turns,
                max_budget_usd=remaining,
                base_url=self.gateway.base_url,
                api_key=token,
                on_decision=lambda decision: self._saw_tool_call(run.id, decision),
                claim=None if read_only else live.claim,
            )
        finally:
            self._end_step(live)
            self.gateway.close_session(token)
            live.agent = None
        refusal = self.gateway.refusal(token)
        from bot.improve.agent import describe_denials

        for denial in describe_denials(result.denials):
            await self.runs.event(run.id, "guard_denied", actor="guard", detail=denial)
        await self.runs.event(
            run.id,
            "agent_session",
            actor="agent",
            detail={
                "outcome": result.outcome,
                "turns": result.turns,
                "tools": result.tools_used[:50],
                "error": result.error,
                # The gateway charged each request as it went; this is the CLI's own estimate.
                "cli_cost_usd": result.cost_usd,
            },
        )
        if refusal is not None:
            raise _StageFailure("budget", refusal)
        if result.outcome == "budget":
            raise _StageFailure("budget", f"the agent hit the budget cap (${remaining:.2f})")
        if result.outcome == "interrupted":
            raise asyncio.CancelledError
        if not result.ok:
            raise _StageFailure("agent", result.error or result.outcome)
        return result

    async def _pipeline(self, run: Run, live: _Live) -> None:
        try:
            await self._run_stages(run, live)
        except _StageFailure as failure:
            current = await self.runs.get(run.id)
            stage = current.state
            reason = failure.reason if failure.kind != "budget" else f"budget: {failure.reason}"
            await self.runs.fail(run.id, stage, reason, actor="pipeline")
            await self._write_lesson(current, outcome=f"failed({failure.kind})", root_cause=failure.reason)
            await self._report(run.id, f"❌ Run #{run.id} failed while {stage}: {reason}")

    async def _run_stages(self, run: Run, live: _Live) -> None:
        repo_root = self._settings.repo_dir.resolve()
        run = await self._stage(run, "observing", "🔎 gathering evidence")
        target = next((e.detail for e in await self.runs.events(run.id) if e.event == "target"), {})
        fingerprint = await self._incident_fingerprint(run.incident_id) or target.get("fingerprint")
        target_kind = await self._incident_kind(run.incident_id) or target.get("kind")
        pack = await build_evidence(
            self._db,
            repo_root,
            incident_id=run.incident_id,
            description=run.description,
            recall=self.memory.recall,
            fingerprint=fingerprint,
            kind=target.get("kind"),
            requester_id=run.requester_id,
            now=self._clock().timestamp(),
        )
        lessons = [lesson for lesson in pack.lessons if isinstance(lesson, Lesson)]
        evidence = self.runs.redactor.text(pack.render())
        await self.runs.event(
            run.id,
            "evidence",
            actor="pipeline",
            detail={
                "chars": len(evidence),
                "lessons": [lesson.run_id for lesson in lessons],
                "kinds": pack.kinds,
                "suspects": [f"{s.path}:{s.function}" for s in pack.suspects],
            },
        )

        if run.proposal_id is None:  # a resumed run (or one stopped before recording it): start clean
            stale = Worktree(
                Path(run.worktree or self.workspace.path_for(run.id)),
                run.branch or branch_name(run.id, run.slug),
                run.base_sha or "",
            )
            await self.workspace.remove(stale, delete_branch=True)
        # Every session, read-only ones included, works in the run's own worktree: the live checkout
        # holds .env and data/, and the agent's commands run in a sandbox built around its cwd.
        live.worktree = await self.workspace.create(run.id, run.slug)
        run = await self._stage(
            run,
            "investigating",
            "🧠 investigating (read-only)",
            branch=live.worktree.branch,
            worktree=str(live.worktree.path),
            base_sha=live.worktree.base_sha,
        )
        investigation = await self._agent(
            run,
            self._prompts.get("agent/investigate").render(request=run.description, evidence=evidence),
            read_only=True,
        )
        diagnosis = parse_json_block(investigation.text) or {"root_cause": investigation.text.strip()[:2000]}
        await self.runs.event(run.id, "diagnosis", actor="agent", detail=diagnosis)
        lesson_note = _lessons_note(lessons)
        if run.kind == "investigate":
            await self.runs.transition(run.id, "reported", actor="pipeline")
            await self._write_lesson(
                run,
                outcome="reported",
                root_cause=str(diagnosis.get("root_cause", "")),
                files=list(diagnosis.get("files", [])),
                fingerprint=fingerprint,
            )
            await self._report(run.id, _investigation_report(run, diagnosis) + lesson_note)
            return

        run = await self._stage(run, "planning", "📝 planning the change")
        planning = await self._agent(
            run,
            self._prompts.get("agent/plan").render(diagnosis=json.dumps(diagnosis, indent=2)),
            read_only=True,
        )
        plan = parse_json_block(planning.text) or {"changes": planning.text.strip()[:2000], "risk": "medium"}
        await self.runs.event(run.id, "plan", actor="agent", detail=plan)
        await self._claim_files(run, live, plan)

        run = await self._stage(run, "editing", f"✏️ editing on `{live.worktree.branch}`")
        await self._agent(
            run,
            self._prompts.get("agent/edit").render(
                diagnosis=json.dumps(diagnosis, indent=2), plan=json.dumps(plan, indent=2), evidence=evidence
            ),
            read_only=False,
        )

        await self._verify_and_propose(
            run=run,
            live=live,
            diagnosis=diagnosis,
            plan=plan,
            fingerprint=fingerprint,
            lesson_note=lesson_note,
            prove=True,
            target_kind=target_kind,
        )

    async def _verify_and_propose(
        self,
        *,
        run: Run,
        live: _Live,
        diagnosis: dict[str, Any],
        plan: dict[str, Any],
        fingerprint: str | None,
        lesson_note: str,
        attempts: int | None = None,
        prove: bool = False,
        target_kind: str | None = None,
    ) -> None:
        assert live.worktree is not None
        verification, proof = await self._verify_with_retries(
            run, live, attempts=attempts, prove=prove, fingerprint=fingerprint, target_kind=target_kind
        )
        head = verification.sha
        diff = await self.workspace.diff(live.worktree, live.worktree.base_sha)
        run = await self._stage(run, "proposing", "📦 proposing", verified_sha=head, head_sha=head)
        secrets = scan_for_secrets(diff, self._secret_values())
        if secrets:
            raise _StageFailure(
                "secrets", "the diff contains what looks like a secret: " + "; ".join(secrets[:3])
            )
        diffstat = await self.workspace.diffstat(live.worktree, live.worktree.base_sha)
        files = await self.workspace.changed_files(live.worktree, live.worktree.base_sha)
        run = await self.runs.get(run.id)
        unproven = proof is not None and not proof.proven
        proposal = await self.forge.open_proposal(
            run_id=run.id,
            branch=live.worktree.branch,
            head_sha=head,
            title=self.runs.redactor.text(
                f"mendbot{' (unproven)' if unproven else ''}: {run.description[:60]}"
            ),
            body=self.runs.redactor.text(_proposal_body(run, diagnosis, plan, verification, diffstat, proof)),
        )
        run = await self.runs.transition(
            run.id, "awaiting_approval", actor="pipeline", proposal_id=proposal.id
        )
        live.lines.append(f"✅ proposal ready: {proposal.url}")
        await self._progress(run)
        await self._write_lesson(
            run,
            outcome="proposed",
            root_cause=str(diagnosis.get("root_cause", "")),
            files=files,
            fingerprint=fingerprint,
            fix_commit=head,
        )
        needs_unproven = proof is not None and not proof.meets(self._settings.deploy.require_proof)
        await self._report(
            run.id,
            _proposal_report(run, proposal, diffstat, verification, proof, needs_unproven) + lesson_note,
        )

    async def _verify_with_retries(
        self,
        run: Run,
        live: _Live,
        *,
        attempts: int | None = None,
        prove: bool = False,
        fingerprint: str | None = None,
        target_kind: str | None = None,
    ) -> tuple[Verification, Proof | None]:
        assert live.worktree is not None
        worktree = live.worktree
        attempts = attempts or self._config.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                sha = await self.workspace.commit(
                    worktree, f"mendbot run {run.id}: {run.description[:60]}", run.id
                )
            except NothingToCommitError:
                if attempt == 1:
                    raise _StageFailure("no_change", "the agent made no change") from None
                sha = await self.workspace.head(worktree)
            except HostileTree as exc:
                raise _StageFailure("hostile_tree", str(exc)) from None
            await self._refuse_hostile(run, worktree, sha)
            await self._refuse_protected(run, worktree)
            await self._refuse_unclaimed(run, live)
            run = await self._stage(
                run, "verifying", f"🧪 verifying (attempt {attempt}/{attempts})", attempts=attempt
            )
            verification = await verify_commit(
                self.workspace,
                sha,
                self._config.checks,
                self._config.check_timeout_s,
                sandbox=self.sandbox,
                name=f"run-{run.id}-verify",
                redact=self.runs.redactor.text,
            )
            await self.runs.event(
                run.id,
                "checks",
                actor="pipeline",
                detail={"ok": verification.ok, "sha": verification.sha, "summary": verification.summary()},
            )
            if verification.limit_hit:
                # A fork bomb, a full /tmp, a check that never ends: not a failure to hand back for
                # another attempt, but code that has to be stopped.
                raise _StageFailure("limit", verification.limit_hit)
            if verification.ok:
                if not prove:
                    return verification, None
                proof = await self._prove(run, worktree, verification.sha, fingerprint, target_kind)
                feedback = proof.feedback()
                if feedback is not None and attempt < attempts:
                    # "Your test passes without your fix", "the replay still fails": like failed checks,
                    # something the agent can act on, so it gets another attempt.
                    run = await self._stage(
                        run, "editing", f"🔁 the proof does not hold; attempt {attempt + 1}"
                    )
                    await self._agent(
                        run,
                        self._prompts.get("agent/proof").render(
                            attempt=str(attempt + 1),
                            max_attempts=str(attempts),
                            failures=untrusted_block("proof of the fix", feedback, limit=12_000),
                        ),
                        read_only=False,
                    )
                    continue
                if proof.verdict == "disproven" and self._settings.deploy.require_proof != "off":
                    raise _StageFailure(
                        "proof",
                        "not proposed: the change does not fix the reported failure — " + proof.reason,
                    )
                return verification, proof
            if attempt == attempts:
                raise _StageFailure(
                    "checks", f"the checks still fail after {attempts} attempt(s):\n" + verification.summary()
                )
            failures = untrusted_block(
                "output of the failing checks", verification.failure_report(), limit=12_000
            )
            run = await self._stage(run, "editing", f"🔁 checks failed; attempt {attempt + 1}")
            await self._agent(
                run,
                self._prompts.get("agent/retry").render(
                    attempt=str(attempt + 1), max_attempts=str(attempts), failures=failures
                ),
                read_only=False,
            )
        raise AssertionError("unreachable")

    async def _prove(
        self, run: Run, worktree: Worktree, sha: str, fingerprint: str | None, target_kind: str | None
    ) -> Proof:
        live = self._live[run.id]
        live.lines.append("🧪 proving: the failure on the base, gone on the branch")
        await self._progress(run)
        proof = await self.prover.prove(
            run_id=run.id,
            base_sha=worktree.base_sha,
            sha=sha,
            fingerprint=fingerprint,
            kind=target_kind,
        )
        await self.runs.event(
            run.id,
            "proof",
            actor="pipeline",
            detail={
                "verdict": proof.verdict,
                "reason": proof.reason,
                "overhead_s": round(proof.overhead_s, 2),
            },
        )
        return proof

    async def prove_live(self, run: Run, sha: str) -> LiveReplay:
        """After a deploy: replay the incident once against the deployed commit `sha` (in the sandbox,
        judged from outside like every replay). A failing replay says the fix does not hold live: the
        deploy regresses at once. A rollback's deploy is replayed as a rollback (`prove_rollback`).
        A replay that cannot run is reported and decides nothing; it never fails the deploy.
        """
        events = await self.runs.events(run.id)
        if any(event.event == "rollback_of" for event in events):
            return LiveReplay(await self.prove_rollback(run, sha))
        fingerprint, kind = await self._replay_target(run, events)
        try:
            proof = await self.prover.prove_deployed(
                run_id=run.id, sha=sha, base_sha=run.base_sha or "", fingerprint=fingerprint, kind=kind
            )
        except Exception as exc:
            _log.exception("live replay failed", run_id=run.id)
            line = f"\n⚠️ The replay against the live code could not run: {type(exc).__name__}: {exc}"
            return LiveReplay(self.runs.redactor.text(line))
        if proof is None:
            return LiveReplay()
        await self.runs.event(
            run.id,
            "proof_live",
            actor="pipeline",
            detail={"verdict": proof.verdict, "reason": proof.reason, "sha": sha},
        )
        if proof.proven:
            shown = f"the recorded calls are answered ({len(proof.items)})"
            return LiveReplay(f"\n🧪 Replay against the live code: ✅ {shown}.")
        line = self.runs.redactor.text(f"\n❌ Replay against the live code: {proof.reason}")
        return LiveReplay(line, failed=proof.verdict == "disproven")

    async def prove_rollback(self, run: Run, sha: str) -> str:
        """After a rollback went live at `sha` (a rollback run's deploy, or an emergency rollback of
        `run`): replay the incident and say whether the recorded calls behave again as before the fix.
        One line for the report ("" when nothing is replayable); recorded as a `proof_rollback` event."""
        events = await self.runs.events(run.id)
        target = next((e.detail for e in events if e.event == "rollback_of"), None)
        subject = await self.runs.get(int(target["run_id"])) if target else run
        fingerprint, kind = await self._replay_target(subject, await self.runs.events(subject.id))
        try:
            proof = await self.prover.prove_rollback(
                run_id=run.id, sha=sha, fingerprint=fingerprint, kind=kind
            )
        except Exception as exc:
            _log.exception("rollback replay failed", run_id=run.id)
            line = f"\n⚠️ The replay after the rollback could not run: {type(exc).__name__}: {exc}"
            return self.runs.redactor.text(line)
        if proof is None:
            return ""
        await self.runs.event(
            run.id,
            "proof_rollback",
            actor="pipeline",
            detail={"verdict": proof.verdict, "reason": proof.reason, "sha": sha},
        )
        if proof.proven:
            shown = "; ".join(
                f"`{item.label}`: {item.branch.text if item.branch else '?'}" for item in proof.items
            )
            return self.runs.redactor.text(
                f"\n🧪 Replay after the rollback: ✅ the recorded calls behave as before the fix ({shown})."
            )
        return self.runs.redactor.text(f"\n⚠️ Replay after the rollback: {proof.reason}")

    async def _replay_target(self, run: Run, events: list[RunEvent]) -> tuple[str | None, str | None]:
        """The fingerprint and kind a run's replay is about: its incident's, else what it was asked about."""
        target: dict[str, Any] = next((e.detail for e in events if e.event == "target"), {})
        fingerprint = await self._incident_fingerprint(run.incident_id) or target.get("fingerprint")
        kind = await self._incident_kind(run.incident_id) or target.get("kind")
        return fingerprint, kind

    async def reprove(self, run: Run, head_sha: str) -> str:
        """The proposal branch moved to `head_sha` (a hand commit) and passed its checks: prove
        that commit again — its regression tests against the run's base, the incident replayed —
        so the gate judges what would merge. Stored like the first proof; the newest one counts.

        One line for the re-verification message. A proof that cannot be taken leaves the head
        unproven (the gate then asks for "ship it unproven"); it never fails the run.
        """
        target = next((e.detail for e in await self.runs.events(run.id) if e.event == "target"), {})
        fingerprint = await self._incident_fingerprint(run.incident_id) or target.get("fingerprint")
        kind = await self._incident_kind(run.incident_id) or target.get("kind")
        try:
            proof = await self.prover.prove(
                run_id=run.id, base_sha=run.base_sha or "", sha=head_sha, fingerprint=fingerprint, kind=kind
            )
        except Exception as exc:
            _log.exception("proving the moved head failed", run_id=run.id)
            line = f"\n🧪 The new head could not be proven ({type(exc).__name__}: {exc}): it is **unproven**."
            return self.runs.redactor.text(line)
        await self.runs.event(
            run.id,
            "proof",
            actor="pipeline",
            detail={"verdict": proof.verdict, "reason": proof.reason, "sha": head_sha, "again": True},
        )
        return self.runs.redactor.text(f"\n🧪 Proof of `{head_sha[:7]}`: {proof.headline()}")

    async def proof_of(self, run_id: int) -> Proof | None:
        """The proof stored for a run's proposal (what /run shows), or None when none was taken."""
        return await load_proof(self._db, run_id)

    def _secret_values(self) -> list[str]:
        """The bot's own secrets, which no proposed diff may carry in any form."""
        values = (self._settings.discord_token, self._settings.anthropic_api_key, self._settings.github_token)
        return [value.get_secret_value() for value in values if value is not None]

    async def _refuse_hostile(self, run: Run, worktree: Worktree, sha: str) -> None:
        """The committed change carries nothing that cannot be made inert (`bot.trust.trees`): checked
        on the commit itself, whatever made it."""
        try:
            await self.workspace.check_change(worktree.base_sha, sha)
        except HostileTree as exc:
            raise _StageFailure("hostile_tree", str(exc)) from None

    async def _refuse_protected(self, run: Run, worktree: Worktree) -> None:
        """A run without the security flag may not change the trust base, however the files changed.

        The guard refuses the agent's own edits of protected paths, but code the agent wrote (a test, a
        script) can write anywhere in the worktree; the committed change is what counts.
        """
        if run.security:
            return
        changed = await self.workspace.changed_files(worktree, worktree.base_sha)
        protected = self._config.protected_paths
        touched = [path for path in changed if protected_entry(path, protected)]
        if touched:
            shown = ", ".join(f"`{path}`" for path in touched[:5])
            raise _StageFailure(
                "protected",
                f"the change touches protected paths ({shown}); ask again with security=true if it"
                " must, and it will need the `ship it security` approval",
            )

    async def _claim_files(self, run: Run, live: _Live, plan: dict[str, Any]) -> None:
        """Claim the files the plan declares; while a live run holds any of them, wait and say so."""
        assert live.worktree is not None

        async def waiting(holders: dict[int, list[str]], first: bool) -> None:
            held = {str(run_id): paths for run_id, paths in holders.items()}
            await self.runs.event(run.id, "claim_waiting", actor="pipeline", detail={"holders": held})
            if first:
                shown = "; ".join(
                    f"run #{other} holds {', '.join(f'`{p}`' for p in paths[:5])}"
                    for other, paths in sorted(holders.items())
                )
                live.lines.append(f"⏳ queued: {shown} — I start editing when it ends")
                await self._progress(await self.runs.get(run.id))

        claim, refused = await self.claims.declare(run, live.worktree.path, plan_files(plan), on_wait=waiting)
        live.claim = claim
        await self.runs.event(
            run.id, "claim", actor="pipeline", detail={"paths": claim.paths, "refused": refused}
        )
        line = f"📌 claimed {', '.join(f'`{p}`' for p in claim.paths[:8]) or 'no files'}"
        if refused:
            line += f" (not claimed: {'; '.join(refused[:3])})"
        live.lines.append(line)

    async def _refuse_unclaimed(self, run: Run, live: _Live) -> None:
        """The committed change stays within the claim, however the files changed (code the agent ran)."""
        if live.claim is None or live.worktree is None:
            return
        changed = await self.workspace.changed_files(live.worktree, live.worktree.base_sha)
        outside = [path for path in changed if not covers(live.claim.paths, path)]
        if outside:
            shown = ", ".join(f"`{path}`" for path in outside[:5])
            raise _StageFailure(
                "claim",
                f"the change touches files outside the run's claim ({shown}); claimed: {live.claim.shown()}",
            )

    async def _incident_fingerprint(self, incident_id: int | None) -> str | None:
        if incident_id is None:
            return None
        return await incident_queries.fingerprint(self._db, incident_id)

    async def _incident_kind(self, incident_id: int | None) -> str | None:
        if incident_id is None:
            return None
        return await proof_queries.incident_kind(self._db, incident_id)

    async def _write_lesson(
        self,
        run: Run,
        *,
        outcome: str,
        root_cause: str,
        files: list[str] | None = None,
        fingerprint: str | None = None,
        fix_commit: str | None = None,
    ) -> None:
        await self.memory.write(
            Lesson(
                run_id=run.id,
                fingerprint=fingerprint,
                files=files or [],
                root_cause=root_cause[:2000],
                fix_commit=fix_commit,
                outcome=outcome,
                created_at=self._clock().timestamp(),
            )
        )


class _StageFailure(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _lessons_note(lessons: list[Lesson]) -> str:
    if not lessons:
        return ""
    named = ", ".join(f"run {lesson.run_id} ({lesson.outcome})" for lesson in lessons[:3])
    return f"\n🧠 I have seen this before: {named}."


def _investigation_report(run: Run, diagnosis: dict[str, Any]) -> str:
    files = ", ".join(f"`{f}`" for f in diagnosis.get("files", [])[:5]) or "—"
    return (
        f"🔍 Run #{run.id} — investigation of: {run.description[:200]}\n"
        f"**Root cause:** {str(diagnosis.get('root_cause', '?'))[:800]}\n"
        f"**Files:** {files}\n**Confidence:** {diagnosis.get('confidence', '?')}\n"
        f"**Proposed fix:** {str(diagnosis.get('proposed_fix', '—'))[:600]}\n"
        f"Say `fix this` in reply to have me make the change."
    )


def _proof_section(proof: Proof | None) -> list[str]:
    if proof is None:
        return []
    return ["## Proof", proof.headline(), "", proof.table(), ""]


def _proposal_body(  # noqa: PLR0917 (private renderer called from one place)
    run: Run,
    diagnosis: dict[str, Any],
    plan: dict[str, Any],
    verification: Verification,
    diffstat: str,
    proof: Proof | None = None,
) -> str:
    return "\n".join(
        [
            f"Run-Id: {run.id} · requested by user {run.requester_id}"
            + (f" · incident #{run.incident_id}" if run.incident_id else ""),
            "",
            "## Diagnosis",
            str(diagnosis.get("root_cause", "?")),
            "",
            "## Plan",
            json.dumps(plan.get("changes", plan), indent=2),
            "",
            f"**Risk:** {plan.get('risk', 'medium')}",
            f"**Tests:** {plan.get('tests', '—')}",
            f"**Rollback:** {plan.get('rollback', 'revert this merge')}",
            "",
            *_proof_section(proof),
            "## Checks",
            verification.summary(),
            "",
            "## Diffstat",
            "```",
            diffstat.strip(),
            "```",
            "",
            f"Cost so far: ${run.cost_usd:.2f}",
        ]
    )


def _proposal_report(  # noqa: PLR0917 (private renderer called from one place)
    run: Run,
    proposal: Proposal,
    diffstat: str,
    verification: Verification,
    proof: Proof | None = None,
    needs_unproven: bool = False,
) -> str:
    proven = proof is None or proof.proven
    how = (
        "To ship it anyway, an allow-listed developer replies **ship it unproven**."
        if needs_unproven
        else "To ship it, an allow-listed developer replies **ship it** or reacts ✅ on this message."
    )
    label = "fix ready for review" if proven else "**unproven** fix ready for review"
    proof_text = f"{proof.chat()[:900]}\n" if proof is not None else ""
    return (
        f"🛠 Run #{run.id} — {label}: {proposal.url}\n"
        f"```\n{diffstat.strip()[:800]}\n```\n{proof_text}{verification.summary()}\n"
        f"Cost: ${run.cost_usd:.2f}. {how}"
    )
