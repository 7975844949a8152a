"""What "this" means: which incident, failure or kind a request is about, by evidence.

`resolve_target` decides, in order:
1. the incident whose announcement or error reply was replied to (or the one the model chose);
2. commands or kinds named in the text ("the roll command" → `command:roll`, "weather" →
   `app:weather`, matched against the recorded kinds and the handler map; bot/improve/intent.py),
   by evidence: an explicit name (`/pay`, "the pay command") beats a bare word; a named kind with
   something recorded failing on its surface — an unresolved incident, failures in the last hours of
   it, of the views its replies showed (`invocation.surface`) or of the checks and converters it ran
   (`extra.command`) — beats one with none; two named kinds that both have one are asked about.
   With none, its most recently seen failure, else the kind itself (a slow or wrong-answering command
   has no failure; the evidence is gathered for the kind);
3. a full-text search of incidents and distinct failures by the words used (FTS5 bm25 over
   summary, kind, error type, message and frames — see bot/db/search.py), scaled by recency:
   `score = relevance / (1 + age_hours / 24)`; a failure counts as its incident's, and a handler's
   failure raised by a failing call to another service as that service's incident;
4. words that match no recorded failure: the handler whose code says what they describe
   (bot/improve/evidence/handler_words.py), as a kind;
5. nothing but "fix this": the one unresolved incident, or which of several.
When the best two candidates score within 15% of each other and are different incidents, the
target is ambiguous and lists them so the bot can ask which one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

from mendbot.db import actions as action_queries
from mendbot.db import handlers as handler_queries
from mendbot.db import incidents as incident_queries
from mendbot.db import search as queries
from mendbot.db.core import Connection
from mendbot.improve.evidence import handler_words
from mendbot.improve.evidence.handler_scan import every_handler, family
from mendbot.improve.intent import named_kinds, search_words
from mendbot.observe.outbound import KIND_PREFIX
from mendbot.trust.sanitize import sanitize_untrusted

__all__ = ["AMBIGUITY_MARGIN", "Candidate", "Target", "known_kinds_in", "resolve_target"]

AMBIGUITY_MARGIN = 0.15
_RECENCY_HOURS = 24.0
_MAX_CANDIDATES = 5
# Of two named kinds with evidence, one whose best candidate scores this many times the other's is meant.
_CLEARLY_AHEAD = 2.0
_LISTED_FRACTION = 0.1  # candidates scoring below this share of the best one are not worth listing
_WORDS_MARGIN = 0.35  # handlers matching the words within this share of the best are all in the running
# Words that say the trouble is back or goes on: it happened before, so it is the incident it opened.
_RECURS = re.compile(r"\b(?:again|still|once more|anew|recurr\w*|came back|is back|back again)\b")


class Candidate(NamedTuple):
    """One thing the request may be about: an incident, a failure no incident covers, or a kind."""

    incident_id: int | None
    description: str
    score: float
    fingerprint: str | None = None
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """What a request is about. Empty `incident_ids` and no `fingerprint`: nothing matched."""

    incident_ids: list[int]
    ambiguous: bool
    candidates: list[Candidate] = field(default_factory=list)
    fingerprint: str | None = None
    kind: str | None = None
    via: Literal["reply", "named", "search", "words", "active", "none"] = "none"
    # Only a guess: words that match some handler's code, or a bare word that is also a kind's name,
    # with nothing recorded failing (a model, when there is one, is asked which part is meant).
    guess: bool = False

    def question(self) -> str:
        """The "which one do you mean?" question listing the candidates, for an ambiguous target."""
        lines = [f"{n}. {candidate.description}" for n, candidate in enumerate(self.candidates, 1)]
        return "Which one do you mean?\n" + "\n".join(lines)


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
                incident["id"],
                _describe_incident(incident, now),
                self.score,
                incident["fingerprint"],
                incident["kind"],
            )
        assert self.failure is not None
        description = _describe_failure(self.failure, self.message, now)
        return Candidate(None, description, self.score, self.failure.fingerprint, self.failure.kind)


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
            incident = owners.get(hit.failure.fingerprint) or await _service_owner(db, hit.failure)
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


async def _service_owner(db: Connection, failure: queries.Failure) -> dict[str, Any] | None:
    """The incident of the service whose failing call raised a handler's failure (`extra.outbound`:
    bot/observe/outbound.py): the command that crashed on the timeout is that storm, not one of its own."""
    newest = await action_queries.recent_failures(
        db, kind=None, fingerprint=failure.fingerprint, since=0.0, limit=1
    )
    service = newest[0].extra.get("outbound") if newest else None
    if not isinstance(service, str):
        return None
    found = await queries.latest_incidents_of_kinds(db, {KIND_PREFIX + service}, limit=1)
    return found[0] if found else None


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
    the handlers whose code says what the request describes (bot/improve/evidence/handler_words.py).
    """
    now = time.time() if now is None else now
    if replied_incident_id is not None:
        incident = await incident_queries.by_id(db, replied_incident_id)
        if incident is not None:
            return Target(
                incident_ids=[incident["id"]],
                ambiguous=False,
                candidates=[_incident_candidate(incident, now, 1.0)],
                fingerprint=incident["fingerprint"],
                kind=incident["kind"],
                via="reply",
            )
    kinds = set(known_kinds) if known_kinds is not None else await known_kinds_in(db, roots)
    mentioned = [(kind, True) for kind in named] if named else named_kinds(text, kinds)
    words = search_words(text)
    if mentioned:
        recurs = _RECURS.search(" ".join(sanitize_untrusted(text).lower().split())) is not None
        target = await _named_target(db, mentioned, words, now, recurs=recurs)
        if target is not None and _bare_guess(target, mentioned):
            # Only a bare word names it, and nothing recorded fails on it: a kind whose name holds that
            # word and has something failing ("points" → `rmpoints`) is meant; when the words describe
            # another part of the bot ("it never wishes anyone a happy birthday" — a task, not the
            # `birthday` command), the handlers the words lead to decide.
            failing = await _failing_namesakes(db, [kind for kind, _ in mentioned], kinds, now)
            if failing is not None:
                return await _evidence_target(db, failing, words, now)
            cued = handler_words.family_cues(text)
            if cued and family(target.kind or "") not in cued:
                described = await _handler_target(db, words, roots, now, text)
                if described.kind is not None:
                    return described
        if target is not None:
            return replace(target, guess=True) if _bare_guess(target, mentioned) else target
    if words:
        scored = await _search_candidates(db, words, now)
        if not scored:
            return await _handler_target(db, words, roots, now, text)
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
    listed = [_incident_candidate(i, now, _recency(i["last_seen"], now)) for i in active]
    if len(active) == 1:
        return Target([active[0]["id"]], False, listed, active[0]["fingerprint"], active[0]["kind"], "active")
    return Target([], True, listed, via="active")


