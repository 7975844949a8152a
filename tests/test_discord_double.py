"""The loopback Discord's people and channels, seen by a plain discord.py client: what a test says as a
member arrives as Discord would send it, and what the bot does through REST is what the channel shows."""

from __future__ import annotations

import asyncio
import datetime
import io
import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import discord
import pytest

from mendbot.trust.loopback_discord import DiscordDouble
from mendbot.trust.loopback_discord_model import bot_token, message_text, snowflake


@dataclass
class Seen:
    """What the client received over the gateway."""

    messages: list[discord.Message] = field(default_factory=list)
    reactions: list[discord.RawReactionActionEvent] = field(default_factory=list)
    removed: list[discord.RawReactionActionEvent] = field(default_factory=list)
    edits: list[discord.RawMessageUpdateEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait(self, what: str, count: int = 1) -> None:
        while len(getattr(self, what)) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), timeout=10)


@pytest.fixture
async def connected() -> AsyncIterator[tuple[DiscordDouble, discord.Client, Seen]]:
    async with DiscordDouble() as double:
        with double.pointed_at():
            intents = discord.Intents.default()
            intents.message_content = True
            client = discord.Client(intents=intents, guild_ready_timeout=0.05)
            seen = Seen()

            async def on_message(message: discord.Message) -> None:
                seen.messages.append(message)
                seen.changed.set()

            async def on_raw_reaction_add(payload: discord.RawReactionActionEvent) -> None:
                seen.reactions.append(payload)
                seen.changed.set()

            async def on_raw_reaction_remove(payload: discord.RawReactionActionEvent) -> None:
                seen.removed.append(payload)
                seen.changed.set()

            async def on_raw_message_edit(payload: discord.RawMessageUpdateEvent) -> None:
                seen.edits.append(payload)
                seen.changed.set()

            for handler in (on_message, on_raw_reaction_add, on_raw_reaction_remove, on_raw_message_edit):
                client.event(handler)
            tree = discord.app_commands.CommandTree(client)

            @tree.command(name="hello", description="Greets.")
            async def hello(interaction: discord.Interaction, name: str, times: int = 1) -> None:
                await interaction.response.send_message(" ".join([f"hello {name}"] * times))

            @tree.command(name="slow", description="Thinks, then answers.")
            async def slow(interaction: discord.Interaction, secret: bool = False) -> None:
                await interaction.response.defer(thinking=True, ephemeral=secret)
                message = await interaction.followup.send("half done", wait=True)
                await message.edit(content="done")
                await interaction.followup.send("and one more thing")

            shelf = discord.app_commands.Group(name="shelf", description="The shelf.")

            @shelf.command(name="count", description="Counts a kind of book.")
            async def count(interaction: discord.Interaction, kind: str, times: int = 1) -> None:
                await interaction.response.send_message(f"{kind} × {times}")

            tree.add_command(shelf)
            await client.login(double.token)
            task = asyncio.create_task(client.connect(reconnect=False))
            try:
                await asyncio.wait_for(client.wait_until_ready(), timeout=30)
                await tree.sync()
                yield double, client, seen
            finally:
                await client.close()
                await asyncio.wait_for(task, timeout=10)


def _channel(client: discord.Client, double: DiscordDouble, name: str) -> discord.TextChannel:
    channel = client.get_channel(double.guild.channel(name).id)
    assert isinstance(channel, discord.TextChannel)
    return channel


async def test_a_mention_carries_the_bot_and_a_reply_its_resolved_message(
    connected: tuple[DiscordDouble, discord.Client, Seen],
) -> None:
    double, client, seen = connected
    dev = double.guild.channel("dev")
    posted = await _channel(client, double, "dev").send("🔥 Incident #1")
    said = await double.mention(dev, "fix this", author="alice", reply_to=double.bot_messages(dev)[0])
    await seen.wait("messages", 2)  # its own post comes back too, as on Discord
    message = seen.messages[-1]
    assert client.user is not None and client.user.mentioned_in(message)
    assert message.content == f"<@{client.user.id}> fix this" and message.author.name == "alice"
    assert message.author.id == int(double.member("alice")["id"]) == int(said["author"]["id"])
    assert message.reference is not None and message.reference.message_id == posted.id
    resolved = message.reference.resolved
    assert isinstance(resolved, discord.Message) and resolved.content == "🔥 Incident #1"
    assert resolved.author.id == client.user.id


async def test_the_bots_edits_and_reactions_are_what_the_channel_shows(
    connected: tuple[DiscordDouble, discord.Client, Seen],
) -> None:
    double, client, seen = connected
    dev = double.guild.channel("dev")
    message = await _channel(client, double, "dev").send("🤖 Run #1 · queued")
    await message.add_reaction("🔍")
    await message.add_reaction("🛠")
    await message.remove_reaction("🔍", discord.Object(client.user.id))  # type: ignore[union-attr]
    waiter = asyncio.create_task(double.wait_for_message(lambda m: "ready" in message_text(m), channel=dev))
    await asyncio.sleep(0)
    assert not waiter.done()
    await message.edit(content="🤖 Run #1 · proposal ready")
    seen_now = await asyncio.wait_for(waiter, 10)
    assert seen_now["content"] == "🤖 Run #1 · proposal ready" and seen_now["edits"] == 1
    assert double.reactions_on(seen_now) == {"🛠": [client.user.id]}  # type: ignore[union-attr]
    (shown,) = double.channel_messages(dev)
    assert shown["content"] == "🤖 Run #1 · proposal ready"
    fetched = await _channel(client, double, "dev").fetch_message(message.id)
    assert fetched.content == "🤖 Run #1 · proposal ready" and [str(r.emoji) for r in fetched.reactions] == [
        "🛠"
    ]
    history = [m.content async for m in _channel(client, double, "dev").history(limit=10)]
    assert history == ["🤖 Run #1 · proposal ready"]
    await seen.wait("edits")  # the edit came back over the gateway too
    await message.delete()
    assert double.channel_messages(dev) == [] and double.unknown_routes == []


