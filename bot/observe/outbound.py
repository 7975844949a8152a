"""The bot's calls to other services: what one call is, how it is recorded, and how a storm of failing
calls is said.

Bots fail most often at their calls to other services — a search provider that times out, an API that
starts answering 429 — and a handler's traceback says only that it waited. The HTTP clients' own
instrumentation (bot/runtime/http_calls.py) hands each call the bot's code makes to `record_call`,
which records it as an action of kind `http:<service>` (the service is the host, with its port when it
is not the scheme's):

- `source` and `extra.command` name the handler the call ran inside (`command:search`), so a complaint
  about the command meets the calls it made (bot/improve/evidence/target.py);
- `frames` are the in-repo frames that made the call, innermost last (mendbot's own left out): the code
  that called the service, which the evidence pack ranks as a suspect;
- `extra.call`: the method, the route template (`route_template`: ids, long numbers, hashes and tokens
  in the path folded, `/users/123/posts` → `/users/{id}/posts`; the query string dropped, only its
  parameter names kept), the status, what became of the call (`outcome`), the latency, the timeout the
  call had and the `Retry-After` it was answered with;
- a failing call (a timeout, a connection error, 429, 408 or a 5xx) is a failure with a fingerprint of
  its own (the service, route, outcome and calling function), an error type (`TimeoutError`,
  `HTTP 429`) and a message saying what happened ("GET /search timed out after 0.5 s").

Nothing of the request's headers or body is kept, and the record is redacted like every other.

The exception a failing call raised into the bot's code is marked with its service (`mark_raised`), so
the handler's own failure — the command that crashed on the timeout — is known as the service's storm
(`failed_service`; the recorder notes it in `extra.outbound`) rather than a bug of its own: the anomaly
detector's `service` rule counts the calls (bot/observe/detector.py), one incident names the service and
the code that called it (`service_summary`). A call the caller's own timeout cancelled (`wait_for`,
`asyncio.timeout`) is recorded as `cancelled`, which says nothing yet; the handler's `TimeoutError` that
came of it says it timed out (`extra.outbound_outcome`), and the rule counts it as that failed call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from types import FrameType
from typing import Any, Literal, Protocol

import msgspec

from mendbot.db.records import ActionRecord
from mendbot.observe.fingerprint import relative_path

__all__ = [
    "FAILED_OUTCOMES",
    "KIND_PREFIX",
    "CallRecorder",
    "OutboundCall",
    "Outcome",
    "caller_frames",
    "counted_as",
    "failed_service",
    "is_discord_host",
    "mark_raised",
    "outcome_of",
    "record_call",
    "retry_after_seconds",
    "route_template",
    "service_of",
    "service_summary",
]

KIND_PREFIX = "http:"
Outcome = Literal["ok", "client_error", "rate_limited", "server_error", "timeout", "error", "cancelled"]
# What counts against a service: it did not answer in time, could not be reached, refused for load
# (429), or failed itself (5xx). A 404 or 400 is an answer to what was asked; a call the caller cancelled
# (its own `wait_for` ran out, or the bot is shutting down) says nothing of the service.
FAILED_OUTCOMES: frozenset[str] = frozenset({"rate_limited", "server_error", "timeout", "error"})
# Set on an exception a failing call raised into the bot's code: the service it came from.
_MARK = "__mendbot_outbound__"
# Discord's own API, gateway, CDN and media hosts: discord.py's calls, never the bot's to another service.
_DISCORD_HOSTS = frozenset({"discord.com", "discordapp.com", "discord.gg", "discordapp.net", "discord.media"})
_DISCORD_SUBDOMAINS = tuple(f".{host}" for host in sorted(_DISCORD_HOSTS))
_MAX_SEGMENTS = 12
_MAX_SEGMENT = 64
_MAX_FRAMES = 6
_MAX_STACK = 80
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_NUMBER = re.compile(r"(\d+)(\.[A-Za-z]{1,5})?")
_HEX = re.compile(r"[0-9a-f]{16,}", re.I)
# A segment at least 16 characters long mixing letters and digits: a key, a token, a hash in base64.
_TOKENISH = re.compile(r"(?=[^/]*\d)(?=[^/]*[A-Za-z])[A-Za-z\d_:.=+~-]{16,}")
_VALUE = re.compile(r"[%@+=,;\s]")  # user-typed text, an address, a parameter: not a route's own word
_REASONS = {408: "Request Timeout", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}  # fmt: skip


def route_template(path: str) -> str:
    """The route a path is an instance of: ids, long numbers, UUIDs, hashes and token-like segments
    folded (`/users/123/posts` → `/users/{id}/posts`), user-typed values (`%20`, `@`, `=`) too. The
    query string is not part of it."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    segments = path.split("/")
    folded = []
    for segment in segments[: _MAX_SEGMENTS + 1]:
        folded.append(_fold(segment))
    if len(segments) > _MAX_SEGMENTS + 1:
        folded.append("…")
    route = "/".join(folded)
    return route if route.startswith("/") else "/" + route


