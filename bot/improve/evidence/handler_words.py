"""From a complaint's words to the handlers whose code says what it describes — for a fault that left
no failure to find it by.

"It puts things on my list I never typed", "the welcome message skips some servers", "the game's
score is never updated": nothing raised, no kind is named, and the full-text search of incidents and
failures finds nothing. What the words do meet is code: the handler's name and its kind (`app:todo
add`, `listener:on_guild_join`), the identifiers and strings it and the functions it calls in its
module use (the text of its replies is among them), the event it listens to. Each handler of the
handler map is scored by the complaint's words it shares, each word weighted by how few handlers
have it (a word every handler has says nothing), with English stems on both sides ("servers" meets
`server`, "updated" meets `update`) and the words people use for Discord's things read as the API
names them ("server" is a guild, "people" are members, "react" is a reaction). mendbot's own cogs
(bot/observe/handlers.py) are left out unless nothing else matches.

How the words say a thing behaves tells which part of the bot does it, whatever the part is called:
"keeps posting", "every hour", "never wishes anyone" describe what runs on its own (a task loop, a
listener); "clicking next", "the dropdown" a button or select; "the form", "when I submit" a modal;
"as I type", "no suggestions" an autocomplete callback; "the message menu", "right-click" a context
menu; "not allowed", "anyone can" a check; "since the reload" a cog's load and unload hooks
(`family_cues`). A handler of a part the words describe scores as a rare word its code shared would —
and is in the running even when its code shares no word at all.

Handlers are the running bot's map and what the source declares beside it
(bot/improve/evidence/handler_scan.py): the views, buttons and modals no cog holds.
"""

from __future__ import annotations

import ast
import functools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mendbot.db.core import Connection
from mendbot.db.handlers import HandlerLocation
from mendbot.improve.evidence.handler_scan import every_handler, family
from mendbot.improve.evidence.source_index import ModuleIndex, read_module, terms_of
from mendbot.observe.handlers import is_mendbots_own

__all__ = ["HandlerMatch", "family_cues", "match_handlers", "rank_handlers", "stems"]

