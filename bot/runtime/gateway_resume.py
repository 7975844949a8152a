"""A shard whose connection dropped resumes its gateway session, however long the outage, as discord.py's
plain `Client` does — and tries again every few seconds, not after minutes.

discord.py 2.7's `AutoShardedClient` (which MendBot is) loses the session when one resume attempt fails
at the network — the gateway refusing the upgrade or the connection, as in any outage longer than a
moment: `Shard._handle_disconnect` backs off and calls `Shard.reconnect()`, which IDENTIFYs anew.
Discord then starts a new session and replays nothing, so a message sent during the outage is never
seen, let alone answered. The plain `Client` keeps `resume=True` with the session id and sequence
across its retries. `install_shard_resume()` makes a shard that has a session resume the same way;
Discord answers a RESUME it cannot honour with INVALID_SESSION, on which discord.py identifies anew,
so trying costs nothing.

Its backoff between attempts doubles without a useful bound (a random wait up to 2**n seconds, n up to
10): after a six-second outage a shard was seen waiting 28.6 s more once the gateway answered again.
`GatewayBackoff` replaces it on every shard: doubling from half a second to `CAP_S`, each wait drawn
between half and all of that (jitter, so shards and bots do not come back in step), and starting over
once a connection has held for a while. A resume does not count against Discord's daily IDENTIFY
limit, and a shard never waits much longer than `CAP_S` once Discord answers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

from discord.gateway import ReconnectWebSocket
from discord.shard import Shard

__all__ = ["CAP_S", "GatewayBackoff", "install_shard_resume"]

CAP_S = 2.5  # the longest wait between two attempts
_FIRST_S = 0.5
_CALM_S = 60.0  # no attempt for this long: the last connection held, so the next outage starts over


class GatewayBackoff:
    """Waits between a shard's reconnect attempts: doubling, bounded by `CAP_S`, jittered."""

    def __init__(self, *, first_s: float = _FIRST_S, cap_s: float = CAP_S) -> None:
        self._first_s = first_s
        self._cap_s = cap_s
        self._attempt = 0
        self._last = time.monotonic()
        self._random = random.Random()

    def delay(self) -> float:
        """The wait before the next attempt (discord.py's `ExponentialBackoff.delay` interface)."""
        now = time.monotonic()
        if now - self._last > _CALM_S:
            self._attempt = 0
        self._last = now
        ceiling = min(self._cap_s, self._first_s * 2**self._attempt)
        self._attempt = min(self._attempt + 1, 16)
        return self._random.uniform(ceiling / 2, ceiling)


def _resuming(
    reconnect: Callable[[Shard], Coroutine[Any, Any, None]],
) -> Callable[[Shard], Coroutine[Any, Any, None]]:
    if getattr(reconnect, "__mendbot_resume__", False):
        return reconnect

    async def reconnect_or_resume(shard: Shard) -> None:
        if getattr(shard.ws, "session_id", None) is None:  # never had a session: nothing to resume
            await reconnect(shard)
            return
        await shard.reidentify(ReconnectWebSocket(shard.id, resume=True))

    reconnect_or_resume.__mendbot_resume__ = True  # type: ignore[attr-defined]
    return reconnect_or_resume


def _bounded(init: Callable[..., None]) -> Callable[..., None]:
    if getattr(init, "__mendbot_backoff__", False):
        return init

    def init_with_bounded_backoff(shard: Shard, *args: Any, **kwargs: Any) -> None:
        init(shard, *args, **kwargs)
        shard._backoff = GatewayBackoff()  # type: ignore[assignment]

    init_with_bounded_backoff.__mendbot_backoff__ = True  # type: ignore[attr-defined]
    return init_with_bounded_backoff


def install_shard_resume() -> None:
    """Make `Shard.reconnect` resume a session it has, and every shard back off within `CAP_S`
    (idempotent, once per process)."""
    Shard.reconnect = _resuming(Shard.reconnect)  # type: ignore[method-assign,assignment]
    Shard.__init__ = _bounded(Shard.__init__)  # type: ignore[method-assign]
