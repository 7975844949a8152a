"""Faults seeded into the real public bots in `../shared/realbots/`, localised from their own source.

Each seed names a bot, a function of its own code (as the source index names it) and a small edit made
there in a temporary copy — a token swapped, an `await` dropped, a call's parentheses left off — never
code carried into this repository. The copy is a git repository whose history is the bot as its
authors wrote it (200 days ago), the commit that brings the fault, and an unrelated commit after it in
the same file (yesterday), so "what changed last" is no giveaway.

Nothing of the bot runs: localisation reads source. What a running bot would have recorded is written
as the recorder writes it — for a fault that raises, five failing actions of the kind with the error and
the in-repository frames from the kind's handler down the calls to the edited line (found in the source,
as a traceback would show them), and the incident they open; for a wrong answer, nothing. Then mendbot
does what its improvement cog does with the complaint: the word grammar, the target (`resolve_target`,
the handlers the source declares beside an empty running map), and — with a model — the routing tool's
call naming a part of the bot the bot listed; without one, the candidate the one question names first.
The evidence pack is built for that target and the suspects are read from it as rendered.

`localise_realbot(seed, workdir, with_model=...)` runs one; a bot missing from `../shared/realbots/` is
skipped (`available`).
"""

from __future__ import annotations

import ast
import shutil
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from mendbot.cogs._asking import spoken
from mendbot.db import actions as action_queries
from mendbot.db import incidents as incident_queries
from mendbot.db.connection import open_database
from mendbot.db.core import Connection
from mendbot.db.records import ActionRecord
from mendbot.improve.evidence.follow import callee_of
from mendbot.improve.evidence.gather import build_evidence
from mendbot.improve.evidence.handler_scan import declared_handlers
from mendbot.improve.evidence.source_index import ModuleIndex, read_module
from mendbot.improve.evidence.target import known_kinds_in, resolve_target
from mendbot.improve.intent import parse_intent
from tests.harness.realbots import realbot
from tests.harness.repo import git
from tests.localise.driver import rendered_suspects

__all__ = ["REALBOT_SEEDS", "RealbotOutcome", "RealbotSeed", "available", "localise_realbot"]

ORIGIN = "seeded into real bots"
_NOISE = '''

def _kept_for_later() -> None:
    """Not wired to anything yet."""
'''


@dataclass(frozen=True)
class RealbotSeed:
    name: str
    shape: str
    bot: str  # folder in ../shared/realbots/
    file: str  # the faulty file, relative to the bot's folder
    function: str  # the faulty function's qualified name (as the source index names it)
    old: str  # a few characters of that function, replaced …
    new: str  # … by these (the `nth` occurrence in the function)
    complaint: str
    kind: str
    error: tuple[str, str] | None = None  # (type, message) when the fault raises
    accept: tuple[str, ...] = ()
    nth: int = 1
    days: float = 3
    origin: str = ORIGIN
    known_miss: str | None = None  # why the faulty file is not expected first (it is still in the top three)

    def right_kind(self, kind: str | None) -> bool:
        return kind == self.kind or kind in self.accept


@dataclass
class RealbotOutcome:
    seed: RealbotSeed
    recognised: bool
    kind: str | None
    suspects: list[str]
    evidence: str

    @property
    def file_top1(self) -> bool:
        files = list(dict.fromkeys(s.split(":", 1)[0] for s in self.suspects))
        return bool(files) and files[0] == self.seed.file

    @property
    def function_top3(self) -> bool:
        return f"{self.seed.file}:{self.seed.function}" in self.suspects[:3]


def available(seed: RealbotSeed) -> bool:
    return realbot(seed.bot) is not None


def _edit(repo: Path, seed: RealbotSeed) -> int:
    """Make the seed's edit in its function; the edited line."""
    path = repo / seed.file
    text = path.read_text(encoding="utf-8")
    module = ModuleIndex(seed.file, text)
    unit = module.functions[seed.function]
    lines = text.splitlines(keepends=True)
    seen = 0
    for index in range(unit.start - 1, unit.end):
        count = lines[index].count(seed.old)
        if seen + count >= seed.nth:
            at = -1
            for _ in range(seed.nth - seen):
                at = lines[index].index(seed.old, at + 1)
            lines[index] = lines[index][:at] + seed.new + lines[index][at + len(seed.old) :]
            path.write_text("".join(lines), encoding="utf-8")
            return index + 1
        seen += count
    raise AssertionError(f"{seed.name}: {seed.old!r} is not in {seed.file}:{seed.function}")


