"""A shard whose connection dropped resumes its gateway session, however long the outage, as discord.py's
plain `Client` does.

discord.py 2.7's `AutoShardedClient` (which MendBot is) loses the session when one resume attempt fails
at the network — the gateway refusing the upgrade or the connection, as in any outage longer than a
moment: `Shard._handle_disconnect` backs off and calls `Shard.reconnect()`, which IDENTIFYs anew.
Discord then starts a new session and replays nothing, so a message sent during the outage is never
seen, let alone answered. The plain `Client` keeps `resume=True` with the session id and sequence
across its retries. `install_shard_resume()` makes a shard that has a session resume the same way;
Discord answers a RESUME it cannot honour with INVALID_SESSION, on which discord.py identifies anew,
so trying costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from discord.gateway import ReconnectWebSocket
from discord.shard import Shard

__all__ = ["install_shard_resume"]


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


def install_shard_resume() -> None:
    """Make `Shard.reconnect` resume a session it has (idempotent, once per process)."""
    Shard.reconnect = _resuming(Shard.reconnect)  # type: ignore[method-assign,assignment]
