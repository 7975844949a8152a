"""Signing in to the dashboard from chat: one-time links bound to a user, and the sessions they open.

`/dashboard` (bot/cogs/dashboard.py) asks `DashboardSignIn.link(user_id)` for a link once the user has
passed the allow-list. The link carries the user's id and a random token; only the token's SHA-256 is
stored, with its owner and an expiry `dashboard.link_ttl_s` ahead. Redeeming it (a POST from the page
the link opens, so that a chat client's link preview cannot use it up) checks that the token is the
named user's, unused and unexpired, marks it used in the same statement, and opens a session: another
random secret, hashed in the database, sent to the browser as an HttpOnly, SameSite=Strict cookie.

Whether the user may is decided again at every step, against the allow-list as it is then (`access`,
which reads the settings each time, and the member's roles now when roles allow-list them): opening a
link, redeeming it, and every request a session makes. A user no longer allow-listed is refused, and
their sessions end and their links are forgotten there and then; `sweep()` does the same at start for
whoever the new configuration leaves out.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

import msgspec

from mendbot.db import signins
from mendbot.db.core import Connection
from mendbot.kernel.log import get_logger
from mendbot.kernel.sections import DashboardConfig
from mendbot.trust.access import AccessPolicy

__all__ = ["COOKIE", "DashboardSignIn", "RolesOf", "Session"]

COOKIE = "mendbot_session"
# A member's role ids as Discord has them now; None when they are not a member. Raises when Discord
# cannot be asked (then nobody is let in on a role, and nothing is ended either).
RolesOf = Callable[[int], Awaitable[list[int] | None]]
_log = get_logger(__name__)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Session(msgspec.Struct, frozen=True):
    """A session just opened: the cookie's value (shown once, never stored) and whose it is."""

    secret: str
    user_id: int
    max_age_s: int


class DashboardSignIn:
    def __init__(
        self,
        db: Connection,
        config: DashboardConfig,
        clock: Callable[[], float] = time.time,
        *,
        access: AccessPolicy | None = None,
        roles_of: RolesOf | None = None,
    ) -> None:
        self._db = db
        self.config = config
        self._clock = clock
        # The allow-list (None: nobody is let in) and the roles lookup; the bot's are handed in by
        # `mendbot.runtime.dashboard` when the server is made.
        self.access = access
        self.roles_of = roles_of
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
        """Whether the link (`user_id`, `token`) is `user_id`'s and still usable (it stays unused), and
        `user_id` allow-listed now."""
        found = await signins.link_user(self._db, token_hash=_hash(token), now=self._clock())
        return found is not None and found == user_id and await self.admits(user_id)

    async def redeem(self, user_id: int, token: str) -> Session | None:
        """Use the link up and open a session; None when it is not `user_id`'s, used, expired or
        unknown, or `user_id` is not allow-listed now."""
        if not await self.admits(user_id):
            return None
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
        """Whose session the cookie's value opens, or None (no cookie, unknown or expired, or its user
        not allow-listed now: then it has just ended)."""
        if not session_secret or len(session_secret) > 100:
            return None
        found = await signins.session_user(self._db, session_hash=_hash(session_secret), now=self._clock())
        if found is None or not await self.admits(found):
            return None
        return found

    async def admits(self, user_id: int) -> bool:
        """Whether `user_id` is allow-listed now. When they are not, their sessions end and their links
        are forgotten; when Discord cannot say which roles they hold, this request is refused and the
        rest is left as it is."""
        access = self.access
        if access is None:
            return False
        if access.is_allowed(user_id):
            return True
        if access.needs_roles(user_id) and self.roles_of is not None:
            try:
                roles = await self.roles_of(user_id)
            except Exception as exc:  # Discord unreachable: refuse now, decide again next time
                _log.warning("dashboard: roles unknown", user_id=user_id, error=str(exc))
                return False
            if roles is not None and access.is_allowed(user_id, roles):
                return True
        await self._end(user_id)
        return False

    async def sweep(self) -> list[int]:
        """End the sessions and links of everyone the allow-list leaves out now (at start, after a
        configuration change); those it admits by role are decided at their next request."""
        access = self.access
        ended = []
        for user_id in await signins.signed_in_users(self._db, now=self._clock()):
            if access is None or not (access.is_allowed(user_id) or access.needs_roles(user_id)):
                await self._end(user_id)
                ended.append(user_id)
        return ended

    async def _end(self, user_id: int) -> None:
        if await signins.end_user(self._db, user_id=user_id):
            _log.info("dashboard sessions ended: not allow-listed", user_id=user_id)
