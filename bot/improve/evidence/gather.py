"""The evidence pack: what the coding agent is shown about a fault, collected without a model.

For an incident, a bare fingerprint or just a kind the request named, `build_evidence` gathers:

- the incident and a sample of its recent failing actions with their distinct tracebacks;
- for calls to another service (an `http:<service>` incident or kind, bot/observe/outbound.py): the
  recent calls to it with their status, latency, timeout and Retry-After, and the handler failures
  those calls raised (their tracebacks); the code that made the failing calls is a suspect;
- for faults with no traceback (a wrong result, a misleading message, a slow command): the
  calls the complaint means — recent actions of the kind whose invocation and reply digest
  share the complaint's words and numbers, the requester's own first (`correlate`) — and the
  slowest sampled calls with where their time went;
- the handler of the kind (the map kept from the loaded cogs);
- a ranked list of suspect functions with the reasons for each (bot/improve/evidence/localise.py:
  frame depth, slow samples, the handler, callers, initialisers and definitions found with
  `ast`, recency of change, the complaint's words and lessons; deterministic tie-breaks);
- the source of the suspects as whole functions, plus the module's top-level definitions they
  read — mendbot's own recording wrappers are never shown;
- the recent commits touching each suspect file, with their diffs, and the blame age of the
  suspects' lines;
- the lessons from earlier runs that share the fingerprint or a suspect file (recalled after
  the suspects are known, when a `recall` function is given).

The pack, and how it is written as a prompt section of at most `max_chars` characters, is
`mendbot.improve.evidence.pack`; blame and log of the suspect files come from
`mendbot.improve.evidence.history`.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from mendbot.db import actions as action_queries
from mendbot.db import handlers as handler_queries
from mendbot.db import incidents as incident_queries
from mendbot.db import search as search_queries
from mendbot.db.core import Connection
from mendbot.db.records import ActionRecord
from mendbot.improve.evidence import handler_words
from mendbot.improve.evidence.handler_scan import every_handler
from mendbot.improve.evidence.history import _GIT_TIMEOUT_S, file_history, line_times
from mendbot.improve.evidence.localise import (
    RECORDING_WRAPPERS,
    SEND_WRAPPER,
    Candidate,
    ModuleIndex,
    Signals,
    Writer,
    candidates,
    rank,
    terms_of,
)
from mendbot.improve.evidence.pack import (
    EvidencePack,
    FileHistory,
    LessonLike,
    SourceExcerpt,
    Suspect,
    Traceback,
)
from mendbot.improve.evidence.source_index import read_module
from mendbot.improve.intent import search_words
from mendbot.improve.proof.heldout import call_identity, shown_identities
from mendbot.observe.handlers import is_mendbots_own
from mendbot.observe.outbound import KIND_PREFIX

__all__ = ["Recall", "build_evidence", "correlate"]

_MAX_FAILURES = 20
_WORD_KINDS = 2  # kinds taken from the words alone, when nothing recorded names one
_MAX_LESSONS = 5
_MAX_SUSPECTS = 10
_MAX_SOURCE_FUNCTIONS = 8
_MAX_SOURCE_LINES = 120  # per function; a longer one is cut around its focus lines
_HISTORY_FILES = 4
_HISTORY_LOOKUPS = 8  # candidate files whose log is read before ranking; the best 4 are shown
_CORRELATE_WINDOW_S = 7 * 86400
# The failures that opened an incident came before it opened (a rule counts them over its window, ten
# minutes by default): an incident's failures are looked for from this long before its first sighting.
_OPENED_BY_S = 3600.0
_CORRELATE_SCAN = 500
_MAX_CALLS = 6
_MAX_OUTBOUND = 20  # recent calls to a service shown
_MAX_SLOW = 20
# Samples of slow calls without a latency incident that count in full: 100 ms of sampled time at the
# sampler's 5 ms interval (bot/observe/sampler.py), far more than a host's hiccup leaves.
_CONFIDENT_SAMPLES = 20
_IMPORT_DEPTH = 4  # modules imported by imported modules: the budget for following calls down
# Files read for one pack, at most: the named ones first, then by import depth. Each costs a path
# check and a stat even when its parse is cached; 40 keeps a large repository's pack in budget.
_MAX_MODULES = 40
_FRAME = re.compile(r"^(?P<path>.+):(?P<line>\d+):(?P<function>[^:]*)$")
_NUMBER_OR_WORD = re.compile(r"[a-z]{2,}|\d+(?:\.\d+)?")

Recall = Callable[[str | None, list[str]], Awaitable[Sequence[LessonLike]]]


def _is_sending(frame: str) -> bool:
    """The frame of mendbot's wrapper around discord.py's sends: a stack ending there waits on Discord."""
    match = _FRAME.match(frame)
    return match is not None and (match["path"], match["function"]) == SEND_WRAPPER


def _parse_frame(frame: str) -> tuple[str, int, str] | None:
    match = _FRAME.match(frame)
    if match is None:
        return None
    path, function = match["path"], match["function"]
    if (path, function) in RECORDING_WRAPPERS or path.startswith("bot/observe/"):
        return None
    return path, int(match["line"]), function


def _distinct_tracebacks(failures: list[ActionRecord], incident: dict[str, Any] | None) -> list[Traceback]:
    groups: dict[tuple[str | None, tuple[str, ...]], list[ActionRecord]] = {}
    for record in failures:  # newest first
        groups.setdefault((record.error_type, tuple(record.frames)), []).append(record)
    tracebacks = [
        Traceback(error_type, records[0].error_message, frames, records[0].fingerprint, len(records))
        for (error_type, frames), records in groups.items()
    ]
    if not tracebacks and incident is not None:  # actions pruned: the incident's sample is all there is
        sample = incident.get("sample") or {}
        frames = tuple(str(f) for f in sample.get("frames") or [])
        if frames or sample.get("error_type"):
            tracebacks.append(
                Traceback(
                    sample.get("error_type"),
                    sample.get("error_message"),
                    frames,
                    incident.get("fingerprint"),
                    int(incident.get("count") or 1),
                )
            )
    return sorted(tracebacks, key=lambda t: (-t.count, t.frames))


def _source(module: ModuleIndex | None) -> str | None:
    return "\n".join(module.lines) if module is not None else None


def _read(repo_root: Path, path: str) -> str | None:
    try:
        return (repo_root / path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _load_modules(repo_root: Path, paths: set[str]) -> dict[str, ModuleIndex]:
    """The named files and the in-repo modules they import, `_IMPORT_DEPTH` levels deep, at most
    `_MAX_MODULES` of them."""
    modules: dict[str, ModuleIndex] = {}
    frontier = sorted(paths)
    # Imports of packages that are not in the repository (discord, the standard library) are not followed.
    try:
        local = {name.removesuffix(".py") for name in os.listdir(repo_root)}
    except OSError:
        return modules
    # A `src` layout: its packages are imported by their own names.
    source_dir = repo_root / "src"
    nested = {name.removesuffix(".py") for name in os.listdir(source_dir)} if source_dir.is_dir() else set()
    for _ in range(_IMPORT_DEPTH + 1):
        following: set[str] = set()
        for path in frontier:
            if path in modules or len(modules) >= _MAX_MODULES:
                continue
            module = read_module(repo_root, path)
            if module is None:
                continue
            modules[path] = module
            for name in module.config_names:  # configuration files it names, beside it or from the root
                following.update({posixpath.normpath(posixpath.join(posixpath.dirname(path), name)), name})
            for source, member in module.imports.values():
                top = source.split(".", 1)[0]
                if top not in local and top not in nested:
                    continue
                base = source.replace(".", "/") if top in local else "src/" + source.replace(".", "/")
                following.update({f"{base}.py", f"{base}/__init__.py"})
                if member is not None:
                    following.add(f"{base}/{member}.py")
        frontier = sorted(following - set(modules))
    return modules


def correlate(
    calls: Sequence[action_queries.CallText],
    description: str,
    requester_id: int | None,
    limit: int = _MAX_CALLS,
) -> list[int]:
    """The ids of the recorded calls a complaint most likely means, best first.

    A call scores one point per complaint word or number found in its invocation or reply and
    half a point for being the requester's own; calls that share nothing are left out unless
    nothing shares anything (then the requester's newest calls, else the newest).
    """
    wanted = set(_NUMBER_OR_WORD.findall(description.lower()))
    scored = []
    for index, call in enumerate(calls):  # newest first
        shared = len(wanted & set(_NUMBER_OR_WORD.findall(call.text)))
        mine = call.user_id is not None and call.user_id == requester_id
        scored.append((shared + (0.5 if mine else 0.0), shared, index, call.id))
    matching = [item for item in scored if item[1] > 0]
    pool = matching or [item for item in scored if item[0] > 0] or scored
    pool.sort(key=lambda item: (-item[0], item[2]))
    return [call_id for *_, call_id in pool[:limit]]


def _excerpt(module: ModuleIndex, candidate: Candidate) -> SourceExcerpt:
    function = module.functions[candidate.qualname]
    start, end = function.start, function.end
    if end - start + 1 > _MAX_SOURCE_LINES:  # a long function: keep the window around its focus
        middle = min(candidate.focus) if candidate.focus else start
        start = max(function.start, middle - _MAX_SOURCE_LINES // 2)
        end = min(function.end, start + _MAX_SOURCE_LINES - 1)
    definitions = "\n".join(
        module.source(node.lineno, min(node.end_lineno or node.lineno, node.lineno + 5))
        for node in module.definitions_used(function)
    )
    return SourceExcerpt(
        module.path,
        start,
        end,
        tuple(sorted(candidate.focus)),
        (candidate.qualname,),
        module.source(start, end, candidate.focus),
        definitions,
    )


def _matching_lessons(
    lessons: Sequence[LessonLike], fingerprints: set[str], files: Sequence[str]
) -> list[LessonLike]:
    scored = []
    for lesson in lessons:
        shared = [f for f in files if f in set(lesson.files)]
        score = (3 if lesson.fingerprint and lesson.fingerprint in fingerprints else 0) + len(shared)
        if score:
            scored.append((score, lesson.run_id or 0, lesson))
    scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [lesson for _, _, lesson in scored[:_MAX_LESSONS]]


def _frames_of(values: Sequence[str]) -> tuple[tuple[str, int, str], ...]:
    return tuple(p for p in (_parse_frame(f) for f in values) if p is not None)


def _fingerprints(
    tracebacks: list[Traceback], incident: dict[str, Any] | None, fingerprint: str | None
) -> set[str]:
    found = {t.fingerprint for t in tracebacks if t.fingerprint}
    if incident is not None and incident.get("fingerprint"):
        found.add(incident["fingerprint"])
    if fingerprint is not None:
        found.add(fingerprint)
    return found


def _writers(failures: Sequence[ActionRecord]) -> list[Writer]:
    """The code that wrote the stored rows the failing actions read (`extra["read_rows"]`), each
    weighted by the share of failures that read a row it wrote."""
    counts: Counter[tuple[tuple[tuple[str, int, str], ...], str]] = Counter()
    for record in failures:
        seen = set()
        for read in (record.extra or {}).get("read_rows") or []:
            if not isinstance(read, dict):
                continue
            frames = _frames_of([str(f) for f in read.get("writer") or []])
            if not frames or frames in seen:
                continue
            seen.add(frames)
            what = (
                f"the stored row {read.get('table')}/{read.get('row')} the failing action read"
                f" (written by {read.get('written_by') or 'an unknown action'})"
            )
            counts[(frames, what)] += 1
    total = len(failures) or 1
    return [Writer(frames, count / total, what) for (frames, what), count in sorted(counts.items())]


def _callers(outbound: Sequence[ActionRecord]) -> list[tuple[tuple[tuple[str, int, str], ...], float, str]]:
    """The code that made the failing calls to a service, each place weighted by its share of them."""
    counts: Counter[tuple[tuple[str, int, str], ...]] = Counter()
    failed = [record for record in outbound if not record.ok]
    for record in failed:
        frames = _frames_of(record.frames)
        if frames:
            counts[frames] += 1
    what = f"failing calls to {failed[0].kind.removeprefix(KIND_PREFIX)}" if failed else ""
    return [(frames, count / len(failed), what) for frames, count in sorted(counts.items())]


async def _raised_through(
    db: Connection, outbound: Sequence[ActionRecord], service: str, since: float
) -> list[ActionRecord]:
    """The handler failures the failing calls to `service` raised (`extra.outbound`), newest first."""
    found: list[ActionRecord] = []
    for kind in dict.fromkeys(str(r.extra["command"]) for r in outbound if r.extra.get("command")):
        recent = await action_queries.recent_failures(
            db, kind=kind, fingerprint=None, since=since, limit=_MAX_FAILURES
        )
        found += [record for record in recent if record.extra.get("outbound") == service]
    found.sort(key=lambda record: record.ts, reverse=True)
    return found[:_MAX_FAILURES]


async def _rank_suspects(
    repo_root: Path,
    *,
    failures: Sequence[ActionRecord],
    outbound: Sequence[ActionRecord],
    calls: Sequence[ActionRecord],
    tracebacks: list[Traceback],
    slow: list[ActionRecord],
    handlers: list[handler_queries.HandlerLocation],
    description: str,
    fingerprints: set[str],
    lessons: Sequence[LessonLike],
    recall: Recall | None,
    git_timeout_s: float,
    latency_incident: bool,
    showing: Sequence[str] = (),
) -> tuple[list[Suspect], list[Candidate], dict[str, ModuleIndex], list[LessonLike], list[FileHistory]]:
    """The ranked suspects, with the candidates, parsed modules, lessons and file histories behind them."""
    total = sum(t.count for t in tracebacks) or 1
    traced = [(_frames_of(t.frames), t.count / total) for t in tracebacks]
    stack_counts: Counter[tuple[tuple[str, int, str], ...]] = Counter()
    for record in slow:
        for sample in record.samples or []:
            frames = [str(f) for f in sample.get("frames") or []]
            if frames and _is_sending(frames[-1]):
                continue  # waiting for Discord to take a reply: its time, not the code's
            stack_counts[_frames_of(frames)] += int(sample.get("count") or 0)
    sampled = sum(stack_counts.values())
    signals = Signals(
        tracebacks=[(frames, share) for frames, share in traced if frames],
        stacks=[(frames, count / (sampled or 1)) for frames, count in sorted(stack_counts.items()) if frames],
        # A latency incident is the detector's word that these calls are slow; without one, a few
        # samples are a call a busy host or a pause happened to hold up, worth as little as they are.
        stacks_weight=1.0 if latency_incident else min(1.0, sampled / _CONFIDENT_SAMPLES),
        handlers=[(h.path, h.qualname) for h in handlers],
        # The words of the kinds it names, and the words it quotes from the bot's replies, say what
        # was shown, not where it was made; "the", "and" say nothing.
        complaint=terms_of(" ".join(search_words(description)))
        - {w for h in handlers for w in terms_of(h.kind.split(":", 1)[-1])}
        - {w for record in calls for w in terms_of(str((record.reply or {}).get("text") or ""))},
        lesson_files=set(),
        lesson_text="",
    )
    signals.writers = _writers(failures)
    signals.callers = _callers(outbound)
    paths = {p for frames, _ in [*signals.tracebacks, *signals.stacks] for p, _, _ in frames}
    paths |= {p for writer in signals.writers for p, _, _ in writer.frames}
    paths |= {p for frames, _, _ in signals.callers for p, _, _ in frames}
    paths |= {path for path, _ in signals.handlers}
    modules = _load_modules(repo_root, paths | set(showing))
    found = candidates(signals, modules)
    files = sorted({c.path for c in found})
    pool = list(lessons)
    if recall is not None:
        recalled = await recall(min(fingerprints, default=None), files)
        pool += [lesson for lesson in recalled if lesson not in pool]
    matched = _matching_lessons(pool, fingerprints, files)
    signals.lesson_files = {f for lesson in matched for f in lesson.files}
    signals.lesson_text = "\n".join(lesson.root_cause or "" for lesson in matched)
    # Blame and log of every candidate file at once: each is a git process, and waiting for the
    # ranking before asking for the logs would double the wall time.
    logged = files[:_HISTORY_LOOKUPS]
    blames, texts = await asyncio.gather(
        asyncio.gather(*(line_times(repo_root, path, timeout_s=git_timeout_s) for path in files)),
        asyncio.gather(*(file_history(repo_root, path, timeout_s=git_timeout_s) for path in logged)),
    )
    by_file = dict(zip(files, blames, strict=True))
    logs = dict(zip(logged, texts, strict=True))
    for candidate in found:
        # Its own lines and the top-level definitions it reads: a constant changed 40 lines up
        # changes what the function does.
        times = by_file.get(candidate.path) or []
        module = modules[candidate.path]
        spans = [(candidate.start, candidate.end)]
        spans += module.definition_lines(module.functions[candidate.qualname])
        window = [t for start, end in spans for t in times[start - 1 : end]]
        candidate.last_change = max(window) if window else None
        data = [times[line - 1] for line in candidate.data if 0 < line <= len(times)]
        candidate.data_change = max(data) if data else None
    # Commit times are wall-clock facts: their age is measured from the wall clock, not from the
    # bot's clock (which a test or the playground may have moved).
    wall = time.time()
    ranked = rank(found, signals, modules, wall)
    theirs = [c for c in ranked if not is_mendbots_own(c.path, _source(modules.get(c.path)))]
    ranked = (theirs or ranked)[:_MAX_SUSPECTS]
    suspects = [
        Suspect(
            c.path,
            c.qualname,
            round(c.score, 3),
            tuple(c.reasons),
            round((wall - c.last_change) / 86400, 1) if c.last_change else None,
        )
        for c in ranked
    ]
    history_files = list(dict.fromkeys(c.path for c in ranked))[:_HISTORY_FILES]
    histories = [FileHistory(p, logs[p]) for p in history_files if logs.get(p)]
    return suspects, ranked, modules, matched, histories


async def build_evidence(
    db: Connection,
    repo_root: Path,
    *,
    incident_id: int | None,
    description: str,
    lessons: Sequence[LessonLike] = (),
    recall: Recall | None = None,
    max_chars: int = 24000,
    fingerprint: str | None = None,
    kind: str | None = None,
    requester_id: int | None = None,
    now: float | None = None,
    git_timeout_s: float = _GIT_TIMEOUT_S,
) -> EvidencePack:
    """Collect the evidence for an incident, a bare fingerprint, a named kind, or only a description."""
    now = time.time() if now is None else now
    incident = await incident_queries.by_id(db, incident_id) if incident_id is not None else None
    if incident is None and fingerprint is not None:
        failure = await search_queries.failure(db, fingerprint)
        if failure is not None:
            kind = kind or failure.kind
            incident = await search_queries.incident_for_failure(db, failure.fingerprint, failure.kind)
            if incident is not None and incident.get("fingerprint") not in (None, fingerprint):
                incident = None
    failures: list[ActionRecord] = []
    if incident is not None:
        failures = await action_queries.recent_failures(
            db,
            kind=incident["kind"],
            fingerprint=incident["fingerprint"] or fingerprint,
            since=incident["first_seen"] - _OPENED_BY_S,
            limit=_MAX_FAILURES,
        )
    elif fingerprint is not None:
        failures = await action_queries.recent_failures(
            db, kind=None, fingerprint=fingerprint, since=0.0, limit=_MAX_FAILURES
        )
    # Calls to another service: the calls themselves are shown apart (`outbound`); the failures are the
    # handlers' that those calls raised, whose tracebacks go through the bot's code.
    service_kind = next(
        (k for k in (incident["kind"] if incident else None, kind) if k and k.startswith(KIND_PREFIX)), None
    )
    outbound: list[ActionRecord] = []
    if service_kind is not None:
        opened = incident["first_seen"] - _OPENED_BY_S if incident else now - _CORRELATE_WINDOW_S
        outbound = await action_queries.recent_of_kind(db, service_kind, since=opened, limit=_MAX_OUTBOUND)
        service = service_kind.removeprefix(KIND_PREFIX)
        failures = await _raised_through(db, outbound, service, opened)
    # The agent sees the older half of the distinct failing calls; the rest are held out for the proof.
    shown_calls = shown_identities((r.ts, r.kind, r.invocation) for r in failures)
    failures = [r for r in failures if call_identity(r.kind, r.invocation) in shown_calls or not r.invocation]
    kinds = list(dict.fromkeys(k for k in (incident["kind"] if incident else None, kind) if k))
    kinds += [r.kind for r in failures if r.kind not in kinds]
    tracebacks = _distinct_tracebacks(failures, incident)
    if not kinds and not tracebacks and description.strip():
        # Nothing recorded to start from: the handlers whose code says what the request describes.
        matches = await handler_words.rank_handlers(db, [repo_root], search_words(description), description)
        kinds = list(dict.fromkeys(match.kind for match in matches[:_WORD_KINDS]))
    since = min(incident["first_seen"] if incident else now, now - _CORRELATE_WINDOW_S)
    calls: list[ActionRecord] = []
    slow: list[ActionRecord] = []
    if kinds and not tracebacks:  # no traceback: the calls the complaint means, and where time went
        recent = await action_queries.recent_calls(db, kinds, since=since, limit=_CORRELATE_SCAN)
        calls = await action_queries.by_ids(db, correlate(recent, description, requester_id))
    latency_incident = incident is not None and "latency" in (incident.get("rules") or [])
    if kinds and (not tracebacks or latency_incident):
        slow = await action_queries.slowest_sampled(db, kinds, since=since, limit=_MAX_SLOW)
    # The running map's handlers of the kinds, and what the source declares (a view's button, a modal).
    known = await every_handler(db, [repo_root]) if kinds else []
    handlers = [h for h in known if h.kind in kinds]
    # A view's or modal's calls say which command showed it: that command's file made what it holds.
    surfaces = {str(shown) for r in [*failures, *calls] if (shown := (r.invocation or {}).get("surface"))}
    showing = sorted({h.path for h in known if h.kind in surfaces})
    # mendbot's own cogs listen to the same events as the cogs they look after: never their suspects.
    theirs = [
        handler for handler in handlers if not is_mendbots_own(handler.path, _read(repo_root, handler.path))
    ]
    handlers = theirs or handlers

    suspects, ranked, modules, matched_lessons, histories = await _rank_suspects(
        repo_root,
        failures=failures,
        outbound=outbound,
        calls=calls,
        tracebacks=tracebacks,
        slow=slow,
        handlers=handlers,
        description=description,
        fingerprints=_fingerprints(tracebacks, incident, fingerprint),
        lessons=lessons,
        recall=recall,
        git_timeout_s=git_timeout_s,
        latency_incident=latency_incident,
        showing=showing,
    )
    excerpts = [_excerpt(modules[c.path], c) for c in ranked[:_MAX_SOURCE_FUNCTIONS]]
    return EvidencePack(
        description=description,
        incidents=[incident] if incident is not None else [],
        failures=failures,
        tracebacks=tracebacks,
        excerpts=excerpts,
        lessons=matched_lessons,
        suspects=suspects,
        calls=calls,
        slow=slow,
        outbound=outbound,
        histories=histories,
        kinds=kinds,
        handlers=handlers,
        max_chars=max_chars,
        shown_calls=shown_calls,
    )
