"""The bot's own secret values never leave through a run: check output, reports, database, model, logs.

The real bundled CLI, the model double and the virtual Discord. The scripted agent knows the bot's
Discord token (as a leaked value might be known) and writes a test that prints it — plainly, in base64,
in hex and percent-encoded — and fails. The check output reaches the database, #dev and the retry
prompt only through the redactor. The agent's second attempt keeps the value, split over two string
literals, in the test file: the diff scan refuses to propose it. Nowhere does any form of it appear.
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.harness.discord import make_settings, running_world
from tests.harness.model_double import ModelDouble, Turn, text, tool_use
from tests.harness.repo import copy_of_bot
from tests.harness.sql import dump, stored

pytestmark = pytest.mark.cli

CHECK = "python -m pytest -q -p no:cacheprovider tests/test_leak.py"


def _json_turn(value: dict[str, Any]) -> Turn:
    return text(f"Here it is.\n```json\n{json.dumps(value)}\n```")


def _forms(secret: str) -> list[str]:
    raw = secret.encode()
    return [
        secret,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        raw.hex(),
        raw.hex().upper(),
        quote(secret, safe=""),
    ]


def _leaking_test(secret: str, *, fail: bool) -> str:
    half = len(secret) // 2
    return (
        "import base64\nfrom urllib.parse import quote\n\n"
        f'TOKEN = ("{secret[:half]}"\n         "{secret[half:]}")\n\n\n'
        "def test_leak():\n"
        "    raw = TOKEN.encode()\n"
        "    print(TOKEN, base64.b64encode(raw).decode(), raw.hex(), quote(TOKEN, safe=''))\n"
        f"    assert {not fail}, TOKEN + ' ' + raw.hex()\n"
    )


async def test_a_known_secret_in_check_output_and_diff_reaches_no_sink(tmp_path: Path) -> None:
    """Check output with the token in four encodings is redacted everywhere; a diff holding it is refused."""
    token = (
        "MTA" + secrets.token_urlsafe(21) + "." + secrets.token_urlsafe(4) + "." + secrets.token_urlsafe(28)
    )
    repo = copy_of_bot(tmp_path / "repo")
    async with ModelDouble() as model:
        settings = make_settings(
            repo / "data",
            repo_dir=repo,
            discord_token=token,
            anthropic_api_key="test-key",
            anthropic_base_url=model.base_url,
            improve={"checks": [CHECK], "max_attempts": 2, "check_timeout_s": 120},
        )
        worktree = settings.data_dir.resolve() / "worktrees" / "run-1"
        leak = worktree / "tests" / "test_leak.py"
        model.script(
            _json_turn({"root_cause": "unknown", "files": [], "confidence": "low"}),
            _json_turn({"files": ["tests/test_leak.py"], "changes": "a test", "risk": "low"}),
            tool_use("Write", {"file_path": str(leak), "content": _leaking_test(token, fail=True)}),
            text("Wrote a test."),
            tool_use("Write", {"file_path": str(leak), "content": _leaking_test(token, fail=False)}),
            text("Made it pass."),
        )
        async with running_world(settings, settle_timeout=180) as world:
            await world.users["alice"].slash(world.dev, "fix", description="the roll is broken")
            await world.quiesce()
            messages = [m.content for channel in (world.dev, world.general) for m in channel.history()]
        retry = [
            json.dumps(message)
            for r in model.message_requests
            for message in r.json["messages"]
            if message.get("role") == "user" and "The project's checks failed" in json.dumps(message)
        ]
    [(state, stage, reason)] = stored(
        settings, "SELECT state, failure_stage, failure_reason FROM runs WHERE id = 1"
    )
    everything = dump(settings)
    first_checks = json.loads(
        stored(settings, "SELECT detail FROM run_events WHERE event = 'checks' ORDER BY id")[0][0]
    )
    logs = "\n".join(path.read_text() for path in settings.log_dir.glob("*") if path.is_file())

    assert retry and "[redacted]" in retry[0]  # the failing output went back to the agent, redacted
    assert not first_checks["ok"]
    assert (state, stage) == ("failed", "proposing")
    assert "looks like a secret" in reason and "tests/test_leak.py" in reason
    everywhere = {"chat": "\n".join(messages), "database": everything, "logs": logs, "retry prompt": retry[0]}
    for form in _forms(token):
        for sink, content in everywhere.items():
            assert form not in content, f"{form[:6]}… reached the {sink}"
