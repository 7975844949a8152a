"""Discord's limits on application commands, checked on the payload a command sync would send.

discord.py checks some limits when a command is defined (lower-case names, 100 global commands, two
levels of groups) but not others: a description of 101 characters, 26 choices or options, a command
over 4000 characters all load fine and then fail the sync at the next start with 400 Invalid Form Body.
The smoke check (`mendbot.tools.smoke`, part of the verify gate) runs `payload_problems` over every command,
so a change Discord would reject cannot pass verify. The rules follow Discord's API reference
("Application Commands": naming, limits, option types); each problem is one sentence naming the
command, the option and the limit.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["LIMITS", "Problem", "payload_problems"]

CHAT_INPUT, USER, MESSAGE = 1, 2, 3
SUB_COMMAND, SUB_COMMAND_GROUP, STRING = 1, 2, 3
# discord.py's stand-in when no description was given: Discord shows it as "…" to users.
PLACEHOLDER_DESCRIPTION = "…"


@dataclass(frozen=True)
class _Limits:
    name_length: int = 32
    description_length: int = 100
    options: int = 25
    choices: int = 25
    choice_name_length: int = 100
    choice_string_value_length: int = 100
    command_characters: int = 4000
    chat_input_commands: int = 100
    user_commands: int = 15
    message_commands: int = 15


LIMITS = _Limits()


@dataclass(frozen=True)
class Problem:
    """One thing Discord would reject: `command` is the top-level command's name."""

    command: str
    message: str

    def __str__(self) -> str:
        return self.message


def _name_char_ok(char: str) -> bool:
    # Discord's pattern: ^[-_\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$
    if char in "-_":
        return True
    if unicodedata.category(char)[0] in "LN":
        return True
    return "\u0900" <= char <= "\u097f" or "\u0e00" <= char <= "\u0e7f"


def _chat_input_name_problem(name: Any) -> str | None:
    if not isinstance(name, str) or not 1 <= len(name) <= LIMITS.name_length:
        return f"must be 1–{LIMITS.name_length} characters"
    bad = sorted({char for char in name if not _name_char_ok(char)})
    if bad:
        return f"may hold only letters, numbers, '-' and '_' (not {', '.join(map(repr, bad))})"
    if name.lower() != name:
        return "must be lower-case"
    return None


