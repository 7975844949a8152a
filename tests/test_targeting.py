"""What a request is about, by evidence: an explicit `/command` beats a bare word, a recorded failure on
the surface the words name beats a name with none, two named things that both failed are asked about,
and words that match no failure lead to the handler whose code says what they describe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from mendbot.db import actions as action_queries
from mendbot.db import handlers as handler_queries
from mendbot.db import incidents as incident_queries
from mendbot.db.connection import open_database
from mendbot.db.records import ActionRecord
from mendbot.improve.evidence.target import resolve_target
from mendbot.improve.intent import named_kinds

NOW = 1_800_000_000.0
KINDS = {"app:pay", "command:refund", "app:quiz", "view:QuizView.answer", "app:score"}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_database(tmp_path / "m.db")
    yield connection
    await connection.close()


async def _clicks(
    db: aiosqlite.Connection, kind: str, surface: str | None, fingerprint: str, *, incident: bool
) -> int | None:
    """Four failed clicks (or calls) of `kind`, shown by `surface`, a minute apart; and their incident."""
    records = [
        ActionRecord(
            ts=NOW - 60 * n,
            kind=kind,
            source="seed",
            ok=False,
            duration_ms=2.0,
            user_id=7,
            error_type="IndexError",
            error_message="list index out of range",
            fingerprint=fingerprint,
            frames=["cogs/quiz.py:40:answer"],
            invocation={"name": kind, "options": {}, **({"surface": surface} if surface else {})},
        )
        for n in range(4)
    ]
    await action_queries.insert_many(db, records)
    if not incident:
        return None
    return await incident_queries.insert(
        db,
        {
            "rule": "repeat",
            "rules": ["repeat"],
            "level": "error",
            "kind": kind,
            "fingerprint": fingerprint,
            "state": "open",
            "summary": "the same IndexError 4 times in 10 min",
            "first_seen": NOW - 240,
            "last_seen": NOW,
            "count": 4,
            "user_ids": [7],
            "sample": {"error_type": "IndexError"},
            "updated_at": NOW,
        },
    )


def test_an_explicit_command_is_named_before_a_bare_word() -> None:
    """'/pay' written as a command comes before 'refund' said as a word, wherever each stands."""
    named = named_kinds("the refund flow in /pay is broken", KINDS)
    assert named == [("app:pay", True), ("command:refund", False)]


async def test_an_explicit_command_beats_a_bare_word_said_earlier(db: aiosqlite.Connection) -> None:
    """'the refund screen of /pay charges twice': the target is `/pay`, not the `refund` command named
    by a bare word earlier in the sentence — even though refund once failed."""
    await _clicks(db, "command:refund", None, "fp-refund", incident=False)
    target = await resolve_target(
        db, "the refund screen of /pay charges twice", replied_incident_id=None, known_kinds=KINDS, now=NOW
    )
    assert (target.kind, target.incident_ids, target.ambiguous) == ("app:pay", [], False)


async def test_failed_clicks_on_the_named_screen_beat_the_name_with_no_failure(
    db: aiosqlite.Connection,
) -> None:
    """Four failed clicks on the buttons `/quiz` showed opened an incident: 'the /quiz answers are wrong'
    is about that incident, not about `/quiz` itself, which never failed."""
    incident = await _clicks(db, "view:QuizView.answer", "app:quiz", "fp-quiz", incident=True)
    target = await resolve_target(
        db, "the /quiz answers are wrong", replied_incident_id=None, known_kinds=KINDS, now=NOW
    )
    assert (target.incident_ids, target.kind, target.ambiguous) == ([incident], "view:QuizView.answer", False)


async def test_recent_failures_on_the_surface_count_without_an_incident(db: aiosqlite.Connection) -> None:
    """Failed clicks with no incident yet still make the target: their failure, by fingerprint."""
    await _clicks(db, "view:QuizView.answer", "app:quiz", "fp-quiz", incident=False)
    target = await resolve_target(db, "quiz is broken", replied_incident_id=None, known_kinds=KINDS, now=NOW)
    assert (target.fingerprint, target.kind) == ("fp-quiz", "view:QuizView.answer")


async def test_two_named_commands_that_both_failed_are_asked_about(db: aiosqlite.Connection) -> None:
    """'/quiz and /score are both broken' with an incident on each: ambiguous, both listed."""
    quiz = await _clicks(db, "view:QuizView.answer", "app:quiz", "fp-quiz", incident=True)
    score = await _clicks(db, "app:score", None, "fp-score", incident=True)
    target = await resolve_target(
        db, "/quiz and /score are both broken", replied_incident_id=None, known_kinds=KINDS, now=NOW
    )
    assert target.ambiguous
    assert {c.incident_id for c in target.candidates} == {quiz, score}
    assert target.question().startswith("Which one do you mean?")


async def test_words_with_no_failure_lead_to_the_handler_whose_code_says_them(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """'it puts things on my list I never typed': no failure matches, and the handler whose code and
    replies speak of the list is the target — not mendbot's own listeners."""
    repo = tmp_path / "repo"
    (repo / "cogs").mkdir(parents=True)
    (repo / "cogs" / "todo.py").write_text(
        "class Todo:\n"
        "    async def add(self, interaction, item: str) -> None:\n"
        "        self.items.append(item.split()[0])\n"
        '        await interaction.response.send_message(f"Added {item} to your list")\n'
        "\n"
        "    async def weather(self, interaction, city: str) -> None:\n"
        '        await interaction.response.send_message(f"It is sunny in {city}")\n'
    )
    (repo / "cogs" / "improve.py").write_text(
        "class Improve:\n"
        "    async def on_message(self, message) -> None:\n"
        "        things = list(message.content)\n"
    )
    await handler_queries.replace_cog(
        db,
        "Todo",
        [
            handler_queries.HandlerLocation("app:todo add", "cogs/todo.py", "Todo.add", 2, "Todo"),
            handler_queries.HandlerLocation("app:weather", "cogs/todo.py", "Todo.weather", 6, "Todo"),
        ],
        NOW,
    )
    await handler_queries.replace_cog(
        db,
        "Improve",
        [
            handler_queries.HandlerLocation(
                "listener:on_message", "bot/cogs/improve.py", "Improve.on_message", 2, "Improve"
            )
        ],
        NOW,
    )
    target = await resolve_target(
        db, "it puts things on my list I never typed", replied_incident_id=None, now=NOW, roots=[repo]
    )
    assert (target.kind, target.via) == ("app:todo add", "words")


