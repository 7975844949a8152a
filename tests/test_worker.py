"""Runs on workers (`improve.run_on: workers`): the bot defers a run to the PostgreSQL queue, a
`mendbot worker` process executes it in a clone of its own with the real bundled CLI against the
model double, pushes the branch to a bare remote behind the GitHub double, and what it reports comes
back to the bot through the database (run events, NOTIFY, the relay)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from mendbot.db import core
from mendbot.db import runs as run_queries
from mendbot.improve.relay import DatabaseReporter, RunEventRelay
from mendbot.improve.runs import Run, RunService
from mendbot.kernel.settings import ConfigError, Settings, load_settings, refuse_workers_without_store
from mendbot.runtime.services import Services, build_services
from tests.harness.discord import make_settings
from tests.harness.github_double import GitHubDouble
from tests.harness.model_double import Hold, ModelDouble, Turn, text, tool_use
from tests.harness.repo import copy_of_bot, git
from tests.test_improve_e2e import BUG, DIAGNOSIS, FIX, PLAN, _json_turn

pytestmark = [pytest.mark.cli, pytest.mark.engines]

REPO = Path(__file__).resolve().parent.parent
TOKEN = "ghs_workerTestToken000000000000000000"
CHECK = "python -m pytest -q -p no:cacheprovider tests/fixtures/check_buggy_dice.py"
DESCRIPTION = "the roll command divides by zero for six-sided dice (scale_for in buggy_dice)"


@dataclass
class RecordingReporter:
    """The chat side, as the Improve cog would be: every progress update and report it was handed."""

    progress_calls: list[tuple[int, list[str]]] = field(default_factory=list)
    reports: list[tuple[int, str]] = field(default_factory=list)

    async def progress(self, run: Run, lines: list[str]) -> None:
        self.progress_calls.append((run.id, lines))

    async def report(self, run: Run, text: str, *, diff: str | None = None) -> None:
        self.reports.append((run.id, text))


@dataclass
class Cluster:
    """A bot's services (run_on: workers) and what a worker process needs to join them."""

    tmp_path: Path
    url: str
    github: GitHubDouble
    model: ModelDouble
    bare: Path
    settings: Settings
    improve: dict[str, Any]
    reporter: RecordingReporter = field(default_factory=RecordingReporter)
    _services: Services | None = None

    @property
    def services(self) -> Services:
        assert self._services is not None
        return self._services

    async def start_bot(self) -> list[str]:
        """Start (or restart) the bot's side; its boot notices (runs interrupted by the restart)."""
        self._services = await build_services(self.settings, watch_prompts=False)
        self._services.improve.reporter = self.reporter
        return self._services.boot_notices

    @property
    def worker_data(self) -> Path:
        return self.tmp_path / "worker"

    def worktree_file(self, run_id: int, path: str) -> Path:
        return self.worker_data.resolve() / "worktrees" / f"run-{run_id}" / path


def _improve_config(**more: Any) -> dict[str, Any]:
    return {
        **more,
        "run_on": "workers",
        "checks": [CHECK],
        "max_attempts": 1,
        "check_timeout_s": 120,
        "stuck_timeout_s": 1e12,
        "autonomy": "off",
    }


def _forge_config(github: GitHubDouble) -> dict[str, Any]:
    return {
        "kind": "github",
        "repository": github.repository,
        "api_url": github.api_url,
        "remote_url": github.git_url,
    }


def _bare_remote(tmp_path: Path, repo: Path) -> Path:
    bare = tmp_path / "remote" / "mendbot.git"
    bare.mkdir(parents=True)
    git(bare, "init", "-q", "--bare", "-b", "main")
    git(repo, "push", "-q", str(bare), "main")
    return bare


@asynccontextmanager
async def cluster(tmp_path: Path, url: str, **improve: Any) -> AsyncIterator[Cluster]:
    repo = copy_of_bot(tmp_path / "repo")
    bare = _bare_remote(tmp_path, repo)
    async with GitHubDouble(bare, token=TOKEN) as github, ModelDouble() as model:
        settings = _bot_settings(tmp_path, url, repo, github, model, improve)
        c = Cluster(tmp_path, url, github, model, bare, settings, improve)
        await c.start_bot()
        try:
            yield c
        finally:
            await c.services.aclose()


