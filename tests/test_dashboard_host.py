"""The dashboard answers only its own host, over real HTTP on 127.0.0.1: a foreign Host (DNS rebinding)
is refused on every page and for the sign-in, whatever its Origin; a member taken off the allow-list —
by id or by role — loses sessions and links as soon as the bot sees the list change, and being put back
does not bring them back; no byte sequence in a header, cookie or form answers 500; a sign-in that
cannot be saved answers a page that says so; a run page with a proof item it cannot read shows the rest."""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from mendbot.db import proofs as proof_queries
from mendbot.db import signins
from mendbot.tools.playground import VirtualWorld
from tests.harness.dashboard import Served, allow, git_change, seed_hostile_run, serving
from tests.harness.discord import make_settings, running_world
from tests.harness.sql import sql
from tests.harness.storage import hold_write_lock

DEV, OTHER = 4242, 4343


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[VirtualWorld]:
    repo = tmp_path / "repo"
    base, head = git_change(repo)
    settings = make_settings(
        tmp_path / "data",
        repo_dir=repo,
        dashboard={"read_timeout_s": 2},
        storage={"busy_timeout_ms": 50, "write_attempts": 2, "retry_backoff_s": 0.05},
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


async def _signed_in(client: aiohttp.ClientSession, served: Served, user_id: int) -> str:
    """Sign `user_id` in with a fresh link; the session cookie's value."""
    link = await served.signin.link(user_id)
    assert link is not None
    user, token = _link_parts(link)
    async with client.post(f"{served.url}/signin", data={"u": user, "t": token}, allow_redirects=False) as r:
        assert r.status == 303
    return next(c.value for c in client.cookie_jar if c.key == "mendbot_session")


def _port(served: Served) -> int:
    return int(served.url.rsplit(":", 1)[1])


async def _raw(served: Served, request: bytes) -> bytes:
    """One request as bytes on a connection of its own, which the server closes once it has answered
    (`Connection: close`, put after the request line); the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(served))
    try:
        writer.write(request.replace(b"\r\n", b"\r\nConnection: close\r\n", 1))
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=20)
    finally:
        writer.close()


def _status(raw: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    assert match is not None, raw[:200]
    return int(match.group(1))


# -- its own host ---------------------------------------------------------------------------------


async def test_a_page_asked_for_by_another_host_name_is_refused(served: Served) -> None:
    """DNS rebinding: a page of another site whose name now points at 127.0.0.1 asks for the
    dashboard with that name as its Host — refused (421) with a signed-in cookie too; its own address
    (and `localhost` for a loopback one) answer."""
    async with _client() as client:
        cookie = await _signed_in(client, served, DEV)
    port = _port(served)
    for host in (
        f"evil.example:{port}",
        "evil.example",
        f"127.0.0.1.evil.example:{port}",
        f"127.0.0.1:{port + 1}",
    ):
        raw = await _raw(
            served, f"GET / HTTP/1.1\r\nHost: {host}\r\nCookie: mendbot_session={cookie}\r\n\r\n".encode()
        )
        assert _status(raw) == 421, (host, raw[:200])
        assert "not this dashboard's address" in html.unescape(raw.decode())
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        raw = await _raw(
            served, f"GET / HTTP/1.1\r\nHost: {host}\r\nCookie: mendbot_session={cookie}\r\n\r\n".encode()
        )
        assert _status(raw) == 200, host


async def test_a_sign_in_posted_to_another_host_with_its_own_origin_is_refused(served: Served) -> None:
    """The rebinding site posts the sign-in form to itself (Host and Origin agree, both foreign): no
    cookie, and the link still works from the dashboard's own page."""
    link = await served.signin.link(DEV)
    assert link is not None
    user, token = _link_parts(link)
    port = _port(served)
    body = f"u={user}&t={token}".encode()
    raw = await _raw(
        served,
        f"POST /signin HTTP/1.1\r\nHost: evil.example:{port}\r\nOrigin: http://evil.example:{port}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body,
    )
    assert _status(raw) in (403, 421) and b"Set-Cookie" not in raw
    async with (
        _client() as client,
        client.post(f"{served.url}/signin", data={"u": user, "t": token}, allow_redirects=False) as signed,
    ):
        assert signed.status == 303


@pytest.mark.parametrize(
    ("public_url", "bound", "own", "foreign"),
    [
        (
            None,
            ("127.0.0.1", 8766),
            ["127.0.0.1:8766", "LOCALHOST:8766", "[::1]:8766"],
            ["evil:8766", "127.0.0.1"],
        ),
        (None, ("0.0.0.0", 8766), ["10.1.2.3:8766", "[fe80::1]:8766"], ["evil.example:8766", "10.1.2.3:80"]),
        (
            "https://dash.example.org",
            ("127.0.0.1", 8766),
            ["dash.example.org", "127.0.0.1:8766"],
            ["dash.example.org:8766", "evil.example"],
        ),
    ],
    ids=["loopback", "every-interface", "public-url"],
)
def test_own_hosts_are_the_public_url_or_the_listening_address(
    public_url: str | None, bound: tuple[str, int], own: list[str], foreign: list[str]
) -> None:
    """Which Host is its own: the public address when one is set (and the listening one, which a proxy
    may pass on), else the listening address — a loopback one by any loopback name, one on every
    interface by any address of a machine but never by a name (a name is what rebinding forges)."""
    from mendbot.dashboard.hosts import OwnAddress

    address = OwnAddress(public_url, *bound)
    assert [host for host in own if not address.own_host(host)] == []
    assert [host for host in foreign if address.own_host(host)] == []


# -- a member taken off the list stays off ------------------------------------------------------------


async def _sessions(world: VirtualWorld, user_id: int) -> int:
    return (await signins.signed_in_users(world.bot.services.db, now=0)).count(user_id)


@pytest.mark.parametrize("by", ["id", "role"])
async def test_a_member_taken_off_and_put_back_does_not_get_old_sessions_or_links_back(
    world: VirtualWorld, served: Served, by: str
) -> None:
    """Taken off the allow-list (their id, or the role that lets them in), then put back before they
    make a request: the bot saw the list without them (another developer's page), so their session
    and their unused link ended there and then, and putting them back does not bring either back."""
    access = world.bot.services.settings.access
    member = DEV
    if by == "role":
        member = 5151
        access.allowed_role_ids = [777]

        async def roles_of(user_id: int) -> list[int] | None:
            return [777] if user_id == member else None

        served.signin.roles_of = roles_of
    async with _client() as client, _client() as other:
        await _signed_in(client, served, member)
        await _signed_in(other, served, OTHER)
        unused = await served.signin.link(member)
        assert unused is not None
        if by == "id":
            access.allowed_user_ids.remove(member)
        else:
            access.allowed_role_ids = []
        async with other.get(served.url + "/runs") as page:  # the bot reads the list: it sees the change
            assert page.status == 200
        if by == "id":
            access.allowed_user_ids.append(member)
        else:
            access.allowed_role_ids = [777]
        async with client.get(served.url + "/runs") as page:
            assert page.status == 401
        async with _client() as fresh, fresh.get(unused) as opened:
            assert opened.status == 401
        assert await _sessions(world, member) == 0


# -- any bytes ------------------------------------------------------------------------------------------

_NOT_UTF8 = b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x90\x28\xbc"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: {host}\r\nCookie: mendbot_session=" + _NOT_UTF8 + b"\r\n\r\n",
        b"GET /runs HTTP/1.1\r\nHost: {host}\r\nCookie: " + _NOT_UTF8 + b"=" + _NOT_UTF8 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: " + _NOT_UTF8 + b"\r\n\r\n",
        b"POST /signin HTTP/1.1\r\nHost: {host}\r\nOrigin: http://" + _NOT_UTF8 + b"\r\nContent-Length: 7\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\nu=1&t=2",
        b"POST /signin HTTP/1.1\r\nHost: {host}\r\nSec-Fetch-Site: " + _NOT_UTF8
        + b"\r\nContent-Length: 7\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nu=1&t=2",
        b"POST /signin HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 17\r\n\r\nu=1&t=" + _NOT_UTF8[:11],
        b"POST /signin HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=" + _NOT_UTF8
        + b"\r\nContent-Length: 4\r\n\r\n--xx",
        b"POST /signin HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded; charset="
        + _NOT_UTF8 + b"\r\nContent-Length: 7\r\n\r\nu=1&t=2",
        b"GET /signin?u=1&t=%ff%fe HTTP/1.1\r\nHost: {host}\r\nCookie: mendbot_session=%ff\r\n\r\n",
        b"GET /actions?kind=%ff%fe&since=%c3%28 HTTP/1.1\r\nHost: {host}\r\n\r\n",
    ],
    ids=[
        "cookie-value", "cookie-name", "host", "origin", "sec-fetch-site", "form", "multipart-boundary",
        "charset", "query-link", "query-filter",
    ],
)  # fmt: skip
async def test_no_byte_sequence_in_a_header_cookie_or_form_answers_500(
    served: Served, request_bytes: bytes
) -> None:
    """Bytes that are not UTF-8 where text is expected — a cookie, Origin, Sec-Fetch-Site, Host, the
    form, its content type, the query — answer 4xx, never 500."""
    host = f"127.0.0.1:{_port(served)}".encode()
    raw = await _raw(served, request_bytes.replace(b"{host}", host))
    assert 400 <= _status(raw) < 500, raw[:300]


