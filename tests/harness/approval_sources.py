"""Discord at the network edge, for tests that run the services without a virtual Discord.

The deploy side reads approving messages and reactions again (`mendbot.deploy.sources.ApprovalSources`);
a test that drives `DeployService` directly keeps here what its users left on Discord — each
message's words, who reacts with what — and changes it as they would: the services only learn of it
when they read it back, as after a restart. `unreadable` makes every read fail as a Discord outage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mendbot.deploy.sources import SourceRead
from mendbot.trust.grammar import normalise

__all__ = ["DiscordRecord"]


@dataclass
class DiscordRecord:
    messages: dict[int, str] = field(default_factory=dict)  # message id → its words now
    reactions: dict[int, dict[str, set[int]]] = field(default_factory=dict)  # message → emoji → users
    unreadable: str | None = None  # the error every read answers with, while set
    reads: list[tuple[int, int]] = field(default_factory=list)  # (channel id, message id) asked for

    def say(self, message_id: int, content: str) -> None:
        """A message written, or edited into `content`."""
        self.messages[message_id] = content

    def delete(self, message_id: int) -> None:
        self.messages.pop(message_id, None)
        self.reactions.pop(message_id, None)

    def react(self, message_id: int, emoji: str, user_id: int) -> None:
        self.messages.setdefault(message_id, "")
        self.reactions.setdefault(message_id, {}).setdefault(normalise(emoji), set()).add(user_id)

    def unreact(self, message_id: int, emoji: str, user_id: int) -> None:
        self.reactions.get(message_id, {}).get(normalise(emoji), set()).discard(user_id)

    async def read(self, channel_id: int, message_id: int) -> SourceRead:
        self.reads.append((channel_id, message_id))
        if self.unreadable is not None:
            return SourceRead.unreadable(self.unreadable)
        if message_id not in self.messages:
            return SourceRead.gone()
        reactions = {emoji: frozenset(users) for emoji, users in self.reactions.get(message_id, {}).items()}
        return SourceRead.found(self.messages[message_id], reactions)
