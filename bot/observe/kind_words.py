"""An action record's kind as people name what it records: `command:fortune` is "the `fortune` command",
`app:fix` "the `/fix` command", `listener:on_message` "the `on_message` listener", `http:search.example`
"calls to `search.example`".

Kinds are the recorder's vocabulary (bot/runtime/recording.py, bot/runtime/entry_points.py; the user
guide, "What mendbot watches"); the pages show these words, the kind itself a hover away. A kind of no
known shape reads as itself, in code.
"""

from __future__ import annotations

__all__ = ["command_name", "kind_words"]

# prefix → how the part after it is named; `{}` is that part, in code.
_SHAPES = {
    "command": "the `{}` command",
    "app": "the `/{}` command",
    "listener": "the `{}` listener",
    "task": "the `{}` task",
    "view": "the `{}` button or menu",
    "modal": "the `{}` form",
    "autocomplete": "the autocomplete of `{}`",
    "check": "the `{}` check",
    "converter": "the `{}` converter",
    "cog": "the `{}` cog",
    "extension": "the `{}` extension",
    "chat": "chat's `{}`",
    "agent": "the coding agent's `{}`",
    "access": "an access check (`{}`)",
    "discord": "Discord (`{}`)",
    "model": "the model's API (`{}`)",
    "http": "calls to `{}`",  # the bot's calls to another service: bot/observe/outbound.py
}
_WHOLE = {"chat:reply": "chat replies", "agent:run": "self-improvement runs", "storage": "storage"}


def kind_words(kind: str) -> str:
    """How a person names what `kind` records (backticks for code, as chat writes it)."""
    if kind in _WHOLE:
        return _WHOLE[kind]
    prefix, _, rest = kind.partition(":")
    shape = _SHAPES.get(prefix)
    if shape is None or not rest:
        return f"`{kind}`"
    rest = rest.replace("`", "'")
    cog, dot, hook = rest.partition(".")
    if prefix == "cog" and dot:  # `cog:Rates.cog_load`: a hook of the cog, not a cog of that name
        return f"the `{cog}` cog's `{hook}`"
    return shape.format(rest)


def command_name(kind: str) -> str:
    """A command's kind as its name in code — `roll` (a prefix or hybrid command), `/fix` (an app
    command) — for lists of commands; any other kind as `kind_words` says it."""
    prefix, _, rest = kind.partition(":")
    if prefix == "command" and rest:
        return f"`{rest}`"
    if prefix == "app" and rest:
        return f"`/{rest}`"
    return kind_words(kind)
