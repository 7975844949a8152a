"""A scripted Anthropic Messages API on 127.0.0.1: the demo's model (`mendbot play --demo`) and the tests'.

The demo (`bot/tools/demo.py`) and the tests point the ``anthropic`` SDK or the bundled Claude Code
CLI at ``ModelDouble.base_url`` and script what "the model" answers, turn by turn::

    async with ModelDouble() as model:
        edit = tool_use("Edit", {"file_path": "/r/a.py", "old_string": "x", "new_string": "y"})
        model.script(edit, text("Done."))
        ...  # run the code under test
        assert model.tool_result(edit.tool_use_id).is_error is False

Every ``POST /v1/messages`` pops the next scripted turn (a ``Turn``, an ``ErrorTurn`` or a
callable that receives the request JSON and returns one).  An empty script asks the
``responder`` (a callable like a script's, for a model that answers by what it is asked, as
the demo's does); without one it answers a placeholder text and counts it in
``model.exhausted`` instead of hanging.  Requests with
``"stream": true`` get a standard server-sent-event stream, others a plain JSON message.
Like the real API, a turn never reports more output than the request's ``max_tokens``: a
scripted ``output_tokens`` above it is answered as ``max_tokens`` with stop_reason "max_tokens";
and ``count_tokens`` answers the input tokens the next scripted turn will report.
Everything the client sends is recorded in ``model.requests``.

Nothing here talks to the network beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import string
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, NamedTuple

from aiohttp import web

__all__ = [
    "EXHAUSTED_TEXT",
    "ErrorTurn",
    "Hold",
    "ModelDouble",
    "RecordedRequest",
    "ScriptItem",
    "ToolResult",
    "Turn",
    "error",
    "text",
    "text_block",
    "tool_use",
    "tool_use_block",
    "turn",
]

Block = dict[str, Any]
EXHAUSTED_TEXT = "(model double: script exhausted)"
DEFAULT_INPUT_TOKENS = 25
DEFAULT_OUTPUT_TOKENS = 12
_ALPHABET = string.ascii_letters + string.digits


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(22))


# --------------------------------------------------------------------------- turns


@dataclass
class Turn:
    """One scripted assistant message."""

    content: list[Block]
    stop_reason: str = "end_turn"
    input_tokens: int = DEFAULT_INPUT_TOKENS
    output_tokens: int = DEFAULT_OUTPUT_TOKENS
    model: str | None = None  # None: echo the request's "model"

    @property
    def tool_use_ids(self) -> list[str]:
        """Ids of this turn's tool_use blocks, in order."""
        return [str(b["id"]) for b in self.content if b.get("type") == "tool_use"]

    @property
    def tool_use_id(self) -> str:
        """Id of this turn's first tool_use block."""
        ids = self.tool_use_ids
        if not ids:
            raise ValueError("this turn has no tool_use block")
        return ids[0]


@dataclass
class ErrorTurn:
    """A scripted API failure, answered as an Anthropic-style error JSON."""

    status: int
    type: str
    message: str
    should_retry: bool = False  # sent as the `x-should-retry` header, honoured by Anthropic SDKs


@dataclass
class Hold:
    """A turn answered only once `release` is set: the model "thinking" until the test says so.

    `reached` is set when the request arrives, so a test can act while a run is mid-flight.
    """

    then: Turn
    release: asyncio.Event = field(default_factory=asyncio.Event)
    reached: asyncio.Event = field(default_factory=asyncio.Event)


TurnFactory = Callable[[dict[str, Any]], "Turn | ErrorTurn | Hold"]  # a Hold: answered once released
ScriptItem = Turn | ErrorTurn | Hold | TurnFactory


def text_block(content: str) -> Block:
    """A text content block."""
    return {"type": "text", "text": content}


def tool_use_block(name: str, input: dict[str, Any], id: str | None = None) -> Block:
    """A tool_use content block; the id is generated like the API's ("toolu_01…")."""
    return {"type": "tool_use", "id": id or _new_id("toolu_01"), "name": name, "input": input}


def turn(
    *blocks: Block,
    stop_reason: str | None = None,
    input_tokens: int = DEFAULT_INPUT_TOKENS,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
) -> Turn:
    """A turn of several blocks; stop_reason defaults to "tool_use" if any block is a tool_use."""
    if stop_reason is None:
        stop_reason = "tool_use" if any(b.get("type") == "tool_use" for b in blocks) else "end_turn"
    return Turn(list(blocks), stop_reason, input_tokens, output_tokens)