def _bot_settings(  # noqa: PLR0917 (a test helper)
    tmp_path: Path, url: str, repo: Path, github: GitHubDouble, model: ModelDouble, improve: dict[str, Any]
) -> Settings:
    return make_settings(
        tmp_path / "bot",
        repo_dir=repo,
        anthropic_api_key="test-key",
        anthropic_base_url=model.base_url,
        github_token=TOKEN,
        database={"url": url},
        improve=_improve_config(**improve),
        forge=_forge_config(github),
        observe={"announce_new_fingerprints": False},
    )


@contextmanager
def worker_process(c: Cluster, **improve: Any) -> Iterator[subprocess.Popen[str]]:
    """`python -m mendbot worker --config <file>`: a real separate process, stopped with SIGTERM."""
    config = c.tmp_path / "worker.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(c.worker_data),
                "health": {"enabled": False},
                "database": {"url": c.url},
                "improve": _improve_config(**{**c.improve, **improve}),
                "forge": _forge_config(c.github),
            }
        )
    )
    base = {k: v for k, v in os.environ.items() if k != "MENDBOT_CONFIG"}
    env = {
        **base,
        "PYTHONPATH": str(REPO),
        "ANTHROPIC_API_KEY": "test-key",
        "ANTHROPIC_BASE_URL": c.model.base_url,
        "GITHUB_TOKEN": TOKEN,
    }
    log = (c.tmp_path / "worker.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mendbot", "worker", "--config", str(config)],
        cwd=c.tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: a test can kill it with its agent, as a crash
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def _worker_log(c: Cluster) -> str:
    return (c.tmp_path / "worker.log").read_text()[-4000:]


async def _until(predicate: Any, timeout: float, what: str, c: Cluster) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; worker log:\n{_worker_log(c)}")


def _fix_script(c: Cluster, run_id: int) -> list[Turn]:
    path = c.worktree_file(run_id, "tests/fixtures/buggy_dice.py")
    return [
        _json_turn(DIAGNOSIS),
        _json_turn(PLAN),
        tool_use("Edit", {"file_path": str(path), "old_string": BUG, "new_string": FIX}),
        text("Guarded the divisor."),
    ]


async def _request(c: Cluster) -> Run:
    return await c.services.improve.request(
        kind="fix", requester_id=1, channel_id=5, incident_id=None, description=DESCRIPTION
    )


async def test_a_run_requested_on_the_bot_is_executed_by_a_worker_process(
    tmp_path: Path, postgres_url: str
) -> None:
    """run_on: workers → a `mendbot worker` process executes the run: branch pushed, PR opened on the
    GitHub double, progress and the report relayed to the bot's reporter."""
    async with cluster(tmp_path, postgres_url) as c:
        c.model.script(*_fix_script(c, 1))
        with worker_process(c):
            run = await _request(c)
            assert run.state == "queued"
            runs = c.services.improve.runs

            async def proposed() -> bool:
                return (await runs.get(run.id)).state not in {
                    "queued",
                    "observing",
                    "investigating",
                    "planning",
                    "editing",
                    "verifying",
                    "proposing",
                }

            await _until(proposed, 240, "the run to end", c)
            done = await runs.get(run.id)
            assert done.state == "awaiting_approval", (done.failure_reason, _worker_log(c))

            async def reported() -> bool:
                return any(run_id == run.id for run_id, _ in c.reporter.reports)

            await _until(reported, 30, "the relayed report", c)
        events = await runs.events(run.id)
        executors = [e.detail["executor"] for e in events if e.event == "executor"]
        assert executors[0] == "workers" and executors[-1].startswith("worker:")
        assert done.branch is not None
        branch_file = git(c.bare, "show", f"{done.branch}:tests/fixtures/buggy_dice.py")
        assert FIX in branch_file and BUG not in branch_file
        (pull,) = c.github.pulls.values()
        assert pull["head"]["ref"] == done.branch
        (report,) = [text_ for run_id, text_ in c.reporter.reports if run_id == run.id]
        assert pull["html_url"] in report and "ship it" in report
        lines = [line for run_id, update in c.reporter.progress_calls if run_id == run.id for line in update]
        assert any("verifying" in line for line in lines)
        # The live checkout of the bot is untouched: the work happened in the worker's clone.
        assert BUG in (c.services.settings.repo_dir / "tests/fixtures/buggy_dice.py").read_text()


