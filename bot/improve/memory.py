"""Memory: a lesson from every finished run, recalled into later evidence packs and reports.

Recall prefers lessons about the same failure (its fingerprint), then lessons that touched any
of the same files; newest first within each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import PurePosixPath

import msgspec

from mendbot.db import lessons as queries
from mendbot.db.core import Connection

__all__ = ["Lesson", "Memory"]


class Lesson(msgspec.Struct, frozen=True):
    run_id: int
    fingerprint: str | None
    files: list[str]
    root_cause: str
    fix_commit: str | None
    outcome: str  # the run's final state: "resolved", "reported", "failed", ...
    created_at: float = msgspec.field(default=0.0)


def _normalise(files: Iterable[str]) -> list[str]:
    # "./bot/x.py" and "bot/x.py" are the same file to a reader; store and match one spelling.
    return list(dict.fromkeys(PurePosixPath(name).as_posix() for name in files if name))


class Memory:
    def __init__(self, db: Connection, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def write(self, lesson: Lesson) -> int:
        """Store a lesson (stamped now if it carries no time); returns its id."""
        return await queries.insert(
            self._db,
            {
                "run_id": lesson.run_id,
                "fingerprint": lesson.fingerprint,
                "files": _normalise(lesson.files),
                "root_cause": lesson.root_cause,
                "fix_commit": lesson.fix_commit,
                "outcome": lesson.outcome,
                "created_at": lesson.created_at or self._clock().timestamp(),
            },
        )

    async def recall(self, fingerprint: str | None, files: list[str], limit: int = 5) -> list[Lesson]:
        """Lessons with this fingerprint, then lessons sharing any file; newest first, at most `limit`."""
        rows = await queries.by_fingerprint(self._db, fingerprint, limit) if fingerprint else []
        if len(rows) < limit:
            rows += await queries.by_files(
                self._db, _normalise(files), limit - len(rows), exclude_ids=[row["id"] for row in rows]
            )
        return [
            Lesson(
                run_id=row["run_id"],
                fingerprint=row["fingerprint"],
                files=row["files"],
                root_cause=row["root_cause"],
                fix_commit=row["fix_commit"],
                outcome=row["outcome"],
                created_at=row["created_at"],
            )
            for row in rows
        ]
