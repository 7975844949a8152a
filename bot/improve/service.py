"""SelfImprovementAgent: from an allow-listed request to a verified proposal (or a report).

A run goes observe → investigate → plan → edit → verify → propose (fix) or observe →
investigate → report (investigate), each stage a persisted transition with its actor and cost.
The coding agent works in a fresh worktree under the guard — from the first read-only session on,
so not even an investigation runs in the live checkout — and every command it runs, like every
check, runs in the OS sandbox (`mendbot.trust.sandbox`); fix runs refuse to start without one. The pipeline
— not the agent — commits, refuses a change to protected paths unless the run has the security
flag, verifies the exact commit, scans the diff for secrets and opens the proposal. A change that
does not pass the checks is fed back to the agent up to `max_attempts` times and is never
proposed otherwise; a check that reached a sandbox limit (its timeout, the process count, /tmp, the
worktree's growth, CPU time) ends the run with that reason instead.

This module holds the requests — start or join, redo, cancel, pause and resume, a rollback — and the runs'
life in this process: start-up, the stuck-run watchdog, shutdown. The agent's other layers are its base
(`mendbot.improve.progress`: its services, its live runs and what they show), the stages of a run
(`mendbot.improve.stages`), verify-and-propose (`mendbot.improve.propose`) and the proofs after the pipeline
(`mendbot.improve.proving`).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from mendbot.improve.progress import _Live
from mendbot.improve.proving import RunProofs
from mendbot.improve.runs import (
    BUSY_STATES,
    TRANSITIONAL_STATES,
    InvalidTransition,
    Run,
    RunKind,
    RunOrigin,
    slugify,
    state_name,
)
from mendbot.improve.stages import RunStages
from mendbot.kernel.drills import DRILL_USER_ID
from mendbot.kernel.errors import UserError
from mendbot.kernel.log import get_logger
from mendbot.trust.sandbox import SandboxUnavailable

__all__ = ["SelfImprovementAgent"]

_log = get_logger(__name__)

# How long a cancel of a run on a worker waits for the worker to stop it (the agent answers an
# interrupt within seconds) before answering with the state the run is in.
REMOTE_CANCEL_WAIT_S = 30.0


class SelfImprovementAgent(RunStages, RunProofs):
    """The bot working on its own code: requests and the runs' life here; the stages and the proofs in
    the layers it builds on, its services set up by `RunProgress.__init__` (`mendbot.improve.progress`)."""

    background_runs = False  # set by the playground: see `_spawn`

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
        live.task = self._spawn(self._execute(run_id), name=f"run-{run_id}")
        return live.task

    def _spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """A run's task. With `background_runs` (the playground) it starts in an empty context: work the
        virtual Discord does not count as the event's, so every command is answered while a run works
        (`quiesce` still waits for it)."""
        loop = asyncio.get_running_loop()
        if self.background_runs:
            return contextvars.Context().run(loop.create_task, coro, name=name)
        return loop.create_task(coro, name=name)

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
            raise UserError(f"Run #{run_id} is not running (it is {state_name(run.state)}).")
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
        if run.requester_id == DRILL_USER_ID:  # however it was left: a drill is timed, not continued
            raise UserError(
                f"Run #{run_id} was a fire drill's; a drill is not resumed. `/drill` starts a new one."
            )
        if run.state != "interrupted":
            raise UserError(
                f"Run #{run_id} is {state_name(run.state)}; only interrupted runs can be resumed."
            )
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
            rollback = self._execute_rollback(run.id, target.base_sha, merged)
            live.task = self._spawn(rollback, name=f"run-{run.id}")
        return run

    async def on_startup(self) -> list[Run]:
        """After a restart: mark runs that were mid-flight interrupted and remove stray worktrees."""
        # With workers, runs the queue holds or a worker executes are not this process's to interrupt:
        # a dead worker's runs are interrupted by the workers (mendbot.runtime.worker) or the watchdog.
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

    @property
    def working(self) -> bool:
        """Whether a run is working in this process now (its task not done): the playground's clock runs
        with real time meanwhile (bot/tools/world.py)."""
        return any(live.task is not None and not live.task.done() for live in self._live.values())

    async def quiesce(self) -> None:
        tasks = [live.task for live in self._live.values() if live.task is not None and not live.task.done()]
        if tasks:
            await asyncio.wait(tasks)

    async def shutdown(self) -> None:
        """Stop running runs for a shutdown: they become interrupted and resumable."""
        running = [live for live in self._live.values() if live.task is not None and not live.task.done()]
        await asyncio.gather(*(self._stop(live) for live in running))
        if self._gateway is not None:
            await self._gateway.aclose()
