"""The recorder's sinks: NDJSON rotation, retention, the `action()` block."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.db import open_database
from bot.observe.recorder import ActionRecorder
from bot.observe.records import ActionRecord

ROOT = Path(__file__).resolve().parent.parent


def _recorder(
    tmp_path: Path,
    now: list[datetime],
    *,
    queue_size: int = 10_000,
    ndjson_max_bytes: int = 20_000_000,
    ndjson_backups: int = 3,
) -> ActionRecorder:
    return ActionRecorder(
        db_path=tmp_path / "m.db",
        ndjson_path=tmp_path / "logs" / "actions.ndjson",
        repo_root=ROOT,
        clock=lambda: now[0],
        queue_size=queue_size,
        ndjson_max_bytes=ndjson_max_bytes,
        ndjson_backups=ndjson_backups,
    )


async def _count(path: Path) -> int:
    db = await open_database(path)
    try:
        async with db.execute("SELECT count(*) FROM actions") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0
    finally:
        await db.close()


async def test_ndjson_rotates_and_keeps_every_record(tmp_path: Path) -> None:
    """Past the size limit the NDJSON file rotates to .1, .2; no record is lost from SQLite."""
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    recorder = _recorder(tmp_path, now, ndjson_max_bytes=10_000, ndjson_backups=2)
    writer = asyncio.create_task(recorder.run_writer())
    for batch in range(10):
        for _ in range(50):
            recorder.record("task:x", "test", ok=True, duration_ms=1, extra={"batch": batch})
        await recorder.flush()
    recorder.record("task:x", "test", ok=True, duration_ms=1, extra={"batch": "last"})
    await recorder.close()
    await writer
    logs = tmp_path / "logs"
    assert sorted(p.name for p in logs.iterdir()) == [
        "actions.ndjson",
        "actions.ndjson.1",
        "actions.ndjson.2",
    ]
    last = json.loads((logs / "actions.ndjson").read_text().splitlines()[-1])
    assert last["extra"] == {"batch": "last"}
    assert await _count(tmp_path / "m.db") == 501


async def test_retention_prunes_only_old_records(tmp_path: Path) -> None:
    """Records older than the retention are deleted; newer ones stay."""
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    recorder = _recorder(tmp_path, now)
    writer = asyncio.create_task(recorder.run_writer())
    recorder.record("task:old", "test", ok=True, duration_ms=1)
    now[0] += timedelta(days=10)
    recorder.record("task:new", "test", ok=True, duration_ms=1)
    await recorder.flush()
    assert await recorder.prune(retention_days=7) == 1
    await recorder.close()
    await writer
    assert await _count(tmp_path / "m.db") == 1


async def test_action_block_records_failure_and_reraises(tmp_path: Path) -> None:
    """`with recorder.action(...)` records a raised error as a failure and lets it propagate."""
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    recorder = _recorder(tmp_path, now)
    seen: list[ActionRecord] = []
    recorder.subscribe(seen.append)
    with pytest.raises(KeyError), recorder.action("agent:run", "improve", run_id=7) as pending:
        pending.cost_usd = 0.25
        raise KeyError("missing")
    with recorder.action("agent:run", "improve", run_id=8):
        pass
    assert [(r.ok, r.error_type, r.cost_usd, r.run_id) for r in seen] == [
        (False, "KeyError", 0.25, 7),
        (True, None, 0.0, 8),
    ]
