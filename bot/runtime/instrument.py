"""The instrumentor: mendbot's recording put on a discord.py bot instance, and taken off again.

As OpenTelemetry's instrumentation packages observe a library, this observes a bot through
discord.py's own hooks, whatever the bot's class: nothing is subclassed and nothing of discord.py's
classes is patched. On the instance (and its command tree and view store) it wraps, each wrapper
dressed as the method it wraps (`functools.wraps`: its name, and its signature through `__wrapped__`):

- `invoke` (every prefix command and hybrid command, after the bot's own `on_message` and
  `process_commands` have done whatever they do), `_schedule_event` and `_run_event` (every listener
  and event method),
  `add_cog` / `remove_cog` (task loops, `cog_load`, the handler map), `load_extension` /
  `reload_extension` (a failed load);
- its tree's `_call` (admission, timing, autocomplete, a failing error handler) and `on_error` (the
  bot's own, when it has one, still answers; one set later with `@tree.error` is found at the next
  interaction and kept beneath the wrapper);
- the view store's `add_view` and `schedule_dynamic_item_call` (bot/runtime/entry_points.py);

and adds three listeners of its own (`on_command_completion`, `on_command_error`,
`on_app_command_completion`) beside the bot's. The HTTP sessions and clients the bot's code creates from
then on are observed through their libraries' own hooks (aiohttp's `TraceConfig`, httpx's transports:
bot/runtime/http_calls.py), so its calls to other services are recorded too. Each wrapper calls the
bot's original through `Recording` (bot/runtime/recording.py), so the bot's handlers run exactly as
they did: its `on_command_error`, custom Context, `tree.on_error` and replies are its own.

`instrument(bot, recording)` is idempotent (a second call changes nothing); `uninstrument(bot)` puts
every method back as it was, removes the listeners and returns the recording it took off.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any

import msgspec
from discord import app_commands

from mendbot.runtime.entry_points import observe_view_store, unobserve_view_store
from mendbot.runtime.http_calls import instrument_http, uninstrument_http
from mendbot.runtime.recording import OURS, OWN_ON_ERROR, Host, Recording
from mendbot.runtime.tree_recording import tree_call, tree_on_error

__all__ = ["instrument", "recording_of", "uninstrument", "wrapper_of"]

_MISSING = object()
# The bot's methods routed through the recording: the bot's name → the recording's method that wraps it.
_BOT_METHODS = {
    "invoke": "run_command",
    "_schedule_event": "scheduling_event",
    "_run_event": "run_event",
    "add_cog": "adding_cog",
    "remove_cog": "removing_cog",
    "load_extension": "loading_extension",
    "reload_extension": "reloading_extension",
}
_LISTENERS = (
    "on_command_completion",
    "on_command_error",
    "on_app_command_completion",
    "on_message",
    "on_interaction",
    "on_raw_reaction_add",
)


class _Installed(msgspec.Struct):
    """What was put on one bot: the recording, and what each wrapped attribute was before."""

    recording: Recording
    # (owner, name, instance value or _MISSING)
    saved: list[tuple[Any, str, Any]] = msgspec.field(default_factory=list)
    listeners: list[tuple[Callable[..., Any], str]] = msgspec.field(default_factory=list)
    on_error: Callable[..., Any] | None = None  # the tree's on_error mendbot put on


_installed: weakref.WeakKeyDictionary[Host, _Installed] = weakref.WeakKeyDictionary()


def recording_of(bot: Any) -> Recording | None:
    """The recording instrumenting `bot`, if any."""
    try:
        found = _installed.get(bot)
    except TypeError:  # not weak-referenceable: never instrumented
        return None
    return found.recording if found is not None else None


def wrapper_of(original: Callable[..., Any], route: Callable[..., Any]) -> Callable[..., Any]:
    """A function calling `route(original, *args, **kwargs)`, dressed as `original` (its name, its
    docstring, its signature through `__wrapped__`): what goes in place of a method of a bot's — on an
    instance, where `original` is bound, or on a class, where the instance comes first in `args`."""

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return route(original, *args, **kwargs)

    return wrapper


def _wrap(installed: _Installed, owner: Any, name: str, route: Callable[..., Any]) -> None:
    """Replace `owner.name` on the instance by `route(original, *args)`: the original is bound there, so
    a partial dressed as it (`functools.update_wrapper`) calls the route without a frame of its own —
    these run for every command and every listener."""
    previous = owner.__dict__.get(name, _MISSING)
    original = getattr(owner, name)
    wrapper = functools.update_wrapper(functools.partial(route, original), original)
    installed.recording.sampler.skip(route)  # around every handler: not where its time went
    setattr(owner, name, wrapper)
    installed.saved.append((owner, name, previous))


def _on_error_wrapper(recording: Recording, tree: app_commands.CommandTree[Any]) -> Callable[..., Any]:
    """The tree's `on_error`: the recording's, calling the bot's own beneath it (its class's when the
    instance has none)."""

    async def on_error(interaction: Any, error: app_commands.AppCommandError, /) -> None:
        own = tree.__dict__.get(OWN_ON_ERROR)
        original = own if own is not None else functools.partial(type(tree).on_error, tree)
        await tree_on_error(recording, original, interaction, error)

    setattr(on_error, OURS, True)
    on_error.__wrapped__ = type(tree).on_error  # type: ignore[attr-defined]
    return on_error


def _keep_own_on_error(tree: app_commands.CommandTree[Any], ours: Callable[..., Any]) -> None:
    """An `on_error` the bot set on its tree after it was instrumented (`@tree.error` in a cog's setup,
    say) goes beneath mendbot's, which goes back on top."""
    current = tree.__dict__.get("on_error")
    if current is ours:
        return
    if current is not None:
        tree.__dict__[OWN_ON_ERROR] = current
    tree.on_error = ours  # type: ignore[method-assign]


