"""Every mistake is a reply: whatever a handler builds, what reaches Discord fits Discord's limits, and
the text users read is written as it was meant (capitals kept), on the virtual Discord."""

from __future__ import annotations

import discord
import pytest

from mendbot.kernel.discord_limits import CONTENT_LIMIT, clamp_embed
from mendbot.kernel.durations import human_duration, relative
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, reply_text

DIGITS = "9" * 3000


async def test_slash_roll_of_3000_digits_is_answered_in_one_line(world: VirtualWorld) -> None:
    """`/roll <3000 digits>d6` gets one short line saying the limit, with the digits cut — not a 400."""
    result = await world.users["alice"].slash(world.general, "roll", notation=f"{DIGITS}d6")
    answer = reply_text(result)
    assert answer.startswith("I can roll between 1 and 100 dice at once, not 99999999999…")
    assert len(answer) < 200 and "\n" not in answer
    await world.quiesce()
    assert world.bot.services.incidents.active() == []


async def test_prefix_roll_of_huge_numbers_is_answered(world: VirtualWorld) -> None:
    """`!roll` with more digits than Python reads as an integer is still a one-line answer."""
    await world.users["alice"].send(world.general, f"!roll 1d{'7' * 1900}")
    await world.quiesce()
    [answer] = [m.content for m in bot_messages(world, world.general)]
    assert answer.startswith("A die needs between 2 and 1000 sides, not 77777777777…")
    assert world.bot.services.incidents.active() == []


async def test_a_message_over_the_limits_is_cut_at_the_boundary(world: VirtualWorld) -> None:
    """Content of 2500 characters and an embed past every limit arrive cut, whoever sent them."""
    channel = world.bot.get_channel(world.general.id)
    assert isinstance(channel, discord.TextChannel)
    embed = discord.Embed(title="t" * 300, description="d" * 5000)
    for index in range(30):
        embed.add_field(name=f"n{index}" * 100, value="v" * 1500)
    sent = await channel.send("x" * 2500, embed=embed)
    await world.quiesce()
    [message] = [m for m in bot_messages(world, world.general) if m.id == sent.id]
    assert len(message.content) == CONTENT_LIMIT and message.content.endswith("…")
    [shown] = message.embeds
    assert len(shown) <= 6000 and len(shown.title or "") == 256 and len(shown.fields) <= 25
    assert all(len(field.value or "") <= 1024 for field in shown.fields)
    assert len(embed.description or "") == 5000  # the caller's embed is left as it was


def test_an_embed_that_fits_is_sent_as_it_is() -> None:
    """An embed within the limits is not copied or changed."""
    embed = discord.Embed(title="Incident #1", description="roll failed")
    assert clamp_embed(embed) is embed


async def test_a_refused_permission_reply_keeps_its_capital_i(world: VirtualWorld) -> None:
    """When Discord refuses a reply with 403, the answer reads "… I need a permission …", not "i need"."""
    world.env.inject_error(
        "POST", "/channels/*/messages", status=403, code=50013, message="Missing Permissions"
    )
    await world.users["alice"].send(world.general, "!roll 2d6")
    await world.quiesce()
    [answer] = [m.content for m in bot_messages(world, world.general)]
    assert "I need a permission Discord refused in #general" in answer
    assert " i need" not in answer


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0 s"), (42, "42 s"), (60, "1 min"), (303, "5 min 3 s"), (3600, "1 h"), (55996, "15 h 33 min"),
     (93599, "1 d 2 h"), (3599.6, "1 h"), (7170, "2 h")],
)  # fmt: skip
def test_durations_read_as_people_write_them(seconds: float, shown: str) -> None:
    """55996 seconds reads "15 h 33 min": two units at most, a zero second unit left out, rounded to the
    smaller unit (a day and two hours less a second is "1 d 2 h")."""
    assert human_duration(seconds) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "in 0 s"), (42, "in 42 s"), (599, "in 10 min"), (303, "in 5 min"), (93599, "in 1 d 2 h"),
     (-61, "1 min ago"), (-3599.6, "1 h ago")],
)  # fmt: skip
def test_relative_moments_read_as_discord_shows_them(seconds: float, shown: str) -> None:
    """A moment ten minutes away read a second later is "in 10 min": past a minute, no seconds."""
    assert relative(seconds) == shown


async def test_an_answer_to_a_reaction_names_its_person_once(world: VirtualWorld) -> None:
    """🛠 on an announcement is answered in the channel: a refusal that names mallory comes without her
    mention before it ("@mallory Sorry mallory, …" read her name twice); an answer that does not name
    its person (alice's, here "I can't work on my code …") keeps the mention, so it is clear whom it
    answers."""
    world.bot.services.recorder.record(
        "command:flaky", "test", ok=False, duration_ms=1.0, error=RuntimeError("flaky broke")
    )
    await world.quiesce()
    announcement = bot_messages(world, world.dev)[-1]
    await world.users["mallory"].react(announcement, "🛠")
    await world.quiesce()
    assert bot_messages(world, world.dev)[-1].content == (
        "Sorry mallory, only allow-listed developers can ask me to fix."
    )
    alice = world.users["alice"]
    await alice.react(announcement, "🛠")
    await world.quiesce()
    answer = bot_messages(world, world.dev)[-1].content
    assert answer.startswith(f"<@{alice.id}> I can't work on my code") and "alice" not in answer, answer
