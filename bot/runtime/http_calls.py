"""The HTTP clients' instrumentation: every call the bot's code makes to another service, recorded.

As OpenTelemetry's aiohttp-client instrumentation and sentry-python's aiohttp integration do, this hooks
the client library's own extension point rather than the bot's code: `aiohttp.ClientSession.__init__`
is wrapped once so that every session created after mendbot is attached gets a `TraceConfig` of
mendbot's, whose request-end and request-exception callbacks record the call
(bot/observe/outbound.py). httpx, where it is installed, is observed the same way through its own
extension point, the transport: every `httpx.AsyncClient` created after mendbot is attached has its
transports (and mounted ones) wrapped in a transport that records each request it sends.

What is the bot's and what is not:

- a session or client is the bot's when the code creating it is the bot's: walking out from the
  creation, the first frame that is in the bot's repository makes it the bot's, one of discord.py's
  (its own HTTP session) or mendbot's (the model gateway, GitHub through githubkit) makes it not — so
  libraries in between (a client SDK the bot uses) do not decide;
- a call to Discord itself (discord.com, its CDN and media hosts) is never recorded, whatever session
  made it (a webhook sent through the bot's session is a Discord API call);
- a call is recorded with the handler it ran inside (the command, listener, task or view whose capture
  is current: bot/observe/capture.py); one made outside every handler (at start-up) is not.

Recording never breaks or slows the bot's call: each callback takes a few microseconds, catches what it
raises and logs it, and the call goes on as if mendbot were not there. `instrument_http(recording)` is
idempotent and `uninstrument_http(recording)` symmetric: the last one taken off puts the libraries' own
`__init__` back, and sessions made meanwhile stop recording (their callbacks find nobody to record to).
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import time
import weakref
from collections.abc import Callable
from types import FrameType, SimpleNamespace
from typing import TYPE_CHECKING, Any

import aiohttp

from mendbot.kernel.log import bound_ids, get_logger
from mendbot.observe.capture import current_capture
from mendbot.observe.fingerprint import relative_path, root_prefixes
from mendbot.observe.outbound import (
    FAILED_OUTCOMES,
    OutboundCall,
    caller_frames,
    is_discord_host,
    mark_raised,
    outcome_of,
    record_call,
    retry_after_seconds,
    route_template,
    service_of,
)

if TYPE_CHECKING:
    from mendbot.runtime.recording import Recording

__all__ = ["instrument_http", "uninstrument_http"]

_log = get_logger(__name__)
# Set on the wrapped `__init__`s: the sinks (instrumented bots) it serves, newest last.
_SINKS = "__mendbot_http_sinks__"
_MAX_CREATOR_FRAMES = 60
# The client libraries themselves (and this module): never who creates a session, only how.
_CLIENT_LIBRARIES = frozenset({"aiohttp", "httpx"})
# mendbot's wrappers around the bot's handlers: code further in, reached through libraries only, runs
# inside one of the bot's handlers (a bot installed as a package has no frame in a repository).
_HANDLER_WRAPPERS = frozenset(
    {
        "mendbot.runtime.recording",
        "mendbot.runtime.tree_recording",
        "mendbot.runtime.entry_points",
        "mendbot.runtime.hooks",
        "mendbot.runtime.instrument",
    }
)


class _Sink:
    """One instrumented bot's recording, as the callbacks reach it (weakly: a closed bot is let go)."""

    def __init__(self, recording: Recording) -> None:
        self._recording = weakref.ref(recording)
        self._prefixes: tuple[str, ...] | None = None
        self.active = True

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The roots of the bot's repository (its checkout, and the one it works on), as path prefixes."""
        if self._prefixes is None:
            recording = self._recording()
            recorder = recording.recorder if recording is not None else None
            roots = (recorder.repo_root, *recorder.more_roots) if recorder is not None else ()
            self._prefixes = root_prefixes(roots)
        return self._prefixes

    @property
    def recording(self) -> Recording | None:
        return self._recording() if self.active else None

    def made_by_the_bot(self, frame: FrameType | None) -> bool:
        """Whether the code creating a session or client (walking out from `frame`) is the bot's: created
        by discord.py itself or by mendbot, it is not; by the bot's own code (a frame in its repository),
        it is; by another library, whoever called that library decides — mendbot's code (its GitHub
        client) or the bot's (its code, or a handler of the bot's mendbot runs)."""
        depth = 0
        direct = True
        while frame is not None and depth < _MAX_CREATOR_FRAMES:
            module = str(frame.f_globals.get("__name__", ""))
            top = module.partition(".")[0]
            if not (top in _CLIENT_LIBRARIES or module == __name__):
                if module in _HANDLER_WRAPPERS:
                    return True
                if top == "mendbot" or (top == "discord" and direct):
                    return False
                if relative_path(frame.f_code.co_filename, self.prefixes) is not None:
                    return True
                direct = False
            frame = frame.f_back
            depth += 1
        return True

    def record(
        self,
        *,
        method: str,
        scheme: str,
        host: str | None,
        port: int | None,
        path: str,
        query: tuple[str, ...],
        started: float,
        status: int | None = None,
        retry_after: str | None = None,
        error: BaseException | None = None,
        timed_out: bool = False,
        timeout_s: float | None = None,
        client: str,
    ) -> None:
        """Record one finished call, if it is one to record (see the module docstring)."""
        latency_ms = (time.perf_counter() - started) * 1000
        recording = self.recording
        capture = current_capture()
        if recording is None or capture is None or is_discord_host(host):
            return
        outcome = outcome_of(status, error, timed_out=timed_out)
        call = OutboundCall(
            service=service_of(host, port, scheme),
            method=method.upper(),
            route=route_template(path),
            latency_ms=latency_ms,
            outcome=outcome,
            status=status if status is not None else _status_of(error),
            error_type=type(error).__name__ if error is not None else None,
            timeout_s=timeout_s,
            retry_after_s=retry_after_seconds(retry_after),
            query=query,
            client=client,
        )
        if error is not None and (outcome in FAILED_OUTCOMES or outcome == "cancelled"):
            mark_raised(error, call.service, outcome)
        # The frames above this one and the client library's: the bot's code that made the call.
        frames = caller_frames(self.prefixes, skip=2)
        record_call(recording.recorder, call, handler=capture.kind, frames=frames, ids=bound_ids())


