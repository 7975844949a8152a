"""Logging put back as the suite set it after a test that configured it as a bot does.

A test that starts mendbot in its own process (attach, a check of logging) runs `configure_logging`:
handlers on files of the test's, and each structlog logger cached at its first use. Left so, a later
test of the same worker logged through those — `capture_logs` saw none of a module's events once that
module had logged after such a test.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from structlog._config import BoundLoggerLazyProxy


@contextmanager
def logging_restored() -> Iterator[None]:
    """Inside, anything goes; after, structlog's configuration and the handlers of the root and
    `mendbot` loggers are those from before, and a logger cached meanwhile looks its configuration up
    again at its next use."""
    config = structlog.get_config()
    handlers = {name: list(logging.getLogger(name).handlers) for name in (None, "mendbot")}
    propagates = logging.getLogger("mendbot").propagate
    try:
        yield
    finally:
        if structlog.get_config() != config:
            structlog.configure(**config)
            for name, kept in handlers.items():
                logger = logging.getLogger(name)
                for handler in logger.handlers:
                    if handler not in kept:
                        handler.close()
                logger.handlers[:] = kept
            logging.getLogger("mendbot").propagate = propagates
            for each in gc.get_objects():
                if isinstance(each, BoundLoggerLazyProxy):
                    each.__dict__.pop("bind", None)  # where a proxy keeps the logger it cached
