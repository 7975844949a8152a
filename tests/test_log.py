"""Logging: every line written — structlog events, stdlib records, tracebacks — passes the redactor."""

from __future__ import annotations

import base64
import logging
import logging.handlers
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import structlog.testing

from mendbot.kernel.log import Console, configure_logging, get_logger
from mendbot.trust.redact import Redactor
from tests.harness.logs import logging_restored

SECRET = "ghp_" + "S3cr3tValueOfTheBot" * 2
# A module's logger as the product's are: imported before the suite froze the garbage collector's view
# of everything collection made (tests/conftest.py), so `gc.get_objects()` no longer lists it.
_MODULE_LOG = get_logger("mendbot.test.module")


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    configure_logging(tmp_path, console_level="CRITICAL", redactor=Redactor([SECRET]))
    yield tmp_path  # the suite's logging comes back after the test (tests/harness/logs.py)


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


def test_console_gets_one_line_per_error_and_the_file_the_traceback(
    log_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An exception is one summary line on the console (traceback in the file); console=False stays off it."""
    configure_logging(log_dir, console_level="INFO", console_tracebacks=False, redactor=Redactor())
    (console,) = [h for h in logging.getLogger().handlers if isinstance(h, Console)]
    console.setLevel(logging.INFO)
    console.setStream(sys.stderr)  # the one capsys captures now
    log = get_logger("test")
    try:
        raise ValueError("no such guild")
    except ValueError:
        log.exception("sync failed")
        logging.getLogger("discord.client").exception("Attempting a reconnect in 1.00s")
    log.error("start-up failed", reason="told on stderr", console=False)
    for handler in logging.getLogger().handlers:
        handler.flush()
    err = capsys.readouterr().err
    assert "Traceback" not in err and "told on stderr" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert "sync failed" in lines[0] and "ValueError: no such guild (traceback in" in lines[0]
    assert "Attempting a reconnect" in lines[1] and "ValueError: no such guild" in lines[1]
    written = (log_dir / "mendbot.jsonl").read_text()
    assert written.count("Traceback") == 2 and "told on stderr" in written


def test_a_log_line_is_formatted_once_and_the_file_still_rotates(tmp_path: Path) -> None:
    """The JSON file's handler formats each record once (the stdlib's size-rotating handler formatted
    it a second time to learn its length), and still rotates past its size."""
    configure_logging(tmp_path, console_level="CRITICAL", redactor=Redactor([SECRET]))
    [handler] = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    assert isinstance(handler, logging.handlers.RotatingFileHandler)
    handler.maxBytes = 2000
    formatted: list[str] = []
    format_record = handler.format

    def counting(record: logging.LogRecord) -> str:
        formatted.append(record.getMessage())
        return format_record(record)

    handler.format = counting  # type: ignore[method-assign]
    log = get_logger("test")
    for n in range(40):
        log.info("a line", n=n)
    assert len(formatted) == 40
    assert (tmp_path / "mendbot.jsonl.1").exists()


def test_logging_a_test_configured_as_a_bot_does_is_put_back_for_the_next(tmp_path: Path) -> None:
    """A logger used after a test configured logging as a bot does (cached at its first use) is seen
    again by `capture_logs` once that test's logging is put back — one made meanwhile, and one a module
    holds from its import (frozen: `_MODULE_LOG`): a later test of the same worker read none of the
    journal's events, and then none of the restart's warning (`mendbot.runtime.attachment`)."""
    loggers = [get_logger("mendbot.test.later"), _MODULE_LOG]
    before = [(each.handlers[:], each.level) for each in map(logging.getLogger, (None, "discord"))]
    with logging_restored():
        configure_logging(tmp_path, console_level="CRITICAL", redactor=Redactor())
        for log in loggers:
            log.warning("logged under the bot's configuration")
    with structlog.testing.capture_logs() as seen:
        for n, log in enumerate(loggers):
            log.warning("seen", n=n)
    assert [entry.get("n") for entry in seen] == [0, 1]
    assert [(each.handlers, each.level) for each in map(logging.getLogger, (None, "discord"))] == before
