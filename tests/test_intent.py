"""Plain words to intents, commands named in text, and what "this" refers to (FTS5 + recency)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from mendbot.db import actions as action_queries
from mendbot.db import incidents as incident_queries
from mendbot.db import search as search_queries
from mendbot.db.connection import open_database
from mendbot.db.records import ActionRecord
from mendbot.improve.evidence.target import resolve_target
from mendbot.improve.intent import Intent, command_names_in, parse_intent, search_words

NOW = 1_800_000_000.0
HOUR = 3600.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fix this", Intent("fix", "fix this")),
        ("can you fix the roll command", Intent("fix", "can you fix the roll command")),
        ("<@123456789> fix it please", Intent("fix", "fix it please")),
        ("investigate that error", Intent("investigate", "investigate that error")),
        ("look into it", Intent("investigate", "look into it")),
        ("look into it and fix it", Intent("fix", "look into it and fix it")),
        (
            "don't fix anything, just look into it",
            Intent("investigate", "don't fix anything, just look into it"),
        ),
        ("the roll command is broken again", Intent("fix", "the roll command is broken again")),
        ("/remind keeps failing", Intent("fix", "/remind keeps failing")),
        ("status", Intent("status", "status")),
        ("what are you doing", Intent("status", "what are you doing")),
        ("status of run 12", Intent("status", "status of run 12", run_id=12)),
        ("stop", Intent("cancel", "stop")),
        ("cancel run 3", Intent("cancel", "cancel run 3", run_id=3)),
        ("pause", Intent("pause", "pause")),
        ("resume", Intent("resume", "resume")),
        ("unpause", Intent("resume", "unpause")),
        ("ship it", Intent("approve", "ship it")),
        ("lgtm, merge", Intent("approve", "lgtm, merge")),
        ("ship it security", Intent("approve", "ship it security", security=True)),
        ("ship #7", Intent("approve", "ship #7", run_id=7)),
        ("fix the security check", Intent("fix", "fix the security check", security=True)),
        ("don't ship", Intent("reject", "don't ship")),
        ("don’t merge it", Intent("reject", "don't merge it")),
        ("reject", Intent("reject", "reject")),
        ("roll back run 4", Intent("rollback", "roll back run 4", run_id=4)),
        ("rollback #4", Intent("rollback", "rollback #4", run_id=4)),
        ("hello", Intent("none", "hello")),
        ("I fixed my bike", Intent("none", "I fixed my bike")),
        ("what a nice roll", Intent("none", "what a nice roll")),
        ("mendbot, status", Intent("status", "status")),
    ],
)
def test_parse_intent(text: str, expected: Intent) -> None:
    """Each phrase maps to its intent, run id and security flag, deterministically."""
    assert parse_intent(text) == expected


def test_hidden_characters_do_not_change_the_intent() -> None:
    """Zero-width characters inside a word are stripped before matching."""
    assert parse_intent("sh\u200bip it").kind == "approve"
    assert parse_intent("hello <!-- ship it -->").kind == "none"


KINDS = {"command:roll", "app:roll", "command:remind", "task:reminders", "app:fix", "listener:on_message"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the roll command is broken again", ["app:roll", "command:roll"]),
        ("/remind fails", ["command:remind"]),
        ("the reminders task and roll", ["task:reminders", "app:roll", "command:roll"]),
        ("fix this", []),
        ("the /fix command crashed", ["app:fix"]),
        ("on_message blew up", ["listener:on_message"]),
        ("a rolling stone", []),
    ],
)
def test_command_names_in(text: str, expected: list[str]) -> None:
    """Commands and kinds named in text; everyday words that are command names need a / or 'command'."""
    assert command_names_in(text, KINDS) == expected


def test_search_words_drop_stop_words_and_request_vocabulary() -> None:
    """Only the words worth searching for remain."""
    assert search_words("can you fix the zero division when rolling dice again?") == [
        "zero",
        "division",
        "rolling",
        "dice",
    ]


# -- resolving the target against a real database ----------------------------------------------------


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_database(tmp_path / "m.db")
    yield connection
    await connection.close()


async def _failure(
    db: aiosqlite.Connection,
    *,
    kind: str,
    error_type: str,
    message: str,
    frames: list[str],
    fingerprint: str,
    last_seen: float,
    incident: bool = True,
    summary: str | None = None,
    state: str = "open",
) -> int | None:
    """Store failing actions (so the fingerprint row exists) and, optionally, their incident."""
    records = [
        ActionRecord(
            ts=last_seen - 60 * n,
            kind=kind,
            source="Test",
            ok=False,
            duration_ms=2.0,
            user_id=100 + n,
            error_type=error_type,
            error_message=message,
            fingerprint=fingerprint,
            frames=frames,
        )
        for n in range(3, -1, -1)
    ]
    await action_queries.insert_many(db, records)
    if not incident:
        return None
    sample = {"kind": kind, "error_type": error_type, "error_message": message, "frames": frames}
    return await incident_queries.insert(
        db,
        {
            "rule": "repeat",
            "rules": ["repeat"],
            "level": "error",
            "kind": kind,
            "fingerprint": fingerprint,
            "state": state,
            "summary": summary or f"the same {error_type} 4 times in 10 min",
            "first_seen": last_seen - 180,
            "last_seen": last_seen,
            "count": 4,
            "user_ids": [100, 101],
            "sample": sample,
            "updated_at": last_seen,
        },
    )


async def _seed(db: aiosqlite.Connection) -> dict[str, int]:
    """Several unrelated incidents; roll's is not the newest."""
    ids = {}
    ids["roll"] = await _failure(
        db,
        kind="command:roll",
        error_type="ZeroDivisionError",
        message="integer division or modulo by zero",
        frames=["cogs/dice.py:14:roll", "bot/features/dice.py:80:roll"],
        fingerprint="fp-roll",
        last_seen=NOW - 2 * HOUR,
    )
    ids["remind"] = await _failure(
        db,
        kind="command:remind",
        error_type="ValueError",
        message="invalid duration '5x'",
        frames=["cogs/remind.py:40:remind", "bot/features/reminders.py:55:parse_duration"],
        fingerprint="fp-remind",
        last_seen=NOW - 10 * 60,
    )
    ids["chat"] = await _failure(
        db,
        kind="chat:reply",
        error_type="TimeoutError",
        message="the model request timed out after 30 s",
        frames=["bot/chat/service.py:120:reply"],
        fingerprint="fp-chat",
        last_seen=NOW - 30 * 60,
    )
    ids["task"] = await _failure(
        db,
        kind="task:reminders",
        error_type="KeyError",
        message="'channel_id'",
        frames=["bot/features/reminders.py:130:due"],
        fingerprint="fp-task",
        last_seen=NOW - 5 * 60,
    )
    ids["incidents"] = await _failure(
        db,
        kind="app:incidents",
        error_type="AttributeError",
        message="'NoneType' object has no attribute 'id'",
        frames=["bot/cogs/incidents.py:60:incidents"],
        fingerprint="fp-app",
        last_seen=NOW - HOUR,
    )
    return {name: incident_id for name, incident_id in ids.items() if incident_id is not None}


