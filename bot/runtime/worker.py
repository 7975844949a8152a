"""`mendbot worker`: a process that executes improvement runs taken from the run queue.

With `improve.run_on: workers` the bot defers each run to the PostgreSQL queue (`mendbot.improve.queue`);
a worker takes it and runs the same pipeline the bot would — evidence, the coding agent in a
worktree and the sandbox, the checks, the proposal — on a clone of its own (`<data_dir>/clone`,
reset to the forge's main before each run), pushing the branch to the forge. No Discord: progress
and the report go to the database (`mendbot.improve.relay.DatabaseReporter`), which the bot relays.

A worker that dies leaves its jobs "doing" with no heartbeat; any worker finds them (at start and
then periodically), interrupts their runs (resumable with `/run N action:resume`) and ends the jobs.
"""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from procrastinate.job_context import AbortReason, JobContext

from mendbot.db import core
from mendbot.db.retry import RetryPolicy, StorageHealth, Writes
from mendbot.improve.queue import RunQueue
from mendbot.improve.relay import DatabaseReporter
from mendbot.improve.runs import InvalidTransition
from mendbot.improve.service import SelfImprovementAgent
from mendbot.kernel import startgc
from mendbot.kernel.git import git
from mendbot.kernel.log import bind_context, get_logger
from mendbot.kernel.prompts import PromptRegistry
from mendbot.kernel.settings import Settings
from mendbot.runtime.mending import build_improve
from mendbot.runtime.services import PROMPTS_DIR
from mendbot.trust.redact import Redactor

__all__ = ["Worker", "run_worker"]

_log = get_logger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class Worker:
    """One worker process: its clone, its improvement agent and the queue it works on."""

    def __init__(self, improve: SelfImprovementAgent, queue: RunQueue, clone: Path, name: str) -> None:
        self.improve = improve
        self.queue = queue
        self.clone = clone
        self.name = name
        self._refreshing = asyncio.Lock()

    async def refresh_clone(self) -> str:
        """Bring the clone's main to the forge's main (fetched with the forge's credentials)."""
        async with self._refreshing:
            sha = await self.improve.forge.main_sha()
            await git(self.clone, "reset", "--quiet", "--hard", sha)
            return sha

    async def execute(self, run_id: int, context: JobContext) -> None:
        """One job: the run, executed here until it ends — or until it is aborted: a cancel asked
        for on the bot ends it cancelled, a shutdown interrupted (resumable)."""
        with bind_context(run_id=run_id, worker=self.name):
            try:
                await self.refresh_clone()
                task = await self.improve.start_here(run_id, job_id=context.job.id)
            except asyncio.CancelledError:
                await self._aborted_before_start(run_id, context)
                raise
            except Exception as exc:  # the forge is unreachable: the run must not wait in "queued"
                _log.exception("clone_refresh_failed")
                await self._fail_queued(run_id, f"the worker could not fetch main: {exc}")
                return
            if task is None:
                return
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if context.abort_reason() == AbortReason.USER_REQUEST:
                    await self.improve.cancel_here(run_id)
                else:
                    await self.improve.stop_here(run_id)
                    await self._report(
                        run_id,
                        f"⏸ Run #{run_id} was interrupted: its worker is shutting down. "
                        f"`/run {run_id} action:resume` continues it.",
                    )
                raise

    async def _aborted_before_start(self, run_id: int, context: JobContext) -> None:
        """The job was aborted while the clone was being refreshed: the run never started, and
        nobody else will take it — end it as the abort meant (cancelled, or interrupted)."""
        run = await self.improve.runs.get(run_id)
        if run.state != "queued":
            return
        try:
            if context.abort_reason() == AbortReason.USER_REQUEST:
                user_id = await self.improve.cancel_requested_by(run_id)
                await self.improve.runs.transition(run_id, "cancelled", actor=f"user:{user_id or 0}")
                await self._report(run_id, f"⏹ Run #{run_id} cancelled before it started.")
            else:
                await self.improve.runs.transition(
                    run_id, "interrupted", actor="system", detail={"was": "queued"}
                )
                await self._report(
                    run_id,
                    f"⏸ Run #{run_id} was interrupted: its worker is shutting down. "
                    f"`/run {run_id} action:resume` continues it.",
                )
        except InvalidTransition:
            pass  # it moved on meanwhile (the watchdog, a cancel on the bot)

    async def _fail_queued(self, run_id: int, reason: str) -> None:
        try:
            await self.improve.runs.fail(run_id, "queued", reason, actor=self.name)
        except InvalidTransition:
            return  # no longer queued (cancelled meanwhile)
        await self._report(run_id, f"❌ Run #{run_id} failed: {reason}")

    async def _report(self, run_id: int, text: str) -> None:
        if self.improve.reporter is not None:
            run = await self.improve.runs.get(run_id)
            await self.improve.reporter.report(run, self.improve.runs.redactor.text(text))

    async def recover_stalled(self) -> list[int]:
        """Interrupt the runs of jobs whose worker died, and end those jobs; the run ids."""
        recovered = []
        for job_id, run_id in await self.queue.stalled():
            run = await self.improve.runs.get(run_id)
            try:
                run = await self.improve.runs.transition(
                    run_id, "interrupted", actor="system", detail={"was": run.state, "worker_lost": True}
                )
            except InvalidTransition:
                pass  # it ended (or was interrupted) already; the job is stale either way
            else:
                recovered.append(run_id)
                await self._report(
                    run_id,
                    f"⏸ Run #{run_id} was interrupted: the worker executing it stopped while "
                    f"{run.interrupted_from or 'running'}. `/run {run_id} action:resume` continues it.",
                )
            await self.queue.give_up(job_id)
        if recovered:
            _log.warning("runs_of_a_lost_worker_interrupted", run_ids=recovered)
        return recovered

    async def recover_stalled_forever(self) -> None:
        while True:
            await asyncio.sleep(self.queue.lost_after_s / 2)
            try:
                await self.recover_stalled()
            except Exception:
                _log.exception("stalled job recovery failed")


