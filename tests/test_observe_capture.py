"""What every handler leaves in its action record: the invocation, a digest of the reply, sampled
stacks when slow; the kind → handler map; a stopped tasks.loop as an incident of its own."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mendbot.kernel.settings import Settings
from tests.harness.discord import make_settings, running_world
from tests.harness.sql import Row, stored, stored_bytes

EXTENSION = "tests.fixtures.observed_cog"
COG = "tests/fixtures/observed_cog.py"
NAP_LINE = next(
    n
    for n, line in enumerate(
        (Path(__file__).parent / "fixtures" / "observed_cog.py").read_text().splitlines(), 1
    )
    if "time.sleep(0.2)" in line
)
DISCORD_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"


def _rows(settings: Settings, sql: str, *args: Any) -> list[Row]:
    return stored(settings, sql, *args)


def _last(settings: Settings, kind: str) -> Row:
    rows = _rows(settings, "SELECT * FROM actions WHERE kind = ? ORDER BY id DESC LIMIT 1", kind)
    assert rows, f"no {kind} action recorded"
    return rows[0]


async def test_slash_command_records_its_options_and_a_digest_of_its_reply(tmp_path: Path) -> None:
    """/echo text=hi times=3 → invocation {name, options, caller} and reply {text, sha, messages} on the
    record: who asked and where (what a replay sends it as)."""
    settings = make_settings(tmp_path / "data")
    async with running_world(settings, extra_extensions=[EXTENSION]) as world:
        await world.users["alice"].slash(world.general, "echo", text="hi", times=3)
        await world.quiesce()
        alice, general = world.users["alice"].id, world.general.id
    row = _last(settings, "app:echo")
    invocation = json.loads(row["invocation"])
    caller = invocation.pop("caller")
    assert invocation == {"name": "/echo", "options": {"text": "hi", "times": 3}}
    assert (caller["user"], caller["channel"], caller["roles"]) == (alice, general, [])
    assert caller["guild"] == row["guild_id"]
    reply = json.loads(row["reply"])
    assert reply == {"text": "hi hi hi", "sha": hashlib.sha256(b"hi hi hi").hexdigest()[:16], "messages": 1}


async def test_prefix_command_and_listener_record_what_they_heard_and_said(tmp_path: Path) -> None:
    """!shout and a listener's channel.send are captured through whichever path sent them."""
    settings = make_settings(tmp_path / "data")
    async with running_world(settings, extra_extensions=[EXTENSION]) as world:
        await world.users["alice"].send(world.general, "!shout make it loud")
        await world.users["alice"].send(world.general, "hello observed cog")
        await world.quiesce()
    shout = _last(settings, "command:shout")
    assert json.loads(shout["invocation"])["options"] == {"text": "!shout make it loud"}
    assert json.loads(shout["reply"])["text"] == "MAKE IT LOUD"
    heard = [
        row
        for row in _rows(
            settings, "SELECT * FROM actions WHERE kind = 'listener:on_message' AND source = 'Observed'"
        )
        if row["reply"]
    ]
    (listener,) = heard
    assert json.loads(listener["invocation"])["options"]["content"] == "hello observed cog"
    assert json.loads(listener["reply"])["text"] == "heard 1"


async def test_secrets_in_options_are_redacted_before_storage(tmp_path: Path) -> None:
    """A token typed into a slash option never reaches the database."""
    settings = make_settings(tmp_path / "data")
    async with running_world(settings, extra_extensions=[EXTENSION]) as world:
        await world.users["alice"].slash(world.general, "echo", text=DISCORD_TOKEN)
        await world.quiesce()
    row = _last(settings, "app:echo")
    assert DISCORD_TOKEN not in row["invocation"] and DISCORD_TOKEN not in row["reply"]
    assert DISCORD_TOKEN.encode() not in stored_bytes(settings)


async def test_a_slow_handler_carries_sampled_stacks_pointing_at_the_blocking_line(tmp_path: Path) -> None:
    """A handler blocking the loop past the threshold is sampled; the samples name nap()'s line."""
    settings = make_settings(tmp_path / "data", observe={"latency": {"min_ms": 30}})
    async with running_world(settings, extra_extensions=[EXTENSION]) as world:
        await world.users["alice"].slash(world.general, "echo", text="fast")
        await world.users["alice"].slash(world.general, "slow")
        await world.quiesce()
    # A handler faster than the threshold is never sampled (on a loaded machine a short one may not be fast).
    echo = _last(settings, "app:echo")
    assert echo["samples"] is None or echo["duration_ms"] >= 30, echo
    samples = json.loads(_last(settings, "app:slow")["samples"])
    # Most samples catch nap(); one may catch the handler a moment later, sending its reply.
    assert samples[0]["frames"][-1] == f"{COG}:{NAP_LINE}:nap"
    assert all(sample["frames"][0].startswith(COG) for sample in samples)


async def test_every_kind_maps_to_its_handler(tmp_path: Path) -> None:
    """app:, command:, listener:, task: and cog: kinds (its own load and unload hooks) of a loaded cog map
    to their file and function."""
    settings = make_settings(tmp_path / "data")
    async with running_world(settings, extra_extensions=[EXTENSION]) as world:
        await world.quiesce()
        rows = {
            (row["kind"], row["qualname"]): row["path"]
            for row in _rows(settings, "SELECT * FROM handlers WHERE cog = 'Observed'")
        }
        await world.bot.unload_extension(EXTENSION)
        left = _rows(settings, "SELECT * FROM handlers WHERE cog = 'Observed'")
    assert rows == {
        ("app:echo", "Observed.echo"): COG,
        ("app:slow", "Observed.slow"): COG,
        ("command:shout", "Observed.shout"): COG,
        ("listener:on_message", "Observed.on_message"): COG,
        ("task:tick", "Observed.tick"): COG,
        ("cog:Observed.cog_load", "Observed.cog_load"): COG,
        ("cog:Observed.cog_unload", "Observed.cog_unload"): COG,
    }
    assert left == []  # an unloaded cog handles nothing


async def test_a_task_loop_that_raised_out_is_an_incident_of_its_own(tmp_path: Path) -> None:
    """The second tick raises: the record says the loop stopped and a task_stopped incident opens."""
    settings = make_settings(tmp_path / "data", observe={"announce_new_fingerprints": False})
    async with running_world(settings, extra_extensions=[EXTENSION]) as world:
        await world.env.advance_time(5 * 60 + 1)
        await world.quiesce()
        assert not world.bot.get_cog("Observed").tick.is_running()  # type: ignore[union-attr]
    failed = _last(settings, "task:tick")
    assert failed["ok"] == 0 and json.loads(failed["extra"]) == {"loop_stopped": True}
    (incident,) = _rows(settings, "SELECT * FROM incidents WHERE kind = 'task:tick'")
    assert incident["rule"] == "task_stopped" and incident["level"] == "error"
    assert "stays stopped" in incident["summary"]
