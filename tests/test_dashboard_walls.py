"""The dashboard's walls over real HTTP on 127.0.0.1: who is let in is decided at every request against
the allow-list as it is now; the sign-in takes a form from its own page only; every number in a URL is
read one way and never answers 500; slow and greedy clients are cut off or refused; every response,
aiohttp's own errors included, carries the security headers; a chart's labels pass the redactor."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from mendbot.db import actions as action_queries
from mendbot.db import signins
from mendbot.db.records import ActionRecord
from mendbot.kernel.sections import AccessConfig
from mendbot.tools.playground import VirtualWorld
from tests.harness.dashboard import Served, allow, git_change, seed_hostile_run, serving
from tests.harness.discord import make_settings, running_world
from tests.harness.playground import PlaygroundProcess

REPO = Path(__file__).resolve().parent.parent
DEV, OTHER = 4242, 4343  # two allow-listed developers
SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[VirtualWorld]:
    repo = tmp_path / "repo"
    base, head = git_change(repo)
    settings = make_settings(
        tmp_path / "data",
        repo_dir=repo,
        dashboard={"read_timeout_s": 1, "streams_per_session": 3, "streams": 5},
    )
    async with running_world(settings, real_clock=True) as world:
        allow(world, DEV, OTHER)
        await seed_hostile_run(world, base, head)
        yield world


@pytest.fixture
async def served(world: VirtualWorld) -> AsyncIterator[Served]:
    async with serving(world) as served:
        yield served


def _client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def _link_parts(link: str) -> tuple[str, str]:
    match = re.search(r"[?&]u=(\d+)&t=([\w-]+)", link)
    assert match is not None, link
    return match.group(1), match.group(2)


async def _signed_in(client: aiohttp.ClientSession, served: Served, user_id: int) -> None:
    link = await served.signin.link(user_id)
    assert link is not None
    user, token = _link_parts(link)
    async with client.post(f"{served.url}/signin", data={"u": user, "t": token}, allow_redirects=False) as r:
        assert r.status == 303


def _cookie(client: aiohttp.ClientSession) -> str:
    return next(c.value for c in client.cookie_jar if c.key == "mendbot_session")


async def _sessions(world: VirtualWorld, user_id: int) -> int:
    rows = await signins.signed_in_users(world.bot.services.db, now=0)
    return rows.count(user_id)


# -- who is let in ------------------------------------------------------------------------------


def _take_off_in_place(world: VirtualWorld, user_id: int) -> None:
    world.bot.services.settings.access.allowed_user_ids.remove(user_id)


def _take_off_by_reload(world: VirtualWorld, user_id: int) -> None:
    settings = world.bot.services.settings
    kept = [uid for uid in settings.access.allowed_user_ids if uid != user_id]
    settings.access = AccessConfig(allowed_user_ids=kept, allowed_role_ids=settings.access.allowed_role_ids)


@pytest.mark.parametrize("take_off", [_take_off_in_place, _take_off_by_reload], ids=["edited", "reloaded"])
async def test_a_developer_taken_off_the_list_loses_sessions_and_links_at_once(
    world: VirtualWorld, served: Served, take_off: object
) -> None:
    """Off `access.allowed_user_ids` (the list edited, or the section loaded anew): their open session
    reads nothing more, their live timeline ends, their unused link neither opens nor signs in — and the
    other developer is untouched."""
    assert callable(take_off)
    async with _client() as client, _client() as other:
        await _signed_in(client, served, DEV)
        await _signed_in(other, served, OTHER)
        unused = await served.signin.link(DEV)
        assert unused is not None
        async with client.get(served.url + "/runs") as response:
            assert response.status == 200
        stream = await client.get(served.url + "/runs/1/stream")
        take_off(world, DEV)
        for path in ("/", "/runs", "/runs/1", "/incidents/1", "/actions", "/audit"):
            async with client.get(served.url + path) as response:
                assert response.status == 401, path
        async with client.get(unused) as page:
            assert page.status == 401 and "no longer allow-listed" in await page.text()
        user, token = _link_parts(unused)
        async with _client() as fresh, fresh.post(f"{served.url}/signin", data={"u": user, "t": token}) as r:
            assert r.status == 401
        assert await _sessions(world, DEV) == 0  # ended, not merely refused
        # The stream ends by itself (its session is asked again every few seconds).
        await asyncio.wait_for(stream.content.read(), timeout=30)
        stream.release()
        async with other.get(served.url + "/runs") as response:
            assert response.status == 200


async def test_a_developer_allow_listed_by_role_counts_while_they_hold_it(
    world: VirtualWorld, served: Served
) -> None:
    """Listed by a role only: let in while Discord says they hold it, refused (and signed out) once they
    do not."""
    services = world.bot.services
    services.settings.access.allowed_role_ids = [777]
    roles: dict[int, list[int] | None] = {5151: [777]}

    async def roles_of(user_id: int) -> list[int] | None:
        return roles.get(user_id)

    served.signin.roles_of = roles_of
    async with _client() as client:
        await _signed_in(client, served, 5151)
        async with client.get(served.url + "/") as response:
            assert response.status == 200
        roles[5151] = [1]
        async with client.get(served.url + "/") as response:
            assert response.status == 401
    assert await _sessions(world, 5151) == 0


async def test_after_a_restart_with_the_new_config_old_sessions_and_links_are_gone(tmp_path: Path) -> None:
    """`mendbot play` signs Alice in; restarted with Alice no longer allow-listed, her cookie opens
    nothing and her unused link is refused: the new configuration counts from the first request."""
    config = tmp_path / "config.yaml"
    config.write_text("health: {enabled: false}\ndashboard: {port: 0}\n")
    first = await PlaygroundProcess.start(config, code=REPO)
    try:
        match = await first.expect(r"^dashboard: (http://127\.0\.0\.1:\d+)/signin\?u=(\d+)&t=([\w-]+)  ")
        url, user, token = match.groups()
        async with _client() as client:
            async with client.post(f"{url}/signin", data={"u": user, "t": token}) as signed:
                assert signed.status == 200 and f"user {user}" in await signed.text()
            cookie = _cookie(client)
        await first.send("#dev")
        await first.send("/dashboard")  # a second link, left unused
        unused = await first.expect(r"(http://127\.0\.0\.1:\d+/signin\?u=\d+&t=[\w-]+)")
    finally:
        assert await first.finish() == 0
    config.write_text(
        "health: {enabled: false}\ndashboard: {port: 0}\n"
        "playground: {users: [{name: alice, allowed: false}, {name: bob, allowed: true}]}\n"
    )
    second = await PlaygroundProcess.start(config, code=REPO)
    try:
        match = await second.expect(r"^dashboard: (http://127\.0\.0\.1:\d+)/signin\?u=(\d+)&t=([\w-]+)  ")
        url2, bob, _ = match.groups()
        assert bob != user
        async with _client() as client:
            client.cookie_jar.update_cookies({"mendbot_session": cookie})
            async with client.get(url2 + "/") as home:
                assert home.status == 401
            old_user, old_token = _link_parts(unused.group(1))
            async with client.post(f"{url2}/signin", data={"u": old_user, "t": old_token}) as again:
                assert again.status == 401
    finally:
        assert await second.finish() == 0


# -- the sign-in form comes from the dashboard's own page ---------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},  # this host, another port: another origin
    ],
    ids=["origin", "origin+fetch-site", "cross-site", "same-site", "null-origin", "other-port"],
)
async def test_a_sign_in_posted_from_another_site_is_refused_and_spends_nothing(
    served: Served, headers: dict[str, str]
) -> None:
    """A sign-in POST another site made (login CSRF, a leaked link spent elsewhere) gets a page saying
    so, sets no cookie and leaves the link usable from the dashboard's own page."""
    link = await served.signin.link(DEV)
    assert link is not None
    user, token = _link_parts(link)
    async with _client() as client:
        async with client.post(
            f"{served.url}/signin", data={"u": user, "t": token}, headers=headers, allow_redirects=False
        ) as refused:
            assert refused.status == 403
            assert "did not come from the dashboard" in await refused.text()
            assert "Set-Cookie" not in refused.headers
        own = {"Origin": served.url, "Sec-Fetch-Site": "same-origin"}
        async with client.post(
            f"{served.url}/signin", data={"u": user, "t": token}, headers=own, allow_redirects=False
        ) as signed:
            assert signed.status == 303 and "mendbot_session=" in signed.headers["Set-Cookie"]


