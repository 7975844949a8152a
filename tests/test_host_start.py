"""A bot that starts only as its own program starts it — a class that takes a settings object built in its
main.py from an untracked `.env`, a TOML file and an untracked config.json (tests/fixtures/hosts/almanac) —
started by the smoke load and the replay in the real sandbox against the loopback Discord: it starts
there (built bare from its class, as the smoke load used to, it cannot be), its files reach it with every
secret value replaced, and what keeps it from starting is said in one line."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mendbot.improve.agent.verify import HOST_SMOKE_CHECK, CheckResult, Verification, verify_commit
from mendbot.improve.agent.workspace import Workspace
from mendbot.improve.proof.bot_data import BotData
from mendbot.improve.proof.replay import HostBot, ReplayError, run_replay
from mendbot.improve.proof.replay_plan import ReplayCase, ReplayPlan
from mendbot.kernel.sections import HostConfig
from mendbot.trust import host_start
from mendbot.trust.host_files import PLACEHOLDER
from mendbot.trust.sandbox import Sandbox
from tests.harness.hosts import host_repo
from tests.harness.repo import git

SANDBOX = Sandbox()
# The live values: none of them may reach the sandbox, a log or a check's output.
TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0.GhJkLm.almanacLiveTokenDoNotLeak0123456789"
FORECAST_KEY = "fk-live-4417-do-not-leak"
FORECAST_PASSWORD = "hunter2-live-do-not-leak"
SECRETS = (TOKEN, FORECAST_KEY, FORECAST_PASSWORD)
# What the check below prints: every file of the tree it runs in, and its environment.
PEEK = """\
import os, sys
for directory, _, files in os.walk("."):
    for name in files:
        path = os.path.join(directory, name)
        if "/.git" not in path and not name.endswith(".pyc"):
            print("==", path)
            print(open(path, errors="replace").read())
print("== environment", dict(os.environ))
sys.exit(1)
"""


def _almanac(tmp_path: Path) -> Path:
    """The almanac's repository, with its untracked `.env` and config.json as its README would ask."""
    repo = host_repo(tmp_path, "almanac")
    (repo / ".env").write_text(f"ALMANAC_TOKEN={TOKEN}\nPREFIX=?\n")
    forecast = {"url": f"https://almanac:{FORECAST_PASSWORD}@forecast.invalid/v1", "api_key": FORECAST_KEY}
    (repo / "config.json").write_text(json.dumps({"forecast": forecast}))
    return repo


def _host(**changes: object) -> HostConfig:
    values: dict[str, object] = {
        "entry": ["python", "main.py"],
        "extensions": ["almanac.cogs.days"],
        "token_env": "ALMANAC_TOKEN",
        "files": [".env", "config.json"],
        **changes,
    }
    return HostConfig(**values)  # type: ignore[arg-type]


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


async def _verify(
    repo: Path, host: HostConfig, checks: list[str] | None = None, **kwargs: object
) -> Verification:
    workspace = Workspace(repo, repo.parent / "worktrees", host=host)
    head = git(repo, "rev-parse", "HEAD")
    return await verify_commit(
        workspace,
        head,
        checks or [],
        120,
        sandbox=SANDBOX,
        name="verify",
        **kwargs,  # type: ignore[arg-type]
    )


def _smoke(verification: Verification) -> CheckResult:
    smoke = verification.checks[-1]
    assert smoke.command == HOST_SMOKE_CHECK
    return smoke


async def test_the_smoke_load_starts_the_bot_as_its_own_program_does(tmp_path: Path) -> None:
    """Its main.py builds its settings and its bot; the smoke load passes once it has connected with its
    extension loaded. Its class built bare, as the smoke load used to build it, does not even construct."""
    repo = _almanac(tmp_path)
    bare = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", "from almanac.client import AlmanacBot; AlmanacBot()"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (
        "TypeError: AlmanacBot.__init__() missing 1 required positional argument: 'settings'" in bare.stderr
    )
    verification = await _verify(repo, _host())
    smoke = _smoke(verification)
    assert verification.ok and smoke.ok, smoke.output_tail
    assert "✅ almanac.cogs.days" in smoke.output_tail
    assert smoke.last_line == "1/1 extensions loaded; your bot connected"


