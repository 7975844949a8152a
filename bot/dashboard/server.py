"""The dashboard's web server (aiohttp, as the health endpoint): pages for signed-in users only.

Everything but the sign-in page and the static assets answers 401 without a session. Only GET is
routed, apart from the sign-in form's POST: nothing here changes the bot's state. Every response
carries a Content-Security-Policy that allows scripts, styles and connections from this origin only
(no inline script, no eval), so a payload that slipped past the escaping still could not run.
A run's page follows the run live over server-sent events (`/runs/{id}/stream`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from bot.dashboard.pages import PageReader
from bot.dashboard.render import install
from bot.dashboard.signin import COOKIE, DashboardSignIn
from bot.db.browse import ActionFilter
from bot.kernel.log import get_logger

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
    "Referrer-Policy": "no-referrer",  # a sign-in link's token never leaves in a Referer
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_OPEN = ("/signin", "/static/")
_STREAM_POLL_S = 0.5  # a run event written by any process (a worker too) shows within a second
_USER = web.RequestKey("user", int)
# Server-sent events end a line at any of these; each line of a row goes in a `data:` line of its own
# (the browser joins them with newlines again), so a multi-line detail keeps its lines.
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _usd(value: float | None) -> str:
    """Dollars, with the cents of a cent that one model request costs."""
    if not value:
        return "$0"
    return f"${value:.4f}" if abs(value) < 1 else f"${value:.2f}"


def templates() -> jinja2.Environment:
    """The pages' Jinja environment: autoescaped everywhere, whatever a template's name."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        enable_async=False,
    )
    env.filters["when"] = _when
    env.filters["usd"] = _usd
    return env


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
        if not request.path.startswith(_OPEN):
            user = await self._signin.user_of(request.cookies.get(COOKIE))
            if user is None:
                response: web.StreamResponse = self._refusal(
                    401, "Sign in first", "Ask for a sign-in link with /dashboard in the dev channel."
                )
                response.headers.update(_HEADERS)
                return response
            request[_USER] = user
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(_HEADERS)
            raise
        if not response.prepared:
            response.headers.update(_HEADERS)
        return response

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_static("/static/", _HERE / "static", append_version=False)
        app.router.add_get("/signin", self._signin_page)
        app.router.add_post("/signin", self._signin_post)
        app.router.add_get("/", self._overview)
        app.router.add_get("/runs", self._runs)
        app.router.add_get("/runs/{run_id:\\d+}", self._run)
        app.router.add_get("/runs/{run_id:\\d+}/stream", self._run_stream)
        app.router.add_get("/incidents", self._incidents)
        app.router.add_get("/incidents/{incident_id:\\d+}", self._incident)
        app.router.add_get("/actions", self._actions)
        app.router.add_get("/audit", self._audit)
        app.router.add_get("/audit/{name:[a-z0-9_]+}.png", self._audit_chart)
        return app

    async def start(self, *, any_port: bool = False) -> int | None:
        """Start serving; the bound port, or None when the port is taken (logged). With `any_port` (the
        playground, where a second one or a test may hold the configured port) a taken port falls back
        to one the system picks, so the newcomer still gets a link."""
        self._closing = asyncio.Event()
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
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
        user, token = str(values.get("u", "")), str(values.get("t", ""))
        if not user.isdigit() or not token or len(token) > 100:
            return None
        return int(user), token

    async def _signin_page(self, request: web.Request) -> web.Response:
        """The page a link opens: it only shows a button (a preview fetching the link uses nothing up)."""
        link = self._link_of(request.query)
        if link is None or not await self._signin.owner(*link):
            return self._refusal(
                401,
                "This link does not work",
                "It has expired, was used already, or is not yours. "
                "Ask for a new one with /dashboard in the dev channel.",
            )
        current = await self._signin.user_of(request.cookies.get(COOKIE))
        if current is not None and current != link[0]:
            return self._refusal(403, "This link is someone else's", f"You are signed in as user {current}.")
        return self._page("signin.html", user_id=None, link_user=link[0], token=link[1])

    async def _signin_post(self, request: web.Request) -> web.Response:
        link = self._link_of(await request.post())
        current = await self._signin.user_of(request.cookies.get(COOKIE))
        if link is not None and current is not None and current != link[0]:
            return self._refusal(403, "This link is someone else's", f"You are signed in as user {current}.")
        session = await self._signin.redeem(*link) if link is not None else None
        if session is None:
            return self._refusal(
                401,
                "This link does not work",
                "It has expired, was used already, or is not yours. "
                "Ask for a new one with /dashboard in the dev channel.",
            )
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
    def _before(request: web.Request) -> int | None:
        value = request.query.get("before", "")
        return int(value) if value.isdigit() else None

    @staticmethod
    def _state(request: web.Request) -> str | None:
        value = request.query.get("state", "")
        return value if value.replace("_", "").isalpha() and len(value) < 40 else None

    async def _overview(self, request: web.Request) -> web.Response:
        data = await self._reader.overview()
        return self._page("overview.html", user_id=request[_USER], **data)

    async def _runs(self, request: web.Request) -> web.Response:
        data = await self._reader.run_list(before=self._before(request), state=self._state(request))
        return self._page("runs.html", user_id=request[_USER], **data)

    async def _run(self, request: web.Request) -> web.Response:
        data = await self._reader.run(int(request.match_info["run_id"]))
        if data is None:
            return self._refusal(404, "No such run", "There is no run with that number.")
        return self._page("run.html", user_id=request[_USER], **data)

    async def _run_stream(self, request: web.Request) -> web.StreamResponse:
        """The run's new events as server-sent events, each a timeline row, until the page goes."""
        run_id = int(request.match_info["run_id"])
        after_text = request.query.get("after", "0")
        after = int(after_text) if after_text.isdigit() else 0
        response = web.StreamResponse(headers={**_HEADERS, "Content-Type": "text/event-stream"})
        await response.prepare(request)
        row = self._env.get_template("run_event_row.html")
        idle = 0.0
        while not self._closing.is_set() and not _gone(request):
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
                await asyncio.wait_for(self._closing.wait(), _STREAM_POLL_S)
        return response

    async def _incidents(self, request: web.Request) -> web.Response:
        data = await self._reader.incident_list(before=self._before(request), state=self._state(request))
        return self._page("incidents.html", user_id=request[_USER], **data)

    async def _incident(self, request: web.Request) -> web.Response:
        data = await self._reader.incident(int(request.match_info["incident_id"]))
        if data is None:
            return self._refusal(404, "No such incident", "There is no incident with that number.")
        return self._page("incident.html", user_id=request[_USER], **data)

    async def _audit(self, request: web.Request) -> web.Response:
        data = await self._reader.audit(_period(request))
        return self._page("audit.html", user_id=request[_USER], **data)

    async def _audit_chart(self, request: web.Request) -> web.Response:
        png = await self._reader.chart(_period(request), request.match_info["name"])
        if png is None:
            return self._refusal(404, "No such chart", "There is no chart by that name for that period.")
        return web.Response(body=png, content_type="image/png")

    async def _actions(self, request: web.Request) -> web.Response:
        query = request.query
        user = query.get("user", "").strip()
        where = ActionFilter(
            kind=query.get("kind", "").strip() or None,
            fingerprint=query.get("fingerprint", "").strip() or None,
            user_id=int(user) if user.isdigit() else None,
            since=_time(query.get("since", "")),
            until=_time(query.get("until", "")),
        )
        cursor = _cursor(query.get("after", ""))
        data = await self._reader.actions(where, cursor)
        filters = {k: query.get(k, "") for k in ("kind", "fingerprint", "user", "since", "until")}
        return self._page("actions.html", user_id=request[_USER], filters=filters, **data)


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _period(request: web.Request) -> str:
    period = request.query.get("period", "7d").strip()
    return period if period and len(period) <= 12 and period.isalnum() else "7d"


def _time(text: str) -> float | None:
    """A time filter: unix seconds, or an ISO date/time read as UTC; None when empty or unreadable."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
        return value if math.isfinite(value) else None
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _cursor(text: str) -> tuple[float, int] | None:
    ts, _, row_id = text.partition(":")
    try:
        value = float(ts)
    except ValueError:
        return None
    return (value, int(row_id)) if row_id.isdigit() and math.isfinite(value) else None
