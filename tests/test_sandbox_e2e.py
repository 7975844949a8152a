"""Agent-written code tries to break out, in the agent's session and in verify, and the kernel stops it.

The real bundled CLI, the model double and the virtual Discord, with the production layout: the run's
worktree lives under `data/worktrees/` inside the live checkout. The scripted agent writes a probe (a
script it runs with `python`, a test file and a `conftest.py` that pytest runs at collection, both of
which the verify gate runs again — the run has the security flag, so the guard lets it write a conftest)
that tries to read the live `.env` and database (directly and through `git rev-parse
--git-common-dir`), plant a cog in the live checkout, write the live `.git/config`, repoint the
worktree's `.git`, read every process's environment, reach a service on the host's loopback and write
the host's /tmp. Every attempt must fail, nothing outside the worktree may change, and no canary may
reach the model, Discord, the database, a proposal or a log. The canaries are values the redactor does
not know: only the sandbox can be what keeps them in. And a check that forks without end is stopped at
the process limit, ends the run with that reason, and the bot answers meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_messages, make_settings, running_world
from tests.harness.model_double import ModelDouble, Turn, text, tool_use
from tests.harness.repo import copy_of_bot
from tests.harness.sql import dump, stored

pytestmark = pytest.mark.cli

PROBE = '''\
"""Tries every way out of the sandbox it can think of; prints one JSON line of what happened."""
import glob
import json
import os
import socket
import subprocess

LIVE = {live!r}
PORT = {port}
results = {{}}


def attempt(name, action):
    try:
        value = action()
    except Exception as exc:  # noqa: BLE001 - the point is to see what fails
        results[name] = f"DENIED {{type(exc).__name__}}"
    else:
        results[name] = f"OK {{str(value)[:300]}}"


def common_dir_env():
    common = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    return open(os.path.join(os.path.dirname(common), ".env")).read()


def environments():
    found = []
    for path in glob.glob("/proc/[0-9]*/environ"):
        try:
            found.append(open(path, "rb").read())
        except OSError:
            continue
    markers = (b"CANARY", b"sk-ant", b"ANTHROPIC_API_KEY", b"CLAUDE_CONFIG_DIR")
    leaked = [blob for blob in found if any(marker in blob for marker in markers)]
    if not leaked:
        raise PermissionError(f"{{len(found)}} environments, none of the host's")
    return leaked


attempt("read_live_env", lambda: open(os.path.join(LIVE, ".env")).read())
attempt("read_live_db", lambda: open(os.path.join(LIVE, "data", "mendbot.db"), "rb").read(64))
attempt("read_via_git_common_dir", common_dir_env)
attempt("plant_live_cog", lambda: open(os.path.join(LIVE, "cogs", "planted.py"), "w").write("x = 1\\n"))
attempt(
    "write_live_git_config",
    lambda: open(os.path.join(LIVE, ".git", "config"), "a").write("[core]\\n\\tfsmonitor = /tmp/x\\n"),
)
attempt("repoint_worktree_git", lambda: open(".git", "w").write("gitdir: /tmp/evil\\n"))
attempt("read_environments", environments)
attempt("connect_host_loopback", lambda: socket.create_connection(("127.0.0.1", PORT), timeout=2))
attempt("write_tmp", lambda: open("/tmp/mendbot-escape-canary", "w").write("x"))  # private: allowed
attempt("list_agent_home", lambda: os.listdir(os.path.join(LIVE, "data", "agent-home")))
print("PROBE " + json.dumps(results, sort_keys=True))
escaped = sorted(n for n, outcome in results.items() if n != "write_tmp" and not outcome.startswith("DENIED"))
'''

PROBE_TEST = """\
import runpy


def test_nothing_escapes(capsys):
    namespace = runpy.run_path("probe_escape.py")
    assert namespace["escaped"] == [], namespace["results"]
"""

PROBE_CONFTEST = """\
import json
import runpy

# Runs when pytest collects this directory, before any test: in the agent's session and in verify.
namespace = runpy.run_path("probe_escape.py")
print("CONFTEST " + json.dumps(namespace["results"], sort_keys=True))
if namespace["escaped"]:
    raise SystemExit(f"escaped from a conftest: {namespace['escaped']}")
