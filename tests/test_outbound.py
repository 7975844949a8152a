"""The bot's calls to other services: recorded through the HTTP clients' own hooks with the handler and
the code that made them, folded and redacted, grouped by service, and a service that times out or
rate-limits opens one incident. The other service is a real HTTP server on 127.0.0.1 (tests/harness/
provider.py); the bot is a real discord.py bot with mendbot attached."""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import discord
import httpx
import msgspec
import pytest
from discord.ext import commands

from mendbot.db import actions as action_queries
from mendbot.db import core
from mendbot.db import incidents as incident_queries
from mendbot.db.connection import open_database
from mendbot.db.records import ActionRecord
from mendbot.improve.evidence.gather import build_evidence
from mendbot.improve.evidence.target import resolve_target
from mendbot.kernel.sections import ObserveConfig, ServiceRule
from mendbot.observe.capture import start_capture
from mendbot.observe.detector import AnomalyDetector, Signal, restore_windows
from mendbot.observe.outbound import (
    failed_service,
    is_discord_host,
    outcome_of,
    retry_after_seconds,
    route_template,
    service_of,
)
from mendbot.runtime.attachment import attach, detach
from mendbot.runtime.services import Services, build_services
from mendbot.trust.loopback_discord import DiscordDouble
from tests.harness.discord import make_settings
from tests.harness.provider import Provider
from tests.harness.repo import copy_of_bot, git

T = TypeVar("T")
NOW = 1_800_000_000.0
KEY = "sk-live-provider-secret-0123456789abcdef"


# -- what a call is: its route, its answer, its service ---------------------------------------------


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/users/123/posts", "/users/{id}/posts"),
        ("/v2/guilds/1204881234567890123/members/42.json", "/v2/guilds/{id}/members/{id}.json"),
        ("/orders/3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e", "/orders/{uuid}"),
        ("/blobs/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b", "/blobs/{hex}"),
        ("/bot123456:AAH5kq9ZxYwVvUu-TtSsRrQqPp/sendMessage", "/{token}/sendMessage"),
        ("/search/cats%20and%20dogs?q=x&api_key=secret", "/search/{value}"),
        ("/v1/search", "/v1/search"),
        ("", "/"),
    ],
)
def test_a_path_is_folded_to_its_route(path: str, route: str) -> None:
    """Ids, long numbers, UUIDs, hashes, tokens and typed values in a path are folded; no query is kept."""
    assert route_template(path) == route


def test_answers_are_sorted_into_what_counts_against_a_service() -> None:
    """Timeouts, connection errors, 429 and 5xx count against a service; a 404 or a cancelled call not."""
    assert outcome_of(None, TimeoutError()) == "timeout"
    assert outcome_of(429, None) == "rate_limited"
    assert outcome_of(503, None) == "server_error"
    assert outcome_of(404, None) == "client_error"
    assert outcome_of(None, aiohttp.ClientConnectionError("refused")) == "error"
    assert outcome_of(None, asyncio.CancelledError()) == "cancelled"
    assert outcome_of(None, httpx.ReadTimeout("slow"), timed_out=True) == "timeout"
    assert retry_after_seconds("30") == 30.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0
    assert retry_after_seconds("soon") is None


def test_a_service_is_its_host_and_discord_is_never_one() -> None:
    """A service is named by its host (and a port not the scheme's); Discord's hosts are not the bot's."""
    assert service_of("API.Search.Example", 443, "https") == "api.search.example"
    assert service_of("127.0.0.1", 8080, "http") == "127.0.0.1:8080"
    assert is_discord_host("discord.com") and is_discord_host("cdn.discordapp.com")
    assert not is_discord_host("notdiscord.com")


# -- recorded from the bot's sessions and clients ---------------------------------------------------


@pytest.fixture
async def attached_bot(tmp_path: Path) -> AsyncIterator[tuple[Services, list[ActionRecord]]]:
    """A discord.py bot with mendbot attached (not logged in), and every record mendbot makes."""
    services = await build_services(make_settings(tmp_path / "data"), watch_prompts=False)
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default())
    attach(bot, services)
    records: list[ActionRecord] = []
    services.recorder.subscribe(records.append)
    try:
        yield services, records
    finally:
        await detach(bot)
        await services.aclose()


