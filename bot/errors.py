"""The one error path: what the user is told, whatever raised (command, listener or task).

`UserError` subclasses carry a message meant for the person who typed the command. Anything
else is a bug: the user gets a short apology with a reference and the full error is logged
(and, once observation is wired, recorded as a failed action).
"""

from __future__ import annotations

from discord import app_commands
from discord.ext import commands

__all__ = ["UserError", "describe", "unwrap"]


class UserError(Exception):
    """Bad input or a refused request: the message is shown to the user as is."""


def unwrap(error: BaseException) -> BaseException:
    """The exception that actually went wrong, under discord.py's invoke wrappers."""
    while isinstance(
        error, (commands.CommandInvokeError, commands.HybridCommandError, app_commands.CommandInvokeError)
    ):
        error = error.original
    if isinstance(error, commands.ConversionError) and error.original is not None:
        return error.original
    return error


_ARGUMENT_ERRORS = (
    commands.UserInputError,
    app_commands.TransformerError,
)
_QUIET = (commands.CommandNotFound, commands.DisabledCommand)
_REFUSED = (commands.CheckFailure, app_commands.CheckFailure)


def describe(error: BaseException) -> tuple[str | None, bool]:
    """(text for the user or None to stay silent, whether this is a bug worth recording)."""
    error = unwrap(error)
    if isinstance(error, UserError):
        return str(error), False
    if isinstance(error, _QUIET):
        return None, False
    if isinstance(error, _REFUSED):
        return str(error) or "You can't use that here.", False
    if isinstance(error, commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f}s.", False
    if isinstance(error, _ARGUMENT_ERRORS):
        return str(error), False
    return f"Something went wrong on my side ({type(error).__name__}). It has been recorded.", True