async def test_replied_to_incident_wins(db: aiosqlite.Connection) -> None:
    """A reply to an incident's announcement resolves to it, whatever the words say."""
    ids = await _seed(db)
    target = await resolve_target(
        db, "the roll command is broken again", replied_incident_id=ids["chat"], now=NOW
    )
    assert target.incident_ids == [ids["chat"]]
    assert target.via == "reply"
    assert not target.ambiguous


async def test_complaint_naming_a_command_resolves_to_its_incident(db: aiosqlite.Connection) -> None:
    """'the roll command is broken again' picks roll's incident although others are newer."""
    ids = await _seed(db)
    target = await resolve_target(db, "the roll command is broken again", replied_incident_id=None, now=NOW)
    assert target.incident_ids == [ids["roll"]]
    assert (target.via, target.kind, target.fingerprint) == ("named", "command:roll", "fp-roll")


async def test_named_command_without_incident_resolves_to_its_latest_failure(
    db: aiosqlite.Connection,
) -> None:
    """A named command with failures but no incident resolves to its most recent failure."""
    await _seed(db)
    for age, fingerprint in ((3 * HOUR, "fp-ping-old"), (HOUR, "fp-ping-new")):
        await _failure(
            db,
            kind="command:ping",
            error_type="RuntimeError",
            message="no latency yet",
            frames=["cogs/ping.py:9:ping"],
            fingerprint=fingerprint,
            last_seen=NOW - age,
            incident=False,
        )
    target = await resolve_target(db, "/ping fails", replied_incident_id=None, now=NOW)
    assert (target.incident_ids, target.fingerprint, target.kind) == ([], "fp-ping-new", "command:ping")


