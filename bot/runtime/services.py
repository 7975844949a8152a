"""Assembly of mendbot's services: built once in `__main__` (or a test), passed into MendBot.

Nothing in cogs reaches for a module-level singleton; cogs use `bot.runtime.services`.
"""

from __future__ import annotations

import asyncio
import datetime as _datetime_module
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord
import msgspec

from bot.chat import ChatService
from bot.dashboard.signin import DashboardSignIn
from bot.db import actions as action_queries
from bot.db import core
from bot.db.core import Connection
from bot.db.identity import FileIdentity
from bot.db.retry import RetryPolicy, StorageHealth, Writes, has_room, probe
from bot.deploy.approval import ApprovalService
from bot.deploy.merge import Merger
from bot.deploy.service import DeployService
from bot.features.devmode import DevMode
from bot.features.reminders import ReminderService
from bot.forge.base import Forge
from bot.forge.local import LocalForge
from bot.improve.autonomy import AutonomyService
from bot.improve.drill import DrillService
from bot.improve.memory import Memory
from bot.improve.policy import BudgetLedger, Policy
from bot.improve.relay import RunEventRelay
from bot.improve.runs import Run, RunService
from bot.improve.service import SelfImprovementAgent
from bot.improve.workspace import Workspace
from bot.kernel.daemons import Daemons
from bot.kernel.drills import DRILL_USER_ID
from bot.kernel.log import get_logger
from bot.kernel.prompts import PromptRegistry
from bot.kernel.settings import Settings
from bot.observe.audit import AuditService
from bot.observe.detector import AnomalyDetector, restore_windows_later
from bot.observe.incidents import IncidentService
from bot.observe.recorder import ActionRecorder
from bot.runtime.people import People
from bot.scale.cluster import Cluster
from bot.scale.leader import Leadership, leadership_for, process_label, shares_database
from bot.trust.access import AccessPolicy
from bot.trust.redact import Redactor
from bot.trust.sandbox import Sandbox

if TYPE_CHECKING:
    from bot.improve.agent import CodeAgent
    from bot.trust.gateway import ModelGateway