def _incident_candidate(incident: dict[str, Any], now: float, score: float) -> Candidate:
    return Candidate(
        incident["id"], _describe_incident(incident, now), score, incident["fingerprint"], incident["kind"]
    )


async def _failing_namesakes(
    db: Connection, named: list[str], kinds: Collection[str], now: float
) -> _Evidence | None:
    """Of the kinds whose names hold a named kind's name, the one failing most recently, if any."""
    names = [kind.split(":", 1)[-1].lower() for kind in named]
    holding = sorted(
        kind
        for kind in kinds
        if kind not in named
        and any(name in kind.split(":", 1)[-1].lower() for name in names if len(name) >= 4)
    )
    found = await _surface_evidence(db, holding, now)

    def latest(evidence: _Evidence) -> float:
        seen = [i["last_seen"] for i in evidence.incidents] + [bug.ts for bug in evidence.bugs]
        return max(seen, default=0.0)

    return max(found, key=latest, default=None)


def _bare_guess(target: Target, mentioned: list[tuple[str, bool]]) -> bool:
    """A named target that is only a guess: no kind named explicitly, nothing recorded failing."""
    explicit = any(is_explicit for _, is_explicit in mentioned)
    return not explicit and target.via == "named" and not target.incident_ids and target.fingerprint is None


async def _handler_target(
    db: Connection, words: list[str], roots: Sequence[Path], now: float, said: str = ""
) -> Target:
    """No recorded failure matches the words: the handler whose code says what they describe — its
    names, the text of its replies, the event it listens to, the part of the bot that behaves as they
    say (`said`) — is the target: what was recorded failing on its surface when there is something,
    else its kind."""
    if not roots:
        return Target([], False)
    ranked = await handler_words.rank_handlers(db, roots, words, said)
    if not ranked:
        return Target([], False)
    best = ranked[0]
    # Among the handlers the words lead to about as well, one with something recorded failing wins.
    close = [match.kind for match in ranked if match.score >= best.score * (1 - _WORDS_MARGIN)]
    evidenced = await _surface_evidence(db, list(dict.fromkeys(close)), now)
    if evidenced:
        return await _evidence_target(db, evidenced[0], words, now)
    listed = [
        Candidate(
            None,
            f"{match.kind} (its code matches: {', '.join(match.words[:4])})",
            match.score,
            None,
            match.kind,
        )
        for match in ranked[:_MAX_CANDIDATES]
    ]
    return Target([], False, listed, None, best.kind, "words", guess=True)


