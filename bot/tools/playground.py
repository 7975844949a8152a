"""The local playground: the real bot and all its cogs inside a virtual Discord (simcord).

`VirtualWorld` builds one guild with `#dev` and `#general` and the users from config; the test
harness uses the same builder. `Playground` turns typed lines into messages, slash commands,
reactions and clicks, and prints what the bot did, readably, with short message ids (`m3`).

Grammar (one action per line; see docs/user-guide.md):
    @alice              switch user          #dev            switch channel
    /roll 2d6           slash command        !roll 2d6       prefix command (a plain message)
    react m3 ✅          add a reaction       unreact m3 ✅    remove it
    click m3 Approve    press a button (label or custom id)
    reply m3 text       a message replying to m3
    wait                let the bot finish all it started     wait 10m   advance virtual time
    sleep 1.5           wait real seconds (file watchers)     # comment  ignored
    help / quit
Anything else is sent as a message from the current user in the current channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import shlex
import sys
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import discord
import simcord
from discord import app_commands

from mendbot.features.reminders import parse_delay
from mendbot.kernel.durations import relative
from mendbot.kernel.errors import UserError
from mendbot.tools.world import VirtualWorld, WorldClock, virtual_world

__all__ = ["Playground", "PlaygroundError", "VirtualWorld", "WorldClock", "virtual_world"]

# Discord's timestamp styles (`<t:…:f>`) but the relative one, as its client writes them: a moment,
# never "in 30 min" (which is `R`, and reads wrong after "until").
_STAMP_STYLES = {
    "t": "%H:%M",
    "T": "%H:%M:%S",
    "d": "%Y-%m-%d",
    "D": "%d %B %Y",
    "f": "%d %B %Y %H:%M",
    "F": "%A, %d %B %Y %H:%M",
}


_BOOLEANS = dict.fromkeys(("true", "yes", "on", "1"), True) | dict.fromkeys(
    ("false", "no", "off", "0"), False
)


class PlaygroundError(Exception):
    """A line the playground cannot run; the message says why."""


@dataclass
class _Seen:
    content: str
    embeds: list[Any]
    components: list[Any]
    reactions: list[tuple[str, int]]


@dataclass
class Playground:
    world: VirtualWorld
    out: TextIO = field(default_factory=lambda: sys.stdout)
    echo: bool = True
    user: str = ""
    channel: str = "general"
    _aliases: dict[int, str] = field(default_factory=dict)
    _ids: dict[str, int] = field(default_factory=dict)
    _seen: dict[int, _Seen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.user:
            allowed = [u.name for u in self.world.bot.services.settings.playground.users if u.allowed]
            self.user = allowed[0] if allowed else next(iter(self.world.users))
        self.print_changes()

    # -- running lines -------------------------------------------------------------------------

    async def run_lines(self, lines: Iterable[str] | AsyncIterable[str]) -> int:
        """Run a script, each line once the bot has finished what the one before started; 0 when every
        line ran, 2 when a line could not be run.

        Anything else escaping (the bot hung or the virtual Discord failed) propagates: the
        caller reports it as a crash.
        """
        status = 0
        async for raw in _aiter(lines):
            line = raw.strip()
            if not line:
                continue
            if line.lower() in {"quit", "exit"}:
                break
            with self.world.working():
                try:
                    await self.execute(line)
                except PlaygroundError as exc:
                    self._say(f"! {exc}")
                    status = 2
                # A script's line waits for all it started, runs in the background included, so what a
                # script prints does not depend on how fast the machine is.
                await self.world.quiesce()
            self.print_changes()
        await self.world.quiesce()
        self.print_changes()
        return status

    async def execute(self, line: str) -> None:
        """Run one line, wait for the bot to finish reacting, print what changed."""
        if line.startswith("# ") or line == "#":
            return
        if self.echo:
            self._say(f"{self.user} in #{self.channel}> {line}")
        word, _, rest = line.partition(" ")
        try:
            with self.world.working():
                await self._dispatch(word, rest.strip(), line)
        except PlaygroundError:
            raise
        except simcord.BackendError as exc:
            raise PlaygroundError(f"Discord refused that: {exc}") from None
        except simcord.SetupError as exc:  # e.g. an option value Discord's client would not send
            raise PlaygroundError(f"Discord would not send that: {exc}") from None
        except UserError as exc:  # e.g. `wait 99999d`
            raise PlaygroundError(str(exc)) from None
        self.print_changes()

    async def _dispatch(self, word: str, rest: str, line: str) -> None:
        lower = word.lower()
        if word.startswith("@") and not rest:
            self._switch_user(word[1:])
        elif word.startswith("#") and len(word) > 1 and not rest:
            self._switch_channel(word[1:])
        elif word.startswith("/") and len(word) > 1:
            await self._slash(word[1:], rest)
        elif lower in {"react", "unreact"}:
            message_ref, emoji = self._two(rest, f"{lower} <message> <emoji>")
            message = self._message(message_ref)
            actor = self._actor()
            if lower == "react":
                await actor.react(message, emoji)
            else:
                await actor.unreact(message, emoji)
        elif lower == "click":
            message_ref, label = self._two(rest, "click <message> <button label or custom id>")
            await self._click(self._message(message_ref), label)
        elif lower == "reply":
            message_ref, text = self._two(rest, "reply <message> <text>")
            message = self._message(message_ref)
            channel = self.world.channel_of(message.id) or self._channel()
            await self._actor().send(channel, self._mentions_in(text), reply_to=message)
        elif lower == "wait":
            if rest:
                try:
                    delay = parse_delay(rest)
                except UserError:
                    raise PlaygroundError(
                        f"wait takes a duration up to a year, like `wait 10m`, not {rest!r}"
                    ) from None
                await self.world.env.advance_time(delay.total_seconds())
            await self.world.quiesce()
        elif lower == "sleep":
            await asyncio.sleep(self._seconds(rest or "1"))
            await self.world.quiesce()
        elif lower == "help":
            self._say(__doc__.split("Grammar", 1)[1].strip() if __doc__ else "")
        else:
            await self._actor().send(self._channel(), self._mentions_in(line))

    # -- pieces --------------------------------------------------------------------------------

    def _switch_user(self, name: str) -> None:
        if name not in self.world.users:
            raise PlaygroundError(f"no user {name}; users: {', '.join(self.world.users)}")
        self.user = name

    def _switch_channel(self, name: str) -> None:
        if name not in self.world.channels:
            raise PlaygroundError(f"no channel #{name}; channels: #{', #'.join(self.world.channels)}")
        self.channel = name

    def _mentions_in(self, text: str) -> str:
        """`@mendbot` (or the bot by its name) and `@alice` typed in a message become real mentions."""
        me = self.world.bot.user

        def mention(match: re.Match[str]) -> str:
            name = match.group(1)
            if me is not None and name in ("mendbot", me.name.lower()):
                return me.mention
            user = self.world.users.get(name)
            return user.mention if user is not None else match.group(0)

        return re.sub(r"@([a-z0-9_.]+)", mention, text)

    @property
    def _bot_name(self) -> str:
        """The bot as its messages are signed: mendbot, or the bot mendbot is attached to by its name."""
        me = self.world.bot.user
        return me.name if me is not None else "mendbot"

    def _readable(self, text: str) -> str:
        """Mentions and timestamps as a person would see them in the client."""
        names = {str(actor.id): name for name, actor in self.world.users.items()}
        if self.world.bot.user is not None:
            names[str(self.world.bot.user.id)] = self._bot_name
        text = re.sub(r"<@!?(\d+)>", lambda m: "@" + names.get(m.group(1), m.group(1)), text)
        text = re.sub(
            r"<#(\d+)>",
            lambda m: (
                "#"
                + next(
                    (c.name or "?" for c in self.world.all_channels() if str(c.id) == m.group(1)), m.group(1)
                )
            ),
            text,
        )

        now = self.world.env.now()  # the bot's (virtual) clock, not the terminal's

        def stamp(match: re.Match[str]) -> str:
            style = match.group(2) or "f"
            if style != "R":  # a moment, as the client writes it (in UTC here, which it says)
                moment = datetime.fromtimestamp(int(match.group(1)), UTC)
                return f"{moment.strftime(_STAMP_STYLES.get(style, _STAMP_STYLES['f']))} UTC"
            delta = int(match.group(1)) - int(now.timestamp())
            if delta == 0:  # as Discord's client says it; "in 0s" read as a time still to come
                return "just now"
            return relative(delta)

        return re.sub(r"<t:(\d+)(?::([a-zA-Z]))?>", stamp, text)

    def _actor(self) -> simcord.MemberActor:
        return self.world.users[self.user]

    def _channel(self) -> simcord.ChannelHandle:
        return self.world.channels[self.channel]

    @staticmethod
    def _seconds(text: str) -> float:
        try:
            seconds = float(text)
        except ValueError:
            raise PlaygroundError(f"sleep takes seconds, like `sleep 1.5`, not {text!r}") from None
        if not math.isfinite(seconds) or not 0 <= seconds <= 60:
            raise PlaygroundError("sleep takes 0 to 60 seconds")
        return seconds

    @staticmethod
    def _two(rest: str, usage: str) -> tuple[str, str]:
        first, _, second = rest.partition(" ")
        if not first or not second.strip():
            raise PlaygroundError(f"usage: {usage}")
        return first, second.strip()

    def _message(self, ref: str) -> discord.Message:
        if ref == "last":
            bot_messages = [mid for mid, alias in self._aliases.items() if alias]
            if not bot_messages:
                raise PlaygroundError("there is no bot message yet")
            message_id = max(bot_messages)
        elif ref in self._ids:
            message_id = self._ids[ref]
        elif ref.isdigit():
            message_id = int(ref)
        else:
            raise PlaygroundError(f"unknown message {ref}: use an id like m3 (as printed) or `last`")
        for channel in self.world.all_channels():
            for message in channel.history():
                if message.id == message_id:
                    return message
        raise PlaygroundError(f"message {ref} not found")

    async def _click(self, message: discord.Message, label: str) -> None:
        for row in message.components:
            for child in getattr(row, "children", [row]):
                custom_id = getattr(child, "custom_id", None)
                if custom_id and label in {custom_id, getattr(child, "label", None)}:
                    result = await self._actor().click(message, custom_id=custom_id)
                    self._print_result(result)
                    return
        raise PlaygroundError(f"no button `{label}` on that message")

    async def _slash(self, name: str, rest: str) -> None:
        tree = self.world.bot.tree
        guild = discord.Object(self.world.guild.id)
        command = tree.get_command(name, guild=guild)
        try:
            tokens = shlex.split(rest)
        except ValueError as exc:
            raise PlaygroundError(f"cannot parse arguments: {exc}") from None
        if isinstance(command, app_commands.Group) and tokens:
            sub = command.get_command(tokens[0])
            if sub is not None:
                name, command, tokens = f"{name} {tokens[0]}", sub, tokens[1:]
        if not isinstance(command, app_commands.Command):
            known = ", ".join(f"/{c.name}" for c in tree.get_commands(guild=guild))
            raise PlaygroundError(f"no slash command /{name}; known: {known}")
        options = self._options(command, tokens)
        result = await self._actor().slash(self._channel(), name, **options)
        self._print_result(result)

    def _options(self, command: app_commands.Command[Any, Any, Any], tokens: list[str]) -> dict[str, Any]:
        params = command.parameters
        named: dict[str, str] = {}
        positional: list[str] = []
        names = {p.name for p in params}
        for token in tokens:
            # `name=value`, or `name:value` as Discord's client shows a filled option (and the
            # bot's replies write it: `/run 3 action:resume`).
            key, sep, value = token.partition("=")
            if not (sep and key in names):
                key, sep, value = token.partition(":")
            if sep and key in names:
                named[key] = value
            else:
                positional.append(token)
        # Words fill the required options in order and the last of them takes the rest of the
        # line; a command with no required option gives the whole line to its first option.
        # Optional options are named: `/fix the roll is broken incident=3`. When the last
        # required option cannot hold words (a number), the next words fill the optional ones
        # in order, as Discord's client offers them: `/incident 3 resolve`.
        free = [p for p in params if p.name not in named and p.required] or [
            p for p in params[:1] if p.name not in named
        ]
        holds_words = (
            bool(free) and free[-1].type is discord.AppCommandOptionType.string and not free[-1].choices
        )
        if free and not holds_words and len(positional) > len(free):
            rest = [p for p in params if p.name not in named and p not in free]
            free += rest[: len(positional) - len(free)]
        for index, param in enumerate(free):
            if index >= len(positional):
                break
            is_last = index == len(free) - 1
            named[param.name] = " ".join(positional[index:]) if is_last else positional[index]
        missing = [p.name for p in params if p.required and p.name not in named]
        if missing:
            usage = " ".join(f"<{p.name}>" if p.required else f"[{p.name}]" for p in params)
            raise PlaygroundError(
                f"/{command.qualified_name} needs {', '.join(missing)}: /{command.qualified_name} {usage}"
            )
        return {
            key: self._convert(next(p for p in params if p.name == key), value)
            for key, value in named.items()
        }

    def _convert(self, param: app_commands.Parameter, value: str) -> Any:
        kind = param.type
        if param.choices and value not in {str(choice.value) for choice in param.choices}:
            allowed = ", ".join(str(choice.value) for choice in param.choices)
            raise PlaygroundError(f"{param.name} must be one of {allowed}, not {value!r}")
        try:
            if kind is discord.AppCommandOptionType.integer:
                return int(value)
            if kind is discord.AppCommandOptionType.number:
                number = float(value)
                if not math.isfinite(number):
                    raise ValueError(value)
                return number
            if kind is discord.AppCommandOptionType.boolean:
                # Discord's client offers only True and False: anything else is refused, not read as False.
                truth = _BOOLEANS.get(value.lower())
                if truth is None:
                    raise ValueError(value)
                return truth
        except ValueError:
            article = "an" if kind.name[0] in "aeiou" else "a"
            raise PlaygroundError(f"{param.name} must be {article} {kind.name}, not {value!r}") from None
        if kind in (discord.AppCommandOptionType.user, discord.AppCommandOptionType.mentionable):
            user = self.world.users.get(value.lstrip("@"))
            if user is None:
                raise PlaygroundError(f"no user {value}; users: {', '.join(self.world.users)}")
            return user
        if kind is discord.AppCommandOptionType.channel:
            channel = self.world.channels.get(value.lstrip("#"))
            if channel is None:
                raise PlaygroundError(f"no channel {value}; channels: #{', #'.join(self.world.channels)}")
            return channel
        return value

    # -- printing ------------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        self.out.write(self._readable(text) + "\n")
        self.out.flush()

    def alias(self, message_id: int) -> str:
        """The short id (`m3`) a message is printed with, given it if it has none yet."""
        return self._alias(message_id)

    def _alias(self, message_id: int) -> str:
        if message_id not in self._aliases:
            alias = f"m{len(self._aliases) + 1}"
            self._aliases[message_id] = alias
            self._ids[alias] = message_id
        return self._aliases[message_id]

    def _print_result(self, result: simcord.InteractionResult) -> None:
        for response in [result.response, *result.followups]:
            if response is not None and response.ephemeral:
                alias = self._alias(response.id)
                who = f"{self._bot_name} ({alias}, only {self.user} sees this)"
                self._say(f"[#{self.channel}] {who}: {response.content}")
                self._print_extras(response.embeds, response.components)

    def print_changes(self) -> None:
        """Print bot messages that appeared or changed since the last call."""
        me = self.world.bot.user
        for channel in self.world.all_channels():
            where = f"#{channel.name}" if not channel.is_thread else f"🧵{channel.name}"
            for message in channel.history():
                if me is None or message.author.id != me.id:
                    continue
                if not (message.content or message.embeds or message.components or message.attachments):
                    continue  # an answer still "thinking" (deferred): printed once it says something
                seen = _Seen(
                    content=message.content,
                    embeds=[embed.to_dict() for embed in message.embeds],
                    components=[_component_summary(row) for row in message.components],
                    reactions=[(str(r.emoji), r.count) for r in message.reactions],
                )
                before = self._seen.get(message.id)
                if before == seen:
                    continue
                self._seen[message.id] = seen
                alias = self._alias(message.id)
                if before is None:
                    self._say(f"[{where}] {self._bot_name} ({alias}): {message.content}".rstrip())
                    self._print_extras(message.embeds, message.components)
                    for attachment in message.attachments:  # e.g. the audit's charts
                        self._say(f"    📎 {attachment.filename} ({attachment.size:,} bytes)")
                elif (
                    before.content != seen.content
                    or before.embeds != seen.embeds
                    or (before.components != seen.components)
                ):
                    self._say(f"[{where}] {self._bot_name} edited {alias}: {message.content}".rstrip())
                    self._print_extras(message.embeds, message.components)
                if seen.reactions and (before is None or before.reactions != seen.reactions):
                    shown = "  ".join(f"{emoji} {count}" for emoji, count in seen.reactions)
                    self._say(f"    reactions on {alias}: {shown}")

    def _print_extras(self, embeds: list[discord.Embed], components: Iterable[Any]) -> None:
        for embed in embeds:
            if embed.title:
                self._say(f"    ┃ **{embed.title}**")
            if embed.description:
                for text_line in embed.description.splitlines():
                    self._say(f"    ┃ {text_line}")
            for embed_field in embed.fields:
                name_line, *more = f"{embed_field.name}: {embed_field.value}".splitlines() or [""]
                self._say(f"    ┃ {name_line}")
                for more_line in more:  # a field's value of several lines stays inside the embed
                    self._say(f"    ┃   {more_line}")
            if embed.footer and embed.footer.text:
                self._say(f"    ┃ — {embed.footer.text}")
        buttons = [summary for row in components for summary in _component_summary(row)]
        if buttons:
            self._say("    " + "  ".join(buttons))


async def _aiter(lines: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[str]:
    if isinstance(lines, AsyncIterable):
        async for line in lines:
            yield line
    else:
        for line in lines:
            yield line


async def stdin_lines() -> AsyncIterator[str]:
    """Standard input line by line without blocking the event loop while waiting for the next one.

    The reading thread is a daemon, not asyncio's executor: the executor is joined when the loop
    closes, so Ctrl-C (or a restart) would hang until the next line or EOF arrived.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        while True:
            try:
                line = sys.stdin.readline()
            except (OSError, ValueError):  # stdin closed under us
                line = ""
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(queue.put_nowait, line)
            if not line:
                return

    threading.Thread(target=read, name="playground-stdin", daemon=True).start()
    while line := await queue.get():
        yield line


def _component_summary(row: Any) -> list[str]:
    if isinstance(row, dict):
        children = row.get("components", [row])
        return [f"[{c.get('label') or c.get('emoji', {}).get('name', '')}]" for c in children]
    children = getattr(row, "children", [row])
    shown = []
    for child in children:
        label = getattr(child, "label", None) or str(getattr(child, "emoji", "") or "")
        state = " (disabled)" if getattr(child, "disabled", False) else ""
        shown.append(f"[{label}]{state}")
    return shown
