"""What a handler was asked and what it answered, captured for its action record.

A fault with no traceback (a wrong result, a misleading message) can only be found by the calls
it answered: "/convert 10 km gave 16.1 miles" must meet the action whose options were `10 km`
and whose reply said `16.1`. Each handler the bot runs (app command, prefix command, listener,
task iteration) opens a `HandlerCapture` in its task's context; the message-sending methods of
discord.py (`Messageable.send`, `Message.edit`, `InteractionResponse.send_message` and
`edit_message`, `Webhook.send`) are wrapped once, so whatever the handler sends — by whatever
path — is appended to the capture of the context it is sent from. Outside a capture the wrappers
do nothing but call through.

The capture also tells the slow-handler sampler (bot/observe/sampler.py) which task to watch.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import discord
import msgspec
from discord.ext import commands

from mendbot.db import provenance

__all__ = [
    "REPLY_PREVIEW_CHARS",
    "HandlerCapture",
    "caller_of",
    "captured_fields",
    "current_capture",
    "event_ids",
    "install_reply_hooks",
    "interaction_invocation",
    "message_caller",
    "message_invocation",
    "start_capture",
]

REPLY_PREVIEW_CHARS = 200
_OPTION_CHARS = 200
_MAX_STACKS = 5
_MAX_ROLES = 20

_current: contextvars.ContextVar[HandlerCapture | None] = contextvars.ContextVar(
    "mendbot_handler_capture", default=None
)


class HandlerCapture(provenance.ActionScope):
    """One handler run: its kind, what it was asked, what it sent, and sampled stacks if slow — and
    the stored rows it read (it is the action's provenance scope too: one object per action)."""

    invocation: dict[str, Any] | None = None
    # What was asked, worked out when first read (`asked`) rather than as the handler starts: an app
    # command's options are built by discord.py as it runs the command, and building them before as well
    # would be that work twice on every call.
    asking: Callable[[], dict[str, Any]] | None = None
    started: float = msgspec.field(default_factory=time.perf_counter)
    task: asyncio.Task[Any] | None = None
    replies: list[str] = msgspec.field(default_factory=list)
    # Made by the slow-handler sampler's first sample: most handlers are never sampled (one per action).
    stacks: Counter[tuple[str, ...]] | None = None
    sampled: int = 0
    # Tasks a handler starts inherit its context (a run started from a message): what they send
    # after the handler's record is written is not its reply.
    closed: bool = False

    def asked(self) -> dict[str, Any] | None:
        """What the handler was asked (its invocation), worked out on the first read."""
        if self.asking is not None:
            self.invocation, self.asking = self.asking(), None
        return self.invocation

    def add_reply(self, text: str) -> None:
        if text and not self.closed:
            self.replies.append(text)

    def reply_digest(self) -> dict[str, Any] | None:
        """The first characters of what the handler sent and a hash of all of it."""
        if not self.replies:
            return None
        whole = "\n".join(self.replies)
        return {
            "text": whole[:REPLY_PREVIEW_CHARS],
            "sha": hashlib.sha256(whole.encode()).hexdigest()[:16],
            "messages": len(self.replies),
        }

    def add_stack(self, stack: tuple[str, ...]) -> None:
        """One more sample of the handler's in-repo stack."""
        if self.stacks is None:
            self.stacks = Counter()
        self.stacks[stack] += 1

    def samples(self) -> list[dict[str, Any]] | None:
        """The most frequent sampled in-repo stacks (innermost last), with counts."""
        if not self.stacks:
            return None
        ranked = sorted(self.stacks.items(), key=lambda item: (-item[1], item[0]))[:_MAX_STACKS]
        return [{"frames": list(frames), "count": count} for frames, count in ranked]


def start_capture(
    kind: str,
    invocation: dict[str, Any] | None = None,
    *,
    asking: Callable[[], dict[str, Any]] | None = None,
) -> HandlerCapture:
    """Open a capture for the handler running in the current task (its context owns it): what it was
    asked given, or (`asking`) worked out when first read."""
    capture = HandlerCapture(kind, invocation=invocation, asking=asking, task=asyncio.current_task())
    _current.set(capture)
    provenance.enter(capture)  # what it writes is stamped with its kind; what it reads, noted
    return capture


def captured_fields(capture: HandlerCapture) -> dict[str, Any]:
    """The record fields a finished handler's capture fills in: what it was asked and answered, and
    where its time went when it was slow."""
    return {"invocation": capture.asked(), "reply": capture.reply_digest(), "samples": capture.samples()}


def current_capture() -> HandlerCapture | None:
    return _current.get()


# -- what was asked ---------------------------------------------------------------------------------


def _option(value: Any) -> Any:
    """An option or a listener's argument as stored: plain values as they are, a Discord object by its id
    (the shape `discord.abc.Snowflake` describes, asked directly: the protocol's own check walks its
    members on every call), an object with no text of its own by its class (its default text names a
    memory address, which would make every run a call never seen before), anything else as its text —
    and by its class when asking it raises."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value[:_OPTION_CHARS] if isinstance(value, str) else value
    kind = type(value)
    try:
        if isinstance(ident := getattr(value, "id", None), int):
            return f"{kind.__name__}:{ident}"
        if all(getattr(kind, name, None) is getattr(object, name) for name in ("__str__", "__repr__")):
            return kind.__qualname__
        return str(value)[:_OPTION_CHARS]
    except Exception:  # its `id` or its text raises: the bot's handler runs all the same
        return kind.__qualname__


def caller_of(user: Any, channel_id: int | None, guild_id: int | None) -> dict[str, Any]:
    """Who asked, and where: what a replay sends a call as (the member, its roles, the channel and the
    guild), so that a change answering one member differently from another shows."""
    roles = [role.id for role in getattr(user, "roles", ())[1:]]  # a member's, @everyone left out
    return {
        "user": getattr(user, "id", None),
        "roles": roles[:_MAX_ROLES],
        "channel": channel_id,
        "guild": guild_id,
    }


# The caller of the last message read: a member's message is read by the command it calls, then by each
# listener on it, one after the other, and working out its author's roles again each time (sorted by
# position) was most of what reading it cost. All of them are handed the message as it was said, so its
# caller as first read is the one each of them was asked by (a role given since, by the command itself,
# say, is not).
_last_caller: list[tuple[discord.Message, dict[str, Any]]] = []  # one slot


def message_caller(message: discord.Message) -> dict[str, Any]:
    """`caller_of` the message's author, where the message was said (a copy of its own to each caller)."""
    if _last_caller and _last_caller[0][0] is message:
        caller = _last_caller[0][1]
    else:
        caller = caller_of(message.author, message.channel.id, message.guild.id if message.guild else None)
        _last_caller[:] = [(message, caller)]
    return {**caller, "roles": list(caller["roles"])}


def _target(interaction: discord.Interaction[Any]) -> dict[str, Any] | None:
    """A context menu's target as the interaction carried it: a message's text and author, or a user."""
    data: Any = interaction.data or {}
    target = str(data.get("target_id") or "")
    resolved = data.get("resolved") or {}
    message = (resolved.get("messages") or {}).get(target)
    if message is not None:
        author = (message.get("author") or {}).get("id")
        return {"message": {"content": str(message.get("content") or "")[:_OPTION_CHARS], "author": author}}
    if target in (resolved.get("users") or {}):
        return {"user": target}
    return None


def interaction_invocation(interaction: discord.Interaction[Any]) -> dict[str, Any]:
    """`{"name": "/convert", "options": {...}, "caller": {...}}` for an app-command interaction (a
    context menu's `target` too)."""
    command = interaction.command
    name = command.qualified_name if command is not None else "unknown"
    options = {key: _option(value) for key, value in vars(interaction.namespace).items()}
    invocation = {
        "name": f"/{name}",
        "options": options,
        "caller": caller_of(interaction.user, interaction.channel_id, interaction.guild_id),
    }
    if isinstance(command, discord.app_commands.ContextMenu) and (target := _target(interaction)):
        invocation["target"] = target
    return invocation


def event_ids(args: tuple[Any, ...]) -> dict[str, Any]:
    """Guild, channel, user and message ids from a listener's first argument, where it has them."""
    if not args:
        return {}
    first = args[0].message if isinstance(args[0], commands.Context) else args[0]
    if isinstance(first, discord.Message):
        return {
            "guild_id": first.guild.id if first.guild else None,
            "channel_id": first.channel.id,
            "user_id": first.author.id,
            "message_id": first.id,
        }
    if isinstance(first, discord.RawReactionActionEvent):
        return {
            "guild_id": first.guild_id,
            "channel_id": first.channel_id,
            "user_id": first.user_id,
            "message_id": first.message_id,
        }
    if isinstance(first, discord.Interaction):
        return {"guild_id": first.guild_id, "channel_id": first.channel_id, "user_id": first.user.id}
    return {}


def message_invocation(event: str, args: tuple[Any, ...]) -> dict[str, Any]:
    """`{"name": "on_message", "options": {...}, "caller": {...}}` for a listener, from its event: a
    message's text and author, a reaction's emoji and message (the message's text when the event has
    it), and who did it where."""
    options: dict[str, Any] = {}
    caller: dict[str, Any] | None = None
    first = args[0] if args else None
    # A command's listeners (`on_command`, `on_command_completion`, `on_command_error`) are given its
    # context: what they ran for is the member's message that called it.
    said = first.message if isinstance(first, commands.Context) else first
    if isinstance(said, discord.Message):
        options = {"content": said.content[:_OPTION_CHARS], "author": said.author.id}
        caller = message_caller(said)
    elif isinstance(first, discord.RawReactionActionEvent):
        options = {"emoji": str(first.emoji), "message": first.message_id}
        who = first.member if first.member is not None else discord.Object(first.user_id)
        caller = caller_of(who, first.channel_id, first.guild_id)
    elif isinstance(first, discord.Reaction):
        message = first.message
        options = {
            "emoji": str(first.emoji),
            "message": message.id,
            "content": message.content[:_OPTION_CHARS],
        }
        guild = message.guild.id if message.guild else None
        caller = caller_of(args[1], message.channel.id, guild) if len(args) > 1 else None
    elif first is not None:
        options = {"arg": _option(first)}
    invocation: dict[str, Any] = {"name": event, "options": options}
    if caller is not None:
        invocation["caller"] = caller
    author = getattr(first, "author", None) or (args[1] if isinstance(first, discord.Reaction) else None)
    if getattr(author, "bot", False):
        invocation["by_bot"] = True  # a bot's message (its own, often): no member's call to replay
    return invocation


# -- what was answered ----------------------------------------------------------------------------


def _text_of(content: Any, kwargs: dict[str, Any]) -> str:
    parts = [str(content)] if content is not None else []
    content_kw = kwargs.get("content")
    if content_kw is not None and content_kw is not discord.utils.MISSING:
        parts.append(str(content_kw))
    embeds = list(kwargs.get("embeds") or [])
    embed = kwargs.get("embed")
    if isinstance(embed, discord.Embed):
        embeds.append(embed)
    for item in embeds:
        if isinstance(item, discord.Embed):
            parts += [str(part) for part in (item.title, item.description) if part]
            parts += [f"{f.name}: {f.value}" for f in item.fields]
    return "\n".join(parts)


def _wrap(method: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Coroutine[Any, Any, Any]]:
    if getattr(method, "__mendbot_capture__", False):
        return method

    @functools.wraps(method)
    async def sending(self: Any, *args: Any, **kwargs: Any) -> Any:
        capture = _current.get()
        if capture is not None:
            capture.add_reply(_text_of(args[0] if args else None, kwargs))
        return await method(self, *args, **kwargs)

    sending.__mendbot_capture__ = True  # type: ignore[attr-defined]
    return sending


def install_reply_hooks() -> None:
    """Wrap discord.py's sending methods once per process (idempotent)."""
    targets: list[tuple[Any, str]] = [
        (discord.abc.Messageable, "send"),
        (discord.Message, "edit"),
        (discord.InteractionResponse, "send_message"),
        (discord.InteractionResponse, "edit_message"),
        (discord.Webhook, "send"),
    ]
    for owner, name in targets:
        setattr(owner, name, _wrap(getattr(owner, name)))
