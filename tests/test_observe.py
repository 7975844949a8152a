"""Observation end to end: recording through the virtual Discord, incidents, announcements."""

from __future__ import annotations

import asyncio
import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import discord
import structlog

from mendbot.kernel.settings import Settings
from mendbot.runtime.app import discover_extensions
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_bot, make_settings, reply_text, running_world
from tests.harness.model_double import ModelDouble, text
from tests.harness.sql import Row, stored, stored_bytes

DISCORD_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"


def _buggy_world(settings: Settings) -> AbstractAsyncContextManager[VirtualWorld]:
    """The bot with tests.fixtures.buggy_dice's /roll (fails for six-sided dice) instead of cogs.dice."""
    return running_world(settings, extra_extensions=["tests.fixtures.buggy_dice"], without=["cogs.dice"])


def _sinks(settings: Settings) -> tuple[bytes, str]:
    """Everything the database files and the NDJSON file hold."""
    return stored_bytes(settings), (settings.log_dir / "actions.ndjson").read_text()


def _rows(settings: Settings, sql: str, *args: Any) -> list[Row]:
    return stored(settings, sql, *args)


def _announcements(world: VirtualWorld) -> list[discord.Message]:
    return [m for m in bot_messages(world, world.dev) if m.embeds and "Incident" in (m.embeds[0].title or "")]


def _field(message: discord.Message, name: str) -> str:
    return next(f.value or "" for f in message.embeds[0].fields if f.name == name)


async def test_failing_roll_records_error_with_the_in_repo_frame(settings: Settings) -> None:
    """A /roll that raises is recorded as a failed action whose innermost frame is the bug's line."""
    async with _buggy_world(settings) as world:
        alice = world.users["alice"]
        result = await alice.slash(world.general, "roll", notation="2d6")
        assert "Something went wrong on my side (ZeroDivisionError)" in reply_text(result)
        ok = await alice.slash(world.general, "roll", notation="1d20")
        assert "🎲" in reply_text(ok)
        await world.quiesce()
        rows = _rows(settings, "SELECT * FROM actions WHERE kind = 'command:roll' ORDER BY id")
    # Which is written first is the recorder's business (a failure's error path can outlast the next call).
    failed, succeeded = sorted(rows, key=lambda row: row["ok"])
    assert failed["ok"] == 0 and succeeded["ok"] == 1
    assert failed["error_type"] == "ZeroDivisionError"
    assert failed["user_id"] == alice.id
    frames = json.loads(failed["frames"])
    assert frames[-1].startswith("tests/fixtures/buggy_dice.py:")
    assert frames[-1].endswith(":scale_for")
    assert frames[-2].endswith(":roll")
    assert failed["fingerprint"]
    assert json.loads(succeeded["extra"]) == {"via": "slash"}


async def test_bad_input_is_not_recorded_as_a_failure(world: VirtualWorld) -> None:
    """A user's typo is an ok action with the explanation, so typos never raise the error rate."""
    await world.users["alice"].slash(world.general, "roll", notation="2x")
    await world.quiesce()
    settings = world.bot.services.settings
    (row,) = _rows(settings, "SELECT ok, fingerprint, extra FROM actions WHERE kind = 'command:roll'")
    assert row["ok"] == 1 and row["fingerprint"] is None
    assert "isn't dice notation" in json.loads(row["extra"])["user_error"]


