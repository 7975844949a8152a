"""Logging put back as the suite set it after a test that configured it as a bot does.

A test that starts mendbot in its own process (attach, a check of logging) runs `configure_logging`:
handlers on files of the test's, and each structlog logger cached at its first use. Left so, a later
test of the same worker logged through those — `capture_logs` saw none of a module's events once that
module had logged after such a test.

A module's logger is found through the module: the suite freezes the garbage collector's view of what
collection made (tests/conftest.py), and `gc.get_objects()` lists no frozen object.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from structlog._config import BoundLoggerLazyProxy

_SET = (None, "mendbot", "discord")  # the loggers `configure_logging` sets up


@contextmanager
def logging_restored() -> Iterator[None]:
    """Inside, anything goes; after, structlog's configuration and the handlers, levels and propagation
    of the loggers `configure_logging` sets are those from before, and a logger cached meanwhile looks
    its configuration up again at its next use."""
    config = structlog.get_config()
    kept = {name: _state(logging.getLogger(name)) for name in _SET}
    try:
        yield
    finally:
        if structlog.get_config() != config:
            structlog.configure(**config)
            for name, (handlers, level, propagate) in kept.items():
                logger = logging.getLogger(name)
                for handler in logger.handlers:
                    if handler not in handlers:
                        handler.close()
                logger.handlers[:] = handlers
                logger.setLevel(level)
                logger.propagate = propagate
            for each in [*gc.get_objects(), *_module_globals()]:
                if isinstance(each, BoundLoggerLazyProxy):
                    each.__dict__.pop("bind", None)  # where a proxy keeps the logger it cached


def _module_globals() -> list[object]:
    modules = list(sys.modules.values())  # a value may be None (an import blocked) or not a module
    return [value for module in modules for value in list(getattr(module, "__dict__", {}).values())]


def _state(logger: logging.Logger) -> tuple[list[logging.Handler], int, bool]:
    return list(logger.handlers), logger.level, logger.propagate
