"""Scripts for several runs at once on one ModelDouble: each request is answered from its run's script.

Two runs' CLIs talk to the same double concurrently, in no fixed order. Each agent session's first user
message names its run — the request (investigate), or the diagnosis carrying the run's marker (plan,
edit) — so the earliest marker in it picks the script. In a script, `MEET` holds the next turn until
every run has reached its own `MEET` (proof that they work at the same time); `delay_s` holds every
turn that long, like a model thinking.

    router = Router(delay_s=1.0)
    router.add("ALPHA", diagnosis, plan, MEET, edit, done)
    model.script(*[router] * 12)   # one entry per request the runs will make, or more
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.harness.model_double import Hold, Turn, text

__all__ = ["MEET", "Router"]

MEET = "meet"


class Router:
    """A ModelDouble turn factory routing by run marker (module docstring)."""

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.scripts: dict[str, list[Turn | str]] = {}
        self.delay_s = delay_s
        self.met = asyncio.Event()
        self._meeting: list[Hold] = []

    def add(self, marker: str, *turns: Turn | str) -> None:
        self.scripts[marker] = list(turns)

    def __call__(self, body: dict[str, Any]) -> Turn | Hold:
        first: dict[str, Any] = next((m for m in body.get("messages", []) if m.get("role") == "user"), {})
        content = json.dumps(first.get("content", ""))
        found = sorted((content.find(marker), marker) for marker in self.scripts if marker in content)
        script = self.scripts[found[0][1]] if found else []
        if not script:
            return text("(no scripted turn for this request)")
        item = script.pop(0)
        if isinstance(item, Turn):
            return self._delayed(item)
        then = script.pop(0)
        assert isinstance(then, Turn), "MEET is followed by the turn it holds"
        hold = Hold(then=then)
        self._meeting.append(hold)
        if len(self._meeting) == len(self.scripts):  # every run has reached it: let them all go on
            self.met.set()
            for waiting in self._meeting:
                waiting.release.set()
        return hold

    def _delayed(self, turn: Turn) -> Turn | Hold:
        if self.delay_s <= 0:
            return turn
        hold = Hold(then=turn)
        asyncio.get_running_loop().call_later(self.delay_s, hold.release.set)
        return hold