def instrument(bot: Host, recording: Recording) -> None:
    """Record everything `bot` handles with `recording`; its own handlers run as before. Idempotent."""
    if recording_of(bot) is not None:
        return
    installed = _Installed(recording)
    for name, route in _BOT_METHODS.items():
        _wrap(installed, bot, name, getattr(recording, route))
    tree = bot.tree
    previous = tree.__dict__.get("on_error")
    if previous is not None:
        tree.__dict__[OWN_ON_ERROR] = previous
    on_error = _on_error_wrapper(recording, tree)
    tree.on_error = on_error  # type: ignore[method-assign]
    installed.on_error = on_error

    async def calling(original: Any, interaction: Any) -> None:
        _keep_own_on_error(tree, on_error)
        await tree_call(recording, original, interaction)

    _wrap(installed, tree, "_call", calling)
    recording.sampler.skip(calling, tree_call)
    for event in _LISTENERS:
        listener = getattr(recording, event)
        bot.add_listener(listener, event)
        installed.listeners.append((listener, event))
    observe_view_store(recording, bot._connection._view_store)
    for cog in list(bot.cogs.values()):
        recording.observe_cog(cog)  # cogs added before mendbot was
    instrument_http(recording)  # the bot's calls to other services (bot/runtime/http_calls.py)
    _installed[bot] = installed


def uninstrument(bot: Host) -> Recording | None:
    """Take mendbot's recording off `bot`: every wrapped method back as it was, its listeners removed.
    Returns the recording taken off (None: the bot was not instrumented)."""
    installed = _installed.pop(bot, None)
    if installed is None:
        return None
    for owner, name, previous in reversed(installed.saved):
        if previous is _MISSING:
            owner.__dict__.pop(name, None)
        else:
            setattr(owner, name, previous)
    tree = bot.tree
    own = tree.__dict__.pop(OWN_ON_ERROR, None)
    if tree.__dict__.get("on_error") is installed.on_error:  # else the bot has set its own since: kept
        if own is not None:
            tree.on_error = own  # type: ignore[method-assign]
        else:
            del tree.on_error
    for listener, event in installed.listeners:
        bot.remove_listener(listener, event)
    unobserve_view_store(bot._connection._view_store)
    uninstrument_http(installed.recording)
    return installed.recording