async def test_without_its_files_the_bot_does_not_start_and_the_smoke_load_says_what_to_change(
    tmp_path: Path,
) -> None:
    """Not given the files git does not keep, its main.py cannot read config.json: one line says so and
    where to name it; the traceback is above it for the agent."""
    smoke = _smoke(await _verify(_almanac(tmp_path), _host(files=[])))
    assert not smoke.ok
    assert smoke.last_line == (
        "your bot did not start in the sandbox: FileNotFoundError: [Errno 2] No such file or directory: "
        "'config.json' — name `config.json` in mendbot.yaml's bot.files if git does not keep it"
    )
    assert "│ Traceback (most recent call last):" in smoke.output_tail


async def test_a_module_the_bot_imports_but_nobody_installed_is_named(tmp_path: Path) -> None:
    """A dependency missing from the environment: the line names it and where to install it."""
    repo = _almanac(tmp_path)
    client = (repo / "almanac" / "client.py").read_text()
    _commit(repo, {"almanac/client.py": "import forecastlib  # noqa: F401\n" + client}, "ask the forecast")
    smoke = _smoke(await _verify(repo, _host()))
    assert smoke.last_line == (
        "your bot did not start in the sandbox: ModuleNotFoundError: No module named 'forecastlib' — "
        "install `forecastlib` where mendbot runs (your bot's virtualenv)"
    )


async def test_an_extension_that_fails_fails_the_smoke_load_even_when_the_bot_carries_on(
    tmp_path: Path,
) -> None:
    """The bot catches the failure and connects all the same (as many do in setup_hook): the launcher saw
    the load fail, and that fails the smoke load."""
    repo = _almanac(tmp_path)
    client = (repo / "almanac" / "client.py").read_text()
    forgiving = client.replace(
        '        await self.load_extension("almanac.cogs.days")\n',
        "        for name in ('almanac.cogs.days', 'almanac.cogs.tides'):\n"
        "            try:\n"
        "                await self.load_extension(name)\n"
        "            except commands.ExtensionError as exc:\n"
        "                print(f'skipped {name}: {exc}')\n",
    )
    tides = (
        "from discord.ext import commands\n\nLOW_TIDE = 1 // 0\n\n\n"
        "async def setup(bot: commands.Bot) -> None:\n    pass\n"
    )
    _commit(repo, {"almanac/client.py": forgiving, "almanac/cogs/tides.py": tides}, "tides")
    smoke = _smoke(await _verify(repo, _host(extensions=["almanac.cogs.days", "almanac.cogs.tides"])))
    assert not smoke.ok
    assert "✅ almanac.cogs.days" in smoke.output_tail
    assert (
        "❌ almanac.cogs.tides — ZeroDivisionError: integer division or modulo by zero" in smoke.output_tail
    )
    assert smoke.last_line == "1 extension(s) of your bot failed to load: almanac.cogs.tides"


async def test_an_extension_mendbot_yaml_names_but_the_bot_does_not_load_fails_it(tmp_path: Path) -> None:
    """mendbot.yaml says the bot has `almanac.cogs.nights`; its start never loads it."""
    smoke = _smoke(
        await _verify(_almanac(tmp_path), _host(extensions=["almanac.cogs.days", "almanac.cogs.nights"]))
    )
    assert not smoke.ok
    assert smoke.last_line.startswith("your bot started without `almanac.cogs.nights`, which mendbot.yaml's")


async def test_a_file_that_does_not_compile_fails_it_though_the_start_never_imports_it(
    tmp_path: Path,
) -> None:
    """Every file is compiled, imported or not."""
    repo = _almanac(tmp_path)
    _commit(repo, {"almanac/someday.py": "def later(:\n    pass\n"}, "someday")
    smoke = _smoke(await _verify(repo, _host()))
    assert not smoke.ok
    assert "❌ almanac/someday.py: SyntaxError" in smoke.output_tail
    assert smoke.last_line == "1 file(s) of your bot do not compile"