def _commit(repo: Path, message: str, days_ago: float) -> None:
    stamp = f"@{int(time.time() - days_ago * 86400)} +0000"
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message, "--date", stamp)


def _repository(workdir: Path, seed: RealbotSeed) -> tuple[Path, int]:
    source = realbot(seed.bot)
    assert source is not None
    repo = workdir / seed.bot
    shutil.copytree(source, repo, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".git", "SOURCE.txt"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "seed@mendbot.invalid")
    git(repo, "config", "user.name", "seed author")
    _commit(repo, f"{seed.bot} as its authors wrote it", 200)
    line = _edit(repo, seed)
    _commit(repo, f"Change {seed.function.rsplit('.', 1)[-1]}", seed.days)
    with (repo / seed.file).open("a", encoding="utf-8") as file:
        file.write(_NOISE)
    _commit(repo, "Leave a hook for later", 1)
    return repo, line


def _frames(repo: Path, seed: RealbotSeed, line: int) -> list[str]:
    """The in-repository frames a traceback of the fault would show: from the kind's handler down the
    calls the source makes to the edited line (innermost last)."""
    handlers = [h for h in declared_handlers(repo) if h.kind == seed.kind]
    modules: dict[str, ModuleIndex] = {}

    def module(path: str) -> ModuleIndex | None:
        if path not in modules:
            found = read_module(repo, path)
            if found is None:
                return None
            modules[path] = found
            for source, member in found.imports.values():
                base = source.replace(".", "/")
                for name in (f"{base}.py", f"{base}/__init__.py", f"{base}/{member}.py" if member else ""):
                    if name and name not in modules and (repo / name).is_file():
                        module(name)
        return modules.get(path)

    target = (seed.file, seed.function)
    module(seed.file)
    for handler in handlers:
        if module(handler.path) is None:
            continue
        queue: deque[tuple[tuple[str, str], list[str]]] = deque([((handler.path, handler.qualname), [])])
        seen = {queue[0][0]}
        while queue:
            (path, qualname), frames = queue.popleft()
            name = qualname.rsplit(".", 1)[-1]
            if (path, qualname) == target:
                return [*frames, f"{path}:{line}:{name}"]
            here = modules[path]
            unit = here.functions.get(qualname)
            if unit is None or unit.kind != "function" or len(frames) > 4:
                continue
            for call in ast.walk(unit.node):
                if not isinstance(call, ast.Call):
                    continue
                where = callee_of(call, unit, here, modules)
                if where is not None and where not in seen:
                    seen.add(where)
                    queue.append((where, [*frames, f"{path}:{call.lineno}:{name}"]))
    return [f"{seed.file}:{line}:{seed.function.rsplit('.', 1)[-1]}"]


async def _record_failures(
    db: Connection, repo: Path, seed: RealbotSeed, line: int, now: float
) -> int | None:
    """Five failing actions as the recorder writes them, and the incident they open."""
    if seed.error is None:
        return None
    error_type, message = seed.error
    frames = _frames(repo, seed, line)
    fingerprint = f"seed-{seed.name}"
    records = [
        ActionRecord(
            ts=now - 60 * n,
            kind=seed.kind,
            source="realbot",
            ok=False,
            duration_ms=4.0,
            user_id=100 + n,
            error_type=error_type,
            error_message=message,
            fingerprint=fingerprint,
            frames=frames,
            invocation={"name": seed.kind, "options": {}},
        )
        for n in range(5)
    ]
    await action_queries.insert_many(db, records)
    return await incident_queries.insert(
        db,
        {
            "rule": "repeat",
            "rules": ["repeat"],
            "level": "error",
            "kind": seed.kind,
            "fingerprint": fingerprint,
            "state": "open",
            "summary": f"the same {error_type} 5 times in 10 min",
            "first_seen": now - 300,
            "last_seen": now,
            "count": 5,
            "user_ids": [100, 101, 102, 103, 104],
            "sample": {"error_type": error_type, "error_message": message, "frames": frames},
            "updated_at": now,
        },
    )


def _model_choice(seed: RealbotSeed, offered: list[str]) -> str | None:
    """The part the model's call names: what the words mean, when the bot lists it (see the driver)."""
    for kind in (seed.kind, *seed.accept):
        if spoken(kind) in offered:
            return kind
    return None


