"""From plain words addressed to the bot to a request — no model call.

`parse_intent` maps a message ("fix this", "can you look into it", "ship it", "cancel run 3")
to one of a fixed set of intents by word patterns. When several patterns match, the one that
starts first wins, with one exception: the request verbs combine — an explicit "fix" beats
"investigate" ("look into it and fix it" is a fix), "investigate" beats a bare complaint, and a
complaint alone ("the roll command is broken again", "X keeps failing", "X doesn't work") is
read as a fix request: said to the bot by a developer, a complaint asks for the thing to be
mended, and the issue's own example expects that sentence to start work on its incident.
Negations are read first: "don't ship" rejects, "don't fix it, just look" investigates.

A complaint needs no crash word: "gives wrong results", "got really slow", "says the file is
corrupt", "stopped posting", "never answers" are complaints too; a failure verb counts in any tense
("failed", "crashed", "errored"), and so does a part of the bot that does nothing when used
("nothing happens", "does nothing", "unresponsive") — how people describe a button or a form that
fails — or does the wrong thing: never does it ("never wishes anyone", "never gets posted"), keeps
doing it ("keeps posting"), does it to the wrong one ("instead of"), shows nothing or a blank, no
longer does it ("no suggestions any more"), lets anyone do it ("anyone can"), stops short, comes an
hour late. What it says or shows, told about the bot ("it says 18010 seconds", "the list puts bo
above ada"), is a report to ask about. Vaguer words ("seems off",
"weird", "odd", "acting up") make an *uncertain* request (`Intent.certain` False) — and only
when the message is about the bot (a command or kind it knows, a `/name` or `!name`, or words
like "you", "reply", "result"): the bot then asks in one line with buttons instead of chatting
past it. The grammar is the fast path: a developer's message it cannot place is decided by the
chat model's tool call (bot/chat/route.py, bot/cogs/improve.py), never chatted past.

`named_kinds` reads the commands and kinds a message names, explicit ones (`/pay`, "the pay
command") apart from bare words ("pay"); `search_words` the words worth searching for. What "this"
means is resolved from them by bot/improve/evidence/target.py.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Literal

import msgspec

from mendbot.trust.grammar import read_approval
from mendbot.trust.sanitize import sanitize_untrusted

__all__ = [
    "Intent",
    "IntentKind",
    "clean",
    "command_names_in",
    "named_kinds",
    "parse_intent",
    "search_words",
]

IntentKind = Literal[
    "investigate",
    "fix",
    "status",
    "cancel",
    "pause",
    "resume",
    "approve",
    "reject",
    "rollback",
    "redo",
    "none",
]
_MAX_WORDS = 12


class Intent(msgspec.Struct, frozen=True):
    """What a message asks for. `text` is the message without mentions, sanitized."""

    kind: IntentKind
    text: str
    run_id: int | None = None
    security: bool = False
    certain: bool = True  # False: a vague complaint; ask before starting anything


def _vocabulary(words: str) -> frozenset[str]:
    return frozenset(words.split())


def _words(*alternatives: str) -> str:
    """A pattern matching any of `alternatives` as whole words. Patterns here stay text, compiled by
    `re` (and kept in its cache) when a message is first read: compiling them all at import was ~15 ms
    of every start, for a grammar a bot may not need before its first message."""
    return "|".join(rf"(?<![\w'])(?:{alternative})(?![\w'])" for alternative in alternatives)


_NOT = r"(?:don'?t|do not|dont|never|no need to|without|not)"
_PATTERNS: list[tuple[str, str]] = [
    ("reject", _words(
        rf"{_NOT}\s+(?:ship|merge|approve|deploy)(?:\s+it)?", r"reject(?:ed)?", "decline", "discard", "nope",
        r"close (?:it|that|the (?:pr|proposal|pull request))",
    )),
    ("rollback", _words(r"roll\s*-?\s*back", "revert", r"undo (?:it|that|the (?:deploy|merge|fix|change))")),
    ("approve", _words(
        r"ship(?:\s+it)?", "lgtm", r"merge(?:\s+it)?", r"approved?", r"looks good(?: to me)?",
        r"go ahead and (?:ship|merge)",
    )),
    ("redo", _words("redo", r"re-?run")),
    ("cancel", _words("stop", "cancel", "abort", r"kill (?:the |that |this )?run")),
    ("pause", _words("pause", r"hold off")),
    ("resume", _words("resume", "unpause", r"carry on", "continue")),
    ("status", _words(
        "status", r"what (?:are|r) (?:you|u) (?:doing|up to|working on)",
        r"what'?s (?:going on|happening|up)", r"how'?s it going", "progress", r"any (?:news|updates?)",
        "how far along",
    )),
    ("fix", _words(
        "fix", "repair", "patch", "mend", r"sort (?:it|this|that) out", r"make (?:it|this|that) work",
    )),
    ("investigate", _words(
        "investigate", r"look (?:into|at)", r"take a look", "debug", "diagnose", r"dig into", r"find out",
        r"figure out", r"what'?s wrong", r"what went wrong", r"why (?:is|does|did|do|are|was|were|has)",
    )),
    ("complaint", _words(
        "broken", "busted", "buggy", "throws",
        # every tense of the failure verbs: "fails", "failed", "crashing", "errored"
        r"(?:fail|crash|error)(?:s|es|ed|ing)?(?: out)?", r"(?:broke|breaks)(?: down)?",
        r"errors out", r"is down", r"not working", r"(?:doesn'?t|does not|isn'?t|won'?t|can'?t) work(?:ing)?",
        r"keeps? (?:failing|crashing|erroring|breaking)",
        # no crash words: wrong answers, slowness, silence, stopping, bad data
        "wrong", "incorrect", r"not (?:right|correct)", "inaccurate", "garbage", "nonsense", "bogus",
        r"(?:really |very |so |super |too )?slow(?:er)?", "sluggish", "laggy", r"takes? (?:forever|ages)",
        r"hangs?", "hanging", r"freez(?:es|ing)", r"times? out", r"timing out", r"stuck",
        r"corrupt(?:ed)?", r"mangled", r"garbled", r"truncated",
        r"stopped(?: \w+ing)?", r"no longer \w+",
        r"never (?:answers|replies|responds|works|runs|posts|fires)",
        r"(?:doesn'?t|does not|didn'?t|did not|won'?t|isn'?t|is not) "
        r"(?:answer|reply|respond|post|run|fire|update|save|load|show|send)(?:ing|s)?",
        r"not (?:answering|replying|responding|posting|running|firing|updating|saving|loading)",
        r"ignores?", r"(?:went|goes|is) silent", r"missing", r"lost", r"duplicated?", r"twice",
        # nothing happens: a click, a press or a submit that has no effect
        r"nothing (?:happens|happened|changes|changed|shows|showed|appears|appeared|comes up|loads)",
        r"(?:does|do|did) nothing", r"(?:doesn'?t|does not|didn'?t|did not|won'?t) (?:do|change) anything",
        r"(?:doesn'?t|does not|didn'?t|did not|won'?t) (?:do|happen) (?:a )?thing",
        r"unresponsive", r"(?:is|are|was|went) dead", r"(?:loads?|loading|spins?|spinning) forever",
        # what it does wrong, said without a failure word: it never does it, keeps doing it, does it to
        # the wrong thing, shows nothing, stops short
        r"never (?:gets? |got |been |is |are |was |were )?\w+(?:s|ed|en|wn)", r"keeps (?:on )?\w+ing",
        r"keep (?:getting|seeing|receiving)", r"(?:fall|falls|fell|falling) over", r"instead of",
        r"(?:says|shows|gives|posts|sends|returns|lists|prints) nothing", r"blank",
        r"(?:gives?|gave|get|got|getting|there'?s) no (?:answer|reply|response|output|result)s?",
        r"(?:stays?|stayed|is|are|was|were|remains?|comes? (?:out|back)|turns? up|shows? up) empty",
        r"(?:no|not|never|nothing|none|nobody|no one)\b[^.!?]{0,60}\bany ?more",
        r"(?:doesn'?t|does not|didn'?t|did not|won'?t) (?:give|get|add|remove|assign|count|come|appear|"
        r"happen|show up|pop up|go off)\w*",
        r"stops? (?:on|at|after) ",
        r"(?:an? |one |\d+ )?(?:hour|day|minute|second|week)s? (?:late|early|off|behind|ahead)",
    )),
]  # fmt: skip
# Vague complaints: only said of the bot, and only enough to ask (see the module docstring).
_LOOKS = r"(?:seems?|looks?|feels?|is|are|was|were|a bit|slightly|way|totally|acting|behaving)"
_SOFT_COMPLAINT = _words(
    r"(?:anyone|anybody|everyone|everybody) can",  # "anyone can clear messages now"
    rf"{_LOOKS} off",  # not "turn it off"
    r"off by",
    "weird",
    "odd",
    "strange",
    rf"{_LOOKS} funny",  # not "that's funny"
    "fishy",
    "suspicious",
    r"acting up",
    r"not quite",
    r"something'?s up with",
    "hmm+",
)
_ABOUT_BOT = _words(
    "you",
    "your",
    "bot",
    "mendbot",
    "reply",
    "replies",
    "answer",
    "answers",
    "response",
    "responses",
    "output",
    "result",
    "results",
    "command",
    "commands",
    # the parts of a message people act on
    r"buttons?",
    r"menus?",
    "dropdown",
    r"forms?",
    r"popups?",
    r"click(?:s|ed|ing)?",
    "it",
    "this",
    "that",
    "feature",
    r"permissions?",  # "anyone can … without the permission": about the bot's checks
)
_NAMED_COMMAND = r"(?<![\w<])[/!][a-z][\w-]*"
# What it says or shows, told as a report about the bot or a part of it: "it says 18010 seconds", "the
# top list puts bo above ada", "apply lists the questions one letter per line".
_REPORT_VERBS = (
    r"(?:says|said|shows|showed|tells|told|puts|put|gives|gave|lists|listed|posts|posted|prints|printed|"
    r"displays|displayed|answers|answered|replies|replied|sends|sent|credits|credited|ranks|ranked)"
)
_REPORTERS = (
    r"it|you|bot|(?:\w+)?(?:board|list|menu|button|form|page|command|message|reply|answer|embed|result|"
    r"output|digest|post|panel)s?"
)
_NEGATED_FIX = _words(
    rf"{_NOT}\s+(?:fix|change|touch|edit)(?:ing)?", r"(?:just|only) (?:look|investigate)", "read-only"
)
_REQUESTS = ("fix", "investigate", "complaint")
_SECURITY = _words("security")
_RUN_ID = r"(?<!\w)(?:/?run\s*#?\s*(\d+)|#(\d+))(?!\w)"
_MENTION = r"<(?:@[!&]?|#)\d+>"
_ADDRESS = r"(?i)^\s*(?:(?:hey|hi|ok|okay)\s+)?@?mendbot\b[\s,:;!.-]*"


def clean(text: str) -> str:
    """The message without mentions, hidden characters or the bot's name in front, on one line."""
    text = re.sub(_MENTION, " ", sanitize_untrusted(text)).replace("’", "'").replace("‘", "'")
    text = re.sub(_ADDRESS, "", text)
    return " ".join(text.split())


