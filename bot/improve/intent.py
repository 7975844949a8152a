"""From plain words addressed to the bot to a request and what it is about — no model call.

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
fails. Vaguer words ("seems off",
"weird", "odd", "acting up") make an *uncertain* request (`Intent.certain` False) — and only
when the message is about the bot (a command or kind it knows, a `/name` or `!name`, or words
like "you", "reply", "result"): the bot then asks in one line with buttons instead of chatting
past it.

`resolve_target` decides which incident (or distinct failure) the request is about, in order:
1. the incident whose announcement or error reply was replied to;
2. a command or kind named in the text ("the roll command" → `command:roll`, "weather" →
   `app:weather`, matched against the recorded kinds and the handler map): its newest
   unresolved incident, else its most recently seen failure, else the kind itself (a slow or
   wrong-answering command has no failure; the evidence is gathered for the kind);
3. a full-text search of incidents and distinct failures by the words used (FTS5 bm25 over
   summary, kind, error type, message and frames — see bot/db/search.py), scaled by recency:
   `score = relevance / (1 + age_hours / 24)`.
When the best two candidates score within 15% of each other and are different incidents, the
target is ambiguous and lists them so the bot can ask which one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from bot.db import actions as action_queries
from bot.db import handlers as handler_queries
from bot.db import incidents as incident_queries
from bot.db import search as queries
from bot.db.core import Connection
from bot.improve import handler_words
from bot.trust.grammar import read_approval
from bot.trust.sanitize import sanitize_untrusted

__all__ = [
    "AMBIGUITY_MARGIN",
    "Candidate",
    "Intent",
    "IntentKind",
    "Target",
    "command_names_in",
    "known_kinds_in",
    "named_kinds",
    "parse_intent",
    "resolve_target",
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
AMBIGUITY_MARGIN = 0.15
_RECENCY_HOURS = 24.0
_MAX_CANDIDATES = 5
_LISTED_FRACTION = 0.1  # candidates scoring below this share of the best one are not worth listing
_MAX_WORDS = 12


@dataclass(frozen=True, slots=True)
class Intent:
    """What a message asks for. `text` is the message without mentions, sanitized."""

    kind: IntentKind
    text: str
    run_id: int | None = None
    security: bool = False
    certain: bool = True  # False: a vague complaint; ask before starting anything


def _vocabulary(words: str) -> frozenset[str]:
    return frozenset(words.split())


def _words(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(rf"(?<![\w'])(?:{alternative})(?![\w'])" for alternative in alternatives))


_NOT = r"(?:don'?t|do not|dont|never|no need to|without|not)"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
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
    )),
]  # fmt: skip
# Vague complaints: only said of the bot, and only enough to ask (see the module docstring).
_LOOKS = r"(?:seems?|looks?|feels?|is|are|was|were|a bit|slightly|way|totally|acting|behaving)"
_SOFT_COMPLAINT = _words(
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
)
_NAMED_COMMAND = re.compile(r"(?<![\w<])[/!][a-z][\w-]*")
_NEGATED_FIX = _words(
    rf"{_NOT}\s+(?:fix|change|touch|edit)(?:ing)?", r"(?:just|only) (?:look|investigate)", "read-only"
)
_REQUESTS = ("fix", "investigate", "complaint")
_SECURITY = _words("security")
_RUN_ID = re.compile(r"(?<!\w)(?:/?run\s*#?\s*(\d+)|#(\d+))(?!\w)")
_MENTION = re.compile(r"<(?:@[!&]?|#)\d+>")
_ADDRESS = re.compile(r"^\s*(?:(?:hey|hi|ok|okay)\s+)?@?mendbot\b[\s,:;!.-]*", re.IGNORECASE)


def _clean(text: str) -> str:
    text = _MENTION.sub(" ", sanitize_untrusted(text)).replace("’", "'").replace("‘", "'")
    text = _ADDRESS.sub("", text)
    return " ".join(text.split())


def parse_intent(text: str, known_kinds: Collection[str] = ()) -> Intent:
    """The intent of a message addressed to the bot; kind "none" when it asks for nothing.

    `known_kinds` (`app:convert`, …) lets a vague complaint that names one of them count.
    """
    cleaned = _clean(text)
    lowered = cleaned.lower()
    found: dict[str, int] = {}
    for name, pattern in _PATTERNS:
        match = pattern.search(lowered)
        if match is not None:
            found[name] = match.start()
    if not found:
        if _SOFT_COMPLAINT.search(lowered) and (
            _ABOUT_BOT.search(lowered)
            or _NAMED_COMMAND.search(lowered)
            or command_names_in(lowered, known_kinds)
        ):
            return Intent("investigate", cleaned, certain=False)
        return Intent("none", cleaned)
    first = min(found, key=lambda name: found[name])
    kind: IntentKind
    if first in _REQUESTS:
        if "fix" in found and not _NEGATED_FIX.search(lowered):
            kind = "fix"
        elif "investigate" in found or _NEGATED_FIX.search(lowered):
            kind = "investigate"
        else:
            kind = "fix"  # a complaint: see the module docstring
    elif first in ("approve", "reject"):
        # Approving and rejecting follow the one approval grammar (bot.trust.grammar): anything
        # short of a clear decision is no decision. A run reference ("ship #7") names the run.
        verdict = read_approval(_RUN_ID.sub(" ", cleaned)).verdict
        kind = "approve" if verdict == "approve" else "reject" if verdict == "reject" else "none"
    else:
        kind = first  # type: ignore[assignment]  # the names in _PATTERNS are IntentKinds
    run = _RUN_ID.search(lowered)
    run_id = int(run.group(1) or run.group(2)) if run else None
    security = kind in ("fix", "approve") and _SECURITY.search(lowered) is not None
    return Intent(kind, cleaned, run_id, security)


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


# -- resolving "this" -------------------------------------------------------------------------------


class Candidate(NamedTuple):
    """One thing the request may be about: an incident, or a failure no incident covers."""

    incident_id: int | None
    description: str
    score: float
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """What a request is about. Empty `incident_ids` and no `fingerprint`: nothing matched."""

    incident_ids: list[int]
    ambiguous: bool
    candidates: list[Candidate] = field(default_factory=list)
    fingerprint: str | None = None
    kind: str | None = None
    via: Literal["reply", "named", "search", "words", "active", "none"] = "none"

    def question(self) -> str:
        """The "which one do you mean?" question listing the candidates, for an ambiguous target."""
        lines = [f"{n}. {candidate.description}" for n, candidate in enumerate(self.candidates, 1)]
        return "Which one do you mean?\n" + "\n".join(lines)


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
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def search_words(text: str) -> list[str]:
    """The words of a request worth searching for: no stop words, no request vocabulary."""
    words = [word for word in _TOKEN.findall(_clean(text).lower().replace("'", "")) if word not in _STOPWORDS]
    return [word for word in dict.fromkeys(words) if len(word) >= 2 and not word.isdigit()][:_MAX_WORDS]


def _one_line(text: str, limit: int = 100) -> str:
    line = " ".join(sanitize_untrusted(text).split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def _describe_incident(incident: dict[str, Any], now: float) -> str:
    return (
        f"incident #{incident['id']} · {incident['kind']} · {_one_line(incident['summary'])}"
        f" ({incident['state']}, {incident['count']}×, last {_age(now - incident['last_seen'])})"
    )


def _describe_failure(failure: queries.Failure, message: str | None, now: float) -> str:
    what = failure.error_type or "failure"
    if message:
        what = f"{what}: {message}"
    return (
        f"{failure.kind} · {_one_line(what)} ({failure.count}×, last {_age(now - failure.last_seen)},"
        f" fingerprint {failure.fingerprint})"
    )


def _recency(last_seen: float, now: float) -> float:
    return 1.0 / (1.0 + max(now - last_seen, 0.0) / 3600.0 / _RECENCY_HOURS)


@dataclass(frozen=True, slots=True)
class _Scored:
    score: float
    kind: str
    incident: dict[str, Any] | None
    failure: queries.Failure | None
    message: str | None

    def candidate(self, now: float) -> Candidate:
        if self.incident is not None:
            incident = self.incident
            return Candidate(
                incident["id"], _describe_incident(incident, now), self.score, incident["fingerprint"]
            )
        assert self.failure is not None
        description = _describe_failure(self.failure, self.message, now)
        return Candidate(None, description, self.score, self.failure.fingerprint)


async def _search_candidates(db: Connection, words: list[str], now: float) -> list[_Scored]:
    """Search hits, each failure folded into its incident if it has one, best score first."""
    hits = await queries.search(db, words, limit=20)
    owners = await queries.incidents_for_failures(
        db, [(hit.failure.fingerprint, hit.failure.kind) for hit in hits if hit.failure is not None]
    )
    best: dict[tuple[str, object], _Scored] = {}
    for hit in hits:
        score = hit.relevance * _recency(hit.last_seen, now)
        incident = hit.incident
        if incident is None and hit.failure is not None:
            incident = owners.get(hit.failure.fingerprint)
        if incident is not None:
            key: tuple[str, object] = ("incident", incident["id"])
            scored = _Scored(score, incident["kind"], incident, None, hit.message)
        else:
            assert hit.failure is not None
            key = ("failure", hit.failure.fingerprint)
            scored = _Scored(score, hit.failure.kind, None, hit.failure, hit.message)
        if key not in best or best[key].score < score:
            best[key] = scored
    return sorted(best.values(), key=lambda scored: scored.score, reverse=True)


async def resolve_target(
    db: Connection,
    text: str,
    *,
    replied_incident_id: int | None,
    known_kinds: Collection[str] | None = None,
    now: float | None = None,
    named: Collection[str] | None = None,
    roots: Sequence[Path] = (),
) -> Target:
    """Which incident or failure the request is about (see the module docstring for the order).

    `known_kinds` defaults to every kind that has failed, had an incident or has a handler. `named`
    gives the kinds the request is about instead of reading them from its words (the model chose
    one). With `roots` (the checkouts whose code runs here), words that match no recorded failure lead to
    the handlers whose code says what the request describes (bot/improve/handler_words.py).
    """
    now = time.time() if now is None else now
    if replied_incident_id is not None:
        incident = await incident_queries.by_id(db, replied_incident_id)
        if incident is not None:
            return Target(
                incident_ids=[incident["id"]],
                ambiguous=False,
                candidates=[
                    Candidate(incident["id"], _describe_incident(incident, now), 1.0, incident["fingerprint"])
                ],
                fingerprint=incident["fingerprint"],
                kind=incident["kind"],
                via="reply",
            )
    kinds = set(known_kinds) if known_kinds is not None else await known_kinds_in(db)
    mentioned = [(kind, True) for kind in named] if named else named_kinds(text, kinds)
    words = search_words(text)
    if mentioned:
        target = await _named_target(db, mentioned, words, now)
        if target is not None:
            return target
    if words:
        scored = await _search_candidates(db, words, now)
        if not scored:
            return await _handler_target(db, words, roots)
        top = scored[0]
        close = [c for c in scored if c.score >= top.score * (1 - AMBIGUITY_MARGIN)]
        if len(close) > 1:
            return Target([], True, [c.candidate(now) for c in close[:_MAX_CANDIDATES]], via="search")
        listed = [
            c.candidate(now) for c in scored[:_MAX_CANDIDATES] if c.score >= top.score * _LISTED_FRACTION
        ]
        ids = [] if top.incident is None else [top.incident["id"]]
        return Target(ids, False, listed, listed[0].fingerprint, top.kind, "search")
    # Nothing but "fix this": the one unresolved incident, or ask which of several.
    active = await incident_queries.list_by_state(db, ("open", "acknowledged"), limit=_MAX_CANDIDATES)
    if not active:
        return Target([], False)
    listed = [
        Candidate(i["id"], _describe_incident(i, now), _recency(i["last_seen"], now), i["fingerprint"])
        for i in active
    ]
    if len(active) == 1:
        return Target([active[0]["id"]], False, listed, active[0]["fingerprint"], active[0]["kind"], "active")
    return Target([], True, listed, via="active")


async def _handler_target(db: Connection, words: list[str], roots: Sequence[Path]) -> Target:
    """No recorded failure matches the words: the handler whose code says what they describe — its
    names, the text of its replies, the event it listens to — is the target, as a kind."""
    if not roots:
        return Target([], False)
    ranked = await handler_words.rank_handlers(db, roots, words)
    if not ranked:
        return Target([], False)
    best = ranked[0]
    listed = [
        Candidate(None, f"{match.kind} (its code matches: {', '.join(match.words[:4])})", match.score)
        for match in ranked[:_MAX_CANDIDATES]
    ]
    return Target([], False, listed, None, best.kind, "words")


async def known_kinds_in(db: Connection) -> set[str]:
    """Every kind a request can name: those that failed or had an incident, and every handled kind."""
    return await queries.failure_kinds(db) | await handler_queries.kinds(db)


# How far back failing actions count as what is going wrong now on the surface a request names.
_SURFACE_WINDOW_S = 6 * 3600.0


@dataclass(frozen=True, slots=True)
class _Evidence:
    """What was recorded failing on one named kind's surface: the kind itself, the view callbacks of
    the screens it showed, the checks and converters it ran."""

    kind: str
    incidents: list[dict[str, Any]]
    bugs: list[action_queries.Bug]


async def _surface_evidence(db: Connection, kinds: list[str], now: float) -> list[_Evidence]:
    """For each kind, its unresolved incidents and recent failures, and those of what it showed or ran."""
    bugs = await action_queries.recent_bugs(db, since=now - _SURFACE_WINDOW_S)
    found = []
    for kind in kinds:
        related = {kind} | {bug.kind for bug in bugs if bug.surface == kind}
        incidents = await queries.latest_incidents_of_kinds(db, related, limit=_MAX_CANDIDATES)
        recent = [bug for bug in bugs if bug.kind in related]
        if incidents or recent:
            found.append(_Evidence(kind, incidents, recent))
    return found


async def _evidence_target(db: Connection, evidence: _Evidence, words: list[str], now: float) -> Target:
    """The target one named kind's recorded failures make: its (best) incident, else its newest failure."""
    if evidence.incidents:
        incidents = evidence.incidents
        chosen = incidents[0]
        named_words = set(re.split(r"[:_.]", evidence.kind.lower()))
        other_words = [word for word in words if word not in named_words]
        if len(incidents) > 1 and other_words:
            # Several unresolved incidents on what was named: let the other words pick, else the newest.
            scored = await _search_candidates(db, other_words, now)
            relevance = {c.incident["id"]: c.score for c in scored if c.incident is not None}
            chosen = max(incidents, key=lambda i: (relevance.get(i["id"], 0.0), i["last_seen"]))
        listed = [
            Candidate(i["id"], _describe_incident(i, now), _recency(i["last_seen"], now), i["fingerprint"])
            for i in [chosen, *(i for i in incidents if i is not chosen)]
        ]
        return Target([chosen["id"]], False, listed, chosen["fingerprint"], chosen["kind"], "named")
    bug = evidence.bugs[0]
    failure = await queries.failure(db, bug.fingerprint)
    incident = await queries.incident_for_failure(db, bug.fingerprint, bug.kind)
    if incident is not None:
        candidate = Candidate(incident["id"], _describe_incident(incident, now), 1.0, bug.fingerprint)
        return Target([incident["id"]], False, [candidate], bug.fingerprint, bug.kind, "named")
    description = (
        _describe_failure(failure, None, now) if failure is not None else f"{bug.kind} · {bug.fingerprint}"
    )
    return Target(
        [], False, [Candidate(None, description, 1.0, bug.fingerprint)], bug.fingerprint, bug.kind, "named"
    )


