"""The dashboard's web server (aiohttp, as the health endpoint): pages for signed-in users only.

Every request must name the dashboard's own address as its Host (`public_url`, else where it listens:
bot/dashboard/hosts.py), or it is refused with 421 — a page of another site whose name was pointed at
127.0.0.1 (DNS rebinding) gets nothing. Everything but the sign-in page and the static assets answers
401 without a session, and a session counts only while its user is allow-listed (bot/dashboard/signin.py
decides at every request). Only GET is routed, apart from the sign-in form's POST, which is taken from
this dashboard's own pages only (`Origin` / `Sec-Fetch-Site`): nothing here changes the bot's state.
Whatever bytes a request carries, a header, cookie or form that is not text answers 4xx; storage that
fails answers a page saying so (503), never aiohttp's bare 500. Every response — the pages', and
the ones aiohttp writes itself (a malformed request line, oversized headers) — carries a
Content-Security-Policy that allows scripts, styles and connections from this origin only (no inline
script, no eval), so a payload that slipped past the escaping still could not run: the headers are
added where aiohttp prepares any response (`_Request`).

A run's page follows the run live over server-sent events (`/runs/{id}/stream`), at most
`dashboard.streams_per_session` at once per session and `dashboard.streams` in all. A client gets
`dashboard.read_timeout_s` to send a request's head (from connecting, or from the previous answer) and
as long for the sign-in form's body; a slower one is cut off. Every number in a URL is read by
`mendbot.dashboard.params.url_int`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from mendbot.dashboard.hosts import OwnAddress
from mendbot.dashboard.pages import PageReader
from mendbot.dashboard.params import url_int
from mendbot.dashboard.render import install
from mendbot.dashboard.signin import COOKIE, DashboardSignIn
from mendbot.db.browse import ActionFilter
from mendbot.db.retry import SAVE_FAILED, storage_fault
from mendbot.features.reminders import parse_delay
from mendbot.kernel.errors import UserError
from mendbot.kernel.log import get_logger
from mendbot.kernel.money import usd
from mendbot.kernel.waits import wait_for

__all__ = ["CSP", "DashboardServer"]

_log = get_logger(__name__)
_HERE = Path(__file__).resolve().parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # A sign-in link's token never leaves in a Referer; and unlike no-referrer, a form posted to this
    # origin still names it in `Origin`, which the sign-in checks.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_OPEN = ("/signin", "/static/")
_MAX_BODY = 8 * 1024  # the sign-in form is two short fields; nothing else takes a body
_STREAM_RECHECK_S = 5.0  # an open stream asks again whether its session still counts this often
_RETRY_AFTER_S = 10
_STREAM_POLL_S = 0.5  # a run event written by any process (a worker too) shows within a second
_USER = web.RequestKey("user", int)
# Server-sent events end a line at any of these; each line of a row goes in a `data:` line of its own
# (the browser joins them with newlines again), so a multi-line detail keeps its lines.
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")


class _Request(web.Request):
    """A request whose every response gets the security headers, whoever made the response: a page,
    a refusal, a static file, a stream, or aiohttp's own answer to a request it could not parse
    (which no middleware sees). aiohttp prepares each of them through this hook."""

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        await super()._prepare_hook(response)


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def templates() -> jinja2.Environment:
    """The pages' Jinja environment: autoescaped everywhere, whatever a template's name."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        enable_async=False,
    )
    env.filters["when"] = _when
    env.filters["usd"] = usd  # as chat and the audit write dollars (bot/kernel/money.py)
    return env


class _BadParameter(Exception):
    """A value in the URL that is not one (answered 400 with `text`)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _query_int(request: web.Request, name: str) -> int | None:
    """The query's integer `name`: None when absent or empty; _BadParameter when not a stored integer."""
    text = request.query.get(name, "")
    if not text:
        return None
    value = url_int(text)
    if value is None:
        raise _BadParameter(f"`{name}` must be a whole number (digits 0-9), and this one is not.")
    return value


