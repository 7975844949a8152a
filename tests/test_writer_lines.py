"""The action writer's NDJSON lines: written by orjson, byte for byte what `json` wrote before."""

from __future__ import annotations

from typing import Any

import pytest

from bot.observe.writer import _dump_line, ndjson_line

_RECORDS: list[dict[str, Any]] = [
    {"ts": 1764000000.123, "kind": "app:roll", "ok": True, "cost_usd": 0.0, "frames": [], "samples": None},
    {"reply": {"text": "🎲 `2d6` → 7 «é»\u2028", "messages": 1}, "extra": {"n": [1, 2.5, None]}},
    {"extra": {1: "an int key", None: "a None key"}},  # orjson refuses these keys: json writes them
    {"extra": {"big": 2**70, "small": -(2**63)}},  # beyond 64 bits: json again
    {"extra": {"odd": {3, 4}.__class__.__name__, "path": __import__("pathlib").Path("/x")}},  # default=str
]


@pytest.mark.parametrize("record", _RECORDS)
def test_an_ndjson_line_is_what_json_wrote(record: dict[str, Any]) -> None:
    """orjson's line for a record equals the json encoder's line (UTF-8, compact, default=str)."""
    assert ndjson_line(record) == (_dump_line(record) + "\n").encode("utf-8")


def test_a_record_json_cannot_write_fails_as_before() -> None:
    """A lone surrogate cannot be written as UTF-8: the line fails, as the json line's write did."""
    with pytest.raises(UnicodeEncodeError):
        ndjson_line({"extra": {"text": "\ud800"}})
