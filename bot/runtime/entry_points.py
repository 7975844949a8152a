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
  buttons of bot/cogs/incidents.py, bot/cogs/ship.py): the item it makes is wrapped the same way.

A wrapped callback runs through `RecordingBot.run_entry`: admitted, tracked in flight, captured,
timed and recorded as `view:<callback>` or `modal:<callback>` (the callback's qualified name, so the
kind stays the same for every message and custom id), and a failure takes the one error path —
fingerprinted, counted against incidents, answered briefly. A view or modal with an `on_error` of
its own is answered by it, as discord.py would; that handler failing in turn is recorded as
`view:<View.on_error>`. What discord.py sends to `on_error` without running a callback — a view's or
an item's `interaction_check` that raised — is recorded too, named by the function that raised
(`view:Panel.interaction_check`), and so is a dynamic item's `from_custom_id` or `interaction_check`
failing (discord.py logs the one and silently refuses the click for the other). A view is also told
which handler showed it (`surface`: the kind of the command whose reply carried it), so a complaint
about "the /quiz buttons" meets the clicks that failed. Autocomplete callbacks, which discord.py
swallows the same way, are run through it by the command tree (`MendTree._call`, bot/runtime/app.py);
context menus are app commands and recorded as such (`app:<name>`).

Checks and converters are named the same way (`raised_in`): a check predicate that raises something
other than a refusal is `check:<predicate>`, a converter or transformer that fails is
`converter:<its class or function>` (bot/runtime/recording.py).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol

import discord
from discord import app_commands
from discord.ext import commands

from mendbot.observe.capture import caller_of, current_capture

__all__ = [
    "EntryRunner",
    "OwnHandler",
    "callback_name",
    "failed_part",
    "observe_view_store",
    "raised_in",
    "unobserve_view_store",
]

_MARK = "__mendbot_entry__"
_OPTION_CHARS = 200
_SHOWN_DEPTH = 3  # calls back a view's or modal's `shown_by` goes
# discord.py's frames, asyncio's and mendbot's own wrappers are never what a developer names as failing.
_LIBRARY_DIRS = tuple(
    os.path.dirname(path) + os.sep for path in (discord.__file__ or "", asyncio.__file__ or "", __file__)
)

# The view's or modal's own error handler: its name (`Tally.on_error`) and a call bound to the
# interaction (and item) that takes the error.
OwnHandler = tuple[str, Callable[[Exception], Awaitable[Any]]]


class EntryRunner(Protocol):
    """What runs a wrapped entry point and takes its failures: `RecordingBot`."""

    async def run_entry(
        self,
        kind: str,
        source: str,
        interaction: discord.Interaction[Any],
        invocation: dict[str, Any],
        call: Callable[[], Awaitable[Any]],
        *,
        own_handler: OwnHandler | None = None,
    ) -> None: ...

    async def entry_failed(
        self,
        interaction: discord.Interaction[Any],
        error: Exception,
        entry: tuple[str, str],
        *,
        own_handler: OwnHandler | None = None,
    ) -> None: ...


def _library(filename: str) -> bool:
    return filename.startswith(_LIBRARY_DIRS)


def raised_in(error: BaseException, through: frozenset[str] = frozenset()) -> str | None:
    """The qualified name of the developer's function that raised `error`, as its traceback shows it:
    the first frame outside discord.py and asyncio below the frame that caught it — below a library
    frame named in `through` when given (`can_run`: a check, not the command's error handler)."""
    tb: TracebackType | None = error.__traceback__
    tb = tb.tb_next if tb is not None else None  # the frame that caught it is the library's or ours
    passed = not through
    while tb is not None:
        code = tb.tb_frame.f_code
        if _library(code.co_filename):
            passed = passed or code.co_name in through
        elif passed:
            return str(code.co_qualname)
        tb = tb.tb_next
    return None


# discord.py's frames that run a command's checks: what raises below them is a check, not the command.
_CHECK_RUNNERS = frozenset({"can_run", "_check_can_run"})


def _name_of(thing: Any) -> str:
    target = thing if inspect.isclass(thing) or inspect.isroutine(thing) else type(thing)
    return str(getattr(inspect.unwrap(target), "__qualname__", None) or type(thing).__qualname__)