def _fold(segment: str) -> str:
    if not segment or (segment.isalpha() and len(segment) <= _MAX_SEGMENT):
        return segment  # a word: most segments of most routes (`v1` is no word, and is kept below)
    number = _NUMBER.fullmatch(segment)
    if number is not None:
        return "{id}" + (number.group(2) or "")
    if _UUID.fullmatch(segment):
        return "{uuid}"
    if _HEX.fullmatch(segment):
        return "{hex}"
    if _TOKENISH.fullmatch(segment):
        return "{token}"
    if len(segment) > _MAX_SEGMENT or _VALUE.search(segment):
        return "{value}"
    return segment


def service_of(host: str | None, port: int | None, scheme: str) -> str:
    """The service a call went to: its host, lower-cased, with the port when it is not the scheme's."""
    name = (host or "unknown").lower().rstrip(".")
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(scheme.lower())
    return name if port is None or port == default else f"{name}:{port}"


def is_discord_host(host: str | None) -> bool:
    """Whether a call goes to Discord itself (its API, CDN or media): discord.py's, not the bot's."""
    name = (host or "").lower().rstrip(".")
    return name in _DISCORD_HOSTS or name.endswith(_DISCORD_SUBDOMAINS)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A `Retry-After` header's wait in seconds (delta-seconds or an HTTP date); None if absent or
    unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, round(when.timestamp() - (time.time() if now is None else now), 3))


def outcome_of(status: int | None, error: BaseException | None, *, timed_out: bool = False) -> Outcome:
    """What became of a call: answered (with what class of status), timed out, failed or cancelled."""
    if error is not None:
        if isinstance(error, asyncio.CancelledError):
            return "cancelled"
        if timed_out or isinstance(error, TimeoutError):
            return "timeout"
        status = status if status is not None else getattr(error, "status", None)
        if not isinstance(status, int):
            return "error"
    if status is None:
        return "error"
    if status in (408,):
        return "timeout"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "ok"


def mark_raised(error: BaseException, service: str, outcome: Outcome) -> None:
    """Mark the exception a failing or cancelled call raised with its service and what became of the
    call (see the module docstring)."""
    # An exception type with slots cannot be marked: its handler's failure stays a failure of its own.
    with contextlib.suppress(AttributeError, TypeError):
        setattr(error, _MARK, (service, outcome))


def failed_service(error: BaseException) -> tuple[str, bool] | None:
    """The service whose failing call raised `error`, or the exception it was raised from (a few levels
    of `raise … from` and of handling), if one did; and whether only `error` says so.

    A call its caller cancelled (`asyncio.wait_for`, `asyncio.timeout`) failed if that cancellation
    became a `TimeoutError` on its way to `error`: the caller's own timeout ran out waiting for the
    service, which the call's record (`cancelled`) could not tell. Any other cancellation (the bot
    stopping, a person cancelling) says nothing of the service."""
    seen = 0
    timed_out = False
    current: BaseException | None = error
    while current is not None and seen < 5:
        mark = getattr(current, _MARK, None)
        if isinstance(mark, tuple) and len(mark) == 2:
            service, outcome = mark
            if outcome in FAILED_OUTCOMES:
                return service, False
            return (service, True) if outcome == "cancelled" and timed_out else None
        timed_out = timed_out or isinstance(current, TimeoutError)
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def counted_as(record: ActionRecord) -> tuple[str | None, str]:
    """The (fingerprint, kind) a failure counts toward: its own, but for a handler's failure that alone
    says a call timed out (its caller's timeout cancelled it), which is that service's failure."""
    if record.extra.get("outbound_outcome"):
        return None, KIND_PREFIX + str(record.extra.get("outbound"))
    return record.fingerprint, record.kind


