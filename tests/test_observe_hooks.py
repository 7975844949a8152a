"""Failures in the hooks discord.py runs around handlers — a view's `interaction_check` and error
handlers, a modal's error handler, a dynamic item's `from_custom_id`, checks, converters, a task's
`before_loop` — are recorded with their traceback under the name their developer would use, and the
view's own error handler still answers. The real bot on the virtual Discord."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_settings, reply_text, running_world
from tests.harness.sql import stored

BUG_REPLY = "Something went wrong on my side"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[VirtualWorld]:
    settings = make_settings(tmp_path / "data")
    async with running_world(settings, extra_extensions=["tests.fixtures.hooks_cog"]) as world:
        yield world


async def _records(world: VirtualWorld, kind: str) -> list[dict[str, Any]]:
    await world.quiesce()
    await world.bot.services.recorder.flush()
    rows = stored(
        world.bot.services.settings,
        "SELECT kind, source, ok, error_type, fingerprint, frames, extra, invocation FROM actions"
        " WHERE kind = ? ORDER BY id",
        kind,
    )
    return [dict(row) for row in rows]


def _innermost(record: dict[str, Any]) -> str:
    return str(json.loads(str(record["frames"]))[-1])


async def _shown(world: VirtualWorld, command: str) -> Any:
    result = await world.users["alice"].slash(world.general, command)
    assert result.response is not None
    return result.response


async def test_a_view_interaction_check_that_raises_is_recorded_under_its_name(world: VirtualWorld) -> None:
    """A click whose view's `interaction_check` raises (discord.py sends it to `View.on_error`, the
    callback never runs): a failed `view:Gate.interaction_check` record with the traceback, the user
    answered, an incident once it repeats."""
    gate = await _shown(world, "gate")
    answers = [reply_text(await world.users["alice"].click(gate, label="Enter")) for _ in range(5)]
    records = await _records(world, "view:Gate.interaction_check")
    assert len(records) == 5 and all(r["ok"] == 0 and r["error_type"] == "KeyError" for r in records)
    assert _innermost(records[0]).endswith(":Gate.interaction_check") or _innermost(records[0]).endswith(
        ":interaction_check"
    )
    assert json.loads(str(records[0]["invocation"]))["surface"] == "app:gate"
    assert all(BUG_REPLY in answer for answer in answers)
    assert await _records(world, "view:Gate.enter") == []
    incidents = stored(world.bot.services.settings, "SELECT kind FROM incidents")
    assert ("view:Gate.interaction_check",) in [tuple(row) for row in incidents]


async def test_a_views_own_error_handler_still_answers_and_the_failure_is_recorded(
    world: VirtualWorld,
) -> None:
    """A view with an `on_error` of its own: its callback's failure is recorded, and the answer is the
    view's own, not mendbot's."""
    tally = await _shown(world, "tally")
    answer = reply_text(await world.users["alice"].click(tally, label="Count"))
    [record] = await _records(world, "view:Tally.count")
    assert (record["ok"], record["error_type"]) == (0, "ValueError")
    assert answer == "the tally could not count that"


async def test_a_views_error_handler_that_fails_is_recorded_under_its_name(world: VirtualWorld) -> None:
    """A view's own `on_error` that raises in turn: the callback's failure and the handler's, each under
    its name, and the user answered by the one error path."""
    view = await _shown(world, "broken")
    answer = reply_text(await world.users["alice"].click(view, label="Press"))
    [callback] = await _records(world, "view:Broken.press")
    [handler] = await _records(world, "view:Broken.on_error")
    assert (callback["error_type"], handler["error_type"]) == ("LookupError", "KeyError")
    assert _innermost(handler).endswith(":Broken.on_error") or _innermost(handler).endswith(":on_error")
    assert json.loads(str(handler["extra"]))["error_handler_failed"] is True
    assert BUG_REPLY in answer


async def test_a_modals_error_handler_that_fails_is_recorded(world: VirtualWorld) -> None:
    """A modal whose submit fails and whose own `on_error` fails too: `modal:Survey.on_submit` and
    `modal:Survey.on_error` recorded, the user answered."""
    shown = await world.users["alice"].slash(world.general, "survey")
    assert shown.modal is not None
    submitted = await world.users["alice"].submit_modal(shown, {"survey-answer": "yes"})
    [submit] = await _records(world, "modal:Survey.on_submit")
    [handler] = await _records(world, "modal:Survey.on_error")
    assert (submit["error_type"], handler["error_type"]) == ("ValueError", "AttributeError")
    assert BUG_REPLY in reply_text(submitted)


async def test_a_dynamic_item_whose_from_custom_id_fails_is_recorded_and_answered(
    world: VirtualWorld,
) -> None:
    """A persistent button whose dynamic item cannot be made from its custom id: discord.py only logs
    it and drops the click; mendbot records `view:Seat.from_custom_id` and answers."""
    seats = await _shown(world, "seats")
    clicked = await world.users["alice"].click(seats, custom_id="seat:B")
    [record] = await _records(world, "view:Seat.from_custom_id")
    assert (record["ok"], record["error_type"]) == (0, "ValueError")
    assert _innermost(record).endswith("from_custom_id")
    assert BUG_REPLY in reply_text(clicked)


async def test_a_check_that_raises_is_recorded_as_the_check_not_an_error_handler(world: VirtualWorld) -> None:
    """A prefix command's check that raises instead of refusing: `check:is_staff`, naming the command,
    not "its error handler failed"; an app command's check likewise."""
    await world.users["alice"].send(world.general, "!kick bob")
    [record] = await _records(world, "check:is_staff")
    extra = json.loads(str(record["extra"]))
    assert extra["command"] == "command:kick" and "error_handler_failed" not in extra
    assert _innermost(record).endswith(":is_staff")
    result = await world.users["alice"].slash(world.general, "host")
    [app] = await _records(world, "check:is_host")
    assert (app["error_type"], json.loads(str(app["extra"]))["command"]) == ("KeyError", "app:host")
    assert BUG_REPLY in reply_text(result)
    assert await _records(world, "command:kick") == [] and await _records(world, "app:host") == []


async def test_converters_that_fail_are_recorded_as_converters(world: VirtualWorld) -> None:
    """A prefix converter and an app-command transformer that raise an exception of their own are bugs,
    recorded as `converter:<name>` with their frames — not a user's typing mistake."""
    await world.users["alice"].send(world.general, "!snooze 5min")
    [prefix] = await _records(world, "converter:Minutes")
    assert prefix["error_type"] == "ZeroDivisionError" and _innermost(prefix).endswith(":convert")
    result = await world.users["alice"].slash(world.general, "discount", rate="20%")
    [app] = await _records(world, "converter:Percent")
    assert app["error_type"] == "ZeroDivisionError" and _innermost(app).endswith(":transform")
    assert json.loads(str(app["extra"]))["command"] == "app:discount"
    assert BUG_REPLY in reply_text(result)
    assert any(BUG_REPLY in m.content for m in bot_messages(world, world.general))


async def test_a_task_before_loop_that_fails_is_recorded_and_opens_an_incident(world: VirtualWorld) -> None:
    """A `before_loop` that raises stops its task before the first iteration: recorded as
    `task:warmup.before_loop` with its frame, and the stopped task is an incident at once."""
    [record] = await _records(world, "task:warmup.before_loop")
    assert record["error_type"] == "ConnectionError" and _innermost(record).endswith(":before_warmup")
    incidents = stored(world.bot.services.settings, "SELECT kind, rule FROM incidents")
    assert ("task:warmup.before_loop", "task_stopped") in [tuple(row) for row in incidents]
