"""The dashboard in tests: served for a virtual world on a free port, with a run full of hostile text.

`serving(world)` starts the real `DashboardServer` for the world's bot (port 0: a free one) with a
sign-in whose clock a test can move (`Clock`). `seed_hostile_run` writes a run, its events, an
incident and a proposal whose every piece of untrusted text is an XSS payload, and a diff (a real
commit in a real repository) that adds one.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec

from mendbot.dashboard.server import DashboardServer
from mendbot.dashboard.signin import DashboardSignIn
from mendbot.db import approvals as approval_queries
from mendbot.db import incidents as incident_queries
from mendbot.db import proposals as proposal_queries
from mendbot.db import runs as run_queries
from mendbot.runtime.dashboard import dashboard_server
from mendbot.tools.playground import VirtualWorld

__all__ = ["DEVELOPERS", "PAYLOADS", "Clock", "Served", "allow", "git_change", "seed_hostile_run", "serving"]

# User ids the dashboard tests sign in directly (without a member in the world): allow-listed by `allow`.
DEVELOPERS = (1, 2, 7, 42, 4242)

# Each would set window.__pwned or open a dialog if it ever ran.
PAYLOADS = (
    "<script>window.__pwned = 1; alert('xss')</script>",
    '<img src=x onerror="window.__pwned = 2; alert(2)">',
    '<a href="javascript:window.__pwned=3;alert(3)">click me</a>',
    "<svg onload=alert(4)></svg>",
)


class Clock:
    """Wall-clock time plus whatever a test skips ahead."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.time() + self.skipped


@dataclass
class Served:
    server: DashboardServer
    signin: DashboardSignIn
    url: str
    clock: Clock


def allow(world: VirtualWorld, *user_ids: int) -> None:
    """Put `user_ids` on the world's allow-list (as config.yaml would), beside its allowed members."""
    access = world.bot.services.settings.access
    access.allowed_user_ids = [*access.allowed_user_ids, *user_ids]


@asynccontextmanager
async def serving(world: VirtualWorld) -> AsyncIterator[Served]:
    services = world.bot.services
    clock = Clock()
    config = msgspec.structs.replace(services.settings.dashboard, port=0)
    services.dashboard = DashboardSignIn(services.db, config, clock)
    server = dashboard_server(world.bot)
    assert server is not None
    port = await server.start()
    assert port is not None
    try:
        yield Served(server=server, signin=services.dashboard, url=f"http://127.0.0.1:{port}", clock=clock)
    finally:
        await server.stop()


def _git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]
    done = subprocess.run(["git", *identity, *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def git_change(repo: Path) -> tuple[str, str]:
    """A repository at `repo` with a base commit and one on top adding hostile lines: (base, head)."""
    repo.mkdir(parents=True, exist_ok=True)
    _git(repo, "init", "-q", "-b", "main")
    (repo / "cogs").mkdir(exist_ok=True)
    (repo / "cogs" / "dice.py").write_text("def roll() -> int:\n    return 4\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    base = _git(repo, "rev-parse", "HEAD")
    lines = "".join(f"# {payload}\n" for payload in PAYLOADS)
    (repo / "cogs" / "dice.py").write_text(f"{lines}def roll() -> int:\n    return 6\n")
    _git(repo, "commit", "-q", "-am", "fix")
    return base, _git(repo, "rev-parse", "HEAD")


async def seed_hostile_run(world: VirtualWorld, base: str, head: str) -> int:
    """A run (on an incident) whose description, events, diagnosis and proposal are all payloads."""
    db = world.bot.services.db
    now = time.time()
    hostile = " ".join(PAYLOADS)
    incident_id = await incident_queries.insert(
        db,
        {
            "rule": "repeat", "rules": ["repeat"], "level": "error", "kind": "command:roll",
            "fingerprint": "fp-hostile", "state": "open", "summary": f"roll fails {hostile}",
            "first_seen": now - 60, "last_seen": now, "count": 3, "user_ids": [42],
            "sample": {"error": hostile}, "updated_at": now,
        },
    )  # fmt: skip
    run_id = await run_queries.insert(
        db,
        {
            "kind": "fix", "state": "awaiting_approval", "requester_id": 42, "incident_id": incident_id,
            "description": f"fix the roll {hostile}", "slug": "fix-roll", "base_sha": base,
            "head_sha": head, "verified_sha": head, "created_at": now - 30, "updated_at": now,
        },
        actor="user:42",
        detail={"text": hostile},
    )  # fmt: skip
    runs = world.bot.services.improve.runs
    await runs.event(run_id, "diagnosis", actor="agent", detail={"root_cause": hostile})
    await runs.event(run_id, "plan", actor="agent", detail={"risk": "low", "steps": [hostile]})
    await runs.event(run_id, "checks", actor="pipeline", detail={"output": hostile})
    await runs.event(run_id, "model_request", actor="gateway", cost_usd=0.0123, detail={"model": hostile})
    proposal = await proposal_queries.insert(
        db, run_id=run_id, forge="local", branch="mendbot/1-fix-roll", head_sha=head, title=hostile,
        body=hostile, now=now, url="javascript:alert(5)",
    )  # fmt: skip
    for user_id, message_id in ((42, 900), (43, 901)):
        await approval_queries.insert(
            db, proposal_id=proposal.id, run_id=run_id, user_id=user_id, sha=head, form="approve",
            via="message", now=now, source=f"message:{message_id}", message_id=message_id, channel_id=1,
        )  # fmt: skip
    await approval_queries.withdraw(db, message_id=901, why=f"edited: {hostile}", now=now + 5)
    return run_id