class OutboundCall(msgspec.Struct, frozen=True):
    """One call the bot's code made to another service, as the client's instrumentation saw it."""

    service: str
    method: str
    route: str
    latency_ms: float
    outcome: Outcome
    status: int | None = None
    error_type: str | None = None  # the exception the call raised, if any
    timeout_s: float | None = None  # the total timeout the call had (None: none, or not known)
    retry_after_s: float | None = None
    query: tuple[str, ...] = ()  # the query string's parameter names (never their values)
    client: str = "aiohttp"

    @property
    def failed(self) -> bool:
        return self.outcome in FAILED_OUTCOMES

    def what_happened(self) -> str:
        """What happened, in a line: "GET /search timed out after 0.5 s", "GET /search answered 429 Too
        Many Requests (Retry-After 30 s)"."""
        call = f"{self.method} {self.route}"
        if self.outcome == "timeout" and self.status is None:
            limit = (
                f" after {self.timeout_s:g} s" if self.timeout_s else f" after {self.latency_ms / 1000:.2g} s"
            )
            return f"{call} timed out{limit}"
        if self.status is not None and self.outcome != "error":
            reason = _REASONS.get(self.status, "")
            answer = f"{call} answered {self.status}{' ' + reason if reason else ''}"
            if self.retry_after_s is not None:
                answer += f" (Retry-After {self.retry_after_s:g} s)"
            return answer
        if self.outcome == "cancelled":
            return f"{call} was cancelled by its caller after {self.latency_ms:.0f} ms"
        return f"{call} failed with {self.error_type or 'an error'}"


def caller_frames(prefixes: tuple[str, ...], skip: int = 1) -> list[str]:
    """The in-repo frames of the current task's stack, innermost last, as "file:line:function" — the bot's
    code that made the call (mendbot's own frames, the recording wrappers around every handler, left out)."""
    frames: list[str] = []
    frame: FrameType | None
    try:
        frame = sys._getframe(skip + 1)
    except ValueError:
        return frames
    depth = 0
    while frame is not None and depth < _MAX_STACK and len(frames) < _MAX_FRAMES:
        module = frame.f_globals.get("__name__", "")
        if module == "asyncio.events" and frame.f_code.co_name == "_run":
            break  # the event loop stepping the task: further out is the program's start, not the call
        if not (module == "mendbot" or module.startswith("mendbot.")):
            relative = _relative(frame.f_code.co_filename, prefixes)
            if relative is not None:
                frames.append(f"{relative}:{frame.f_lineno}:{frame.f_code.co_name}")
        frame = frame.f_back
        depth += 1
    frames.reverse()
    return frames


class CallRecorder(Protocol):
    """What records a call: the action recorder (bot/observe/recorder.py)."""

    def record_call(
        self,
        kind: str,
        source: str,
        *,
        ok: bool,
        duration_ms: float,
        failure: tuple[str, str, str] | None,
        frames: list[str],
        extra: dict[str, Any],
        guild_id: int | None = None,
        channel_id: int | None = None,
        user_id: int | None = None,
        message_id: int | None = None,
    ) -> ActionRecord: ...


@functools.lru_cache(maxsize=4096)
def _relative(filename: str, prefixes: tuple[str, ...]) -> str | None:
    # A call's stack is some twenty frames, mostly of the same few files: each is looked at once.
    return relative_path(filename, prefixes)


