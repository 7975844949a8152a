"""Suspect functions for a fault, found and ranked deterministically from source, stacks and history.

The evidence pack (bot/improve/evidence/gather.py) collects the signals; this module turns them into a
ranked list of suspects — functions, settings classes, configuration files — each with the reasons
it is there. Candidates come from:

- the in-repo frames of the failing tracebacks (innermost first, mendbot's own recording
  wrappers left out), weighted by how many failures took that path;
- the sampled stacks of slow calls (where their time went), in full with a latency incident,
  else by how many samples there are (a host's hiccup leaves a few); time spent waiting for
  Discord to take a reply is not the code's and is left out;
- the handler of the kind the request is about, from the handler map (a fault with no
  traceback still has an entry point);
- the code that made the failing calls to another service (bot/observe/outbound.py), by how many of
  them each place made;
- following the data (bot/improve/evidence/follow.py): the frame that computed an argument the raising
  line used, the units that made the values a failing line reads (through attributes too), the
  settings and configuration read on the failing path, the functions called on the failing path,
  the units whose results make a wrong answer, calls whose exceptions are swallowed, and the
  code that wrote a stored row the failing action read.

Each candidate is then scored from: its evidence as above, recency of the last change to the lines
the bad value went through (else to its own lines and the top-level definitions it reads; git
blame), relative to the newest change among the suspects, words of the complaint in its name,
strings and identifiers, and lessons naming its file or function. Ties break on path, then
qualified name, so the same evidence always ranks the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mendbot.improve.evidence.follow import (
    Candidate,
    Pool,
    arguments_up_the_stack,
    callees,
    derive_from_line,
    from_writer,
    value_makers,
)
from mendbot.improve.evidence.source_index import ModuleIndex, terms_of
from mendbot.improve.evidence.surroundings import around_handler, pointless_statements, unawaited_coroutines

__all__ = [
    "RECORDING_WRAPPERS",
    "SEND_WRAPPER",
    "Candidate",
    "ModuleIndex",
    "Signals",
    "Writer",
    "candidates",
    "rank",
    "terms_of",
]

# mendbot's wrapper around discord.py's sends: a sampled stack ending there waits on Discord.
SEND_WRAPPER = ("bot/observe/capture.py", "sending")
# mendbot's own frames that wrap every handler: never the cause, never worth a source slot.
RECORDING_WRAPPERS = frozenset(
    {
        ("bot/runtime/recording.py", "run_event"),
        ("bot/runtime/recording.py", "_run_own_event"),
        ("bot/runtime/recording.py", "run_command"),
        ("bot/runtime/tree_recording.py", "tree_call"),
        ("bot/runtime/instrument.py", "wrapper"),
        ("bot/runtime/instrument.py", "calling"),
        ("bot/runtime/recording.py", "run_entry"),
        ("bot/runtime/recording.py", "entry_failed"),
        ("bot/runtime/hooks.py", "recorded"),
        ("bot/runtime/entry_points.py", "observed"),
        ("bot/observe/recorder.py", "action"),
        SEND_WRAPPER,
    }
)

Frames = tuple[tuple[str, int, str], ...]


@dataclass(frozen=True)
class Writer:
    """The code that wrote a stored row a failing action read (innermost frame last)."""

    frames: Frames
    share: float  # of the failures that read it
    what: str  # "the row scores/42 … (by app:score)"


@dataclass
class Signals:
    """What the evidence found, as input to the ranking."""

    tracebacks: list[tuple[tuple[tuple[str, int, str], ...], float]]  # (frames innermost last, share)
    stacks: list[tuple[tuple[tuple[str, int, str], ...], float]]  # sampled stacks (innermost last, share)
    handlers: list[tuple[str, str]]  # (path, qualname)
    complaint: set[str]  # the request's words, minus the words of the kinds it names
    lesson_files: set[str]
    lesson_text: str
    writers: list[Writer] = field(default_factory=list)
    stacks_weight: float = 1.0  # how far the stacks are evidence of slowness (0-1)
    # The code that made failing calls to another service: (frames innermost last, share, what failed).
    callers: list[tuple[Frames, float, str]] = field(default_factory=list)


def _units(frames: Frames, modules: dict[str, ModuleIndex]) -> Frames:
    """Frames with consecutive frames of one unit made one (a lambda or comprehension inside a
    function is that function; it is one step of the stack, not two)."""
    kept: list[tuple[str, int, str]] = []
    last: tuple[str, str] | None = None
    for path, line, name in frames:
        module = modules.get(path)
        unit = module.function_at(line) if module is not None else None
        key = (path, unit.qualname if unit is not None else name)
        if kept and key == last:
            kept[-1] = (path, line, name)  # the innermost line of the unit is where it failed
            continue
        kept.append((path, line, name))
        last = key
    return tuple(kept)


def _traced(signals: Signals, modules: dict[str, ModuleIndex]) -> set[tuple[str, str]]:
    """The units of the failing tracebacks' frames."""
    found: set[tuple[str, str]] = set()
    for frames, _ in signals.tracebacks:
        for path, line, _function in frames:
            module = modules.get(path)
            function = module.function_at(line) if module is not None else None
            if function is not None:
                found.add((path, function.qualname))
    return found


