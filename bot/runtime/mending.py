"""mendbot's self-improvement half: runs, deploys, autonomy, the cluster's work, drills and dev mode.

Built on the recording half (bot/runtime/services.py: the recorder, the detector, incidents, …) by
`Services.complete()`: at once for mendbot's own bot, its workers and tools; for a bot mendbot attaches
to, once that bot has its gateway session (bot/runtime/attachment.py), so that the bot's own start waits
for none of it — its modules alone are about a third of what attaching costs a start. This module is
imported only then: nothing of the recording half imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from mendbot.db.core import Connection
from mendbot.db.retry import Writes
from mendbot.deploy.approval import ApprovalService
from mendbot.deploy.merge import Merger
from mendbot.deploy.service import DeployService
from mendbot.features.devmode import DevMode
from mendbot.forge.base import Forge
from mendbot.forge.local import LocalForge
from mendbot.improve.agent.workspace import Workspace
from mendbot.improve.autonomy import AutonomyService
from mendbot.improve.drill import DrillService
from mendbot.improve.memory import Memory
from mendbot.improve.policy import BudgetLedger, Policy
from mendbot.improve.relay import RunEventRelay
from mendbot.improve.runs import Run, RunService
from mendbot.improve.service import SelfImprovementAgent
from mendbot.kernel.daemons import Daemons
from mendbot.kernel.drills import DRILL_USER_ID
from mendbot.kernel.prompts import PromptRegistry
from mendbot.kernel.settings import Settings
from mendbot.observe.detector import AnomalyDetector
from mendbot.observe.incidents import IncidentService
from mendbot.observe.recorder import ActionRecorder
from mendbot.scale.cluster import Cluster
from mendbot.scale.leader import Leadership, process_label, shares_database
from mendbot.trust.redact import Redactor
from mendbot.trust.sandbox import Sandbox

if TYPE_CHECKING:
    from mendbot.improve.agent.code_agent import CodeAgent
    from mendbot.trust.gateway import ModelGateway

__all__ = ["Mending", "build_improve", "build_mending"]


class Mending(msgspec.Struct):
    """The self-improvement half's services, and what its start found to say in #dev."""

    improve: SelfImprovementAgent
    deploy: DeployService
    autonomy: AutonomyService
    cluster: Cluster
    drill: DrillService
    devmode: DevMode
    notices: list[str]  # runs a stop interrupted, a drill it ended: posted once the bot is ready


async def build_mending(
    settings: Settings,
    db: Connection,
    *,
    prompts: PromptRegistry,
    clock: Callable[[], datetime],
    redactor: Redactor,
    writes: Writes,
    recorder: ActionRecorder,
    incidents: IncidentService,
    detector: AnomalyDetector,
    leadership: Leadership,
    daemons: Daemons,
) -> Mending:
    """Build the half and start its background work (the cluster's, the workers' relay). The caller
    hands it incidents (`incidents.on_raised`); a deploy's watch is subscribed to the recorder here."""
    shared = shares_database(settings)
    improve = await build_improve(settings, db, prompts, clock, redactor, writes=writes)
    improve.incidents = incidents  # a model API a run cannot reach is named in #dev
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
    if not shared:  # on a shared database the leader feeds the watch every process's records
        recorder.subscribe(deploy.observe)
    deploy.fixed, deploy.unfixed = detector.forget, detector.recall
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
    notices = await _boot_notices(interrupted, drill)
    devmode = DevMode(db, settings.repo_dir.resolve(), clock)
    autonomy = AutonomyService(config=settings.improve, improve=improve, incidents=incidents, devmode=devmode)
    cluster = Cluster(
        settings=settings,
        db=db,
        leadership=leadership,
        incidents=incidents,
        detector=detector,
        deploy=deploy,
        improve=improve,
    )
    # The watchdog and, on a shared database, the leader's work run while this process leads.
    await cluster.start(daemons)
    if relay is not None:
        # One process relays the workers' progress to Discord (any may post by channel id): with
        # several bot processes, each relaying would post every update once per process.
        daemons.start("run-relay", cluster.leadership.while_leader(relay.run))
    return Mending(
        improve=improve,
        deploy=deploy,
        autonomy=autonomy,
        cluster=cluster,
        drill=drill,
        devmode=devmode,
        notices=notices,
    )


async def _interrupted(improve: SelfImprovementAgent, *, shared: bool) -> list[Run]:
    """The runs this process's last stop interrupted (on a shared database: none — runs in flight are
    other processes' too, and one starting must not take them for ones it stopped; what a dead process
    left is failed by the leader's stuck-run watchdog, and a merge it left is finished by the leader's
    merge pass, bot/scale/cluster.py)."""
    if shared:
        await improve.claims.release_ended()
        return []
    return await improve.on_startup()


async def _boot_notices(interrupted: list[Run], drill: DrillService) -> list[str]:
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


async def _run_on_workers(
    settings: Settings, db: Connection, improve: SelfImprovementAgent
) -> RunEventRelay | None:
    """With `improve.run_on: workers`: runs are deferred to the queue, and what the workers report
    comes back through the relay (started as a daemon) to the bot's reporter."""
    if settings.improve.run_on != "workers":
        return None
    from mendbot.improve.queue import RunQueue  # procrastinate is loaded only when workers are used

    assert settings.database.url is not None  # refuse_workers_without_store
    queue = RunQueue(settings.database.url, lost_after_s=settings.improve.worker_lost_after_s)
    await queue.open()
    improve.queue = queue
    return RunEventRelay(settings.database.url, db, improve.runs, lambda: improve.reporter)


def _forge(settings: Settings, db: Connection, repo_root: Path, clock: Callable[[], datetime]) -> Forge:
    config = settings.forge
    if config.kind == "local":
        return LocalForge(repo_root, db, clock=clock)
    from mendbot.forge.github import GitHubForge  # its module and githubkit load for a GitHub forge only

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


async def build_improve(
    settings: Settings,
    db: Connection,
    prompts: PromptRegistry,
    clock: Callable[[], datetime],
    redactor: Redactor,
    *,
    writes: Writes,
) -> SelfImprovementAgent:
    """The self-improvement agent on `settings`' repository: a bot's, or a worker's (bot/runtime/worker)."""
    repo_root = settings.repo_dir.resolve()
    policy = Policy(settings.improve, db, clock)
    await policy.load()
    runs = RunService(db, clock, redactor, writes=writes)
    api_key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else ""

    def new_gateway() -> ModelGateway:
        from mendbot.trust.gateway import ModelGateway  # the gateway and its pricing load with the first run

        return ModelGateway(
            upstream=settings.anthropic_base_url,
            api_key=api_key,
            ledger=BudgetLedger(policy, runs),
            wait_s=settings.improve.model_wait_s,
        )

    home = settings.data_dir.resolve() / "agent-home"
    sandbox = Sandbox.from_config(settings.improve.sandbox)

    def new_agent() -> CodeAgent:
        from mendbot.improve.agent.code_agent import (
            ClaudeCodeAgent,  # claude-agent-sdk is loaded when a run starts
        )

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
