"""The action record: checked where it comes from outside, unchecked where the recorder builds it."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from mendbot.db.records import ActionRecord


def _values(**changed: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "ts": 1.5,
        "kind": "command:roll",
        "source": "Dice",
        "ok": True,
        "duration_ms": 2.0,
    }
    return {**values, **changed}


def test_outside_values_become_a_record_with_defaults() -> None:
    """`validated` fills the fields not given with their defaults and takes an integer for a float."""
    record = ActionRecord.validated(_values(ts=2, user_id=7))
    assert (record.ts, record.user_id, record.frames, record.extra, record.reply) == (2.0, 7, [], {}, None)
    assert isinstance(record.ts, float)


@pytest.mark.parametrize(
    ("values", "refusal"),
    [
        (_values(colour="red"), "unknown field `colour`"),
        (
            {"ts": 1.0, "kind": "command:roll", "source": "Dice", "ok": True},
            "missing required field `duration_ms`",
        ),
        (_values(ok="yes"), r"Expected `bool`, got `str` - at `\$\.ok`"),
        (_values(user_id="7"), r"Expected `int \| null`, got `str` - at `\$\.user_id`"),
        (_values(frames="a.py:1:f"), r"Expected `array`, got `str` - at `\$\.frames`"),
        (_values(extra=["x"]), r"Expected `object`, got `array` - at `\$\.extra`"),
        (_values(samples=[1]), r"Expected `object`, got `int` - at `\$\.samples\[0\]`"),
        (_values(kind=None), r"Expected `str`, got `null` - at `\$\.kind`"),
    ],
)
def test_outside_values_that_are_not_a_record_are_refused(values: dict[str, Any], refusal: str) -> None:
    """An unknown field, a missing one or a value of the wrong type is refused, saying which."""
    with pytest.raises(msgspec.ValidationError, match=refusal):
        ActionRecord.validated(values)


def test_a_record_cannot_be_changed_once_made() -> None:
    """A record is shared by every subscriber: assigning to a field fails loudly."""
    record = ActionRecord.trusted(_values() | {"fingerprint": None})
    with pytest.raises(AttributeError):
        record.fingerprint = "other"  # type: ignore[misc]


def test_fields_are_a_plain_dict_of_every_value() -> None:
    """`fields()` gives every field by name; changing that dict does not change the record."""
    record = ActionRecord(**_values(extra={"via": "slash"}))
    fields = record.fields()
    assert fields == {**ActionRecord.validated(_values(extra={"via": "slash"})).fields()}
    assert list(fields) == list(ActionRecord.__struct_fields__)
    fields["kind"] = "command:other"
    assert record.kind == "command:roll"