# -- numbers in URLs ----------------------------------------------------------------------------

_NOT_NUMBERS = (
    "9223372036854775808",  # one past SQLite's (and bigint's) largest integer
    "99999999999999999999",
    "1" * 400,
    "²",
    "٣",  # an Arabic-Indic three: int() reads it, it is not ASCII
    "-1",
    "+1",
    " 1",
    "1e3",
    "0x10",
    "1_000",
    "１",  # a fullwidth one
)


def _q(value: str) -> str:
    return quote(value, safe="")


async def test_no_number_in_a_url_answers_500(served: Served) -> None:
    """Ids, cursors and filters too large for the storage, or not ASCII digits: 404 for a path, 400 for
    a query value, 401 for a sign-in link — never 500. The largest stored integer is a valid one."""
    async with _client() as client:
        await _signed_in(client, served, DEV)
        for value in _NOT_NUMBERS:
            v = _q(value)
            for path in (f"/runs/{v}", f"/incidents/{v}", f"/runs/{v}/stream"):
                async with client.get(served.url + path) as response:
                    assert response.status == 404, (path, response.status)
            for path in (
                f"/runs?before={v}",
                f"/incidents?before={v}",
                f"/actions?user={v}",
                f"/actions?after=1700000000.0:{v}",
                f"/actions?after={v}:1",
                f"/runs/1/stream?after={v}",
            ):
                async with client.get(served.url + path) as response:
                    assert response.status == 400, (path, response.status)
                    assert "That address is not one of mine" in await response.text()
        for path in ("/runs/9223372036854775807", "/incidents/9223372036854775807"):
            async with client.get(served.url + path) as response:
                assert response.status == 404
        async with client.get(served.url + "/runs?before=9223372036854775807") as response:
            assert response.status == 200
    async with _client() as stranger:  # the sign-in routes answer without a session
        for value in _NOT_NUMBERS:
            async with stranger.get(f"{served.url}/signin?u={_q(value)}&t=abc") as response:
                assert response.status == 401
            async with stranger.post(f"{served.url}/signin", data={"u": value, "t": "abc"}) as response:
                assert response.status == 401


