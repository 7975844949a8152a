"""What discord.py runs around a cog besides its commands and listeners, recorded when it fails.

`RecordingBot` (bot/runtime/recording.py) calls these as a cog is added and an extension loaded. Each
wraps one of discord.py's own hooks on the instance it belongs to — nothing is patched on
discord.py's classes, and a wrapped hook behaves exactly as before (it raises what it raised):

- a `tasks.loop`'s body, each iteration recorded as `task:<body>` (a failure discord.py does not
  retry stops the loop for good: `loop_stopped`), and its `before_loop` / `after_loop` hooks, whose
  failure ends the loop's task with an exception nobody retrieves, as `task:<body>.before_loop`;
- a cog's `cog_load` (which fails the load) and `cog_unload` (which discord.py logs and ignores), as
  `cog:<Cog>.cog_load`;
- an extension that fails to load otherwise — its import or its `setup` raising — as
  `extension:<name>`.

A failed load is recorded as not serving (`not_serving`), which the detector turns into an incident
at once (bot/observe/detector.py), so "fix this" has the action, the incident and the traceback to
start from.
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import discord
from discord.ext import commands, tasks

from mendbot.kernel.errors import EnvironmentProblem, environment_extra
from mendbot.kernel.log import get_logger
from mendbot.observe.capture import HandlerCapture, start_capture
from mendbot.observe.sampler import SlowSampler

__all__ = ["HookHost", "instrument_cog_hook", "instrument_loop", "record_extension"]

_log = get_logger(__name__)

# Set on a function mendbot wrapped (not to wrap it twice) and on an exception already recorded.
_RECORDED = "__mendbot_recorded__"


class HookHost(Protocol):
    """What the wrappers need of the bot: its recorder, sampler and the one error path's pieces."""

    @property
    def recorder(self) -> Any: ...

    @property
    def sampler(self) -> SlowSampler: ...

    def environment_problem(
        self, error: BaseException | None, channel: Any = None, user_id: int | None = None
    ) -> EnvironmentProblem | None: ...

    def end_capture(self, capture: HandlerCapture | None) -> dict[str, Any]: ...


def instrument_loop(host: HookHost, cog: commands.Cog, loop: tasks.Loop[Any]) -> None:
    """Record each iteration of a cog's tasks.loop, and its `before_loop` / `after_loop` hooks when
    they fail; a failure goes through the error path."""
    body = loop.coro
    if getattr(body, _RECORDED, False):
        return
    kind = f"task:{body.__name__}"

    @functools.wraps(body)
    async def recorded(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        capture = start_capture(kind, {"name": kind, "options": {"iteration": loop.current_loop}})
        host.sampler.watch(capture)
        try:
            result = await body(*args, **kwargs)
        except Exception as exc:
            problem = host.environment_problem(exc)
            # discord.py retries only its reconnect exceptions; anything else ends the loop for good.
            retried = loop.reconnect and isinstance(exc, getattr(loop, "_valid_exception", ()))
            host.recorder.record(
                kind,
                cog.qualified_name,
                ok=False,
                error=None if problem else exc,
                duration_ms=(time.perf_counter() - started) * 1000,
                extra={**environment_extra(exc, problem), **({"loop_stopped": True} if not retried else {})}
                or None,
                **host.end_capture(capture),
            )
            _log.error("task iteration failed", task=kind, stopped=not retried, exc_info=exc)
            raise
        except BaseException:
            host.sampler.unwatch(capture)
            raise
        host.recorder.record(
            kind,
            cog.qualified_name,
            ok=True,
            duration_ms=(time.perf_counter() - started) * 1000,
            **host.end_capture(capture),
        )
        return result

    setattr(recorded, _RECORDED, True)
    loop.coro = recorded
    # discord.py keeps the hooks set with `@loop.before_loop` / `@loop.after_loop` here; one that
    # raises ends the loop's task with an exception nobody retrieves.
    for hook in ("before_loop", "after_loop"):
        coro = getattr(loop, f"_{hook}", None)
        if coro is not None and not getattr(coro, _RECORDED, False):
            setattr(loop, f"_{hook}", _recorded_loop_hook(host, cog, f"{kind}.{hook}", coro))


def _recorded_loop_hook(
    host: HookHost, cog: commands.Cog, kind: str, coro: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    """A task's `before_loop` or `after_loop` whose failure is recorded (the loop stops, as before)."""

    @functools.wraps(coro)
    async def recorded(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await coro(*args, **kwargs)
        except Exception as exc:
            problem = host.environment_problem(exc)
            host.recorder.record(
                kind,
                cog.qualified_name,
                ok=False,
                error=None if problem else exc,
                duration_ms=(time.perf_counter() - started) * 1000,
                extra={**environment_extra(exc, problem), "loop_stopped": True},
            )
            _log.error("task hook failed", task=kind, exc_info=exc)
            raise

    setattr(recorded, _RECORDED, True)
    return recorded


def instrument_cog_hook(host: HookHost, cog: commands.Cog, hook: str) -> None:
    """Record a cog's `cog_load` or `cog_unload` that raises as `cog:<Cog>.<hook>` — the load fails
    (or the unload is logged) exactly as before."""
    original = getattr(cog, hook)
    if getattr(original, _RECORDED, False):
        return
    kind = f"cog:{cog.qualified_name}.{hook}"

    @functools.wraps(original)
    async def recorded() -> None:
        started = time.perf_counter()
        try:
            await discord.utils.maybe_coroutine(original)
        except Exception as exc:
            host.recorder.record(
                kind,
                cog.qualified_name,
                ok=False,
                duration_ms=(time.perf_counter() - started) * 1000,
                error=exc,
                extra={"not_serving": True} if hook == "cog_load" else None,
            )
            setattr(exc, _RECORDED, True)
            raise

    setattr(recorded, _RECORDED, True)
    setattr(cog, hook, recorded)


def record_extension(host: HookHost, name: str, error: commands.ExtensionError) -> None:
    """An extension that failed to load: `extension:<name>` (its import or its `setup` raised),
    unless its cog's `cog_load` did and is recorded as that already."""
    if isinstance(error, commands.ExtensionNotFound | commands.ExtensionAlreadyLoaded):
        return  # a name that is no module, or loaded twice: nothing in the code failed
    cause = error.__cause__ or error
    if getattr(cause, _RECORDED, False):
        return
    in_setup = isinstance(error, commands.ExtensionFailed) and any(
        frame.f_code.co_name == "setup" for frame, _ in traceback.walk_tb(cause.__traceback__)
    )
    host.recorder.record(
        f"extension:{name}",
        name,
        ok=False,
        duration_ms=0.0,
        error=cause,
        extra={"extension": name, "phase": "setup" if in_setup else "import", "not_serving": True},
    )