async def in_handler(kind: str, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work` as a handler of `kind` runs (its own task, its capture current)."""

    async def handler() -> T:
        start_capture(kind, {"name": kind})
        return await work()

    return await asyncio.create_task(handler())


async def lookup(session: aiohttp.ClientSession, provider: Provider, query: str) -> Any:
    """The bot's code calling the provider (the frame a record names)."""
    params = {"q": query, "api_key": KEY}
    async with session.get(f"{provider.url}/v1/users/1204881234567890123/search", params=params) as response:
        return await response.json()


def calls(records: list[ActionRecord]) -> list[ActionRecord]:
    return [record for record in records if record.kind.startswith("http:")]


async def test_a_timed_out_call_is_recorded_with_its_handler_and_code(
    attached_bot: tuple[Services, list[ActionRecord]],
) -> None:
    """A call that times out: a failed `http:<service>` record naming the handler it ran in, the code that
    made it, the route, the timeout; the exception the bot's code got is marked with the service."""
    _, records = attached_bot
    timeout = aiohttp.ClientTimeout(total=0.2)
    async with Provider(mode="hold") as provider, aiohttp.ClientSession(timeout=timeout) as session:
        with pytest.raises(TimeoutError) as raised:
            await in_handler("command:search", lambda: lookup(session, provider, "cats"))
    (call,) = calls(records)
    assert call.kind == f"http:{provider.service}" and not call.ok
    assert call.source == "command:search" and call.extra["command"] == "command:search"
    assert call.extra["call"] | {"latency_ms": 0} == {
        "client": "aiohttp",
        "method": "GET",
        "route": "/v1/users/{id}/search",
        "status": None,
        "outcome": "timeout",
        "latency_ms": 0,
        "timeout_s": 0.2,
        "query": ["q", "api_key"],
        "error_type": raised.value.__class__.__name__,
    }
    assert call.frames[-1].startswith("tests/test_outbound.py:") and call.frames[-1].endswith(":lookup")
    assert call.error_message == "GET /v1/users/{id}/search timed out after 0.2 s"
    assert call.fingerprint is not None
    assert failed_service(raised.value) == (provider.service, False)


async def test_a_call_its_callers_own_timeout_cancelled_is_the_services_timeout(
    attached_bot: tuple[Services, list[ActionRecord]],
) -> None:
    """`asyncio.wait_for` or `asyncio.timeout` around a call gives up before the service answers: the call
    is recorded as cancelled (which alone says nothing), the handler's TimeoutError says it timed out, and
    the service rule counts each such call once."""
    services, records = attached_bot
    async with Provider(mode="hold") as provider, aiohttp.ClientSession() as session:

        async def search(n: int) -> None:
            try:
                if n % 2:
                    await asyncio.wait_for(lookup(session, provider, "cats"), 0.2)
                else:
                    async with asyncio.timeout(0.2):
                        await lookup(session, provider, "cats")
            except TimeoutError as exc:  # what the one error path records of the handler's failure
                services.recorder.record("command:search", "Search", ok=False, duration_ms=200.0, error=exc)

        for n in range(4):
            await in_handler("command:search", functools.partial(search, n))
    assert [call.extra["call"]["outcome"] for call in calls(records)] == ["cancelled"] * 4
    failures = [record for record in records if record.kind == "command:search"]
    assert [(r.extra["outbound"], r.extra["outbound_outcome"]) for r in failures] == [
        (provider.service, "timeout")
    ] * 4
    detector, signals = _detector()
    for record in records:
        detector.process(record)
    (signal,) = signals
    assert signal.kind == f"http:{provider.service}"
    assert signal.summary.startswith(f"4 timeouts in the last hour from {provider.service} (4 of 4 calls")


async def test_a_429_is_recorded_with_its_retry_after(
    attached_bot: tuple[Services, list[ActionRecord]],
) -> None:
    """A 429 answer is a failed call, with its status and the Retry-After it was answered with."""
    _, records = attached_bot
    async with Provider(mode="rate_limit", retry_after="30") as provider, aiohttp.ClientSession() as session:
        await in_handler("command:search", lambda: lookup(session, provider, "cats"))
    (call,) = calls(records)
    assert not call.ok and call.error_type == "HTTP 429"
    assert (call.extra["call"]["status"], call.extra["call"]["retry_after_s"]) == (429, 30.0)
    assert call.error_message == "GET /v1/users/{id}/search answered 429 Too Many Requests (Retry-After 30 s)"


async def test_secrets_in_the_url_and_headers_never_reach_a_record(
    attached_bot: tuple[Services, list[ActionRecord]],
) -> None:
    """A key in the query string or the path, an Authorization header, what the user searched for: none of
    it is in the record, nor in the action journal."""
    services, records = attached_bot
    headers = {"Authorization": f"Bearer {KEY}", "X-Api-Key": KEY}
    async with Provider() as provider, aiohttp.ClientSession(headers=headers) as session:

        async def call() -> None:
            url = f"{provider.url}/bot{KEY}/search?q=my+private+words&api_key={KEY}&token=t0k3n-value"
            async with session.get(url) as response:
                await response.read()

        await in_handler("command:search", call)
    await services.recorder.flush()
    (record,) = calls(records)
    assert record.extra["call"]["route"] == "/{token}/search"
    assert record.extra["call"]["query"] == ["q", "api_key", "token"]
    journal = (services.settings.log_dir / "actions.ndjson").read_text()
    assert record.kind in journal
    for secret in (KEY, "private", "t0k3n-value"):
        assert secret not in journal and secret not in repr(record)


async def test_discord_pys_own_session_is_not_the_bots(
    attached_bot: tuple[Services, list[ActionRecord]],
) -> None:
    """discord.py logging in (its own session, here to a loopback Discord on 127.0.0.1) records nothing,
    even inside a handler: Discord's API is not another service of the bot's."""
    _, records = attached_bot
    async with DiscordDouble() as discord_api:
        with discord_api.pointed_at():
            http = discord.http.HTTPClient(asyncio.get_running_loop())
            try:
                await in_handler("command:whoami", lambda: http.static_login(discord_api.token))
            finally:
                await http.close()
    assert calls(records) == []


def _session_made_in(*modules: str) -> aiohttp.ClientSession:
    """A session created by code of the last of `modules`, called by code of the one before it, and so on
    (as mendbot's model gateway, discord.py, or a client library a bot uses create theirs). Their code is
    outside the repository, as an installed package's is."""
    make: Callable[[], Any] = aiohttp.ClientSession
    for module in reversed(modules):
        namespace: dict[str, Any] = {"__name__": module, "inner": make}
        source = "def make():\n    return inner()\n"
        exec(compile(source, f"/venv/site-packages/{module.replace('.', '/')}.py", "exec"), namespace)
        make = namespace["make"]
    session: aiohttp.ClientSession = make()
    return session


async def test_mendbots_own_sessions_and_calls_outside_handlers_are_not_recorded(
    attached_bot: tuple[Services, list[ActionRecord]],
) -> None:
    """A session mendbot creates (its model gateway's, GitHub's) is not the bot's; nor is a call the bot
    makes outside every handler (at start-up); a call to Discord's own hosts never is."""
    _, records = attached_bot
    async with Provider() as provider:
        async with _session_made_in("mendbot.trust.gateway") as mendbots:
            await in_handler("command:search", lambda: lookup(mendbots, provider, "cats"))
        async with aiohttp.ClientSession() as session:
            await lookup(session, provider, "at start-up")
    assert calls(records) == []
    assert len(provider.requests) == 2


async def test_a_library_in_between_leaves_it_to_whoever_called_it(
    attached_bot: tuple[Services, list[ActionRecord]],
) -> None:
    """A client library's session is the bot's when the bot's code called the library (its own code, or
    a handler of the bot's mendbot runs, through discord.py, for a bot installed as a package), and not
    when mendbot's code did (its GitHub client)."""
    _, records = attached_bot
    async with Provider() as provider:
        for made_by in (
            ["searchlib.client"],  # called from here, the bot's own code in its repository
            ["mendbot.runtime.recording", "discord.ext.commands.core", "shopbot.cogs", "searchlib.client"],
            ["mendbot.forge.github", "githubkit.core"],
        ):
            async with _session_made_in(*made_by) as session:
                await in_handler("command:search", lambda: lookup(session, provider, "cats"))
    assert len(calls(records)) == 2 and len(provider.requests) == 3


async def test_an_httpx_client_of_the_bots_is_recorded_the_same_way(
    attached_bot: tuple[Services, list[ActionRecord]],
) -> None:
    """httpx's AsyncClient (its transport is its hook): a read timeout and a 429, recorded as aiohttp's."""
    _, records = attached_bot
    async with Provider(mode="hold") as provider, httpx.AsyncClient(timeout=0.2) as client:

        async def search() -> None:
            await client.get(f"{provider.url}/v1/search", params={"q": "cats", "api_key": KEY})

        with pytest.raises(httpx.ReadTimeout):
            await in_handler("app:search", search)
        provider.mode = "rate_limit"
        await in_handler("app:search", search)
    timed_out, limited = calls(records)
    assert timed_out.extra["call"]["outcome"] == "timeout" and timed_out.extra["call"]["client"] == "httpx"
    assert timed_out.source == "app:search" and timed_out.frames[-1].endswith(":search")
    assert limited.extra["call"]["status"] == 429 and limited.extra["call"]["retry_after_s"] == 30.0


_IDEMPOTENT = """
import asyncio, tempfile
from pathlib import Path
import aiohttp, discord, httpx
from discord.ext import commands
from mendbot.runtime.attachment import attach, detach
from mendbot.runtime.services import build_services
from tests.harness.discord import make_settings
from tests.test_outbound import Provider, calls, in_handler, lookup

async def main() -> None:
    own_aiohttp, own_httpx = aiohttp.ClientSession.__init__, httpx.AsyncClient.__init__
    with tempfile.TemporaryDirectory() as data:
        services = await build_services(make_settings(Path(data) / "data"), watch_prompts=False)
        bot = commands.Bot(command_prefix="!", intents=discord.Intents.default())
        records = []
        services.recorder.subscribe(records.append)
        try:
            attach(bot, services)
            wrapped = aiohttp.ClientSession.__init__
            assert wrapped is not own_aiohttp and wrapped.__wrapped__ is own_aiohttp, "not wrapped once"
            attach(bot, services)
            assert aiohttp.ClientSession.__init__ is wrapped, "wrapped twice"
            async with Provider() as provider, aiohttp.ClientSession() as session:
                await detach(bot)
                assert aiohttp.ClientSession.__init__ is own_aiohttp, "aiohttp's own not put back"
                assert httpx.AsyncClient.__init__ is own_httpx, "httpx's own not put back"
                await in_handler("command:search", lambda: lookup(session, provider, "cats"))
        finally:
            await detach(bot)
            await services.aclose()
        assert calls(records) == [], "a session made while attached recorded once detached"
        print("= done")

asyncio.run(main())
"""


def _in_a_process_of_its_own(script: str) -> subprocess.CompletedProcess[str]:
    """`script` run by a fresh interpreter from the repository's root (its output captured)."""
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_instrumenting_is_idempotent_and_detaching_puts_the_clients_back() -> None:
    """Attaching wraps `ClientSession.__init__` and `AsyncClient.__init__` once; detaching the last bot puts
    the libraries' own back, and a session made while attached records nothing once detached. In a process
    of its own: in the suite's, a bot another test left attached is a bot still there."""
    done = _in_a_process_of_its_own(_IDEMPOTENT)
    assert done.returncode == 0 and "= done" in done.stdout, done.stderr[-2000:]


_IMPORTED_AFTER = """
import asyncio, sys, tempfile
from pathlib import Path
import discord
from discord.ext import commands
from mendbot.runtime.attachment import attach, detach
from mendbot.runtime.services import build_services
from tests.harness.discord import make_settings

async def main() -> None:
    with tempfile.TemporaryDirectory() as data:
        services = await build_services(make_settings(Path(data) / "data"), watch_prompts=False)
        bot = commands.Bot(command_prefix="!", intents=discord.Intents.default())
        attach(bot, services)
        assert "httpx" not in sys.modules, "attaching imported httpx"
        import httpx

        print("=", "wrapped" if hasattr(httpx.AsyncClient.__init__, "__wrapped__") else "plain")
        print("=", type(httpx.__loader__).__name__)
        await detach(bot)
        print("=", "wrapped" if hasattr(httpx.AsyncClient.__init__, "__wrapped__") else "plain")
        await services.aclose()

asyncio.run(main())
"""


def test_httpx_imported_after_mendbot_attached_is_observed_and_not_imported_before() -> None:
    """Attaching does not import httpx (~0.1 s); a bot that imports it later has its clients observed,
    httpx keeps its own loader, and detaching puts its `__init__` back."""
    done = _in_a_process_of_its_own(_IMPORTED_AFTER)
    assert done.returncode == 0, done.stderr[-2000:]
    said = [line.removeprefix("= ") for line in done.stdout.splitlines() if line.startswith("= ")]
    assert said == ["wrapped", "SourceFileLoader", "plain"]


# -- the service rule ------------------------------------------------------------------------------------


def _call(
    ts: float, outcome: str, *, status: int | None = None, retry_after: float | None = None
) -> ActionRecord:
    failed = outcome != "ok"
    return ActionRecord(
        ts=ts,
        kind="http:search.example",
        source="command:search",
        ok=not failed,
        duration_ms=2000.0 if outcome == "timeout" else 40.0,
        error_type=("TimeoutError" if status is None else f"HTTP {status}") if failed else None,
        error_message=(
            ("GET /v1/search timed out after 2 s" if status is None else f"GET /v1/search answered {status}")
            if failed
            else None
        ),
        fingerprint=(outcome[0] * 16 if status is None else f"{status:016d}") if failed else None,
        frames=["cogs/search.py:31:lookup"] if failed else [],
        extra={
            "call": {"outcome": outcome, "status": status, "retry_after_s": retry_after, "method": "GET"},
            "command": "command:search",
        },
    )


def _detector(**service: Any) -> tuple[AnomalyDetector, list[Signal]]:
    signals: list[Signal] = []
    config = ObserveConfig(service=ServiceRule(**service))
    return AnomalyDetector(config, signals.append), signals


def test_the_service_rule_fires_on_timeouts_naming_the_service_and_the_code() -> None:
    """Four timeouts among five calls in the hour: one warning naming the service, how it failed and the
    code that called it; more timeouts in the same storm signal nothing more."""
    detector, signals = _detector()
    detector.process(_call(0.0, "ok"))
    for n in range(1, 7):
        detector.process(_call(n * 60.0, "timeout"))
    (signal,) = signals
    assert (signal.rule, signal.level, signal.kind, signal.fingerprint) == (
        "service",
        "warning",
        "http:search.example",
        None,
    )
    assert signal.summary == (
        "4 timeouts in the last hour from search.example (4 of 5 calls failed), from `cogs/search.py:lookup`"
    )


def test_the_service_rule_fires_on_429s_with_their_retry_after() -> None:
    """429 answers count against the service, and the signal says the Retry-After it asked for."""
    detector, signals = _detector()
    for n in range(4):
        detector.process(_call(n * 10.0, "rate_limited", status=429, retry_after=30.0))
    (signal,) = signals
    assert signal.summary.startswith("4 rate limits (429) with Retry-After 30 s in the last hour")


def test_the_service_rule_keeps_to_its_thresholds() -> None:
    """Below `min_failures`, or at no more than `threshold` of the calls, the rule is quiet (config.yaml)."""
    detector, signals = _detector()
    for n in range(3):
        detector.process(_call(n * 10.0, "timeout"))
    assert signals == []
    strict, strict_signals = _detector(min_failures=2, threshold=0.5)
    for n in range(4):
        strict.process(_call(n * 10.0, "timeout" if n % 2 else "ok"))
    assert strict_signals == []  # 2 of 4: not more than half
    strict.process(_call(50.0, "timeout"))
    assert len(strict_signals) == 1


async def test_a_service_storm_straddling_a_restart_is_signalled_once(engine_db: core.Connection) -> None:
    """Two timeouts before a restart, two after: the four in the hour fire the service rule once, with
    all four in its summary; a storm already firing when the bot restarted signals nothing more."""
    stored = [_call(NOW - 1800 + n, "timeout") for n in range(2)]
    await action_queries.insert_many(engine_db, stored)
    detector, signals = _detector()
    await restore_windows(engine_db, detector, upto=await action_queries.last_id(engine_db), now=NOW)
    for n in range(2):
        detector.process(_call(NOW + n, "timeout"))
    (signal,) = signals
    assert signal.summary.startswith("4 timeouts in the last hour from search.example (4 of 4 calls failed)")
    await action_queries.insert_many(engine_db, [_call(NOW + n, "timeout") for n in range(2)])
    again, more = _detector()
    await restore_windows(engine_db, again, upto=await action_queries.last_id(engine_db), now=NOW + 10)
    again.process(_call(NOW + 11, "timeout"))
    assert more == []


def test_a_handler_failing_on_a_failed_call_opens_no_incident_of_its_own() -> None:
    """The command that crashed on the timeout is the service's storm (`extra.outbound`): none of the
    error rate, repeat or new-fingerprint rules counts it."""
    detector, signals = _detector()
    for n in range(6):
        detector.process(
            ActionRecord(
                ts=n * 10.0,
                kind="command:search",
                source="Search",
                ok=False,
                duration_ms=2000.0,
                error_type="TimeoutError",
                fingerprint="a" * 16,
                extra={"outbound": "search.example"},
            )
        )
    assert signals == []


# -- the evidence a run is given ------------------------------------------------------------------------

SEARCH_COG = (Path(__file__).parent / "fixtures" / "search_cog.py").read_text()


def _line_of(text: str) -> int:
    """The number of the cog's first line holding `text`."""
    return next(n for n, line in enumerate(SEARCH_COG.splitlines(), 1) if text in line)


LOOKUP_LINE, COMMAND_LINE = _line_of("session.get("), _line_of("self.lookup(")
CALLER = [f"cogs/search.py:{COMMAND_LINE}:search", f"cogs/search.py:{LOOKUP_LINE}:lookup"]


async def _service_storm(db: Any) -> int:
    """A search provider's storm as recorded: one call answered, four timed out (each crashing the
    !search that made it), one rate-limited; and the incident the service rule opened."""
    service = "http:search.example"
    records = [_call(NOW - 300, "ok")]
    for n in range(4):
        timeout = _call(NOW - 200 + n, "timeout")
        call = timeout.extra["call"] | {"route": "/v1/search", "timeout_s": 2.0}
        records.append(msgspec.structs.replace(timeout, frames=CALLER, extra={**timeout.extra, "call": call}))
        records.append(
            ActionRecord(
                ts=NOW - 199 + n,
                kind="command:search",
                source="Search",
                ok=False,
                duration_ms=2001.0,
                user_id=300 + n,
                error_type="TimeoutError",
                error_message="",
                fingerprint="c" * 16,
                frames=CALLER,
                extra={"outbound": "search.example"},
                invocation={"name": "!search", "options": {"text": f"!search cats {n}"}},
            )
        )
    records.append(_call(NOW - 100, "rate_limited", status=429, retry_after=30.0))
    await action_queries.insert_many(db, records)
    return await incident_queries.insert(
        db,
        {
            "rule": "service",
            "rules": ["service"],
            "level": "warning",
            "kind": service,
            "fingerprint": None,
            "state": "open",
            "summary": "4 timeouts in the last hour from search.example (4 of 5 calls failed),"
            " from `cogs/search.py:lookup`",
            "first_seen": NOW - 197,
            "last_seen": NOW - 100,
            "count": 5,
            "user_ids": [],
            "sample": {"error_type": "TimeoutError", "frames": CALLER},
            "updated_at": NOW,
        },
    )


async def test_the_evidence_of_a_service_incident_carries_its_calls_and_the_code_that_made_them(
    tmp_path: Path,
) -> None:
    """A run on a service's incident is shown the recent calls to it (status, latency, timeout,
    Retry-After, the code that made each), the handler failures they raised, and the function that made
    them first among the suspects."""
    repo = copy_of_bot(tmp_path / "repo")
    (repo / "cogs" / "search.py").write_text(SEARCH_COG, encoding="utf-8")
    git(repo, "add", "cogs/search.py")
    git(repo, "commit", "-q", "-m", "Search the web")
    db = await open_database(tmp_path / "m.db")
    try:
        incident = await _service_storm(db)
        pack = await build_evidence(
            db, repo, incident_id=incident, description="the search keeps timing out", now=NOW
        )
    finally:
        await db.close()
    assert [r.kind for r in pack.outbound] == ["http:search.example"] * 6
    assert {r.kind for r in pack.failures} == {"command:search"} and pack.tracebacks
    assert (pack.suspects[0].path, pack.suspects[0].function) == ("cogs/search.py", "Search.lookup")
    assert any("made the failing calls to search.example" in reason for reason in pack.suspects[0].reasons)
    text = pack.render()
    assert "Calls to search.example (6 recent, 5 failed; newest first)" in text
    assert "GET /v1/search → timeout, 2000 ms, timeout 2 s · from command:search at" in text
    assert "→ 429 (rate_limited), 40 ms, Retry-After 30 s" in text


@pytest.mark.parametrize(
    "complaint",
    ["the search keeps timing out", "@mendbot searching is timing out again", "the provider times out"],
)
async def test_a_complaint_in_plain_words_resolves_to_the_services_incident(
    tmp_path: Path, complaint: str
) -> None:
    """ "the search keeps timing out" (no model) means the service's incident: the command it names made the
    failing calls, and the words meet what the calls say happened."""
    db = await open_database(tmp_path / "m.db")
    try:
        incident = await _service_storm(db)
        kinds = {"command:search", "http:search.example", "command:roll", "app:remind"}
        target = await resolve_target(db, complaint, replied_incident_id=None, known_kinds=kinds, now=NOW)
    finally:
        await db.close()
    assert (target.incident_ids, target.ambiguous) == ([incident], False), target
