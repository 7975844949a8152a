"""`mendbot play --demo`: the whole fix loop with no key and no network, through the real pipeline."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from mendbot.tools.demo_agent import BUG, FIX, answer
from mendbot.tools.demo_model import Turn

pytestmark = pytest.mark.cli

PROJECT = Path(__file__).resolve().parent.parent


async def _demo(tmp_path: Path, *args: str, stdin: bytes = b"") -> tuple[int, str, float]:
    """Run `mendbot play --demo` as a newcomer would: no key, no config, nothing but the command."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MENDBOT_CONFIG", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "DISCORD_TOKEN")
    }
    env["MENDBOT_CONFIG"] = os.devnull
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mendbot",
        "play",
        "--demo",
        "--data-dir",
        str(tmp_path / "demo"),
        *args,
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(stdin), 600)
    assert process.returncode is not None
    return process.returncode, out.decode(), time.monotonic() - started


async def test_the_demo_goes_from_failure_to_rollback_through_the_real_pipeline(tmp_path: Path) -> None:
    """`mendbot play --demo` with no key: the seeded failure is announced, "fix this" runs the CLI in the
    sandbox through the gateway to a proven proposal, mallory cannot ship it, alice's "ship it" merges and
    reloads /fortune, the watch resolves it on `wait`, and the rollback brings the fault back; exit 0.
    The demo is the same every time: a second run on the same directory starts again from the fault
    (its repository and state rebuilt) and tells the same story."""
    code, out, _ = await _demo(tmp_path)
    assert code == 0, out[-3000:]
    story = [
        "── 1. A guild with a /fortune command",
        "Incident #1: the `fortune` command",
        "Since: ",
        "Something went wrong on my side (ZeroDivisionError)",
        "alice in #dev> reply m1 fix this",
        "🔎 gathering evidence",
        "🛠 Run #1 — fix ready for review (proposal #1)\n```diff\ndiff --git a/cogs/fortune.py",
        "🧪 Proof: ✅ **proven by replay**",
        "On the dashboard: http://127.0.0.1:",
        "mallory isn't allow-listed to approve.",
        "🚀 Merged",
        "✅ cogs.fortune reloaded",
        "[#general] mendbot (m10): 🥠",
        "alice in #dev> wait 61s",
        "✅ Run #1: quiet for 1 min after deploy — resolved.",
        "⏪ Rolled back run #1",
        "🧪 Replay after the rollback: ✅ the recorded calls behave as before the fix",
        "That was the loop.",
    ]
    positions = [out.find(step) for step in story]
    assert -1 not in positions, [step for step in story if step not in out]
    assert positions == sorted(positions), out
    # When it began: a moment ago ("just now" within the second it began, "1 s ago" across its end).
    assert re.search(r"Since: (?:just now|[1-5] s ago)\n", out), out[positions[1] : positions[3]]
    assert out.rindex("Something went wrong on my side (ZeroDivisionError)") > out.index("⏪ Rolled back")
    # The failure after the rollback reopens the incident and is counted in it (it said "3 times").
    assert "Seen: 4 times, 2 users" in out[out.index("⏪ Rolled back") :]
    assert "Traceback" not in out and "ANTHROPIC_API_KEY" not in out and "local://" not in out
    repo = tmp_path / "demo" / "demo-repo"
    assert BUG in (repo / "cogs" / "fortune.py").read_text()  # rolled back
    with sqlite3.connect(tmp_path / "demo" / "mendbot.db") as db:
        sessions = db.execute("SELECT count(*) FROM run_events WHERE event = 'agent_session'").fetchone()
        requests = db.execute("SELECT count(*) FROM run_events WHERE event = 'model_request'").fetchone()
        states = db.execute("SELECT state FROM runs").fetchall()
        incidents = db.execute("SELECT state, count FROM incidents").fetchall()
    assert sessions[0] >= 3 and requests[0] >= 3  # investigate, plan, edit: the CLI, through the gateway
    assert states == [("rolled_back",)]  # not "resolved": its change is gone again
    assert incidents == [("open", 4)]

    second_code, second, _ = await _demo(tmp_path)
    assert second_code == 0, second[-3000:]
    assert second.count("🛠 Run #1 — fix ready for review") == 1
    assert second.count("⏪ Rolled back run #1") == 1


def test_the_demo_model_fixes_only_what_it_is_asked_to() -> None:
    """The demo's model answers by the question: a diagnosis, a plan, the edit in the session's working
    directory, a summary after the edit's result, and a chat reply when asked without tools."""
    tools = [{"name": "Edit"}]

    def user(content: str) -> dict[str, object]:
        return {"role": "user", "content": content}

    diagnosis = answer({"tools": tools, "messages": [user("… Finish with your diagnosis as one JSON …")]})
    plan = answer({"tools": tools, "messages": [user("Diagnosis… Plan the smallest change that fixes it.")]})
    edit = answer(
        {
            "tools": tools,
            "messages": [
                {
                    "role": "system",
                    "content": [{"type": "text", "text": " - Primary working directory: /w/run-2"}],
                },
                user("Make this change in the worktree."),
            ],
        }
    )
    chat = answer({"messages": [user("hi")]})
    assert isinstance(edit, Turn)
    assert '"root_cause"' in diagnosis.content[0]["text"] and '"files"' in plan.content[0]["text"]
    (call,) = [block for block in edit.content if block["type"] == "tool_use"]
    assert call["input"] == {"file_path": "/w/run-2/cogs/fortune.py", "old_string": BUG, "new_string": FIX}
    assert "fix `/fortune`" in chat.content[0]["text"]


def test_readme_and_make_run_the_demo_this_file_tests() -> None:
    """README's "Try the fix loop without a key" and `make demo` run the command tested above."""
    readme = (PROJECT / "README.md").read_text()
    section = readme.split("## Try the fix loop without a key", 1)[1].split("\n## ", 1)[0]
    assert "make demo        # or: .venv/bin/mendbot play --demo\n" in section
    makefile = (PROJECT / "Makefile").read_text()
    assert "demo: runtime" in makefile and "$(BIN)/mendbot play --demo </dev/null" in makefile