async def test_storm_of_500_errors_is_one_announcement_updated_in_place(tmp_path: Path) -> None:
    """500 identical failures open one incident and one announcement that says how often and who."""
    # The storm's 3,500 other actions (listeners) are timed by the wall clock: on a machine busy with
    # other work, a few stalls in a row are a real latency incident of their own ("🐢 … on_message"),
    # which is not what this test is about. Latency incidents are tested in test_observe_units.py.
    settings = make_settings(tmp_path / "data", observe={"latency": {"min_ms": 60_000}})
    async with _buggy_world(settings) as world:
        alice, mallory = world.users["alice"], world.users["mallory"]
        for index in range(500):
            user = alice if index % 2 else mallory
            await user.send(world.general, "!roll 2d6")
        await world.quiesce()
        announcements = _announcements(world)
        assert [a.embeds[0].title for a in announcements] == ["🔥 Incident #1: the `roll` command"]
        (announcement,) = announcements
        assert _field(announcement, "Seen") == "500 times, 2 users"
        assert "ZeroDivisionError" in _field(announcement, "Sample error")
        assert "tests/fixtures/buggy_dice.py" in _field(announcement, "Where")
        assert {str(r.emoji) for r in announcement.reactions} == {"🔍", "🛠"}
        labels = [child.label for row in announcement.components for child in row.children]  # type: ignore[union-attr]
        assert labels == ["Investigate", "Fix"]
    (incident,) = _rows(settings, "SELECT * FROM incidents")
    assert incident["count"] == 500
    assert set(json.loads(incident["rules"])) == {"new_fingerprint", "repeat", "error_rate"}


async def test_a_virtual_world_takes_each_record_in_at_the_next_turn(settings: Settings) -> None:
    """A virtual world waits out the bot's every timer after each step: there the recording takes a
    record in at the loop's next turn, with no moment for more (`Recorder.without_windows`), so a
    member's message costs no ~50 ms of real waiting — after a restart too."""
    async with running_world(settings) as world:
        for restarted in (False, True):
            if restarted:
                await world.restart(await make_bot(settings, discover_extensions()))
            recorder = world.bot.services.recorder
            seen: list[Any] = []
            recorder.subscribe(seen.append)
            recorder.record("command:a", "test", ok=True, duration_ms=1)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert [record.kind for record in seen] == ["command:a"], restarted


async def test_a_reopened_incident_counts_the_failures_that_reopened_it(settings: Settings) -> None:
    """Failures after an incident was resolved that reopen it are counted in it: its announcement's
    "Seen", its stored count and its last seen say so (it kept "3 times" and the old last seen while
    /incident listed 5 failures)."""
    async with _buggy_world(settings) as world:
        alice = world.users["alice"]
        for _ in range(3):
            await alice.send(world.general, "!roll 2d6")
        await world.quiesce()
        await alice.slash(world.dev, "incident", incident_id=1, action="resolve")
        await world.env.advance_time(61)
        for _ in range(2):
            await alice.send(world.general, "!roll 2d6")
        await world.quiesce()
        incident = world.bot.services.incidents.get(1)
        (announcement,) = _announcements(world)
        seen = _field(announcement, "Seen")
    failures = _rows(settings, "SELECT ts FROM actions WHERE ok = 0 AND kind = 'command:roll' ORDER BY ts")
    (row,) = _rows(settings, "SELECT state, count, last_seen FROM incidents")
    assert len(failures) == 5 and incident.state == "open"
    assert (incident.count, seen) == (5, "5 times, 1 user")
    assert (row["state"], row["count"]) == ("open", 5)
    assert row["last_seen"] == incident.last_seen == failures[-1]["ts"]


async def test_an_announcement_deleted_on_discord_is_posted_again(settings: Settings) -> None:
    """An incident whose announcement was deleted is announced again when it changes, and the new
    message is stored with it: no "incident bookkeeping failed" traceback in the log, the reply right."""
    async with _buggy_world(settings) as world:
        alice = world.users["alice"]
        await alice.send(world.general, "!roll 2d6")
        await world.quiesce()
        (first,) = _announcements(world)
        await first.delete()
        with structlog.testing.capture_logs() as logs:
            reply = reply_text(await alice.slash(world.dev, "incident", incident_id=1, action="acknowledge"))
            await world.quiesce()
        (again,) = _announcements(world)
        incident = world.bot.services.incidents.get(1)
    assert reply == "Incident #1 is now acknowledged."
    assert again.id != first.id and (again.embeds[0].title or "").endswith("— acknowledged")
    assert incident.message_id == again.id
    assert _rows(settings, "SELECT message_id FROM incidents")[0]["message_id"] == again.id
    assert [log for log in logs if log["log_level"] in ("error", "critical")] == []