def parse_intent(text: str, known_kinds: Collection[str] = ()) -> Intent:
    """The intent of a message addressed to the bot; kind "none" when it asks for nothing.

    `known_kinds` (`app:convert`, …) lets a vague complaint that names one of them count.
    """
    cleaned = clean(text)
    lowered = cleaned.lower()
    found: dict[str, int] = {}
    for name, pattern in _PATTERNS:
        match = re.search(pattern, lowered)
        if match is not None:
            found[name] = match.start()
    if not found:
        if re.search(_SOFT_COMPLAINT, lowered) and (
            re.search(_ABOUT_BOT, lowered)
            or re.search(_NAMED_COMMAND, lowered)
            or command_names_in(lowered, known_kinds)
        ):
            return Intent("investigate", cleaned, certain=False)
        if _reported(lowered, known_kinds):
            return Intent("investigate", cleaned, certain=False)
        return Intent("none", cleaned)
    first = min(found, key=lambda name: found[name])
    kind: IntentKind
    if first in _REQUESTS:
        if "fix" in found and not re.search(_NEGATED_FIX, lowered):
            kind = "fix"
        elif "investigate" in found or re.search(_NEGATED_FIX, lowered):
            kind = "investigate"
        else:
            kind = "fix"  # a complaint: see the module docstring
    elif first in ("approve", "reject"):
        # Approving and rejecting follow the one approval grammar (mendbot.trust.grammar): anything
        # short of a clear decision is no decision. A run reference ("ship #7") names the run.
        verdict = read_approval(re.sub(_RUN_ID, " ", cleaned)).verdict
        kind = "approve" if verdict == "approve" else "reject" if verdict == "reject" else "none"
    else:
        kind = first  # type: ignore[assignment]  # the names in _PATTERNS are IntentKinds
    run = re.search(_RUN_ID, lowered)
    run_id = int(run.group(1) or run.group(2)) if run else None
    security = kind in ("fix", "approve") and re.search(_SECURITY, lowered) is not None
    return Intent(kind, cleaned, run_id, security)