async def known_kinds_in(db: Connection, roots: Sequence[Path] = ()) -> set[str]:
    """Every kind a request can name: those that failed or had an incident, every handled kind, and
    (with `roots`, the checkouts whose code runs here) every handler their source declares."""
    found = await queries.failure_kinds(db) | await handler_queries.kinds(db)
    if roots:
        found |= {handler.kind for handler in await every_handler(db, roots)}
    return found


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
            _incident_candidate(i, now, _recency(i["last_seen"], now))
            for i in [chosen, *(i for i in incidents if i is not chosen)]
        ]
        return Target([chosen["id"]], False, listed, chosen["fingerprint"], chosen["kind"], "named")
    bug = evidence.bugs[0]
    failure = await queries.failure(db, bug.fingerprint)
    incident = await queries.incident_for_failure(db, bug.fingerprint, bug.kind)
    if incident is not None:
        candidate = Candidate(
            incident["id"], _describe_incident(incident, now), 1.0, bug.fingerprint, bug.kind
        )
        return Target([incident["id"]], False, [candidate], bug.fingerprint, bug.kind, "named")
    description = (
        _describe_failure(failure, None, now) if failure is not None else f"{bug.kind} · {bug.fingerprint}"
    )
    candidate = Candidate(None, description, 1.0, bug.fingerprint, bug.kind)
    return Target([], False, [candidate], bug.fingerprint, bug.kind, "named")


async def _named_target(
    db: Connection, named: list[tuple[str, bool]], words: list[str], now: float, *, recurs: bool = False
) -> Target | None:
    """The target of a request that names kinds, by evidence: an explicit name beats a bare word; a
    named kind with something recorded failing on its surface — an unresolved incident, failures in
    the last hours of it or of the views it showed, the checks and converters it ran — beats one with
    none; two named kinds that both have one are ambiguous, and asked about — unless the request says
    the trouble recurs (`recurs`) and one alone is an unresolved incident."""
    explicit = [kind for kind, is_explicit in named if is_explicit]
    kinds = explicit or [kind for kind, _ in named]
    evidenced = await _surface_evidence(db, kinds, now)
    if evidenced:
        targets = [await _evidence_target(db, evidence, words, now) for evidence in evidenced]
        distinct = {(tuple(t.incident_ids), t.fingerprint) for t in targets}
        if len(distinct) > 1 and recurs:
            # "broken again" about /roll and !roll: an incident is what happened before, and one still
            # open is what is happening again; a failure no incident covers yet is new, however recent,
            # and a resolved incident's failures seen since are that (a score cannot tell them apart).
            open_ones = {
                tuple(t.incident_ids): t for t, e in zip(targets, evidenced, strict=True) if e.incidents
            }
            incidents = open_ones or {tuple(t.incident_ids): t for t in targets if t.incident_ids}
            if len(incidents) == 1:
                return next(iter(incidents.values()))
        if len(distinct) > 1:
            ranked = sorted(targets, key=lambda t: -t.candidates[0].score)
            if ranked[0].candidates[0].score >= _CLEARLY_AHEAD * ranked[1].candidates[0].score:
                return ranked[0]  # "roll" is /roll and !roll: the one failing now, not last week's
            return Target([], True, [t.candidates[0] for t in ranked][:_MAX_CANDIDATES], via="named")
        return targets[0]
    failures = await queries.latest_failures_of_kinds(db, kinds[:1], limit=1)
    if not failures:
        # A command that answers wrongly or slowly has no failure: the request is about the kind.
        listed = [Candidate(None, f"{kind} (no recorded failure)", 1.0, None, kind) for kind in kinds]
        return Target([], False, listed[:_MAX_CANDIDATES], None, kinds[0], "named")
    failure = failures[0]
    incident = await queries.incident_for_failure(db, failure.fingerprint, failure.kind)
    if incident is not None:
        candidate = Candidate(
            incident["id"], _describe_incident(incident, now), 1.0, failure.fingerprint, failure.kind
        )
        return Target([incident["id"]], False, [candidate], failure.fingerprint, failure.kind, "named")
    candidate = Candidate(None, _describe_failure(failure, None, now), 1.0, failure.fingerprint, failure.kind)
    return Target([], False, [candidate], failure.fingerprint, failure.kind, "named")