async def test_a_game_whose_state_never_updates_is_found_by_its_words(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    """'the trivia game never updates the score' — no failure, no kind named: the handler of the game
    whose code keeps the score is the target, not the other cogs' handlers."""
    repo = tmp_path / "repo"
    (repo / "cogs").mkdir(parents=True)
    (repo / "cogs" / "trivia.py").write_text(
        "class Trivia:\n"
        "    async def answer(self, interaction, guess: str) -> None:\n"
        "        state = self.games[interaction.channel_id]\n"
        "        if guess == state.solution:\n"
        "            state.round += 1\n"
        '        await interaction.response.send_message(f"score: {state.score}")\n'
    )
    (repo / "cogs" / "polls.py").write_text(
        "class Polls:\n"
        "    async def vote(self, interaction, option: str) -> None:\n"
        '        await interaction.response.send_message(f"you voted {option}")\n'
    )
    await handler_queries.replace_cog(
        db,
        "Trivia",
        [handler_queries.HandlerLocation("app:answer", "cogs/trivia.py", "Trivia.answer", 2, "Trivia")],
        NOW,
    )
    await handler_queries.replace_cog(
        db,
        "Polls",
        [handler_queries.HandlerLocation("app:vote", "cogs/polls.py", "Polls.vote", 2, "Polls")],
        NOW,
    )
    target = await resolve_target(
        db, "the trivia game never updates the score", replied_incident_id=None, now=NOW, roots=[repo]
    )
    assert (target.kind, target.via) == ("app:answer", "words")
