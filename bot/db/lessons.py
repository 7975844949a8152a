"""Queries for `lessons`: what finished runs learned, found again by fingerprint or file.

Written once in the SQL both engines share (`mendbot.db.core`), so they run on SQLite and PostgreSQL.
`files` is a JSON array in a text column on both engines; only the function that opens it up as
rows differs (see `_by_files`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mendbot.db import core
from mendbot.db.core import Connection

__all__ = ["by_files", "by_fingerprint", "insert"]

_INSERT = """
    INSERT INTO lessons (run_id, fingerprint, files, root_cause, fix_commit, outcome, created_at)
    VALUES (:run_id, :fingerprint, :files, :root_cause, :fix_commit, :outcome, :created_at)
    RETURNING id"""
_BY_FINGERPRINT = """
    SELECT * FROM lessons WHERE fingerprint = :fingerprint ORDER BY created_at DESC, id DESC LIMIT :limit"""
# `files` is a JSON array, taken apart by each engine's own function.
_BY_FILES = {
    dialect: f"""
    SELECT * FROM lessons
    WHERE EXISTS (SELECT 1 FROM {elements} AS e WHERE e.value IN (:files)) AND id NOT IN (:exclude_ids)
    ORDER BY created_at DESC, id DESC LIMIT :limit"""
    for dialect, elements in (
        ("sqlite", "json_each(lessons.files)"),
        ("postgresql", "jsonb_array_elements_text(CAST(lessons.files AS JSONB))"),
    )
}


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row["files"] = json.loads(row["files"])
    return row


async def insert(db: Connection, values: dict[str, Any]) -> int:
    lesson_id = await core.scalar(
        db,
        _INSERT,
        run_id=values["run_id"],
        fingerprint=values["fingerprint"],
        files=json.dumps(list(values["files"])),
        root_cause=values["root_cause"],
        fix_commit=values["fix_commit"],
        outcome=values["outcome"],
        created_at=values["created_at"],
    )
    return int(lesson_id)


async def by_fingerprint(db: Connection, fingerprint: str, limit: int) -> list[dict[str, Any]]:
    """Lessons with this fingerprint, newest first."""
    found = await core.rows(db, _BY_FINGERPRINT, fingerprint=fingerprint, limit=limit)
    return [_decode(row) for row in found]


async def by_files(
    db: Connection, files: Sequence[str], limit: int, exclude_ids: Sequence[int] = ()
) -> list[dict[str, Any]]:
    """Lessons naming any of `files`, newest first, leaving out `exclude_ids`."""
    if not files:
        return []
    found = await core.rows(
        db, _BY_FILES[core.dialect(db)], files=list(files), exclude_ids=list(exclude_ids), limit=limit
    )
    return [_decode(row) for row in found]
