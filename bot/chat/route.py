"""What a developer's message asks for, decided by the chat model with a structured tool call.

The word grammar (bot/improve/intent.py) is the fast path. A message it cannot place, said to the bot
by an allow-listed developer in a dev channel, is handed to the model with one tool, `route_request`,
which the model must call (`tool_choice`): `action` is `fix`, `investigate` or `chat`, and `command`
and `incident` name what it is about, chosen from the lists the request gives. Only the tool call's
input is read — never the model's prose — and a value outside the lists is dropped, so the model can
pick among the bot's own commands and incidents but never name anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from mendbot.trust.sanitize import untrusted_block

__all__ = ["ROUTE_TOOL", "Decision", "OpenIncident", "read_decision", "route_request"]

Action = Literal["fix", "investigate", "chat"]
_ACTIONS: tuple[Action, ...] = ("fix", "investigate", "chat")
_MAX_LISTED = 60


class OpenIncident(msgspec.Struct, frozen=True):
    """An incident the message may be about, as the model is shown it."""

    id: int
    kind: str
    summary: str


class Decision(msgspec.Struct, frozen=True):
    """What the model decided: the action, and the command (as listed) or incident it is about."""

    action: Action
    command: str | None = None
    incident: int | None = None


def _tool(commands: Sequence[str], incidents: Sequence[OpenIncident]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "action": {
            "type": "string",
            "enum": list(_ACTIONS),
            "description": (
                "fix: it reports a fault to mend; investigate: only look and report; chat: no fault"
            ),
        },
    }
    if commands:
        properties["command"] = {
            "type": "string",
            "enum": list(commands),
            "description": "the command, button or task it is about, when it names or describes one",
        }
    if incidents:
        properties["incident"] = {
            "type": "integer",
            "enum": [incident.id for incident in incidents],
            "description": "the open incident it is about, when it is about one",
        }
    return {
        "name": ROUTE_TOOL,
        "description": "Say what the developer's message asks mendbot to do, and what it is about.",
        "input_schema": {"type": "object", "properties": properties, "required": ["action"]},
    }


ROUTE_TOOL = "route_request"


def route_request(
    text: str, commands: Sequence[str], incidents: Sequence[OpenIncident]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the tool, the messages) of a routing request: the lists in the tool's schema, the message
    itself in an untrusted block."""
    commands = list(dict.fromkeys(commands))[:_MAX_LISTED]
    incidents = list(incidents)[:_MAX_LISTED]
    listed = "\n".join(f"- incident #{i.id}: {i.kind} — {i.summary[:160]}" for i in incidents) or "- none"
    body = (
        f"Commands and other parts of the bot: {', '.join(commands) or 'none'}\n"
        f"Open incidents:\n{listed}\n\n" + untrusted_block("the developer's message", text, limit=3000)
    )
    return _tool(commands, incidents), [{"role": "user", "content": body}]


def read_decision(
    content: Sequence[Any], commands: Sequence[str], incidents: Sequence[OpenIncident]
) -> Decision | None:
    """The decision in the model's `route_request` call, its values checked against the lists; None
    when it made no such call (its prose is never read)."""
    for block in content:
        if getattr(block, "type", None) != "tool_use" or getattr(block, "name", None) != ROUTE_TOOL:
            continue
        given = getattr(block, "input", None)
        if not isinstance(given, dict) or given.get("action") not in _ACTIONS:
            return None
        command = given.get("command")
        incident = given.get("incident")
        ids = {i.id for i in incidents}
        return Decision(
            given["action"],
            command if isinstance(command, str) and command in commands else None,
            incident if isinstance(incident, int) and incident in ids else None,
        )
    return None