async def test_incidents_survive_a_restart_and_buttons_still_work(settings: Settings) -> None:
    """After a restart the incident is still listed, and 🔍 on the old announcement is recorded."""
    async with _buggy_world(settings) as world:
        for _ in range(5):
            await world.users["alice"].send(world.general, "!roll 2d6")
        await world.quiesce()
        (announcement,) = _announcements(world)
        extensions = [n for n in discover_extensions() if n != "cogs.dice"] + ["tests.fixtures.buggy_dice"]
        await world.restart(await make_bot(settings, extensions))
        listed = await world.users["alice"].slash(world.dev, "incidents")
        assert "#1" in reply_text(listed) and "the `roll` command" in reply_text(listed)
        await world.users["alice"].react(announcement, "🔍")
        clicked = await world.users["alice"].click(announcement, custom_id="incident:1:fix")
        # This world has no git checkout to work on: the old message's button and reaction still reach
        # the bot, which explains why it cannot start the run (test_improve_e2e covers the runs).
        assert "is not a git repository" in reply_text(clicked)
        await world.quiesce()
        assert any("is not a git repository" in m.content for m in bot_messages(world, world.dev))
    assert _rows(settings, "SELECT count(*) FROM incident_requests")[0][0] == 0  # withdrawn, can ask again


async def test_a_storm_straddling_a_restart_is_announced_once(tmp_path: Path) -> None:
    """Two failing rolls, a restart (a deploy of bot/ restarts the bot), three more: the five in the
    window are one storm, announced once — the windows go on from the stored actions."""
    settings = make_settings(tmp_path / "data", observe={"announce_new_fingerprints": False})
    # The real clock: the new bot's services are built outside the virtual clock's scope.
    async with running_world(
        settings, extra_extensions=["tests.fixtures.buggy_dice"], without=["cogs.dice"], real_clock=True
    ) as world:
        for _ in range(2):
            await world.users["alice"].send(world.general, "!roll 2d6")
        await world.quiesce()
        assert _announcements(world) == []
        await world.bot.services.recorder.flush()  # what a stopping bot does before it exits
        extensions = [n for n in discover_extensions() if n != "cogs.dice"] + ["tests.fixtures.buggy_dice"]
        await world.restart(await make_bot(settings, extensions))
        for _ in range(3):
            await world.users["alice"].send(world.general, "!roll 2d6")
        await world.quiesce()
        (announcement,) = _announcements(world)
        assert announcement.embeds[0].title == "🔥 Incident #1: the `roll` command"


async def test_only_allow_listed_users_can_request_mute_or_resolve(settings: Settings) -> None:
    """mallory's 🛠 and /incident resolve are refused politely and recorded; alice's work."""
    async with _buggy_world(settings) as world:
        alice, mallory = world.users["alice"], world.users["mallory"]
        for _ in range(5):
            await alice.send(world.general, "!roll 2d6")
        await world.quiesce()
        (announcement,) = _announcements(world)
        refused = await mallory.click(announcement, custom_id="incident:1:fix")
        assert "only allow-listed developers" in reply_text(refused)
        denied = await mallory.slash(world.dev, "incident", incident_id=1, action="resolve")
        assert "only allow-listed developers" in reply_text(denied)
        muted = await alice.slash(world.dev, "incident", incident_id=1, action="mute")
        assert "now muted" in reply_text(muted)
        resolved = await alice.slash(world.dev, "incident", incident_id=1, action="resolve")
        assert "now resolved" in reply_text(resolved)
        shown = await mallory.slash(world.dev, "incident", incident_id=1)
        assert shown.response is not None and "resolved" in (shown.response.embeds[0].title or "")
        await world.quiesce()
    refusals = _rows(settings, "SELECT user_id, extra FROM actions WHERE kind = 'access:refused'")
    assert [(r["user_id"], json.loads(r["extra"])["action"]) for r in refusals] == [
        (mallory.id, "fix"),
        (mallory.id, "resolve"),
    ]
    assert _rows(settings, "SELECT state, closed_by FROM incidents")[0][:] == ("resolved", alice.id)
    assert _rows(settings, "SELECT count(*) FROM incident_requests")[0][0] == 0