async def localise_realbot(seed: RealbotSeed, workdir: Path, *, with_model: bool) -> RealbotOutcome:
    """Seed the fault into a copy of the real bot, complain, and read the evidence (module docstring)."""
    repo, line = _repository(workdir, seed)
    db = await open_database(workdir / "mendbot.db")
    try:
        now = time.time()
        await _record_failures(db, repo, seed, line, now)
        roots = [repo]
        kinds = await known_kinds_in(db, roots)
        intent = parse_intent(seed.complaint, kinds)
        target = await resolve_target(
            db, intent.text, replied_incident_id=None, known_kinds=kinds, now=now, roots=roots
        )
        # As the improvement cog: words the grammar cannot place, or a target that is only a guess, go to
        # the model with the candidates first; with none, the one question's first candidate is the target.
        if with_model and (intent.kind == "none" or target.guess) and not target.ambiguous:
            found = [c.kind for c in target.candidates if c.kind] + ([target.kind] if target.kind else [])
            offered = list(dict.fromkeys([*found, *sorted(kinds)]))
            chosen = _model_choice(seed, [spoken(kind) for kind in offered][:60])
            if chosen is not None and chosen != target.kind:
                target = await resolve_target(
                    db, intent.text, replied_incident_id=None, known_kinds=kinds, now=now, roots=roots,
                    named=[chosen],
                )  # fmt: skip
        if target.ambiguous or (target.kind is None and not target.incident_ids):
            return RealbotOutcome(seed, False, None, [], "")
        incident_id = target.incident_ids[0] if target.incident_ids else None
        pack = await build_evidence(
            db,
            repo,
            incident_id=incident_id,
            description=intent.text,
            fingerprint=target.fingerprint if incident_id is None else None,
            kind=target.kind if incident_id is None else None,
            now=now,
        )
        evidence = pack.render()
        kind = (pack.incidents[0]["kind"] if pack.incidents else None) or target.kind
        return RealbotOutcome(seed, True, kind, rendered_suspects(evidence), evidence)
    finally:
        await db.close()


_TEMPLATE = "python-discord-bot-template"
_PAUL = "paulmarisoumary-discord-bot"
_TORTOISE = "tortoise-community-tortoise-bot"
_MINISTATUS = "thegamecracks-ministatus"
_STATUS_VIEWS = "src/ministatus/bot/cogs/status/views"

