"""A secret setting's value (a token, an API key): hidden wherever the settings are printed or logged.

`repr` and `str` show stars, never the value; code that needs it asks for it by name,
`get_secret_value()`, so every place a secret leaves the settings is one a reader can grep for.
"""

from __future__ import annotations

__all__ = ["Secret"]


class Secret:
    """A string kept out of reprs, logs and tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """The value itself, for the one call that sends it where it belongs."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