async def test_no_secret_value_reaches_the_sandbox_its_checks_or_the_logs(tmp_path: Path) -> None:
    """A check run on the tree prints every file it sees there and its environment: the files are there,
    what is no secret as it was, every secret value replaced; the log says none of them either."""
    repo = _almanac(tmp_path)
    _commit(repo, {"peek.py": PEEK}, "a check that shows what it sees")
    with capture_logs() as logs:
        verification = await _verify(repo, _host(), ["python peek.py"])
    peek = verification.checks[0]
    assert not peek.ok and "== ./.env" in peek.output_tail and "== ./config.json" in peek.output_tail
    assert (
        "PREFIX=?" in peek.output_tail
        and f"https://almanac:{PLACEHOLDER}@forecast.invalid" in peek.output_tail
    )
    assert f'"api_key": "{PLACEHOLDER}"' in peek.output_tail
    shown = json.dumps([check.output_tail for check in verification.checks]) + repr(logs)
    for secret in SECRETS:
        assert secret not in shown
    assert (repo / ".env").read_text().startswith(f"ALMANAC_TOKEN={TOKEN}")  # the live file as it was
    assert _smoke(verification).ok


def _plan() -> ReplayPlan:
    case = ReplayCase(
        key="today",
        kind="command:today",
        name="today",
        options={"text": "?today"},
        fingerprint=None,
        recorded_ms=5,
    )
    return ReplayPlan([case], ["almanac/cogs/days.py"], latency=False)


async def test_the_replay_starts_the_bot_with_the_files_git_does_not_keep(tmp_path: Path) -> None:
    """The replay's copy of the tree has the bot's `.env` and config.json (secrets replaced, its token the
    observer's): the bot starts and answers; without them it could not start at all."""
    repo = _almanac(tmp_path)
    head = git(repo, "rev-parse", "HEAD")
    without = Workspace(repo, tmp_path / "worktrees", host=_host(files=[]))
    async with without.checkout(head, name="replay") as checkout:
        with pytest.raises(ReplayError, match=r"config\.json"):
            await run_replay(checkout, _plan(), sandbox=SANDBOX, host=HostBot(_host(files=[]), repo))
    workspace = Workspace(repo, tmp_path / "worktrees", host=_host())
    async with workspace.checkout(head, name="replay") as checkout:
        results = await run_replay(checkout, _plan(), sandbox=SANDBOX, host=HostBot(_host(), repo))
        copied = (checkout / ".env").read_text() + (checkout / "config.json").read_text()
    assert results["today"].ok and results["today"].reply == "Fair winds, alice!"
    assert "PREFIX=?" in copied and PLACEHOLDER in copied
    for secret in SECRETS:
        assert secret not in copied


async def test_a_replay_sends_no_call_after_the_one_that_was_enough(tmp_path: Path) -> None:
    """What a branch timed again does once a call is slow again: the calls after the first answer its
    `enough` accepts are not sent (that answer is kept)."""
    repo = _almanac(tmp_path)
    head = git(repo, "rev-parse", "HEAD")
    first = _plan().cases[0]
    plan = ReplayPlan([first, replace(first, key="again")], ["almanac/cogs/days.py"], latency=False)
    workspace = Workspace(repo, tmp_path / "worktrees", host=_host())
    async with workspace.checkout(head, name="replay") as checkout:
        results = await run_replay(
            checkout, plan, sandbox=SANDBOX, host=HostBot(_host(), repo), enough=lambda key, _: key == "today"
        )
    assert list(results) == ["today"] and results["today"].reply == "Fair winds, alice!"