def failed_part(error: BaseException) -> str | None:
    """The kind a command's failure is recorded under when it failed before its body ran, named as its
    developer names it: `converter:<converter or transformer>` for one that raised an exception of its
    own, `check:<predicate>` for a check that raised instead of refusing. None for anything else."""
    if isinstance(error, commands.ConversionError):
        return f"converter:{_name_of(error.converter)}"
    cause = error.__cause__
    if isinstance(error, app_commands.TransformerError) and unexpected(cause):
        return f"converter:{_name_of(error.transformer)}"
    if isinstance(error, commands.CommandError | app_commands.AppCommandError):
        return None  # a refusal, a user's mistake, or the body failing (wrapped by discord.py)
    name = raised_in(error, _CHECK_RUNNERS)
    return f"check:{name}" if name is not None else None


def unexpected(cause: BaseException | None) -> bool:
    """A cause that is a bug: an exception that is not one of discord.py's command errors."""
    return cause is not None and not isinstance(cause, commands.CommandError | app_commands.AppCommandError)


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


def _invocation(
    kind: str, interaction: discord.Interaction[Any], view: Any = None, item: Any = None
) -> dict[str, Any]:
    """What the user did: the component's custom id and chosen values (and a select's choices), or a
    modal's fields; who did it, where (`caller`); and the call whose reply showed the view or modal
    (`shown_by`: its kind, what it was asked and by whom, itself with what showed it) — with `surface`,
    that call's kind alone. A replay sends the call that showed it again, then does what the user did."""
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
    invocation: dict[str, Any] = {
        "name": kind,
        "options": options,
        "caller": caller_of(interaction.user, interaction.channel_id, interaction.guild_id),
    }
    choices = [str(option.value)[:_OPTION_CHARS] for option in getattr(item, "options", None) or []]
    if choices and getattr(item, "type", None) == discord.ComponentType.select:
        invocation["choices"] = choices[:25]
    surface = getattr(view, _SURFACE, None)
    if surface is not None:
        invocation["surface"] = surface
    shown_by = getattr(view, _SHOWN_BY, None)
    if shown_by is not None:
        invocation["shown_by"] = shown_by
    return invocation


def _shown_by(kind: str, invocation: dict[str, Any] | None, depth: int = _SHOWN_DEPTH) -> dict[str, Any]:
    """The call that showed a view or modal, as its capture recorded it, with what showed it in turn
    (at most `depth` calls back: a modal a button opened, on a view a command sent)."""
    shown = {"kind": kind, **(invocation or {})}
    earlier = shown.get("shown_by")
    if isinstance(earlier, dict):
        if depth > 1:
            shown["shown_by"] = _shown_by(str(earlier.get("kind")), earlier, depth - 1)
        else:
            shown.pop("shown_by")
    return shown


def _overrides(owner: Any, method: str) -> bool:
    """Whether the object's class defines `method` itself, rather than inheriting discord.py's."""
    defined = getattr(type(owner), method, None)
    return defined is not None and not str(getattr(defined, "__module__", "")).startswith("discord.")


def _own_error_handler(owner: Any) -> Callable[..., Awaitable[Any]] | None:
    """The view's or modal's `on_error` when its class defines one (discord.py's only logs)."""
    if owner is None or not _overrides(owner, "on_error"):
        return None
    handler: Callable[..., Awaitable[Any]] | None = getattr(owner, "on_error", None)
    if getattr(handler, _MARK, False):
        handler = getattr(handler, "__wrapped__", None)  # the one beneath our own wrapper
    return handler


def _wrap(
    runner: EntryRunner,
    prefix: str,
    callback: Callable[..., Awaitable[Any]],
    owner: Callable[[], Any] = lambda: None,
) -> Callable[..., Any]:
    """`callback` run by the runner; `owner` says (when called) the view or modal it belongs to."""
    if getattr(callback, _MARK, False):
        return callback
    name, module = callback_name(callback)
    kind = f"{prefix}:{name}"

    async def observed(interaction: discord.Interaction[Any], /, *args: Any, **kwargs: Any) -> None:
        view = owner()
        own = _own_error_handler(view)
        handler: OwnHandler | None = None
        if own is not None:
            item = getattr(observed, "item", None)

            async def call(error: Exception) -> Any:
                # A view's on_error takes the item too; a modal's does not.
                return await (own(interaction, error, item) if prefix == "view" else own(interaction, error))

            handler = (f"{type(view).__qualname__}.on_error", call)

        await runner.run_entry(
            kind,
            module,
            interaction,
            _invocation(kind, interaction, view, getattr(observed, "item", None)),
            lambda: callback(interaction, *args, **kwargs),
            own_handler=handler,
        )

    setattr(observed, _MARK, True)
    observed.__wrapped__ = callback  # type: ignore[attr-defined]
    return observed