def text(content: str, *, input_tokens: int = DEFAULT_INPUT_TOKENS, output_tokens: int | None = None) -> Turn:
    """An assistant message with one text block, stop_reason "end_turn"."""
    out = output_tokens if output_tokens is not None else max(1, len(content) // 4)
    return turn(text_block(content), stop_reason="end_turn", input_tokens=input_tokens, output_tokens=out)


def tool_use(
    name: str,
    input: dict[str, Any],
    text: str | None = None,
    *,
    id: str | None = None,
    input_tokens: int = DEFAULT_INPUT_TOKENS,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
) -> Turn:
    """An assistant message with an optional leading text block and one tool_use block."""
    blocks = [text_block(text)] if text else []
    blocks.append(tool_use_block(name, input, id))
    return turn(*blocks, stop_reason="tool_use", input_tokens=input_tokens, output_tokens=output_tokens)


def error(status: int, type: str, message: str, *, should_retry: bool = False) -> ErrorTurn:
    """An API error turn, e.g. ``error(529, "overloaded_error", "Overloaded")``."""
    return ErrorTurn(status, type, message, should_retry)


# --------------------------------------------------------------------------- records


@dataclass
class RecordedRequest:
    """One request the double received (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any  # the parsed body, or None when there was no JSON body


class ToolResult(NamedTuple):
    """A tool_result block the client sent back, with its content flattened to text."""

    tool_use_id: str
    content: str
    is_error: bool


def _flatten(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"]
        return "\n".join(parts)
    return "" if content is None else json.dumps(content)


# --------------------------------------------------------------------------- server


@dataclass
class ModelDouble:
    """A scripted Anthropic Messages API on 127.0.0.1 (see the module docstring)."""

    responder: TurnFactory | None = None  # answers when the script is empty
    requests: list[RecordedRequest] = field(default_factory=list)
    exhausted: int = 0  # how many message requests found the script empty
    abandoned: int = 0  # streamed answers whose client went away before the end (a stopped run's CLI)
    unknown: list[RecordedRequest] = field(default_factory=list)  # requests answered 404
    _script: list[ScriptItem] = field(default_factory=list)
    _holds: list[Hold] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _port: int | None = None

    # -- lifecycle

    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port and start serving."""
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = int(sock.getsockname()[1])
        await web.SockSite(runner, sock).start()
        self._runner = runner

    async def stop(self) -> None:
        """Stop serving (idempotent); held turns are released so no handler outlives the double."""
        for hold in self._holds:
            hold.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def open_connections(self) -> int:
        """Client connections the double holds open right now, idle keep-alive ones included."""
        if self._runner is None or self._runner.server is None:
            return 0
        return len(self._runner.server.connections)

    async def __aenter__(self) -> ModelDouble:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """E.g. "http://127.0.0.1:41234" (no trailing slash)."""
        if self._port is None:
            raise RuntimeError("ModelDouble is not started")
        return f"http://127.0.0.1:{self._port}"

    # -- script

    def script(self, *turns: ScriptItem) -> None:
        """Append turns; each POST /v1/messages consumes one, in order."""
        self._script.extend(turns)

    @property
    def remaining(self) -> int:
        """How many scripted turns are still unconsumed."""
        return len(self._script)

    # -- inspection

    @property
    def message_requests(self) -> list[RecordedRequest]:
        """Only the POST /v1/messages requests."""
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/messages"]

    @property
    def paths(self) -> list[str]:
        """The paths of every request, in order."""
        return [r.path for r in self.requests]

    def tool_results(self) -> list[ToolResult]:
        """Every tool_result the client sent, once each (history repeats them), in order."""
        seen: dict[str, ToolResult] = {}
        for req in self.message_requests:
            body = req.json if isinstance(req.json, dict) else {}
            for msg in body.get("messages") or []:
                content = msg.get("content") if isinstance(msg, dict) else None
                if not isinstance(content, list):
                    continue
                for block in content:
                    if isinstance(block, dict) and block.get("type") == "tool_result":
                        tid = str(block.get("tool_use_id"))
                        seen.setdefault(
                            tid, ToolResult(tid, _flatten(block.get("content")), bool(block.get("is_error")))
                        )
        return list(seen.values())

    def tool_result(self, tool_use_id: str) -> ToolResult:
        """The tool_result for one tool_use id (KeyError if the client never sent it)."""
        for result in self.tool_results():
            if result.tool_use_id == tool_use_id:
                return result
        raise KeyError(
            f"no tool_result for {tool_use_id}; got {[r.tool_use_id for r in self.tool_results()]}"
        )

    # -- HTTP

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            json=body,
        )
        self.requests.append(rec)
        path = request.path.rstrip("/")
        if path == "/api/hello" and request.method in ("GET", "HEAD"):
            return web.Response(status=200)
        if path == "/v1/messages/count_tokens" and request.method == "POST":
            return _json(200, {"input_tokens": self._next_input_tokens() or max(1, len(raw) // 4)})
        if path == "/v1/messages" and request.method == "POST":
            return await self._messages(request, body if isinstance(body, dict) else {})
        self.unknown.append(rec)
        return _json(404, _error_body("not_found_error", f"model double: no route {request.method} {path}"))

    def _next_input_tokens(self) -> int | None:
        """The input the next scripted turn will report: as with the real API, counting a request's
        tokens gives what its usage will say (None when the next turn is built on the fly)."""
        item = self._script[0] if self._script else None
        if isinstance(item, Hold):
            item = item.then
        return item.input_tokens if isinstance(item, Turn) else None

    def _next_turn(self, body: dict[str, Any]) -> Turn | ErrorTurn | Hold:
        if not self._script and self.responder is not None:
            return self.responder(body)
        if not self._script:
            self.exhausted += 1
            return text(EXHAUSTED_TEXT)
        item = self._script.pop(0)
        if isinstance(item, Turn | ErrorTurn | Hold):
            return item
        return item(body)

    async def _messages(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        t = self._next_turn(body)
        if isinstance(t, Hold):
            self._holds.append(t)
            t.reached.set()
            await t.release.wait()
            t = t.then
        if isinstance(t, ErrorTurn):
            resp = _json(t.status, _error_body(t.type, t.message))
            resp.headers["x-should-retry"] = "true" if t.should_retry else "false"
            return resp
        t = _within_max_tokens(t, body.get("max_tokens"))
        message = _message(t, str(body.get("model") or "claude-double"))
        if not body.get("stream"):
            return _json(200, message)
        streamed = web.StreamResponse(
            status=200, headers={"Cache-Control": "no-cache", "request-id": _new_id("req_01")}
        )
        try:
            await _stream(request, streamed, message, t)
        except ConnectionResetError:
            # Nobody is left to answer (a run stopped and its CLI with it): no error of the double's, which
            # aiohttp would log with a traceback in the middle of the playground's or a bench's output.
            self.abandoned += 1
        return streamed


def _within_max_tokens(t: Turn, max_tokens: Any) -> Turn:
    """The turn as the real API would bill it: never more output than the request's max_tokens."""
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and t.output_tokens > max_tokens:
        return replace(t, output_tokens=max_tokens, stop_reason="max_tokens")
    return t


def _json(status: int, payload: Any) -> web.Response:
    # Exactly "application/json" (no charset suffix), plus a request id like the real API.
    resp = web.Response(status=status, body=json.dumps(payload).encode(), content_type="application/json")
    resp.headers["request-id"] = _new_id("req_01")
    return resp


def _error_body(type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type, "message": message}}


def _message(t: Turn, request_model: str) -> dict[str, Any]:
    return {
        "id": _new_id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": t.model or request_model,
        "content": [dict(b) for b in t.content],
        "stop_reason": t.stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": t.input_tokens,
            "output_tokens": t.output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def _halves(s: str) -> list[str]:
    """Split into two non-empty chunks when possible (clients must accumulate deltas)."""
    if len(s) < 2:
        return [s] if s else []
    mid = len(s) // 2
    return [s[:mid], s[mid:]]


def _event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return kind, {"type": kind, **fields}


def _stream_events(message: dict[str, Any], t: Turn) -> list[tuple[str, dict[str, Any]]]:
    start = dict(message, content=[], stop_reason=None, usage=dict(message["usage"], output_tokens=1))
    events = [_event("message_start", message=start), _event("ping")]
    for index, block in enumerate(message["content"]):
        kind = block.get("type")
        if kind == "text":
            head: Block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": c} for c in _halves(str(block["text"]))]
        elif kind == "tool_use":
            head = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            chunks = _halves(json.dumps(block["input"]))
            deltas = [{"type": "input_json_delta", "partial_json": c} for c in chunks]
        else:
            raise ValueError(f"model double cannot stream a {kind!r} block")
        events.append(_event("content_block_start", index=index, content_block=head))
        events.extend(_event("content_block_delta", index=index, delta=d) for d in deltas)
        events.append(_event("content_block_stop", index=index))
    stop = {"stop_reason": t.stop_reason, "stop_sequence": None}
    events.append(_event("message_delta", delta=stop, usage={"output_tokens": t.output_tokens}))
    events.append(_event("message_stop"))
    return events


async def _stream(request: web.Request, resp: web.StreamResponse, message: dict[str, Any], t: Turn) -> None:
    resp.content_type = "text/event-stream"
    await resp.prepare(request)
    for name, data in _stream_events(message, t):
        await resp.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
    await resp.write_eof()