async def test_token_in_an_error_never_reaches_sqlite_or_ndjson(settings: Settings) -> None:
    """A Discord token inside an exception message is redacted before any sink."""
    async with running_world(settings) as world:
        recorder = world.bot.services.recorder
        with_token = RuntimeError(f"login failed with token {DISCORD_TOKEN}")
        recorder.record(
            "task:sync",
            "test",
            ok=False,
            duration_ms=1,
            error=with_token,
            extra={"headers": {"Authorization": f"Bot {DISCORD_TOKEN}"}, "note": DISCORD_TOKEN},
        )
        await world.quiesce()
    database, ndjson = _sinks(settings)
    assert DISCORD_TOKEN.encode() not in database
    assert DISCORD_TOKEN not in ndjson
    assert "[redacted]" in ndjson
    (row,) = _rows(settings, "SELECT error_message FROM actions WHERE kind = 'task:sync'")
    assert row[0] == "login failed with [redacted]"


async def test_records_the_journal_cannot_take_are_shed_by_kind_and_failures_kept(tmp_path: Path) -> None:
    """Past five times `queue_size` records waiting for a journal that has not failed (here: recorded in
    a loop that never lets it run), recording returns at once and sheds successes, counted by kind;
    failures have a reserve of their own and all reach the database. /incidents and /health say what
    was shed."""
    settings = make_settings(tmp_path / "data", observe={"queue_size": 10})
    async with running_world(settings) as world:
        services = world.bot.services
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(1000):  # no await between records: the journal's turn never comes
            services.recorder.record("task:spam", "test", ok=True, duration_ms=0)
        for n in range(5):
            services.recorder.record("task:broken", "test", ok=False, duration_ms=0, error=KeyError(n))
        assert loop.time() - started < 5
        assert services.recorder.shed == {"task:spam": 950} and services.recorder.shed_failures == 0
        assert services.health()["actions_shed"] == 950
        listed = reply_text(await world.users["alice"].slash(world.dev, "incidents"))
        assert "950 action record(s) were shed" in listed and "`task:spam` 950" in listed
        await world.quiesce()
        stored: dict[str, int] = dict(_rows(settings, "SELECT kind, count(*) FROM actions GROUP BY kind"))
        assert (stored["task:spam"], stored["task:broken"]) == (50, 5)


async def test_listener_errors_and_chat_replies_are_recorded(tmp_path: Path) -> None:
    """A failing listener is a failed action; a chat reply records its tokens and cost."""
    async with ModelDouble() as model:
        model.script(text("hello!", input_tokens=1000, output_tokens=100))
        settings = make_settings(tmp_path / "data", anthropic_api_key="k", anthropic_base_url=model.base_url)
        async with running_world(settings, extra_extensions=["tests.fixtures.broken_listener"]) as world:
            me = world.bot.user
            assert me is not None
            await world.users["alice"].send(world.general, f"{me.mention} hi")
            await world.quiesce()
            alice_id = world.users["alice"].id
    (chat,) = _rows(settings, "SELECT * FROM actions WHERE kind = 'chat:reply'")
    assert chat["ok"] == 1
    assert abs(chat["cost_usd"] - (1000 * 3 + 100 * 15) / 1_000_000) < 1e-9
    assert json.loads(chat["extra"])["output_tokens"] == 100
    failures = _rows(
        settings,
        "SELECT source, error_type, user_id FROM actions WHERE kind = 'listener:on_message' AND ok = 0",
    )
    assert {(r["source"], r["error_type"]) for r in failures} == {("Broken", "LookupError")}
    assert alice_id in {r["user_id"] for r in failures}


async def test_task_loop_iterations_are_recorded(tmp_path: Path) -> None:
    """Each tasks.loop iteration is an action; a failing one records its error."""
    settings = make_settings(tmp_path / "data")
    async with running_world(settings, extra_extensions=["tests.fixtures.ticking_cog"]) as world:
        await world.env.advance_time(35)
        await world.quiesce()
    rows = _rows(settings, "SELECT ok, error_type FROM actions WHERE kind = 'task:tick' ORDER BY id")
    assert [(r["ok"], r["error_type"]) for r in rows][:3] == [(1, None), (1, None), (0, "ValueError")]
