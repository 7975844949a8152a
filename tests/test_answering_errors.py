"""A bot's own errors of discord.py's family, raised on purpose for its error handler to answer ("No
statuses to see here"), are answers, not bugs: no failure recorded, no incident, the message said."""

from __future__ import annotations

from pathlib import Path

from tests.harness.discord import bot_messages, make_settings, running_world
from tests.harness.sql import stored


async def test_an_error_a_command_raises_for_its_answer_is_no_bug(tmp_path: Path) -> None:
    """`!shelf` raising the bot's `NothingToShow(commands.CommandError)` and `/statuses` its
    `NoStatuses(app_commands.AppCommandError)`, five times each: each answered with its message, each
    call recorded as answered, and no incident opened."""
    settings = make_settings(tmp_path / "data")
    async with running_world(settings, extra_extensions=["tests.fixtures.answering_errors"]) as world:
        alice = world.users["alice"]
        answers = []
        for _ in range(5):
            await alice.send(world.general, "!shelf")
            result = await alice.slash(world.general, "statuses")
            answers += [r.content for r in [result.response, *result.followups] if r is not None]
        await world.quiesce()
        await world.bot.services.recorder.flush()
        said = [m.content for m in bot_messages(world, world.general)]
        assert said.count("The shelf is empty.") == 5, said
        assert answers == ["No statuses to see here."] * 5, answers
        recorded = stored(
            settings, "SELECT kind, ok FROM actions WHERE kind IN ('command:shelf', 'app:statuses')"
        )
        assert (
            sorted(tuple(row) for row in recorded) == [("app:statuses", 1)] * 5 + [("command:shelf", 1)] * 5
        )
        assert world.bot.services.incidents.active() == []
