"""Logging: every line written — structlog events, stdlib records, tracebacks — passes the redactor."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from bot.log import configure_logging, get_logger
from bot.redact import Redactor

SECRET = "ghp_" + "S3cr3tValueOfTheBot" * 2


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    configure_logging(tmp_path, console_level="CRITICAL", redactor=Redactor([SECRET]))
    yield tmp_path
    for handler in logging.getLogger().handlers:
        handler.close()
    logging.getLogger().handlers.clear()
    structlog.reset_defaults()


def test_secret_values_never_reach_the_log_file(log_dir: Path) -> None:
    """A secret in an event, a bound value, a nested value, a stdlib record and a traceback is redacted."""
    encoded = base64.b64encode(SECRET.encode()).decode()
    log = get_logger("test")
    log.info(f"pushing with {SECRET}", header=f"Basic {encoded}", nested={"values": [SECRET]})
    logging.getLogger("discord.http").warning("token %s refused", SECRET)
    try:
        raise RuntimeError(f"credential {SECRET} rejected")
    except RuntimeError:
        log.exception("push failed")
    for handler in logging.getLogger().handlers:
        handler.flush()
    written = (log_dir / "mendbot.jsonl").read_text()
    assert written.count("[redacted]") >= 5
    assert SECRET not in written and encoded not in written
    assert "push failed" in written and "RuntimeError" in written
