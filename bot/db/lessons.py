"""Queries for `lessons`: what finished runs learned, found again by fingerprint or file.

Written once as SQLAlchemy Core statements (`bot.db.core`), so they run on SQLite and PostgreSQL.
`files` is a JSON array in a text column on both engines; only the function that opens it up as
rows differs (see `_by_files`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Executable, bindparam, func, select
from sqlalchemy.dialects.postgresql import JSONB

from bot.db import core
from bot.db.core import Connection
from bot.db.schema import lessons

__all__ = ["by_files", "by_fingerprint", "insert"]

_INSERT = (
    sa.insert(lessons)
    .values(
        run_id=bindparam("run_id"),
        fingerprint=bindparam("fingerprint"),
        files=bindparam("files"),
        root_cause=bindparam("root_cause"),
        fix_commit=bindparam("fix_commit"),
        outcome=bindparam("outcome"),
        created_at=bindparam("created_at"),
    )
    .returning(lessons.c.id)
)
_NEWEST_FIRST = (lessons.c.created_at.desc(), lessons.c.id.desc())
_BY_FINGERPRINT = (
    select(lessons)
    .where(lessons.c.fingerprint == bindparam("fingerprint"))
    .order_by(*_NEWEST_FIRST)
    .limit(bindparam("limit"))
)


@functools.cache
def _by_files(dialect: str) -> Executable:
    if dialect == "postgresql":
        named = func.jsonb_array_elements_text(sa.cast(lessons.c.files, JSONB)).table_valued("value")
    else:
        named = func.json_each(lessons.c.files).table_valued("value")
    names_a_file = select(1).select_from(named).where(named.c.value.in_(bindparam("files", expanding=True)))
    return (
        select(lessons)
        .where(names_a_file.exists(), lessons.c.id.not_in(bindparam("exclude_ids", expanding=True)))
        .order_by(*_NEWEST_FIRST)
        .limit(bindparam("limit"))
    )


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
        db, _by_files(core.dialect(db)), files=list(files), exclude_ids=list(exclude_ids), limit=limit
    )
    return [_decode(row) for row in found]
