"""Logging: structlog everywhere, stdlib (discord.py) routed through the same pipeline.

JSON lines go to `data/logs/mendbot.jsonl`; readable lines go to stderr. With
`console_tracebacks=False` (`mendbot run`) tracebacks go to the JSON file only: the console gets the
exception's one-line summary and where the traceback is (an operator watching the terminal or
journalctl reads lines, not walls). An event logged with `console=False` goes
to the file only — for failures that `__main__` already reports as one line of its own. The
playground's console is `brief`: one `! …` line per warning or failure between the chat lines, and
nothing for what the chat shows itself (events logged with `announced=True`, such as an incident
opened). The console can be held (`Console.hold()`) while a start may still end in a configuration
error: that error is then printed first and alone, and the held lines go (`drop_held()`) or follow
(`show_held()`); the file has them all either way. Per-request
context (guild, channel, user, run id) is bound with `bind_context()` and carried by contextvars. Every
value passes the redactor (the bot's own secret values in any encoding, and token shapes) first: the
caller hands one in (`mendbot.trust.redact.Redactor`), so logging knows no secret and needs no trust base.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

# structlog imports rich and greenlet wherever they are installed (a dev install has both: import-linter
# needs rich, Playwright greenlet): rich to draw tracebacks, which the pipeline below never asks of it
# (`format_exc_info` turns them into text first), and greenlet for its deprecated thread-local context,
# which mendbot does not use. Hidden from that one import, they cost no process their ~3.5 MB and stay
# importable for anything that wants them. Every module of the bot reaches structlog through this one
# (`get_logger`, `bind_context`, `bind_for_task`), so this import is the first wherever a process starts.
_UNUSED_BY_STRUCTLOG = ("rich", "greenlet")
if "structlog" in sys.modules:
    import structlog
else:
    _hidden = [name for name in _UNUSED_BY_STRUCTLOG if name not in sys.modules]
    sys.modules.update(dict.fromkeys(_hidden))  # type: ignore[arg-type]  # None: "not importable"
    try:
        import structlog
    finally:
        for _name in _hidden:
            del sys.modules[_name]

__all__ = [
    "Console",
    "Redacting",
    "bind_context",
    "bind_for_task",
    "bound_ids",
    "configure_logging",
    "get_logger",
]


class Redacting(Protocol):
    """What logging needs of a redactor (`mendbot.trust.redact.Redactor`)."""

    def text(self, value: str) -> str: ...

    def value(self, value: Any) -> Any: ...


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _redacting(redactor: Redacting) -> Any:
    """A processor that passes every value of a log event through the redactor."""

    def redact_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if isinstance(value, str):
                event[key] = redactor.text(value)
            elif isinstance(value, dict | list | tuple):
                event[key] = redactor.value(value)
        return event

    return redact_event


def _exception_in_one_line(log_file: Path) -> Any:
    """A console processor: the exception's type and message instead of its traceback."""

    def summarise(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        exc_info = event.pop("exc_info", None)
        if exc_info is True:
            exc_info = sys.exc_info()
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        if isinstance(exc_info, tuple) and exc_info[1] is not None:
            error = exc_info[1]
            summary = " ".join(f"{type(error).__name__}: {error}".split())
            event["error"] = f"{summary} (traceback in {log_file})"
        return event

    return summarise


class _RotatingLines(logging.handlers.RotatingFileHandler):
    """Size-rotating, formatting each record once: the stdlib's handler formats a record in
    `shouldRollover` to learn its length, then again to write it (~40 % of a line's cost). This one
    rotates once the file has reached its limit (a line may run past it by its own length)."""

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if self.stream is None:  # opened lazily (delay), or closed by a rotation
            self.stream = self._open()
        return self.maxBytes > 0 and os.fstat(self.stream.fileno()).st_size >= self.maxBytes


class _KeepExcInfo(logging.Filter):
    """On the file handler: remember a stdlib record's exc_info, which formatting it clears."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.mendbot_exc_info = record.exc_info
        return True


class _ConsoleFilter(logging.Filter):
    """Keeps events logged with `console=False` off the console (and, on a brief console, those logged
    with `announced=True`: the chat shows them); gives back the remembered exc_info."""

    def __init__(self, brief: bool = False) -> None:
        super().__init__()
        self.brief = brief

    def filter(self, record: logging.LogRecord) -> bool:
        event = record.msg if isinstance(record.msg, dict) else {}
        if event.get("console") is False or (self.brief and event.get("announced")):
            return False
        if record.exc_info is None:
            record.exc_info = getattr(record, "mendbot_exc_info", None)
        return True


# Keys a brief line leaves out: when and where it was logged, and the ids of who and where it happened
# (the chat line beside it says that).
_BRIEF_LEAVES_OUT = frozenset(
    {"timestamp", "level", "logger", "logger_name", "guild_id", "channel_id", "user_id", "message_id",
     "announced", "console", "error"}
)  # fmt: skip


def _brief(mark: str) -> Any:
    """A console renderer writing one line per event, whatever it holds: `! command failed
    (command=boom): ZeroDivisionError: … (traceback in …)` in the playground, `mark` first."""

    def line_of(_: Any, __: str, event: MutableMapping[str, Any]) -> str:
        context = ", ".join(f"{key}={value}" for key, value in event.items() if key not in _BRIEF_LEAVES_OUT
                            and key != "event" and value is not None)  # fmt: skip
        line = f"{mark} {event.get('event', '')}" + (f" ({context})" if context else "")
        if event.get("error"):
            line += f": {event['error']}"
        return " ".join(line.split())

    return line_of


class Console(logging.StreamHandler):  # type: ignore[type-arg]
    """The console handler; `hold()` keeps its lines back (formatted, in order) until `show_held()` prints
    them or `drop_held()` drops them."""

    def __init__(self) -> None:
        super().__init__()
        self._held: list[str] | None = None

    def hold(self) -> None:
        self._held = []

    def show_held(self) -> None:
        held, self._held = self._held or [], None
        for line in held:
            self.stream.write(line + self.terminator)
        self.flush()

    def drop_held(self) -> None:
        """Forget what is held, and hold on: the process ends on a line of its own (its shutdown's lines
        would only bury it)."""
        self._held = []

    def emit(self, record: logging.LogRecord) -> None:
        if self._held is None:
            super().emit(record)
            return
        try:
            self._held.append(self.format(record))
        except Exception:
            self.handleError(record)


def configure_logging(
    log_dir: Path,
    *,
    console_level: str = "INFO",
    json_level: str = "INFO",
    redactor: Redacting,
    console_tracebacks: bool = True,
    brief: bool = False,
    logger: str | None = None,
) -> Console:
    """Send structlog and stdlib records to a JSON file and a readable console stream, redacted: all of
    them, or with `logger` those of that logger only (mendbot's own, `mendbot`, in a program that is not
    mendbot's and keeps its logging as it set it up). Returns the console's handler, which a start can
    hold (module docstring). `brief`: the playground's console — and, with `logger`, the console of a
    bot mendbot is attached to, where its one-line events start with `mendbot:`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    redact = _redacting(redactor)
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    log_file = log_dir / "mendbot.jsonl"
    json_handler = _RotatingLines(log_file, maxBytes=20_000_000, backupCount=3, encoding="utf-8")
    json_handler.setLevel(json_level)
    # A formatter clears a stdlib record's exc_info (else logging appends a raw traceback after it).
    json_handler.addFilter(_KeepExcInfo())
    json_handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    console = Console()
    console.setLevel(console_level)
    console.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info
                if console_tracebacks and not brief
                else _exception_in_one_line(log_file),
                redact,
                _brief("mendbot:" if logger else "!")
                if brief
                else structlog.dev.ConsoleRenderer(colors=False),
            ],
        )
    )
    console.addFilter(_ConsoleFilter(brief))
    root = logging.getLogger(logger)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.addHandler(json_handler)
    root.addHandler(console)
    root.setLevel(min(logging.getLevelName(console_level), logging.getLevelName(json_level)))
    if logger is not None:
        root.propagate = False
        return console
    # discord.py's gateway chatter is DEBUG/INFO; keep its warnings and errors.
    logging.getLogger("discord").setLevel(logging.WARNING)
    return console


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


def bind_for_task(**values: object) -> None:
    """Bind ids for everything the current task logs from now on (each handler runs in a task of its own)."""
    structlog.contextvars.bind_contextvars(**values)


_IDS = ("guild_id", "channel_id", "user_id")


def bound_ids() -> dict[str, int]:
    """The guild, channel and user ids bound for the current task (`bind_for_task`), those that are."""
    bound = structlog.contextvars.get_contextvars()
    return {name: value for name in _IDS if isinstance(value := bound.get(name), int)}
