"""What arrives for mendbot's cogs before they are added, kept for them.

On a bot mendbot attaches to, its own cogs (`/fix`, "fix this", "ship it", the persistent buttons) are
added once the bot has connected and mendbot's self-improvement half is built (bot/runtime/
attachment.py: `start_surface`), so that the bot's own start waits for none of it. Meanwhile the bot
already receives its gateway's events; what may be for mendbot's cogs is kept here and handed to them
once they are added:

- events mendbot's cogs listen for (`SURFACE_EVENTS`: a message, a reaction, an edit, a deletion),
  after the bot's own listeners had them as usual;
- an app command (or its autocomplete) the command tree does not know yet;
- a button or menu no view or dynamic item of the bot claims yet.

The bot's own events, commands and components go on as they always do: only what nothing of the bot
handles waits, and only until mendbot's cogs are up. If they cannot come up, a held interaction is
answered so (never left to time out) and the rest is let go.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import discord
from discord.ext import commands

from mendbot.kernel.log import get_logger

__all__ = ["SURFACE_EVENTS", "HeldEvents"]

_log = get_logger(__name__)

# The events mendbot's cogs listen for (tests/test_attach_surface.py keeps this complete).
SURFACE_EVENTS = frozenset(
    {"message", "raw_reaction_add", "raw_reaction_remove", "raw_message_delete", "raw_message_edit"}
)

Event = tuple[str, tuple[Any, ...], dict[str, Any]]


class HeldEvents:
    """Kept for mendbot's cogs from `install` until `release` (or `fail`): at most `limit` events (past
    that the oldest go, counted) and every interaction."""

    def __init__(self, bot: commands.Bot | commands.AutoShardedBot, *, limit: int) -> None:
        self.bot = bot
        self.events: deque[Event] = deque(maxlen=limit)
        self.commands: list[discord.Interaction[Any]] = []
        self.components: list[tuple[int, str, discord.Interaction[Any]]] = []
        self.dropped = 0
        self._undo: list[Callable[[], None]] = []

    # -- holding -------------------------------------------------------------------------------------

    def install(self) -> None:
        """Put the holds on the bot's connection, command tree and view store."""
        state: Any = self.bot._connection
        self._replace(state, "dispatch", self._dispatching)
        self._replace(self.bot.tree, "_from_interaction", self._calling)
        self._replace(state._view_store, "dispatch_view", self._dispatching_view)

    def _replace(self, owner: Any, name: str, route: Callable[..., Any]) -> None:
        original = getattr(owner, name)
        had_own = name in vars(owner)

        def held(*args: Any, **kwargs: Any) -> Any:
            return route(original, *args, **kwargs)

        setattr(owner, name, held)

        def undo() -> None:
            if vars(owner).get(name) is not held:
                return  # replaced again since: left as it is
            if had_own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)

        self._undo.append(undo)

    def _uninstall(self) -> None:
        undo, self._undo = self._undo, []
        for step in reversed(undo):
            step()

    def _dispatching(self, original: Callable[..., None], event: str, /, *args: Any, **kwargs: Any) -> None:
        original(event, *args, **kwargs)
        if event in SURFACE_EVENTS:
            if len(self.events) == self.events.maxlen:
                self.dropped += 1
            self.events.append((event, args, kwargs))

    def _calling(self, original: Callable[..., None], interaction: discord.Interaction[Any]) -> None:
        if _known_command(self.bot.tree, interaction):
            original(interaction)
        else:
            self.commands.append(interaction)

    def _dispatching_view(
        self, original: Callable[..., None], component_type: int, custom_id: str, interaction: Any
    ) -> None:
        store: Any = self.bot._connection._view_store
        if _claimed(store, component_type, custom_id, interaction):
            original(component_type, custom_id, interaction)
        else:
            self.components.append((component_type, custom_id, interaction))

    # -- handing over --------------------------------------------------------------------------------

    def release(self, cogs: Iterable[commands.Cog]) -> None:
        """mendbot's cogs are added: the holds come off, and what was kept goes to them — each event to
        their listeners for it, each interaction to the tree or view store as it would have."""
        self._uninstall()
        listeners: dict[str, list[Callable[..., Any]]] = {}
        for cog in cogs:
            for name, listener in cog.get_listeners():
                listeners.setdefault(name, []).append(listener)
        bot: Any = self.bot
        for event, args, kwargs in self._take_events():
            name = f"on_{event}"
            for listener in listeners.get(name, ()):
                bot._schedule_event(listener, name, *args, **kwargs)
        tree: Any = self.bot.tree
        for interaction in self._take_commands():
            tree._from_interaction(interaction)
        store: Any = self.bot._connection._view_store
        for component_type, custom_id, interaction in self._take_components():
            store.dispatch_view(component_type, custom_id, interaction)
        self._log_dropped()

    async def fail(self, why: str) -> None:
        """mendbot's cogs could not be added: the holds come off, each held interaction is answered with
        `why`, and the events are let go."""
        self._uninstall()
        self._take_events()
        interactions = [*self._take_commands(), *(held for _, _, held in self._take_components())]
        for interaction in interactions:
            if interaction.type is discord.InteractionType.autocomplete:
                continue  # a list of choices, not an answer: the member sees none
            try:
                if not interaction.response.is_done():
                    await interaction.response.send_message(why, ephemeral=True)
            except discord.HTTPException as exc:
                _log.warning("a held interaction could not be answered", error=str(exc))
        self._log_dropped()

    def _take_events(self) -> list[Event]:
        events = list(self.events)
        self.events.clear()
        return events

    def _take_commands(self) -> list[discord.Interaction[Any]]:
        held, self.commands = self.commands, []
        return held

    def _take_components(self) -> list[tuple[int, str, discord.Interaction[Any]]]:
        held, self.components = self.components, []
        return held

    def _log_dropped(self) -> None:
        if self.dropped:
            _log.warning(
                "more arrived before mendbot's cogs were up than it keeps: the oldest went",
                dropped=self.dropped,
            )


def _known_command(tree: Any, interaction: discord.Interaction[Any]) -> bool:
    """Whether the tree has the app command (or context menu) `interaction` calls, as its lookup would
    find it: in the interaction's guild, else global (one it cannot tell is taken as known: never held
    from the bot)."""
    data: Any = interaction.data or {}
    try:
        name = data.get("name")
        kind = discord.AppCommandType(data.get("type", 1))
        guild_id = data.get("guild_id")
        if guild_id is not None and tree.get_command(name, guild=discord.Object(int(guild_id)), type=kind):
            return True
        if guild_id is not None and not tree.fallback_to_global:
            return False
        return tree.get_command(name, type=kind) is not None
    except (AttributeError, TypeError, ValueError):
        return True


def _claimed(store: Any, component_type: int, custom_id: str, interaction: Any) -> bool:
    """Whether a view or dynamic item of the bot's would take this button or menu, as the view store's
    own lookup would find it (one it cannot tell is taken as claimed: never held from the bot)."""
    try:
        if any(pattern.fullmatch(custom_id) for pattern in store._dynamic_items):
            return True
        key = (component_type, custom_id)
        message = interaction.message
        views = store._views
        return (message is not None and key in views.get(message.id, {})) or key in views.get(None, {})
    except (AttributeError, TypeError):
        return True