def _reported(lowered: str, known_kinds: Collection[str]) -> bool:
    """Whether the message reports what the bot or a part of it said or showed (see `_REPORT_VERBS`)."""
    names = [re.escape(kind.split(":", 1)[-1].lower()) for kind in known_kinds if ":" in kind]
    subjects = "|".join([_REPORTERS, *(name for name in names if len(name) >= 3)])
    return re.search(rf"(?<![\w'])(?:{subjects})\s+{_REPORT_VERBS}(?![\w'])", lowered) is not None


# -- commands and kinds named in the text -------------------------------------------------------------

# Names that are also everyday or request words only count when written as a command: "/fix",
# "!status", "the fix command", "app:fix".
_RESERVED = _vocabulary(
    "fix investigate status run runs cancel pause resume budget stop reject approve merge rollback ship "
    "help reply message messages error errors bot it this that the on in"
)
_WORD_EDGE = r"(?<![\w:/!-])"
_WORD_END = r"(?![\w-])"


def named_kinds(text: str, known_commands: Collection[str]) -> list[tuple[str, bool]]:
    """The known kinds ("command:roll") named in the text, each with whether it is named explicitly —
    as a command (`/roll`, `!roll`, `app:roll`, "the roll command") rather than by a bare word
    ("roll") — explicit ones first, then in the order they appear."""
    lowered = " ".join(sanitize_untrusted(text).lower().split())
    found: list[tuple[bool, int, str]] = []
    for kind in known_commands:
        name = kind.split(":", 1)[-1].lower()
        if not name:
            continue
        spoken = re.escape(name).replace("_", "[_ ]")
        explicit = "|".join(
            [
                rf"(?<![\w]){re.escape(kind.lower())}{_WORD_END}",
                rf"(?<![\w])[/!]{spoken}{_WORD_END}",
                rf"{_WORD_EDGE}{spoken}\s+(?:command|cmd|task|loop|listener|handler|button){_WORD_END}",
            ]
        )
        match = re.search(explicit, lowered)
        if match is not None:
            found.append((True, match.start(), kind))
            continue
        if name not in _RESERVED and len(name) >= 3:
            match = re.search(rf"{_WORD_EDGE}{spoken}{_WORD_END}", lowered)
            if match is not None:
                found.append((False, match.start(), kind))
    return [(kind, explicit) for explicit, _, kind in sorted(found, key=lambda f: (not f[0], f[1], f[2]))]


