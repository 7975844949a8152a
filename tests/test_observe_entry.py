"""Entry points besides commands and listeners — view buttons, modals, dynamic items — are recorded
like commands, their failures fingerprinted, announced and answered; complaints about them are
requests. The real bot on the virtual Discord, with a cog whose bugs are in its UI."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import pytest

from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_settings, reply_text, running_world
from tests.harness.sql import stored

BUG_REPLY = "Something went wrong on my side"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[VirtualWorld]:
    settings = make_settings(tmp_path / "data")
    async with running_world(settings, extra_extensions=["tests.fixtures.ui_cog"]) as world:
        yield world


async def _panel(world: VirtualWorld) -> Any:
    result = await world.users["alice"].slash(world.general, "panel")
    assert result.response is not None
    return result.response


def _actions(world: VirtualWorld, kind_prefix: str) -> list[dict[str, object]]:
    rows = stored(
        world.bot.services.settings,
        "SELECT kind, source, ok, error_type, fingerprint, frames, invocation, duration_ms FROM actions"
        " WHERE kind LIKE ? ORDER BY id",
        f"{kind_prefix}%",
    )
    return [dict(row) for row in rows]


def _incident_announcements(world: VirtualWorld) -> list[discord.Message]:
    return [m for m in bot_messages(world, world.dev) if m.embeds and "Incident" in (m.embeds[0].title or "")]


async def test_failed_button_clicks_are_recorded_fingerprinted_answered_and_announced(
    world: VirtualWorld,
) -> None:
    """Four clicks on a button whose callback raises: four failed `view:` records with one fingerprint
    and the in-repo frame, each click answered with the bug reply, one incident announced."""
    panel = await _panel(world)
    answers = [reply_text(await world.users["alice"].click(panel, label="Split")) for _ in range(4)]
    await world.quiesce()
    await world.bot.services.recorder.flush()
    records = _actions(world, "view:")
    assert [r["kind"] for r in records] == ["view:Panel.split"] * 4
    assert all(r["ok"] == 0 and r["error_type"] == "ZeroDivisionError" for r in records)
    assert len({r["fingerprint"] for r in records}) == 1 and records[0]["fingerprint"]
    frames = json.loads(str(records[0]["frames"]))
    assert frames[-1].startswith("tests/fixtures/ui_cog.py:") and frames[-1].endswith(":share")
    assert records[0]["source"] == "tests.fixtures.ui_cog"
    assert json.loads(str(records[0]["invocation"]))["options"]["custom_id"] == "panel-split"
    assert all(BUG_REPLY in answer and "ZeroDivisionError" in answer for answer in answers)
    announced = _incident_announcements(world)
    assert len(announced) == 1 and "the `Panel.split` button or menu" in (announced[0].embeds[0].title or "")


async def test_a_working_button_is_recorded_with_its_reply(world: VirtualWorld) -> None:
    """A click that works is an ok record with its duration, what was clicked and what it answered."""
    panel = await _panel(world)
    assert reply_text(await world.users["alice"].click(panel, label="Hello")) == "hello there"
    await world.quiesce()
    await world.bot.services.recorder.flush()
    [record] = _actions(world, "view:Panel.hello")
    assert record["ok"] == 1 and float(str(record["duration_ms"])) >= 0
    reply = stored(world.bot.services.settings, "SELECT reply FROM actions WHERE kind = 'view:Panel.hello'")
    assert json.loads(reply[0][0])["text"] == "hello there"


async def test_a_failing_modal_submit_is_recorded_and_answered(world: VirtualWorld) -> None:
    """The modal a button opens, submitted, raises KeyError: a failed `modal:` record, the user answered."""
    panel = await _panel(world)
    shown = await world.users["alice"].click(panel, label="Feedback")
    assert shown.modal is not None
    submitted = await world.users["alice"].submit_modal(shown, {"feedback-text": "it broke"})
    await world.quiesce()
    await world.bot.services.recorder.flush()
    [record] = _actions(world, "modal:")
    assert (record["kind"], record["ok"], record["error_type"]) == ("modal:Feedback.on_submit", 0, "KeyError")
    invocation = json.loads(str(record["invocation"]))
    assert invocation["options"]["fields"] == {"feedback-text": "it broke"}
    # What showed it, call by call (the button, and the command that sent the button's view): a replay
    # sends them again to open the same modal.
    assert invocation["shown_by"]["kind"] == "view:Panel.feedback"
    surface = invocation["shown_by"]["shown_by"]
    assert (surface["kind"], surface["name"], surface["options"]) == ("app:panel", "/panel", {})
    assert surface["caller"]["user"] == invocation["caller"]["user"]
    assert BUG_REPLY in reply_text(submitted)
    [opened] = _actions(world, "view:Panel.feedback")
    assert opened["ok"] == 1


async def test_a_failing_dynamic_item_is_recorded_and_answered(world: VirtualWorld) -> None:
    """A persistent dynamic button (made from its custom id at each click) that raises is recorded too."""
    result = await world.users["alice"].slash(world.general, "ticket")
    assert result.response is not None
    clicked = await world.users["alice"].click(result.response, custom_id="ticket:3")
    await world.quiesce()
    await world.bot.services.recorder.flush()
    [record] = _actions(world, "view:Ticket")
    assert (record["kind"], record["ok"], record["error_type"]) == ("view:Ticket.callback", 0, "IndexError")
    assert BUG_REPLY in reply_text(clicked)


async def test_saying_the_button_failed_is_a_request_not_chat(world: VirtualWorld) -> None:
    """'the button says the interaction failed' said to the bot is taken as a request (here refused
    for a user who is not allow-listed), never answered by the chat cog."""
    me = world.bot.user
    assert me is not None
    await world.users["mallory"].send(world.dev, f"{me.mention} the button says the interaction failed")
    await world.quiesce()
    answers = [m.content for m in bot_messages(world, world.dev)]
    assert len(answers) == 1 and "only allow-listed developers" in answers[0]


async def test_a_failing_autocomplete_is_recorded_and_offers_no_choices(world: VirtualWorld) -> None:
    """Typing into an option whose autocomplete raises: a failed `autocomplete:` record (what was typed
    included) and an empty list of choices, not "loading options failed"."""
    choices = await world.users["alice"].autocomplete(world.general, "paint", "colour", "teal")
    await world.quiesce()
    await world.bot.services.recorder.flush()
    assert choices == []
    [record] = _actions(world, "autocomplete:")
    assert (record["kind"], record["ok"], record["error_type"]) == (
        "autocomplete:paint.colour",
        0,
        "KeyError",
    )
    assert json.loads(str(record["invocation"]))["options"] == {"colour": "teal"}
    assert _actions(world, "app:paint") == []  # the command itself was not run


async def test_a_failing_context_menu_is_recorded_and_answered(world: VirtualWorld) -> None:
    """A message context menu that raises is recorded under its name and answered like a command."""
    said = await world.users["mallory"].send(world.general, "too short")
    result = await world.users["alice"].context_menu(world.general, "Quote", said)
    await world.quiesce()
    await world.bot.services.recorder.flush()
    [record] = _actions(world, "app:Quote")
    assert (record["ok"], record["error_type"]) == (0, "IndexError")
    assert BUG_REPLY in reply_text(result)


async def test_a_failing_error_handler_of_a_prefix_command_is_recorded_and_answered(
    world: VirtualWorld,
) -> None:
    """A command whose own error handler raises: recorded as the command's failure, the handler's
    error and frame in it, and the user answered — not a silent listener error."""
    await world.users["alice"].send(world.general, "!refund 5")
    await world.quiesce()
    await world.bot.services.recorder.flush()
    [record] = _actions(world, "command:refund")
    assert (record["ok"], record["error_type"]) == (0, "AttributeError")
    assert json.loads(str(record["frames"]))[-1].endswith(":refund_failed")
    extra = stored(world.bot.services.settings, "SELECT extra FROM actions WHERE kind = 'command:refund'")
    assert json.loads(extra[0][0])["error_handler_failed"] is True
    assert any(BUG_REPLY in m.content for m in bot_messages(world, world.general))


async def test_a_failing_error_handler_of_an_app_command_is_recorded_and_answered(
    world: VirtualWorld,
) -> None:
    """An app command whose `.error` handler raises: one failed record of the command, answered."""
    result = await world.users["alice"].slash(world.general, "tip", amount=2)
    await world.quiesce()
    await world.bot.services.recorder.flush()
    [record] = _actions(world, "app:tip")
    assert (record["ok"], record["error_type"]) == (0, "KeyError")
    assert json.loads(str(record["frames"]))[-1].endswith(":tip_failed")
    assert BUG_REPLY in reply_text(result)
