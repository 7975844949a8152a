"""Who may start runs, approve, reject, roll back, pause, mute or resolve: the allow-list.

The policy reads the allow-list each time it decides. Given a function instead of a section, it asks
that function every time, so a section replaced while the bot runs (settings loaded again) counts at
the next decision, not at the next start.

Each read is compared with the one before: ids or roles that left the list are told to `on_revoked`
listeners there and then (the dashboard ends their sessions and links), so that putting someone back
later does not bring back what they held — whoever's decision it was that saw the list without them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mendbot.kernel.sections import AccessConfig

__all__ = ["AccessPolicy", "Revoked"]

# (user ids, role ids) that left the allow-list since it was last read.
Revoked = Callable[[frozenset[int], frozenset[int]], None]


class AccessPolicy:
    def __init__(self, config: AccessConfig | Callable[[], AccessConfig]) -> None:
        self._config = config
        self._seen: tuple[frozenset[int], frozenset[int]] | None = None
        self._revoked: list[Revoked] = []

    def on_revoked(self, listener: Revoked) -> None:
        """Call `listener` with the ids and roles that left the list whenever a read finds some gone."""
        self._revoked.append(listener)

    @property
    def config(self) -> AccessConfig:
        """The allow-list as it is now (told to `on_revoked` listeners when some left it)."""
        config = self._config if isinstance(self._config, AccessConfig) else self._config()
        now = (frozenset(config.allowed_user_ids), frozenset(config.allowed_role_ids))
        seen, self._seen = self._seen, now
        if seen is not None and seen != now:
            users, roles = seen[0] - now[0], seen[1] - now[1]
            if users or roles:
                for listener in self._revoked:
                    listener(users, roles)
        return config

    def is_allowed(self, user_id: int, role_ids: Iterable[int] = (), *, is_bot: bool = False) -> bool:
        """True for allow-listed users (by id or role); never for bots, the bot itself included."""
        if is_bot:
            return False
        config = self.config
        if user_id in config.allowed_user_ids:
            return True
        allowed_roles = set(config.allowed_role_ids)
        return bool(allowed_roles) and not allowed_roles.isdisjoint(role_ids)

    def needs_roles(self, user_id: int) -> bool:
        """Whether deciding for `user_id` takes their roles: not listed by id, but roles are."""
        config = self.config
        return user_id not in config.allowed_user_ids and bool(config.allowed_role_ids)