def command_names_in(text: str, known_commands: Collection[str]) -> list[str]:
    """The known kinds ("command:roll") named in the text ("roll", "/roll", "the roll command"),
    explicit names first (see `named_kinds`)."""
    return [kind for kind, _ in named_kinds(text, known_commands)]


# -- the words worth searching for ------------------------------------------------------------------

_STOPWORDS = _vocabulary(
    """a an the is are was were be been being am it its this that these those there here to of in on
    at for with by from and or but not no so as if then than too very can could would should will shall
    may might must do does did done doing dont doesnt didnt isnt arent wasnt wont cant im i me my we
    us our you your he she they them their what why how when where which who whom please pls plz thanks
    thank hey hi hello ok okay again still just some any anything something thing things stuff also
    keep keeps kept get gets got getting have has had make makes made let lets like now today yesterday
    fix fixing fixed investigate investigating look looking into check broken break breaks breaking
    failing fails fail failed failure working work works issue issues problem problems bug bugs wrong
    happening happened think know see seems seem sure maybe mendbot bot command commands cmd run runs
    error errors"""
)
_TOKEN = r"[^\W_]+"


def search_words(text: str) -> list[str]:
    """The words of a request worth searching for: no stop words, no request vocabulary."""
    tokens = re.findall(_TOKEN, clean(text).lower().replace("'", ""))
    words = [word for word in tokens if word not in _STOPWORDS]
    return [word for word in dict.fromkeys(words) if len(word) >= 2 and not word.isdigit()][:_MAX_WORDS]
