"""Prompt registry: `prompts/**/*.md` with YAML front matter, validated and hot-reloaded.

A prompt's key is its path below `prompts/` without `.md` (`chat/persona`). An edited file is
picked up by a debounced watcher within a second; a file that fails validation keeps the
previous version serving, and the error is logged and passed to the `on_error` callback
(the bot posts it in the dev channel).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Literal, get_args

import msgspec

from mendbot.kernel import yamldoc
from mendbot.kernel.filewatch import changed_files
from mendbot.kernel.log import get_logger

__all__ = ["Prompt", "PromptError", "PromptMeta", "PromptRegistry", "parse_prompt"]

_log = get_logger(__name__)


class PromptError(Exception):
    """A prompt file is missing or invalid."""


PromptKind = Literal["persona", "agent", "skill"]


class PromptMeta(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A prompt's front matter. (msgspec rather than pydantic: every start parses the prompts, and
    pydantic's first model costs a start a tenth of a second of CPU.)"""

    kind: PromptKind
    description: str = ""
    model: str | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=64_000)] = 1024
    # Only sent when set: recent models and SDKs no longer take a sampling temperature.
    temperature: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None


_AT_FIELD = re.compile(r"(?P<what>.*) - at `\$\.(?P<where>[^`]+)`")
_NAMED_FIELD = re.compile(r"Object (?P<what>missing required|contains unknown) field `(?P<where>[^`]+)`")


def _problem(error: msgspec.ValidationError) -> str:
    """`where: what` for msgspec's message ("Expected `int` >= 1 - at `$.max_tokens`"): the field's
    name first, as a bad prompt file has always been reported."""
    message = str(error)
    if found := _NAMED_FIELD.fullmatch(message):
        where = found["where"]
        if found["what"] == "missing required":
            return f"{where}: required, and missing"
        known = ", ".join(PromptMeta.__struct_fields__)
        return f"{where}: not a front matter field (the fields are {known})"
    if found := _AT_FIELD.fullmatch(message):
        where, what = found["where"], found["what"]
        if where == "kind" and what.startswith("Invalid enum value"):
            what = (
                "should be one of "
                + ", ".join(get_args(PromptKind))
                + f", not {what.removeprefix('Invalid enum value ')}"
            )
        return f"{where}: {what}"
    if message.endswith("at `key` in `$`"):
        return "front matter: every field name must be text"
    return f"front matter: {message}"


class Prompt(msgspec.Struct, frozen=True):
    key: str
    meta: PromptMeta
    body: str
    path: Path

    def render(self, **values: str) -> str:
        """Fill `{name}` placeholders; unknown braces are left as they are."""
        text = self.body
        for name, value in values.items():
            text = text.replace("{" + name + "}", value)
        return text


def parse_prompt(path: Path, root: Path) -> Prompt:
    key = path.relative_to(root).with_suffix("").as_posix()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PromptError(f"{key}: cannot read {path}: {exc.strerror}") from None
    if not text.startswith("---\n"):
        raise PromptError(f"{key}: the file must start with a `---` YAML front matter block")
    head, sep, body = text[4:].partition("\n---\n")
    if not sep:
        raise PromptError(f"{key}: the front matter has no closing `---` line")
    try:
        data = yamldoc.load(head) or {}
        # Not strict: a quoted number ("100") is taken for one, as YAML's users expect.
        meta = msgspec.convert(data, PromptMeta, strict=False)
    except yamldoc.YamlError as exc:
        raise PromptError(f"{key}: front matter is not valid YAML: {exc}") from None
    except msgspec.ValidationError as exc:
        raise PromptError(f"{key}: {_problem(exc)}") from None
    return Prompt(key=key, meta=meta, body=body.strip() + "\n", path=path)


class PromptRegistry:
    def __init__(self, root: Path, on_error: Callable[[str], None] | None = None) -> None:
        self.root = root.resolve()  # resolved once: relative and absolute paths then agree
        self._prompts: dict[str, Prompt] = {}
        self._on_error = on_error
        self.reloads = 0

    def set_error_callback(self, on_error: Callable[[str], None] | None) -> None:
        self._on_error = on_error

    def load_all(self) -> list[str]:
        """Load every prompt; returns the errors (valid files load regardless)."""
        return [error for path in sorted(self.root.rglob("*.md")) if (error := self.reload_path(path))]

    def get(self, key: str) -> Prompt:
        try:
            return self._prompts[key]
        except KeyError:
            raise PromptError(f"no prompt `{key}` under {self.root}") from None

    def keys(self) -> list[str]:
        return sorted(self._prompts)

    def reload_path(self, path: Path) -> str | None:
        """Reload one file. On failure the previous version stays; returns the error text."""
        path = (path if path.is_absolute() else self.root / path).resolve()
        root = self.root
        key = path.relative_to(root).with_suffix("").as_posix()
        if not path.exists():
            if self._prompts.pop(key, None) is not None:
                _log.info("prompt removed", prompt=key)
            return None
        try:
            prompt = parse_prompt(path, root)
        except PromptError as exc:
            message = str(exc)
            kept = " (previous version kept)" if key in self._prompts else ""
            _log.error("prompt invalid", prompt=key, error=message, kept=bool(kept))
            if self._on_error is not None:
                self._on_error(message + kept)
            return message
        self._prompts[key] = prompt
        self.reloads += 1
        _log.info("prompt loaded", prompt=key)
        return None

    def reload_paths(self, paths: Iterable[Path]) -> list[str]:
        return [error for path in paths if path.suffix == ".md" and (error := self.reload_path(path))]

    async def watch(self, stop: asyncio.Event | None = None, debounce_ms: int = 200) -> None:
        """Reload changed prompts until `stop` is set (debounced; runs as a daemon task)."""
        async for changed in changed_files(
            [self.root], keep=lambda path: path.suffix == ".md", debounce_ms=debounce_ms, stop=stop
        ):
            self.reload_paths(changed)