# -- slow and greedy clients --------------------------------------------------------------------


async def _connect(served: Served) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    port = int(served.url.rsplit(":", 1)[1])
    return await asyncio.open_connection("127.0.0.1", port)


def _host(served: Served) -> bytes:
    """The Host a browser sends for the dashboard's own address (another one is refused)."""
    return served.url.removeprefix("http://").encode()


async def _closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bytes:
    """Read until the server closes the connection (what it sent); TimeoutError if it does not."""
    return await asyncio.wait_for(reader.read(), timeout=within_s)


async def test_a_client_sending_its_head_one_byte_at_a_time_is_cut_off(served: Served) -> None:
    """A request head trickling in (a slowloris) is cut off at `dashboard.read_timeout_s` (1 s here),
    long before it would have been complete."""
    reader, writer = await _connect(served)
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 60 + b"\r\n\r\n"
    cut = False
    try:
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(1), timeout=0.2) == b"":
                    cut = True
                    break
    except ConnectionError:
        cut = True
    finally:
        writer.close()
    assert cut, "the whole head went through: nobody cut the slow client off"


async def test_a_client_that_says_nothing_is_cut_off(served: Served) -> None:
    """A connection that never sends a byte is closed by the server."""
    reader, writer = await _connect(served)
    try:
        assert await _closed_by_server(reader, within_s=20) == b""
    finally:
        writer.close()


async def test_a_sign_in_form_that_never_arrives_is_cut_off(served: Served) -> None:
    """The sign-in POST's head promises a body that never comes: answered 408 (or cut), not held."""
    reader, writer = await _connect(served)
    try:
        writer.write(
            b"POST /signin HTTP/1.1\r\nHost: " + _host(served) + b"\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 500\r\n\r\nu=42"
        )
        await writer.drain()
        answer = await _closed_by_server(reader, within_s=20)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408")
    finally:
        writer.close()


async def test_live_timelines_are_capped_per_session_and_in_all(served: Served) -> None:
    """One session opening 20 streams gets 3 (`streams_per_session`); the rest are 503 with
    Retry-After. Several sessions together get 5 (`streams`). A closed stream frees its place."""
    async with _client() as first, _client() as second, _client() as third:
        for client, user in ((first, DEV), (second, OTHER), (third, DEV)):
            await _signed_in(client, served, user)
        open_: list[aiohttp.ClientResponse] = []
        try:
            answers = []
            for _ in range(20):
                response = await first.get(served.url + "/runs/1/stream")
                answers.append(response.status)
                if response.status == 200:
                    open_.append(response)
                else:
                    assert response.headers["Retry-After"].isdigit()
                    response.release()
            assert answers.count(200) == 3 and answers.count(503) == 17
            for client in (second, third):
                for _ in range(3):
                    response = await client.get(served.url + "/runs/1/stream")
                    if response.status == 200:
                        open_.append(response)
                    else:
                        assert response.status == 503
                        response.release()
            assert len(open_) == 5
            open_.pop(0).close()
            for _ in range(100):  # the server notices the page went at its next poll
                again = await third.get(served.url + "/runs/1/stream")
                if again.status == 200:
                    open_.append(again)
                    break
                again.release()
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("a closed stream's place was never freed")
        finally:
            for response in open_:
                response.close()


