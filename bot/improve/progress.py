"""The base of SelfImprovementAgent (`mendbot.improve.service`): the services a run works with, the runs
executing in this process and what a run shows as it goes — its status message, with the step the agent
is on, and its final report — plus the agent session every stage runs through and the lesson a run
leaves. The layers above add the verify-and-propose stage (`mendbot.improve.propose`), the stages of a run
(`mendbot.improve.stages`), the proofs taken after the pipeline (`mendbot.improve.proving`) and the requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from mendbot.db import incidents as incident_queries
from mendbot.db import proofs as proof_queries
from mendbot.db.core import Connection
from mendbot.forge.base import Forge
from mendbot.improve.agent.claims import Claim, ClaimService
from mendbot.improve.agent.workspace import Workspace, Worktree
from mendbot.improve.memory import Lesson, Memory
from mendbot.improve.policy import Policy
from mendbot.improve.runs import Run, RunService, RunState
from mendbot.kernel.durations import human_duration
from mendbot.kernel.errors import model_unreachable
from mendbot.kernel.log import get_logger
from mendbot.kernel.money import usd
from mendbot.kernel.prompts import PromptRegistry
from mendbot.kernel.settings import Settings
from mendbot.trust.sandbox import Sandbox

if TYPE_CHECKING:  # the agent module loads claude-agent-sdk (~0.5 s): only when a run starts
    from mendbot.improve.agent.code_agent import AgentResult, CodeAgent
    from mendbot.improve.proof.prover import Prover
    from mendbot.improve.queue import RunQueue
    from mendbot.observe.incidents import IncidentService
    from mendbot.trust.gateway import ModelGateway
    from mendbot.trust.guard import Decision

__all__ = ["RunProgress", "RunReporter"]

_log = get_logger(__name__)


class RunReporter(Protocol):
    """The chat side of a run: one status message edited in place, and the final report."""

    async def progress(self, run: Run, lines: list[str]) -> None: ...

    async def report(self, run: Run, text: str, *, diff: str | None = None) -> None:
        """The run's final word; `diff`: the change a proposal carries, for chat to show with it."""


class _Live(msgspec.Struct):
    """What a running run holds in memory: its task, its agent and its progress lines."""

    task: asyncio.Task[None] | None = None
    agent: CodeAgent | None = None
    worktree: Worktree | None = None
    lines: list[str] = msgspec.field(default_factory=list)
    started: float = msgspec.field(default_factory=time.perf_counter)
    cancelled_by: int | None = None
    # The agent step under way, for the status message: what it is doing now and since when.
    step: str | None = None
    step_started: float = 0.0
    step_calls: int = 0
    reported_at: float = 0.0  # when the status message was last edited (monotonic)
    pending_report: asyncio.Task[None] | None = None
    claim: Claim | None = None  # the files this run may change, from its plan (mendbot.improve.agent.claims)
    model_away: str | None = None  # why the model's API cannot be reached, while the agent waits for it


