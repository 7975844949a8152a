"""The cyclic garbage collector, paused while a process imports and builds the bot.

Start-up makes a few hundred thousand long-lived objects (modules, classes, the schema, the
settings) and almost no garbage, yet the collector walks them again and again as they are made:
about a seventh of a start's CPU (~0.1 s of ~0.7 s), paid by every `mendbot` process, each smoke load
and replay in the sandbox, and each worker. `paused()` wraps a command's whole life; `resume()` is
called once the bot is built (cogs loaded), and the end of `paused()` resumes it on every other path,
so a process never runs long without the collector; what start-up made is frozen then, never walked
again.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["frozen_after", "paused", "resume", "resume_at_the_latest"]


class _Pause:
    held = False  # the collector is off because `paused()` turned it off


@contextmanager
def paused() -> Iterator[None]:
    """No collection until `resume()` or the end of the block; a collector already off stays off."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    _Pause.held = True
    try:
        yield
    finally:
        resume()


@contextmanager
def frozen_after() -> Iterator[None]:
    """No collection while the block builds what lives as long as the process, and what it made frozen
    after, as start-up's is: mendbot's self-improvement half on a bot it attached to, built once the
    bot has connected (bot/runtime/attachment.py). Made with the collector on, its modules' objects
    would be walked by the first full collections on the bot's first commands, and again each time."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def resume_at_the_latest(seconds: float) -> None:
    """`resume()` in `seconds` whatever happens meanwhile (a program that runs its bot late, or never):
    a process never runs long without the collector."""
    timer = threading.Timer(seconds, resume)
    timer.daemon = True
    timer.start()


def resume() -> None:
    """Collect again from now on (start-up is over), if `paused()` stopped it — after freezing what
    start-up made (`gc.freeze`): while the collector was off every object made stayed in its youngest
    generation, so its first collections after the pause walked all of them, each generation in turn
    (~6, ~8 and ~30 ms, landing on the first commands a bot answered). They live as long as the
    process; the little garbage start-up left in cycles (the command line's parser) stays with them."""
    if _Pause.held:
        _Pause.held = False
        gc.freeze()
        gc.enable()
