"""The loopback Discord's REST API: the routes discord.py's HTTP client calls and the channels' state.

`RestDouble` answers what the bot asks over REST as Discord does — login, application info, `GET
/gateway/bot` (its loopback gateway and `recommended_shards`), the command sync (echoing the commands with
ids, as discord.py needs), guilds, members, users, channels — and keeps the channels' state: posts, edits
(PATCH), deletes, its own reactions (PUT/DELETE …/reactions/{emoji}/@me), typing, uploads (multipart: the
files' names are kept), `GET` of a message or of a channel's history, and the interaction callback, the
followup webhook and `@original` edits. Like Discord, the bot's own posts, edits, deletes and reactions
come back to it over the gateway (`echo=False` turns that off). Commands synced are in `synced`, the
bot's messages in `messages`; calls it cannot answer are listed in `unknown_routes` (404), and
`fail_sync(status)` makes the sync fail (403 Missing Access / 400 Invalid Form Body). discord.py decodes
JSON only with `Content-Type` exactly `application/json` (HARNESS-NOTES), so every answer has it.

It builds on the gateway half (`mendbot.trust.loopback_discord_gateway`); `DiscordDouble`
(`mendbot.trust.loopback_discord`) adds what people do on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime
import json
import time
from pathlib import Path
from typing import Any

import discord
from aiohttp import BodyPartReader, web

from mendbot.trust.loopback_discord_gateway import GatewayDouble
from mendbot.trust.loopback_discord_model import FakeChannel, FakeGuild, _emoji_payload, snowflake

__all__ = ["API_PREFIX", "RestDouble"]

API_PREFIX = "/api/v10"
# What Discord answers when a bot lacks access, has a bad token or names an unknown thing.
MISSING_ACCESS = {"message": "Missing Access", "code": 50001}
UNKNOWN_GUILD = {"message": "Unknown Guild", "code": 10004}
UNKNOWN_CHANNEL = {"message": "Unknown Channel", "code": 10003}
UNAUTHORIZED = {"message": "401: Unauthorized", "code": 0}
_ARRIVED: contextvars.ContextVar[float] = contextvars.ContextVar("arrived")  # the request's, in its task
INVALID_FORM_BODY = {
    "message": "Invalid Form Body",
    "code": 50035,
    "errors": {
        "0": {
            "description": {
                "_errors": [
                    {"code": "BASE_TYPE_BAD_LENGTH", "message": "Must be between 1 and 100 in length."}
                ]
            }
        }
    },
}


async def _body(request: web.Request) -> Any:
    """A request's JSON: the body, or a multipart upload's `payload_json` (its files named in
    `attachments`, their bytes dropped)."""
    if not request.can_read_body:
        return None
    if request.content_type != "multipart/form-data":
        return await request.json()
    payload: dict[str, Any] = {}
    files: list[str] = []
    async for part in await request.multipart():
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "payload_json":
            payload = json.loads(await part.text())
        else:
            files.append(part.filename or part.name or "file")
            await part.read()
    if files:
        payload["attachments"] = [{"id": str(i), "filename": name} for i, name in enumerate(files)]
    return payload


def _unknown_message() -> web.Response:
    return _json({"message": "Unknown Message", "code": 10008}, 404)


def _json(payload: Any, status: int = 200) -> web.Response:
    # Exactly `application/json`: json_response's "; charset=utf-8" makes discord.py treat it as text.
    return web.Response(body=json.dumps(payload).encode(), status=status, content_type="application/json")


class RestDouble(GatewayDouble):
    """Discord's REST API over the gateway half, with the state of the channels it serves."""

    def __init__(
        self, *, message_content_intent: bool, recommended_shards: int, echo: bool, unix_socket: Path | None
    ) -> None:
        super().__init__(message_content_intent=message_content_intent, unix_socket=unix_socket)
        self.echo = echo  # the bot's own posts, edits and deletes come back over the gateway, as on Discord
        self.recommended_shards = recommended_shards  # what GET /gateway/bot answers
        # Its session_start_limit.max_concurrency: how many shards may IDENTIFY in the same 5 s
        # (1 for most bots, 16 and up for large ones).
        self.max_concurrency = 1
        self.unknown_routes: list[str] = []  # "METHOD /path" of every REST call the double cannot answer
        self.synced: dict[str, list[dict[str, Any]]] = {}  # "global" or the guild id → commands
        self.messages: list[dict[str, Any]] = []  # the bot's messages, as they are now (edits applied)
        self.members: dict[str, dict[str, Any]] = {}  # member name → its user payload (stable ids)
        self.member_roles: dict[int, list[str]] = {}  # member id → its role ids (see `member`)
        self._channel_log: dict[int, list[dict[str, Any]]] = {}  # channel id → every message, oldest first
        self._reactions: dict[int, dict[str, list[int]]] = {}  # message id → emoji → user ids, in order
        self._edits: dict[int, int] = {}  # message id → how many times the bot edited it
        # Message id → when the request that posted or last edited it reached the double (perf_counter).
        self.changed_at: dict[str, float] = {}
        self.interactions: dict[str, dict[str, Any]] = {}  # token → an interaction a test dispatched
        self._originals: dict[str, dict[str, Any]] = {}  # token → the interaction's response message
        self._changed = asyncio.Condition()  # notified at every message posted, edited, reacted to
        self.changes = 0  # how many times it was: a waiter tells a quiet channel by it not moving
        self._posted = asyncio.Event()  # set (and cleared by waiters) at every message the bot posts
        self._sync_error: tuple[int, dict[str, Any]] | None = None
        # token → what the member sees as the interaction's answer once there is one: the message it
        # posted or updated, the modal it opened (`modal`), the choices it offered (`choices`)
        self.answers: dict[str, dict[str, Any]] = {}
        self.modals: dict[str, dict[str, Any]] = {}  # token → the modal the bot opened in answer

    # -- scripting ----------------------------------------------------------------------------

    def fail_sync(self, status: int, body: dict[str, Any] | None = None) -> None:
        """Answer every command sync with this error (403 Missing Access, 400 Invalid Form Body)."""
        default = INVALID_FORM_BODY if status == 400 else MISSING_ACCESS
        self._sync_error = (status, body or default)

    # -- REST ---------------------------------------------------------------------------------

    def _member_payload(self, guild: FakeGuild, user: dict[str, Any]) -> dict[str, Any]:
        return {**guild.member(user), "roles": self.member_roles.get(int(user["id"]), [])}

    def _known_user(self, user_id: str) -> dict[str, Any] | None:
        if user_id == self.user["id"]:
            return self.user
        return next((user for user in self.members.values() if user["id"] == user_id), None)

    def _guild_of(self, channel: FakeChannel) -> FakeGuild:
        return next(guild for guild in self.guilds if channel in guild.channels)

    def _channel_by_id(self, channel_id: str | int) -> FakeChannel:
        found = self._find_channel(str(channel_id))
        if found is None:
            raise LookupError(f"no channel {channel_id}")
        return found[1]

    def _find_guild(self, guild_id: str) -> FakeGuild | None:
        return next((guild for guild in self.guilds if str(guild.id) == guild_id), None)

    def _find_channel(self, channel_id: str) -> tuple[FakeGuild, FakeChannel] | None:
        for guild in self.guilds:
            for channel in guild.channels:
                if str(channel.id) == channel_id:
                    return guild, channel
        return None

    def _can_view(self, guild: FakeGuild, channel: FakeChannel) -> bool:
        permissions = discord.Permissions(guild.everyone_permissions | guild.bot_role_permissions)
        if permissions.administrator:
            return True
        allow, deny = 0, 0
        for overwrite in channel.overwrites:
            if overwrite["id"] in (str(guild.id), str(guild.bot_role_id), self.user["id"]):
                allow |= int(overwrite["allow"])
                deny |= int(overwrite["deny"])
        value = (permissions.value & ~deny) | allow
        return discord.Permissions(value).view_channel

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        _ARRIVED.set(time.perf_counter())
        path = "/" + request.match_info["path"]
        self.requests.append((request.method, path))
        parts = path.strip("/").split("/")
        tokened = parts[0] in ("interactions", "webhooks")  # authorised by the interaction's token instead
        if not tokened and request.headers.get("Authorization") != f"Bot {self.token}":
            return _json(UNAUTHORIZED, 401)
        body = await _body(request)
        match request.method, parts:
            case "POST", ["interactions", _, token, "callback"]:
                return await self._interaction_callback(token, body or {})
            case "POST", ["webhooks", app, token] if app == str(self.application_id):
                return await self._followup(token, body or {})
            case ("PATCH" | "GET" | "DELETE") as method, ["webhooks", app, token, "messages", which] if (
                app == str(self.application_id)
            ):
                return await self._webhook_message(method, token, which, body or {})
            case "GET", ["users", "@me"]:
                return _json(self.user)
            case "GET", ["oauth2", "applications", "@me"]:
                return _json(self._application())
            case "GET", ["gateway", "bot"]:
                return _json(
                    {
                        "url": self.gateway_url.rstrip("/"),
                        "shards": self.recommended_shards,
                        "session_start_limit": {
                            "total": 1000,
                            "remaining": 1000,
                            "reset_after": 0,
                            "max_concurrency": self.max_concurrency,
                        },
                    }
                )
            case "PUT", ["applications", app, "commands"] if app == str(self.application_id):
                return self._sync("global", None, body)
            case "PUT", ["applications", app, "guilds", guild_id, "commands"] if app == str(
                self.application_id
            ):
                return self._sync(guild_id, self._find_guild(guild_id), body)
            case "GET", ["applications", app, "guilds", guild_id, "commands"] if app == str(
                self.application_id
            ):
                guild = self._find_guild(guild_id)
                if guild is None or not guild.bot_is_member:
                    return _json(MISSING_ACCESS, 403)
                return _json(self.synced.get(guild_id, []))
            case "GET", ["guilds", guild_id]:
                guild = self._find_guild(guild_id)
                if guild is None:
                    return _json(UNKNOWN_GUILD, 404)
                if not guild.bot_is_member:
                    return _json(MISSING_ACCESS, 403)
                return _json(guild.payload(int(self.owner["id"])))
            case "GET", ["guilds", guild_id, "members", user_id]:
                guild = self._find_guild(guild_id)
                if guild is None or not guild.bot_is_member:
                    return _json(MISSING_ACCESS, 403)
                if user_id == self.user["id"]:
                    return _json(guild.member(self.user))
                known = self._known_user(user_id)
                if known is None:
                    return _json({"message": "Unknown Member", "code": 10007}, 404)
                return _json(self._member_payload(guild, known))
            case "GET", ["users", user_id]:
                known = self._known_user(user_id)
                return _json(known) if known else _json({"message": "Unknown User", "code": 10013}, 404)
            case "GET", ["channels", channel_id]:
                found = self._find_channel(channel_id)
                if found is None:
                    return _json(UNKNOWN_CHANNEL, 404)
                guild, channel = found
                if not guild.bot_is_member or not self._can_view(guild, channel):
                    return _json(MISSING_ACCESS, 403)
                return _json(channel.payload(guild.id, guild.channels.index(channel)))
            case "POST", ["channels", channel_id, "messages"]:
                return await self._post_message(channel_id, body or {})
            case "GET", ["channels", channel_id, "messages"]:
                return self._history(channel_id, request.query)
            case "GET", ["channels", channel_id, "messages", message_id]:
                found_message = self._find_message(channel_id, message_id)
                return _json(self._with_reactions(found_message)) if found_message else _unknown_message()
            case "PATCH", ["channels", channel_id, "messages", message_id]:
                return await self._edit_message(channel_id, message_id, body or {})
            case "DELETE", ["channels", channel_id, "messages", message_id]:
                return await self._delete_message(channel_id, message_id)
            case "PUT", ["channels", channel_id, "messages", message_id, "reactions", emoji, "@me"]:
                return await self._react(channel_id, message_id, emoji, int(self.user["id"]), add=True)
            case "DELETE", ["channels", channel_id, "messages", message_id, "reactions", emoji, who]:
                reactor = int(self.user["id"]) if who == "@me" else int(who)
                return await self._react(channel_id, message_id, emoji, reactor, add=False)
            case "POST", ["channels", channel_id, "typing"]:
                return web.Response(status=204)
        self.unknown_routes.append(f"{request.method} {path}")
        return _json({"message": "404: Not Found", "code": 0}, 404)

    def _application(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id),
            "name": "mendbot",
            "description": "",
            "icon": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": self.owner,
            "team": None,
            "verify_key": "0" * 64,
            "flags": self.application_flags,
            "interactions_endpoint_url": None,
            "bot": self.user,
        }

    def _sync(self, scope: str, guild: FakeGuild | None, commands: Any) -> web.Response:
        if self._sync_error is not None:
            status, error = self._sync_error
            return _json(error, status)
        if scope != "global" and (guild is None or not guild.bot_is_member):
            return _json(MISSING_ACCESS, 403)
        echoed = [
            {
                "description": "",  # as Discord answers a context menu, which is sent without one
                **command,
                "id": str(snowflake()),
                "application_id": str(self.application_id),
                "version": str(snowflake()),
                **({"guild_id": scope} if scope != "global" else {}),
            }
            for command in commands or []
        ]
        self.synced[scope] = echoed
        return _json(echoed)

    async def _post_message(self, channel_id: str, body: dict[str, Any]) -> web.Response:
        found = self._find_channel(channel_id)
        if found is None:
            return _json(UNKNOWN_CHANNEL, 404)
        guild, channel = found
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            # Discord returns the message the bot already posted with this nonce (minutes) instead.
            for posted in self.messages:
                if posted["channel_id"] == str(channel.id) and posted.get("nonce") == str(nonce):
                    return _json(posted)
        message = self._message(channel, guild, self.user, body.get("content") or "", body)
        if nonce is not None:
            message["nonce"] = str(nonce)
        self.changed_at[message["id"]] = _ARRIVED.get(time.perf_counter())
        self.messages.append(message)
        self._channel_log.setdefault(channel.id, []).append(message)
        self._posted.set()
        await self._echo(guild, "MESSAGE_CREATE", message)
        await self._notify()
        return _json(message)

    async def _echo(self, guild: FakeGuild, event: str, data: dict[str, Any]) -> None:
        """Dispatch an event about the bot's own doing to the shard owning the guild, if `echo`."""
        if not self.echo:
            return
        with contextlib.suppress(LookupError):  # no session owns the guild (yet): nobody to tell
            await self._dispatch(self.session_of(guild), event, data)

    def _interaction_message(
        self, interaction: dict[str, Any], body: dict[str, Any], *, loading: bool = False
    ) -> dict[str, Any]:
        channel = self._channel_by_id(interaction["channel_id"])
        message = self._message(channel, self._guild_of(channel), self.user, body.get("content") or "", body)
        user = interaction["member"]["user"]
        message.update(
            type=20,  # CHAT_INPUT_COMMAND
            flags=(body.get("flags") or 0) | (128 if loading else 0),  # 64 ephemeral, 128 "thinking…"
            interaction_metadata={
                "id": interaction["id"],
                "type": 2,
                "user": user,
                "authorizing_integration_owners": {"0": interaction["guild_id"]},
            },
        )
        return message

    async def _store_bot_message(self, message: dict[str, Any]) -> None:
        self.changed_at[message["id"]] = _ARRIVED.get(time.perf_counter())
        self.messages.append(message)
        self._channel_log.setdefault(int(message["channel_id"]), []).append(message)
        self._posted.set()
        if not message["flags"] & 64:  # an ephemeral message is not sent to the channel
            await self._echo(
                self._guild_of(self._channel_by_id(message["channel_id"])), "MESSAGE_CREATE", message
            )
        await self._notify()

    async def _interaction_callback(self, token: str, body: dict[str, Any]) -> web.Response:
        interaction = self.interactions.get(token)
        if interaction is None:
            return _json({"message": "Unknown interaction", "code": 10062}, 404)
        if token in self._originals:
            return _json({"message": "Interaction has already been acknowledged.", "code": 40060}, 400)
        kind, data = body.get("type"), body.get("data") or {}
        if kind in (4, 5):  # a message, or "thinking…" (deferred) until the first followup fills it
            message = self._interaction_message(interaction, data, loading=kind == 5)
            self._originals[token] = message
            await self._store_bot_message(message)
            if kind == 4:
                self.answers[token] = message
            resource: dict[str, Any] = {"type": kind, "message": message}
        elif kind in (6, 7) and (shown := self._component_message(interaction)) is not None:
            # An update of the message the component is on: now (7), or by a later edit or followup (6).
            self._originals[token] = shown
            resource = {"type": kind}
            if kind == 7:
                await self._edit_message(shown["channel_id"], shown["id"], data)
                self.answers[token] = shown
            await self._notify()
        else:  # 1 pong; 8 autocomplete choices; 9 a modal
            self._originals[token] = {}
            resource = {"type": kind}
            if kind == 8:
                choices = list(data.get("choices") or [])
                shown_choices = ", ".join(str(choice.get("name")) for choice in choices)
                self.answers[token] = {"id": None, "content": shown_choices, "choices": choices, "flags": 0}
            elif kind == 9:
                self.modals[token] = data
                self.answers[token] = {"id": None, "content": str(data.get("title") or ""), "flags": 0}
            await self._notify()
        original = self._originals[token]
        return _json(
            {
                "interaction": {
                    "id": interaction["id"],
                    "type": interaction["type"],
                    "response_message_id": original.get("id"),
                    "response_message_loading": kind == 5,
                    "response_message_ephemeral": bool(original.get("flags", 0) & 64),
                },
                "resource": resource,
            }
        )

    async def _followup(self, token: str, body: dict[str, Any]) -> web.Response:
        interaction = self.interactions.get(token)
        if interaction is None or token not in self._originals:
            return _json({"message": "Unknown Webhook", "code": 10015}, 404)
        original = self._originals[token]
        if original.get("flags", 0) & 128:  # the first followup after a defer replaces "thinking…"
            return await self._webhook_message(
                "PATCH", token, "@original", {**body, "flags": original["flags"] & ~128}
            )
        message = self._interaction_message(interaction, body)
        await self._store_bot_message(message)
        self.answers.setdefault(token, message)
        return _json(message)

    async def _webhook_message(
        self, method: str, token: str, which: str, body: dict[str, Any]
    ) -> web.Response:
        original = self._originals.get(token) or {}
        message_id = original.get("id") if which == "@original" else which
        message = next((m for m in self.messages if m["id"] == message_id), None)
        if message is None:
            return _unknown_message()
        if method == "GET":
            return _json(message)
        if method == "DELETE":
            return await self._delete_message(message["channel_id"], message["id"])
        edited = await self._edit_message(message["channel_id"], message["id"], body)
        if which == "@original":
            self.answers.setdefault(token, message)
        return edited

    def _component_message(self, interaction: dict[str, Any]) -> dict[str, Any] | None:
        """The stored message a component interaction came from (what an update changes)."""
        shown = interaction.get("message")
        if not isinstance(shown, dict):
            return None
        return self._find_message(str(shown["channel_id"]), str(shown["id"]))

    def _find_message(self, channel_id: str, message_id: str) -> dict[str, Any] | None:
        for message in self._channel_log.get(int(channel_id), []):
            if message["id"] == message_id:
                return message
        return None

    def _with_reactions(self, message: dict[str, Any]) -> dict[str, Any]:
        """The message as the REST API shows it: its reactions counted, `me` for the bot's own."""
        me = int(self.user["id"])
        reactions = [
            {
                "emoji": _emoji_payload(emoji),
                "count": len(users),
                "count_details": {"normal": len(users), "burst": 0},
                "me": me in users,
                "me_burst": False,
                "burst_colors": [],
            }
            for emoji, users in self._reactions.get(int(message["id"]), {}).items()
            if users
        ]
        return {**message, "reactions": reactions}

    def _history(self, channel_id: str, query: Any) -> web.Response:
        if self._find_channel(channel_id) is None:
            return _json(UNKNOWN_CHANNEL, 404)
        log = self._channel_log.get(int(channel_id), [])
        before, after = query.get("before"), query.get("after")
        chosen = [
            m
            for m in log
            if (before is None or int(m["id"]) < int(before)) and (after is None or int(m["id"]) > int(after))
        ]
        limit = int(query.get("limit", 50))
        # Newest first, as Discord answers (with `after` alone Discord also answers newest first).
        picked = chosen[:limit] if after is not None and before is None else chosen[-limit:]
        return _json([self._with_reactions(m) for m in reversed(picked)])

    async def _edit_message(self, channel_id: str, message_id: str, body: dict[str, Any]) -> web.Response:
        message = self._find_message(channel_id, message_id)
        if message is None:
            return _unknown_message()
        if message["author"]["id"] != self.user["id"]:
            return _json({"message": "Cannot edit a message authored by another user", "code": 50005}, 403)
        for key in ("content", "embeds", "components", "flags"):
            if key in body:
                message[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        message["edited_timestamp"] = datetime.datetime.now(datetime.UTC).isoformat()
        self._edits[int(message_id)] = self._edits.get(int(message_id), 0) + 1
        self.changed_at[message["id"]] = _ARRIVED.get(time.perf_counter())
        await self._echo(self._guild_of(self._channel_by_id(channel_id)), "MESSAGE_UPDATE", message)
        await self._notify()
        return _json(self._with_reactions(message))

    async def _delete_message(self, channel_id: str, message_id: str) -> web.Response:
        message = self._find_message(channel_id, message_id)
        if message is None:
            return _unknown_message()
        self._channel_log[int(channel_id)].remove(message)
        if message in self.messages:
            self.messages.remove(message)
        self._reactions.pop(int(message_id), None)
        await self._echo(
            self._guild_of(self._channel_by_id(channel_id)),
            "MESSAGE_DELETE",
            {"id": message_id, "channel_id": channel_id, "guild_id": message["guild_id"]},
        )
        await self._notify()
        return web.Response(status=204)

    async def _react(
        self, channel_id: str, message_id: str, emoji: str, user_id: int, *, add: bool
    ) -> web.Response:
        message = self._find_message(channel_id, message_id)
        if message is None:
            return _unknown_message()
        users = self._reactions.setdefault(int(message_id), {}).setdefault(emoji, [])
        changed = (user_id not in users) if add else (user_id in users)
        if add and changed:
            users.append(user_id)
        elif changed:
            users.remove(user_id)
        if changed:
            guild = self._guild_of(self._channel_by_id(channel_id))
            user = self.user if user_id == int(self.user["id"]) else self._user(user_id, "someone", bot=False)
            await self._echo(guild, *self._reaction_event(message, emoji, guild, user, add=add))
        await self._notify()
        return web.Response(status=204)

    def _reaction_event(
        self, message: dict[str, Any], emoji: str, guild: FakeGuild, user: dict[str, Any], *, add: bool
    ) -> tuple[str, dict[str, Any]]:
        """MESSAGE_REACTION_ADD/REMOVE as Discord sends it (`type` and `burst_colors` are required)."""
        event: dict[str, Any] = {
            "user_id": user["id"],
            "channel_id": message["channel_id"],
            "message_id": message["id"],
            "guild_id": str(guild.id),
            "emoji": _emoji_payload(emoji),
            "burst": False,
            "type": 0,  # normal, not a super reaction
        }
        if add:
            member = (
                guild.member(user) if user["id"] == self.user["id"] else self._member_payload(guild, user)
            )
            event.update(member=member, message_author_id=message["author"]["id"], burst_colors=[])
        return ("MESSAGE_REACTION_ADD" if add else "MESSAGE_REACTION_REMOVE"), event

    async def _notify(self) -> None:
        self.changes += 1
        async with self._changed:
            self._changed.notify_all()

    @staticmethod
    def _message(
        channel: FakeChannel, guild: FakeGuild, author: dict[str, Any], content: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        reference = body.get("message_reference")
        if reference:  # ids as Discord answers them: strings (discord.py sends some as numbers)
            reference = {
                k: str(v) if k.endswith("_id") and v is not None else v for k, v in reference.items()
            }
        return {
            "id": str(snowflake()),
            "channel_id": str(channel.id),
            "guild_id": str(guild.id),
            "author": author,
            "content": content,
            "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [
                {
                    "id": str(snowflake()),
                    "filename": attachment.get("filename") or "file",
                    "size": 0,
                    "url": f"https://cdn.invalid/{attachment.get('filename') or 'file'}",
                    "proxy_url": f"https://cdn.invalid/{attachment.get('filename') or 'file'}",
                }
                for attachment in body.get("attachments") or []
            ],
            "embeds": body.get("embeds") or [],
            "pinned": False,
            "type": 19 if reference else 0,
            "flags": 0,
            "components": body.get("components") or [],
            **({"message_reference": reference} if reference else {}),
        }