_SURFACE = "__mendbot_surface__"
_SHOWN_BY = "__mendbot_shown_by__"


def _observe_item(runner: EntryRunner, item: Any) -> None:
    callback = getattr(item, "callback", None)
    if callback is not None and not getattr(callback, _MARK, False):
        item.callback = _wrap(runner, "view", callback, lambda: getattr(item, "view", None))
        item.callback.item = item


def _observe_on_error(runner: EntryRunner, view: Any, prefix: str) -> None:
    """What discord.py sends to a view's or modal's `on_error` without running a wrapped callback —
    an `interaction_check` that raised — recorded under the name of the function that raised."""
    if getattr(view.on_error, _MARK, False):
        return
    own = _own_error_handler(view)
    module = type(view).__module__

    async def on_error(interaction: discord.Interaction[Any], error: Exception, *item: Any) -> None:
        name = raised_in(error) or f"{type(view).__qualname__}.interaction_check"
        interaction.extras.setdefault(
            "invocation", _invocation(f"{prefix}:{name}", interaction, view, item[0] if item else None)
        )
        handler: OwnHandler | None = None
        if own is not None:

            async def call(failure: Exception) -> Any:
                return await own(interaction, failure, *item)

            handler = (f"{type(view).__qualname__}.on_error", call)

        await runner.entry_failed(interaction, error, (f"{prefix}:{name}", module), own_handler=handler)

    setattr(on_error, _MARK, True)
    on_error.__wrapped__ = view.on_error  # type: ignore[attr-defined]
    view.on_error = on_error


def _observe_view(runner: EntryRunner, view: Any) -> None:
    """Wrap a modal's submit, or every item of a view that has a callback (nested ones too), and
    what either sends to its `on_error`; remember which handler showed it."""
    capture = current_capture()
    if capture is not None and not capture.closed:
        setattr(view, _SURFACE, capture.kind)
        setattr(view, _SHOWN_BY, _shown_by(capture.kind, capture.asked()))
    if getattr(view, "__discord_ui_modal__", False):
        if not getattr(view.on_submit, _MARK, False):
            view.on_submit = _wrap(runner, "modal", view.on_submit, lambda: view)
        _observe_on_error(runner, view, "modal")
        return
    walk = getattr(view, "walk_children", None)
    for item in walk() if walk is not None else getattr(view, "children", []):
        _observe_item(runner, item)
    _observe_on_error(runner, view, "view")


def _observe_dynamic(runner: EntryRunner, made: Any) -> None:
    """A dynamic item made for a click: its callback observed, and its own `interaction_check` —
    which discord.py runs apart and whose failure it turns into a silent refusal — recorded."""
    _observe_item(runner, made)
    check = made.interaction_check
    if getattr(check, _MARK, False) or not _overrides(made, "interaction_check"):
        return
    module = type(made).__module__

    async def interaction_check(interaction: discord.Interaction[Any], /) -> bool:
        try:
            return bool(await check(interaction))
        except Exception as exc:
            name = raised_in(exc) or f"{type(made).__qualname__}.interaction_check"
            interaction.extras.setdefault("invocation", _invocation(f"view:{name}", interaction))
            await runner.entry_failed(interaction, exc, (f"view:{name}", module))
            return False

    setattr(interaction_check, _MARK, True)
    made.interaction_check = interaction_check


class _ObservedFactory:
    """A dynamic item's class as the view store sees it, whose made item is observed and whose
    `from_custom_id` failing is recorded (discord.py only logs it and drops the click)."""

    def __init__(self, runner: EntryRunner, factory: Any) -> None:
        self._runner = runner
        self._factory = factory
        self.__name__ = getattr(factory, "__name__", "DynamicItem")

    async def from_custom_id(self, interaction: discord.Interaction[Any], item: Any, match: Any, /) -> Any:
        try:
            made = await self._factory.from_custom_id(interaction, item, match)
        except Exception as exc:
            name = raised_in(exc) or f"{getattr(self._factory, '__qualname__', self.__name__)}.from_custom_id"
            interaction.extras.setdefault("invocation", _invocation(f"view:{name}", interaction))
            await self._runner.entry_failed(interaction, exc, (f"view:{name}", self._factory.__module__))
            raise  # discord.py drops the click, as it would have
        _observe_dynamic(self._runner, made)
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


def unobserve_view_store(store: Any) -> None:
    """Take the hooks off the view store (views already registered stay observed until they end)."""
    if not getattr(store, _MARK, False):
        return
    for name in ("add_view", "schedule_dynamic_item_call", _MARK):
        store.__dict__.pop(name, None)
