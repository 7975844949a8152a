"""What a model request costs: prices per model family, and the usage read from a response as it streams.

``ModelGateway`` (``mendbot.trust.gateway``) prices every request it forwards with these: the
``Price`` of the family named in the model id (an unknown model pays the most expensive one), and
the token counts ``_UsageReader`` reads out of the response body chunk by chunk (server-sent events
or one JSON message), which ``_Usage.cost`` turns into USD with the cache write and read factors.
They know nothing of HTTP, sessions or the budget, so they are kept apart from the server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["CACHE_WRITE_FACTOR", "DEFAULT_PRICES", "Price"]

CACHE_WRITE_FACTOR = 1.25  # a cache write costs 1.25x input; the worst case for any input token
CACHE_WRITE_1H_FACTOR = 2.0  # a one-hour cache write; refused up front, charged right if billed anyway
CACHE_READ_FACTOR = 0.1
_USAGE_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input_per_mtok: float
    output_per_mtok: float

    @property
    def input_per_token(self) -> float:
        return self.input_per_mtok / 1e6

    @property
    def output_per_token(self) -> float:
        return self.output_per_mtok / 1e6


# Keyed by a family name found in the model id; an unknown model pays the most expensive entry.
DEFAULT_PRICES: Mapping[str, Price] = MappingProxyType(
    {
        "opus": Price(15.0, 75.0),
        "sonnet": Price(3.0, 15.0),
        "haiku": Price(1.0, 5.0),
    }
)


def _priciest(prices: Mapping[str, Price]) -> Price:
    return max(prices.values(), key=lambda p: (p.output_per_mtok, p.input_per_mtok))


def _price_for(model: str, prices: Mapping[str, Price]) -> Price:
    """The price of the family named in ``model``; the most expensive entry when none (or several) match."""
    matches = {name: price for name, price in prices.items() if name.lower() in model.lower()}
    return _priciest(matches or prices)


def _count(value: object) -> int | None:
    """``value`` if it is a token count (a non-negative integer, JSON booleans excluded)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


@dataclass
class _Usage:
    """Token counts read from one response."""

    input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    output_tokens: int = 0
    cache_1h_input_tokens: int = 0  # of cache_creation_input_tokens, written for an hour
    # Billed uses of server tools (web searches, fetches...): never allowed, so never priced.
    server_tool_use: dict[str, int] = field(default_factory=dict)
    started: bool = False  # the input counts are known
    finished: bool = False  # the final output count is known

    def update(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for name in _USAGE_FIELDS:
            value = _count(usage.get(name))
            if value is not None:
                setattr(self, name, value)
        creation = usage.get("cache_creation")
        if isinstance(creation, dict):
            self.cache_1h_input_tokens = _count(creation.get("ephemeral_1h_input_tokens")) or 0
        tools = usage.get("server_tool_use")
        if isinstance(tools, dict):
            self.server_tool_use = {str(k): v for k, v in tools.items() if (_count(v) or 0) > 0}

    def cost(self, price: Price) -> float:
        one_hour = min(self.cache_1h_input_tokens, self.cache_creation_input_tokens)
        return (
            self.input_tokens * price.input_per_mtok
            + (self.cache_creation_input_tokens - one_hour) * price.input_per_mtok * CACHE_WRITE_FACTOR
            + one_hour * price.input_per_mtok * CACHE_WRITE_1H_FACTOR
            + self.cache_read_input_tokens * price.input_per_mtok * CACHE_READ_FACTOR
            + self.output_tokens * price.output_per_mtok
        ) / 1e6

    def as_detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {name: int(getattr(self, name)) for name in _USAGE_FIELDS}
        if self.cache_1h_input_tokens:
            detail["cache_1h_input_tokens"] = self.cache_1h_input_tokens
        if self.server_tool_use:
            detail["server_tool_use"] = dict(self.server_tool_use)
        return detail


class _UsageReader:
    """Reads the usage out of a response body fed to it chunk by chunk (SSE or one JSON message)."""

    def __init__(self, *, sse: bool) -> None:
        self.usage = _Usage()
        self._sse = sse
        self._buffer = bytearray()
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        if not self._sse:
            return
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            if not line:
                self._dispatch()
            elif line.startswith(b"data:"):
                self._data.append(line[5:].removeprefix(b" "))

    def close(self) -> None:
        """The body is complete: read what is left."""
        if self._sse:
            self.feed(b"\n\n")
            return
        try:
            message = json.loads(bytes(self._buffer))
        except ValueError:
            return
        usage = message.get("usage") if isinstance(message, dict) else None
        if isinstance(usage, dict):
            self.usage.update(usage)
            self.usage.started = "input_tokens" in usage
            self.usage.finished = self.usage.started and "output_tokens" in usage

    def _dispatch(self) -> None:
        if not self._data:
            return
        data, self._data = b"\n".join(self._data), []
        try:
            event = json.loads(data)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        if event.get("type") == "message_start":
            message = event.get("message")
            if isinstance(message, dict):
                self.usage.update(message.get("usage"))
                self.usage.started = True
        elif event.get("type") == "message_delta":
            # Cumulative counts; newer API versions repeat the input counts here too.
            usage = event.get("usage")
            self.usage.update(usage)
            if isinstance(usage, dict) and "output_tokens" in usage:
                self.usage.finished = True
