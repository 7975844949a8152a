"""Code the agent runs in the sandbox plants an embedded repository whose config names a program, and a
symlink to the live secrets: the run fails saying why, and nothing it planted ever runs on the host.

The real bundled CLI, the model double, the sandbox and the virtual Discord. The scripted agent writes a
script and runs it with its Bash tool (inside the sandbox): it makes `vendored/`, a repository of its
own whose config defines a clean filter that `.gitattributes` routes every file to — a program that,
run by the bot's git on the host, would create a marker file only the host can see.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness.discord import bot_messages, make_settings, running_world
from tests.harness.model_double import ModelDouble, Turn, text, tool_use
from tests.harness.repo import copy_of_bot
from tests.harness.sql import stored

pytestmark = pytest.mark.cli

PLANT = """\
import os
import subprocess

os.makedirs("vendored")
subprocess.run(["git", "init", "-q", "vendored"], check=True)
subprocess.run(["git", "-C", "vendored", "config", "filter.evil.clean", "touch {marker}; cat"], check=True)
open("vendored/.gitattributes", "w").write("* filter=evil\\n")
open("vendored/payload.txt", "w").write("hello\\n")
ident = ["-c", "user.name=x", "-c", "user.email=x@x"]
subprocess.run(["git", "-C", "vendored", *ident, "add", "-A"], check=True)
subprocess.run(["git", "-C", "vendored", *ident, "commit", "-qm", "x"], check=True)
open("vendored/payload.txt", "w").write("changed\\n")
print("planted")
"""


def _json_turn(value: dict[str, object]) -> Turn:
    return text(f"Here it is.\n```json\n{json.dumps(value)}\n```")


async def test_an_embedded_repository_planted_in_the_sandbox_fails_the_run_and_never_runs(
    tmp_path: Path,
) -> None:
    """The run fails naming the embedded repository; the filter never ran on the host; nothing merged."""
    marker = tmp_path / "the-filter-ran-on-the-host"
    repo = copy_of_bot(tmp_path / "repo")
    async with ModelDouble() as model:
        settings = make_settings(
            repo / "data",
            repo_dir=repo,
            anthropic_api_key="test-key",
            anthropic_base_url=model.base_url,
            improve={"checks": [], "max_attempts": 1},
            observe={"announce_new_fingerprints": False},
        )
        async with running_world(settings, settle_timeout=180) as world:
            worktree = settings.data_dir.resolve() / "worktrees" / "run-1"
            write = tool_use(
                "Write", {"file_path": str(worktree / "plant.py"), "content": PLANT.format(marker=marker)}
            )
            run = tool_use("Bash", {"command": "python plant.py"})
            model.script(
                _json_turn({"root_cause": "unknown", "files": [], "confidence": "low"}),
                _json_turn({"files": ["plant.py", "vendored"], "changes": "vendor a helper", "risk": "low"}),
                write,
                run,
                text("Done."),
            )
            await world.users["alice"].slash(world.dev, "fix", description="vendor the dice helper")
            await world.quiesce()
            dev = "\n".join(m.content for m in bot_messages(world, world.dev))

    assert "planted" in model.tool_result(run.tool_use_id).content
    assert not marker.exists(), "the embedded repository's filter ran on the host"
    [(state, reason)] = stored(settings, "SELECT state, failure_reason FROM runs WHERE id = 1")
    assert state == "failed", (state, reason)
    assert "an embedded repository at `vendored/.git`" in reason
    assert "embedded repository" in dev
    assert stored(settings, "SELECT count(*) FROM proposals") == [(0,)]
