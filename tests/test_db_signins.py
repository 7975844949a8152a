"""The dashboard's sign-in queries, on SQLite and PostgreSQL: a link used once, who is signed in, and
everything of one user ended at once."""

from __future__ import annotations

import pytest

from mendbot.db import core, signins

pytestmark = pytest.mark.engines

ALICE, BOB = 1_100_000_000_000_001_000, 1_100_000_000_000_002_000  # Discord ids: 64 bits


async def test_a_link_is_used_once_and_only_by_its_user(engine_db: core.Connection) -> None:
    """`use_link` succeeds once, for the link's own user, before it expires."""
    await signins.add_link(engine_db, token_hash="t", user_id=ALICE, now=10.0, expires_at=20.0)
    assert await signins.link_user(engine_db, token_hash="t", now=11.0) == ALICE
    assert not await signins.use_link(engine_db, token_hash="t", user_id=BOB, now=11.0)
    assert await signins.use_link(engine_db, token_hash="t", user_id=ALICE, now=11.0)
    assert not await signins.use_link(engine_db, token_hash="t", user_id=ALICE, now=12.0)
    assert await signins.link_user(engine_db, token_hash="t", now=12.0) is None


async def test_ending_a_user_ends_their_sessions_and_links_only(engine_db: core.Connection) -> None:
    """`signed_in_users` lists who has a live session or an unused link; `end_user` removes every one
    of one user's and leaves the others'."""
    await signins.add_link(engine_db, token_hash="a-link", user_id=ALICE, now=10.0, expires_at=100.0)
    await signins.add_session(engine_db, session_hash="a1", user_id=ALICE, now=10.0, expires_at=100.0)
    await signins.add_session(engine_db, session_hash="a2", user_id=ALICE, now=10.0, expires_at=100.0)
    await signins.add_session(engine_db, session_hash="b1", user_id=BOB, now=10.0, expires_at=100.0)
    await signins.add_session(engine_db, session_hash="old", user_id=BOB + 1, now=1.0, expires_at=5.0)
    assert await signins.signed_in_users(engine_db, now=11.0) == [ALICE, BOB]
    assert await signins.end_user(engine_db, user_id=ALICE) == 2
    assert await signins.session_user(engine_db, session_hash="a1", now=11.0) is None
    assert await signins.link_user(engine_db, token_hash="a-link", now=11.0) is None
    assert await signins.session_user(engine_db, session_hash="b1", now=11.0) == BOB
    assert await signins.signed_in_users(engine_db, now=11.0) == [BOB]
