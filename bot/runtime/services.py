"""Assembly of mendbot's services: built once in `__main__` (or a test), passed into MendBot.

In two halves: the recording (the recorder, the detector, incidents, chat, reminders, people, …), and
the self-improvement half (bot/runtime/mending.py), built by `Services.complete()` — at once, or for a
bot mendbot attaches to once that bot has connected, what it would be handed meanwhile held for it.
Nothing in cogs reaches for a module-level singleton; cogs use `mendbot.runtime.services`.
"""

from __future__ import annotations

import asyncio
import datetime as _datetime_module
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import discord
import msgspec

from mendbot.chat import ChatService
from mendbot.dashboard.signin import DashboardSignIn
from mendbot.db import actions as action_queries
from mendbot.db import core
from mendbot.db.core import Connection
from mendbot.db.identity import FileIdentity
from mendbot.db.retry import RetryPolicy, StorageHealth, Writes, has_room, probe
from mendbot.features.reminders import ReminderService
from mendbot.kernel.daemons import Daemons
from mendbot.kernel.log import get_logger
from mendbot.kernel.prompts import PromptRegistry
from mendbot.kernel.settings import Settings
from mendbot.observe.audit import AuditService
from mendbot.observe.detector import AnomalyDetector, restore_windows_later
from mendbot.observe.incidents import IncidentService
from mendbot.observe.recorder import ActionRecorder
from mendbot.runtime.people import People
from mendbot.scale.leader import Leadership, leadership_for, process_label, shares_database
from mendbot.trust.access import AccessPolicy
from mendbot.trust.host_files import bot_secrets
from mendbot.trust.redact import Redactor

if TYPE_CHECKING:
    from mendbot.db.records import ActionRecord
    from mendbot.deploy.service import DeployService
    from mendbot.features.devmode import DevMode
    from mendbot.improve.autonomy import AutonomyService
    from mendbot.improve.drill import DrillService
    from mendbot.improve.service import SelfImprovementAgent
    from mendbot.observe.incident import Incident
    from mendbot.runtime.mending import Mending
    from mendbot.scale.cluster import Cluster

__all__ = ["DAEMONS_HELD_AT_MOST_S", "NotMendingYet", "Services", "build_services", "installed_prompts"]

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # mendbot's package: bot/ in its repository
REPO_ROOT = PACKAGE_DIR.parent  # mendbot's repository, where mendbot runs from a checkout
DAEMONS_HELD_AT_MOST_S = 5.0  # a bot that has not connected by then gets its daemons all the same
_RESTORING_WINDOWS = "detector-windows"  # the daemon restoring the detector's windows after a restart
_log = get_logger(__name__)
_T = TypeVar("_T")


class _Held(Generic[_T]):
    """What the self-improvement half would have been handed while it was not built yet, kept for it
    (at most `limit`: past that the oldest go, counted) and handed over once it is."""

    def __init__(self, limit: int) -> None:
        self.items: deque[_T] = deque(maxlen=limit)
        self.dropped = 0

    def keep(self, item: _T) -> None:
        if len(self.items) == self.items.maxlen:
            self.dropped += 1
        self.items.append(item)

    def take(self) -> list[_T]:
        items = list(self.items)
        self.items.clear()
        return items


class NotMendingYet(RuntimeError):
    """mendbot's self-improvement half, asked for before it is built (a bot mendbot attaches to builds it
    once connected: `Services.complete`)."""


