"""The bot's data as the replay starts from it: a copy of the live bot's stored rows and JSON files, and
what a branch did to it that the base did not — deleting a row, or rewriting it into another shape, is a
data change; a value that only changed is not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mendbot.db import cog_rows
from mendbot.db.connection import open_database
from mendbot.improve.proof.bot_data import data_changes, read_state, snapshot
from mendbot.trust.sandbox import _check_mount


async def test_the_snapshot_holds_the_live_rows_and_json_files(tmp_path: Path) -> None:
    """The cog rows of the live database and the JSON files at the top of its data directory are copied;
    the rest of the database (runs, actions) is not."""
    live = tmp_path / "data"
    db = await open_database(live / "mendbot.db")
    try:
        await cog_rows.put(db, "ledger", "7", {"amount": "12.50"})
        (live / "scores.json").write_text(json.dumps({"alice": 3}))
        await snapshot(db, live, tmp_path / "copy")
    finally:
        await db.close()
    assert read_state(tmp_path / "copy") == {
        "cog_rows ledger/7": {"amount": "12.50"},
        "scores.json": {"alice": 3},
    }


def test_a_deleted_or_reshaped_row_is_a_data_change_and_a_changed_value_is_not() -> None:
    """Against what both sides started from: the branch deleting a row the base kept, or rewriting it into
    another shape, is a change; a number paid into, or a change the base made too, is not."""
    before = {"cog_rows ledger/7": {"amount": "12.50"}, "cog_rows ledger/8": {"amount": "3"}, "t.json": [1]}
    base = {"cog_rows ledger/7": {"amount": "12.50"}, "cog_rows ledger/8": {"amount": "4"}, "t.json": [1]}
    deleted = {"cog_rows ledger/8": {"amount": "4"}, "t.json": [1]}
    reshaped = {**base, "cog_rows ledger/7": {"cents": 1250}}
    paid = {**base, "cog_rows ledger/8": {"amount": "9"}}
    assert data_changes(before, base, deleted) == ["deletes cog_rows ledger/7"]
    assert data_changes(before, base, reshaped) == ["rewrites cog_rows ledger/7 into another shape"]
    assert data_changes(before, base, paid) == []
    assert data_changes(before, deleted, deleted) == []  # the base deleted it too: the calls do
    assert data_changes(before, None, deleted) == []


async def test_a_database_the_bot_left_is_read_with_its_last_writes(tmp_path: Path) -> None:
    """Rows still in the write-ahead log when the bot stopped are read too."""
    db = await open_database(tmp_path / "mendbot.db")
    await cog_rows.put(db, "ledger", "7", {"amount": "5"})
    state = read_state(tmp_path)  # the connection still open: the row may be only in the log
    await db.close()
    assert state == {"cog_rows ledger/7": {"amount": "5"}}


@pytest.mark.parametrize("inside", ["/", "/usr/lib", "/run/mendbot", "/run", "relative/data", "/etc"])
def test_a_writable_mount_never_covers_the_system(inside: str) -> None:
    """The replay's data is mounted where the live bot keeps it, but never over the system or the
    sandbox's own directories."""
    with pytest.raises(ValueError, match="writable mount"):
        _check_mount(inside)
    _check_mount("/srv/bot/data")


def test_a_buttons_neighbours_vary_what_showed_it_and_who_pressed_it() -> None:
    """A button's neighbours change one option of the command that sent its view (the state it was sent
    with), a select's another of its choices; its other callers are another member, the member without
    its roles, and another channel — the same every time."""
    from mendbot.improve.proof.neighbours import callers, neighbours

    shown_by = {"kind": "app:tab", "name": "/tab", "options": {"total": 12, "people": 0}}
    press = {"name": "view:TabView.split_it", "options": {"custom_id": "tab-split"}, "shown_by": shown_by}
    found = neighbours("view:TabView.split_it", press, 4)
    assert found and all(item["options"] == {"custom_id": "tab-split"} for item in found)
    assert {tuple(sorted(item["shown_by"]["options"])) for item in found} == {("people", "total")}
    assert any(item["shown_by"]["options"]["people"] == 0 for item in found)  # total varied alone
    pick = {"name": "view:Menu.pick", "options": {"custom_id": "m", "values": ["a"]}, "choices": ["a", "b"]}
    assert neighbours("view:Menu.pick", pick, 3)[0]["options"]["values"] == ["b"]
    caller = {"user": 7, "roles": [3], "channel": 5, "guild": 1}
    varied = callers(caller, 3)
    assert [what for what, _ in varied] == ["another member", "without its roles", "in another channel"]
    assert varied[0][1]["user"] != 7 and varied[1][1]["roles"] == [] and varied[2][1]["channel"] != 5
    assert callers(caller, 3) == varied