REALBOT_SEEDS = (
    RealbotSeed(
        "rps",
        "a select callback's arithmetic that can no longer say 'you lost'",
        _TEMPLATE,
        "cogs/fun.py",
        "RockPaperScissors.callback",
        "% 3",
        "% 2",
        "whatever I pick in rock paper scissors I never lose, it's always a win or a draw",
        "view:RockPaperScissors.callback",
        accept=("command:rps",),
    ),
    RealbotSeed(
        "spoilers",
        "a message context menu that keeps half of what it should strip",
        _TEMPLATE,
        "cogs/general.py",
        "General.remove_spoilers",
        '"")',
        '"|")',
        "when I right-click a spoilered message to reveal it, the text still has bars around it",
        "app:Remove spoilers",
    ),
    RealbotSeed(
        "presence",
        "a status task whose call is never awaited",
        _TEMPLATE,
        "bot.py",
        "DiscordBot.status_task",
        "await ",
        "",
        "the bot's playing status is stuck, it never changes any more",
        "task:status_task",
    ),
    RealbotSeed(
        "feedback",
        "a modal that never tells the command waiting for it that it was sent",
        _TEMPLATE,
        "cogs/general.py",
        "FeedbackForm.on_submit",
        "self.stop()",
        "self.stop",
        "after I send my thoughts through the form nothing happens and the owner never receives them",
        "modal:FeedbackForm.on_submit",
        accept=("app:feedback",),
    ),
    RealbotSeed(
        "rotation",
        "a status loop cog_unload leaves running",
        _PAUL,
        "cogs/presence.py",
        "Presence.cog_unload",
        ".cancel()",
        ".cancel",
        "since the cogs were reloaded the status rotates twice as often as it should",
        "task:task_change_status",
        accept=("cog:presence.cog_unload",),
    ),
    RealbotSeed(
        "stars",
        "a helper indexing a list by a count instead of its logarithm",
        _PAUL,
        "cogs/starboard.py",
        "Starboard.__star_emoji_upgrade",
        "log(",
        "(",
        "posts stopped reaching the starboard once people give them a handful of stars",
        "listener:on_raw_reaction_add",
        error=("IndexError", "list index out of range"),
    ),
    RealbotSeed(
        "staff",
        "a staff check that wants both roles instead of either",
        _TORTOISE,
        "bot/utils/checks.py",
        "check_if_tortoise_staff",
        " or ",
        " and ",
        "moderators are told they aren't staff and can't remove points any more",
        "check:check_if_tortoise_staff",
        accept=("app:rmpoints",),
    ),
    RealbotSeed(
        "afk",
        "a cleanup loop cog_unload leaves running",
        _TORTOISE,
        "bot/cogs/afk.py",
        "AFK.cog_unload",
        ".cancel()",
        ".cancel",
        "since the afk extension was reloaded people get the 'no longer AFK' message twice",
        "task:cleanup_expired",
        accept=("cog:AFK.cog_unload",),
    ),
    RealbotSeed(
        "logchannel",
        "a property that never looks its channel up",
        _TORTOISE,
        "bot/cogs/leaderboard.py",
        "Leaderboard.log_channel",
        "is None",
        "is not None",
        "taking points away from someone falls over half way, after the points are already gone",
        "app:rmpoints",
        error=("AttributeError", "'NoneType' object has no attribute 'send'"),
    ),
    RealbotSeed(
        "teamjoin",
        "a modal whose request is never awaited",
        _TORTOISE,
        "bot/cogs/teams.py",
        "JoinReasonModal.on_submit",
        "await ",
        "",
        "when someone asks to join a team through the form the leader gets pinged, but the request is "
        "never stored, so approving it does nothing",
        "modal:JoinReasonModal.on_submit",
        accept=("view:PersistentJoinRequestView.request_join",),
    ),
    RealbotSeed(
        "bookback",
        "a control row that leaves out its back button one page too long",
        _MINISTATUS,
        f"{_STATUS_VIEWS}/book.py",
        "BookControls.__init__",
        "> 1",
        "> 2",
        "on the second screen of the status manager there's no way to go back, only close",
        "view:BookControls.back",
        accept=("view:BookControls.close", "app:status manage"),
    ),
    RealbotSeed(
        "croissants",
        "a cooldown test turned around",
        _PAUL,
        "cogs/croissants.py",
        "Croissants.__is_on_cooldown",
        " < ",
        " > ",
        "the croissant joke only works once, after that it always tells people to respect the croissants",
        "listener:on_message",
    ),
    RealbotSeed(
        "birthdayhour",
        "an hourly task's guard that lets every other hour through",
        _PAUL,
        "cogs/birthday.py",
        "Birthday.daily_birthday",
        "!=",
        "==",
        "the birthday messages get posted every hour of the day instead of once in the morning",
        "task:daily_birthday",
    ),
    RealbotSeed(
        "giveaway",
        "a button's guard read the wrong way round",
        _TORTOISE,
        "bot/cogs/giveaway.py",
        "JoinView.join_btn",
        "if not row",
        "if row",
        "pressing join on a giveaway that is still running says it has already ended",
        "view:JoinView.join_btn",
    ),
    RealbotSeed(
        "weekly",
        "a weekly task waiting for a day that never comes",
        _MINISTATUS,
        "src/ministatus/bot/cogs/cleanup.py",
        "Cleanup.cleanup_loop",
        "!= 6",
        "!= 7",
        "the weekly tidy-up of servers the bot left never happens any more",
        "task:cleanup_loop",
        accept=("cog:Cleanup.cog_load",),
    ),
    RealbotSeed(
        "purge",
        "a count off by two",
        _TEMPLATE,
        "cogs/moderation.py",
        "Moderation.purge",
        "+ 1",
        "- 1",
        "when I ask it to clear 10 messages it leaves a couple of them behind",
        "command:purge",
    ),
    RealbotSeed(
        "activerole",
        "a cached property that never fills its cache",
        _TORTOISE,
        "bot/cogs/role_progression.py",
        "RoleProgression.guild",
        "is None",
        "is not None",
        "nobody gets the active role any more and the message counts stopped being saved",
        "task:active_role_check",
        accept=("task:flush_cache", "task:active_plus_role_check", "listener:on_message"),
        known_miss=(
            "written after the ranking was tuned, and left as it came out: the loops swallow every "
            "exception of a helper they call, which outranks the property that changed"
        ),
    ),
)