async def test_free_text_resolves_by_error_words(db: aiosqlite.Connection) -> None:
    """Without a reply or a named command, the words of the error type and message find the incident."""
    ids = await _seed(db)
    target = await resolve_target(db, "zero division when rolling dice", replied_incident_id=None, now=NOW)
    assert target.incident_ids == [ids["roll"]]
    assert target.via == "search" and not target.ambiguous
    target = await resolve_target(
        db, "investigate the invalid duration thing", replied_incident_id=None, now=NOW
    )
    assert target.incident_ids == [ids["remind"]]
    target = await resolve_target(db, "why did the model time out", replied_incident_id=None, now=NOW)
    assert target.incident_ids == [ids["chat"]]


async def test_free_text_can_resolve_to_a_failure_without_incident(db: aiosqlite.Connection) -> None:
    """A distinct failure no incident covers is found by its words, as a fingerprint."""
    await _seed(db)
    await _failure(
        db,
        kind="listener:on_member_join",
        error_type="PermissionError",
        message="Missing Access to the welcome channel",
        frames=["cogs/welcome.py:22:greet"],
        fingerprint="fp-welcome",
        last_seen=NOW - HOUR,
        incident=False,
    )
    target = await resolve_target(db, "welcome message permission", replied_incident_id=None, now=NOW)
    assert (target.incident_ids, target.fingerprint) == ([], "fp-welcome")
    assert target.candidates[0].incident_id is None


async def _two_similar(db: aiosqlite.Connection, ages: tuple[float, float]) -> list[int]:
    """Two incidents with the same error from two call sites, seen `ages` seconds ago."""
    await _seed(db)
    ids = []
    for (line, function), age in zip(((10, "pull"), (20, "push")), ages, strict=True):
        incident_id = await _failure(
            db,
            kind="task:sync",
            error_type="ConnectionResetError",
            message="connection reset by peer",
            frames=[f"bot/sync.py:{line}:{function}"],
            fingerprint=f"fp-sync-{function}",
            last_seen=NOW - age,
        )
        assert incident_id is not None
        ids.append(incident_id)
    return ids


async def test_close_candidates_are_ambiguous_and_listed(db: aiosqlite.Connection) -> None:
    """Two equally good matches seen at about the same time: ambiguous, both listed, none chosen."""
    pull, push = await _two_similar(db, (60, 120))
    target = await resolve_target(db, "connection reset by peer", replied_incident_id=None, now=NOW)
    assert target.ambiguous
    assert target.incident_ids == []
    assert {candidate.incident_id for candidate in target.candidates} == {pull, push}
    question = target.question()
    assert f"#{pull}" in question and f"#{push}" in question


async def test_recency_breaks_ties(db: aiosqlite.Connection) -> None:
    """Of two equally good matches, one seen minutes ago beats one seen three days ago."""
    pull, push = await _two_similar(db, (72 * HOUR, 60))
    target = await resolve_target(db, "connection reset by peer", replied_incident_id=None, now=NOW)
    assert not target.ambiguous
    assert target.incident_ids == [push]
    assert [candidate.incident_id for candidate in target.candidates[:2]] == [push, pull]


async def test_fix_this_without_context(db: aiosqlite.Connection) -> None:
    """'fix this' alone: the one unresolved incident, or a question listing several."""
    only = await _failure(
        db,
        kind="command:roll",
        error_type="ZeroDivisionError",
        message="division by zero",
        frames=["cogs/dice.py:14:roll"],
        fingerprint="fp-roll",
        last_seen=NOW - HOUR,
    )
    target = await resolve_target(db, "fix this", replied_incident_id=None, now=NOW)
    assert (target.incident_ids, target.via) == ([only], "active")
    await _seed(db)
    target = await resolve_target(db, "fix this", replied_incident_id=None, now=NOW)
    assert target.ambiguous and len(target.candidates) > 1


async def test_nothing_matching_gives_an_empty_target(db: aiosqlite.Connection) -> None:
    """Words that match nothing stored resolve to nothing rather than to a guess."""
    await _seed(db)
    target = await resolve_target(db, "the weather plugin is broken", replied_incident_id=None, now=NOW)
    assert (target.incident_ids, target.fingerprint, target.ambiguous) == ([], None, False)