def _fingerprint(call: OutboundCall, frames: Sequence[str]) -> str:
    where = ""
    if frames:
        path, _, rest = frames[-1].partition(":")
        where = f"{path}:{rest.partition(':')[2]}"  # the calling function, not its line
    outcome = call.outcome if call.status is None else f"{call.outcome}:{call.status}"
    text = "\n".join(("http", call.service, call.method, call.route, outcome, where))
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


def record_call(
    recorder: CallRecorder,
    call: OutboundCall,
    *,
    handler: str | None,
    frames: list[str],
    ids: dict[str, Any] | None = None,
) -> ActionRecord:
    """Record one outbound call as an action of its service's kind (see the module docstring)."""
    failure = None
    if call.failed:
        error_type = call.error_type if call.status is None else f"HTTP {call.status}"
        failure = (error_type or "Error", call.what_happened(), _fingerprint(call, frames))
    details: dict[str, Any] = {
        "client": call.client,
        "method": call.method,
        "route": call.route,
        "status": call.status,
        "outcome": call.outcome,
        "latency_ms": round(call.latency_ms, 3),
        "timeout_s": call.timeout_s,
    }
    if call.retry_after_s is not None:
        details["retry_after_s"] = call.retry_after_s
    if call.query:
        details["query"] = list(call.query)
    if call.error_type is not None:
        details["error_type"] = call.error_type
    return recorder.record_call(
        KIND_PREFIX + call.service,
        handler or "bot",
        ok=not call.failed,
        duration_ms=call.latency_ms,
        failure=failure,
        frames=frames,
        extra={"call": details, **({"command": handler} if handler else {})},
        **(ids or {}),
    )


# -- how a storm of failing calls is said -------------------------------------------------------------

_OUTCOME_WORDS = {
    "timeout": ("timeout", "timeouts"),
    "rate_limited": ("rate limit (429)", "rate limits (429)"),
    "server_error": ("server error", "server errors"),
    "error": ("connection error", "connection errors"),
}


def _window_words(window_s: float) -> str:
    if window_s % 3600 == 0:
        hours = int(window_s // 3600)
        return "hour" if hours == 1 else f"{hours} hours"
    return f"{window_s / 60:g} min"


def _calling_place(record: ActionRecord) -> str:
    if record.frames:
        path, _, rest = record.frames[-1].partition(":")
        return f"{path}:{rest.partition(':')[2]}"
    return str(record.extra.get("command") or record.source)


def service_summary(
    service: str, failures: Sequence[ActionRecord], failed: int, total: int, window_s: float
) -> str:
    """The incident's summary: "4 timeouts in the last hour from search.example (4 of 4 calls failed),
    from `cogs/search.py:lookup`"."""
    outcomes: Counter[str] = Counter()
    retry_after: float | None = None
    statuses: Counter[int] = Counter()
    for record in failures:
        call = record.extra.get("call") or {}
        outcomes[str(call.get("outcome") or record.extra.get("outbound_outcome"))] += 1
        if isinstance(call.get("retry_after_s"), int | float):
            retry_after = float(call["retry_after_s"])
        if call.get("outcome") == "server_error" and isinstance(call.get("status"), int):
            statuses[call["status"]] += 1
    parts = []
    for outcome, (one, many) in _OUTCOME_WORDS.items():
        count = outcomes.get(outcome, 0)
        if not count:
            continue
        words = f"{count} {one if count == 1 else many}"
        if outcome == "rate_limited" and retry_after is not None:
            words += f" with Retry-After {retry_after:g} s"
        if outcome == "server_error" and statuses:
            words += " (" + ", ".join(str(status) for status, _ in statuses.most_common(3)) + ")"
        parts.append(words)
    what = ", ".join(parts) or f"{failed} failed calls"
    places = Counter(_calling_place(record) for record in failures)
    caller = ""
    if places:
        (first, _), *others = places.most_common()
        caller = f", from `{first}`" + (f" and {len(others)} more place(s)" if others else "")
    return (
        f"{what} in the last {_window_words(window_s)} from {service}"
        f" ({failed} of {total} calls failed){caller}"
    )