async def test_a_cancelled_replay_kills_its_bot_rather_than_waiting_for_it_to_end(tmp_path: Path) -> None:
    """A replay cancelled (a SIGTERM's drain, a run's deadline) ends its bot at once, though it is in the
    middle of a call: asking the bot to end, then waiting out its SIGTERM, held the cancellation for
    `_STOP_TIMEOUT_S` each — with a bot that ends on neither, nothing less than the first."""
    repo = _almanac(tmp_path)
    days = (repo / "almanac" / "cogs" / "days.py").read_text()
    stubborn = days.replace(
        "        greeting = ",
        "        import os, signal\n"
        "        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # it ends neither on a SIGTERM\n"
        "        os._exit = lambda code: None  # nor when the launcher is asked to end it\n"
        "        greeting = ",
    ).replace("        settings = ", "        await __import__('asyncio').sleep(600)\n        settings = ")
    head = _commit(repo, {"almanac/cogs/days.py": stubborn}, "a bot that will not end")
    (tmp_path / "snapshot").mkdir()
    (tmp_path / "snapshot" / "notes.json").write_text("{}")  # its data: the launcher is asked to end it
    today = _plan().cases[0]
    forecast = replace(
        today, key="forecast", kind="command:forecast", name="forecast", options={"text": "?forecast"}
    )
    plan = ReplayPlan([today, forecast], ["almanac/cogs/days.py"], latency=False)
    loop = asyncio.get_running_loop()
    cancelled_at: list[float] = []

    def cancel() -> None:
        cancelled_at.append(loop.time())
        replaying.cancel()

    def cancel_once_answered(key: str, _: float) -> bool:  # on the replay's own loop, in its thread
        loop.call_soon_threadsafe(cancel)  # as it waits for the forecast, which takes ten minutes
        return False

    workspace = Workspace(repo, tmp_path / "worktrees", host=_host())
    async with workspace.checkout(head, name="replay") as checkout:
        data = BotData(tmp_path / "snapshot", None, files=("notes.json",))
        host = HostBot(_host(), repo)
        replaying = asyncio.ensure_future(
            run_replay(checkout, plan, sandbox=SANDBOX, host=host, data=data, enough=cancel_once_answered)
        )
        with pytest.raises(asyncio.CancelledError):
            await replaying
        over_in = loop.time() - cancelled_at[0]
    assert over_in < host_start._STOP_TIMEOUT_S


async def test_a_bot_that_does_not_start_on_main_either_does_not_fail_the_change(tmp_path: Path) -> None:
    """Main's bot cannot start (a module nobody installed): a change that starts no worse is not failed
    for it; a change that also breaks a file is."""
    repo = _almanac(tmp_path)
    client = (repo / "almanac" / "client.py").read_text()
    base = _commit(
        repo, {"almanac/client.py": "import forecastlib  # noqa: F401\n" + client}, "ask the forecast"
    )
    days = (repo / "almanac" / "cogs" / "days.py").read_text()
    polite = _commit(
        repo, {"almanac/cogs/days.py": days.replace("greeting}, ", "greeting}, dear ")}, "polite"
    )
    verification = await _verify(repo, _host(), base=base)
    assert verification.ok and _smoke(verification).on_base == "main"
    _commit(repo, {"almanac/cogs/days.py": days + "def broken(:\n"}, "broken")
    verification = await _verify(repo, _host(), base=base)
    assert not verification.ok and _smoke(verification).on_base is None
    assert polite != base


async def test_an_extension_that_stops_the_bot_is_named_at_once(tmp_path: Path) -> None:
    """An extension that fails in the bot's setup_hook stops its program: the smoke load says which and
    why as soon as the program ends, not at its time limit."""
    repo = _almanac(tmp_path)
    _commit(repo, {"almanac/cogs/days.py": "LEAP = 1 // 0\n"}, "a day too many")
    smoke = _smoke(await _verify(repo, _host()))
    assert smoke.last_line == (
        "your bot did not start in the sandbox: extension `almanac.cogs.days` failed to load "
        "(ZeroDivisionError: integer division or modulo by zero)"
    )
    assert smoke.duration_s < 60  # its time limit is 120 s


async def test_a_bot_that_builds_a_dns_resolver_when_imported_starts_offline(tmp_path: Path) -> None:
    """The sandbox has no network but a resolver's configuration (as dnspython reads it at import): a bot
    that builds one as its modules load starts there; its lookups would fail as they do offline."""
    repo = _almanac(tmp_path)
    days = (repo / "almanac" / "cogs" / "days.py").read_text()
    resolver = (
        "NAMESERVERS = [line.split()[1] for line in open('/etc/resolv.conf')\n"
        "               if line.startswith('nameserver')]\n"
    )
    _commit(repo, {"almanac/cogs/days.py": resolver + days}, "ask the weather's servers")
    verification = await _verify(repo, _host())
    assert verification.ok, _smoke(verification).output_tail
