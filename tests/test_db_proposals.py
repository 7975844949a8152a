"""The `proposals` queries behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from mendbot.db import core
from mendbot.db import proposals as queries

pytestmark = pytest.mark.engines


async def _open(db: core.Connection, **values: object) -> queries.Proposal:
    fields: dict[str, object] = {
        "run_id": 7,
        "forge": "local",
        "branch": "fix/roll",
        "head_sha": "a" * 40,
        "title": "Fix roll",
        "body": "why",
        "now": 100.0,
        **values,
    }
    return await queries.insert(db, **fields)  # type: ignore[arg-type]


async def test_an_inserted_proposal_reads_back_as_returned(engine_db: core.Connection) -> None:
    """insert() returns the stored proposal with its new id and defaults; get() reads the same."""
    proposal = await _open(engine_db)
    assert (proposal.url, proposal.number, proposal.state, proposal.updated_at) == ("", None, "open", 100.0)
    assert await queries.get(engine_db, proposal.id) == proposal


async def test_a_missing_proposal_is_none(engine_db: core.Connection) -> None:
    """get() of an id never stored is None; update() of it changes nothing and is None."""
    assert await queries.get(engine_db, 404) is None
    assert await queries.update(engine_db, 404, now=1.0, state="closed") is None


async def test_a_remote_proposal_keeps_its_number_and_url(engine_db: core.Connection) -> None:
    """A GitHub proposal stores its pull request number and url as given."""
    proposal = await _open(engine_db, forge="github", url="https://x/pull/9", number=9)
    stored = await queries.get(engine_db, proposal.id)
    assert stored is not None
    assert (stored.forge, stored.url, stored.number) == ("github", "https://x/pull/9", 9)


async def test_proposals_of_a_run_come_oldest_first(engine_db: core.Connection) -> None:
    """by_run() lists only that run's proposals, in the order they were opened; none is an empty list."""
    first = await _open(engine_db)
    await _open(engine_db, run_id=8)
    second = await _open(engine_db, head_sha="b" * 40)
    assert [p.id for p in await queries.by_run(engine_db, 7)] == [first.id, second.id]
    assert await queries.by_run(engine_db, 9) == []


async def test_update_changes_only_the_given_fields(engine_db: core.Connection) -> None:
    """update() sets the fields given (None leaves one as it is) and always the update time."""
    proposal = await _open(engine_db)
    updated = await queries.update(engine_db, proposal.id, now=200.0, state="merged", head_sha="c" * 40)
    assert updated is not None
    assert (updated.state, updated.head_sha, updated.url, updated.updated_at, updated.created_at) == (
        "merged",
        "c" * 40,
        "",
        200.0,
        100.0,
    )
    touched = await queries.update(engine_db, proposal.id, now=300.0)
    assert touched is not None and (touched.state, touched.updated_at) == ("merged", 300.0)
    numbered = await queries.update(engine_db, proposal.id, now=400.0, url="u", number=12)
    assert numbered is not None and (numbered.url, numbered.number) == ("u", 12)
