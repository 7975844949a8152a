"""Queries for `lessons`: what finished runs learned, found again by fingerprint or file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import aiosqlite

__all__ = ["by_files", "by_fingerprint", "insert"]


def _decode(row: aiosqlite.Row) -> dict[str, Any]:
    values = dict(row)
    values["files"] = json.loads(values["files"])
    return values


async def insert(db: aiosqlite.Connection, values: dict[str, Any]) -> int:
    cursor = await db.execute(
        "INSERT INTO lessons (run_id, fingerprint, files, root_cause, fix_commit, outcome, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            values["run_id"],
            values["fingerprint"],
            json.dumps(list(values["files"])),
            values["root_cause"],
            values["fix_commit"],
            values["outcome"],
            values["created_at"],
        ),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


async def by_fingerprint(db: aiosqlite.Connection, fingerprint: str, limit: int) -> list[dict[str, Any]]:
    """Lessons with this fingerprint, newest first."""
    async with db.execute(
        "SELECT * FROM lessons WHERE fingerprint = ? ORDER BY created_at DESC, id DESC LIMIT ?",
        (fingerprint, limit),
    ) as cursor:
        return [_decode(row) for row in await cursor.fetchall()]


async def by_files(
    db: aiosqlite.Connection, files: Sequence[str], limit: int, exclude_ids: Sequence[int] = ()
) -> list[dict[str, Any]]:
    """Lessons naming any of `files`, newest first, leaving out `exclude_ids`."""
    if not files:
        return []
    file_marks = ", ".join("?" * len(files))
    exclude = f" AND lessons.id NOT IN ({', '.join('?' * len(exclude_ids))})" if exclude_ids else ""
    async with db.execute(
        "SELECT * FROM lessons WHERE EXISTS"
        f" (SELECT 1 FROM json_each(lessons.files) WHERE json_each.value IN ({file_marks})){exclude}"
        " ORDER BY created_at DESC, id DESC LIMIT ?",
        (*files, *exclude_ids, limit),
    ) as cursor:
        return [_decode(row) for row in await cursor.fetchall()]
