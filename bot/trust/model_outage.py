"""A model API that cannot be reached, as the model gateway (bot/trust/gateway.py) finds it: waited for,
never hidden.

From the first failure to reach the API the gateway waits for it up to `wait_s`: each failure tells
`waiting` (the run's status says what it waits for) and gets the pause before the next try, growing;
past `wait_s` there is none, and the session that met it keeps why (`unreachable`): the run ends as
"could not reach the model", an environment incident, not an agent that did nothing. The first request
that gets through ends the outage (`waiting` is told None).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mendbot.kernel.log import get_logger

__all__ = ["RETRY_PAUSES_S", "Outage"]

_log = get_logger(__name__)
# Pauses between tries of an API that cannot be reached: growing, and never longer than the last.
RETRY_PAUSES_S = (0.5, 1.0, 2.0, 5.0)


class Outage:
    """The gateway's view of whether the model's API can be reached (one upstream, every session)."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self._since: float | None = None  # monotonic time of the first failure to reach the API
        self._why = ""
        self._given_up: dict[str, str] = {}  # session token -> why its request was given up on
        # Told (run id, what the run waits for) while a request waits for the API, and (run id, None)
        # once one gets through again.
        self.waiting: Callable[[int, str | None], None] = lambda run_id, why: None

    @property
    def away(self) -> tuple[float, str] | None:
        """(seconds since, why) while the API cannot be reached, else None."""
        if self._since is None:
            return None
        return time.monotonic() - self._since, self._why

    def unreachable(self, token: str) -> str | None:
        """Why a request of the session was given up on (kept after the session closes), or None."""
        return self._given_up.get(token)

    def failed(self, token: str, run_id: int, why: str, tries: int) -> float | None:
        """A request of `run_id` could not reach the API (`tries` before this one): the pause before
        trying again, or None once the API has been away `wait_s` (the request is given up on)."""
        now = time.monotonic()
        if self._since is None:
            self._since = now
            _log.warning("model API unreachable: waiting for it", why=why, wait_s=self.wait_s)
        self._why = why
        left = self._since + self.wait_s - now
        if left <= 0:
            self._given_up[token] = why
            _log.warning("model API unreachable: request given up", run_id=run_id, why=why)
            return None
        self.waiting(run_id, why)
        return min(RETRY_PAUSES_S[min(tries, len(RETRY_PAUSES_S) - 1)], left)

    def reached(self, run_id: int) -> None:
        """A request got through: the API is reachable (again)."""
        if self._since is None:
            return
        _log.info("model API reachable again", after_s=round(time.monotonic() - self._since, 1))
        self._since = None
        self.waiting(run_id, None)