# -- configuration ---------------------------------------------------------------------------------


def test_run_on_workers_without_a_database_url_is_refused() -> None:
    """run_on: workers with SQLite (no database.url) is refused, saying what to set."""
    settings = load_settings(
        _env_file=None,
        improve={"run_on": "workers"},
        forge={"kind": "github", "repository": "o/r"},
        database={"url": None},  # whatever the pass's environment says
    )
    with pytest.raises(ConfigError, match=r"improve.run_on is workers.*database.url"):
        refuse_workers_without_store(settings)


def test_run_on_workers_with_the_local_forge_is_refused() -> None:
    """run_on: workers with the local forge is refused: a worker's branch must reach a shared forge."""
    settings = load_settings(
        _env_file=None, improve={"run_on": "workers"}, database={"url": "postgresql://u@h/db"}
    )
    with pytest.raises(ConfigError, match=r"improve.run_on is workers.*forge.kind: github"):
        refuse_workers_without_store(settings)


def test_run_on_bot_needs_neither() -> None:
    """The default (runs in the bot) asks for no database URL and no forge."""
    settings = load_settings(_env_file=None)
    assert settings.improve.run_on == "bot" and settings.database.url is None
    refuse_workers_without_store(settings)  # raises ConfigError if it asked for either


def _mendbot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "MENDBOT_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "mendbot", *args],
        cwd=cwd,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "PYTHONPATH": str(REPO)},
    )


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ("improve: {run_on: workers}\nforge: {kind: github, repository: o/r}\n", "database.url"),
        ("improve: {run_on: workers}\ndatabase: {url: 'postgresql://u@h/db'}\n", "forge.kind: github"),
        ("database: {url: 'postgresql://u@h/db'}\nforge: {kind: github, repository: o/r}\n", "run_on"),
    ],
)
def test_worker_command_refuses_an_unfit_config_exit_78(tmp_path: Path, config: str, named: str) -> None:
    """`mendbot worker` with run_on not workers, or without database.url/github forge: one line, exit 78."""
    path = tmp_path / "config.yaml"
    path.write_text("health: {enabled: false}\n" + config)
    result = _mendbot("worker", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 78, result.stderr
    assert named in result.stderr and "Traceback" not in result.stderr


async def _held_run(c: Cluster) -> tuple[Run, Hold]:
    """A run whose worker's agent waits on its first model turn until the test releases it."""
    hold = Hold(then=_json_turn(DIAGNOSIS))
    c.model.script(hold, *_fix_script(c, 1)[1:])
    run = await _request(c)
    await asyncio.wait_for(hold.reached.wait(), 120)
    return run, hold


async def test_a_bot_restart_does_not_interrupt_a_run_a_worker_executes(
    tmp_path: Path, postgres_url: str
) -> None:
    """The bot restarts while a worker's agent works: that run goes on (and its report reaches the new
    bot, every progress update relayed once); only a run the bot itself held is interrupted."""
    async with cluster(tmp_path, postgres_url) as c:
        with worker_process(c):
            run, hold = await _held_run(c)
            # Queued with no executor yet: the bot stopped between creating it and queueing it.
            orphan = await c.services.improve.runs.create("fix", 1, 5, None, "never queued")
            await c.services.aclose()
            notices = await c.start_bot()
            runs = c.services.improve.runs
            assert (await runs.get(run.id)).state == "investigating"
            assert (await runs.get(orphan.id)).state == "interrupted"
            assert len(notices) == 1 and f"Run #{orphan.id}" in notices[0]
            hold.release.set()

            async def reported() -> bool:
                return any(run_id == run.id for run_id, _ in c.reporter.reports)

            await _until(reported, 240, "the relayed report", c)
        done = await runs.get(run.id)
        assert done.state == "awaiting_approval", done.failure_reason
        progress = [e for e in await runs.events(run.id) if e.event == "progress"]
        relayed = [lines for run_id, lines in c.reporter.progress_calls if run_id == run.id]
        assert relayed == [e.detail["lines"] for e in progress]


async def test_cancelling_a_run_on_a_worker_interrupts_its_agent(tmp_path: Path, postgres_url: str) -> None:
    """/cancel on the bot reaches the worker (the job is aborted): the run ends cancelled, reported."""
    async with cluster(tmp_path, postgres_url) as c:
        with worker_process(c):
            run, hold = await _held_run(c)
            cancelled = await c.services.improve.cancel(run.id, 7)
            assert cancelled.state == "cancelled"

            async def reported() -> bool:
                return any(run_id == run.id and "cancelled" in t for run_id, t in c.reporter.reports)

            await _until(reported, 30, "the cancel report", c)
            hold.release.set()
        events = await c.services.improve.runs.events(run.id)
        assert [e.actor for e in events if e.state == "cancelled" and e.event == "transition"] == ["user:7"]
        assert not c.github.pulls


async def test_a_run_that_was_never_taken_is_cancelled_on_the_bot(tmp_path: Path, postgres_url: str) -> None:
    """Without a worker, a cancel takes the waiting job out of the queue and ends the run at once."""
    async with cluster(tmp_path, postgres_url) as c:
        run = await _request(c)
        cancelled = await c.services.improve.cancel(run.id, 7)
        assert cancelled.state == "cancelled"
        assert await c.services.improve.queue.job_of(run.id) is None  # type: ignore[union-attr]
        assert any("cancelled before a worker" in t for _, t in c.reporter.reports)


async def test_a_run_that_cannot_be_queued_fails_with_the_reason(tmp_path: Path, postgres_url: str) -> None:
    """A defer that fails (the queue is unreachable) fails the run and reports why — never left queued."""
    async with cluster(tmp_path, postgres_url) as c:
        queue = c.services.improve.queue
        assert queue is not None
        await queue.close()  # the pool is gone: deferring raises
        run = await _request(c)
        failed = await c.services.improve.runs.get(run.id)
        assert failed.state == "failed" and "could not queue it" in (failed.failure_reason or "")
        assert any("could not queue it" in t for _, t in c.reporter.reports)


# -- the relay -------------------------------------------------------------------------------------


@dataclass
class Relaying:
    """A run, the bot's relay listening for its events (handed to `reporter`), and a worker's reporter."""

    run: Run
    reporter: RecordingReporter
    relay: RunEventRelay
    writer: DatabaseReporter


@asynccontextmanager
async def _relaying(postgres_url: str, goal: str) -> AsyncIterator[Relaying]:
    """The relay running on its own connection until the block ends, the worker writing on another."""
    db = await core.connect(postgres_url)
    worker_db = await core.connect(postgres_url)
    try:
        runs = RunService(db, lambda: datetime.now(UTC))
        run = await runs.create("fix", 1, 5, None, goal)
        reporter = RecordingReporter()
        relay = RunEventRelay(postgres_url, db, runs, lambda: reporter, backoff_s=0.5)
        writer = DatabaseReporter(
            worker_db, RunService(worker_db, lambda: datetime.now(UTC)), actor="worker:test"
        )
        task = asyncio.create_task(relay.run())
        try:
            await asyncio.wait_for(relay.listening.wait(), 10)
            yield Relaying(run, reporter, relay, writer)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await db.close()
        await worker_db.close()


async def test_the_relay_survives_its_listen_connection_being_terminated(postgres_url: str) -> None:
    """pg_terminate_backend on the relay's LISTEN connection: it reconnects, catches up from the
    database, and every event reaches the reporter once, in order."""
    async with _relaying(postgres_url, "relay me") as it:
        for n in (1, 2):
            await it.writer.progress(it.run, [f"line {n}"])
        await _wait_for(lambda: len(it.reporter.progress_calls) == 2)
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            (killed,) = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
            ).fetchone() or (False,)
        assert killed
        await _wait_for(lambda: not it.relay.listening.is_set())
        # Written (and notified) while nobody listens: found by the catch-up after reconnecting.
        for n in (3, 4):
            await it.writer.progress(it.run, [f"line {n}"])
        await it.writer.report(it.run, "done")
        await _wait_for(lambda: len(it.reporter.reports) == 1)
        await it.writer.progress(it.run, ["line 5"])
        await _wait_for(lambda: len(it.reporter.progress_calls) == 5)
        await asyncio.sleep(0.5)  # anything relayed twice would show up now
    assert [lines for _, lines in it.reporter.progress_calls] == [[f"line {n}"] for n in range(1, 6)]
    assert it.reporter.reports == [(it.run.id, "done")]
    assert it.relay.connections == 2


