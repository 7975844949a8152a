"""A loopback model gateway: the coding agent's only way to the model, with the budget enforced per request.

The agent CLI used to hold the real ``ANTHROPIC_API_KEY`` and the budget was checked only between
sessions, so one model turn could cost far more than a run's cap.  ``ModelGateway`` listens on
127.0.0.1 inside the bot process and holds the real key; each agent session gets its own random
token (``open_session``) to use as its API key, and the CLI is pointed at ``base_url``.

A ``POST /v1/messages`` is forwarded only if every part of it is one the gateway can price
(``mendbot.trust.priceable``: allow-listed fields, client tools only, no server tools or MCP
connectors, no one-hour cache writes, allow-listed betas); anything else is refused with a 400
before anything leaves, and the reason is kept for the session (``rejection``).  Such a request
costs its input and its output tokens and nothing else, so the gateway bounds its worst case: the
input tokens (counted upstream with ``count_tokens``, which is free, or the body's byte length
when that fails; plus ``COUNT_MARGIN`` and ``COUNT_SLACK_TOKENS``, since the count is an estimate)
at the cache-write price, plus ``max_tokens`` (thinking included) at the output price.
``max_tokens`` is lowered to what the run's and the day's remaining budget buys, minus what
requests still in flight have reserved; when that is fewer than ``min_output_tokens`` the request
is refused with a 400 and the reason is kept for the session (``refusal``).  The real usage is
read from the response as it streams through and charged to the ``Ledger``; when it never
arrives the reserved worst case is charged instead.  A charge above its reservation cannot
happen for an allowed request unless upstream bills differently than priced here: it is still
recorded, and logged as an error.

Prices and the reading of the usage live in ``mendbot.trust.model_usage``; this module is the server:
sessions, the budget's reservations and charges, and the forwarding.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import math
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from mendbot.kernel.log import get_logger
from mendbot.trust.model_usage import (
    CACHE_WRITE_FACTOR,
    DEFAULT_PRICES,
    Price,
    _price_for,
    _Usage,
    _UsageReader,
)
from mendbot.trust.priceable import Unpriceable, carries_media, check_betas, check_query, check_request

__all__ = ["Ledger", "ModelGateway"]

_log = get_logger(__name__)

ANTHROPIC_API = "https://api.anthropic.com"
# count_tokens is documented as an estimate the billed input may differ from by a little.
COUNT_MARGIN = 0.02
COUNT_SLACK_TOKENS = 256
THINKING_MIN_BUDGET = 1024  # the API rejects a smaller thinking.budget_tokens
# The API takes requests up to 32 MB; aiohttp's default limit (1 MiB) would cut long sessions.
MAX_REQUEST_BYTES = 40 * 1024 * 1024
COUNT_TOKENS_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 5.0

# Only these client headers reach upstream: never the client's authorization or x-api-key.
_FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta", "content-type", "accept")
# Response headers the client needs to behave well (its retry logic reads the last two).
_RELAYED_HEADERS = ("content-type", "request-id", "retry-after", "x-should-retry")
# Fields of a Messages request that count_tokens accepts and that change the input count.
_COUNTED_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking")


class Ledger(Protocol):
    async def remaining(self, run_id: int) -> tuple[float, float]:
        """(USD left of this run's cap, USD left of today's budget), not counting in-flight requests."""
        ...

    async def charge(self, run_id: int, cost_usd: float, detail: dict[str, Any]) -> None:
        """Record one model request's cost for the run."""
        ...


@dataclass
class _Exchange:
    """What happened to one forwarded request, for settling its cost."""

    reached_upstream: bool = False  # the request may have been processed (and billed) upstream
    status: int | None = None
    usage: _Usage | None = None


def _error(status: int, type: str, message: str) -> web.Response:
    # Exactly "application/json", like the real API (no charset suffix).
    body = json.dumps({"type": "error", "error": {"type": type, "message": message}}).encode()
    return web.Response(status=status, body=body, content_type="application/json")


