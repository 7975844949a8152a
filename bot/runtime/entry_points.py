"""The entry points discord.py runs outside commands and listeners: buttons, selects, modals.

discord.py runs a view item's callback and a modal's `on_submit` in tasks of its own, and swallows
what they raise (the library logs it; nobody answers, so Discord tells the user "This interaction
failed"). Nothing reached the recorder: four failed clicks left no action record, so nothing was
announced and nothing could be localised.

Every view, modal and dynamic item of the bot goes through one object, the connection's view
store, whatever cog defines it — today's, or one written later. So the hooks sit on that one
instance (nothing is patched on discord.py's classes):

- `add_view` is how a view sent with a message, a persistent view (`bot.add_view`) and a modal
  being shown are registered: each item's `callback`, or the modal's `on_submit`, is wrapped on
  that instance before it is stored;
- `schedule_dynamic_item_call` makes a dynamic item from the clicked custom id (the persistent
  buttons of cogs/incidents.py, cogs/ship.py): the item it makes is wrapped the same way.

A wrapped callback runs through `RecordingBot.run_entry`: admitted, tracked in flight, captured,
timed and recorded as `view:<callback>` or `modal:<callback>` (the callback's qualified name, so the
kind stays the same for every message and custom id), and a failure takes the one error path —
fingerprinted, counted against incidents, answered briefly. Autocomplete callbacks, which discord.py
swallows the same way, are run through it by the command tree (`MendTree._call`, bot/runtime/app.py);
context menus are app commands and recorded as such (`app:<name>`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import discord

__all__ = ["EntryRunner", "callback_name", "observe_view_store"]

_MARK = "__mendbot_entry__"
_OPTION_CHARS = 200


class EntryRunner(Protocol):
    """What runs a wrapped entry point: `RecordingBot.run_entry`."""

    async def run_entry(
        self,
        kind: str,
        source: str,
        interaction: discord.Interaction[Any],
        invocation: dict[str, Any],
        call: Callable[[], Awaitable[Any]],
    ) -> None: ...


def callback_name(callback: Callable[..., Any]) -> tuple[str, str]:
    """(qualified name, module) of the function behind a callback: a bound method, a partial (a
    decorated button), or a plain function."""
    target: Any = callback
    for _ in range(5):
        if isinstance(target, functools.partial):
            target = target.func
        elif hasattr(target, "__func__"):
            target = target.__func__
        elif not hasattr(target, "__code__") and callable(getattr(target, "callback", None)):
            target = target.callback  # discord.py's holder of a decorated item's method
        else:
            break
    target = inspect.unwrap(target)
    name = getattr(target, "__qualname__", None) or type(callback).__qualname__
    module = getattr(target, "__module__", None) or "bot"
    return str(name), str(module)


def _invocation(kind: str, interaction: discord.Interaction[Any]) -> dict[str, Any]:
    """What the user did: the component's custom id and chosen values, or a modal's fields."""
    data: Any = interaction.data or {}
    options: dict[str, Any] = {"custom_id": str(data.get("custom_id", ""))[:_OPTION_CHARS]}
    if data.get("values"):
        options["values"] = [str(value)[:_OPTION_CHARS] for value in data["values"][:25]]
    fields = {}
    for row in data.get("components") or []:
        for component in row.get("components") or [row.get("component") or {}]:
            if component.get("custom_id") and "value" in component:
                fields[str(component["custom_id"])] = str(component["value"])[:_OPTION_CHARS]
    if fields:
        options["fields"] = fields
    return {"name": kind, "options": options}


def _wrap(runner: EntryRunner, prefix: str, callback: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    if getattr(callback, _MARK, False):
        return callback
    name, module = callback_name(callback)
    kind = f"{prefix}:{name}"

    async def observed(interaction: discord.Interaction[Any], /, *args: Any, **kwargs: Any) -> None:
        await runner.run_entry(
            kind,
            module,
            interaction,
            _invocation(kind, interaction),
            lambda: callback(interaction, *args, **kwargs),
        )

    setattr(observed, _MARK, True)
    observed.__wrapped__ = callback  # type: ignore[attr-defined]
    return observed


def _observe_item(runner: EntryRunner, item: Any) -> None:
    callback = getattr(item, "callback", None)
    if callback is not None:
        item.callback = _wrap(runner, "view", callback)


def _observe_view(runner: EntryRunner, view: Any) -> None:
    """Wrap a modal's submit, or every item of a view that has a callback (nested ones too)."""
    if getattr(view, "__discord_ui_modal__", False):
        view.on_submit = _wrap(runner, "modal", view.on_submit)
        return
    walk = getattr(view, "walk_children", None)
    for item in walk() if walk is not None else getattr(view, "children", []):
        _observe_item(runner, item)


class _ObservedFactory:
    """A dynamic item's class as the view store sees it, whose made item is observed."""

    def __init__(self, runner: EntryRunner, factory: Any) -> None:
        self._runner = runner
        self._factory = factory
        self.__name__ = getattr(factory, "__name__", "DynamicItem")

    async def from_custom_id(self, interaction: discord.Interaction[Any], item: Any, match: Any, /) -> Any:
        made = await self._factory.from_custom_id(interaction, item, match)
        _observe_item(self._runner, made)
        return made

    def __repr__(self) -> str:
        return repr(self._factory)


def observe_view_store(runner: EntryRunner, store: Any) -> None:
    """Hook the bot's view store (once): every view, modal and dynamic item it dispatches is observed."""
    if getattr(store, _MARK, False):
        return
    add_view = store.add_view
    schedule = store.schedule_dynamic_item_call

    def observed_add_view(view: Any, message_id: int | None = None) -> None:
        _observe_view(runner, view)
        add_view(view, message_id)

    async def observed_schedule(
        component_type: int, factory: Any, interaction: discord.Interaction[Any], custom_id: str, match: Any
    ) -> None:
        await schedule(component_type, _ObservedFactory(runner, factory), interaction, custom_id, match)

    store.add_view = observed_add_view
    store.schedule_dynamic_item_call = observed_schedule
    setattr(store, _MARK, True)