class Services(msgspec.Struct):
    """Every service of one bot process; the self-improvement half's by name once it is built."""

    settings: Settings
    db: Connection
    prompts: PromptRegistry
    chat: ChatService
    reminders: ReminderService
    recorder: ActionRecorder
    detector: AnomalyDetector
    incidents: IncidentService
    access: AccessPolicy
    clock: Callable[[], datetime]
    audit: AuditService
    people: People  # the names people go by, as the bot last saw them
    writes: Writes  # user writes (reminders, approvals, run transitions) all go through this one helper
    leadership: Leadership
    redactor: Redactor = msgspec.field(default_factory=Redactor)
    storage: StorageHealth = msgspec.field(default_factory=StorageHealth)
    daemons: Daemons = msgspec.field(default_factory=Daemons)
    closed: bool = False
    boot_notices: list[str] = msgspec.field(default_factory=list)  # posted in #dev once the bot is ready
    dashboard: DashboardSignIn | None = None  # sign-in links; serving only while a dashboard runs
    database_file: FileIdentity | None = None  # the SQLite file's identity, watched (None: PostgreSQL)
    # The self-improvement half (bot/runtime/mending.py), once built; until then what it would have
    # been handed is held: incidents raised, and failures recorded (a resumed deploy watch's).
    mending: Mending | None = None
    _completing: asyncio.Task[Mending] | None = None
    _raised: _Held[Incident] | None = None
    _failures: _Held[ActionRecord] | None = None

    # -- the self-improvement half, by name ---------------------------------------------------------

    @property
    def mended(self) -> Mending:
        """The self-improvement half; NotMendingYet before `complete()` has built it."""
        if self.mending is None:
            raise NotMendingYet("mendbot's self-improvement is still starting")
        return self.mending

    @property
    def improve(self) -> SelfImprovementAgent:
        return self.mended.improve

    @property
    def deploy(self) -> DeployService:
        return self.mended.deploy

    @property
    def autonomy(self) -> AutonomyService:
        return self.mended.autonomy

    @property
    def cluster(self) -> Cluster:
        return self.mended.cluster

    @property
    def drill(self) -> DrillService:
        return self.mended.drill

    @property
    def devmode(self) -> DevMode:
        return self.mended.devmode

    def hold_for_mending(self) -> None:
        """Until `complete()`: keep what the half would be handed (once, before anything is recorded)."""
        self._raised = _Held(limit=self.settings.observe.queue_size)
        self.incidents.on_raised = self._raised.keep
        if not shares_database(self.settings):  # else the leader feeds the watch, once it leads
            self._failures = _Held(limit=self.settings.observe.queue_size)
            self.recorder.subscribe(self._keep_failure)

    def _keep_failure(self, record: ActionRecord) -> None:
        if not record.ok and self._failures is not None:
            self._failures.keep(record)

    async def complete(self) -> Mending:
        """Build the self-improvement half (once; a second call waits for the first)."""
        if self.mending is not None:
            return self.mending
        if self._completing is None:
            self._completing = asyncio.get_running_loop().create_task(self._build_mending())
        return await asyncio.shield(self._completing)

    async def _build_mending(self) -> Mending:
        from mendbot.runtime.mending import build_mending  # the half's modules load only when it is built

        mending = await build_mending(
            self.settings,
            self.db,
            prompts=self.prompts,
            clock=self.clock,
            redactor=self.redactor,
            writes=self.writes,
            recorder=self.recorder,
            incidents=self.incidents,
            detector=self.detector,
            leadership=self.leadership,
            daemons=self.daemons,
        )
        self.boot_notices.extend(mending.notices)
        self.chat.model_away = mending.improve.model_away  # one model API: chat need not meet it too
        self.mending = mending
        if self._raised is None:
            self.incidents.on_raised = mending.autonomy.on_raised
        return mending

    def hand_over_held(self) -> None:
        """What was held while the half was built, handed to it (its cogs are added by now: a watch a
        restart interrupted has resumed). Incidents go on to the half from now on."""
        mending = self.mended
        raised, self._raised = self._raised, None
        failures, self._failures = self._failures, None
        self.incidents.on_raised = mending.autonomy.on_raised
        if failures is not None:
            self.recorder.unsubscribe(self._keep_failure)
            for record in failures.take():
                mending.deploy.observe(record)
        if raised is not None:
            for incident in raised.take():
                mending.autonomy.on_raised(incident)
        dropped = (raised.dropped if raised else 0) + (failures.dropped if failures else 0)
        if dropped:
            _log.warning(
                "held too much while mendbot's self-improvement started: the oldest dropped", dropped=dropped
            )

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
        mending = self.mending
        return {
            "reminders_scheduled": self.reminders.scheduled,
            "prompts": len(self.prompts.keys()),
            "incidents_active": len(self.incidents.active()),
            "improvement_paused": mending.improve.policy.paused if mending is not None else None,
            "storage_fault": self.storage.state.fault,
            "storage_write_retries": self.storage.retried,
            "storage_writes_given_up": self.storage.given_up,
            **self.recorder.health(),
            **(mending.cluster.health() if mending is not None else {}),
        }

    async def quiesce(self) -> None:
        """Wait until background services have processed everything handed to them so far."""
        if not self.daemons.holding:
            await self.daemons.finished(_RESTORING_WINDOWS)  # the detector takes what it held
        if self._completing is not None:
            await asyncio.wait([self._completing])  # a half being built: what it is handed, it finishes
        if (mending := self.mending) is not None:
            await mending.improve.quiesce()
            await mending.deploy.quiesce()
            await self.incidents.quiesce()
            # Incidents may have started runs of the bot's own; their notes go back to the incidents.
            await mending.autonomy.quiesce()
            await self.incidents.quiesce()
            await mending.cluster.quiesce()
        else:
            await self.incidents.quiesce()
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
        if self._completing is not None:
            await asyncio.wait([self._completing])  # a half being built is closed once it is
        self.reminders.stop()
        mending = self.mending
        if mending is not None:
            await mending.drill.close()
            mending.autonomy.close()
            await mending.improve.shutdown()
            await mending.autonomy.quiesce()
            mending.deploy.stop()
            await mending.cluster.close()
        await self.incidents.quiesce()
        await self.people.quiesce()
        await self.recorder.close()
        await self.daemons.stop_all()
        if mending is not None and mending.improve.queue is not None:
            await mending.improve.queue.close()
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