async def _named_target(
    db: Connection, named: list[tuple[str, bool]], words: list[str], now: float
) -> Target | None:
    """The target of a request that names kinds, by evidence: an explicit name beats a bare word; a
    named kind with something recorded failing on its surface — an unresolved incident, failures in
    the last hours of it or of the views it showed, the checks and converters it ran — beats one with
    none; two named kinds that both have one are ambiguous, and asked about."""
    explicit = [kind for kind, is_explicit in named if is_explicit]
    kinds = explicit or [kind for kind, _ in named]
    evidenced = await _surface_evidence(db, kinds, now)
    if evidenced:
        targets = [await _evidence_target(db, evidence, words, now) for evidence in evidenced]
        distinct = {(tuple(t.incident_ids), t.fingerprint) for t in targets}
        if len(distinct) > 1:
            return Target([], True, [t.candidates[0] for t in targets][:_MAX_CANDIDATES], via="named")
        return targets[0]
    failures = await queries.latest_failures_of_kinds(db, kinds[:1], limit=1)
    if not failures:
        # A command that answers wrongly or slowly has no failure: the request is about the kind.
        return Target(
            [], False, [Candidate(None, f"{kinds[0]} (no recorded failure)", 1.0)], None, kinds[0], "named"
        )
    failure = failures[0]
    incident = await queries.incident_for_failure(db, failure.fingerprint, failure.kind)
    if incident is not None:
        candidate = Candidate(incident["id"], _describe_incident(incident, now), 1.0, failure.fingerprint)
        return Target([incident["id"]], False, [candidate], failure.fingerprint, failure.kind, "named")
    candidate = Candidate(None, _describe_failure(failure, None, now), 1.0, failure.fingerprint)
    return Target([], False, [candidate], failure.fingerprint, failure.kind, "named")
