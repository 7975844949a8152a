"""One incident as the incident service keeps it: the record in memory, its row, and the Announcer.

`Incident` is what `IncidentService` (bot/observe/incidents.py) opens, counts and resolves, what the
incidents cog renders and what the bot's own runs start from; `Announcer` is the protocol the cog
implements to post and edit its announcement. They are apart from the service so that readers of an
incident need not import the bookkeeping that keeps it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal, Protocol

import msgspec

__all__ = ["Announcer", "Category", "Incident", "State"]

_MAX_USERS = 1000
State = Literal["open", "acknowledged", "resolved", "muted"]
Category = Literal["code", "environment"]


class Incident(msgspec.Struct):
    rule: str
    rules: list[str]
    level: str
    kind: str
    fingerprint: str | None
    state: State
    summary: str
    first_seen: float
    last_seen: float
    count: int
    user_ids: set[int]
    sample: dict[str, Any]
    id: int | None = None
    channel_id: int | None = None
    message_id: int | None = None
    closed_at: float | None = None
    closed_by: int | None = None
    category: Category = "code"
    need: str | None = None  # environment incidents: what would fix it
    autonomy: str | None = None  # what the bot did about it by itself (bot/improve/autonomy.py)
    dirty: bool = False
    flushing: bool = False
    unsaved: bool = False  # a change storage refused: written again once storage works
    saved_at: float = 0.0  # the `updated_at` of this process's last write: newer rows are another's
    created: asyncio.Event = msgspec.field(default_factory=asyncio.Event)
    # Failures of a resolved incident's kind seen since it was resolved (in this process): counted into
    # it if it reopens, so its count, users and last seen say what happened.
    recurred: list[Any] = msgspec.field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.state != "resolved"

    def row(self, now: float) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "rules": self.rules,
            "level": self.level,
            "kind": self.kind,
            "fingerprint": self.fingerprint,
            "state": self.state,
            "summary": self.summary,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "count": self.count,
            "user_ids": sorted(self.user_ids)[:_MAX_USERS],
            "sample": self.sample,
            "channel_id": self.channel_id,
            "message_id": self.message_id,
            "updated_at": now,
            "closed_at": self.closed_at,
            "closed_by": self.closed_by,
            "category": self.category,
            "need": self.need,
            "autonomy": self.autonomy,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Incident:
        incident = cls(
            rule=row["rule"],
            rules=row["rules"],
            level=row["level"],
            kind=row["kind"],
            fingerprint=row["fingerprint"],
            state=row["state"],
            summary=row["summary"],
            first_seen=row["first_seen"],
            last_seen=row["last_seen"],
            count=row["count"],
            user_ids=set(row["user_ids"]),
            sample=row["sample"],
            id=row["id"],
            channel_id=row["channel_id"],
            message_id=row["message_id"],
            closed_at=row["closed_at"],
            closed_by=row["closed_by"],
            category=row.get("category") or "code",
            need=row.get("need"),
            autonomy=row.get("autonomy"),
            saved_at=row.get("updated_at") or 0.0,
        )
        incident.created.set()
        return incident

    def take(self, other: Incident) -> None:
        """Take the stored fields of `other` (the same incident, as another process wrote it)."""
        for name in (*_STORED, "saved_at"):
            setattr(self, name, getattr(other, name))


_STORED = tuple(
    name
    for name in Incident.__struct_fields__
    if name not in ("dirty", "flushing", "unsaved", "created", "saved_at", "recurred")
)


class Announcer(Protocol):
    """Posts and edits incident announcements (the Discord side lives in a cog). `update` posts an
    announcement that is gone again and returns where (channel, message), else None."""

    async def announce(self, incident: Incident) -> tuple[int, int] | None: ...

    async def update(self, incident: Incident) -> tuple[int, int] | None: ...
