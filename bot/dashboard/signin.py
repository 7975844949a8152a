"""Signing in to the dashboard from chat: one-time links bound to a user, and the sessions they open.

`/dashboard` (cogs/dashboard.py) asks `DashboardSignIn.link(user_id)` for a link once the user has
passed the allow-list. The link carries the user's id and a random token; only the token's SHA-256 is
stored, with its owner and an expiry `dashboard.link_ttl_s` ahead. Redeeming it (a POST from the page
the link opens, so that a chat client's link preview cannot use it up) checks that the token is the
named user's, unused and unexpired, marks it used in the same statement, and opens a session: another
random secret, hashed in the database, sent to the browser as an HttpOnly, SameSite=Strict cookie.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from bot.db import signins
from bot.db.core import Connection
from bot.kernel.sections import DashboardConfig

__all__ = ["COOKIE", "DashboardSignIn", "Session"]

COOKIE = "mendbot_session"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Session:
    """A session just opened: the cookie's value (shown once, never stored) and whose it is."""

    secret: str
    user_id: int
    max_age_s: int


class DashboardSignIn:
    def __init__(
        self, db: Connection, config: DashboardConfig, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self.config = config
        self._clock = clock
        # Where people open the dashboard: the configured public address, else the server's own
        # once it is listening (`serving`). None while nothing serves it.
        self._bound: str | None = None

    def serving(self, host: str, port: int) -> None:
        """The dashboard's server listens at host:port (the links name it unless `public_url` is set)."""
        self._bound = f"http://{host}:{port}"

    def stopped(self) -> None:
        self._bound = None

    @property
    def base_url(self) -> str | None:
        if self._bound is None:
            return None
        return self.config.public_url or self._bound

    async def link(self, user_id: int) -> str | None:
        """A new one-time sign-in link for `user_id`; None when no dashboard is served here. The caller
        has checked the allow-list."""
        base = self.base_url
        if base is None:
            return None
        token = secrets.token_urlsafe(32)
        now = self._clock()
        await signins.add_link(
            self._db,
            token_hash=_hash(token),
            user_id=user_id,
            now=now,
            expires_at=now + self.config.link_ttl_s,
        )
        return f"{base}/signin?{urlencode({'u': user_id, 't': token})}"

    async def owner(self, user_id: int, token: str) -> bool:
        """Whether the link (`user_id`, `token`) is `user_id`'s and still usable (it stays unused)."""
        found = await signins.link_user(self._db, token_hash=_hash(token), now=self._clock())
        return found is not None and found == user_id

    async def redeem(self, user_id: int, token: str) -> Session | None:
        """Use the link up and open a session; None when it is not `user_id`'s, used, expired or unknown."""
        now = self._clock()
        if not await signins.use_link(self._db, token_hash=_hash(token), user_id=user_id, now=now):
            return None
        secret = secrets.token_urlsafe(32)
        ttl = self.config.session_ttl_s
        await signins.add_session(
            self._db, session_hash=_hash(secret), user_id=user_id, now=now, expires_at=now + ttl
        )
        return Session(secret=secret, user_id=user_id, max_age_s=ttl)

    async def user_of(self, session_secret: str | None) -> int | None:
        """Whose session the cookie's value opens, or None (no cookie, unknown or expired)."""
        if not session_secret:
            return None
        return await signins.session_user(self._db, session_hash=_hash(session_secret), now=self._clock())
