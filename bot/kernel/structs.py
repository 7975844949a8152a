"""Plain data (config.yaml's mapping, a caller's keyword arguments) read into the settings' msgspec Structs.

msgspec converts each value and checks its bounds (`Annotated[int, Meta(ge=1)]`); `read` walks the data
key by key around it, so that every problem is found, each named by its key (`improve.max_attempts`,
`discord.dev_channel_ids.1`) and said as what a good value looks like, where msgspec would stop at the
first and word it for programmers. A field's `Annotated` may add checks of ours: `Before(f)` runs on the
value as given, `After(f)` on the converted one; either returns the value to keep, or raises `ValueError`
whose message is the problem. `Section.check_together` checks keys against each other once each alone
is valid. Nothing here imports pydantic: this is on every start's path, where pydantic's first model
cost ~0.13 s.
"""

from __future__ import annotations

import functools
import os
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import msgspec

from mendbot.kernel.secret import Secret

__all__ = ["After", "Before", "Invalid", "KeyProblem", "Problem", "Section", "read"]


class Section(msgspec.Struct, forbid_unknown_fields=True):
    """A part of the settings: plain mutable attributes, built by keyword in code or by `read` from data."""

    def check_together(self) -> None:
        """Checks across this section's keys, run by `read` once each key alone is valid; raises
        `KeyProblem` naming the key to fix. None by default."""


class Before:
    """`Annotated` metadata: a check run on a key's value as given, before conversion."""

    __slots__ = ("check",)

    def __init__(self, check: Callable[[Any], Any]) -> None:
        self.check = check


class After:
    """`Annotated` metadata: a check run on a key's converted value."""

    __slots__ = ("check",)

    def __init__(self, check: Callable[[Any], Any]) -> None:
        self.check = check


class KeyProblem(ValueError):
    """Raised by `check_together`: what is wrong, at which key of the section."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


_ABSENT = object()


class Problem(msgspec.Struct, frozen=True):
    """One thing wrong with the data: where (`("improve", "max_attempts")`), what a good value looks like,
    and the value given (`_ABSENT` for a required key left out). An unknown key carries the keys known
    where it was (`known`), for "did you mean"."""

    key: tuple[str | int, ...]
    message: str
    value: object = _ABSENT
    known: tuple[str, ...] | None = None

    @property
    def dotted(self) -> str:
        return ".".join(str(part) for part in self.key)

    @property
    def given(self) -> bool:
        """Whether a value was given at the key (a required key left out has none to show)."""
        return self.value is not _ABSENT


class Invalid(ValueError):
    """The data cannot be read: every problem, a section's unknown keys first, then its fields in order."""

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0]
        super().__init__(f"{first.dotted}: {first.message}")
        self.problems = problems


_S = TypeVar("_S", bound=Section)


def read(cls: type[_S], data: object) -> _S:
    """`data` read into a `cls`, or `Invalid` with every problem found."""
    problems: list[Problem] = []
    built = _section(cls, data, (), problems)
    if problems or built is None:
        raise Invalid(problems or [Problem((), "must be keys and values", data)])
    return built


@functools.cache
def _fields(cls: type[Section]) -> tuple[msgspec.structs.FieldInfo, ...]:
    return msgspec.structs.fields(cls)


def _section(cls: type[_S], data: object, key: tuple[str | int, ...], problems: list[Problem]) -> _S | None:
    if isinstance(data, cls):  # built in code already
        return data
    if not isinstance(data, Mapping):
        problems.append(Problem(key, "must be keys and values (leave it out for the defaults)", data))
        return None
    found = len(problems)
    fields = _fields(cls)
    names = tuple(field.name for field in fields)
    for name in data:  # first: a misspelt key is often why another looks missing
        if name not in names:
            problems.append(Problem((*key, str(name)), "is not a key here", data[name], known=names))
    values: dict[str, Any] = {}
    for field in fields:
        if field.name in data:
            values[field.name] = _value(field.type, data[field.name], (*key, field.name), problems)
        elif field.required:
            problems.append(Problem((*key, field.name), "is missing: this section needs it"))
    if len(problems) > found:
        return None
    built = cls(**values)
    try:
        built.check_together()
    except KeyProblem as exc:
        problems.append(Problem((*key, exc.key), exc.message, getattr(built, exc.key, _ABSENT)))
        return None
    return built