def _positive_int(value: object) -> int | None:
    """``value`` if it is a positive integer (JSON booleans excluded), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _unpriceable(request: web.Request, body: dict[str, Any]) -> str | None:
    """Why the gateway cannot price this Messages request (``mendbot.trust.priceable``), or None."""
    try:
        check_query(request.query)
        check_betas(request.headers.get("anthropic-beta"))
        check_request(body)
    except Unpriceable as exc:
        return str(exc)
    return None


def _uncountable() -> web.Response:
    """The answer to a request with images or documents while count_tokens fails.

    An image's or a PDF page's tokens are not bounded by its bytes: without upstream's count
    there is no bound, so the client is told to retry later, when counting may work again.
    """
    _log.warning("model request held: its images or documents cannot be bounded uncounted")
    message = "mendbot model gateway: cannot bound the cost of images or documents right now"
    response = _error(503, "api_error", message)
    response.headers["x-should-retry"] = "true"
    return response


def _with_margin(tokens: int) -> int:
    """An input count (or byte length) widened to a bound on the input that will be billed."""
    return math.ceil(tokens * (1 + COUNT_MARGIN)) + COUNT_SLACK_TOKENS


def _fit_thinking(body: dict[str, Any], max_tokens: int) -> None:
    """Keep thinking.budget_tokens below max_tokens; drop thinking when that leaves under the minimum."""
    thinking = body.get("thinking")
    asked = _positive_int(thinking.get("budget_tokens")) if isinstance(thinking, dict) else None
    if not isinstance(thinking, dict) or asked is None:
        return
    budget = min(asked, max_tokens - 1)
    if budget >= THINKING_MIN_BUDGET:
        body["thinking"] = {**thinking, "budget_tokens": budget}
        return
    del body["thinking"]
    # The CLI asks to clear old thinking blocks, which the API refuses when thinking is off.
    management = body.get("context_management")
    if isinstance(management, dict) and isinstance(management.get("edits"), list):
        edits = [
            e
            for e in management["edits"]
            if not (isinstance(e, dict) and str(e.get("type", "")).startswith("clear_thinking"))
        ]
        if edits:
            body["context_management"] = {**management, "edits": edits}
        else:
            del body["context_management"]


class ModelGateway:
    """The agent's loopback endpoint for the Messages API (see the module docstring)."""

    def __init__(
        self,
        *,
        upstream: str | None,
        api_key: str,
        ledger: Ledger,
        prices: Mapping[str, Price] = DEFAULT_PRICES,
        min_output_tokens: int = 64,
        timeout_s: float = 600,
    ) -> None:
        if not prices:
            raise ValueError("the gateway needs at least one price")
        self._upstream = (upstream or ANTHROPIC_API).rstrip("/")
        self._api_key = api_key
        self._ledger = ledger
        self._prices = prices
        self._min_output_tokens = min_output_tokens
        self._timeout_s = timeout_s
        self._sessions: dict[str, int] = {}  # token -> run id
        self._refusals: dict[str, str] = {}  # token -> why its latest request was refused for budget
        self._rejections: dict[str, str] = {}  # token -> why its latest unpriceable request was refused
        self._reservations: dict[int, tuple[int, float]] = {}  # id -> (run id, USD)
        self._reservation_ids = itertools.count(1)
        # Held while reading the ledger and reserving, and while charging and releasing, so a
        # cost is always counted once: as a reservation or in the ledger, never both or neither.
        self._budget_lock = asyncio.Lock()
        self._settling: set[asyncio.Future[None]] = set()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._in_flight = 0  # requests being served; upstream connections are kept while any are
        self._port: int | None = None

    # -- lifecycle

    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port and start serving (idempotent)."""
        if self._runner is not None:
            return
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = int(sock.getsockname()[1])
        await web.SockSite(runner, sock).start()
        self._runner = runner
        _log.info("model gateway up", url=self.base_url, upstream=self._upstream)

    async def aclose(self) -> None:
        """Stop serving, settle every request still in flight and close the upstream connections."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    @property
    def base_url(self) -> str:
        """E.g. "http://127.0.0.1:41234", for the agent's ANTHROPIC_BASE_URL."""
        if self._port is None:
            raise RuntimeError("the model gateway is not started")
        return f"http://127.0.0.1:{self._port}"

    # -- sessions

    def open_session(self, run_id: int) -> str:
        """A fresh token for one agent session of ``run_id``, to pass as its ANTHROPIC_API_KEY."""
        token = secrets.token_urlsafe(32)
        self._sessions[token] = run_id
        return token

    def close_session(self, token: str) -> None:
        """The token stops working at once; a request already forwarded finishes and is charged."""
        self._sessions.pop(token, None)
        self._release_idle_upstream()

    def _release_idle_upstream(self) -> None:
        """With no session open and nothing in flight, close the pooled upstream connections.

        Keep-alive saves a handshake per turn while a run talks to the model; once no run does,
        an idle connection only ties up the API's side (and a local double's) until it times out.
        """
        if self._sessions or self._in_flight or self._http is None:
            return
        http, self._http = self._http, None
        closing = asyncio.ensure_future(http.close())
        self._settling.add(closing)
        closing.add_done_callback(self._settling.discard)

    def refusal(self, token: str) -> str | None:
        """Why the session's latest model request was refused for budget, or None if it was not.

        Readable after ``close_session``, so a caller can tell "the agent stopped because the
        budget was spent" from other API errors once the session is over.
        """
        return self._refusals.get(token)

    def rejection(self, token: str) -> str | None:
        """Why a request of the session was refused as one the gateway cannot price (the latest), or None.

        Kept for the whole session, also after ``close_session``: a later request that went
        through does not clear it, since asking for a server tool or an unknown field is worth
        knowing about whatever the agent did next.
        """
        return self._rejections.get(token)

    # -- HTTP

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self._in_flight += 1
        try:
            return await self._serve(request)
        finally:
            self._in_flight -= 1
            self._release_idle_upstream()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/")
        if path == "/api/hello" and request.method in ("GET", "HEAD"):
            return web.Response(status=200)  # a liveness probe; it reveals nothing
        token = self._authenticate(request)
        if token is None:
            _log.warning("model gateway refused an unauthenticated request", path=path)
            return _error(401, "authentication_error", "invalid x-api-key")
        if request.method == "POST" and path == "/v1/messages/count_tokens":
            return await self._count_tokens(request, token, self._sessions[token])
        if request.method == "POST" and path == "/v1/messages":
            return await self._messages(request, token, self._sessions[token])
        return _error(404, "not_found_error", f"no route {request.method} {path}")

    def _authenticate(self, request: web.Request) -> str | None:
        presented = request.headers.get("x-api-key")
        if presented is None:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            presented = value.strip() if scheme.lower() == "bearer" else None
        if not presented:
            return None
        given = presented.encode()
        for token in list(self._sessions):
            if hmac.compare_digest(given, token.encode()):
                return token
        return None

    def _upstream_headers(self, request: web.Request) -> dict[str, str]:
        headers = {name: request.headers[name] for name in _FORWARDED_HEADERS if name in request.headers}
        headers.setdefault("anthropic-version", "2023-06-01")
        headers["content-type"] = "application/json"
        headers["x-api-key"] = self._api_key
        return headers

    def _upstream_url(self, path: str, request: web.Request) -> str:
        query = request.query_string
        return f"{self._upstream}{path}?{query}" if query else f"{self._upstream}{path}"

    def _client(self) -> aiohttp.ClientSession:
        if self._runner is None:
            raise RuntimeError("the model gateway is not started")
        if self._http is None:
            # trust_env=False: no proxy settings from the environment may divert the real key.
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_s), trust_env=False
            )
        return self._http

    async def _count_tokens(self, request: web.Request, token: str, run_id: int) -> web.StreamResponse:
        """Forwarded with the real key and not charged (counting is free), held to the message grammar.

        Counting a request that names an MCP server or a URL would make upstream reach out to it.
        """
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "invalid_request_error", "the request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "the request body is not a JSON object")
        unpriceable = _unpriceable(request, body)
        if unpriceable is not None:
            return self._reject(token, run_id, unpriceable)
        url = self._upstream_url("/v1/messages/count_tokens", request)
        try:
            async with self._client().post(url, data=raw, headers=self._upstream_headers(request)) as resp:
                body = await resp.read()
                headers = {name: resp.headers[name] for name in _RELAYED_HEADERS if name in resp.headers}
                return web.Response(status=resp.status, body=body, headers=headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            _log.warning("count_tokens upstream failed", error=type(exc).__name__)
            return _error(502, "api_error", "the model gateway could not reach the model API")

    async def _input_count(self, request: web.Request, body: dict[str, Any]) -> int | None:
        """The request's input tokens as upstream counts them, or None when it cannot."""
        counted = {name: body[name] for name in _COUNTED_FIELDS if name in body}
        url = self._upstream_url("/v1/messages/count_tokens", request)
        try:
            async with self._client().post(
                url,
                data=json.dumps(counted).encode(),
                headers=self._upstream_headers(request),
                timeout=aiohttp.ClientTimeout(total=min(self._timeout_s, COUNT_TOKENS_TIMEOUT_S)),
            ) as resp:
                if resp.status == 200:
                    answer = await resp.json(content_type=None)
                    tokens = _positive_int(answer.get("input_tokens")) if isinstance(answer, dict) else None
                    if tokens is not None:
                        return tokens
                _log.warning("count_tokens refused", status=resp.status)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            _log.warning("count_tokens failed", error=type(exc).__name__)
        return None

    def _reserved(self, run_id: int | None) -> float:
        """USD held by requests in flight: of one run, or of all runs when ``run_id`` is None."""
        return sum(usd for run, usd in self._reservations.values() if run_id is None or run == run_id)

    async def _messages(self, request: web.Request, token: str, run_id: int) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "invalid_request_error", "the request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "the request body is not a JSON object")
        unpriceable = _unpriceable(request, body)
        if unpriceable is not None:
            return self._reject(token, run_id, unpriceable)
        if not isinstance(body.get("model"), str):
            return _error(400, "invalid_request_error", "model: a model name is required")
        requested = _positive_int(body.get("max_tokens"))
        if requested is None:
            return _error(400, "invalid_request_error", "max_tokens: a positive integer is required")
        model = str(body["model"])
        price = _price_for(model, self._prices)
        input_count = await self._input_count(request, body)
        if input_count is None and carries_media(body):
            return _uncountable()
        # Uncounted, every byte of the body is taken for a token (a token is at least one byte).
        input_bound = _with_margin(len(raw) if input_count is None else input_count)
        input_worst = input_bound * price.input_per_token * CACHE_WRITE_FACTOR

        async with self._budget_lock:
            try:
                run_left, day_left = await self._ledger.remaining(run_id)
            except Exception:
                _log.exception("model gateway could not read the budget", run_id=run_id)
                return _error(500, "api_error", "the model gateway could not read the budget")
            run_free = run_left - self._reserved(run_id)
            day_free = day_left - self._reserved(None)
            left = min(run_free, day_free)
            allowed = max(0, math.floor((left - input_worst) / price.output_per_token))
            if allowed > 0 and input_worst + allowed * price.output_per_token > left:
                allowed -= 1  # floating-point rounding must not buy a token the budget lacks
            if allowed < self._min_output_tokens:
                return self._refuse(token, run_id, model, run_spent=run_free <= day_free, left=left)
            max_tokens = min(requested, allowed)
            reserved = input_worst + max_tokens * price.output_per_token
            reservation = next(self._reservation_ids)
            self._reservations[reservation] = (run_id, reserved)
        self._refusals.pop(token, None)

        body["max_tokens"] = max_tokens
        _fit_thinking(body, max_tokens)
        exchange = _Exchange()
        try:
            return await self._forward(request, body, exchange)
        finally:
            detail = {
                "model": model,
                "status": exchange.status,
                "input_count": input_count,
                "input_bound": input_bound,
                "max_tokens_sent": max_tokens,
                "max_tokens_requested": requested,
                "reserved_usd": reserved,
            }
            cost = self._cost(exchange, price, reserved, max_tokens, detail)
            self._check_bound(run_id, cost, reserved, detail)
            settle = asyncio.ensure_future(self._settle(reservation, run_id, cost, detail))
            self._settling.add(settle)
            settle.add_done_callback(self._settling.discard)
            # Shielded: a client that goes away must not stop the charge from being recorded.
            await asyncio.shield(settle)

    def _refuse(
        self, token: str, run_id: int, model: str, *, run_spent: bool, left: float
    ) -> web.StreamResponse:
        scope = "this run's budget" if run_spent else "today's model budget"
        # Worded to match none of the CLI's recoverable errors (prompt too long, output limit),
        # so it does not compact or raise max_tokens: CLI 2.1.330 sends the request three times
        # in all, then ends the session with an error result carrying this message.
        reason = f"{scope} is spent: ${max(left, 0.0):.4f} left is not enough for another {model} request"
        self._refusals[token] = reason
        _log.info("model request refused for budget", run_id=run_id, model=model, scope=scope, left_usd=left)
        response = _error(400, "invalid_request_error", f"mendbot model gateway: {reason}")
        response.headers["x-should-retry"] = "false"
        return response

    def _reject(self, token: str, run_id: int, reason: str) -> web.StreamResponse:
        """Refuse a request the gateway cannot price; nothing of it was sent upstream."""
        self._rejections[token] = reason
        _log.warning("model request refused: the gateway cannot price it", run_id=run_id, reason=reason)
        message = f"mendbot model gateway refused this request: {reason}"
        response = _error(400, "invalid_request_error", message)
        response.headers["x-should-retry"] = "false"
        return response

    @staticmethod
    def _check_bound(run_id: int, cost: float, reserved: float, detail: dict[str, Any]) -> None:
        """Log a charge above its reservation, or for anything never priced, as an error.

        For an allowed request that cannot happen by construction: it means upstream billed
        something the gateway does not price, or billed more input than it counted.
        """
        unpriced = detail.get("server_tool_use") or detail.get("cache_1h_input_tokens")
        over = cost > reserved * (1 + 1e-9)
        if not over and not unpriced:
            return
        if over:
            detail["over_reservation_usd"] = round(cost - reserved, 6)
        _log.error(
            "model request billed beyond what the gateway priced for it",
            run_id=run_id,
            cost_usd=round(cost, 6),
            reserved_usd=round(reserved, 6),
            input_count=detail.get("input_count"),
            input_bound=detail.get("input_bound"),
            unpriced=unpriced or None,
        )

    @staticmethod
    def _cost(
        exchange: _Exchange, price: Price, reserved: float, max_tokens: int, detail: dict[str, Any]
    ) -> float:
        """What to charge for one forwarded request; the worst case when the usage is unknown."""
        usage = exchange.usage
        if usage is not None:
            detail.update(usage.as_detail())
        if not exchange.reached_upstream:
            detail["charged"] = "nothing sent"
            return 0.0
        if exchange.status is not None and not 200 <= exchange.status < 300:
            detail["charged"] = "upstream error"
            return 0.0
        if usage is not None and usage.started and usage.finished:
            detail["charged"] = "usage"
            return usage.cost(price)
        detail["charged"] = "worst case"
        if usage is not None and usage.started:
            # The real input may exceed the estimate; output is unknown, so assume all of it.
            return max(reserved, replace(usage, output_tokens=max_tokens).cost(price))
        return reserved

    async def _settle(self, reservation: int, run_id: int, cost: float, detail: dict[str, Any]) -> None:
        async with self._budget_lock:
            try:
                await self._ledger.charge(run_id, cost, detail)
            except Exception:
                # The money may be spent but is not recorded: keep the reservation so this
                # process goes on counting it against the run and the day.
                _log.exception("model gateway could not record a charge", run_id=run_id, cost_usd=cost)
                return
            self._reservations.pop(reservation, None)
        _log.info("model request charged", run_id=run_id, cost_usd=round(cost, 6), **detail)

    async def _forward(
        self, request: web.Request, body: dict[str, Any], exchange: _Exchange
    ) -> web.StreamResponse:
        """Send the request upstream with the real key and stream the answer back chunk by chunk."""
        url = self._upstream_url("/v1/messages", request)
        try:
            upstream = await self._client().post(
                url, data=json.dumps(body).encode(), headers=self._upstream_headers(request)
            )
        except aiohttp.ClientConnectorError as exc:
            _log.warning("model API unreachable", error=type(exc).__name__)
            return _error(502, "api_error", "the model gateway could not reach the model API")
        except (aiohttp.ClientError, TimeoutError) as exc:
            exchange.reached_upstream = True
            _log.warning("model API request failed", error=type(exc).__name__)
            return _error(502, "api_error", "the model API request failed")
        exchange.reached_upstream = True
        async with upstream:
            exchange.status = upstream.status
            headers = {name: upstream.headers[name] for name in _RELAYED_HEADERS if name in upstream.headers}
            response = web.StreamResponse(status=upstream.status, headers=headers)
            content_type = upstream.headers.get("content-type", "")
            reader = _UsageReader(sse=content_type.startswith("text/event-stream"))
            exchange.usage = reader.usage
            try:
                await response.prepare(request)
            except ConnectionResetError:
                return response
            while True:
                try:
                    chunk = await upstream.content.readany()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    _log.warning("model API broke off mid-response", error=type(exc).__name__)
                    # Cut the agent's connection too: a cleanly ended, truncated stream would
                    # pass for a complete answer.
                    if request.transport is not None:
                        request.transport.close()
                    return response
                if not chunk:
                    break
                reader.feed(chunk)
                try:
                    await response.write(chunk)
                except ConnectionResetError:  # aiohttp's ClientConnectionResetError included
                    _log.info("agent disconnected mid-response")
                    return response
            reader.close()
            with contextlib.suppress(ConnectionResetError):
                await response.write_eof()
        return response