# How people name Discord's things, by stem → how its API, and so a bot's code, names them.
_DISCORD_NAMES = {
    "server": "guild",
    "user": "member",
    "peopl": "member",
    "person": "member",
    "someon": "member",
    "everyon": "member",
    "newcom": "member",
    "emoji": "reaction",
    "react": "reaction",
    "nicknam": "nick",
    "direct": "dm",
    "privat": "dm",
    "click": "button",
    "press": "button",
    "dropdown": "select",
    "menu": "select",
    "form": "modal",
    "popup": "modal",
    "leav": "remove",
    "left": "remove",
    "voic": "voice",
    "post": "send",
    "repli": "reply",
    "answer": "reply",
}
_MAX_MATCHES = 5
# What the words say the part does weighs more than a rare word its code shares: "never grows any
# more" is a loop's doing whatever the `plant` command is called; a handler of a kind of part the words
# do not describe keeps this share of its score.
_PART_WEIGHT = 1.5
_OTHER_PART = 0.5
_MIN_LENGTH = 3
_WHO = r"(?:someone|somebody|anyone|anybody|a user|a member|people|users|members|i|we|you|they|he|she)"
# How people say which part of a bot did it (see the module docstring): family → phrases.
_CUES = {
    "task": (
        r"every (?:\w+ )?(?:day|hour|minute|week|morning|evening|night)s?|daily|hourly|weekly|nightly",
        r"each (?:day|hour|morning|night|week)|on (?:a|its) (?:schedule|timer)|schedul\w*|background",
        r"automatic(?:ally)?|by itself|on its own|at (?:midnight|noon|\d+(?::\d+)?\s*(?:am|pm)?)\b",
        r"(?:never|no longer|stopped|stops) (?:\w+ )?(?:wish|fire|run|post|send|remind|announc|updat|"
        r"refresh|rotat|happen|arriv|go(?:es)? off|ping|greet)\w*",
        r"keeps? (?:\w+ )?(?:posting|sending|spamming|repeating|pinging|firing|running)",
        r"(?:never|no longer) \w+(?:s|es)? any ?more|stopped \w+ing",
        r"twice|double[ds]?|duplicat\w*|again and again|over and over|loops?",
    ),
    "listener": (
        rf"when(?:ever)? {_WHO} (?:\w+ )?(?:join|leave|left|react|post|send|write|type|edit|delete|say|"
        r"mention|boost|come|arrive)\w*",
        r"reacts?\b|reaction|joins? the server|new (?:members?|people|users?)|on join|every message",
        r"any message|each message|messages? (?:people|someone|anyone) (?:post|send|write)",
    ),
    "view": (
        r"buttons?|click\w*|press\w*|tap(?:s|ped|ping)?\b|dropdown|drop-down|select(?:ion|ed|s|ing)?\b",
        r"pick(?:s|ed|ing)?\b|chose|choos\w*|menu option|next page|previous page|page \d|pages?\b",
        r"\bnext\b|\bback\b|\bprevious\b",
    ),
    "modal": (
        r"forms?\b|modals?|pop-?ups?|submit\w*|fill(?:s|ed|ing)? (?:\w+ )?(?:in|out)|text ?box|fields?\b",
    ),
    "autocomplete": (
        r"suggest\w*|autocomplet\w*|auto-complet\w*|as (?:i|you|they|we) type|while typing",
        r"(?:start|begin)s? typing|typing (?:a|the|in)|when (?:i|you|they|we) type|choices|completions?",
    ),
    "context": (
        r"right[- ]click\w*|context menu|apps? menu|message menu|user menu|long[- ]press",
        r"(?:on|from) (?:a|the|their|someone'?s) (?:message|profile)'?s? menu",
    ),
    "check": (
        r"permissions?|not allowed|(?:is|are)n'?t allowed|may not|can'?t use|cannot use|forbidden|denied",
        r"refus\w+|only (?:admins|mods|moderators|staff|owners)|(?:anyone|everyone|anybody) can",
        r"lets? (?:anyone|everyone|anybody|people|them)|without (?:the )?(?:right|role|permission)",
        r"(?:is|are|am|'?re|'?s)(?:n'?t| not) (?:\w+ )?(?:staff|admins?|mods?|moderators?|owners?|members?)",
        r"not (?:staff|an? (?:admin|mod|moderator|owner))",
    ),
    "cog": (
        r"reload\w*|unload\w*|(?:won'?t|doesn'?t|didn'?t|does not|did not) load|extensions?\b",
        r"after (?:a |the )?restart|on start(?:up)?|at start(?:up)?",
    ),
}


@functools.cache
def _stemmer() -> Any:
    """The English stemmer, made when words are first matched: importing snowballstemmer loads every
    language's stemmer (~15 ms), which a start that reads no complaint need not pay."""
    import snowballstemmer

    return snowballstemmer.stemmer("english")


def stems(words: Iterable[str]) -> set[str]:
    """English stems of words, with the API's names of Discord's things beside the spoken ones."""
    found = set()
    for said in words:
        word = said.lower()
        if len(word) < _MIN_LENGTH or not word.isalpha():
            continue
        stem = _stemmer().stemWord(word)
        found.add(stem)
        if stem in _DISCORD_NAMES:
            found.add(_DISCORD_NAMES[stem])
    return found


@dataclass(frozen=True, slots=True)
class HandlerMatch:
    """A handler the complaint's words lead to, with the score and the words it shares."""

    kind: str
    path: str
    qualname: str
    score: float
    words: list[str]


def _unit_text(module: ModuleIndex, qualname: str) -> str:
    """A function's source from its `def` on (the decorators above it name other things)."""
    unit = module.functions.get(qualname)
    if unit is None:
        return ""
    start = getattr(unit.node, "lineno", unit.start)
    return "\n".join(module.lines[start - 1 : unit.end])


def _handler_stems(module: ModuleIndex, handler: HandlerLocation) -> set[str]:
    """What a handler's code says: its kind and name, its identifiers and strings, and those of the
    functions of its module it calls."""
    texts = [_unit_text(module, handler.qualname)]
    unit = module.functions.get(handler.qualname)
    if unit is not None:
        for node in ast.walk(unit.node):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = None
            if isinstance(func, ast.Name):
                name = func.id
            elif (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "self"
            ):
                name = f"{unit.class_name}.{func.attr}" if unit.class_name else None
            if name is not None and name != handler.qualname and name in module.functions:
                texts.append(_unit_text(module, name))
    return stems(word for text in texts for word in terms_of(text))