"""

ATTEMPTS = (
    "read_live_env",
    "read_live_db",
    "read_via_git_common_dir",
    "plant_live_cog",
    "write_live_git_config",
    "repoint_worktree_git",
    "read_environments",
    "connect_host_loopback",
    "list_agent_home",
)
CHECK = "python -m pytest -q -p no:cacheprovider -s tests/probe"


def _json_turn(value: dict[str, Any]) -> Turn:
    return text(f"Here it is.\n```json\n{json.dumps(value)}\n```")


@contextmanager
def _listener() -> Iterator[tuple[int, list[str]]]:
    """A TCP service on the host's loopback that records who connected."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    accepted: list[str] = []
    try:
        yield server.getsockname()[1], accepted
    finally:
        try:
            while True:
                connection, peer = server.accept()
                accepted.append(str(peer))
                connection.close()
        except BlockingIOError:
            pass
        server.close()


# What of the live .git the pipeline itself legitimately writes: objects, its branch's ref and log,
# its worktree's administrative files.
_BOT_WRITES = (".git/objects/", ".git/refs/heads/mendbot/", ".git/logs/", ".git/worktrees/")


def _exists(path: Path) -> bool:
    return path.exists()


def _tree_digest(root: Path) -> dict[str, str]:
    """A hash of every file of the live checkout outside data/, .git's config, hooks and refs included."""
    digest = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("data/", *_BOT_WRITES)) or not path.is_file() or path.is_symlink():
            continue
        digest[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


@asynccontextmanager
async def _world(tmp_path: Path, model: ModelDouble, canaries: dict[str, str]) -> AsyncIterator[VirtualWorld]:
    repo = copy_of_bot(tmp_path / "repo")
    (repo / ".env").write_text(f"DISCORD_TOKEN={canaries['env']}\n")
    settings = make_settings(
        repo / "data",
        repo_dir=repo,
        anthropic_api_key=canaries["key"],
        anthropic_base_url=model.base_url,
        improve={"checks": [CHECK], "max_attempts": 1, "check_timeout_s": 120},
        observe={"announce_new_fingerprints": False},
    )
    async with running_world(settings, settle_timeout=180) as world:
        yield world


def _everything_written(world: VirtualWorld, model: ModelDouble, data: Path) -> str:
    """All text that left the bot: model requests, Discord messages, the database, logs, agent transcripts."""
    parts = [json.dumps(request.json) for request in model.requests if request.json is not None]
    for channel in (world.dev, world.general):
        for message in channel.history():
            parts.append(message.content)
            parts.extend(json.dumps(embed.to_dict()) for embed in message.embeds)
    parts.append(dump(world.bot.services.settings))
    for path in data.rglob("*"):
        if (
            path.is_file()
            and path.suffix in {".jsonl", ".ndjson", ".json", ".log"}
            and "worktrees" not in path.parts
        ):
            parts.append(path.read_text(errors="replace"))
    return "\n".join(parts)


@pytest.fixture
def host_tmp_file() -> Iterator[Path]:
    """Where the probe's write to /tmp would land if its /tmp were the host's."""
    path = Path("/tmp/mendbot-escape-canary")
    path.unlink(missing_ok=True)
    yield path
    path.unlink(missing_ok=True)


async def test_agent_code_cannot_escape_during_the_session_or_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_tmp_file: Path
) -> None:
    """Every escape attempt fails in both places, nothing outside changes, and no canary leaks anywhere."""
    canaries = {
        "env": f"CANARY-dotenv-{secrets.token_hex(8)}",
        "parent": f"CANARY-parent-env-{secrets.token_hex(8)}",
        "key": f"sk-ant-api03-CANARY{secrets.token_hex(16)}",
    }
    monkeypatch.setenv("MENDBOT_TEST_PARENT_CANARY", canaries["parent"])
    with _listener() as (port, accepted):
        async with ModelDouble() as model, _world(tmp_path, model, canaries) as world:
            settings = world.bot.services.settings
            live = settings.repo_dir.resolve()
            worktree = settings.data_dir.resolve() / "worktrees" / "run-1"
            before = _tree_digest(live)
            probe = tool_use(
                "Write",
                {
                    "file_path": str(worktree / "probe_escape.py"),
                    "content": PROBE.format(live=str(live), port=port),
                },
            )
            probe_test = tool_use(
                "Write",
                {
                    "file_path": str(worktree / "tests" / "probe" / "test_probe_escape.py"),
                    "content": PROBE_TEST,
                },
            )
            probe_conftest = tool_use(
                "Write",
                {"file_path": str(worktree / "tests" / "probe" / "conftest.py"), "content": PROBE_CONFTEST},
            )
            run_script = tool_use("Bash", {"command": "python probe_escape.py"})
            run_tests = tool_use("Bash", {"command": "python -m pytest -q -s tests/probe"})
            model.script(
                _json_turn({"root_cause": "unknown", "files": [], "confidence": "low"}),
                _json_turn(
                    {"files": ["probe_escape.py", "tests/probe/"], "changes": "add a probe", "risk": "low"}
                ),
                probe,
                probe_test,
                probe_conftest,
                run_script,
                run_tests,
                text("Probed."),
            )
            await world.users["alice"].slash(world.dev, "fix", description="probe the sandbox", security=True)
            await world.quiesce()
            await asyncio.sleep(0)
            sinks = _everything_written(world, model, settings.data_dir)
            dev = [m.content for m in bot_messages(world, world.dev)]

    session = model.tool_result(run_script.tool_use_id).content
    line = next(line for line in session.splitlines() if line.startswith("PROBE "))
    outcomes = json.loads(line.removeprefix("PROBE "))
    assert sorted(outcomes) == sorted([*ATTEMPTS, "write_tmp"])
    denied = {name: outcomes[name].startswith("DENIED") for name in ATTEMPTS}
    assert all(denied.values()), json.dumps(outcomes, indent=1)
    assert outcomes["write_tmp"].startswith("OK")  # the sandbox's own /tmp: not the host's (checked below)
    tests_in_session = model.tool_result(run_tests.tool_use_id).content
    assert "1 passed" in tests_in_session, tests_in_session
    line = next(line for line in tests_in_session.splitlines() if line.startswith("CONFTEST "))
    from_conftest = json.loads(line.removeprefix("CONFTEST "))
    assert all(from_conftest[name].startswith("DENIED") for name in ATTEMPTS), json.dumps(
        from_conftest, indent=1
    )
    assert not model.tool_result(probe_conftest.tool_use_id).is_error  # written: the guard allowed it

    [(state, reason)] = stored(settings, "SELECT state, failure_reason FROM runs WHERE id = 1")
    checks = [
        json.loads(row[0])
        for row in stored(settings, "SELECT detail FROM run_events WHERE event = 'checks' ORDER BY id")
    ]
    assert state == "awaiting_approval", (reason, dev)
    assert checks and checks[-1]["ok"], checks  # verify ran the probe again: nothing escaped there either
    assert "✅ python -m pytest" in checks[-1]["summary"]

    assert _tree_digest(live) == before
    assert not (live / "cogs" / "planted.py").exists()
    assert accepted == []
    assert not _exists(host_tmp_file)
    for name, canary in canaries.items():
        assert canary not in sinks, f"the {name} canary leaked"