def _path_int(request: web.Request, name: str) -> int | None:
    """The path's integer `name` (a run's or an incident's number); None when it cannot be one."""
    return url_int(request.match_info[name])


class DashboardServer:
    def __init__(self, reader: PageReader, signin: DashboardSignIn, host: str, port: int) -> None:
        self._reader = reader
        self._signin = signin
        self._host = host
        self._port = port
        self._env = templates()
        install(self._env, reader.name_of)  # times, people, states and chat text as the pages write them
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._streams: dict[str, int] = {}  # open event streams per session (by its cookie's hash)
        self._own: OwnAddress | None = None  # the Host and Origin it answers, once it listens
        self.port: int | None = None

    # -- the plumbing ---------------------------------------------------------------------------

    def _page(self, name: str, http_status: int = 200, **context: Any) -> web.Response:
        html = self._env.get_template(name).render(**context)
        return web.Response(text=html, status=http_status, content_type="text/html")

    def _refusal(self, status: int, title: str, text: str) -> web.Response:
        return self._page("message.html", http_status=status, title=title, text=text, user_id=None)

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        own = self._own
        if own is not None and not own.own_host(request.headers.get("Host")):
            _log.warning(
                "dashboard request for another host refused", host=_shown(request.headers.get("Host"))
            )
            return self._refusal(
                421,
                "Not this dashboard",
                f"The address this page was asked for by is not this dashboard's address: it answers only "
                f"at {own.describe()}. Open it there.",
            )
        try:
            if not request.path.startswith(_OPEN):
                user = await self._signin.user_of(request.cookies.get(COOKIE))
                if user is None:
                    return self._refusal(
                        401, "Sign in first", "Ask for a sign-in link with /dashboard in the dev channel."
                    )
                request[_USER] = user
            return await handler(request)
        except _BadParameter as exc:
            return self._refusal(400, "That address is not one of mine", exc.text)
        except Exception as exc:
            if storage_fault(exc) is None:
                raise
            _log.warning("dashboard request met failing storage", path=request.path, error=str(exc))
            response = self._refusal(503, "Storage is failing", f"{SAVE_FAILED} (The database: {exc}.)")
            response.headers["Retry-After"] = str(_RETRY_AFTER_S)
            return response

    def _make_request(
        self,
        message: Any,
        payload: Any,
        protocol: Any,
        writer: Any,
        task: asyncio.Task[None],
    ) -> web.Request:
        """aiohttp's request factory, making `_Request`s (their responses carry the headers)."""
        loop = asyncio.get_running_loop()
        return _Request(
            message, payload, protocol, writer, task, loop, client_max_size=_MAX_BODY, client_max_fields=10
        )

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=_MAX_BODY)
        app.router.add_static("/static/", _HERE / "static", append_version=False)
        app.router.add_get("/signin", self._signin_page)
        app.router.add_post("/signin", self._signin_post)
        app.router.add_get("/", self._overview)
        app.router.add_get("/runs", self._runs)
        app.router.add_get("/runs/{run_id}", self._run)
        app.router.add_get("/runs/{run_id}/stream", self._run_stream)
        app.router.add_get("/incidents", self._incidents)
        app.router.add_get("/incidents/{incident_id}", self._incident)
        app.router.add_get("/actions", self._actions)
        app.router.add_get("/audit", self._audit)
        app.router.add_get("/audit/{name:[a-z0-9_]+}.png", self._audit_chart)
        return app

    async def start(self, *, any_port: bool = False) -> int | None:
        """Start serving; the bound port, or None when the port is taken (logged). With `any_port` (the
        playground, where a second one or a test may hold the configured port) a taken port falls back
        to one the system picks, so the newcomer still gets a link. Sessions and links of users the
        allow-list leaves out now end first."""
        self._closing = asyncio.Event()
        self._streams = {}
        await self._signin.sweep()
        # keepalive_timeout is also how long a connection may take to send a request's head: aiohttp
        # closes one still waiting for a whole head by then, however slowly bytes arrive.
        self._runner = web.AppRunner(
            self._app(),
            access_log=None,
            shutdown_timeout=1.0,
            keepalive_timeout=self._signin.config.read_timeout_s,
        )
        await self._runner.setup()
        assert self._runner.server is not None
        self._runner.server.request_factory = self._make_request
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:
            if not any_port:
                _log.warning("dashboard not started", host=self._host, port=self._port, error=str(exc))
                await self._runner.cleanup()
                self._runner = None
                return None
            # Not a warning: the dashboard does start, and the link printed names the port it got.
            _log.info("dashboard port taken, serving on another", port=self._port, error=str(exc))
            site = web.TCPSite(self._runner, self._host, 0)
            await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port
        self._own = OwnAddress(self._signin.config.public_url, self._host, self.port)
        self._signin.serving(self._host, self.port)
        _log.info("dashboard up", url=self._signin.base_url)
        return self.port

    async def stop(self) -> None:
        self._closing.set()
        self._signin.stopped()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- signing in -----------------------------------------------------------------------------

    @staticmethod
    def _link_of(values: Any) -> tuple[int, str] | None:
        user, token = url_int(str(values.get("u", ""))), str(values.get("t", ""))
        if user is None or not token or len(token) > 100 or not (token.isascii() and token.isprintable()):
            return None
        return user, token

    def _someone_elses(self, current: int) -> web.Response:
        """A link for someone else opened in a browser signed in as `current`: said with their name."""
        name = self._reader.name_of(current) or f"user {current}"
        return self._refusal(403, "This link is someone else's", f"You are signed in as {name}.")

    def _link_refused(self) -> web.Response:
        return self._refusal(
            401,
            "This link does not work",
            "It has expired, was used already, is not yours, or you are no longer allow-listed. "
            "Ask for a new one with /dashboard in the dev channel.",
        )

    async def _signin_page(self, request: web.Request) -> web.Response:
        """The page a link opens: it only shows a button (a preview fetching the link uses nothing up)."""
        link = self._link_of(request.query)
        if link is None or not await self._signin.owner(*link):
            return self._link_refused()
        current = await self._signin.user_of(request.cookies.get(COOKIE))
        if current is not None and current != link[0]:
            return self._someone_elses(current)
        return self._page("signin.html", user_id=None, link_user=link[0], token=link[1])

    def _foreign(self, request: web.Request) -> str | None:
        """Why a sign-in POST did not come from this dashboard's own page, or None when it did.

        A browser says where a form was posted from: `Sec-Fetch-Site`, and `Origin`. Either one naming
        another site refuses it — a leaked link spent from elsewhere, or a visitor signed in as someone
        else behind their back (login CSRF). `Origin` must be one of the dashboard's own addresses (the
        request's Host was checked already, but a rebinding page posts to itself: both would agree). A
        client that sends neither is no browser: nothing rides on a visitor's cookies there."""
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site.strip().lower() not in ("same-origin", "none"):
            return f"it was sent from another site (Sec-Fetch-Site: {_shown(site, 40)})"
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        if self._own is None or not self._own.own_origin(origin):
            return f"it was sent from another site ({_shown(origin, 80)})"
        return None

    async def _signin_post(self, request: web.Request) -> web.Response:
        foreign = self._foreign(request)
        if foreign is not None:
            _log.warning("dashboard sign-in from another site refused", why=foreign)
            return self._refusal(
                403,
                "Sign-in refused",
                f"This sign-in did not come from the dashboard's own page: {foreign}. Your link still "
                "works: open it in your browser's address bar and press the button there.",
            )
        try:
            async with asyncio.timeout(self._signin.config.read_timeout_s):
                form = await request.post()
        except TimeoutError:
            return self._refusal(408, "Too slow", "The sign-in form took too long to arrive. Try again.")
        except (ValueError, LookupError):  # not text in its charset, a charset or boundary that is not one
            return self._refusal(
                400, "That form could not be read", "Open your link again and press the button."
            )
        link = self._link_of(form)
        current = await self._signin.user_of(request.cookies.get(COOKIE))
        if link is not None and current is not None and current != link[0]:
            return self._someone_elses(current)
        session = await self._signin.redeem(*link) if link is not None else None
        if session is None:
            return self._link_refused()
        response = web.HTTPSeeOther("/")
        response.set_cookie(
            COOKIE,
            session.secret,
            max_age=session.max_age_s,
            httponly=True,
            samesite="Strict",
            secure=self._signin.config.secure_cookie,
            path="/",
        )
        _log.info("dashboard sign-in", user_id=session.user_id)
        raise response

    # -- the pages ------------------------------------------------------------------------------

    @staticmethod
    def _state(request: web.Request) -> str | None:
        value = request.query.get("state", "")
        return value if value.replace("_", "").isalpha() and value.isascii() and len(value) < 40 else None

    async def _overview(self, request: web.Request) -> web.Response:
        data = await self._reader.overview()
        return self._page("overview.html", user_id=request[_USER], **data)

    async def _runs(self, request: web.Request) -> web.Response:
        before = _query_int(request, "before")
        data = await self._reader.run_list(before=before, state=self._state(request))
        return self._page("runs.html", user_id=request[_USER], **data)

    async def _run(self, request: web.Request) -> web.Response:
        run_id = _path_int(request, "run_id")
        data = await self._reader.run(run_id) if run_id is not None else None
        if data is None:
            return self._refusal(404, "No such run", "There is no run with that number.")
        return self._page("run.html", user_id=request[_USER], **data)

    async def _run_stream(self, request: web.Request) -> web.StreamResponse:
        """The run's new events as server-sent events, each a timeline row, until the page goes (or
        its session stops counting). A HEAD gets the headers only."""
        run_id = _path_int(request, "run_id")
        after = _query_int(request, "after") or 0
        if run_id is None:
            return self._refusal(404, "No such run", "There is no run with that number.")
        if request.method == "HEAD":
            return web.Response(headers={"Content-Type": "text/event-stream"})
        cookie = request.cookies.get(COOKIE, "")
        session = hashlib.sha256(cookie.encode("utf-8", "surrogateescape")).hexdigest()
        config = self._signin.config
        if sum(self._streams.values()) >= config.streams or self._streams.get(session, 0) >= (
            config.streams_per_session
        ):
            response = self._refusal(
                503, "Too many live timelines", "Close a run's page or two, then reload this one."
            )
            response.headers["Retry-After"] = str(_RETRY_AFTER_S)
            return response
        self._streams[session] = self._streams.get(session, 0) + 1
        try:
            return await self._stream(request, run_id, after, cookie)
        finally:
            self._streams[session] -= 1
            if not self._streams[session]:
                del self._streams[session]

    async def _stream(self, request: web.Request, run_id: int, after: int, cookie: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        row = self._env.get_template("run_event_row.html")
        loop = asyncio.get_running_loop()
        idle = 0.0
        checked = loop.time()
        while not self._closing.is_set() and not _gone(request):
            if loop.time() - checked >= _STREAM_RECHECK_S:
                if await self._signin.user_of(cookie) is None:  # signed out, expired, or taken off the list
                    break
                checked = loop.time()
            news = await self._reader.events_after(run_id, after)
            try:
                for event in news:
                    data = "".join(f"data: {line}\n" for line in _LINE_BREAKS.split(row.render(event=event)))
                    await response.write(f"event: run-event\nid: {event['id']}\n{data}\n".encode())
                    after = event["id"]
                idle = 0.0 if news else idle + _STREAM_POLL_S
                if idle >= 15:  # a comment now and then keeps proxies from closing a quiet stream
                    await response.write(b": keep-alive\n\n")
                    idle = 0.0
            except ConnectionError:  # the page went away mid-write
                break
            with contextlib.suppress(TimeoutError):
                await wait_for(self._closing.wait(), _STREAM_POLL_S)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    async def _incidents(self, request: web.Request) -> web.Response:
        before = _query_int(request, "before")
        data = await self._reader.incident_list(before=before, state=self._state(request))
        return self._page("incidents.html", user_id=request[_USER], **data)

    async def _incident(self, request: web.Request) -> web.Response:
        incident_id = _path_int(request, "incident_id")
        data = await self._reader.incident(incident_id) if incident_id is not None else None
        if data is None:
            return self._refusal(404, "No such incident", "There is no incident with that number.")
        return self._page("incident.html", user_id=request[_USER], **data)

    async def _audit(self, request: web.Request) -> web.Response:
        data = await self._reader.audit(_period(request))
        status = 400 if data["error"] else 200  # a period that is not one: said, as a bad address is
        return self._page("audit.html", http_status=status, user_id=request[_USER], **data)

    async def _audit_chart(self, request: web.Request) -> web.Response:
        png = await self._reader.chart(_period(request), request.match_info["name"])
        if png is None:
            return self._refusal(404, "No such chart", "There is no chart by that name for that period.")
        return web.Response(body=png, content_type="image/png")

    async def _actions(self, request: web.Request) -> web.Response:
        query = request.query
        now = self._reader.clock()
        where = ActionFilter(
            kind=query.get("kind", "").strip() or None,
            fingerprint=query.get("fingerprint", "").strip() or None,
            user_id=_query_int(request, "user"),
            since=_time("since", query.get("since", ""), now),
            until=_time("until", query.get("until", ""), now),
            listeners=query.get("listeners", "") == "1",
        )
        cursor = _cursor(query.get("after", ""))
        data = await self._reader.actions(where, cursor)
        filters = self._reader.echo(
            {k: query.get(k, "") for k in ("kind", "fingerprint", "user", "since", "until", "listeners")}
        )
        return self._page("actions.html", user_id=request[_USER], filters=filters, **data)


def _shown(text: str | None, limit: int = 80) -> str:
    """A header's text as a page or a log line may show it: what is not text (bytes that were not
    UTF-8, which aiohttp keeps as lone surrogates) replaced, cut to `limit`."""
    return (text or "")[:limit].encode("utf-8", "replace").decode("utf-8")


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _period(request: web.Request) -> str:
    """The audit's period as typed (`24h`, `7d`; the audit says what it cannot read), 7d when none."""
    return " ".join(request.query.get("period", "").split())[:40] or "7d"


def _time(name: str, text: str, now: float) -> float | None:
    """A time filter as people write one: an ISO date or time (UTC unless it says), unix seconds, `24h`
    or `7d` (that long before the bot's now, `ago` allowed), `today` or `yesterday` (from midnight UTC);
    None when empty. Anything else is said back (_BadParameter), never silently ignored."""
    text = " ".join(text.split())
    if not text:
        return None
    day = now - now % 86_400
    words = {"now": now, "today": day, "yesterday": day - 86_400}
    if text.lower() in words:
        return words[text.lower()]
    with contextlib.suppress(ValueError):
        value = float(text)
        if math.isfinite(value):
            return value
    with contextlib.suppress(ValueError):
        moment = datetime.fromisoformat(text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    with contextlib.suppress(UserError):
        return now - parse_delay(text.lower().removesuffix(" ago")).total_seconds()
    raise _BadParameter(
        f"`{name}` must be a time — 2026-01-01T00:00 (UTC), 24h or 7d (that long ago), today or yesterday — "
        f"and “{text[:40]}” is not one I can read."
    )


_CURSOR_TS = re.compile(r"[0-9]{1,16}(\.[0-9]{1,20})?")  # a record's unix time as the page wrote it


def _cursor(text: str) -> tuple[float, int] | None:
    """The action explorer's cursor `ts:id` (the page's "next" link); None when absent; _BadParameter
    when it is not one."""
    if not text:
        return None
    ts, _, row_id = text.partition(":")
    record = url_int(row_id)
    if _CURSOR_TS.fullmatch(ts) is None or record is None:
        raise _BadParameter("`after` must be a record's time and number as the next-page link gives them.")
    return float(ts), record