async def test_head_on_a_stream_is_answered_without_a_body_and_ends(served: Served) -> None:
    """HEAD on a run's stream: the headers, no body, and the connection free for the next request."""
    async with _client() as client:
        await _signed_in(client, served, DEV)
        cookie = _cookie(client)
    reader, writer = await _connect(served)
    try:
        common = b"Host: " + _host(served) + f"\r\nCookie: mendbot_session={cookie}\r\n".encode()
        writer.write(b"HEAD /runs/1/stream HTTP/1.1\r\n" + common + b"\r\n")
        writer.write(b"GET /static/dashboard.css HTTP/1.1\r\n" + common + b"Connection: close\r\n\r\n")
        await writer.drain()
        answer = await _closed_by_server(reader, within_s=20)
    finally:
        writer.close()
    first, _, rest = answer.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200") and b"text/event-stream" in first
    assert rest.startswith(b"HTTP/1.1 200"), rest[:200]  # nothing of a body between the two


# -- headers on every response ------------------------------------------------------------------


def _headers_of(raw: bytes) -> dict[str, str]:
    head = raw.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
    pairs = [line.split(":", 1) for line in head if ":" in line]
    return {name.strip().lower(): value.strip() for name, value in pairs}


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"DELETE /runs HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /no/such/page HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /static/nothing.js HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["garbage", "version", "long-line", "big-header", "bad-header", "405", "404", "static-404"],
)
async def test_every_response_carries_the_security_headers(served: Served, request_bytes: bytes) -> None:
    """Also what aiohttp answers by itself to a request it cannot parse: CSP, nosniff, frame and
    referrer policies on a 400 as on a page."""
    reader, writer = await _connect(served)
    try:
        writer.write(request_bytes)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(65536), timeout=20)
    finally:
        writer.close()
    assert re.match(rb"HTTP/1\.[01] 4", raw), raw[:100]
    headers = _headers_of(raw)
    for name in SECURITY_HEADERS:
        assert name.lower() in headers, (name, raw[:300])
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


# -- what a chart shows -------------------------------------------------------------------------


@contextlib.contextmanager
def _drawn_texts() -> Iterator[list[str]]:
    """Every text matplotlib draws meanwhile (the chart's labels), as drawn."""
    from matplotlib.text import Text

    drawn: list[str] = []
    draw = Text.draw

    def recording(self: Text, renderer: object) -> None:
        drawn.append(self.get_text())
        draw(self, renderer)  # type: ignore[arg-type]

    Text.draw = recording  # type: ignore[method-assign,assignment]
    try:
        yield drawn
    finally:
        Text.draw = draw  # type: ignore[method-assign]


async def test_a_secret_in_an_action_never_reaches_a_chart(world: VirtualWorld, served: Served) -> None:
    """A secret the bot knows, in the kind of stored action records (written before it knew it), is
    drawn on the p95 chart as [redacted], a `$` formula as plain text; typed into a filter, it is not
    echoed back either."""
    services = world.bot.services
    secret = "hunter2-chart-secret-value"
    services.redactor.add(secret)
    now = services.clock().timestamp()
    records = [
        ActionRecord(ts=now - 60 - i, kind=kind, source="seed", ok=True, duration_ms=10.0 + i)
        for kind in (f"command:leak {secret}", "command:$\\frac{1}{0}$")
        for i in range(5)
    ]
    await action_queries.insert_many(services.db, records)
    async with _client() as client:
        await _signed_in(client, served, DEV)
        with _drawn_texts() as drawn:
            async with client.get(f"{served.url}/audit/p95_per_kind.png?period=24h") as png:
                assert png.status == 200 and (await png.read()).startswith(b"\x89PNG")
        async with client.get(f"{served.url}/actions?kind={_q(secret)}&fingerprint={_q(secret)}") as page:
            assert secret not in await page.text()  # a filter echoed back passes the redactor too
    assert any("the leak [redacted] command" in text for text in drawn), drawn
    assert not any(secret in text for text in drawn)
    assert "the $\\frac{1}{0}$ command" in drawn
