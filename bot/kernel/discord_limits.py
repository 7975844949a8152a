"""Discord's size limits, applied once to everything the bot sends, so no reply is ever refused as too long.

Discord answers a message over its limits with 400 Invalid Form Body ("content must be 2000 or fewer in
length"), and the user then gets no answer at all — `/roll <3000 digits>d6` echoed the digits in its
explanation. Cogs cannot be trusted to cut every text they build (user input gets echoed, model output
and tracebacks are long), so the cut happens where every message's payload is built: discord.py's
`handle_message_parameters` (channel sends, replies, edits, webhook and followup messages) and
`interaction_message_response_params` (interaction responses and their edits). `install_reply_limits()`
wraps both, in each discord.py module that imported them, once per process.

Content is cut to 2000 characters and each embed to Discord's limits (title 256, description 4096,
25 fields of 256/1024, footer 2048, author 256, 6000 in all), with "…" where something was cut.
`cut()` is for echoes of user input inside a message: keep an echo short enough to read.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import discord

__all__ = [
    "CONTENT_LIMIT",
    "EMBED_TOTAL_LIMIT",
    "clamp_content",
    "clamp_embed",
    "cut",
    "install_reply_limits",
]

CONTENT_LIMIT = 2000
EMBED_TOTAL_LIMIT = 6000
_TITLE = 256
_DESCRIPTION = 4096
_FIELDS = 25
_FIELD_NAME = 256
_FIELD_VALUE = 1024
_FOOTER = 2048
_AUTHOR = 256
_EMBEDS = 10
_MORE = "…"

# Where discord.py builds a message payload: (module, function name). Each module imported the function
# by name, so each module's reference is wrapped.
_BUILDERS = (
    ("discord.http", "handle_message_parameters"),
    ("discord.abc", "handle_message_parameters"),
    ("discord.message", "handle_message_parameters"),
    ("discord.channel", "handle_message_parameters"),
    ("discord.interactions", "handle_message_parameters"),
    ("discord.webhook.async_", "handle_message_parameters"),
    ("discord.webhook.sync", "handle_message_parameters"),
    ("discord.webhook.async_", "interaction_message_response_params"),
    ("discord.interactions", "interaction_message_response_params"),
)


def cut(text: str, limit: int) -> str:
    """`text` at most `limit` characters long, ending in "…" when it was cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(_MORE))] + _MORE


def clamp_content(content: Any) -> Any:
    """Message content within 2000 characters (None and discord.py's MISSING pass unchanged)."""
    if content is None or content is discord.utils.MISSING:
        return content
    return cut(str(content), CONTENT_LIMIT)


def clamp_embed(embed: discord.Embed) -> discord.Embed:
    """A copy of `embed` within Discord's limits; the embed itself when it already fits."""
    if _embed_fits(embed):
        return embed
    clamped = embed.copy()
    if clamped.title:
        clamped.title = cut(clamped.title, _TITLE)
    if clamped.description:
        clamped.description = cut(clamped.description, _DESCRIPTION)
    fields = [(f.name or "", f.value or "", f.inline) for f in clamped.fields][:_FIELDS]
    clamped.clear_fields()
    for name, value, inline in fields:
        clamped.add_field(name=cut(name, _FIELD_NAME), value=cut(value, _FIELD_VALUE), inline=inline)
    if clamped.footer.text:
        clamped.set_footer(text=cut(clamped.footer.text, _FOOTER), icon_url=clamped.footer.icon_url)
    if clamped.author.name:
        clamped.set_author(
            name=cut(clamped.author.name, _AUTHOR), url=clamped.author.url, icon_url=clamped.author.icon_url
        )
    # Still over the total: the description gives way first, then the fields from the last.
    excess = len(clamped) - EMBED_TOTAL_LIMIT
    if excess > 0 and clamped.description:
        keep = max(0, len(clamped.description) - excess)
        clamped.description = cut(clamped.description, keep) if keep else None
    while len(clamped) > EMBED_TOTAL_LIMIT and clamped.fields:
        clamped.remove_field(len(clamped.fields) - 1)
    return clamped


def _embed_fits(embed: discord.Embed) -> bool:
    return (
        len(embed) <= EMBED_TOTAL_LIMIT
        and len(embed.title or "") <= _TITLE
        and len(embed.description or "") <= _DESCRIPTION
        and len(embed.fields) <= _FIELDS
        and all(len(f.name or "") <= _FIELD_NAME and len(f.value or "") <= _FIELD_VALUE for f in embed.fields)
        and len(embed.footer.text or "") <= _FOOTER
        and len(embed.author.name or "") <= _AUTHOR
    )


def _clamped(arguments: dict[str, Any]) -> dict[str, Any]:
    if "content" in arguments:
        arguments["content"] = clamp_content(arguments["content"])
    embed = arguments.get("embed")
    if isinstance(embed, discord.Embed):
        arguments["embed"] = clamp_embed(embed)
    embeds = arguments.get("embeds")
    if embeds is not None and embeds is not discord.utils.MISSING:
        kept = list(embeds)[:_EMBEDS]
        arguments["embeds"] = [clamp_embed(e) if isinstance(e, discord.Embed) else e for e in kept]
    return arguments


def _limited(build: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(build, "__mendbot_limited__", False):
        return build

    @functools.wraps(build)
    def limited(*args: Any, **kwargs: Any) -> Any:
        if args:  # handle_message_parameters takes content positionally too
            args = (clamp_content(args[0]), *args[1:])
        return build(*args, **_clamped(kwargs))

    limited.__mendbot_limited__ = True  # type: ignore[attr-defined]
    return limited


def install_reply_limits() -> None:
    """Wrap discord.py's message payload builders once per process (idempotent)."""
    for module_name, name in _BUILDERS:
        module = importlib.import_module(module_name)
        original = getattr(module, name, None)
        if original is not None:
            setattr(module, name, _limited(original))
