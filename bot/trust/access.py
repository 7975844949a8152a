"""Who may start runs, approve, reject, roll back, pause, mute or resolve: the allow-list.

The policy reads the allow-list each time it decides. Given a function instead of a section, it asks
that function every time, so a section replaced while the bot runs (settings loaded again) counts at
the next decision, not at the next start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mendbot.kernel.sections import AccessConfig

__all__ = ["AccessPolicy"]


class AccessPolicy:
    def __init__(self, config: AccessConfig | Callable[[], AccessConfig]) -> None:
        self._config = config

    @property
    def config(self) -> AccessConfig:
        """The allow-list as it is now."""
        return self._config if isinstance(self._config, AccessConfig) else self._config()

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