def _name_stems(handler: HandlerLocation) -> set[str]:
    """What a handler is called: its kind, its name and its cog's (a word every handler of one cog
    shares still tells the cogs apart). People name a feature by these."""
    return stems(terms_of(f"{handler.kind.split(':', 1)[-1]} {handler.qualname}"))


def _source(module: ModuleIndex | None) -> str | None:
    return "\n".join(module.lines) if module is not None else None


def family_cues(text: str) -> dict[str, set[str]]:
    """The parts of a bot (`handler_scan.family`) the words describe by how they behave, each with the
    stems of the words that say so ("reloaded", "twice"): those words tell which kind of part did it,
    not which one — a `reload` command is not what "since it was reloaded" means."""
    said = " ".join(text.lower().replace("’", "'").split())
    found: dict[str, set[str]] = {}
    for name, phrases in _CUES.items():
        for phrase in phrases:
            for match in re.finditer(rf"(?<![\w'])(?:{phrase})", said):
                found.setdefault(name, set()).update(stems(re.findall(r"[a-z]+", match.group(0))))
    return found


def match_handlers(
    handlers: Sequence[HandlerLocation],
    modules: dict[str, ModuleIndex],
    words: Iterable[str],
    cues: dict[str, set[str]] | None = None,
) -> list[HandlerMatch]:
    """The handlers whose code shares the complaint's words, or whose part the complaint describes
    (`cues`, from `family_cues`), best first (see the module docstring)."""
    wanted = stems(words)
    cued = cues or {}
    if not wanted and not cued:
        return []
    said: dict[HandlerLocation, set[str]] = {}
    named: dict[HandlerLocation, set[str]] = {}
    for handler in handlers:
        module = modules.get(handler.path)
        if module is not None:
            named[handler] = _name_stems(handler)
            said[handler] = _handler_stems(module, handler) | named[handler]
    if not said:
        return []
    total = len(said)
    frequency = {word: sum(word in found for found in said.values()) for word in wanted}
    families = {handler: family(handler.kind) for handler in said}
    sizes = {name: sum(found == name for found in families.values()) for name in cued}
    matches = []
    for handler, found in said.items():
        part = families[handler]
        # Words that say what kind of part did it count for that kind of part only.
        elsewhere = set().union(*(words for name, words in cued.items() if name != part)) - cued.get(
            part, set()
        )
        shared = sorted(
            word for word in (wanted - elsewhere) & found if frequency[word] < total or total == 1
        )
        if not shared and part not in cued:
            continue
        # A word of its name counts twice: "command logging" names the CommandLog cog.
        score = sum(
            math.log(1 + total / frequency[word]) * (2.0 if word in named[handler] else 1.0)
            for word in shared
        )
        if part in cued:  # what the words say it does is what this part does: a rare word shared
            score += _PART_WEIGHT * math.log(1 + total / sizes[part])
            shared = [*shared, f"({part})"]
        elif cued:  # the words say it is another kind of part
            score *= _OTHER_PART
        matches.append(HandlerMatch(handler.kind, handler.path, handler.qualname, round(score, 6), shared))
    theirs = [m for m in matches if not is_mendbots_own(m.path, _source(modules.get(m.path)))]
    ranked = sorted(theirs or matches, key=lambda m: (-m.score, m.kind, m.path, m.qualname))
    return ranked[:_MAX_MATCHES]


async def rank_handlers(
    db: Connection, roots: Sequence[Path], words: Iterable[str], said: str = ""
) -> list[HandlerMatch]:
    """The handlers (the running map and what the source declares) the complaint's words — and what
    `said`, the whole complaint, says the part does — lead to, best first; their files read from the
    first of `roots` (the checkouts whose code runs here) that holds them."""
    handlers = await every_handler(db, roots)
    modules = {}
    for path in sorted({handler.path for handler in handlers}):
        module = next((m for m in (read_module(root, path) for root in roots) if m is not None), None)
        if module is not None:
            modules[path] = module
    return match_handlers(handlers, modules, words, family_cues(said))