class RunProgress:
    """What every layer of SelfImprovementAgent works with: its services, its runs in memory, what their
    chat shows, and the agent sessions of their stages."""

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
        gateway: Callable[[], ModelGateway],
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
        self._new_gateway = gateway
        self._gateway: ModelGateway | None = None
        self._clock = clock
        self._live: dict[int, _Live] = {}
        self._starting = asyncio.Lock()
        self._prover: Prover | None = None
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
        # Where an environment problem a run meets (the model's API away) is named: the bot's incidents
        # (set by the assembly); None in a worker, whose runs' reports say it.
        self.incidents: IncidentService | None = None

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
        """What the agent is doing right now: model turns so far, its latest tool call, time in this step —
        or what it waits for."""
        away = self.gateway.outage.away if live.model_away is not None else None
        if away is not None:
            return (
                f"  ⏳ waiting for the model: {away[1]} · {human_duration(away[0])} so far, giving up after "
                f"{human_duration(self._config.model_wait_s)}"
            )
        turns = sum(1 for event in await self.runs.events(run.id) if event.event == "model_request")
        elapsed = time.monotonic() - live.step_started
        return (
            f"  ↳ {live.step} · turn {turns} · {live.step_calls} tool call(s) · "
            f"{human_duration(elapsed)} in this step"
        )

    def model_away(self) -> tuple[float, str] | None:
        """(seconds since, why) while the runs' model API cannot be reached, else None (also before any
        run made the gateway)."""
        return self._gateway.outage.away if self._gateway is not None else None

    @property
    def gateway(self) -> ModelGateway:
        """The model gateway the agent talks to, made (and its modules loaded) by the first run."""
        if self._gateway is None:
            self._gateway = self._new_gateway()
            self._gateway.outage.waiting = self._model_waiting
        return self._gateway

    def _model_waiting(self, run_id: int, why: str | None) -> None:
        """The gateway waits for the model's API for a request of `run_id` (None: it answered again):
        the status says so, and an API that is away is named in #dev, once, as an environment incident."""
        live = self._live.get(run_id)
        if live is None or live.model_away == why:
            return
        if why is not None and live.model_away is None and self.incidents is not None:
            problem = model_unreachable(why)
            self.incidents.environment(
                problem.key, kind=problem.kind, summary=problem.summary, need=problem.need, level="warning"
            )
        live.model_away = why
        self._progress_soon(run_id, live)

    @property
    def prover(self) -> Prover:
        """The proof's runner, made by the first proof (its replay and test-runner modules load then)."""
        if self._prover is None:
            from mendbot.improve.proof.prover import Prover

            self._prover = Prover(
                db=self._db,
                workspace=self.workspace,
                sandbox=self.sandbox,
                test_timeout_s=self._config.check_timeout_s,
                latency_min_ms=self._settings.observe.latency.min_ms,
                replay_answer_s=self._config.replay_answer_s,
                slowdown=(self._config.proof_slowdown_factor, self._config.proof_slowdown_min_ms),
                data_dir=self._settings.data_dir,
                redact=self.runs.redactor.text,
                now=lambda: self._clock().timestamp(),
            )
        return self._prover

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

    async def _report(self, run_id: int, text: str, *, diff: str | None = None) -> None:
        if self.reporter is None:
            return
        redact = self.runs.redactor.text
        try:
            shown = redact(diff) if diff is not None else None
            await self.reporter.report(await self.runs.get(run_id), redact(text), diff=shown)
        except Exception:
            _log.exception("final report failed")

    async def _agent(self, run: Run, prompt: str, *, read_only: bool) -> AgentResult:
        """A session of the agent asked one prompt (`_agent_session`)."""
        async with self._agent_session(run, read_only=read_only) as ask:
            return await ask(prompt)

    @asynccontextmanager
    async def _agent_session(
        self, run: Run, *, read_only: bool
    ) -> AsyncIterator[Callable[[str], Awaitable[AgentResult]]]:
        """One agent session in the run's worktree; each prompt asked in the block is answered in the
        conversation so far and judged on its own: a stage failure for the budget, an unreachable
        model, an interrupt or an error, else its result."""
        live = self._live[run.id]
        assert live.worktree is not None, "the agent works in the run's worktree, never the live checkout"
        agent = live.agent = self._agent_factory()
        remaining = await self._remaining_budget(run)
        # The agent reaches the model only through the gateway, with a token for this session: the
        # real key never enters its world, and every request is capped to what the budget has left.
        await self.gateway.start()
        token = self.gateway.open_session(run.id)
        self._start_step(live, "🤖 the agent is starting")
        try:
            async with agent.session(
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
            ) as session:
                asked = 0

                async def ask(prompt: str) -> AgentResult:
                    nonlocal asked
                    if asked:  # the budget is decided again for every prompt after the first
                        await self._remaining_budget(run)
                        self._start_step(live, "🤖 the agent is thinking")
                    asked += 1
                    try:
                        result = await session.ask(prompt)
                    finally:
                        self._end_step(live)
                        live.model_away = None
                    return await self._judged(run, token, result, remaining)

                yield ask
        finally:
            self._end_step(live)
            self.gateway.close_session(token)
            live.agent = None
            live.model_away = None

    async def _remaining_budget(self, run: Run) -> float:
        remaining = await self.policy.remaining_run_budget(await self.runs.get(run.id))
        if remaining <= 0:
            raise _StageFailure("budget", "the run's budget is spent")
        return remaining

    async def _judged(self, run: Run, token: str, result: AgentResult, remaining: float) -> AgentResult:
        """One answer of the agent, recorded; a stage failure unless it succeeded."""
        refusal = self.gateway.refusal(token)
        outage = self.gateway.outage
        away = outage.away
        unreachable = outage.unreachable(token) or (away[1] if away and not result.ok else None)
        from mendbot.improve.agent.code_agent import describe_denials

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
        if unreachable is not None:
            # An environment incident, not the agent's doing: nothing it did reached the model.
            raise _StageFailure("model_unreachable", f"could not reach the model: {unreachable}")
        if refusal is not None:
            raise _StageFailure("budget", refusal)
        if result.outcome == "budget":
            raise _StageFailure("budget", f"the agent hit the budget cap ({usd(remaining)})")
        if result.outcome == "interrupted":
            raise asyncio.CancelledError
        if not result.ok:
            raise _StageFailure("agent", result.error or result.outcome)
        return result

    async def _incident_fingerprint(self, incident_id: int | None) -> str | None:
        if incident_id is None:
            return None
        return await incident_queries.fingerprint(self._db, incident_id)

    async def _incident_kind(self, incident_id: int | None) -> str | None:
        if incident_id is None:
            return None
        return await proof_queries.incident_kind(self._db, incident_id)

    async def _shown_calls(self, run_id: int) -> set[str]:
        """The failing calls the run's evidence showed the agent (the rest are held out for the proof)."""
        shown: set[str] = set()
        for event in await self.runs.events(run_id):
            if event.event == "evidence":
                shown |= {str(identity) for identity in event.detail.get("shown_calls") or []}
        return shown

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
    """A stage cannot go on: the run fails with `reason`; `kind` says why (the lesson's outcome)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
