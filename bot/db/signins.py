"""The dashboard's one-time sign-in links and sessions, kept only as SHA-256 hashes of their secrets.

A link is used up by one conditional UPDATE (`used_at IS NULL AND expires_at > now`), so two browsers
opening the same link at once cannot both sign in, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import bindparam

from bot.db import core
from bot.db.connection import transaction
from bot.db.core import Connection
from bot.db.schema import dashboard_links, dashboard_sessions

__all__ = ["add_link", "add_session", "link_user", "session_user", "use_link"]

_ADD_LINK = sa.insert(dashboard_links).values(
    token_hash=bindparam("token_hash"),
    user_id=bindparam("user_id"),
    created_at=bindparam("now"),
    expires_at=bindparam("expires_at"),
)
_LINK_USER = sa.select(dashboard_links.c.user_id).where(
    dashboard_links.c.token_hash == bindparam("token_hash"),
    dashboard_links.c.used_at.is_(None),
    dashboard_links.c.expires_at > bindparam("now"),
)
_USE_LINK = (
    sa.update(dashboard_links)
    .where(
        dashboard_links.c.token_hash == bindparam("token_hash"),
        dashboard_links.c.user_id == bindparam("user_id"),
        dashboard_links.c.used_at.is_(None),
        dashboard_links.c.expires_at > bindparam("now"),
    )
    .values(used_at=bindparam("now"))
)
_FORGET_LINKS = sa.delete(dashboard_links).where(dashboard_links.c.expires_at < bindparam("before"))
_ADD_SESSION = sa.insert(dashboard_sessions).values(
    session_hash=bindparam("session_hash"),
    user_id=bindparam("user_id"),
    created_at=bindparam("now"),
    expires_at=bindparam("expires_at"),
)
_SESSION_USER = sa.select(dashboard_sessions.c.user_id).where(
    dashboard_sessions.c.session_hash == bindparam("session_hash"),
    dashboard_sessions.c.expires_at > bindparam("now"),
)
_FORGET_SESSIONS = sa.delete(dashboard_sessions).where(dashboard_sessions.c.expires_at < bindparam("before"))


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
