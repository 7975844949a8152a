"""The command tree's side of the recording: app commands, context menus and autocomplete.

The instrumentor (bot/runtime/instrument.py) routes a bot's `tree._call` and `tree.on_error` here. An
app command's interaction is admitted (refused with a short notice while the bot takes no work),
stamped, captured and tracked in flight; an error handler of the bot's that fails is recorded against
its command; autocomplete callbacks, whose failures discord.py swallows, run as entry points of their
own. A failed app command is recorded, then answered by the bot's own handler when it has one — its
tree's `on_error`, the command's or cog's — and by the one error path when it has none or left the
interaction unanswered.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands

from mendbot.kernel.log import bind_for_task
from mendbot.observe.capture import interaction_invocation
from mendbot.runtime.recording import OWN_ON_ERROR, Recording

__all__ = ["admit_interaction", "answers_app_errors", "tree_call", "tree_on_error"]

_HANDLING = "mendbot_error"  # in an interaction's extras: the error the tree's on_error is handling


def admit_interaction(recording: Recording, interaction: discord.Interaction[Any]) -> bool:
    """Stamp an app command's interaction so it can be timed, captured and drained (False: the bot
    takes no work now, and the caller answers so)."""
    if not recording.accepting:
        return False
    if interaction.type is discord.InteractionType.autocomplete:
        return True  # recorded by `tree_call` as the autocomplete callback it is, not as the command
    interaction.extras["started"] = time.perf_counter()
    command = interaction.command  # found by name: its options are read once discord.py has built them
    name = command.qualified_name if command is not None else "unknown"
    asking = functools.partial(interaction_invocation, interaction)
    recording.begin_capture(interaction.extras, "app", name, asking)
    # Each interaction runs in its own task, so this binding lasts exactly as long as it.
    bind_for_task(
        guild_id=interaction.guild_id, channel_id=interaction.channel_id, user_id=interaction.user.id
    )
    task = asyncio.current_task()
    if task is not None:
        recording.track_inflight(task)
    return True


async def tree_call(
    recording: Recording,
    original: Callable[[discord.Interaction[Any]], Awaitable[None]],
    interaction: discord.Interaction[Any],
) -> None:
    """The tree's `_call` (the bot's own `interaction_check` and all), admitted first. An error
    handler that fails is recorded against its command here (discord.py would leave it to an
    unretrieved task exception). Autocomplete runs here as an entry point of its own
    (`autocomplete:<command>.<option>`): discord.py swallows what its callback raises, so the
    lookup it does is done here (with its own helpers) and the callback is run by the one
    recording path instead."""
    if not admit_interaction(recording, interaction):
        if not interaction.response.is_done():
            await interaction.response.send_message(recording.not_accepting_notice, ephemeral=True)
        return
    tree: Any = recording.bot.tree
    if interaction.type is not discord.InteractionType.autocomplete:
        try:
            await original(interaction)
        except app_commands.AppCommandError:
            raise  # discord.py's invoker sends these to `on_error`, the one error path
        except Exception as exc:
            # A command's own failure went to its error handlers: this is one of them (the
            # command's `.error`, the cog's `cog_app_command_error`) failing in turn.
            command = interaction.command
            name = command.qualified_name if command is not None else "unknown"
            source = getattr(getattr(command, "binding", None), "qualified_name", None) or "bot"
            await recording.handle_interaction_error(interaction, exc, entry=(f"app:{name}", source))
        return
    if not await tree.interaction_check(interaction):
        return
    data: Any = interaction.data
    command, options = tree._get_app_command_options(data)
    namespace = app_commands.Namespace(interaction, data.get("resolved", {}), options)
    interaction._cs_command = command  # type: ignore[attr-defined]  # as discord.py pre-fills it
    interaction._cs_namespace = namespace  # type: ignore[attr-defined]
    focused = next((option["name"] for option in options if option.get("focused")), None)
    if focused is None:
        return  # Discord always marks the option being typed in; nothing to complete without one
    kind = f"autocomplete:{command.qualified_name}.{focused}"
    source = getattr(command.binding, "qualified_name", None) or "bot"
    typed = {"name": kind, "options": {focused: str(getattr(namespace, focused, ""))[:200]}}
    await recording.run_entry(
        kind,
        source,
        interaction,
        typed,
        lambda: command._invoke_autocomplete(interaction, focused, namespace),
    )


async def tree_on_error(
    recording: Recording,
    original: Callable[..., Awaitable[None]],
    interaction: discord.Interaction[Any],
    error: app_commands.AppCommandError,
    /,
) -> None:
    """The tree's `on_error`: the failure recorded, then the bot's own handler when it has one (its
    tree's `on_error`, the command's or cog's), which answers as it always did; an interaction
    still unanswered after it — or without one — is answered by the one error path."""
    if interaction.extras.get(_HANDLING) is error:
        return  # a handler set over mendbot's calls the one beneath it, which is this: done already
    interaction.extras[_HANDLING] = error
    command = interaction.command
    own_command = isinstance(command, app_commands.Command) and command._has_any_error_handlers()
    if not (own_command or answers_app_errors(recording)):
        await recording.handle_interaction_error(interaction, error)
        return
    problem = recording.environment_problem(error, interaction.channel, interaction.user.id)
    recording.record_interaction(interaction, error, problem)
    try:
        await original(interaction, error)
    finally:
        if not interaction.response.is_done():
            await recording.answer_interaction(interaction, error, problem)


def answers_app_errors(recording: Recording) -> bool:
    """Whether the bot's command tree has an `on_error` of its own (set with `@tree.error`, or its
    class's), which answers failed app commands as it always did."""
    tree: Any = recording.bot.tree
    own = tree.__dict__.get(OWN_ON_ERROR)
    if own is not None:
        return True
    return getattr(type(tree), "on_error", None) is not app_commands.CommandTree.on_error