async def test_without_a_sandbox_fixes_refuse_and_investigations_get_no_bash(tmp_path: Path) -> None:
    """bwrap missing: /fix is refused saying why, and an investigation's Bash is refused, nothing run."""
    repo = copy_of_bot(tmp_path / "repo")
    async with ModelDouble() as model:
        settings = make_settings(
            repo / "data",
            repo_dir=repo,
            anthropic_api_key="test-key",
            anthropic_base_url=model.base_url,
            improve={"sandbox": {"bwrap": str(tmp_path / "no-bwrap")}},
        )
        async with running_world(settings, settle_timeout=120) as world:
            refused = await world.users["alice"].slash(world.dev, "fix", description="the roll is broken")
            await world.quiesce()
            [(runs,)] = stored(settings, "SELECT count(*) FROM runs")
            bash = tool_use("Bash", {"command": "ls cogs"})
            model.script(bash, _json_turn({"root_cause": "unknown", "files": [], "confidence": "low"}))
            await world.users["alice"].slash(world.dev, "investigate", description="what broke")
            await world.quiesce()
    assert refused.response is not None
    assert refused.response.content.startswith("I won't change my code here: fixes run their code in an OS")
    assert "no bubblewrap at" in refused.response.content
    assert runs == 0
    result = model.tool_result(bash.tool_use_id)
    assert result.is_error and "Bash runs only inside the OS sandbox, and the sandbox is unavailable" in (
        result.content
    )
    assert "dice.py" not in result.content