async def _wait_for(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_a_dead_workers_run_is_interrupted_and_resumes_on_another(
    tmp_path: Path, postgres_url: str
) -> None:
    """A worker killed mid-run (with its agent): another worker interrupts the run once the dead one's
    heartbeat is stale, says so, and `/run N action:resume` re-queues it to completion."""
    # Heartbeats every 10/3 s: a live worker on a busy machine (four test workers on two cores) can miss
    # a 1 s one and see its own run taken for a dead worker's.
    async with cluster(tmp_path, postgres_url, worker_lost_after_s=10) as c:
        hold = Hold(then=_json_turn(DIAGNOSIS))
        c.model.script(hold, *_fix_script(c, 1))  # after the resume the run starts over
        runs = c.services.improve.runs
        with worker_process(c) as first:
            run = await _request(c)
            await asyncio.wait_for(hold.reached.wait(), 120)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
            # Its answer goes nowhere now; released while the double runs, not as the double stops.
            hold.release.set()
        with worker_process(c):

            async def interrupted() -> bool:
                return (await runs.get(run.id)).state == "interrupted"

            await _until(interrupted, 60, "the lost worker's run to be interrupted", c)

            async def told() -> bool:
                return any("worker executing it stopped" in t for _, t in c.reporter.reports)

            await _until(told, 15, "the relayed interruption", c)
            resumed = await c.services.improve.resume_run(run.id, 1)
            assert resumed.state == "queued"

            async def proposed() -> bool:
                return (await runs.get(run.id)).state == "awaiting_approval"

            await _until(proposed, 240, "the resumed run's proposal", c)
        assert len(c.github.pulls) == 1


async def test_the_watchdog_fails_a_stuck_run_on_a_worker_and_the_worker_stops_it(
    tmp_path: Path, postgres_url: str
) -> None:
    """A worker's run with no progress for stuck_timeout_s: the bot's watchdog fails it, reports it,
    and its job is aborted, so the worker stops the agent instead of working on for nobody."""
    async with cluster(tmp_path, postgres_url) as c:
        with worker_process(c):
            run, hold = await _held_run(c)
            improve = c.services.improve
            (stuck,) = await improve.sweep_stuck(now=time.time() + 2e12)
            assert stuck.id == run.id and stuck.state == "failed"
            assert any("made no progress" in t for _, t in c.reporter.reports)
            queue = improve.queue
            assert queue is not None

            async def stopped() -> bool:
                return await queue.job_of(run.id) is None

            await _until(stopped, 30, "the worker to stop the run", c)
            hold.release.set()
        assert (await improve.runs.get(run.id)).state == "failed"
        assert not c.github.pulls


async def test_pause_stops_the_runs_the_workers_hold(tmp_path: Path, postgres_url: str) -> None:
    """/pause with runs on workers: the executing one is cancelled by its worker, a waiting one at once."""
    async with cluster(tmp_path, postgres_url, concurrency=2) as c:
        with worker_process(c, concurrency=1):  # the second run waits in the queue
            run, hold = await _held_run(c)
            waiting = await c.services.improve.request(
                kind="fix", requester_id=2, channel_id=5, incident_id=None, description="another thing"
            )
            stopped = await c.services.improve.pause(1)
            hold.release.set()
        runs = c.services.improve.runs
        assert stopped == 2
        assert (await runs.get(run.id)).state == "cancelled"
        assert (await runs.get(waiting.id)).state == "cancelled"


async def test_a_worker_shutting_down_interrupts_its_run_and_says_so(
    tmp_path: Path, postgres_url: str
) -> None:
    """SIGTERM to a worker mid-run: the run becomes interrupted (resumable), the chat is told, and the
    worker exits 0."""
    async with cluster(tmp_path, postgres_url) as c:
        with worker_process(c) as process:
            run, hold = await _held_run(c)
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, 60)
            hold.release.set()
        assert code == 0, _worker_log(c)
        assert (await c.services.improve.runs.get(run.id)).state == "interrupted"

        async def told() -> bool:
            return any("worker is shutting down" in t for _, t in c.reporter.reports)

        await _until(told, 15, "the relayed interruption", c)


