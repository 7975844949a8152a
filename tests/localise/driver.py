"""Drive one seeded fault through the virtual Discord and read back what mendbot made of it.

`localise(seed, workdir, model, with_model=...)` builds the seed's repository, boots the real MendBot on
it in the virtual Discord (the seed's cog loaded as an extension), makes the fault happen the way a
user would, then has alice complain in #dev in plain words. If the bot asks back (a vague complaint,
or its one question when no model decides), alice presses [Investigate]. The run the request starts
gathers its evidence pack and hands it to the real Claude Code CLI talking to the model double, which
answers that first request with an API error (400): what is scored is that request, and the run ends
there, failed, rather than going on to a plan and an edit session that score nothing (two more starts of
the CLI for every fix).

The model double answers the routing tool (`route_request`, bot/chat/route.py) as one of two models:
`with_model=False`, a model that makes no call — the bot is on its own, as without a key: its word
grammar, its targeting and its one question; `with_model=True`, a model that understands which of the
parts the bot lists the words mean (the seed's kind, or one it accepts, when the bot lists it — never
anything the bot did not offer). Either way, the suspects scored are the ones in the evidence the agent
was sent, as rendered (`rendered_suspects`), not an internal list.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord

from mendbot.chat.route import ROUTE_TOOL
from mendbot.cogs._asking import spoken
from mendbot.improve.memory import Lesson
from mendbot.kernel.settings import Settings
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_settings, running_world
from tests.harness.model_double import ModelDouble, error, text, tool_use
from tests.harness.sql import Row, stored
from tests.localise.repo import build_repo
from tests.localise.seeds import Seed

__all__ = ["Outcome", "localise", "rendered_suspects"]

# The answer to the agent's first request, the one carrying the evidence: not retried, it ends the run.
_ENOUGH = error(400, "invalid_request_error", "the localisation test has what it scores: the evidence")


@dataclass
class Outcome:
    seed: Seed
    recognised: bool  # a run was started from the words
    asked: bool  # the bot asked back before starting it
    replies: list[str]
    incident_kind: str | None  # the kind of the run's incident, if it has one
    target_kind: str | None  # the kind recorded for a run without an incident
    suspects: list[str]  # "path:qualname", most suspect first
    evidence: str  # the evidence section of the prompt the agent received
    routed: int = 0  # how many times the model was asked the routing tool

    @property
    def kind(self) -> str | None:
        return self.incident_kind or self.target_kind

    @property
    def files(self) -> list[str]:
        return list(dict.fromkeys(s.split(":", 1)[0] for s in self.suspects))

    @property
    def file_top1(self) -> bool:
        return bool(self.files) and self.files[0] == self.seed.file

    @property
    def function_top3(self) -> bool:
        return f"{self.seed.file}:{self.seed.function}" in self.suspects[:3]


def _rows(settings: Settings, sql: str, *args: Any) -> list[Row]:
    return stored(settings, sql, *args)


def _route_answer(seed: Seed, body: dict[str, Any], with_model: bool) -> Any:
    """The routing tool's call, as the model of this mode makes it (see the module docstring)."""
    if not with_model:
        return text("(no decision)")  # no tool call: the bot decides alone, or asks its one question
    schema = next(t for t in body.get("tools") or [] if t.get("name") == ROUTE_TOOL)["input_schema"]
    listed = list((schema.get("properties") or {}).get("command", {}).get("enum") or [])
    meant = [spoken(kind) for kind in (seed.kind, *seed.accept)]
    chosen = next((name for name in meant if name in listed), None)
    return tool_use(ROUTE_TOOL, {"action": "fix", **({"command": chosen} if chosen else {})})


def _responder(seed: Seed, with_model: bool) -> Any:
    """Answers the routing tool as this mode's model, and the agent's request with `_ENOUGH`."""

    def answer(body: dict[str, Any]) -> Any:
        if any(tool.get("name") == ROUTE_TOOL for tool in body.get("tools") or []):
            return _route_answer(seed, body, with_model)
        return _ENOUGH

    return answer


