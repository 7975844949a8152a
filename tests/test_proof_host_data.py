"""What the data files of a bot mendbot is attached to hold, as the proof reads them after each side ran: a
SQLite file's rows by key with the shape of each (column names, value types, the JSON a text holds), a JSON
file's entries key by key; bounded, and a file that is not SQLite or JSON said to be so, never a crash. And
what a branch did to them that the base did not, named: a row deleted, reshaped, a file made unreadable."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

from mendbot.improve.agent.workspace import Workspace
from mendbot.improve.proof.bot_data import BotData, Unreadable, _shape, data_changes
from mendbot.improve.proof.host_data import ReadInPart, read_files
from mendbot.improve.proof.prover import _changed_data, _migration
from mendbot.improve.proof.replay import HostBot, run_replay
from mendbot.improve.proof.replay_plan import ReplayCase, ReplayPlan
from mendbot.kernel.sections import HostConfig
from mendbot.trust.host_start import snapshot_data
from mendbot.trust.sandbox import Sandbox
from tests.harness.hosts import host_repo
from tests.harness.repo import git


def _database(path: Path, *statements: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as db:
        for statement in statements:
            db.execute(statement)
        db.commit()
    return path


def _bank(root: Path) -> Path:
    return _database(
        root / "data" / "bank.db",
        "CREATE TABLE accounts (member INTEGER PRIMARY KEY, balance TEXT, settings TEXT, seen REAL)",
        """INSERT INTO accounts VALUES (7, '12.50', '{"notify": true, "limit": 40}', 1.5)""",
        "INSERT INTO accounts VALUES (8, '3', NULL, 2)",
        "CREATE TABLE notes (body TEXT)",  # no primary key: its rows by rowid
        "INSERT INTO notes VALUES ('hello')",
        "CREATE TABLE loans (lender INTEGER, borrower INTEGER, amount INTEGER,"
        " PRIMARY KEY (lender, borrower))",
        "INSERT INTO loans VALUES (7, 8, 5)",
    )


def test_a_sqlite_files_rows_are_read_by_key_with_the_shape_of_each(tmp_path: Path) -> None:
    """Every table's rows by primary key (rowid without one), each with its column names and the type of
    each value; a text holding a JSON object is read as that object."""
    _bank(tmp_path)
    state = read_files(tmp_path, ["data/bank.db"])
    assert state == {
        "data/bank.db": {"sqlite": True},
        "data/bank.db accounts/7": {
            "member": 0,
            "balance": "",
            "settings": {"notify": True, "limit": 40},
            "seen": 0.0,
        },
        "data/bank.db accounts/8": {"member": 0, "balance": "", "settings": None, "seen": 0.0},
        "data/bank.db loans/7,8": {"lender": 0, "borrower": 0, "amount": 0},
        "data/bank.db notes/1": {"body": ""},
    }
    assert _shape(state["data/bank.db accounts/7"]) == {
        "member": "number",
        "balance": "str",
        "settings": {"notify": "bool", "limit": "number"},
        "seen": "number",
    }


def test_rows_still_in_the_write_ahead_log_are_read(tmp_path: Path) -> None:
    """The bot may stop before moving its last writes into the file: they are read from the log."""
    path = _database(tmp_path / "live.db", "PRAGMA journal_mode = WAL", "CREATE TABLE t (k TEXT PRIMARY KEY)")
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_autocheckpoint = 0")
        db.execute("INSERT INTO t VALUES ('late')")
        db.commit()
        assert Path(f"{path}-wal").stat().st_size > 0
        state = read_files(tmp_path, ["live.db"])
    assert "live.db t/late" in state


def test_a_json_file_is_read_key_by_key(tmp_path: Path) -> None:
    """An entry for the file, and one for every key of its objects: a member's record deleted is an entry
    gone, not just another shape of the whole file."""
    (tmp_path / "brews.json").write_text(json.dumps({"7": {"cups": 3, "beans": ["a", "b"]}, "8": {}}))
    (tmp_path / "queue.json").write_text(json.dumps([{"who": 7}]))
    assert read_files(tmp_path, ["brews.json", "queue.json", "absent.json"]) == {
        "brews.json": {"json": {}},
        "brews.json 7": {},
        "brews.json 7/cups": 3,
        "brews.json 7/beans": ["a", "b"],
        "brews.json 8": {},
        "queue.json": {"json": [{"who": 7}]},
    }


def test_a_file_that_is_not_sqlite_or_json_is_said_so_and_not_read(tmp_path: Path) -> None:
    """Text, a SQLite header over garbage, a link, a file past the bound, JSON nested past Python's
    limit: each is named unreadable with why, and the read goes on."""
    (tmp_path / "notes.txt").write_text("not data")
    (tmp_path / "broken.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    (tmp_path / "big.json").write_text(json.dumps(["x" * 1000] * 1001))
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "link.json").symlink_to(tmp_path / "big.json")
    (tmp_path / "ok.json").write_text("{}")
    names = ["notes.txt", "broken.db", "big.json", "deep.json", "link.json", "ok.json"]
    assert read_files(tmp_path, names) == {
        "notes.txt": Unreadable("not a SQLite or JSON file"),
        "broken.db": Unreadable("not a readable SQLite file"),
        "big.json": Unreadable("larger than 1000 kB: not read"),
        "deep.json": Unreadable("not a SQLite or JSON file"),
        "link.json": Unreadable("a link, not a file"),
        "ok.json": {"json": {}},
    }


def test_a_file_outside_the_tree_is_never_read(tmp_path: Path) -> None:
    """A name that climbs out of the checkout reads nothing."""
    (tmp_path / "outside.json").write_text("{}")
    (tmp_path / "tree").mkdir()
    assert read_files(tmp_path / "tree", ["../outside.json"]) == {}


def test_rows_past_the_bound_are_left_unread_and_the_file_says_so(tmp_path: Path) -> None:
    """At most 5000 rows in all: the rest unread, the file marked as read in part, and a row missing from
    a file read in part is not called deleted."""
    path = _database(tmp_path / "big.db", "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    with closing(sqlite3.connect(path)) as db:
        db.executemany("INSERT INTO t VALUES (?, 'x')", [(k,) for k in range(5003)])
        db.commit()
    (tmp_path / "later.json").write_text(json.dumps({"a": 1}))
    state = read_files(tmp_path, ["big.db", "later.json"])
    assert sum(1 for where in state if where.startswith("big.db t/")) == 5000
    assert "big.db t/4999" in state and "big.db t/5000" not in state
    assert state["big.db …"] == ReadInPart("big.db") and state["later.json …"] == ReadInPart("later.json")
    before = {"big.db t/5001": {"k": 0, "v": ""}}
    assert data_changes(before, before, state) == []


def test_tables_and_bytes_past_their_bounds_are_left_unread(tmp_path: Path) -> None:
    """At most 100 tables of a file, and 1 MB of the keys and JSON texts read from it."""
    many = _database(
        tmp_path / "many.db", *(f"CREATE TABLE t{n:03} (k INTEGER PRIMARY KEY)" for n in range(101))
    )
    with closing(sqlite3.connect(many)) as db:
        db.execute("INSERT INTO t100 VALUES (1)")
        db.commit()
    state = read_files(tmp_path, ["many.db"])
    assert "many.db t100/1" not in state and state["many.db …"] == ReadInPart("many.db")
    texts = _database(tmp_path / "texts.db", "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    with closing(sqlite3.connect(texts)) as db:
        db.executemany("INSERT INTO t VALUES (?, ?)", [(k, json.dumps(["y" * 4000])) for k in range(300)])
        db.commit()
    state = read_files(tmp_path, ["texts.db"])
    read = [where for where in state if where.startswith("texts.db t/")]
    assert 200 < len(read) < 300 and state["texts.db …"] == ReadInPart("texts.db")


def test_what_the_branch_did_to_a_bots_files_that_the_base_did_not_is_named(tmp_path: Path) -> None:
    """From the same copy, the base keeps the rows it was given; the branch deletes one, stores a member's
    settings in another shape, adds a column to a table and truncates the JSON file: each named; a value
    that only changed, and a row both sides added, are not."""
    start = tmp_path / "start"
    _bank(start)
    (start / "data" / "brews.json").write_text(json.dumps({"7": {"cups": 3}}))
    sides = {}
    for side in ("base", "branch"):
        snapshot_data(start, ["data/bank.db", "data/brews.json"], tmp_path / side)
        with closing(sqlite3.connect(tmp_path / side / "data" / "bank.db")) as db:
            db.execute("UPDATE accounts SET seen = 9.5 WHERE member = 7")
            db.execute("INSERT INTO notes VALUES ('both')")
            if side == "branch":
                db.execute("DELETE FROM loans")
                db.execute("""UPDATE accounts SET settings = '{"cents": 1250}' WHERE member = 7""")
                db.execute("ALTER TABLE notes ADD COLUMN pinned INTEGER")
            db.commit()
        if side == "branch":
            (tmp_path / side / "data" / "brews.json").write_text('{"7": {"cu')
        sides[side] = read_files(tmp_path / side, ["data/bank.db", "data/brews.json"])
    before = read_files(start, ["data/bank.db", "data/brews.json"])
    assert data_changes(before, sides["base"], sides["branch"]) == [
        "rewrites data/bank.db accounts/7 into another shape",
        "deletes data/bank.db loans/7,8",
        "rewrites data/bank.db notes/1 into another shape",
        "leaves data/brews.json unreadable (not a SQLite or JSON file)",
        "deletes data/brews.json 7",
        "deletes data/brews.json 7/cups",
    ]
    assert data_changes(before, sides["base"], sides["base"]) == []


def test_a_snapshot_brings_a_databases_log_and_a_fresh_copy_drops_an_old_one(tmp_path: Path) -> None:
    """The live database's write-ahead log comes with it into the snapshot; written into a checkout where a
    former start left a log of its own, that log goes (with it the copy would be another database)."""
    live = tmp_path / "live"
    path = _database(
        live / "data" / "bank.db", "PRAGMA journal_mode = WAL", "CREATE TABLE t (k TEXT PRIMARY KEY)"
    )
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_autocheckpoint = 0")
        db.execute("INSERT INTO t VALUES ('live')")
        db.commit()
        snapshot_data(live, ["data/bank.db", "data/missing.json"], tmp_path / "snapshot")
    assert (tmp_path / "snapshot" / "data" / "bank.db-wal").is_file()
    assert not (tmp_path / "snapshot" / "data" / "missing.json").exists()
    checkout = tmp_path / "checkout"
    (checkout / "data").mkdir(parents=True)
    (checkout / "data" / "bank.db-shm").write_bytes(b"stale")
    (checkout / "data" / "bank.db-journal").write_bytes(b"stale")
    snapshot_data(tmp_path / "snapshot", ["data/bank.db"], checkout)
    assert not (checkout / "data" / "bank.db-shm").exists()
    assert not (checkout / "data" / "bank.db-journal").exists()
    assert "data/bank.db t/live" in read_files(checkout, ["data/bank.db"])


async def test_a_migration_the_change_carries_is_named(tmp_path: Path) -> None:
    """A schema statement among the lines a change adds names it as a migration; a file of a migrations
    folder does too; a change with neither names none."""
    repo = tmp_path / "repo"
    (repo / "cogs").mkdir(parents=True)
    (repo / "cogs" / "bank.py").write_text("def setup():\n    pass\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "bank")
    base = git(repo, "rev-parse", "HEAD")
    (repo / "cogs" / "bank.py").write_text(
        "def setup(db):\n    db.execute('ALTER TABLE accounts ADD COLUMN cents INTEGER')\n"
    )
    git(repo, "commit", "-qam", "cents")
    altered = git(repo, "rev-parse", "HEAD")
    assert await _migration(repo, base, altered, ["cogs/bank.py"]) == (
        "`ALTER TABLE accounts ADD COLUMN cents INTEGER` in `cogs/bank.py`"
    )
    assert await _migration(repo, base, altered, ["migrations/002_cents.sql"]) == "`migrations/002_cents.sql`"
    (repo / "cogs" / "bank.py").write_text("def setup(db):\n    pass\n")
    git(repo, "commit", "-qam", "plain")
    assert await _migration(repo, altered, git(repo, "rev-parse", "HEAD"), ["cogs/bank.py"]) is None


def _beans_plan() -> ReplayPlan:
    case = ReplayCase(
        key="beans",
        kind="command:beans",
        name="beans",
        options={"text": "!beans 300"},
        fingerprint=None,
        recorded_ms=5,
    )
    return ReplayPlan([case], ["cogs/coffee.py"], latency=False)


async def test_what_a_bot_wrote_comes_back_only_when_it_ends_as_asked(tmp_path: Path) -> None:
    """The coffee bot (tests/fixtures/hosts/beans) replayed on a copy of its files: asked to end once the
    calls are over, it does, and the stash its `!beans` saved is read from its checkout. A branch whose
    code keeps its process from ending leaves data that cannot be read (killed, nothing it wrote came
    back): for the branch, that is a data change."""
    repo = host_repo(tmp_path, "beans")
    _database(
        repo / "data" / "beans.db",
        "CREATE TABLE stash (member INTEGER PRIMARY KEY, grams TEXT NOT NULL)",
        "INSERT INTO stash VALUES (1, '40')",
    )
    names = ["data/beans.db", "data/brews.json"]
    host = HostConfig(
        entry=["python", "bot.py"], extensions=["cogs.coffee"], token_env="BEANS_TOKEN", data_files=names
    )
    snapshot_data(repo, names, tmp_path / "snapshot")
    base = git(repo, "rev-parse", "HEAD")
    bot = (repo / "bot.py").read_text()
    (repo / "bot.py").write_text(bot.replace("import os\n", "import os\n\nos._exit = lambda code: None\n"))
    git(repo, "commit", "-qam", "stay")
    stays = git(repo, "rev-parse", "HEAD")
    workspace = Workspace(repo, tmp_path / "worktrees", host=host)
    sides = {}
    for name, sha in (("base", base), ("branch", stays)):
        sides[name] = BotData(tmp_path / "snapshot", None, files=tuple(names))
        async with workspace.checkout(sha, name="beans") as checkout:
            results = await run_replay(
                checkout, _beans_plan(), sandbox=Sandbox(), host=HostBot(host, repo), data=sides[name]
            )
        assert results["beans"].reply is not None and "300 g" in results["beans"].reply
    assert sides["base"].after is not None and sides["base"].unread is None
    assert "data/beans.db stash/1" in sides["base"].after and len(sides["base"].after) == 3  # and the new one
    assert sides["branch"].after is None and sides["branch"].unread == "its bot did not end when asked"
    before = sides["base"].state(tmp_path / "snapshot")
    assert _changed_data(before, sides["base"], sides["branch"]) == [
        "left data that could not be read: its bot did not end when asked"
    ]
