"""Proofs on every surface, staged: members' calls recorded by the real bot on the virtual Discord, a change
committed to a copy of the repository, and the real Prover — the sandbox, the loopback Discord, the
launcher's watch — judging it. tests/test_proof_surfaces_e2e.py drives the same scenarios through the
real Claude Code CLI against the model double; this stages them without it (tests/test_proof_surfaces.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mendbot.improve.proof.heldout import shown_identities
from mendbot.improve.proof.verdict import Proof
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import make_settings, running_world
from tests.harness.repo import copy_of_bot
from tests.harness.sql import stored

__all__ = ["Change", "proof_of", "proving_world", "says"]

# A change: file → (old text, new text), or a list of them, applied in turn to the worktree's copy.
Change = Mapping[str, tuple[str, str] | list[tuple[str, str]]]


@asynccontextmanager
async def proving_world(tmp_path: Path, extension: str, **observe: Any) -> AsyncIterator[VirtualWorld]:
    """The bot with `extension` loaded, on the virtual Discord, its repository a copy of this one."""
    repo = copy_of_bot(tmp_path / "repo")
    settings = make_settings(
        tmp_path / "data",
        repo_dir=repo,
        improve={"checks": ["python -c pass"], "replay_answer_s": 5, "stuck_timeout_s": 1e12},
        observe={"announce_new_fingerprints": False, **observe},
        deploy={"watch_hand_edits": False},
    )
    async with running_world(settings, extra_extensions=[extension], settle_timeout=180) as world:
        yield world


def says(world: VirtualWorld, *lines: str, who: str = "alice") -> Callable[[], Awaitable[None]]:
    async def send() -> None:
        for line in lines:
            await world.users[who].send(world.general, line)

    return send


async def proof_of(world: VirtualWorld, change: Change, *, kind: str) -> Proof:
    """The proof of `change` against the recorded failures of `kind` (the older half shown)."""
    services = world.bot.services
    await world.quiesce()
    await services.recorder.flush()
    rows = stored(
        services.settings,
        "SELECT ts, kind, invocation, fingerprint FROM actions WHERE kind = ? AND ok = 0 ORDER BY id",
        kind,
    )
    assert rows, f"no failure of {kind} was recorded"
    fingerprint = rows[-1]["fingerprint"]
    failed = [(row["ts"], row["kind"], json.loads(row["invocation"] or "null")) for row in rows]
    improve = services.improve
    worktree = await improve.workspace.create(1, "surface")
    for file, edits in change.items():
        path = worktree.path / file
        text = path.read_text() if path.exists() else ""
        for old, new in edits if isinstance(edits, list) else [edits]:
            assert old in text, f"{old!r} is not in {file}"
            text = text.replace(old, new, 1) if old else new
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    head = await improve.workspace.commit(worktree, "change", 1)
    return await improve.prover.prove(
        run_id=1,
        base_sha=worktree.base_sha,
        sha=head,
        fingerprint=fingerprint,
        kind=kind,
        shown=shown_identities(failed),
    )
