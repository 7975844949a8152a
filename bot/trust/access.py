"""Who may start runs, approve, reject, roll back, pause, mute or resolve: the allow-list."""

from __future__ import annotations

from collections.abc import Iterable

from bot.kernel.sections import AccessConfig

__all__ = ["AccessPolicy"]


class AccessPolicy:
    def __init__(self, config: AccessConfig) -> None:
        self._config = config

    def is_allowed(self, user_id: int, role_ids: Iterable[int] = (), *, is_bot: bool = False) -> bool:
        """True for allow-listed users (by id or role); never for bots, the bot itself included."""
        if is_bot:
            return False
        if user_id in self._config.allowed_user_ids:
            return True
        allowed_roles = set(self._config.allowed_role_ids)
        return bool(allowed_roles) and not allowed_roles.isdisjoint(role_ids)
