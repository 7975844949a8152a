"""Named fault points: a test facility that stops the process at an exact step of its work.

Crash-recovery tests need a real process to die between two particular steps (say, after a merge
is recorded and before the live checkout moves) every time, not when a timer happens to fire.
The product calls `failpoints.hit("deploy.after_merge_recorded")` at such a step; it does nothing
unless the process was started with the point armed:

    MENDBOT_FAILPOINTS="deploy.after_merge_recorded=kill" mendbot play

The variable is read once, when the services are built. `kill` sends SIGKILL to the process
itself — what an OOM kill or a power cut does: no handler, no drain, no last write. `term` sends it
SIGTERM — what a service manager's stop does: the step goes on while the process drains and stops
(`bench/stop.py` times that at each deploy step). `raise` makes
the step fail with `InjectedFault`, as a bug there would: a fire drill (bot/improve/drill.py) arms
its point in process (`arm`) for the length of the drill, so the failure it sends down the repair
loop goes through the same facility as every other injected fault. An unknown action is refused at
start (a typo must not silently test nothing). Code the agent writes never sees the variable: its
processes get an allow-listed environment.

Points (each named where it is hit):
- `deploy.before_merge` — the run merging: its approvals about to be counted again, then the merge
  (and, when main moved, the rebase and its re-verification);
- `deploy.after_merge_recorded` — the merge is recorded, the live checkout has not moved;
- `deploy.after_live_update` — the live checkout is at the merged commit, the run not yet deployed;
- `deploy.during_reload` — the run is deployed, the reload of what changed has not finished;
- `deploy.during_live_replay` — the replay against the deployed code has just begun;
- `drill.probe` — the fire drill's own command (bot/improve/drill.py), reached by no user;
- `drill.run_<state>` — a fire drill's run has just entered `<state>` (`drill.run_editing`, …).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from typing import Literal, cast

import msgspec

from mendbot.kernel.log import get_logger

__all__ = ["ENV_VAR", "Failpoints", "InjectedFault"]

ENV_VAR = "MENDBOT_FAILPOINTS"
Action = Literal["kill", "term", "raise"]
_ACTIONS: frozenset[str] = frozenset({"kill", "term", "raise"})


class InjectedFault(RuntimeError):
    """The failure an armed `raise` point makes: a synthetic fault, never a real bug."""


_log = get_logger(__name__)


class Failpoints(msgspec.Struct):
    """The armed points and what each does; empty (every `hit` a no-op) unless configured."""

    armed: dict[str, Action] = msgspec.field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> Failpoints:
        """`name=action[,name=action…]`; ValueError for a malformed entry or an unknown action."""
        armed: dict[str, Action] = {}
        for entry in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, action = entry.partition("=")
            if not sep or not name.strip() or action.strip() not in _ACTIONS:
                raise ValueError(f"{ENV_VAR}: {entry!r} is not name=kill, name=term or name=raise")
            armed[name.strip()] = cast(Action, action.strip())
        return cls(armed)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Failpoints:
        env = os.environ if environ is None else environ
        points = cls.parse(env.get(ENV_VAR, ""))
        if points.armed:
            _log.warning("failpoints armed (a test facility)", points=sorted(points.armed))
        return points

    def arm(self, name: str, action: Action) -> None:
        """Arm `name` in this process from now on (a fire drill, for its length)."""
        self.armed[name] = action

    def disarm(self, name: str) -> None:
        self.armed.pop(name, None)

    def hit(self, name: str) -> None:
        """Do what `name` is armed to do; nothing when it is not armed."""
        action = self.armed.get(name)
        if action == "kill":
            _log.warning("failpoint hit: killing the process", point=name)
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "term":
            _log.warning("failpoint hit: stopping the process (SIGTERM)", point=name)
            os.kill(os.getpid(), signal.SIGTERM)
        elif action == "raise":
            raise InjectedFault(f"synthetic fault injected at {name}")
