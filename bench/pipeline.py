"""Improvement-pipeline benchmark: what building evidence and resolving "this" cost.

Prints one `name value unit` line per figure (diagnostics go to stderr):

- `evidence_ms`: `build_evidence` + `EvidencePack.render()` for the /roll incident of the corpus
  below, with this repository as the source root (so the excerpts are real files and `git log
  -L` runs on real history) and a few lessons to match. Median of 20 runs.
- `proof_overhead_s`: the extra wall time the proof of fix (`mendbot.improve.proof.verdict`) adds to a run
whose   checks are trivial: a one-file regression test and the replay — four recorded crashes (two shown to
  the agent, two held out), their neighbours and three recorded calls that worked (probed and with
  neighbours of their own) — on the base and on the branch, in the sandbox (target ≤ 10 s on a 2-core
  machine). Median of 3; stderr says how many items of each role the proof had.
- `correlate_ms`: from words to the stored failures they mean: `resolve_target` for the
  complaint "the roll command is broken again" (a named command) and for the free text "zero
  division when rolling dice" (FTS5 search with recency), then the newest failing actions of
  what it resolved to read from the 1,000,000 action rows (`recent_failures`, as the evidence
  pack does), median of 20 runs each; the figure is the slower of the two medians. Both must
  resolve to the /roll incident and find its ZeroDivisionError rows, or the bench fails.

The corpus is built once in a temp dir: 1,000,000 `actions` rows over seven days (~5%
failures spread over 200 distinct fingerprints on 15 kinds, frames pointing at real functions
of this repository), inserted with one `executemany` in one transaction; the `fingerprints`
rows that insert would have produced; and 45 incidents (open, acknowledged and resolved, a few
kind-wide). A /roll ZeroDivisionError storm in the last hour is the target; a resolved
`task:stats` "float division by zero" from yesterday is the nearest distractor.

Each figure is a `Figure(name, unit, measure)` in `FIGURES`; `measure` gets the shared
`BenchContext` (temp dir, corpus built on first use), so a figure that needs neither just
ignores it. Run from the repo root: `.venv/bin/python bench/pipeline.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sizes import sized  # bench/, the script's directory: before anything reads sys.argv

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ["MENDBOT_CONFIG"] = os.devnull
for _name in ("DISCORD_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GITHUB_TOKEN"):
    os.environ.pop(_name, None)

import aiosqlite  # noqa: E402

from mendbot.db import actions as action_queries  # noqa: E402
from mendbot.db import incidents as incident_queries  # noqa: E402
from mendbot.db.connection import open_database  # noqa: E402
from mendbot.improve.evidence.gather import build_evidence  # noqa: E402
from mendbot.improve.evidence.target import resolve_target  # noqa: E402
from mendbot.improve.memory import Lesson  # noqa: E402
from mendbot.kernel.log import configure_logging  # noqa: E402
from mendbot.trust.redact import Redactor  # noqa: E402

ACTIONS = sized(1_000_000, 20_000)
FINGERPRINTS = 200
FAILURE_SHARE = 0.05
DAYS = 7
RUNS = sized(20, 1)
SEED = 20261121
COMPLAINT = "the roll command is broken again"
FREE_TEXT = "zero division when rolling dice"

_KINDS: list[tuple[str, str, float, float]] = [  # kind, source, weight, typical duration ms
    ("listener:on_message", "Chat", 30.0, 1.5),
    ("chat:reply", "chat", 12.0, 900.0),
    ("command:roll", "Dice", 15.0, 3.0),
    ("app:roll", "Dice", 6.0, 4.0),
    ("command:remind", "Reminders", 6.0, 6.0),
    ("task:reminders", "Reminders", 8.0, 2.0),
    ("command:ping", "Meta", 4.0, 1.0),
    ("command:help", "Meta", 3.0, 2.0),
    ("app:incidents", "Incidents", 2.0, 12.0),
    ("app:runs", "Improve", 1.0, 10.0),
    ("app:fix", "Improve", 0.5, 25.0),
    ("listener:on_member_join", "Welcome", 2.0, 5.0),
    ("task:audit", "Audit", 3.0, 40.0),
    ("task:stats", "Stats", 3.0, 15.0),
    ("command:stats", "Stats", 3.5, 8.0),
]
_ERRORS: list[tuple[str, str]] = [
    ("KeyError", "'{word}'"),
    ("ValueError", "invalid literal for int() with base 10: '{word}'"),
    ("AttributeError", "'NoneType' object has no attribute '{word}'"),
    ("TypeError", "unsupported operand type(s) for +: 'int' and '{word}'"),
    ("discord.errors.Forbidden", "403 Forbidden (error code: 50013): Missing Permissions"),
    ("TimeoutError", "the model request timed out after {n} s"),
    ("IndexError", "list index out of range"),
    ("sqlite3.OperationalError", "database is locked"),
    ("RuntimeError", "Session is closed"),
    ("aiohttp.ClientConnectorError", "Cannot connect to host {word}.example:443"),
    ("json.JSONDecodeError", "Expecting value: line {n} column 1 (char 0)"),
    ("PermissionError", "[Errno 13] Permission denied: 'data/{word}'"),
    ("discord.errors.NotFound", "404 Not Found (error code: 10008): Unknown Message"),
    ("ConnectionResetError", "Connection reset by peer"),
]
_WORDS = ["channel", "guild", "member", "reminder", "notation", "prompt", "user", "token", "budget", "state"]


@dataclass(frozen=True)
class Failure:
    fingerprint: str
    kind: str
    source: str
    error_type: str
    message: str
    frames: list[str]
    start: float  # failures of this fingerprint happen in [start, end]
    end: float
    weight: float


@dataclass
class Corpus:
    db: aiosqlite.Connection
    now: float
    roll_incident_id: int
    lessons: list[Lesson]


@dataclass
class BenchContext:
    tmp: Path
    _corpus: Corpus | None = field(default=None, init=False)

    async def corpus(self) -> Corpus:
        if self._corpus is None:
            self._corpus = await _build_corpus(self.tmp / "corpus.db")
        return self._corpus

    async def close(self) -> None:
        if self._corpus is not None:
            await self._corpus.db.close()


@dataclass(frozen=True)
class Figure:
    name: str
    unit: str
    measure: Callable[[BenchContext], Awaitable[float]]
    digits: int = 1


def _note(text: str) -> None:
    print(text, file=sys.stderr)


# -- the corpus ----------------------------------------------------------------------------------------


def _functions() -> list[tuple[str, int, str]]:
    """(path, line, function) of real functions in this repository, a line into each body."""
    found = []
    for path in sorted([*REPO.glob("bot/**/*.py"), *REPO.glob("cogs/*.py")]):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            match = re.match(r"\s*(?:async\s+)?def (\w+)", line)
            if match:
                found.append((path.relative_to(REPO).as_posix(), min(number + 2, len(lines)), match.group(1)))
    return found


def _frame_at(path: str, marker: str, function: str) -> str:
    lines = (REPO / path).read_text(encoding="utf-8").splitlines()
    number = next((n for n, line in enumerate(lines, 1) if marker in line), 1)
    return f"{path}:{number}:{function}"


def _failures(rng: random.Random, now: float) -> list[Failure]:
    functions = _functions()
    # The frames are real functions of this tree, drawn from a generator of their own: how many there
    # are changes with every commit, and drawing them from `rng` made the rest of the corpus (which
    # incidents are open, of which kinds) change with it — an unrelated change could make the complaint
    # below ambiguous.
    picks = random.Random(SEED + 1)
    sources = {kind: source for kind, source, _, _ in _KINDS}
    # The target: /roll failing with ZeroDivisionError over the last hour, often.
    roll = Failure(
        "roll-zero-division",
        "command:roll",
        "Dice",
        "ZeroDivisionError",
        "integer division or modulo by zero",
        [
            _frame_at("cogs/dice.py", "result = dice.roll(", "roll"),
            _frame_at("bot/features/dice.py", "def roll(", "roll"),
        ],
        now - 3600,
        now - 5,
        40.0,
    )
    # The distractor: another division by zero, yesterday, elsewhere.
    stats = Failure(
        "stats-zero-division",
        "task:stats",
        "Stats",
        "ZeroDivisionError",
        "float division by zero",
        [f"{p}:{n}:{f}" for p, n, f in picks.sample(functions, 2)],
        now - 30 * 3600,
        now - 26 * 3600,
        10.0,
    )
    failures = [roll, stats]
    kinds = [kind for kind, _, _, _ in _KINDS]
    while len(failures) < FINGERPRINTS:
        kind = rng.choice(kinds)
        error_type, template = rng.choice(_ERRORS)
        message = template.format(word=rng.choice(_WORDS), n=rng.randrange(1, 120))
        frames = [f"{p}:{n}:{f}" for p, n, f in picks.sample(functions, rng.randint(1, 4))]
        start = now - rng.uniform(0, DAYS * 86400)
        end = min(now, start + rng.uniform(600, 2 * 86400))
        failures.append(
            Failure(
                f"{len(failures):016x}",
                kind,
                sources[kind],
                error_type,
                message,
                frames,
                start,
                end,
                rng.paretovariate(1.2),
            )
        )
    return failures


def _rows(rng: random.Random, now: float, failures: list[Failure]) -> list[tuple[Any, ...]]:
    kinds = [(kind, source, duration) for kind, source, _, duration in _KINDS]
    weights = [weight for _, _, weight, _ in _KINDS]
    failure_weights = [failure.weight for failure in failures]
    rows: list[tuple[Any, ...]] = []
    extra = json.dumps({"via": "slash"})
    for _ in range(ACTIONS):
        user = rng.randrange(1000, 1400)
        if rng.random() < FAILURE_SHARE:
            failure = rng.choices(failures, failure_weights)[0]
            ts = rng.uniform(failure.start, failure.end)
            frames = json.dumps(failure.frames)
            rows.append(
                (ts, failure.kind, failure.source, 0, rng.uniform(1, 50), 1, 2, user, None, 0.0,
                 failure.error_type, failure.message, failure.fingerprint, frames, None, extra)
            )  # fmt: skip
        else:
            kind, source, duration = rng.choices(kinds, weights)[0]
            ts = now - rng.uniform(0, DAYS * 86400)
            rows.append(
                (ts, kind, source, 1, rng.expovariate(1 / duration), 1, 2, user, None, 0.0,
                 None, None, None, None, None, None)
            )  # fmt: skip
    rows.sort(key=lambda row: row[0])
    return rows


async def _build_corpus(path: Path) -> Corpus:
    started = time.perf_counter()
    rng = random.Random(SEED)
    now = time.time()
    failures = _failures(rng, now)
    rows = _rows(rng, now, failures)
    _note(f"generated {len(rows):,} actions in {time.perf_counter() - started:.1f} s")
    db = await open_database(path)
    await db.execute("BEGIN")
    await db.executemany(
        "INSERT INTO actions (ts, kind, source, ok, duration_ms, guild_id, channel_id, user_id, message_id,"
        " cost_usd, error_type, error_message, fingerprint, frames, run_id, extra)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    seen: dict[str, list[float]] = {}
    for row in rows:
        if row[12] is not None:
            seen.setdefault(row[12], []).append(row[0])
    by_print = {failure.fingerprint: failure for failure in failures}
    await db.executemany(
        "INSERT INTO fingerprints (fingerprint, kind, error_type, first_seen, last_seen, count)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (fp, by_print[fp].kind, by_print[fp].error_type, min(times), max(times), len(times))
            for fp, times in seen.items()
        ],
    )
    await db.execute("COMMIT")
    del rows
    roll_incident_id = 0
    states = ["open", "acknowledged", "resolved", "resolved", "resolved"]
    chosen = [f for f in failures[:2]] + rng.sample([f for f in failures[2:] if f.fingerprint in seen], 38)
    for n, failure in enumerate(chosen):
        times = seen[failure.fingerprint]
        state = "open" if n == 0 else "resolved" if n == 1 else rng.choice(states)
        incident_id = await incident_queries.insert(
            db,
            {
                "rule": "repeat",
                "rules": ["repeat", "new_fingerprint"],
                "level": "error",
                "kind": failure.kind,
                "fingerprint": failure.fingerprint,
                "state": state,
                "summary": f"the same {failure.error_type} {len(times)} times in 10 min",
                "first_seen": min(times),
                "last_seen": max(times),
                "count": len(times),
                "user_ids": list(range(1000, 1000 + min(len(times), 40))),
                "sample": {
                    "kind": failure.kind,
                    "error_type": failure.error_type,
                    "error_message": failure.message,
                    "frames": failure.frames[-3:],
                },
                "updated_at": max(times),
                "closed_at": max(times) + 600 if state == "resolved" else None,
            },
        )
        if n == 0:
            roll_incident_id = incident_id
    for kind, source, _, _ in rng.sample(_KINDS, 5):  # kind-wide error-rate incidents
        await incident_queries.insert(
            db,
            {
                "rule": "error_rate",
                "rules": ["error_rate"],
                "level": "warning",
                "kind": kind,
                "fingerprint": None,
                "state": "resolved",
                "summary": f"{kind} failing 34% of the time (41 of 120 in 10 min) in {source}",
                "first_seen": now - rng.uniform(2, 6) * 86400,
                "last_seen": now - rng.uniform(1, 2) * 86400,
                "count": 41,
                "user_ids": [1001, 1002],
                "sample": {"kind": kind, "error_type": "RuntimeError", "error_message": "Session is closed"},
                "updated_at": now - 86400,
                "closed_at": now - 86400,
            },
        )
    lessons = [
        Lesson(
            run_id=n,
            fingerprint="roll-zero-division" if n == 7 else f"{n:016x}",
            files=["cogs/dice.py"] if n % 3 == 0 else ["bot/chat/service.py"],
            root_cause=f"root cause of run {n}",
            fix_commit=f"{n:07x}",
            outcome="resolved",
        )
        for n in range(1, 13)
    ]
    async with db.execute("SELECT count(*) FROM actions") as cursor:
        stored = await cursor.fetchone()
    assert stored is not None and stored[0] == ACTIONS
    _note(
        f"corpus ready: {ACTIONS:,} actions, {len(seen)} fingerprints"
        f" in {time.perf_counter() - started:.1f} s"
    )
    return Corpus(db, now, roll_incident_id, lessons)


# -- figures -------------------------------------------------------------------------------------------


async def _median_ms(run: Callable[[], Awaitable[object]], runs: int = RUNS) -> float:
    await run()  # warm the page cache and statement cache once
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def evidence_ms(context: BenchContext) -> float:
    corpus = await context.corpus()

    async def run() -> str:
        pack = await build_evidence(
            corpus.db,
            REPO,
            incident_id=corpus.roll_incident_id,
            description=COMPLAINT,
            lessons=corpus.lessons,
        )
        return pack.render()

    text = await run()
    if "dice.roll(" not in text or "run 7" not in text:
        raise AssertionError("the evidence pack lacks the /roll source or the matching lesson")
    _note(f"evidence pack: {len(text):,} characters")
    return await _median_ms(run)


async def correlate_ms(context: BenchContext) -> float:
    corpus = await context.corpus()
    medians = []
    for text in (COMPLAINT, FREE_TEXT):

        async def run(text: str = text) -> tuple[Any, list[Any]]:
            target = await resolve_target(corpus.db, text, replied_incident_id=None, now=corpus.now)
            rows = await action_queries.recent_failures(
                corpus.db, kind=target.kind, fingerprint=target.fingerprint, since=corpus.now - 86400
            )
            return target, rows

        target, rows = await run()
        if target.incident_ids != [corpus.roll_incident_id]:
            raise AssertionError(f"{text!r} resolved to {target}, not the /roll incident")
        if not rows or any(r.kind != "command:roll" or r.error_type != "ZeroDivisionError" for r in rows):
            raise AssertionError(f"{text!r} found {rows[:1]} among the actions, not the /roll failures")
        median = await _median_ms(run)
        _note(f"resolve_target({text!r}) via {target.via}: median {median:.2f} ms")
        medians.append(median)
    return max(medians)


PIPELINE_RUNS = sized(3, 1)


async def pipeline_overhead_s(context: BenchContext) -> float:
    """Request to proposal, the model double answering at once and a trivial check (`python -c pass`):
    what the pipeline itself costs — evidence, three CLI sessions, git, the smoke load, the forge."""
    from mendbot.runtime.services import build_services
    from tests.harness.discord import make_settings
    from tests.harness.model_double import ModelDouble, text, tool_use
    from tests.harness.repo import copy_of_bot

    os.environ["MENDBOT_CONFIG"] = os.devnull
    seconds = []
    for index in range(PIPELINE_RUNS):
        base = context.tmp / f"pipeline-{index}"
        repo = copy_of_bot(base / "repo")
        async with ModelDouble() as model:
            settings = make_settings(
                base / "data",
                repo_dir=repo,
                anthropic_api_key="bench-key",
                anthropic_base_url=model.base_url,
                improve={"checks": ["python -c pass"], "max_attempts": 1},
            )
            target = settings.data_dir.resolve() / "worktrees" / "run-1" / "cogs" / "dice.py"
            model.script(
                text('```json\n{"root_cause": "a typo", "files": ["cogs/dice.py"]}\n```'),
                text('```json\n{"files": ["cogs/dice.py"], "changes": [], "risk": "low"}\n```'),
                tool_use(
                    "Edit",
                    {
                        "file_path": str(target),
                        "old_string": "Roll dice written like",
                        "new_string": "Roll the dice written like",
                    },
                ),
                text("done"),
            )
            services = await build_services(settings, watch_prompts=False)
            try:
                started = time.perf_counter()
                run = await services.improve.request(
                    kind="fix",
                    requester_id=1,
                    channel_id=None,
                    incident_id=None,
                    description="fix the docstring",
                )
                await services.improve.quiesce()
                seconds.append(time.perf_counter() - started)
                state = (await services.improve.runs.get(run.id)).state
                if state != "awaiting_approval":
                    raise AssertionError(f"run ended {state}, not awaiting_approval")
            finally:
                await services.aclose()
    _note(f"pipeline runs: {', '.join(f'{s:.2f} s' for s in seconds)}")
    return statistics.median(seconds)


PROOF_RUNS = sized(3, 1)
_SEEDED_BUG = "def _scale(sides: int) -> int:\n    return 60 // (sides - 6)\n\n\nclass Dice(commands.Cog):"
_REGRESSION_TEST = (
    '"""Six-sided dice must not crash."""\n\nfrom cogs.dice import _scale\n\n\n'
    "def test_six_sided_scale() -> None:\n    assert _scale(6) > 0\n"
)


def _seed_dice_bug(repo: Path) -> None:
    from tests.harness.repo import git

    dice = repo / "cogs" / "dice.py"
    source = dice.read_text().replace("class Dice(commands.Cog):", _SEEDED_BUG)
    source = source.replace(
        "        result = dice.roll(dice.parse(notation))\n",
        "        result = dice.roll(dice.parse(notation))\n        _scale(result.spec.sides)\n",
    )
    dice.write_text(source)
    git(repo, "commit", "-qam", "seed a bug in /roll")


async def proof_overhead_s(context: BenchContext) -> float:
    """The extra wall time the proof of fix adds to a run whose checks are trivial: the regression test
    (one small pytest file) and the replay of what a real incident leaves — four recorded `!roll` crashes
    (the older two shown to the agent, two held out), neighbours of them (other values, other callers) and
    three recorded rolls that worked — each on the base (a fresh copy of its tree with only the test
    added) and on the branch (a fresh copy of the commit), all in the sandbox: `Prover.prove` from the
    committed fix to the stored proof. Median of 3."""
    from mendbot.db.handlers import HandlerLocation, replace_cog
    from mendbot.improve.proof.heldout import shown_identities
    from mendbot.runtime.services import build_services
    from tests.harness.discord import make_settings
    from tests.harness.repo import copy_of_bot
    from tests.harness.sql import sql

    seconds = []
    roles: dict[str, int] = {}
    for index in range(PROOF_RUNS):
        base = context.tmp / f"proof-{index}"
        repo = copy_of_bot(base / "repo")
        _seed_dice_bug(repo)
        settings = make_settings(base / "data", repo_dir=repo, improve={"checks": ["python -c pass"]})
        services = await build_services(settings, watch_prompts=False)
        try:
            db, improve = services.db, services.improve
            lines = (repo / "cogs" / "dice.py").read_text().splitlines()
            line = next(n for n, text in enumerate(lines, 1) if "return 60 // (sides - 6)" in text)
            failed: list[tuple[float, str, dict[str, Any] | None]] = []
            now = time.time()
            calls = [("!roll 2d8", True), ("!roll 1d20", True), ("!roll 3d4", True)]
            calls += [(f"!roll {n}d6", False) for n in (2, 3, 1, 5)]
            # As the recorder keeps a call now: who made it and where (the proof varies the caller too).
            caller = {
                "user": 1456074443980800007,
                "roles": [],
                "channel": 1456074443980800006,
                "guild": 1456074443980800002,
            }
            for number, (text, ok) in enumerate(calls):
                invocation = {"name": "!roll", "options": {"text": text}, "caller": caller}
                await sql(
                    db,
                    "INSERT INTO actions (ts, kind, source, ok, duration_ms, error_type, error_message,"
                    " fingerprint, frames, invocation, reply) VALUES (:ts, 'command:roll', 'Dice', :ok, 2.0,"
                    " :error, :message, :fingerprint, :frames, :invocation, :reply)",
                    ts=now - 100 + number,
                    ok=int(ok),
                    error=None if ok else "ZeroDivisionError",
                    message=None if ok else "integer division or modulo by zero",
                    fingerprint=None if ok else "bench",
                    frames=None if ok else json.dumps([f"cogs/dice.py:{line}:_scale"]),
                    invocation=json.dumps(invocation),
                    reply=json.dumps({"text": f"🎲 `{text.split()[1]}` → 7"}) if ok else None,
                )
                if not ok:
                    failed.append((now - 100 + number, "command:roll", invocation))
            await replace_cog(
                db, "Dice", [HandlerLocation("command:roll", "cogs/dice.py", "Dice.roll", 15, "Dice")], 0
            )
            worktree = await improve.workspace.create(1, "bench")
            dice = worktree.path / "cogs" / "dice.py"
            dice.write_text(dice.read_text().replace("60 // (sides - 6)", "60 // max(1, abs(sides - 6))"))
            (worktree.path / "tests" / "test_dice_regression.py").write_text(_REGRESSION_TEST)
            head = await improve.workspace.commit(worktree, "fix", 1)
            started = time.perf_counter()
            proof = await improve.prover.prove(
                run_id=1,
                base_sha=worktree.base_sha,
                sha=head,
                fingerprint="bench",
                kind=None,
                shown=shown_identities(failed),
            )
            seconds.append(time.perf_counter() - started)
            if not proof.proven:
                raise AssertionError(f"the bench's fix is not proven: {proof.reason}")
            for item in proof.items:
                roles[item.role or item.kind] = roles.get(item.role or item.kind, 0) + 1
            missing = {"held-out", "neighbour", "pass"} - set(roles)
            if missing:
                raise AssertionError(f"the bench's proof has no {', '.join(sorted(missing))} items")
            await improve.workspace.remove(worktree, delete_branch=True)
        finally:
            await services.aclose()
    _note(f"proof runs: {', '.join(f'{s:.2f} s' for s in seconds)}")
    _note(
        "proof items per run: "
        + ", ".join(f"{role} {count // PROOF_RUNS}" for role, count in sorted(roles.items()))
    )
    return statistics.median(seconds)


FIGURES = [
    Figure("pipeline_overhead_s", "s", pipeline_overhead_s, digits=2),
    Figure("proof_overhead_s", "s", proof_overhead_s, digits=2),
    Figure("evidence_ms", "ms", evidence_ms),
    Figure("correlate_ms", "ms", correlate_ms, digits=2),
]


# -- main ----------------------------------------------------------------------------------------------


async def run_figures(tmp: Path) -> None:
    context = BenchContext(tmp)
    try:
        for figure in FIGURES:
            value = await figure.measure(context)
            print(f"{figure.name} {value:.{figure.digits}f} {figure.unit}", flush=True)
    finally:
        await context.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mendbot-bench-") as name:
        tmp = Path(name)
        configure_logging(tmp / "logs", console_level="CRITICAL", redactor=Redactor())
        asyncio.run(run_figures(tmp))


if __name__ == "__main__":
    main()