async def test_search_index_follows_incident_updates(db: aiosqlite.Connection) -> None:
    """An incident whose sample changes is found by its new words and no longer by the old ones."""
    ids = await _seed(db)
    await incident_queries.update(
        db,
        ids["incidents"],
        {"sample": {"error_type": "OverflowError", "error_message": "math range error", "frames": []}},
    )
    target = await resolve_target(db, "overflow math range", replied_incident_id=None, now=NOW)
    assert target.incident_ids == [ids["incidents"]]
    old_words = await search_queries.search(db, ["nonetype", "attribute"])
    assert [hit.incident for hit in old_words] == [None]  # only the failure's own entry still says so


async def test_other_words_pick_among_incidents_of_the_named_command(db: aiosqlite.Connection) -> None:
    """Of two open /roll incidents, "the roll command throws ValueError" picks the ValueError one."""
    ids = await _seed(db)
    value_error = await _failure(
        db,
        kind="command:roll",
        error_type="ValueError",
        message="bad dice notation 'd'",
        frames=["bot/features/dice.py:50:parse"],
        fingerprint="fp-roll-parse",
        last_seen=NOW - 3 * HOUR,
    )
    target = await resolve_target(db, "the roll command throws ValueError", replied_incident_id=None, now=NOW)
    assert target.incident_ids == [value_error]
    target = await resolve_target(db, "the roll command is broken again", replied_incident_id=None, now=NOW)
    assert target.incident_ids == [ids["roll"]]


async def test_again_about_a_command_and_its_twin_picks_the_open_incident(db: aiosqlite.Connection) -> None:
    """/roll's incident was resolved, though its IndexError was seen since; !roll's is open: "broken
    again" is the open one, not a question between the two."""
    resolved = await _failure(
        db,
        kind="app:roll",
        error_type="IndexError",
        message="list index out of range",
        frames=["cogs/dice.py:30:roll_slash"],
        fingerprint="fp-roll-slash",
        last_seen=NOW - 60,
        state="resolved",
    )
    still_open = await _failure(
        db,
        kind="command:roll",
        error_type="ZeroDivisionError",
        message="integer division or modulo by zero",
        frames=["cogs/dice.py:14:roll"],
        fingerprint="fp-roll",
        last_seen=NOW - 60,
    )
    target = await resolve_target(db, "the roll command is broken again", replied_incident_id=None, now=NOW)
    assert (target.ambiguous, target.incident_ids) == (False, [still_open]), target
    assert resolved != still_open


@pytest.mark.parametrize(
    "text",
    [
        "/convert gives wrong results",
        "the report got really slow",
        "/restore says the file is corrupt",
        "the rates stopped updating",
        "the bot never answers in #help",
        "/weather doesn't respond any more",
        "search takes forever now",
        "quickroll errors out every time",
        "the reminder fired twice",
        "/export hangs",
    ],
)
def test_complaints_without_crash_words_are_requests(text: str) -> None:
    """Wrong, slow, corrupt, stopped, never answers…: a certain fix request, not chat."""
    intent = parse_intent(text)
    assert (intent.kind, intent.certain) == ("fix", True)


@pytest.mark.parametrize(
    "text",
    [
        "the button says the interaction failed",
        "nothing happens when I click",
        "the menu doesn't work",
        "I pressed Submit and it did nothing",
        "the vote dropdown is unresponsive",
        "the form crashed when I sent it",
        "clicking Close errored",
        "nothing shows up after I pick a colour",
    ],
)
def test_ui_failures_in_ordinary_words_are_requests(text: str) -> None:
    """How people describe a failing button, menu or form — any tense of a failure verb, a part that
    does nothing — is a certain fix request, not chat."""
    intent = parse_intent(text)
    assert (intent.kind, intent.certain) == ("fix", True)


def test_a_vague_word_about_a_button_is_an_uncertain_request() -> None:
    """A button or menu is a part of the bot: "the vote button seems off" is asked about."""
    intent = parse_intent("the vote button seems off")
    assert (intent.kind, intent.certain) == ("investigate", False)


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("/convert seems off today", ()),
        ("your answers are a bit weird lately", ()),
        ("convert is acting up", ("app:convert",)),
    ],
)
def test_vague_complaints_about_the_bot_are_uncertain_requests(text: str, kinds: tuple[str, ...]) -> None:
    """'seems off', 'weird', 'acting up' about the bot: ask before starting anything."""
    intent = parse_intent(text, kinds)
    assert (intent.kind, intent.certain) == ("investigate", False)


