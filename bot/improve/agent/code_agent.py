"""CodeAgent: the coding agent behind a small interface; ClaudeCodeAgent runs the bundled CLI.

One `session()` is one agent session (one CLI process) in a worktree, confined by a `ToolGuard`
(PreToolUse hook and `can_use_tool`), launched with an allow-listed environment under `env -i`, with
`setting_sources=[]` so nothing in the worktree configures it, and bounded by `max_turns` and
`max_budget_usd`. Every Bash command the guard allows runs inside the OS sandbox (a jail on the
worktree, read-only for a read-only session); without one, Bash is refused. The model endpoint and
key are the caller's: the bot's model gateway and a token for this session, never the real key.
In a session the agent is asked one prompt after another (`ask`), each answered with the conversation
so far: a run's plan follows its investigation in the same session, which saves a CLI start and lets
the plan draw on what the investigation read. `run()` is a session of one prompt. `interrupt()` stops
a running session (used by /cancel and /pause).

An editing session with a file claim (`mendbot.improve.agent.claims`) writes only the claimed files (the guard
enforces it) and gets one in-process tool, `claim_files(paths, why)` — an SDK MCP server living in the
bot, so the CLI reaches nothing new — that extends the claim.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    McpServerConfig,
    ResultMessage,
    SdkMcpTool,
    TextBlock,
    ToolUseBlock,
    create_sdk_mcp_server,
)

from mendbot.kernel.durations import human_duration
from mendbot.kernel.log import get_logger
from mendbot.trust.agent_env import agent_environment, prepare_home, write_launcher
from mendbot.trust.guard import CLAIM_TOOL, Confine, Decision, GuardPolicy, ToolGuard
from mendbot.trust.sandbox import Sandbox, SandboxUnavailable

if TYPE_CHECKING:
    from mendbot.improve.agent.claims import Claim

__all__ = ["AgentResult", "AgentSession", "ClaudeCodeAgent", "CodeAgent", "Outcome", "claim_server"]

_log = get_logger(__name__)
READ_ONLY_TOOLS = ["Read", "Glob", "Grep", "Bash"]
EDIT_TOOLS = ["Read", "Edit", "Write", "Glob", "Grep", "Bash"]

Outcome = Literal["success", "max_turns", "budget", "interrupted", "error"]


@dataclass
class AgentResult:
    outcome: Outcome
    text: str
    cost_usd: float
    turns: int
    seconds: float
    denials: list[Decision] = field(default_factory=list)
    tools_used: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "success"


class AgentSession(Protocol):
    async def ask(self, prompt: str) -> AgentResult: ...


class CodeAgent(Protocol):
    def session(
        self,
        *,
        system_prompt: str,
        worktree: Path,
        read_only: bool,
        security: bool,
        max_turns: int,
        max_budget_usd: float,
        base_url: str | None,
        api_key: str,
        on_decision: Callable[[Decision], None] | None = None,
        claim: Claim | None = None,
    ) -> AbstractAsyncContextManager[AgentSession]: ...

    async def interrupt(self) -> None: ...


_SUBTYPES: dict[str, Outcome] = {
    "success": "success",
    "error_max_turns": "max_turns",
    "error_max_budget_usd": "budget",
    "error_during_execution": "interrupted",
}


class ClaudeCodeAgent:
    """The Claude Code CLI bundled with claude-agent-sdk, confined and budgeted."""

    def __init__(
        self,
        *,
        home: Path,
        model: str | None,
        protected_paths: tuple[str, ...],
        sandbox: Sandbox | None,
        git_dir: Path | None,
        timeout_s: float = 1800,
    ) -> None:
        self._home = home
        self._model = model
        self._sandbox = sandbox
        self._git_dir = git_dir
        self._protected = protected_paths
        self._timeout_s = timeout_s
        self._client: ClaudeSDKClient | None = None
        self._interrupted = False

    def _options(
        self,
        *,
        worktree: Path,
        guard: ToolGuard,
        read_only: bool,
        max_turns: int,
        max_budget_usd: float,
        system_prompt: str,
        stderr: list[str],
        base_url: str | None,
        api_key: str,
        claim: Claim | None,
    ) -> ClaudeAgentOptions:
        prepare_home(self._home)
        env = agent_environment(self._home, base_url=base_url, api_key=api_key)
        servers: dict[str, McpServerConfig] = {}
        if claim is not None and not read_only:
            servers["mendbot"] = claim_server(claim)
        return ClaudeAgentOptions(
            cwd=worktree,
            cli_path=write_launcher(self._home, env),
            env=env,
            setting_sources=[],
            tools=READ_ONLY_TOOLS if read_only else EDIT_TOOLS,
            allowed_tools=[],
            permission_mode="default",  # the guard decides: hook first, can_use_tool second
            hooks=guard.hooks(),
            can_use_tool=guard.can_use_tool,
            max_turns=max_turns,
            max_budget_usd=max_budget_usd,
            system_prompt=system_prompt,
            model=self._model,
            mcp_servers=servers,
            stderr=lambda line: stderr.append(line) if len(stderr) < 200 else None,
        )

    async def run(self, *, prompt: str, **options: Any) -> AgentResult:
        """A session of one prompt (`session()`'s options)."""
        async with self.session(**options) as session:
            return await session.ask(prompt)

    @asynccontextmanager
    async def session(
        self,
        *,
        system_prompt: str,
        worktree: Path,
        read_only: bool,
        security: bool,
        max_turns: int,
        max_budget_usd: float,
        base_url: str | None,
        api_key: str,
        on_decision: Callable[[Decision], None] | None = None,
        claim: Claim | None = None,
    ) -> AsyncIterator[AgentSession]:
        """One CLI process for the prompts asked in the block; `max_turns` bounds each prompt's answer,
        `max_budget_usd` the whole session (the gateway also caps every request)."""
        claim = None if read_only else claim
        stderr: list[str] = []
        async with AsyncExitStack() as stack:
            confine, unconfined = await self._confinement(stack, worktree, read_only=read_only)
            guard = ToolGuard(
                GuardPolicy(
                    worktree=worktree,
                    protected_paths=self._protected,
                    security=security,
                    read_only=read_only,
                    extra_tools=(CLAIM_TOOL,) if claim is not None else (),
                    claim=claim,
                ),
                on_decision,
                confine=confine,
                unconfined_reason=unconfined,
            )
            options = self._options(
                worktree=worktree,
                guard=guard,
                read_only=read_only,
                max_turns=max_turns,
                max_budget_usd=max_budget_usd,
                system_prompt=system_prompt,
                stderr=stderr,
                base_url=base_url,
                api_key=api_key,
                claim=claim,
            )
            self._interrupted = False  # an interrupt from here on ends every answer of the session
            session = _Session(self, guard, stderr)
            client = ClaudeSDKClient(options)
            try:
                async with asyncio.timeout(self._timeout_s):
                    await client.connect()
            except TimeoutError:
                session.broken = f"the agent did not start within {human_duration(self._timeout_s)}"
            except ClaudeSDKError as exc:
                session.broken = f"{type(exc).__name__}: {exc}"
            else:
                stack.push_async_callback(_disconnect, client)
                self._client = session.client = client
            try:
                yield session
            finally:
                self._client = None

    async def _confinement(
        self, stack: AsyncExitStack, worktree: Path, *, read_only: bool
    ) -> tuple[Confine | None, str]:
        """How Bash commands get wrapped into the sandbox for this session, or why they cannot be."""
        if self._sandbox is None:
            return None, "no sandbox is configured"
        try:
            await self._sandbox.probe()
            jail = await stack.enter_async_context(
                self._sandbox.jail(worktree, git_dir=self._git_dir, writable=not read_only)
            )
        except SandboxUnavailable as exc:
            return None, f"the sandbox is unavailable ({exc})"
        env = jail.environment()

        def confine(argv: list[str], wall_s: float) -> str:
            return jail.shell_command(argv, env, wall_s=wall_s)

        return confine, ""

    async def interrupt(self) -> None:
        self._interrupted = True
        client = self._client
        if client is not None:
            try:
                await client.interrupt()
            except Exception:
                _log.exception("interrupting the agent failed")


class _Session:
    """The prompts of one `ClaudeCodeAgent.session()`: each `ask` answered in the conversation so far.
    Once an answer fails (an error, a timeout, an interrupt), every later `ask` fails with it."""

    def __init__(self, agent: ClaudeCodeAgent, guard: ToolGuard, stderr: list[str]) -> None:
        self.client: ClaudeSDKClient | None = None
        self.broken: str | None = None
        self._agent = agent
        self._guard = guard
        self._stderr = stderr
        self._cost_so_far = 0.0  # the CLI reports the session's cost to date with each answer

    async def ask(self, prompt: str) -> AgentResult:
        started = time.perf_counter()
        decided = len(self._guard.decisions)
        texts: list[str] = []
        tools: list[str] = []
        result: ResultMessage | None = None
        error = self.broken
        if error is None and self.client is not None and not self._agent._interrupted:
            try:
                async with asyncio.timeout(self._agent._timeout_s):
                    await self.client.query(prompt)
                    async for message in self.client.receive_response():
                        if isinstance(message, AssistantMessage):
                            for block in message.content:
                                if isinstance(block, TextBlock):
                                    texts.append(block.text)
                                elif isinstance(block, ToolUseBlock):
                                    tools.append(block.name)
                        elif isinstance(message, ResultMessage):
                            result = message
            except TimeoutError:
                error = f"the agent did not finish within {human_duration(self._agent._timeout_s)}"
            except ClaudeSDKError as exc:
                error = f"{type(exc).__name__}: {exc}"
        answer = self._answer(result, texts=texts, tools=tools, decided=decided, started=started, error=error)
        if not answer.ok:
            self.broken = self.broken or answer.error or answer.outcome
        return answer

    def _answer(
        self,
        result: ResultMessage | None,
        *,
        texts: list[str],
        tools: list[str],
        decided: int,
        started: float,
        error: str | None,
    ) -> AgentResult:
        denials = [d for d in self._guard.decisions[decided:] if not d.allowed]
        seconds = time.perf_counter() - started
        interrupted = self._agent._interrupted
        if result is None:
            outcome: Outcome = "interrupted" if interrupted else "error"
            detail = error or ("; ".join(self._stderr[-3:]) or "the agent ended without a result")
            return AgentResult(outcome, "\n".join(texts), 0.0, 0, seconds, denials, tools, detail)
        outcome = _SUBTYPES.get(result.subtype, "error")
        final = result.result if isinstance(result.result, str) and result.result else "\n".join(texts)
        failure = error
        if outcome == "success" and result.is_error:
            # The CLI ends an API error it gave up on as a "success" that is an error (no answer came).
            outcome = "error"
            status = f" ({result.api_error_status})" if result.api_error_status else ""
            failure = f"the model API failed{status}: {final[:300]}"
        if interrupted:
            outcome = "interrupted"
        total = float(result.total_cost_usd or 0.0)
        cost, self._cost_so_far = max(0.0, total - self._cost_so_far), total
        failure = None if outcome == "success" else (failure or f"agent stopped: {result.subtype}")
        _log.info(
            "agent finished",
            outcome=outcome,
            cost_usd=cost,
            turns=result.num_turns,
            denials=len(denials),
            seconds=round(seconds, 2),
        )
        return AgentResult(outcome, final, cost, result.num_turns, seconds, denials, tools, failure)


async def _disconnect(client: ClaudeSDKClient) -> None:
    """End the session's CLI; a failure to end it is logged, never the session's result."""
    try:
        async with asyncio.timeout(30):
            await client.disconnect()
    except (TimeoutError, ClaudeSDKError):
        _log.exception("ending the agent's CLI failed")


def claim_server(claim: Claim) -> McpServerConfig:
    """The in-process MCP server with the one tool that extends `claim` (`mcp__mendbot__claim_files`)."""

    async def claim_files(args: dict[str, Any]) -> dict[str, Any]:
        paths = args.get("paths")
        if isinstance(paths, str):
            paths = [paths]
        if not isinstance(paths, list) or not paths:
            return _tool_text("Give `paths`: a list of the files you need to change.", error=True)
        ok, answer = await claim.extend([str(path) for path in paths], str(args.get("why") or ""))
        return _tool_text(answer, error=not ok)

    tool: SdkMcpTool[Any] = SdkMcpTool(
        name="claim_files",
        description=(
            "Claim more files for this run before changing them: only claimed files may be edited. "
            "Waits a bounded time if another run holds them; says what was claimed or why not."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "paths": {"type": "array", "items": {"type": "string"}},
                "why": {"type": "string"},
            },
            "required": ["paths", "why"],
        },
        handler=claim_files,
    )
    return create_sdk_mcp_server("mendbot", tools=[tool])


def _tool_text(text: str, *, error: bool) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "is_error": error}


def describe_denials(denials: list[Decision]) -> list[dict[str, Any]]:
    """Denials as plain data for run events."""
    return [{"tool": d.tool, "target": d.target, "reason": d.reason} for d in denials]
