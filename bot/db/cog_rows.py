"""A small keyed store for cogs, that remembers which action wrote each row.

A cog that keeps a little state (a score per user, a setting per guild) stores it as JSON under
a table name and a key: `await put(db, "scores", str(user_id), {...})`, `await get(db, "scores",
key)`, `await all_rows(db, "scores")`. The bot's own database holds it, so it is backed up, pruned
and watched like the rest.

Every row carries its provenance (`mendbot.db.provenance`): the kind of the action that last wrote it,
where in the code that write was asked for, and when. Every read made inside an action is noted
with that provenance, so a crash on a bad row names the command that stored it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from mendbot.db import core
from mendbot.db import provenance as provenance_module
from mendbot.db.core import Connection

__all__ = ["all_rows", "delete", "get", "put"]

_GET = 'SELECT * FROM cog_rows WHERE table_name = :table_name AND "key" = :key'
_ALL = 'SELECT * FROM cog_rows WHERE table_name = :table_name ORDER BY "key" LIMIT :limit'
_DELETE = 'DELETE FROM cog_rows WHERE table_name = :table_name AND "key" = :key'
_PUT = """
    INSERT INTO cog_rows (table_name, "key", value, written_by, writer, written_at)
    VALUES (:table_name, :key, :value, :written_by, :writer, :written_at)
    ON CONFLICT (table_name, "key") DO UPDATE SET value = excluded.value, written_by = excluded.written_by,
        writer = excluded.writer, written_at = excluded.written_at"""


async def put(db: Connection, table: str, key: str, value: Any) -> None:
    """Store `value` (JSON-able) under table/key, stamped with the current action and call site."""
    scope = provenance_module.current()
    await core.execute(
        db,
        _PUT,
        table_name=table,
        key=key,
        value=json.dumps(value, default=str),
        written_by=scope.kind if scope is not None else None,
        writer=json.dumps(provenance_module.writer_frames()),
        written_at=time.time(),
    )


def _value(row: dict[str, Any]) -> Any:
    provenance_module.note_read(
        row["table_name"], row["key"], row["written_by"], json.loads(row["writer"] or "[]"), row["written_at"]
    )
    return json.loads(row["value"])


async def get(db: Connection, table: str, key: str) -> Any:
    """The value stored under table/key, or None; the read is noted with who wrote the row."""
    row = await core.first(db, _GET, table_name=table, key=key)
    return _value(row) if row is not None else None


async def all_rows(db: Connection, table: str, limit: int = 1000) -> dict[str, Any]:
    """Every row of a table (at most `limit`), by key; each read is noted with its writer."""
    return {row["key"]: _value(row) for row in await core.rows(db, _ALL, table_name=table, limit=limit)}


async def delete(db: Connection, table: str, key: str) -> bool:
    """Remove table/key; whether it was there."""
    return await core.execute(db, _DELETE, table_name=table, key=key) > 0
