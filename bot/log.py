"""Logging: structlog everywhere, stdlib (discord.py) routed through the same pipeline.

JSON lines go to `data/logs/mendbot.jsonl`; readable lines go to stderr. Per-request context
(guild, channel, user, run id) is bound with `bind_context()` and carried by contextvars.
"""

from __future__ import annotations

import logging
import logging.handlers
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

__all__ = ["bind_context", "configure_logging", "get_logger"]

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(log_dir: Path, *, console_level: str = "INFO", json_level: str = "INFO") -> None:
    """Send structlog and stdlib records to a JSON file and a readable console stream."""
    log_dir.mkdir(parents=True, exist_ok=True)
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    json_handler = logging.handlers.RotatingFileHandler(
        log_dir / "mendbot.jsonl", maxBytes=20_000_000, backupCount=3, encoding="utf-8"
    )
    json_handler.setLevel(json_level)
    json_handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    console = logging.StreamHandler()
    console.setLevel(console_level)
    console.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.dev.ConsoleRenderer(colors=False),
            ],
        )
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.addHandler(json_handler)
    root.addHandler(console)
    root.setLevel(min(logging.getLevelName(console_level), logging.getLevelName(json_level)))
    # discord.py's gateway chatter is DEBUG/INFO; keep its warnings and errors.
    logging.getLogger("discord").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


@contextmanager
def bind_context(**values: object) -> Iterator[None]:
    """Bind guild/channel/user/run ids for everything logged inside the block."""
    tokens = structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
