"""The action record: one per handled event (command, listener, task, chat reply, agent run)."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ActionRecord"]


class ActionRecord(BaseModel):
    """What happened, where, for whom, how long it took, what it cost, and how it failed."""

    model_config = ConfigDict(extra="forbid")

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
    frames: list[str] = Field(default_factory=list)  # in-repo "file:line:function", innermost last
    run_id: int | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
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
        """A record from values the recorder built itself (every field given, already the right
        types; the dict becomes the record's own): what `model_construct` makes, without its
        per-field pass over aliases and defaults, which was a fifth of what recording an action cost
        (and without a call by keywords, which cost as much again)."""
        record = cls.__new__(cls)
        assign = object.__setattr__
        assign(record, "__dict__", values)
        # Every field is set, and a record is never changed once made (its subscribers share it): one
        # frozen set for all of them (an assignment would fail loudly rather than count as set).
        assign(record, "__pydantic_fields_set__", _FIELDS)
        assign(record, "__pydantic_extra__", None)
        assign(record, "__pydantic_private__", None)
        return record

    def fields(self) -> dict[str, Any]:
        """The field values as a plain dict (the record's own, not a copy): what the action
        writer process is sent, and what it builds rows and NDJSON lines from."""
        return self.__dict__


_FIELDS = frozenset(ActionRecord.model_fields)
