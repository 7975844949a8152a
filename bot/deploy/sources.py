"""What Discord says *now* about the messages behind approvals and objections.

An approval counts only while its source still says so, and Discord does not replay to a new session
the edits, deletions and reaction removals the bot missed while it was down. So the deploy side asks
again — at start-up and at merge time — through `ApprovalSources`, which the chat side provides
(`bot/cogs/ship.py` over discord.py; tests over their own Discord). The deploy side stays free of Discord
types: it gets plain content and user ids, or "gone", or "unreadable" with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol

import msgspec

__all__ = ["ApprovalSources", "SourceRead"]


class SourceRead(msgspec.Struct, frozen=True):
    """One message as Discord has it now.

    `status` "found": `content` is its text and `reactions` maps each decision emoji on it
    (normalised, as `mendbot.trust.grammar.normalise` gives it) to the ids of the users who reacted with
    it. "gone": Discord answered that the message (or its channel) does not exist. "unreadable":
    Discord could not be asked or did not answer (`error` says how).
    """

    status: Literal["found", "gone", "unreadable"]
    content: str = ""
    reactions: Mapping[str, frozenset[int]] = msgspec.field(default_factory=dict)
    error: str = ""

    @classmethod
    def found(cls, content: str, reactions: Mapping[str, frozenset[int]] | None = None) -> SourceRead:
        return cls("found", content, dict(reactions or {}))

    @classmethod
    def gone(cls) -> SourceRead:
        return cls("gone")

    @classmethod
    def unreadable(cls, error: str) -> SourceRead:
        return cls("unreadable", error=error)


class ApprovalSources(Protocol):
    """Reads a message again from Discord (not from a cache)."""

    async def read(self, channel_id: int, message_id: int) -> SourceRead:
        """The message `message_id` in `channel_id` as it is now; never raises for Discord's answer."""
        ...
