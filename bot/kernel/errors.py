"""The one error path: what the user is told, whatever raised (command, listener or task).

`UserError` subclasses carry a message meant for the person who typed the command. Discord
refusing a call — 403 Missing Permissions/Access, 404 Unknown Message/Channel, a 5xx outage — is
an `EnvironmentProblem` (`discord_problem()`): not a bug, nothing for the code agent, but an
environment incident that says what the bot needs ("I need Send Messages in #general").
The model's API failing the same way — unreachable, refusing the key (401/403), rate-limiting (429),
overloaded or down (5xx, 529) — is an environment problem too (`model_problem()`): no code change
mends it, so it is never offered for fixing. An error of discord.py's own family that a handler raises as
it is (`class NothingToShow(commands.CommandError)`) is the bot handing its error handler an answer, as
discord.py intends (what a handler raises by accident comes wrapped in `CommandInvokeError`): said, not
recorded as a failure. Anything else is a bug: the user gets a short apology
with a reference and the full error is logged and recorded as a failed action.
"""

from __future__ import annotations

import re
from typing import Any

import discord
import msgspec
from discord import app_commands
from discord.ext import commands

from mendbot.kernel.durations import human_duration

__all__ = [
    "EnvironmentProblem",
    "UserError",
    "bug_reply",
    "describe",
    "discord_problem",
    "environment_extra",
    "error_channel_id",
    "model_problem",
    "model_unreachable",
    "named_bug",
    "unwrap",
]


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
    cause = error.__cause__
    if (
        isinstance(error, app_commands.TransformerError)
        and cause is not None
        and not isinstance(cause, commands.CommandError | app_commands.AppCommandError)
    ):
        return cause  # a transformer's own bug, not the value the user typed
    return error


_ARGUMENT_ERRORS = (
    commands.UserInputError,
    app_commands.TransformerError,
)
_QUIET = (commands.CommandNotFound, commands.DisabledCommand)
_REFUSED = (commands.CheckFailure, app_commands.CheckFailure)
# discord.py's own errors that are a fault of the code or its registration, not of the user.
_FRAMEWORK_FAULTS = (
    app_commands.CommandSignatureMismatch,
    app_commands.CommandLimitReached,
    app_commands.CommandAlreadyRegistered,
    app_commands.TranslationError,
    app_commands.MissingApplicationID,
)


def environment_extra(error: BaseException | None, problem: EnvironmentProblem | None) -> dict[str, Any]:
    """What an action record says about an environment failure (no fingerprint: it is no bug)."""
    if problem is None or error is None:
        return {}
    original = unwrap(error)
    return {"environment": problem.kind, "error": f"{type(original).__name__}: {original}"[:500]}


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
        return f"Slow down: try again in {human_duration(max(1.0, error.retry_after))}.", False
    if isinstance(error, _ARGUMENT_ERRORS):
        return str(error), False
    if isinstance(error, commands.CommandError | app_commands.AppCommandError) and not isinstance(
        error, _FRAMEWORK_FAULTS
    ):
        # discord.py wraps whatever a handler raises by accident in CommandInvokeError; an error of its
        # own family, raised as is, is how a bot hands its error handler a message for the user ("No
        # server statuses to see here"): an answer, not a bug.
        return str(error) or None, False
    problem = discord_problem(error) or model_problem(error)
    if problem is not None:
        return problem.reply, False
    return bug_reply(type(error).__name__), True


def bug_reply(error_type: str) -> str:
    """What a user is told when the code failed: a short apology naming the exception's type."""
    return f"Something went wrong on my side ({error_type}). It has been recorded."


_BUG_REPLY = re.compile(r"Something went wrong on my side \((\w+)\)")


def named_bug(text: str) -> str | None:
    """The exception type an answer's apology names (`bug_reply`), or None when it is not one: how the
    replay's observer tells, from outside, that a call failed."""
    found = _BUG_REPLY.search(text)
    return found.group(1) if found else None


class EnvironmentProblem(msgspec.Struct, frozen=True):
    """Something outside the code went wrong: what, what it needs, and what to tell the user."""

    key: str  # one incident per key: "discord:forbidden:<channel id>", "discord:outage", …
    kind: str  # "discord:forbidden", "discord:not_found", "discord:outage"
    summary: str
    need: str
    reply: str


# What the bot needs where it works (README "Going live"), in the order worth naming.
_NEEDED = (
    ("view_channel", "View Channel"),
    ("send_messages", "Send Messages"),
    ("send_messages_in_threads", "Send Messages in Threads"),
    ("read_message_history", "Read Message History"),
    ("embed_links", "Embed Links"),
    ("add_reactions", "Add Reactions"),
    ("create_public_threads", "Create Public Threads"),
)
_ALWAYS = ("read_message_history", "embed_links", "add_reactions", "create_public_threads")
_CHANNEL_IN_URL = re.compile(r"/channels/(\d+)")


def error_channel_id(error: BaseException) -> int | None:
    """The channel a failed Discord call was about, from its URL (when the response has one)."""
    url = str(getattr(getattr(error, "response", None), "url", "") or "")
    match = _CHANNEL_IN_URL.search(url)
    return int(match.group(1)) if match else None