# -- storage failing -------------------------------------------------------------------------------------


async def test_a_sign_in_that_cannot_be_saved_answers_a_page_saying_so(
    world: VirtualWorld, served: Served
) -> None:
    """The database cannot take the sign-in (its write lock held by another process, as a full disk
    would refuse it): a page that says so and asks to try again (503), not aiohttp's bare 500; the link
    is not used up, and once storage works it signs in."""
    link = await served.signin.link(DEV)
    assert link is not None
    user, token = _link_parts(link)
    async with _client() as client:
        locked = hold_write_lock(world.bot.services.settings.db_path)
        async with (
            locked,
            client.post(
                f"{served.url}/signin", data={"u": user, "t": token}, allow_redirects=False
            ) as refused,
        ):
            assert refused.status == 503
            page = html.unescape(await refused.text())
            assert "Content-Security-Policy" in refused.headers
        assert "couldn't save" in page and "try again" in page.lower()
        async with client.post(
            f"{served.url}/signin", data={"u": user, "t": token}, allow_redirects=False
        ) as signed:
            assert signed.status == 303


# -- a page with one item it cannot read -------------------------------------------------------------------


async def test_a_run_page_with_a_proof_item_it_cannot_read_shows_the_rest(
    world: VirtualWorld, served: Served
) -> None:
    """One stored proof item that is not a proof item (a field missing, a wrong type), and one proof
    whose items are not JSON at all: the run's page answers 200 with everything else, and says which
    item could not be shown."""
    db = world.bot.services.db
    good = {
        "kind": "replay", "label": "!roll 2d6", "base": None, "branch": None, "verdict": "holds",
        "note": "answers as on the base", "role": "pass",
    }  # fmt: skip
    for stage in ("verify", "deploy"):
        await proof_queries.insert(
            db,
            run_id=1,
            stage=stage,
            sha="a" * 40,
            base_sha="b" * 40,
            verdict="proven",
            reason="the failure is gone",
            items=[good, {"kind": "replay", "label": 7, "verdict": []}],
            overhead_s=1.0,
            now=time.time(),
        )
    await sql(db, "UPDATE proofs SET items = :items WHERE stage = 'deploy'", items="{not json")
    async with _client() as client:
        await _signed_in(client, served, DEV)
        async with client.get(served.url + "/runs/1") as page:
            assert page.status == 200
            shown = html.unescape(await page.text())
    assert "!roll 2d6" in shown and "answers as on the base" in shown
    assert shown.count("could not be shown") == 2  # the item, and the proof whose items are not JSON
    assert "fix the roll" in shown  # the rest of the run is there