def candidates(signals: Signals, modules: dict[str, ModuleIndex]) -> list[Candidate]:
    """Every suspect the signals point at, before recency, complaint and lessons."""
    pool = Pool(modules)
    pool.traced = _traced(signals, modules)
    for frames, share in signals.tracebacks:
        for depth, (path, line, _function) in enumerate(reversed(_units(frames, modules))):
            candidate = pool.at(path, line)
            if candidate is None:
                continue
            where = "raised here" if depth == 0 else f"{depth} frame(s) above the raise"
            candidate.add(1.6 * share * 0.6**depth, f"in the failing traceback ({where})")
            candidate.focus.add(line)
            if depth <= 1:
                derive_from_line(pool, path, line, share * (1.0 if depth == 0 else 0.6))
            # What it called on the way also ran on the failing path: a recent change there is a suspect.
            callees(
                pool,
                path,
                candidate.qualname,
                weight=0.15 * share * 0.6**depth,
                depth=2,
                reason="called on the failing path by",
            )
        arguments_up_the_stack(pool, _units(frames, modules), share)
    for writer in signals.writers:
        from_writer(pool, writer.frames, writer.share, writer.what)
    for frames, share, what in signals.callers:
        for depth, (path, line, _function) in enumerate(reversed(_units(frames, modules))):
            candidate = pool.at(path, line)
            if candidate is None:
                continue
            where = "made" if depth == 0 else f"{depth} frame(s) above the code that made"
            candidate.add(1.6 * share * 0.6**depth, f"{where} the {what}")
            candidate.focus.add(line)
    for frames, share in signals.stacks:
        for depth, (path, line, _function) in enumerate(reversed(frames)):
            candidate = pool.at(path, line)
            if candidate is None:
                continue
            candidate.add(
                1.4 * share * signals.stacks_weight * 0.5**depth,
                f"in {share:.0%} of the slow calls' sampled stacks",
            )
            candidate.focus.add(line)
    for path, qualname in signals.handlers:
        # How its loop starts and stops, the checks before it, what made the view it belongs to.
        around_handler(pool, path, qualname, 0.5 if signals.tracebacks else 1.0)
        if signals.tracebacks:  # with a traceback, the frames say where it ran
            continue
        candidate = pool.get(path, qualname)
        if candidate is None:
            continue
        candidate.add(0.3, "handles the kind the request is about")
        callees(pool, path, qualname, weight=0.35, depth=4, reason="called by")
        # What makes the answer is a suspect whether or not the call was slow too: a busy host makes
        # any call slow, and a wrong answer is no less wrong for it.
        value_makers(pool, path, qualname, 0.4)
    unawaited_coroutines(pool)
    pointless_statements(pool)
    return list(pool.found.values())


def rank(
    found: Sequence[Candidate], signals: Signals, modules: dict[str, ModuleIndex], now: float
) -> list[Candidate]:
    """Add recency, complaint and lesson points; best first, ties by path and qualified name.

    `now` is wall-clock time: it is compared with commit times.
    """

    def change(candidate: Candidate) -> float | None:
        # The lines the bad value went through, where known, else the unit's own lines.
        return candidate.data_change if candidate.data else candidate.last_change

    changes = [c for c in (change(candidate) for candidate in found) if c is not None]
    newest = max(changes, default=None)

    def points(when: float) -> float:
        assert newest is not None
        age_days = max(0.0, now - when) / 86400
        # Relative to the newest change among the suspects: what changed last is most suspect.
        behind = max(0.0, newest - when) / 86400
        # Strong enough to lift a caller changed days ago over an innermost frame untouched for
        # months (a bad argument), not enough to lift a grand-caller over it.
        return 0.9 / (1 + behind / 3) * (1.0 if age_days <= 30 else 0.5)

    for candidate in found:
        when = change(candidate)
        if newest is not None and (when is not None or candidate.last_change is not None):
            earned = points(when) if when is not None else 0.0
            if candidate.data and candidate.last_change is not None:
                # Lines off the value's path changed too: worth half (a cosmetic edit is no cause).
                earned = max(earned, 0.5 * points(candidate.last_change))
            latest = max(w for w in (when, candidate.last_change) if w is not None)
            age_days = max(0.0, now - latest) / 86400
            candidate.bonus(earned, f"it (or a definition it reads) last changed {age_days:.0f} day(s) ago")
        module = modules[candidate.path]
        unit = module.functions[candidate.qualname]
        # A constant's text is data — the items and names a complaint echoes — not what the code says.
        matched = sorted(signals.complaint & module.words(unit)) if unit.kind != "constant" else []
        if matched:
            # A small weight: a complaint quotes what the bot said, and the code that says it is
            # often the messenger (a handler reporting "corrupt"), not the cause.
            candidate.bonus(
                0.15 * min(2, len(matched)), "matches the request's words: " + ", ".join(matched[:5])
            )
        if candidate.path in signals.lesson_files:
            candidate.bonus(0.2, "an earlier run's lesson touched this file")
            if candidate.qualname.rsplit(".", 1)[-1] in signals.lesson_text:
                candidate.bonus(0.3, "an earlier run's lesson names this function")
    return sorted(found, key=lambda c: (-round(c.score, 9), c.path, c.qualname))