def _missing(channel: Any) -> list[str]:
    guild = getattr(channel, "guild", None)
    me = getattr(guild, "me", None)
    if guild is None or me is None or not hasattr(channel, "permissions_for"):
        return []
    granted = channel.permissions_for(me)
    if not granted.view_channel:
        return ["View Channel"]  # without it Discord (and discord.py) deny everything else too
    send = "send_messages_in_threads" if isinstance(channel, discord.Thread) else "send_messages"
    missing = [
        label
        for name, label in _NEEDED
        if name in (send, *_ALWAYS) and name != "view_channel" and not getattr(granted, name, True)
    ]
    if not getattr(granted, send):
        missing = [label for label in missing if label != "Embed Links"]  # implied by the send permission
    return missing


def discord_problem(error: BaseException, channel: Any = None) -> EnvironmentProblem | None:
    """The environment problem behind a Discord HTTP error (None for anything else).

    `channel` is where it happened, if known; the missing permissions are read from discord.py's
    cached view of the bot's roles and the channel's overwrites.
    """
    error = unwrap(error)
    if not isinstance(error, discord.HTTPException):
        return None
    name = getattr(channel, "name", None)
    where = f"#{name}" if name else "that channel"
    said = f"{error.status} {error.text or getattr(error.response, 'reason', '')}".strip()
    if isinstance(error, discord.Forbidden):
        missing = _missing(channel)
        if missing:
            need = f"I need {', '.join(missing)} in {where}"
        else:
            need = (
                f"I need a permission Discord refused in {where} ({error.text or 'Missing Permissions'}): "
                "check my role and the channel's permission overwrites"
            )
        return EnvironmentProblem(
            key=f"discord:forbidden:{getattr(channel, 'id', 'unknown')}",
            kind="discord:forbidden",
            summary=f"Discord refused a call in {where}: {said} (code {error.code}).",
            need=need,
            reply=f"I can't do that in {where}. {need}. I've told the developers.",
        )
    if isinstance(error, discord.NotFound):
        return EnvironmentProblem(
            key=f"discord:not_found:{error.code}",
            kind="discord:not_found",
            summary=f"Discord no longer knows something I used: {said} (code {error.code}), in {where}.",
            need=(
                "nothing to grant: a message or channel was deleted while I was using it. "
                "If it keeps happening, check who or what deletes them"
            ),
            reply="That message or channel is gone, so I couldn't finish. Try again.",
        )
    if error.status >= 500:
        return EnvironmentProblem(
            key="discord:outage",
            kind="discord:outage",
            summary=f"Discord answered {said}: its servers are failing.",
            need="Discord to recover: see https://discordstatus.com; nothing to change on my side",
            reply=f"Discord is having trouble right now ({error.status}) — try again in a moment.",
        )
    return None


def _from_anthropic(error: BaseException) -> bool:
    return any(cls.__module__.split(".")[0] == "anthropic" for cls in type(error).__mro__)


def model_unreachable(detail: str) -> EnvironmentProblem:
    """The model's API cannot be reached (a chat reply's client, or a run's agent through the gateway):
    one environment problem, whoever met it."""
    return EnvironmentProblem(
        key="model:unreachable",
        kind="model:unreachable",
        summary=f"The model's API could not be reached: {detail}",
        need="the model's API to be reachable: check the network and ANTHROPIC_BASE_URL; "
        "nothing to change in the code",
        reply="I can't reach the model right now, so I can't answer that — try again in a moment. "
        "I've told the developers.",
    )


def model_problem(error: BaseException) -> EnvironmentProblem | None:
    """The environment problem behind a failed call to the model's API (None for anything else).

    Read from the Anthropic SDK's exception types by name and status, so the kernel need not import
    the SDK: a connection error or timeout, 401/403, 429, 5xx and 529 (overloaded).
    """
    error = unwrap(error)
    if not _from_anthropic(error):
        return None
    names = {cls.__name__ for cls in type(error).__mro__}
    status = getattr(error, "status_code", None)
    if "APIConnectionError" in names:
        return model_unreachable(f"{type(error).__name__}: {error}")
    if status in (401, 403):
        return EnvironmentProblem(
            key="model:auth",
            kind="model:auth",
            summary=f"The model's API refused the key ({status}): {error}",
            need="a valid ANTHROPIC_API_KEY with access to the model: set it in .env or the environment "
            "and restart",
            reply=f"The model refused my credentials ({status}), so I can't answer that until a developer "
            "fixes the API key. I've told them.",
        )
    if status == 429:
        return EnvironmentProblem(
            key="model:rate_limited",
            kind="model:rate_limited",
            summary=f"The model's API is rate-limiting this key (429): {error}",
            need="fewer requests, or a higher rate limit for this API key; nothing to change in the code",
            reply="The model is rate-limiting me (429) — try again in a minute.",
        )
    if isinstance(status, int) and status >= 500:
        overloaded = status == 529 or "OverloadedError" in names
        return EnvironmentProblem(
            key="model:overloaded" if overloaded else "model:outage",
            kind="model:overloaded" if overloaded else "model:outage",
            summary=f"The model's API answered {status}: {error}",
            need="the model's API to recover: see https://status.anthropic.com; "
            "nothing to change in the code",
            reply=f"The model is {'overloaded' if overloaded else 'having trouble'} right now ({status}) — "
            "try again in a moment.",
        )
    return None
