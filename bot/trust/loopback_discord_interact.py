"""The loopback Discord's members and what they do in an interaction: the replay's half of the double.

A replay (`mendbot.improve.proof.replay`) sends each recorded call as the member who made it, where it was
made: `member_as(user_id, roles)` is a member with exactly that id and those roles, `channel_as(id)` the
guild's channel with exactly that id. What a member does in an interaction is dispatched as Discord does
(INTERACTION_CREATE to the owning shard): a button pressed or a select menu used on a message as it is now
(`use`: a component the message does not carry, or carries disabled, cannot be used — LookupError, as a
member could not), a modal the bot opened filled in and submitted (`submit_modal`), an option typed into
(`autocomplete`), a message's context menu (`context_menu`); `answer_of(interaction)` is what the member
then sees as the bot's answer — the message posted or updated, the modal opened, the choices offered — as
the REST half records it (`RestDouble.answers`). `bot_message` is a message of the bot's carrying
components, for a persistent view no recorded call showed.

`DiscordDouble` (`mendbot.trust.loopback_discord`) adds the server's lifecycle and the rest of what people
do (messages, reactions, slash commands) on top.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import discord

from mendbot.kernel.waits import wait_for
from mendbot.trust.loopback_discord_model import FakeChannel, snowflake
from mendbot.trust.loopback_discord_rest import RestDouble

__all__ = ["InteractionDouble"]


class InteractionDouble(RestDouble):
    """The double's members, and what they do in interactions."""

    def member(self, name: str, *, roles: list[int] | None = None) -> dict[str, Any]:
        """The user payload of the member called `name`: the same id every time it is asked for (an
        allow-list names it by `int(double.member("alice")["id"])`); `roles` (ids from
        `FakeGuild.add_role`) are what its member payloads and `GET /guilds/{g}/members/{id}` carry."""
        if name not in self.members:
            self.members[name] = self._user(snowflake(), name, bot=False)
        if roles is not None:
            self.member_roles[int(self.members[name]["id"])] = [str(role) for role in roles]
        return self.members[name]

    async def _interact(
        self, channel: FakeChannel, author: str, kind: int, data: dict[str, Any], **more: Any
    ) -> dict[str, Any]:
        guild = self._guild_of(channel)
        user = self.member(author)
        member = {**self._member_payload(guild, user), "permissions": str(discord.Permissions.all().value)}
        interaction: dict[str, Any] = {
            "id": str(snowflake()),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "guild_id": str(guild.id),
            "channel_id": str(channel.id),
            "channel": {**channel.payload(guild.id, guild.channels.index(channel))},
            "member": member,
            "token": secrets.token_urlsafe(32),
            "version": 1,
            "app_permissions": str(guild.bot_role_permissions),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": 8 * 1024 * 1024,
            **more,
        }
        self.interactions[interaction["token"]] = interaction
        await self._dispatch(self.session_of(guild), "INTERACTION_CREATE", interaction)
        return interaction

    # -- what a replay sends: a recorded member, in a recorded place, doing what was recorded --------

    def member_as(self, user_id: int, roles: Sequence[int] = ()) -> str:
        """The name of a member with exactly this id (a recorded caller), holding these roles — each made
        in the guild if it has no such role yet (before the bot connects, as the guild's roles reach it
        then)."""
        name = f"member-{user_id}"
        if name not in self.members:
            self.members[name] = self._user(user_id, name, bot=False)
        for role in roles:
            if role not in (self.guild.id, self.guild.bot_role_id):
                self.guild.extra_roles.setdefault(role, f"role-{len(self.guild.extra_roles) + 1}")
        self.member_roles[user_id] = [str(role) for role in roles]
        return name

    def channel_as(self, channel_id: int) -> FakeChannel:
        """The guild's text channel with exactly this id (a recorded place), made if it has none."""
        for channel in self.guild.channels:
            if channel.id == channel_id:
                return channel
        channel = FakeChannel(f"channel-{len(self.guild.channels) + 1}", id=channel_id)
        self.guild.channels.append(channel)
        return channel

    async def bot_message(self, channel: FakeChannel, content: str, components: list[Any]) -> dict[str, Any]:
        """A message of the bot's carrying `components` (what a persistent view's buttons are pressed on,
        when no recorded call showed them)."""
        message = self._message(channel, self.guild, self.user, content, {"components": components})
        await self._store_bot_message(message)
        return message

    async def use(
        self,
        message: dict[str, Any],
        custom_id: str,
        /,
        *,
        author: str = "alice",
        values: list[str] | None = None,
    ) -> dict[str, Any]:
        """A member presses the button (or picks `values` in the select menu) `custom_id` on `message`, as
        it is now: LookupError when the message has no such component, or it is disabled — a member
        cannot use it then either."""
        current = self._find_message(message["channel_id"], message["id"]) or message
        component = _component(current.get("components") or [], custom_id)
        if component is None:
            raise LookupError(f"the message has no component `{custom_id}`")
        if component.get("disabled"):
            raise LookupError(f"the component `{custom_id}` is disabled")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component.get("type", 2)}
        if component.get("type", 2) != 2:
            data["values"] = list(values or [])
        channel = self._channel_by_id(message["channel_id"])
        return await self._interact(channel, author, 3, data, message=self._with_reactions(current))

    async def submit_modal(
        self, opened: dict[str, Any], fields: dict[str, str], *, author: str = "alice"
    ) -> dict[str, Any]:
        """A member fills in and submits the modal the bot opened in answer to `opened` (an interaction):
        each text input gets its value from `fields` by custom id ("" for one not given). LookupError when
        the bot opened no modal there."""
        modal = self.modals.get(opened["token"])
        if modal is None:
            raise LookupError("the bot opened no modal in answer")
        rows: list[dict[str, Any]] = []
        for top in modal.get("components") or []:
            if "component" in top:  # a label wrapping its input
                inner = top["component"]
                value = fields.get(str(inner.get("custom_id")), "")
                rows.append({"type": top.get("type", 18), "component": {**_input(inner), "value": value}})
                continue
            inputs = [
                {**_input(inner), "value": fields.get(str(inner.get("custom_id")), "")}
                for inner in top.get("components") or []
            ]
            rows.append({"type": 1, "components": inputs})
        data = {"custom_id": modal.get("custom_id"), "components": rows}
        channel = self._channel_by_id(opened["channel_id"])
        more = {"message": opened["message"]} if "message" in opened else {}
        return await self._interact(channel, author, 5, data, **more)

    async def autocomplete(
        self,
        channel: FakeChannel,
        command_name: str,
        focused: str,
        /,
        *,
        author: str = "alice",
        **options: Any,
    ) -> dict[str, Any]:
        """A member typing into option `focused` of `/command_name` (the other options as given): an
        autocomplete interaction; `await answer_of(it)` is the choices offered."""
        command = self._synced_command(channel, command_name, 1)
        types = {option["name"]: option["type"] for option in command.get("options") or []}
        data = {
            "id": command["id"],
            "name": command_name,
            "type": 1,
            "guild_id": str(self.guild.id),
            "options": [
                {
                    "name": k,
                    "type": types.get(k, 3),
                    "value": v,
                    **({"focused": True} if k == focused else {}),
                }
                for k, v in options.items()
            ],
        }
        return await self._interact(channel, author, 4, data)

    async def context_menu(
        self, channel: FakeChannel, command_name: str, target: dict[str, Any], /, *, author: str = "alice"
    ) -> dict[str, Any]:
        """A member's message context menu `command_name` on the message `target`."""
        command = self._synced_command(channel, command_name, 3)
        data = {
            "id": command["id"],
            "name": command_name,
            "type": 3,
            "guild_id": str(self.guild.id),
            "target_id": target["id"],
            "resolved": {"messages": {target["id"]: target}},
        }
        return await self._interact(channel, author, 2, data)

    def _synced_command(self, channel: FakeChannel, name: str, kind: int) -> dict[str, Any]:
        guild = self._guild_of(channel)
        synced = [*self.synced.get(str(guild.id), []), *self.synced.get("global", [])]
        found = next((c for c in synced if c["name"] == name and c.get("type", 1) == kind), None)
        if found is None:
            raise LookupError(f"{name} was not synced to the guild or globally")
        return found

    async def answer_of(self, interaction: dict[str, Any], timeout: float) -> dict[str, Any]:
        """What the member sees as the bot's answer to `interaction`, as it is now: the message posted or
        updated (an update's, once made), the modal opened, the choices offered. AssertionError if none
        came within `timeout`."""
        token = interaction["token"]

        async def wait() -> dict[str, Any]:
            async with self._changed:
                while token not in self.answers or self.answers[token].get("flags", 0) & 128:
                    await self._changed.wait()
                return self.answers[token]

        try:
            answer = await wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"interaction not answered within {timeout}s") from None
        if answer.get("id") is None:
            return answer
        return self._find_message(answer["channel_id"], answer["id"]) or answer


def _component(rows: list[Any], custom_id: str) -> dict[str, Any] | None:
    """The component `custom_id` among a message's (rows, and what containers hold), if any."""
    for component in rows:
        if not isinstance(component, dict):
            continue
        if component.get("custom_id") == custom_id:
            return component
        for key in ("components", "accessory"):
            inner = component.get(key)
            found = _component(inner if isinstance(inner, list) else [inner], custom_id)
            if found is not None:
                return found
    return None


def _input(component: dict[str, Any]) -> dict[str, Any]:
    """A modal's text input as a submission carries it (its type and custom id)."""
    return {"type": component.get("type", 4), "custom_id": component.get("custom_id")}