async def _complain(
    world: VirtualWorld, seed: Seed, model: ModelDouble, with_model: bool
) -> tuple[bool, list[str]]:
    """Alice complains in #dev; if the bot asks back, she presses Investigate. (asked?, replies)"""
    me = world.bot.user
    assert me is not None
    model.responder = _responder(seed, with_model)
    before = {m.id for m in bot_messages(world, world.dev)}
    await world.users["alice"].send(world.dev, f"{me.mention} {seed.complaint}")
    await world.quiesce()
    asked = False
    for message in bot_messages(world, world.dev):
        if message.id not in before and any(
            isinstance(child, discord.Button) and child.label == "Investigate"
            for row in message.components
            for child in getattr(row, "children", [])
        ):
            asked = True
            await world.users["alice"].click(message, label="Investigate")
            await world.quiesce()
            break
    replies = [m.content for m in bot_messages(world, world.dev) if m.id not in before]
    return asked, replies


_SUSPECTS_HEAD = "## Suspects (file:function, most suspect first)"
_SUSPECT_LINE = re.compile(r"^\d+\. (?P<where>\S+) — score ")


def rendered_suspects(evidence: str) -> list[str]:
    """The suspects ("path:function", best first) as the rendered evidence pack lists them."""
    found: list[str] = []
    lines = evidence.splitlines()
    if _SUSPECTS_HEAD not in lines:
        return found
    for line in lines[lines.index(_SUSPECTS_HEAD) + 1 :]:
        match = _SUSPECT_LINE.match(line)
        if match is None:
            break
        found.append(match["where"])
    return found


async def localise(seed: Seed, workdir: Path, model: ModelDouble, *, with_model: bool = False) -> Outcome:
    """Build the seed, make the fault happen, complain about it and collect the outcome."""
    repo = build_repo(workdir / "repo", seed.history)
    sys.path.insert(0, str(repo))
    try:
        settings = make_settings(
            workdir / "data",
            repo_dir=repo,
            anthropic_api_key="test-key",
            anthropic_base_url=model.base_url,
            improve={"checks": [], "max_attempts": 1},
            observe=seed.observe,
        )
        async with running_world(settings, extra_extensions=[seed.extension], settle_timeout=120) as world:
            if seed.lesson is not None:
                await world.bot.services.improve.memory.write(
                    Lesson(
                        run_id=7,
                        fingerprint=None,
                        files=seed.lesson["files"],
                        root_cause=seed.lesson["root_cause"],
                        fix_commit="1a2b3c4",
                        outcome="resolved",
                    )
                )
            await seed.drive(world)
            asked, replies = await _complain(world, seed, model, with_model)
    finally:
        sys.path.remove(str(repo))
        for name in [
            m for m in sys.modules if m == f"seed_{seed.name}" or m.startswith(f"seed_{seed.name}.")
        ]:
            del sys.modules[name]
    runs = _rows(settings, "SELECT id, incident_id FROM runs ORDER BY id")
    routed = sum(
        any(tool.get("name") == ROUTE_TOOL for tool in r.json.get("tools") or [])
        for r in model.message_requests
    )
    if not runs:
        return Outcome(seed, False, asked, replies, None, None, [], "", routed)
    run = runs[0]
    events = _rows(settings, "SELECT event, detail FROM run_events WHERE run_id = ? ORDER BY id", run["id"])
    details = {row["event"]: json.loads(row["detail"] or "{}") for row in events}
    incident_kind = None
    if run["incident_id"] is not None:
        (incident,) = _rows(settings, "SELECT kind FROM incidents WHERE id = ?", run["incident_id"])
        incident_kind = incident["kind"]
    # What the agent was sent: the first request carrying the evidence (the run's own record of it is
    # capped in length).
    prompts = [_prompt_text(r.json) for r in model.message_requests]
    evidence = next((p for p in prompts if "# Evidence" in p), "")
    return Outcome(
        seed,
        True,
        asked,
        replies,
        incident_kind,
        (details.get("target") or {}).get("kind"),
        rendered_suspects(evidence),
        evidence,
        routed,
    )


def _prompt_text(body: dict[str, Any]) -> str:
    """The user text of the first message of a recorded request (the rendered prompt)."""
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str) and "# Evidence" in content:
            return content
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and "# Evidence" in str(block.get("text", "")):
                return str(block["text"])
    return ""