async def prepare_clone(clone: Path) -> None:
    """An empty repository at `clone` the first time; its main is fetched from the forge per run."""
    if await asyncio.to_thread((clone / ".git").exists):
        return
    await asyncio.to_thread(clone.mkdir, parents=True, exist_ok=True)
    await git(clone, "init", "--quiet", "-b", "main")


async def run_worker(settings: Settings) -> int:
    """Execute runs from the queue until SIGTERM/SIGINT; the exit code."""
    url = settings.database.url
    assert url is not None  # refuse_workers_without_store
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    clone = (settings.data_dir / "clone").resolve()
    await prepare_clone(clone)
    settings = msgspec.structs.replace(settings, repo_dir=clone)
    db = await core.connect(url, timeout_ms=settings.storage.busy_timeout_ms)
    storage = settings.storage
    writes = Writes(RetryPolicy(storage.write_attempts, storage.retry_backoff_s), StorageHealth())
    prompts = PromptRegistry(PROMPTS_DIR)
    prompts.load_all()
    startgc.resume()  # built: the garbage collector's pause for start-up (mendbot.__main__) ends
    name = f"worker:{socket.gethostname()}:{os.getpid()}"
    queue = RunQueue(
        url, pool_size=settings.improve.concurrency + 2, lost_after_s=settings.improve.worker_lost_after_s
    )
    improve: SelfImprovementAgent | None = None
    recovery: asyncio.Task[None] | None = None
    try:
        improve = await build_improve(
            settings, db, prompts, _now, Redactor.from_settings(settings), writes=writes
        )
        improve.executor_name = name
        improve.reporter = DatabaseReporter(db, improve.runs, actor=name)
        await queue.open()
        worker = Worker(improve, queue, clone, name)
        # Worktrees left by this worker's previous life (a crash): nothing executes here yet.
        await improve.workspace.cleanup_stray(keep=set())
        await worker.recover_stalled()
        recovery = asyncio.get_running_loop().create_task(worker.recover_stalled_forever())
        _log.info("worker_started", worker=name, concurrency=settings.improve.concurrency)
        await queue.work(worker.execute, concurrency=settings.improve.concurrency, name=name)
    finally:
        if recovery is not None:
            recovery.cancel()
        if improve is not None:
            await improve.shutdown()
        await queue.close()
        await db.close()
    _log.info("worker_stopped", worker=name)
    return 0
