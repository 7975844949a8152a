"""Runs on workers (`improve.run_on: workers`): the bot defers a run to the PostgreSQL queue, a
`mendbot worker` process executes it in a clone of its own with the real bundled CLI against the
model double, pushes the branch to a bare remote behind the GitHub double, and what it reports comes
back to the bot through the database (run events, NOTIFY, the relay)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.improve.runs import Run
from bot.services import Services, build_services
from bot.settings import ConfigError, load_settings, refuse_workers_without_store
from tests.harness.discord import make_settings
from tests.harness.github_double import GitHubDouble
from tests.harness.model_double import ModelDouble, Turn, text, tool_use
from tests.harness.repo import copy_of_bot, git
from tests.test_improve_e2e import BUG, DIAGNOSIS, FIX, PLAN, _json_turn

pytestmark = pytest.mark.cli

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

    async def report(self, run: Run, text: str) -> None:
        self.reports.append((run.id, text))


@dataclass
class Cluster:
    """A bot's services (run_on: workers) and what a worker process needs to join them."""

    tmp_path: Path
    url: str
    github: GitHubDouble
    model: ModelDouble
    bare: Path
    services: Services
    reporter: RecordingReporter

    @property
    def worker_data(self) -> Path:
        return self.tmp_path / "worker"

    def worktree_file(self, run_id: int, path: str) -> Path:
        return self.worker_data.resolve() / "worktrees" / f"run-{run_id}" / path


def _improve_config() -> dict[str, Any]:
    return {
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
async def cluster(tmp_path: Path, url: str) -> AsyncIterator[Cluster]:
    repo = copy_of_bot(tmp_path / "repo")
    bare = _bare_remote(tmp_path, repo)
    async with GitHubDouble(bare, token=TOKEN) as github, ModelDouble() as model:
        settings = make_settings(
            tmp_path / "bot",
            repo_dir=repo,
            anthropic_api_key="test-key",
            anthropic_base_url=model.base_url,
            github_token=TOKEN,
            database={"url": url},
            improve=_improve_config(),
            forge=_forge_config(github),
            observe={"announce_new_fingerprints": False},
        )
        services = await build_services(settings, watch_prompts=False)
        reporter = RecordingReporter()
        services.improve.reporter = reporter
        try:
            yield Cluster(tmp_path, url, github, model, bare, services, reporter)
        finally:
            await services.aclose()


@contextmanager
def worker_process(c: Cluster) -> Iterator[subprocess.Popen[str]]:
    """`python -m bot worker --config <file>`: a real separate process, stopped with SIGTERM."""
    config = c.tmp_path / "worker.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(c.worker_data),
                "health": {"enabled": False},
                "database": {"url": c.url},
                "improve": _improve_config(),
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
        [sys.executable, "-m", "bot", "worker", "--config", str(config)],
        cwd=c.tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
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
        _env_file=None, improve={"run_on": "workers"}, forge={"kind": "github", "repository": "o/r"}
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
    refuse_workers_without_store(load_settings(_env_file=None))


def _mendbot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "MENDBOT_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
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