def installed_prompts() -> Path:
    """mendbot's prompts: inside the installed package (`mendbot/prompts/`), or in a checkout the
    repository's top-level prompts/ (which a deploy of mendbot's own repository reloads)."""
    inside = PACKAGE_DIR / "prompts"
    return inside if inside.is_dir() else REPO_ROOT / "prompts"


async def build_services(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = discord.utils.utcnow,
    prompts_dir: Path | None = None,
    watch_prompts: bool = True,
    leadership: Leadership | None = None,
    connecting: bool = False,
    mending: bool = True,
) -> Services:
    """Open the database, load prompts and build every service. Prompt errors are logged.

    `leadership` defaults to the one the settings call for (`mendbot.scale.leader.leadership_for`).
    `connecting`: for a bot about to connect — the services' daemons wait until it has its gateway
    session (the attachment releases them at `on_connect`; bot/kernel/daemons.py). `mending`: the
    self-improvement half built too; without it the caller builds it later (`Services.complete`), and
    what it would be handed meanwhile is held for it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = await core.connect(settings.database_target, timeout_ms=settings.storage.busy_timeout_ms)
    daemons = Daemons()
    if connecting:
        daemons.hold(DAEMONS_HELD_AT_MOST_S)
    try:
        services = await _assemble(
            settings, db, clock, prompts_dir, leadership or leadership_for(settings), daemons=daemons
        )
        if mending:
            await services.complete()
        else:
            services.hold_for_mending()
    except BaseException:
        await daemons.stop_all()
        await db.close()  # an open connection's thread would keep the process alive
        raise
    # The hand-edit watcher (started by the Ship cog) reloads prompts too; one watcher is enough.
    if watch_prompts and not settings.deploy.watch_hand_edits:
        services.daemons.start("prompt-watcher", services.prompts.watch())
    return services


async def _assemble(
    settings: Settings,
    db: Connection,
    clock: Callable[[], datetime],
    prompts_dir: Path | None,
    leadership: Leadership,
    *,
    daemons: Daemons,
) -> Services:
    """The recording half: what a bot's handlers are recorded, announced and chatted with by."""
    prompts = PromptRegistry(prompts_dir or installed_prompts())
    prompts.load_all()
    # One redactor, knowing the bot's secret values, on every way out: records, runs, reports, logs.
    redactor = Redactor.from_settings(settings, also=bot_secrets(settings.bot, settings.repo_dir))
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
    recorder.on_loss(incidents.on_record_loss)
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
    people = await People.loaded(db, clock, dev_guild_id=settings.discord.dev_guild_id)
    access = AccessPolicy(lambda: settings.access)
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
        access=access,
        clock=clock,
        audit=AuditService(settings.database_target, settings.audit, clock),
        people=people,
        writes=writes,
        leadership=leadership,
        redactor=redactor,
        storage=storage,
        # The same policy as every other decision: a change any of them sees ends sessions at once.
        dashboard=DashboardSignIn(db, settings.dashboard, lambda: clock().timestamp(), access=access),
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
    return services


_discord_utils: Any = discord.utils  # its `datetime` is what a virtual Discord replaces


def _utcnow_timestamp() -> float:
    """`discord.utils.utcnow().timestamp()`, cheaply: `time.time()` while discord.py reads the real clock
    (a datetime made only to be read back cost ~0.4 µs a record). A virtual Discord replaces the module
    discord.py reads the time from, and then its time is the bot's."""
    if _discord_utils.datetime is _datetime_module:
        return time.time()
    return discord.utils.utcnow().timestamp()
