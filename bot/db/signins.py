"""The dashboard's one-time sign-in links and sessions, kept only as SHA-256 hashes of their secrets.

A link is used up by one conditional UPDATE (`used_at IS NULL AND expires_at > now`), so two browsers
opening the same link at once cannot both sign in, on SQLite or PostgreSQL. A user taken off the
allow-list loses every link and session at once (`end_user`).
"""

from __future__ import annotations

from mendbot.db import core
from mendbot.db.connection import transaction
from mendbot.db.core import Connection

__all__ = ["add_link", "add_session", "end_user", "link_user", "session_user", "signed_in_users", "use_link"]

_ADD_LINK = """
    INSERT INTO dashboard_links (token_hash, user_id, created_at, expires_at)
    VALUES (:token_hash, :user_id, :now, :expires_at)"""
_LINK_USER = """
    SELECT user_id FROM dashboard_links
    WHERE token_hash = :token_hash AND used_at IS NULL AND expires_at > :now"""
_USE_LINK = """
    UPDATE dashboard_links SET used_at = :now
    WHERE token_hash = :token_hash AND user_id = :user_id AND used_at IS NULL AND expires_at > :now"""
_FORGET_LINKS = "DELETE FROM dashboard_links WHERE expires_at < :before"
_ADD_SESSION = """
    INSERT INTO dashboard_sessions (session_hash, user_id, created_at, expires_at)
    VALUES (:session_hash, :user_id, :now, :expires_at)"""
_SESSION_USER = """
    SELECT user_id FROM dashboard_sessions WHERE session_hash = :session_hash AND expires_at > :now"""
_FORGET_SESSIONS = "DELETE FROM dashboard_sessions WHERE expires_at < :before"
_END_SESSIONS = "DELETE FROM dashboard_sessions WHERE user_id = :user_id"
_END_LINKS = "DELETE FROM dashboard_links WHERE user_id = :user_id"
_SIGNED_IN = """
    SELECT user_id FROM dashboard_sessions WHERE expires_at > :now
    UNION SELECT user_id FROM dashboard_links WHERE used_at IS NULL AND expires_at > :now"""


async def add_link(db: Connection, *, token_hash: str, user_id: int, now: float, expires_at: float) -> None:
    """Keep a new link; links expired a day ago are forgotten on the way (nothing else sweeps them)."""
    async with transaction(db):
        await core.execute(db, _FORGET_LINKS, before=now - 86400)
        await core.execute(db, _FORGET_SESSIONS, before=now)
        await core.execute(
            db, _ADD_LINK, token_hash=token_hash, user_id=user_id, now=now, expires_at=expires_at
        )


async def link_user(db: Connection, *, token_hash: str, now: float) -> int | None:
    """Whose the link is, while it is unused and unexpired (it stays unused)."""
    found = await core.scalar(db, _LINK_USER, token_hash=token_hash, now=now)
    return None if found is None else int(found)


async def use_link(db: Connection, *, token_hash: str, user_id: int, now: float) -> bool:
    """Use the link up; False when it was not `user_id`'s, used already, expired or never made."""
    return await core.execute(db, _USE_LINK, token_hash=token_hash, user_id=user_id, now=now) == 1


async def add_session(
    db: Connection, *, session_hash: str, user_id: int, now: float, expires_at: float
) -> None:
    await core.execute(
        db, _ADD_SESSION, session_hash=session_hash, user_id=user_id, now=now, expires_at=expires_at
    )


async def session_user(db: Connection, *, session_hash: str, now: float) -> int | None:
    """Whose the session is, while it has not expired."""
    found = await core.scalar(db, _SESSION_USER, session_hash=session_hash, now=now)
    return None if found is None else int(found)


async def end_user(db: Connection, *, user_id: int) -> int:
    """End every session of `user_id` and forget their links; how many sessions ended."""
    async with transaction(db):
        ended = await core.execute(db, _END_SESSIONS, user_id=user_id)
        await core.execute(db, _END_LINKS, user_id=user_id)
    return ended


async def signed_in_users(db: Connection, *, now: float) -> list[int]:
    """Everyone with a live session or an unused, unexpired link."""
    return sorted(int(row["user_id"]) for row in await core.rows(db, _SIGNED_IN, now=now))
