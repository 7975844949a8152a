"""The demo's model: a scripted Anthropic Messages API that fixes the demo's seeded fault, and nothing else.

`mendbot play --demo` (and `mendbot attach --play --demo`, on a bot someone else wrote) runs the whole
loop with no key and no network: the bot's gateway, the bundled Claude Code CLI in its sandbox and the
chat all talk to this loopback server (`mendbot.tools.demo_model`) as they would to Anthropic. It answers by
what it is asked, not by turn number, so the newcomer can drive the demo in any order (`--interactive`):
an investigation gets the diagnosis, a plan the plan, an edit session the one edit that undoes the seeded
fault (a `Fault`: `/fortune`'s in `cogs/fortune.py`, or the one seeded in someone's own command) in the
worktree it runs in (the CLI names its working directory in the system prompt), a chat message a short
word on what this model can do.

It serves on its own thread and event loop, so the virtual Discord's bookkeeping of the bot's work
never sees its connections.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from dataclasses import dataclass
from typing import Any

from mendbot.chat.route import ROUTE_TOOL
from mendbot.tools.demo_model import ModelDouble, Turn, text, tool_use

__all__ = ["BUG", "DIAGNOSIS", "FIX", "FORTUNE", "PLAN", "DemoModel", "Fault", "answer"]


@dataclass(frozen=True)
class Fault:
    """A fault the demo seeded, and what its model knows of it: the file (repository path), the text that
    is wrong (`bug`, unique in the file) and what replaces it (`fix`), the command it breaks, and words
    for the diagnosis and the plan."""

    file: str
    bug: str
    fix: str
    command: str
    root_cause: str
    proposed_fix: str
    tests: tuple[str, ...] = ()

    def diagnosis(self) -> dict[str, Any]:
        return {
            "root_cause": self.root_cause,
            "files": [self.file],
            "confidence": "high",
            "proposed_fix": self.proposed_fix,
        }

    def plan(self) -> dict[str, Any]:
        return {
            "files": [self.file],
            "changes": [{"file": self.file, "change": self.proposed_fix}],
            "risk": "low",
            "tests": list(self.tests),
            "rollback": "revert the merge",
        }


COG_FILE = "cogs/fortune.py"
BUG = "return FORTUNES[sum(map(ord, name)) % (len(FORTUNES) - 3)]  # the seeded fault"
FIX = "return FORTUNES[sum(map(ord, name)) % len(FORTUNES)]"
FORTUNE = Fault(
    file=COG_FILE,
    bug=BUG,
    fix=FIX,
    command="/fortune",
    root_cause="fortune_for takes the name's sum modulo len(FORTUNES) - 3, which is 0: "
    "every /fortune raises ZeroDivisionError",
    proposed_fix="take the sum modulo len(FORTUNES)",
    tests=("checks/test_fortune.py",),
)
DIAGNOSIS = FORTUNE.diagnosis()
PLAN = FORTUNE.plan()
_WORKDIR = re.compile(r"(?:Primary working directory|Working directory):\s*(/\S+)")


def _texts(value: Any) -> list[str]:
    """Every text in a system prompt or a message's content."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(block.get("text", "")) for block in value if isinstance(block, dict)]
    return []


def _tool_results(messages: list[Any]) -> int:
    return sum(
        1
        for message in messages
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    )


def _json_turn(value: dict[str, Any]) -> Turn:
    return text(f"Here it is.\n```json\n{json.dumps(value)}\n```")


def answer(body: dict[str, Any], fault: Fault | None = FORTUNE) -> Turn:
    """What the demo's model says to one request, knowing `fault` (None: nothing is seeded yet)."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    if any(isinstance(t, dict) and t.get("name") == ROUTE_TOOL for t in body.get("tools") or []):
        # what a developer's message the word grammar could not place asks for: this model only chats
        return tool_use(ROUTE_TOOL, {"action": "chat"})
    if fault is None:
        return text("(the demo has not seeded its fault yet: there is nothing for its model to fix)")
    if not body.get("tools"):  # the chat asks without tools; every agent session offers some
        return text(
            f"I'm the demo's scripted model, so I can't chat about much — but I can fix `{fault.command}`. "
            "Reply **fix this** to the incident in #dev and watch."
        )
    # What was asked since the model last spoke: a session asks its prompts one after another.
    spoke = max((n for n, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
    prompt = "\n".join(
        t for m in messages[spoke + 1 :] if m.get("role") == "user" for t in _texts(m.get("content"))
    )
    if "Finish with your diagnosis" in prompt:
        return _json_turn(fault.diagnosis())
    if "Plan the smallest change" in prompt:
        return _json_turn(fault.plan())
    if _tool_results(messages):
        return text(f"Fixed it in `{fault.file}`: {fault.proposed_fix}.")
    # The CLI names its working directory in its system prompt, or in a message with role "system".
    context = [*_texts(body.get("system")), *(text for m in messages for text in _texts(m.get("content")))]
    workdir = _WORKDIR.search("\n".join(context))
    if workdir is None or ("Make this change" not in prompt and "checks failed" not in prompt):
        return text(f"(the demo's model only knows how to fix {fault.command})")
    path = f"{workdir.group(1).rstrip('/')}/{fault.file}"
    return tool_use(
        "Edit",
        {"file_path": path, "old_string": fault.bug, "new_string": fault.fix},
        f"{fault.root_cause}; I'll {fault.proposed_fix}.",
    )


class DemoModel:
    """The demo's model served on 127.0.0.1 from a thread of its own; `base_url` once started. `fault` is
    what it fixes, read at each request (the attach demo seeds its fault once the model runs)."""

    def __init__(self, fault: Fault | None = FORTUNE) -> None:
        self.fault = fault
        self.base_url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, name="demo-model", daemon=True)

    def start(self) -> str:
        self._thread.start()
        if not self._ready.wait(30) or not self.base_url:
            raise RuntimeError("the demo's model did not start")
        return self.base_url

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with ModelDouble(responder=lambda body: answer(body, self.fault)) as model:
                self.base_url = model.base_url
                self._ready.set()
                await self._stop.wait()
        finally:
            self._ready.set()