async def test_a_members_reaction_reaches_the_owning_shard(
    connected: tuple[DiscordDouble, discord.Client, Seen],
) -> None:
    double, client, seen = connected
    general = double.guild.channel("general")
    message = await _channel(client, double, "general").send("roll?")
    shown = double.bot_messages(general)[0]
    await double.react(shown, "✅", author="alice")
    await seen.wait("reactions", 1)
    alice = int(double.member("alice")["id"])
    payload = next(p for p in seen.reactions if p.user_id == alice)
    assert payload.message_id == message.id and str(payload.emoji) == "✅" and payload.member is not None
    assert double.reactions_on(shown) == {"✅": [alice]}
    await double.unreact(shown, "✅", author="alice")
    await seen.wait("removed", 1)
    assert seen.removed[0].user_id == alice and double.reactions_on(shown) == {}


async def test_a_slash_command_is_answered_in_the_channel(
    connected: tuple[DiscordDouble, discord.Client, Seen],
) -> None:
    double, _, _ = connected
    dev = double.guild.channel("dev")
    interaction = await double.slash(dev, "hello", author="alice", name="Bob", times=2)
    answer = await double.response_to(interaction)
    assert (
        answer["content"] == "hello Bob hello Bob"
        and answer["interaction_metadata"]["user"]["username"] == "alice"
    )
    assert [m["content"] for m in double.channel_messages(dev)] == ["hello Bob hello Bob"]
    assert double.unknown_routes == []


async def test_a_subcommand_of_a_group_is_answered(
    connected: tuple[DiscordDouble, discord.Client, Seen],
) -> None:
    """`/shelf count kind:… times:…` reaches the group's subcommand with its options, as Discord nests
    them; a subcommand the group does not have is a LookupError the test sees."""
    double, _, _ = connected
    dev = double.guild.channel("dev")
    interaction = await double.slash(dev, "shelf count", author="alice", kind="atlas", times=3)
    assert (await double.response_to(interaction))["content"] == "atlas × 3"
    with pytest.raises(LookupError, match="has no subcommand lend"):
        await double.slash(dev, "shelf lend", author="alice")


def test_its_ids_only_grow_and_say_when_they_were_made() -> None:
    """Thousands of ids in a few milliseconds (more than 4096 in one, the increment's room): each above
    the last, the current time in each, and a shard's ids that shard's."""
    before = discord.utils.utcnow()
    made = [snowflake() for _ in range(20_000)]
    sharded = [snowflake(shard=1, shard_count=3) for _ in range(5_000)]
    after = discord.utils.utcnow()
    made += sharded
    assert all(later > earlier for earlier, later in itertools.pairwise(made))
    assert all((ident >> 22) % 3 == 1 for ident in sharded)
    tolerance = datetime.timedelta(milliseconds=50)  # the timestamp moved on past 4096 ids a millisecond
    for ident in (made[0], made[-1]):
        assert before - tolerance <= discord.utils.snowflake_time(ident) <= after + tolerance


def test_its_token_is_shaped_as_a_bot_token() -> None:
    """Bots that check their token's form before logging in take the double's (and the playground's)."""
    assert re.fullmatch(r"\w+\.\w+\.\S+", DiscordDouble().token)
    assert re.fullmatch(r"[A-Za-z0-9]+\.[A-Za-z0-9]{6}\.[A-Za-z0-9]{38}", bot_token(1234))


async def test_a_deferred_answer_is_filled_by_its_first_followup_then_edited(
    connected: tuple[DiscordDouble, discord.Client, Seen],
) -> None:
    double, _, _ = connected
    dev = double.guild.channel("dev")
    interaction = await double.slash(dev, "slow", secret=True)
    answer = await double.response_to(interaction, lambda m: m["content"] == "done")
    assert answer["flags"] & 64  # ephemeral: only alice sees it
    more = await double.wait_for_message(lambda m: m["content"] == "and one more thing", channel=dev)
    assert [m["content"] for m in double.channel_messages(dev)] == ["done", "and one more thing"]
    assert int(more["id"]) > int(answer["id"]) and double.unknown_routes == []


async def test_members_roles_users_and_uploads_are_answered(
    connected: tuple[DiscordDouble, discord.Client, Seen],
) -> None:
    """`fetch_member` (approvers' roles), `fetch_user`, and a message with a file (multipart)."""
    double, client, _ = connected
    guild = client.get_guild(double.guild.id)
    assert guild is not None
    reviewers = await double.create_role(double.guild, "reviewers")
    alice = int(double.member("alice", roles=[reviewers])["id"])
    await double.send_message(double.guild.channel("general"), "hi")  # alice is seen: her member payload
    member = await guild.fetch_member(alice)
    assert member.name == "alice" and [role.id for role in member.roles if not role.is_default()] == [
        reviewers
    ]
    assert (await client.fetch_user(alice)).name == "alice"
    with pytest.raises(discord.NotFound):
        await guild.fetch_member(12345)
    sent = await _channel(client, double, "dev").send(
        "chart", file=discord.File(io.BytesIO(b"png"), "chart.png")
    )
    assert [a.filename for a in sent.attachments] == ["chart.png"]
    assert double.bot_messages(double.guild.channel("dev"))[0]["content"] == "chart"
    assert double.unknown_routes == []