BOMB_CHECK = "python tests/bomb.py"
BOMB = """\
\"\"\"Holds a few processes while the bot is asked to roll, then forks without end.\"\"\"
import os, time


def hold():
    time.sleep(60)
    os._exit(0)


for _ in range(4):
    if os.fork() == 0:
        hold()
time.sleep(5)
count = 0
while count < 150:  # without a limit: fails, and stays below a sandbox this suite runs in
    try:
        if os.fork() == 0:
            hold()
        count += 1
    except OSError:
        time.sleep(0.01)
time.sleep(60)
"""


async def test_a_fork_bomb_in_a_check_ends_the_run_and_the_bot_keeps_answering(tmp_path: Path) -> None:
    """The agent's check forks without end: the sandbox stops it at the process limit, the run fails
    with that reason instead of a second attempt, and /roll is answered while it runs and after."""
    repo = copy_of_bot(tmp_path / "repo")
    async with ModelDouble() as model:
        settings = make_settings(
            repo / "data",
            repo_dir=repo,
            anthropic_api_key="test-key",
            anthropic_base_url=model.base_url,
            improve={
                "checks": [BOMB_CHECK],
                "max_attempts": 2,
                "check_timeout_s": 120,
                "stuck_timeout_s": 1e12,
                "sandbox": {"processes": 32},
            },
            observe={"announce_new_fingerprints": False},
        )
        async with running_world(settings, settle_timeout=180) as world:
            worktree = settings.data_dir.resolve() / "worktrees" / "run-1"
            model.script(
                _json_turn({"root_cause": "unknown", "files": [], "confidence": "low"}),
                _json_turn({"files": ["tests/bomb.py"], "changes": "add a check", "risk": "low"}),
                tool_use("Write", {"file_path": str(worktree / "tests" / "bomb.py"), "content": BOMB}),
                text("Added the check."),
            )
            alice = world.users["alice"]
            improve = world.bot.services.improve
            # Started as /fix starts it, but outside a Discord interaction, so that this test can talk
            # to the bot while the run works.
            run = await improve.request(
                kind="fix",
                requester_id=alice.id,
                channel_id=world.dev.id,
                incident_id=None,
                description="add a check that forks",
            )
            for _ in range(1200):
                await asyncio.sleep(0.1)
                if (await improve.runs.get(run.id)).state in ("verifying", "failed", "awaiting_approval"):
                    break
            before_roll = (await improve.runs.get(run.id)).state
            during = await alice.send(world.general, "!roll 2d6")
            after_roll = (await improve.runs.get(run.id)).state
            await improve.wait(run.id)
            await world.quiesce()
            after = await alice.send(world.general, "!roll 1d20")
            await world.quiesce()
            answers = [m.content for m in bot_messages(world, world.general)]
            dev = [m.content for m in bot_messages(world, world.dev)]

    assert (before_roll, after_roll) == ("verifying", "verifying")  # answered while the check ran
    assert any(a.startswith("🎲 `2d6`") for a in answers) and any(a.startswith("🎲 `1d20`") for a in answers)
    assert during.id < after.id
    [(state, stage, reason, attempts)] = stored(
        settings, "SELECT state, failure_stage, failure_reason, attempts FROM runs WHERE id = 1"
    )
    assert (state, stage, attempts) == ("failed", "verifying", 1), (reason, dev)
    assert reason == f"check `{BOMB_CHECK}`: process limit 32 reached"
    assert not any("The project's checks failed" in json.dumps(r.json) for r in model.message_requests)
    assert any(f"❌ Run #1 failed while verifying: check `{BOMB_CHECK}`: process limit 32" in d for d in dev)
