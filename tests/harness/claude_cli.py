"""Run the bundled Claude Code CLI (via claude_agent_sdk) against the loopback ModelDouble.

``cli_env`` and the launcher are the product's own (bot/trust/agent_env.py): claude_agent_sdk
passes the parent's whole environment to the CLI, so the CLI is started through an ``env -i``
launcher that keeps only the allow-listed names. ``agent_options`` builds plain options for a
run in a repo with a private HOME (the guard-enforced options live in bot/improve/agent/code_agent.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from claude_agent_sdk import ClaudeAgentOptions

from mendbot.trust.agent_env import agent_environment, prepare_home, write_launcher
from tests.harness.model_double import ModelDouble

__all__ = [
    "DEFAULT_ALLOWED_TOOLS",
    "DEFAULT_TOOLS",
    "agent_options",
    "cli_env",
]


# Tools advertised to the model, and those that run without asking.  "Bash" is advertised
# but not pre-approved: a test that wants it passes allowed_tools=[..., "Bash"].
DEFAULT_TOOLS = ["Read", "Edit", "Write", "Glob", "Grep", "Bash"]
DEFAULT_ALLOWED_TOOLS = ["Read", "Edit", "Write", "Glob", "Grep"]


def cli_env(home: Path, model: ModelDouble) -> dict[str, str]:
    """The allow-listed environment for the CLI (the product's), pointed at the model double."""
    return agent_environment(home, base_url=model.base_url, api_key="test-key")


def agent_options(repo: Path, home: Path, model: ModelDouble, **overrides: Any) -> ClaudeAgentOptions:
    """Options for a CLI run in ``repo`` with private ``home``, talking only to ``model``.

    Defaults: no settings files (``setting_sources=[]``), ``DEFAULT_TOOLS`` advertised,
    ``DEFAULT_ALLOWED_TOOLS`` pre-approved, ``permission_mode="dontAsk"`` (anything not
    pre-approved is denied with an is_error tool_result, no prompt — except that the CLI still
    runs Bash commands it deems read-only, e.g. ``echo hi``; ``bypassPermissions`` refuses to
    run as root),
    ``max_turns=8``.  ``overrides`` are any ClaudeAgentOptions fields; an ``env`` override
    is laid over ``cli_env`` and its names are let through the launcher.
    """
    env = cli_env(home, model)
    env.update(overrides.pop("env", {}))
    prepare_home(home)
    launcher = write_launcher(home, env)
    options = ClaudeAgentOptions(
        cwd=repo,
        cli_path=launcher,
        env=env,
        setting_sources=[],
        tools=list(DEFAULT_TOOLS),
        allowed_tools=list(DEFAULT_ALLOWED_TOOLS),
        permission_mode="dontAsk",
        max_turns=8,
    )
    return replace(options, **overrides)
