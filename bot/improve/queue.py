"""The run queue: runs the bot defers, executed by `mendbot worker` processes (`improve.run_on: workers`).

A procrastinate app on the PostgreSQL database. Each run is one job of the task `mendbot.run` on the
queue "runs", locked by its run id: `queueing_lock` keeps one waiting job per run, `lock` one executing
job per run, so a run is never executed twice at once however often it is deferred. The bot only
defers and aborts; a worker registers what executes a job (`work`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import procrastinate
from procrastinate.job_context import JobContext
from procrastinate.jobs import Status

from mendbot.db.queue import ensure_queue_schema
from mendbot.kernel.log import get_logger

__all__ = ["RUNS_QUEUE", "TASK_NAME", "Executor", "RunQueue"]

RUNS_QUEUE = "runs"
TASK_NAME = "mendbot.run"

# What executes one run on a worker: (run id, the job's context, for its id and abort reason).
Executor = Callable[[int, JobContext], Awaitable[None]]

_log = get_logger(__name__)


class RunQueue:
    """The procrastinate app on `url`: defer, abort, recover stalled jobs, and work."""

    def __init__(self, url: str, *, pool_size: int = 2, lost_after_s: float = 30.0) -> None:
        self._url = url
        # A worker that has not sent a heartbeat for this long is dead: its jobs are stalled.
        self.lost_after_s = lost_after_s
        self._executor: Executor | None = None
        self._opened = False
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=pool_size)
        )

        @self.app.task(name=TASK_NAME, queue=RUNS_QUEUE, pass_context=True)
        async def execute_run(context: JobContext, run_id: int) -> None:
            if self._executor is None:
                raise RuntimeError("this process defers runs; a `mendbot worker` executes them")
            await self._executor(run_id, context)

        self._task = execute_run

    async def open(self) -> None:
        """Create procrastinate's schema if the database has none yet, then open the connection pool."""
        if await ensure_queue_schema(self._url):
            _log.info("run queue schema created")
        await self.app.open_async()
        self._opened = True

    async def close(self) -> None:
        if self._opened:
            self._opened = False
            await self.app.close_async()

    async def defer(self, run_id: int) -> int:
        """Queue run `run_id` for a worker; the job's id. A run already waiting is refused
        (procrastinate's AlreadyEnqueued)."""
        lock = f"run-{run_id}"
        return await self._task.configure(lock=lock, queueing_lock=lock).defer_async(run_id=run_id)

    async def abort(self, job_id: int) -> Status:
        """Cancel a job that has not started, or ask its worker to abort it; its status afterwards
        (`cancelled`: it will never run; `doing`: the worker is told, and stops the run)."""
        await self.app.job_manager.cancel_job_by_id_async(job_id, abort=True)
        return await self.app.job_manager.get_job_status_async(job_id)

    async def job_of(self, run_id: int) -> int | None:
        """The id of the run's job that is waiting or executing, if there is one."""
        jobs = await self.app.job_manager.list_jobs_async(lock=f"run-{run_id}")
        live = [job.id for job in jobs if job.id is not None and job.status in ("todo", "doing")]
        return max(live) if live else None

    async def stalled(self) -> list[tuple[int, int]]:
        """(job id, run id) of run jobs still `doing` on a worker that stopped sending heartbeats."""
        jobs = await self.app.job_manager.get_stalled_jobs(
            task_name=TASK_NAME, seconds_since_heartbeat=self.lost_after_s
        )
        return [(job.id, int(job.task_kwargs["run_id"])) for job in jobs if job.id is not None]  # type: ignore[arg-type]

    async def give_up(self, job_id: int) -> None:
        """End a stalled job as failed: its lock is released, and the run can be deferred again."""
        await self.app.job_manager.finish_job_by_id_async(job_id, status=Status.FAILED, delete_job=False)

    async def work(self, executor: Executor, *, concurrency: int, name: str) -> None:
        """Execute runs from the queue, `concurrency` at a time, until SIGTERM/SIGINT.

        A signal stops taking jobs and aborts the running ones at once (they become interrupted and
        resumable, as on a bot's shutdown) rather than waiting for runs that may take an hour.
        """
        self._executor = executor
        await self.app.run_worker_async(
            queues=[RUNS_QUEUE],
            concurrency=concurrency,
            name=name,
            shutdown_graceful_timeout=0,
            # NOTIFY wakes the worker at once; polling is the safety net for a wake-up procrastinate
            # loses (one arriving while a fetch that found nothing is still returning): 1 s, not 5.
            fetch_job_polling_interval=1.0,
            stalled_worker_timeout=self.lost_after_s,
            update_heartbeat_interval=self.lost_after_s / 3,
            delete_jobs="successful",
        )