__all__ = ["DAEMONS_HELD_AT_MOST_S", "Services", "build_services"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DAEMONS_HELD_AT_MOST_S = 5.0  # a bot that has not connected by then gets its daemons all the same
PROMPTS_DIR = REPO_ROOT / "prompts"
_RESTORING_WINDOWS = "detector-windows"  # the daemon restoring the detector's windows after a restart
_log = get_logger(__name__)


class Services(msgspec.Struct):
    settings: Settings
    db: Connection
    prompts: PromptRegistry
    chat: ChatService
    reminders: ReminderService
    recorder: ActionRecorder
    detector: AnomalyDetector
    incidents: IncidentService
    access: AccessPolicy
    improve: SelfImprovementAgent
    deploy: DeployService
    clock: Callable[[], datetime]
    audit: AuditService
    devmode: DevMode
    autonomy: AutonomyService
    cluster: Cluster
    drill: DrillService
    people: People  # the names people go by, as the bot last saw them
    redactor: Redactor = msgspec.field(default_factory=Redactor)
    storage: StorageHealth = msgspec.field(default_factory=StorageHealth)
    daemons: Daemons = msgspec.field(default_factory=Daemons)
    closed: bool = False
    boot_notices: list[str] = msgspec.field(default_factory=list)  # posted in #dev once the bot is ready
    dashboard: DashboardSignIn | None = None  # sign-in links; serving only while a dashboard runs
    database_file: FileIdentity | None = None  # the SQLite file's identity, watched (None: PostgreSQL)

    def authorize(
        self, user_id: int, role_ids: list[int], *, is_bot: bool, action: str, **context: Any
    ) -> bool:
        """The allow-list check for a privileged action; a refusal is recorded as an action."""
        if self.access.is_allowed(user_id, role_ids, is_bot=is_bot):
            return True
        self.recorder.record(
            "access:refused",
            "access",
            ok=True,
            duration_ms=0,
            user_id=user_id,
            extra={"action": action, **context},
        )
        return False

    def health(self) -> dict[str, object]:
        """Figures for the health endpoint."""
        return {
            "reminders_scheduled": self.reminders.scheduled,
            "prompts": len(self.prompts.keys()),
            "incidents_active": len(self.incidents.active()),
            "improvement_paused": self.improve.policy.paused,
            "storage_fault": self.storage.state.fault,
            "storage_write_retries": self.storage.retried,
            "storage_writes_given_up": self.storage.given_up,
            **self.recorder.health(),
            **self.cluster.health(),
        }

    async def quiesce(self) -> None:
        """Wait until background services have processed everything handed to them so far."""
        if not self.daemons.holding:
            await self.daemons.finished(_RESTORING_WINDOWS)  # the detector takes what it held
        await self.improve.quiesce()
        await self.deploy.quiesce()
        await self.incidents.quiesce()
        # Incidents may have started runs of the bot's own; their notes go back to the incidents.
        await self.autonomy.quiesce()
        await self.incidents.quiesce()
        await self.cluster.quiesce()
        await self.people.quiesce()
        await self.recorder.flush()

    async def aclose(self) -> None:
        """Stop background work and close the database; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        if self.daemons.holding:  # closed before the bot connected: what was recorded is kept first
            self.daemons.release()
            await asyncio.sleep(0)  # the held writer starts (its first step), so closing it journals
        self.reminders.stop()
        await self.drill.close()
        self.autonomy.close()
        await self.improve.shutdown()
        await self.autonomy.quiesce()
        self.deploy.stop()
        await self.cluster.close()
        await self.incidents.quiesce()
        await self.people.quiesce()
        await self.recorder.close()
        await self.daemons.stop_all()
        if self.improve.queue is not None:
            await self.improve.queue.close()
        await self.db.close()


def _watched_file(path: Path) -> FileIdentity | None:
    """The database file's identity as it is now (None if it cannot be opened: nothing to watch)."""
    try:
        return FileIdentity.of(path)
    except OSError as exc:
        _log.warning("the database file cannot be watched", path=str(path), error=str(exc))
        return None


def _room(*directories: Path) -> Callable[[], bool]:
    """Whether every one of `directories` has room (the database's, the action log's)."""
    checks = [has_room(directory) for directory in dict.fromkeys(directories)]
    return lambda: all(check() for check in checks)


async def build_services(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = discord.utils.utcnow,
    prompts_dir: Path | None = None,
    watch_prompts: bool = True,
    leadership: Leadership | None = None,
    connecting: bool = False,
) -> Services:
    """Open the database, load prompts and build every service. Prompt errors are logged.

    `leadership` defaults to the one the settings call for (`bot.scale.cluster.leadership_for`).
    `connecting`: for a bot about to connect — the services' daemons wait until it has its gateway
    session (the attachment releases them at `on_connect`; bot/kernel/daemons.py)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = await core.connect(settings.database_target, timeout_ms=settings.storage.busy_timeout_ms)
    daemons = Daemons()
    if connecting:
        daemons.hold(DAEMONS_HELD_AT_MOST_S)
    try:
        services = await _assemble(
            settings, db, clock, prompts_dir, leadership or leadership_for(settings), daemons=daemons
        )
    except BaseException:
        await db.close()  # an open connection's thread would keep the process alive
        raise
    # The hand-edit watcher (started by the Ship cog) reloads prompts too; one watcher is enough.
    if watch_prompts and not settings.deploy.watch_hand_edits:
        services.daemons.start("prompt-watcher", services.prompts.watch())
    return services


async def _interrupted(improve: SelfImprovementAgent, *, shared: bool) -> list[Run]:
    """The runs this process's last stop interrupted (on a shared database: none — runs in flight are
    other processes' too, and one starting must not take them for ones it stopped; what a dead process
    left is failed by the leader's stuck-run watchdog, and a merge it left is finished by the leader's
    merge pass, bot/scale/cluster.py)."""
    if shared:
        await improve.claims.release_ended()
        return []
    return await improve.on_startup()


async def _boot_notices(settings: Settings, interrupted: list[Run], drill: DrillService) -> list[str]:
    """What to say in #dev once the bot is up: each run a stop interrupted that `/run N action:resume`
    continues; and a drill left unfinished — ended here, its run with it, before anything could offer
    that run for a resume. (Changes no run will see are looked for once the bot is ready: the
    attachment's `report_boot_problems`.)"""
    drill_notice = await drill.recover()
    notices = [
        f"⏸ Run #{run.id} was interrupted by a restart while {run.interrupted_from or 'running'}; "
        f"`/run {run.id} action:resume` continues it."
        for run in interrupted
        if run.interrupted_from != "merging" and run.requester_id != DRILL_USER_ID
    ]
    if drill_notice:
        notices.append(drill_notice)
    return notices


async def _assemble(
    settings: Settings,
    db: Connection,
    clock: Callable[[], datetime],
    prompts_dir: Path | None,
    leadership: Leadership,
    *,
    daemons: Daemons,
) -> Services:
    prompts = PromptRegistry(prompts_dir or PROMPTS_DIR)
    prompts.load_all()
    # One redactor, knowing the bot's secret values, on every way out: records, runs, reports, logs.
    redactor = Redactor.from_settings(settings)
    secret = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else None
    observe = settings.observe
    storage_config = settings.storage
    # SQLite's file system is this machine's, so a full disk's recovery can be seen; PostgreSQL's is not.
    # The action log counts: a disk full under it is a fault even while the database has room.
    database_file = _watched_file(settings.db_path) if settings.database.url is None else None
    storage = StorageHealth(
        room=_room(settings.db_path.parent, settings.log_dir) if settings.database.url is None else None,
        identity=database_file.check if database_file is not None else None,
    )
    # User writes (reminders, approvals, run transitions) all go through this one helper.
    writes = Writes(RetryPolicy(storage_config.write_attempts, storage_config.retry_backoff_s), storage)
    recorder = ActionRecorder(
        database=settings.database_target,
        ndjson_path=settings.log_dir / "actions.ndjson",
        repo_root=REPO_ROOT if settings.bot is None else settings.repo_dir.resolve(),
        clock=clock,
        queue_size=observe.queue_size,
        ndjson_max_bytes=observe.ndjson_max_bytes,
        ndjson_backups=observe.ndjson_backups,
        redactor=redactor,
        retry=RetryPolicy(storage_config.batch_attempts, storage_config.retry_backoff_s),
        storage=storage,
        busy_timeout_ms=storage_config.busy_timeout_ms,
        more_roots=(settings.repo_dir,),
        prune_margin=storage_config.prune_margin,
        prune_margin_min_bytes=storage_config.prune_margin_min_mb << 20,
        timestamp=_utcnow_timestamp if clock is discord.utils.utcnow else None,
    )

    incidents = IncidentService(
        db,
        observe,
        clock,
        database=settings.database_target,
        writes=writes,
        action_log=settings.log_dir / "actions.ndjson",
    )
    await incidents.load()
    storage.subscribe(incidents.on_storage)
    if (fault := incidents.open_storage_fault()) is not None:
        storage.assume_failing(fault, "still open from before the restart")
    detector = AnomalyDetector(observe, incidents.on_signal, await action_queries.known_fingerprints(db))
    shared = shares_database(settings)
    if shared:  # every record names its process: a staged rollout watches the canary's own
        recorder.process = process_label(settings)
    if not shared:
        # A storm that began before this restart goes on counting (a leader does this per term). Its
        # windows are read in the background: the detector holds this life's records until then.
        last = await action_queries.last_id(db)
        detector.hold()
        daemons.start(
            _RESTORING_WINDOWS,
            restore_windows_later(db, detector, upto=last, now=lambda: clock().timestamp()),
        )
        # Incidents count a record before the detector sees it, so a record that opens an
        # incident is counted once (in the signal), not twice. (On a shared database the leader
        # feeds them every process's records instead: bot/scale/cluster.py.)
        recorder.subscribe(incidents.observe)
        recorder.subscribe(detector.process)
    improve = await _build_improve(settings, db, prompts, clock, redactor, writes=writes)
    relay = await _run_on_workers(settings, db, improve)
    deploy = DeployService(
        settings=settings,
        runs=improve.runs,
        approvals=ApprovalService(db, improve.runs, settings, clock, writes=writes),
        forge=improve.forge,
        merger=Merger(
            settings.repo_dir.resolve(),
            improve.workspace,
            settings.improve.checks,
            settings.improve.check_timeout_s,
            improve.sandbox,
            redact=redactor.text,
        ),
        incidents=incidents,
        memory=improve.memory,
        clock=clock,
    )
    if not shared:
        recorder.subscribe(deploy.observe)
    deploy.prove_live = improve.prove_live
    deploy.prove_rollback = improve.prove_rollback
    deploy.reprove = improve.reprove
    interrupted = await _interrupted(improve, shared=shared)
    drill = DrillService(
        settings=settings,
        db=db,
        recorder=recorder,
        incidents=incidents,
        improve=improve,
        clock=clock,
        failpoints=deploy.failpoints,
        process=process_label(settings) if shared else None,
    )
    boot_notices = await _boot_notices(settings, interrupted, drill)
    devmode = DevMode(db, settings.repo_dir.resolve(), clock)
    people = await People.loaded(db, clock, dev_guild_id=settings.discord.dev_guild_id)
    autonomy = AutonomyService(config=settings.improve, improve=improve, incidents=incidents, devmode=devmode)
    incidents.on_raised = autonomy.on_raised
    services = Services(
        settings=settings,
        db=db,
        prompts=prompts,
        chat=ChatService(
            db,
            prompts,
            settings.chat,
            recorder,
            api_key=secret,
            base_url=settings.anthropic_base_url,
            clock=clock,
            redactor=redactor,
        ),
        reminders=ReminderService(db, clock, writes=writes, claim_retry_s=storage_config.probe_interval_s),
        recorder=recorder,
        detector=detector,
        incidents=incidents,
        access=AccessPolicy(lambda: settings.access),
        improve=improve,
        deploy=deploy,
        clock=clock,
        audit=AuditService(settings.database_target, settings.audit, clock),
        devmode=devmode,
        autonomy=autonomy,
        cluster=Cluster(
            settings=settings,
            db=db,
            leadership=leadership,
            incidents=incidents,
            detector=detector,
            deploy=deploy,
            improve=improve,
        ),
        drill=drill,
        people=people,
        redactor=redactor,
        storage=storage,
        boot_notices=boot_notices,
        dashboard=DashboardSignIn(
            db, settings.dashboard, lambda: clock().timestamp(), access=AccessPolicy(lambda: settings.access)
        ),
        database_file=database_file,
        daemons=daemons,
    )
    services.daemons.start("action-writer", recorder.run_writer())
    # Retention runs in the background from the start: millions of expired rows must not delay
    # the first answer.
    services.daemons.start("action-retention", recorder.prune_every(observe.retention_days))
    services.daemons.start(
        "storage-probe",
        storage.probe_while_failing(lambda: probe(db, clock().timestamp()), storage_config.probe_interval_s),
    )
    # On the probe's schedule, and after each flush of the recorder: is the database file still there?
    services.daemons.start("database-file", storage.watch_identity(storage_config.probe_interval_s))
    # The watchdog and, on a shared database, the leader's work run while this process leads.
    await services.cluster.start(services.daemons)
    if relay is not None:
        # One process relays the workers' progress to Discord (any may post by channel id): with
        # several bot processes, each relaying would post every update once per process.
        services.daemons.start("run-relay", services.cluster.leadership.while_leader(relay.run))
    return services


async def _run_on_workers(
    settings: Settings, db: Connection, improve: SelfImprovementAgent
) -> RunEventRelay | None:
    """With `improve.run_on: workers`: runs are deferred to the queue, and what the workers report
    comes back through the relay (started as a daemon) to the bot's reporter."""
    if settings.improve.run_on != "workers":
        return None
    from bot.improve.queue import RunQueue  # procrastinate is loaded only when workers are used

    assert settings.database.url is not None  # refuse_workers_without_store
    queue = RunQueue(settings.database.url, lost_after_s=settings.improve.worker_lost_after_s)
    await queue.open()
    improve.queue = queue
    return RunEventRelay(settings.database.url, db, improve.runs, lambda: improve.reporter)


_discord_utils: Any = discord.utils  # its `datetime` is what a virtual Discord replaces


def _utcnow_timestamp() -> float:
    """`discord.utils.utcnow().timestamp()`, cheaply: `time.time()` while discord.py reads the real clock
    (a datetime made only to be read back cost ~0.4 µs a record). A virtual Discord replaces the module
    discord.py reads the time from, and then its time is the bot's."""
    if _discord_utils.datetime is _datetime_module:
        return time.time()
    return discord.utils.utcnow().timestamp()


def _forge(settings: Settings, db: Connection, repo_root: Path, clock: Callable[[], datetime]) -> Forge:
    config = settings.forge
    if config.kind == "local":
        return LocalForge(repo_root, db, clock=clock)
    from bot.forge.github import GitHubForge  # its module and githubkit load for a GitHub forge only

    assert config.repository is not None and settings.github_token is not None  # checked by doctor/settings
    return GitHubForge(
        repo_root,
        db,
        repository=config.repository,
        token=settings.github_token.get_secret_value(),
        api_url=config.api_url,
        remote_url=config.remote_url or f"https://github.com/{config.repository}.git",
        clock=clock,
    )


async def _build_improve(
    settings: Settings,
    db: Connection,
    prompts: PromptRegistry,
    clock: Callable[[], datetime],
    redactor: Redactor,
    *,
    writes: Writes,
) -> SelfImprovementAgent:
    repo_root = settings.repo_dir.resolve()
    policy = Policy(settings.improve, db, clock)
    await policy.load()
    runs = RunService(db, clock, redactor, writes=writes)
    api_key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else ""

    def new_gateway() -> ModelGateway:
        from bot.trust.gateway import ModelGateway  # the gateway and its pricing load with the first run

        return ModelGateway(
            upstream=settings.anthropic_base_url, api_key=api_key, ledger=BudgetLedger(policy, runs)
        )

    home = settings.data_dir.resolve() / "agent-home"
    sandbox = Sandbox.from_config(settings.improve.sandbox)

    def new_agent() -> CodeAgent:
        from bot.improve.agent import ClaudeCodeAgent  # claude-agent-sdk is loaded when a run starts

        return ClaudeCodeAgent(
            home=home,
            model=settings.improve.model,
            protected_paths=tuple(settings.improve.protected_paths),
            sandbox=sandbox,
            git_dir=repo_root / ".git",
        )

    return SelfImprovementAgent(
        settings=settings,
        db=db,
        runs=runs,
        policy=policy,
        memory=Memory(db, clock),
        workspace=Workspace(repo_root, settings.data_dir.resolve() / "worktrees", host=settings.bot),
        forge=_forge(settings, db, repo_root, clock),
        prompts=prompts,
        agent_factory=new_agent,
        sandbox=sandbox,
        gateway=new_gateway,
        clock=clock,
    )