def _names(payload: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    yield "", payload.get("name")
    for locale, value in (payload.get("name_localizations") or {}).items():
        yield f" ({locale})", value


def _descriptions(payload: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    yield "", payload.get("description")
    for locale, value in (payload.get("description_localizations") or {}).items():
        yield f" ({locale})", value


def _longest(payload: Mapping[str, Any], key: str) -> int:
    """Characters a field counts toward the 4000: the longest of the value and its localizations."""
    values = [payload.get(key), *(payload.get(f"{key}_localizations") or {}).values()]
    return max((len(str(value)) for value in values if value is not None), default=0)


def _characters(payload: Mapping[str, Any]) -> int:
    total = _longest(payload, "name") + _longest(payload, "description")
    for choice in payload.get("choices") or []:
        total += _longest(choice, "name") + len(str(choice.get("value", "")))
    for option in payload.get("options") or []:
        total += _characters(option)
    return total


class _Checker:
    def __init__(self, command: str) -> None:
        self.command = command
        self.problems: list[Problem] = []

    def add(self, where: str, message: str) -> None:
        self.problems.append(Problem(self.command, f"{where}: {message}"))

    def name_and_description(self, where: str, payload: Mapping[str, Any]) -> None:
        for locale, name in _names(payload):
            problem = _chat_input_name_problem(name)
            if problem:
                self.add(f"{where} name{locale} {name!r}", problem)
        for locale, description in _descriptions(payload):
            if not isinstance(description, str) or not 1 <= len(description) <= LIMITS.description_length:
                length = len(description) if isinstance(description, str) else 0
                self.add(
                    f"{where} description{locale}",
                    f"is {length} characters; Discord allows 1–{LIMITS.description_length}",
                )
            elif description == PLACEHOLDER_DESCRIPTION and not locale:
                self.add(f"{where} description", "is missing (users see '…'): describe it")

    def options(self, where: str, options: Sequence[Mapping[str, Any]], depth: int) -> None:
        if len(options) > LIMITS.options:
            self.add(where, f"has {len(options)} options; Discord allows {LIMITS.options}")
        seen: set[str] = set()
        optional_seen = None
        kinds = {option.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP) for option in options}
        if len(kinds) > 1:
            self.add(where, "mixes subcommands with plain options; Discord allows one or the other")
        for option in options:
            name = str(option.get("name"))
            here = f"{where} option {name!r}"
            if name in seen:
                self.add(here, "is a duplicate name")
            seen.add(name)
            kind = option.get("type")
            self.name_and_description(here, option)
            if kind == SUB_COMMAND_GROUP:
                if depth > 0:
                    self.add(here, "is a group inside a group; Discord allows command → group → subcommand")
                children = option.get("options") or []
                if any(child.get("type") != SUB_COMMAND for child in children):
                    self.add(here, "may contain only subcommands")
                self.options(here, children, depth + 1)
            elif kind == SUB_COMMAND:
                children = option.get("options") or []
                if any(child.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP) for child in children):
                    self.add(here, "is a subcommand and cannot contain subcommands or groups")
                self.options(here, children, depth + 1)
            else:
                if option.get("required"):
                    if optional_seen is not None:
                        self.add(here, f"is required but comes after optional {optional_seen!r}")
                elif optional_seen is None:
                    optional_seen = name
                self.choices(here, option)

    def choices(self, where: str, option: Mapping[str, Any]) -> None:
        choices = option.get("choices") or []
        if len(choices) > LIMITS.choices:
            self.add(where, f"has {len(choices)} choices; Discord allows {LIMITS.choices}")
        if choices and option.get("autocomplete"):
            self.add(where, "has both choices and autocomplete; Discord allows one or the other")
        for choice in choices:
            for locale, name in _names(choice):
                if not isinstance(name, str) or not 1 <= len(name) <= LIMITS.choice_name_length:
                    length = len(name) if isinstance(name, str) else 0
                    self.add(
                        f"{where} choice{locale} {str(name)[:20]!r}…",
                        f"name is {length} characters; Discord allows 1–{LIMITS.choice_name_length}",
                    )
            value = choice.get("value")
            if option.get("type") == STRING and len(str(value)) > LIMITS.choice_string_value_length:
                self.add(
                    f"{where} choice {str(choice.get('name'))[:20]!r}",
                    f"value is {len(str(value))} characters; Discord allows "
                    f"{LIMITS.choice_string_value_length}",
                )


def _command_problems(payload: Mapping[str, Any]) -> list[Problem]:
    kind = payload.get("type", CHAT_INPUT)
    name = str(payload.get("name"))
    checker = _Checker(name)
    if kind == CHAT_INPUT:
        checker.name_and_description(f"/{name}", payload)
        checker.options(f"/{name}", payload.get("options") or [], depth=0)
        total = _characters(payload)
        if total > LIMITS.command_characters:
            checker.add(
                f"/{name}",
                f"has {total} characters in names, descriptions and choices; "
                f"Discord allows {LIMITS.command_characters}",
            )
    else:
        # Context menus: any case and spaces are fine, the description must be empty, no options.
        for locale, value in _names(payload):
            if not isinstance(value, str) or not 1 <= len(value) <= LIMITS.name_length:
                checker.add(f"menu {name!r} name{locale}", f"must be 1–{LIMITS.name_length} characters")
        if payload.get("description") or payload.get("options"):
            checker.add(f"menu {name!r}", "must have an empty description and no options")
    return checker.problems


def payload_problems(payloads: Sequence[Mapping[str, Any]], *, scope: str = "global") -> list[Problem]:
    """Everything in one sync's payload (all commands of one scope) that Discord would reject."""
    problems: list[Problem] = []
    counts = {CHAT_INPUT: 0, USER: 0, MESSAGE: 0}
    seen: set[tuple[Any, str]] = set()
    for payload in payloads:
        kind = payload.get("type", CHAT_INPUT)
        counts[kind] = counts.get(kind, 0) + 1
        key = (kind, str(payload.get("name")))
        if key in seen:
            problems.append(Problem(key[1], f"{key[1]!r}: two commands of one type share this name"))
        seen.add(key)
        problems.extend(_command_problems(payload))
    limits = {
        CHAT_INPUT: ("slash commands", LIMITS.chat_input_commands),
        USER: ("user context menus", LIMITS.user_commands),
        MESSAGE: ("message context menus", LIMITS.message_commands),
    }
    for kind, (what, limit) in limits.items():
        if counts.get(kind, 0) > limit:
            problems.append(
                Problem("*", f"{scope}: {counts[kind]} {what}; Discord allows {limit} per application")
            )
    return problems