async def test_an_event_written_once_the_relay_listens_is_news_not_history(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first start takes what is already stored as history; `listening` is set only once that line is
    drawn, so an event written after it is relayed however slowly the line was read."""
    slow_read = run_queries.last_event_id

    async def last_event_id(db: core.Connection) -> int:
        await asyncio.sleep(0.5)  # a loaded database: the first catch-up's read takes a while
        return int(await slow_read(db))

    monkeypatch.setattr(run_queries, "last_event_id", last_event_id)
    async with _relaying(postgres_url, "first start") as it:
        await it.writer.progress(it.run, ["written after listening"])
        await _wait_for(lambda: len(it.reporter.progress_calls) == 1)
        assert it.reporter.progress_calls == [(it.run.id, ["written after listening"])]


async def test_the_relay_delivers_an_event_that_commits_after_a_newer_one(postgres_url: str) -> None:
    """Two workers' events can commit out of id order: the later-committing lower id is relayed too, once."""
    async with _relaying(postgres_url, "two workers") as it:
        await it.writer.progress(it.run, ["first"])
        await _wait_for(lambda: len(it.reporter.progress_calls) == 1)
        with psycopg.connect(postgres_url) as slow:  # a transaction: its id is taken, not yet visible
            slow.execute(
                "INSERT INTO run_events (run_id, ts, actor, event, state, detail, cost_usd) "
                "VALUES (%s, 0, 'w1', 'progress', 'queued', %s, 0)",
                (it.run.id, json.dumps({"lines": ["late"]})),
            )
            await it.writer.progress(it.run, ["newer"])
            await _wait_for(lambda: len(it.reporter.progress_calls) == 2)
            slow.commit()
            slow.execute("SELECT pg_notify('mendbot_runs', %s)", (str(it.run.id),))
            slow.commit()
        await _wait_for(lambda: len(it.reporter.progress_calls) == 3)
        await it.writer.progress(it.run, ["last"])
        await _wait_for(lambda: len(it.reporter.progress_calls) == 4)
        await asyncio.sleep(0.5)
    assert [lines for _, lines in it.reporter.progress_calls] == [["first"], ["newer"], ["late"], ["last"]]


async def test_an_event_is_recorded_when_another_process_moved_the_run(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bot records a cancel request while a worker moves the run on: the event is kept, not refused."""
    db = await core.connect(postgres_url)
    try:
        worker = RunService(db, lambda: datetime.now(UTC))
        bot = RunService(db, lambda: datetime.now(UTC))
        run = await worker.create("fix", 1, 5, None, "moving")
        reads = [run]  # the bot's first read is from before the worker's transition
        real_get = bot.get

        async def get(run_id: int) -> Run:
            return reads.pop() if reads else await real_get(run_id)

        monkeypatch.setattr(bot, "get", get)
        await worker.transition(run.id, "observing", actor="worker:1")
        await bot.event(run.id, "cancel_requested", actor="user:7", detail={"user_id": 7})
        last = (await worker.events(run.id))[-1]
        assert (last.event, last.state) == ("cancel_requested", "observing")
    finally:
        await db.close()


async def test_a_run_whose_worker_cannot_fetch_main_fails_with_the_reason(
    tmp_path: Path, postgres_url: str
) -> None:
    """The forge is unreachable when a worker takes a run: the run fails saying so, never stays queued."""
    async with cluster(tmp_path, postgres_url) as c:
        await c.github.stop()
        with worker_process(c):
            run = await _request(c)
            runs = c.services.improve.runs

            async def failed() -> bool:
                return (await runs.get(run.id)).state == "failed"

            await _until(failed, 60, "the run to fail", c)

            async def told() -> bool:
                return any("could not fetch main" in t for _, t in c.reporter.reports)

            await _until(told, 15, "the relayed failure", c)
        assert "could not fetch main" in ((await runs.get(run.id)).failure_reason or "")