@pytest.mark.parametrize(
    "text", ["the weather is weird today", "what an odd day", "hmm", "can you turn it off", "that's funny"]
)
def test_vague_words_not_about_the_bot_stay_chat(text: str) -> None:
    """A vague word about anything else is conversation, not a request."""
    assert parse_intent(text, ("app:convert",)).kind == "none"


async def test_naming_a_command_resolves_by_its_recorded_kind(db: aiosqlite.Connection) -> None:
    """'weather is broken' finds the incident of app:weather (the kind the recorder wrote)."""
    await _seed(db)
    incident = await _failure(
        db,
        kind="app:weather",
        error_type="KeyError",
        message="'gusts'",
        frames=["cogs/weather.py:9:normalise"],
        fingerprint="fp-weather",
        last_seen=NOW - 2 * HOUR,
    )
    target = await resolve_target(db, "weather is broken", replied_incident_id=None, now=NOW)
    assert (target.incident_ids, target.via, target.kind) == ([incident], "named", "app:weather")


async def test_a_named_kind_without_failures_is_the_target_itself(db: aiosqlite.Connection) -> None:
    """'/report got slow' with no failure on record: the target is the kind, for its evidence."""
    await _seed(db)
    target = await resolve_target(
        db, "/report got really slow", replied_incident_id=None, known_kinds={"app:report"}, now=NOW
    )
    assert (target.incident_ids, target.fingerprint, target.kind, target.via) == (
        [],
        None,
        "app:report",
        "named",
    )
    assert not target.ambiguous


async def test_handled_kinds_are_known_without_being_passed(db: aiosqlite.Connection) -> None:
    """The handler map makes a kind nameable before it ever failed."""
    from mendbot.db import handlers as handler_queries

    await handler_queries.replace_cog(
        db,
        "Report",
        [handler_queries.HandlerLocation("app:report", "cogs/report.py", "Report.report", 5, "Report")],
        NOW,
    )
    target = await resolve_target(db, "the report command is slow", replied_incident_id=None, now=NOW)
    assert (target.kind, target.via) == ("app:report", "named")


async def test_a_vague_complaint_is_asked_about_with_buttons_not_chatted_past(tmp_path: Path) -> None:
    """'/echo seems off today' in #dev: a one-line question with buttons; No, or a refusal, starts nothing."""

    import discord

    from tests.harness.discord import bot_messages, make_settings, reply_text, running_world

    settings = make_settings(tmp_path / "data")
    async with running_world(settings, extra_extensions=["tests.fixtures.observed_cog"]) as world:
        me = world.bot.user
        assert me is not None
        await world.users["alice"].send(world.dev, f"{me.mention} /echo seems off today")
        await world.quiesce()
        (question,) = bot_messages(world, world.dev)[-1:]
        labels = [
            child.label
            for row in question.components
            for child in getattr(row, "children", [])
            if isinstance(child, discord.Button)
        ]
        refused = await world.users["mallory"].click(question, label="Investigate")
        await world.quiesce()
        declined = await world.users["alice"].click(question, label="No")
        await world.quiesce()
        chatty = [m.content for m in bot_messages(world, world.dev) if m.interaction_metadata is None]
    assert question.content == "Investigate /echo: “/echo seems off today”?"
    assert labels == ["Investigate", "Fix", "No"]
    assert "only allow-listed developers" in reply_text(refused)
    assert reply_text(declined) == "OK, leaving it."
    assert chatty == [question.content]  # the chat cog did not answer the complaint
    from tests.harness.sql import stored

    assert stored(settings, "SELECT count(*) FROM runs") == [(0,)]


async def test_roll_back_said_to_the_bot_gets_one_answer_about_rollback_not_dice(tmp_path: Path) -> None:
    """'@mendbot roll back run 2' is answered once, by the rollback hint; '@mendbot roll 2d6' still rolls."""
    from tests.harness.discord import bot_messages, make_settings, running_world

    settings = make_settings(tmp_path / "data")
    async with running_world(settings) as world:
        me = world.bot.user
        assert me is not None
        await world.users["alice"].send(world.dev, f"{me.mention} roll back run 2")
        await world.quiesce()
        rollback = [m.content for m in bot_messages(world, world.dev)]
        await world.users["alice"].send(world.dev, f"{me.mention} roll 2d6")
        await world.quiesce()
        rolled = [m.content for m in bot_messages(world, world.dev)][len(rollback) :]
    assert len(rollback) == 1 and rollback[0].startswith("To roll back a deployed run use `/rollback <run>`")
    assert len(rolled) == 1 and "2d6" in rolled[0]