def _status_of(error: BaseException | None) -> int | None:
    status = getattr(error, "status", None)
    return status if isinstance(status, int) and status >= 100 else None


def _sinks_of(init: Callable[..., None]) -> list[_Sink] | None:
    sinks = getattr(init, _SINKS, None)
    return sinks if isinstance(sinks, list) else None


def _newest(sinks: list[_Sink]) -> _Sink | None:
    sinks[:] = [sink for sink in sinks if sink.recording is not None]
    return sinks[-1] if sinks else None


def _safely(what: str, call: Callable[[], None]) -> None:
    """Run one piece of recording; what it raises is logged, never handed to the bot's call."""
    try:
        call()
    except Exception:
        _log.warning("recording a call to another service failed", where=what, exc_info=True)


# -- aiohttp: a TraceConfig on every session the bot creates ------------------------------------------


def _trace_config(sink: _Sink) -> aiohttp.TraceConfig:
    def timeout_of(session: aiohttp.ClientSession, frame: FrameType | None) -> float | None:
        # The request's own timeout, as `ClientSession._request` resolved it (its local); the session's
        # when aiohttp is not laid out so.
        for _ in range(6):
            if frame is None:
                break
            if frame.f_code.co_name == "_request":
                timeout = frame.f_locals.get("real_timeout")
                if isinstance(timeout, aiohttp.ClientTimeout):
                    return timeout.total
                break
            frame = frame.f_back
        return session.timeout.total

    async def started(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
        ctx.mendbot_started = time.perf_counter()
        try:
            ctx.mendbot_timeout = timeout_of(session, sys._getframe(1))
        except Exception:
            ctx.mendbot_timeout = None

    def finish(ctx: SimpleNamespace, params: Any, **outcome: Any) -> None:
        begun = getattr(ctx, "mendbot_started", None)
        if begun is None:
            return
        url = params.url
        sink.record(
            method=params.method,
            scheme=url.scheme,
            host=url.host,
            port=url.port,
            path=url.raw_path,
            query=tuple(dict.fromkeys(url.query.keys())),
            started=begun,
            timeout_s=getattr(ctx, "mendbot_timeout", None),
            client="aiohttp",
            **outcome,
        )

    async def ended(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
        response = params.response
        _safely(
            "aiohttp request end",
            lambda: finish(
                ctx, params, status=response.status, retry_after=response.headers.get("Retry-After")
            ),
        )

    async def failed(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
        _safely("aiohttp request exception", lambda: finish(ctx, params, error=params.exception))

    config = aiohttp.TraceConfig()
    config.on_request_start.append(started)
    config.on_request_end.append(ended)
    config.on_request_exception.append(failed)
    return config


def _aiohttp_init(original: Callable[..., None]) -> Callable[..., None]:
    sinks: list[_Sink] = []

    @functools.wraps(original)
    def __init__(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        sink = _newest(sinks)
        if sink is not None:
            try:
                ours = sink.made_by_the_bot(sys._getframe(1))
            except Exception:
                ours = False
            if ours:
                kwargs["trace_configs"] = [*(kwargs.get("trace_configs") or ()), _trace_config(sink)]
        original(self, *args, **kwargs)

    setattr(__init__, _SINKS, sinks)
    return __init__


# -- httpx: a recording transport around every AsyncClient's transports -------------------------------


@functools.cache
def _recording_transport_class() -> type[Any]:
    import httpx

    class RecordingTransport(httpx.AsyncBaseTransport):
        """A client's own transport, each request it sends recorded."""

        def __init__(self, inner: httpx.AsyncBaseTransport, sink: _Sink) -> None:
            self.inner = inner
            self.sink = sink

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            begun = time.perf_counter()
            try:
                response = await self.inner.handle_async_request(request)
            except BaseException as exc:
                error, timed_out = exc, isinstance(exc, httpx.TimeoutException)
                _safely(
                    "httpx request", lambda: self._record(request, begun, error=error, timed_out=timed_out)
                )
                raise
            retry_after = response.headers.get("Retry-After")
            _safely(
                "httpx request",
                lambda: self._record(request, begun, status=response.status_code, retry_after=retry_after),
            )
            return response

        def _record(self, request: httpx.Request, begun: float, **outcome: Any) -> None:
            url = request.url
            timeouts = request.extensions.get("timeout") or {}
            limits = [value for value in timeouts.values() if isinstance(value, int | float)]
            self.sink.record(
                method=request.method,
                scheme=url.scheme,
                host=url.host,
                port=url.port,
                path=url.raw_path.decode("ascii", "replace"),
                query=tuple(dict.fromkeys(key for key, _ in url.params.multi_items())),
                started=begun,
                timeout_s=max(limits) if limits else None,
                client="httpx",
                **outcome,
            )

        async def aclose(self) -> None:
            await self.inner.aclose()

    return RecordingTransport


def _httpx_init(original: Callable[..., None]) -> Callable[..., None]:
    sinks: list[_Sink] = []

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        sink = _newest(sinks)
        if sink is None:
            return
        try:
            if sink.made_by_the_bot(sys._getframe(1)):
                recording = _recording_transport_class()
                self._transport = recording(self._transport, sink)
                self._mounts = {
                    pattern: recording(transport, sink) if transport is not None else None
                    for pattern, transport in self._mounts.items()
                }
        except Exception:
            _log.warning("observing an httpx client failed", exc_info=True)

    setattr(__init__, _SINKS, sinks)
    return __init__


class _AfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs `then(module)` once `name` is imported (httpx costs ~0.1 s to import: mendbot does not import
    it for a bot that never does). It finds the module through the other finders and executes it with
    their loader, then calls `then`."""

    def __init__(self, name: str, then: Callable[[Any], None]) -> None:
        self.name = name
        self.then = then
        self.loader: importlib.abc.Loader | None = None
        self.finding = False

    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name or self.finding:
            return None
        self.finding = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.finding = False
        if spec is None or spec.loader is None:
            return None
        self.loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        assert self.loader is not None
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        assert self.loader is not None
        module.__spec__.loader = module.__loader__ = self.loader  # the module's own, for whoever asks it
        self.loader.exec_module(module)
        _forget_finder(self)
        _safely("observing httpx once imported", lambda: self.then(module))


def _forget_finder(finder: _AfterImport) -> None:
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)


# -- on and off ---------------------------------------------------------------------------------------


def _wrap_client(
    owner: Any, wrap: Callable[[Callable[..., None]], Callable[..., None]], sink_of: _Sink
) -> None:
    """Put `sink_of` on `owner`'s wrapped `__init__` (wrapping it first, once)."""
    init = owner.__dict__["__init__"]
    sinks = _sinks_of(init)
    if sinks is None:
        init = wrap(init)
        setattr(owner, "__init__", init)  # noqa: B010  (mypy: a method is not assigned to)
        sinks = _sinks_of(init)
        assert sinks is not None
    if not any(sink.recording is sink_of.recording for sink in sinks):
        sinks.append(sink_of)


def _unwrap_client(owner: Any, recording: Recording) -> None:
    init = owner.__dict__["__init__"]
    sinks = _sinks_of(init)
    if sinks is None:
        return
    for sink in [sink for sink in sinks if sink.recording is recording]:
        sink.active = False
        sinks.remove(sink)
    if _newest(sinks) is None:
        setattr(owner, "__init__", init.__wrapped__)  # noqa: B010


def _waiting_for_httpx() -> _AfterImport | None:
    return next((f for f in sys.meta_path if isinstance(f, _AfterImport) and f.name == "httpx"), None)


def instrument_http(recording: Recording) -> None:
    """Record the calls of every HTTP session or client the bot's code creates from now on. Idempotent."""
    _wrap_client(aiohttp.ClientSession, _aiohttp_init, _Sink(recording))
    httpx = sys.modules.get("httpx")
    if httpx is not None:
        _wrap_client(httpx.AsyncClient, _httpx_init, _Sink(recording))
    elif _waiting_for_httpx() is None and importlib.util.find_spec("httpx") is not None:
        # Observed once the bot imports it, for whichever bots are instrumented then.
        sys.meta_path.insert(0, _AfterImport("httpx", _observe_httpx))


def _observe_httpx(module: Any) -> None:
    """httpx was just imported: observe its clients for every bot still instrumented."""
    sinks = _sinks_of(aiohttp.ClientSession.__dict__["__init__"]) or []
    for sink in [sink for sink in sinks if sink.recording is not None]:
        instrumented = sink.recording
        assert instrumented is not None
        _wrap_client(module.AsyncClient, _httpx_init, _Sink(instrumented))


def uninstrument_http(recording: Recording) -> None:
    """Stop recording for `recording`'s bot; with no bot left, the clients' `__init__` are put back."""
    _unwrap_client(aiohttp.ClientSession, recording)
    httpx = sys.modules.get("httpx")
    if httpx is not None:
        _unwrap_client(httpx.AsyncClient, recording)
    finder = _waiting_for_httpx()
    if finder is not None and _sinks_of(aiohttp.ClientSession.__dict__["__init__"]) is None:
        _forget_finder(finder)
