"""The action record: one per handled event (command, listener, task, chat reply, agent run).

A msgspec Struct, not a pydantic model: the bot makes one per action, and pydantic's first model
costs a start-up a tenth of a second of CPU and several MB. Building one by keywords checks nothing
(the recorder builds its own values); what comes from outside (rows read back, journal lines) goes
through `ActionRecord.validated`, which refuses wrong types and unknown fields.
"""

from __future__ import annotations

from typing import Any, Self

import msgspec

__all__ = ["ActionRecord"]


class ActionRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True, weakref=True):
    """What happened, where, for whom, how long it took, what it cost, and how it failed.

    Never changed once made (the recorder's subscribers share it): frozen. Weakly referable, so that
    what keeps a record alive can be checked."""

    ts: float  # unix seconds
    kind: str  # "command:roll", "app:fix", "listener:on_message", "task:audit", "chat:reply"
    source: str  # cog or subsystem
    ok: bool
    duration_ms: float
    guild_id: int | None = None
    channel_id: int | None = None
    user_id: int | None = None
    message_id: int | None = None
    cost_usd: float = 0.0
    error_type: str | None = None
    error_message: str | None = None
    fingerprint: str | None = None
    frames: list[str] = msgspec.field(default_factory=list)  # in-repo "file:line:function", innermost last
    run_id: int | None = None
    extra: dict[str, Any] = msgspec.field(default_factory=dict)
    # What the handler was asked: {"name": "/convert", "options": {...}} (redacted).
    invocation: dict[str, Any] | None = None
    # What the bot answered: {"text": first 200 chars, "sha": hash of the whole, "messages": n}.
    reply: dict[str, Any] | None = None
    # Where a slow handler's time went: [{"frames": [...innermost last], "count": n}], most first.
    samples: list[dict[str, Any]] | None = None
    # The bot process that recorded it, by its shards ("shards 0"), when several share the database.
    process: str | None = None

    @classmethod
    def trusted(cls, values: dict[str, Any]) -> Self:
        """A record from values the recorder built itself (already the right types), unchecked. The
        record shares the values' lists and dicts, so neither may be changed afterwards."""
        return cls(**values)

    @classmethod
    def validated(cls, values: dict[str, Any]) -> Self:
        """A record from values read from outside (a stored row, a journal line): each field's type is
        checked (an integer is taken for a float) and an unknown field is refused, with
        `msgspec.ValidationError` saying which."""
        return msgspec.convert(values, cls)

    def fields(self) -> dict[str, Any]:
        """The field values as a new plain dict (its lists and dicts are the record's own: read them,
        do not change them)."""
        return msgspec.structs.asdict(self)