def _value(kind: Any, given: object, key: tuple[str | int, ...], problems: list[Problem]) -> Any:
    """`given` read as a `kind`, or None with the problem added."""
    checks: list[Before | After] = []
    if get_origin(kind) is Annotated:
        checks = [extra for extra in kind.__metadata__ if isinstance(extra, Before | After)]
        if checks:
            kept = tuple(extra for extra in kind.__metadata__ if not isinstance(extra, Before | After))
            kind = Annotated[(kind.__origin__, *kept)] if kept else kind.__origin__
    value = given
    try:
        for check in checks:
            if isinstance(check, Before):
                value = check.check(value)
        found = len(problems)
        value = _plain(kind, value, key, problems)
        if len(problems) > found:
            return None
        for check in checks:
            if isinstance(check, After):
                value = check.check(value)
    except ValueError as exc:
        problems.append(Problem(key, str(exc), given))
        return None
    return value


def _plain(kind: Any, given: object, key: tuple[str | int, ...], problems: list[Problem]) -> Any:
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):  # only `X | None` in the settings
        if given is None:
            return None
        (arm,) = (arm for arm in get_args(kind) if arm is not type(None))
        return _value(arm, given, key, problems)
    if isinstance(kind, type) and issubclass(kind, Section):
        return _section(kind, given, key, problems)
    if origin is list:
        if not isinstance(given, list | tuple):
            problems.append(Problem(key, "must be a list, e.g. [a, b]", given))
            return None
        (item,) = get_args(kind)
        return [_value(item, each, (*key, index), problems) for index, each in enumerate(given)]
    if origin is dict:
        if not isinstance(given, Mapping):
            problems.append(Problem(key, "must be keys and values, e.g. {NAME: value}", given))
            return None
        names, values = get_args(kind)
        return {
            _value(names, name, key, problems): _value(values, each, (*key, str(name)), problems)
            for name, each in given.items()
        }
    if kind is Path:
        if isinstance(given, str | os.PathLike):
            return Path(given)
        problems.append(Problem(key, "must be a path", given))
        return None
    if kind is Secret:
        if isinstance(given, Secret):
            return given
        if isinstance(given, str):
            return Secret(given)
        problems.append(Problem(key, "must be text", given))
        return None
    try:
        return msgspec.convert(given, kind, strict=False)
    except msgspec.ValidationError:
        problems.append(Problem(key, f"must be {_good_value(kind, given)}", given))
        return None


_NOUNS: dict[object, str] = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


def _good_value(kind: Any, given: object) -> str:
    """What a good value of `kind` looks like, in words: `at least 1` for a number out of its bounds,
    `a whole number, between 1 and 10` for something else."""
    metas: tuple[msgspec.Meta, ...] = ()
    if get_origin(kind) is Annotated:
        metas = tuple(extra for extra in kind.__metadata__ if isinstance(extra, msgspec.Meta))
        kind = kind.__origin__
    if get_origin(kind) is Literal:
        return "one of " + ", ".join(str(choice) for choice in get_args(kind))
    bounds = _bounds(metas)
    number = isinstance(given, int | float) and not isinstance(given, bool)
    if bounds and number and (kind is float or isinstance(given, int)):
        return bounds
    noun = _NOUNS.get(kind, getattr(kind, "__name__", str(kind)))
    return f"{noun}, {bounds}" if bounds else noun


def _bounds(metas: tuple[msgspec.Meta, ...]) -> str:
    def shown(bound: float) -> str:
        return f"{bound:g}" if isinstance(bound, float) else str(bound)

    ge = next((meta.ge for meta in metas if meta.ge is not None), None)
    le = next((meta.le for meta in metas if meta.le is not None), None)
    if ge is not None and le is not None:
        return f"between {shown(ge)} and {shown(le)}"
    said = []
    for meta in metas:
        for word, bound in (("at least", meta.ge), ("more than", meta.gt)):
            if bound is not None:
                said.append(f"{word} {shown(bound)}")
    for meta in metas:
        for word, bound in (("at most", meta.le), ("less than", meta.lt)):
            if bound is not None:
                said.append(f"{word} {shown(bound)}")
    return " and ".join(said)
