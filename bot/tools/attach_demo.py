"""`mendbot attach --play --demo -- python bot.py`: the whole fix loop on a bot someone else wrote, in the
virtual Discord, with the demo's scripted model — no Discord application, no key, no network — and
nothing of the developer's working tree touched.

The demo works on a scratch clone of the repository's committed HEAD in its own data directory (wiped
each time, like `make demo`'s), which is where the program runs, its state is written and the fix is
merged. What it runs on is what `mendbot adopt` finds (or the repository's own mendbot.yaml, when it has
one): its refusals are the demo's. A bot with no known fault has nothing to fix, so the demo seeds one,
and says so: it tries the commands mendbot's instrumentation found on the running bot (prefix, then
slash; those of reloadable extensions first) with ordinary input until one answers, then inserts one
line that raises into that command's callback in the scratch copy, commits it, and applies it (the
extension reloaded, or the program started again). The scripted model's fix is the edit that takes that
line out again. Everything between is the ordinary pipeline: the failures recorded and announced, "fix
this", the real CLI in the sandbox with the scripted model, the bot's checks (or the defaults), the
replay proof on its program, "ship it", the reload or the restart, the watch — and the command answers
as it did.

A restart (a fix in the bot's main module) ends the program's run, as it does under `mendbot attach`;
the demo then runs the program again in this process, on the merged scratch copy, and goes on.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import discord
import msgspec
import yaml
from discord import app_commands
from discord.ext import commands

from mendbot.db.records import ActionRecord
from mendbot.kernel import startgc
from mendbot.kernel.sections import HostConfig
from mendbot.kernel.settings import EX_CONFIG, ConfigError, Settings, load_settings
from mendbot.runtime.attachment import Attachment
from mendbot.runtime.standalone import CONFIG_FILE, host_settings
from mendbot.tools.adopt import AdoptError, inspect_repository
from mendbot.tools.attach_play import attached_world
from mendbot.tools.attach_run import (
    EX_FAILED,
    PLACEHOLDER_TOKEN,
    AttachError,
    Hooks,
    Program,
    parse_program,
    run_program,
)
from mendbot.tools.datadir import DataDirInUse, claim_data_dir
from mendbot.tools.demo import is_announcement, is_proposal, latest_alias
from mendbot.tools.demo_agent import DemoModel, Fault
from mendbot.tools.playground import Playground
from mendbot.tools.world import VirtualWorld
from mendbot.trust.host_files import copy_files

__all__ = ["Candidate", "DemoRefused", "candidates", "default_directory", "run_demo", "seed"]

REPO_NAME = "demo-repo"  # the scratch clone, in the demo's data directory (datadir.STATE_NAMES)
SETTINGS_NAME = "attach-demo.yaml"
WATCH_S = 60
SEEDED = "_demo_share = 100 // len([])  # mendbot demo: the seeded fault"
_GIT_IDENTITY = ("-c", "user.name=mendbot demo", "-c", "user.email=demo@mendbot.invalid")
_ARGUMENTS: dict[object, str] = {int: "2", float: "2", str: "demo", bool: "yes"}
_OPTIONS = {
    discord.AppCommandOptionType.integer: "2",
    discord.AppCommandOptionType.number: "2",
    discord.AppCommandOptionType.string: "demo",
    discord.AppCommandOptionType.boolean: "true",
    discord.AppCommandOptionType.user: "@alice",
}
OUTRO = "For real: `mendbot adopt`, then `mendbot attach -- {program}`."


class DemoRefused(Exception):
    """The demo cannot run on this repository; the message is the one line that says why."""


@dataclass(frozen=True)
class Candidate:
    """A command of the bot the demo can seed a fault in: what a member types, and where its code is."""

    label: str  # "!add", "/split"
    line: str  # "!add demo 2"
    kind: str  # the recorder's kind: "command:add", "app:split"
    file: str  # repository path of its callback
    function: str  # the callback's name
    first_line: int  # the callback's first line (its first decorator's)


def default_directory() -> Path:
    """Where the demo keeps its scratch copy and state unless told: the user's cache, never the bot's tree."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mendbot" / "attach-demo"


# -- the scratch copy ------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *_GIT_IDENTITY, "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise DemoRefused(f"mendbot attach --demo: git {args[0]} failed: {done.stderr.strip()[:300]}")
    return done.stdout


def prepare(root: Path, directory: Path, config: Path | None) -> tuple[Path, HostConfig]:
    """The scratch clone of `root`'s HEAD (branch main, no remote) and how its bot runs — mendbot.yaml's
    `bot:` when the repository has one, else what adopt finds; DemoRefused with adopt's words for a
    repository it cannot take (not git, uncommitted changes, no bot, …)."""
    try:
        found = inspect_repository(root)
    except AdoptError as exc:
        raise DemoRefused(str(exc).replace("mendbot adopt:", "mendbot attach --demo:", 1)) from None
    own = config or (root / CONFIG_FILE if (root / CONFIG_FILE).is_file() else None)
    if own is not None:
        host = host_settings(own).bot
        assert host is not None  # host_settings refuses a file without it
    else:
        host = HostConfig(
            entry=found.entry,
            bot_class=found.bot_class,
            extensions=found.extensions,
            path=found.path,
            token_env=found.token_env,
            env=found.env,
            data_files=found.data_files,
            files=found.files,
        )
    repo = directory / REPO_NAME
    if repo.exists():
        shutil.rmtree(repo)
    top = _git(root, "rev-parse", "--show-toplevel").strip()
    _git(directory, "clone", "-q", "--no-hardlinks", top, str(repo))
    _git(repo, "checkout", "-q", "-B", "main")  # mendbot's base branch, whatever theirs is called
    _git(repo, "remote", "remove", "origin")  # nothing of the demo can reach their repository
    _git(repo, "config", "user.name", "mendbot demo")
    _git(repo, "config", "user.email", "demo@mendbot.invalid")
    # What the bot needs and git does not keep, which a clone has not: its secrets replaced, as in the
    # sandbox (the demo's bot never logs in anywhere; a file that cannot be copied so is left out).
    copy_files(root.resolve(), repo, host.files, token_keys=[host.token_env], token=PLACEHOLDER_TOKEN)
    return repo, host


def write_settings(directory: Path, repo: Path, host: HostConfig) -> Path:
    """The demo's settings file, in its data directory: the scratch copy, the bot, short windows."""
    path = directory / SETTINGS_NAME
    values = {
        "data_dir": str(directory),
        "repo_dir": str(repo),
        "health": {"enabled": False},
        # The developer asks for the fix: the bot's own investigation would take the incident first.
        "improve": {"max_attempts": 1, "autonomy": "off", "check_timeout_s": 120},
        "deploy": {"watch_window_s": WATCH_S, "watch_hand_edits": False},
        # A whole agent run is one line of the script: give it the time a loaded machine needs.
        "playground": {"settle_timeout_s": 240},
        "bot": msgspec.to_builtins(host),
    }
    path.write_text(
        "# `mendbot attach --play --demo` wrote this for its run (rewritten each time).\n"
        + yaml.safe_dump(values, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    return path


def demo_settings(path: Path, model_url: str) -> Settings:
    """The settings the demo's bot runs with: the file, its model the scripted one whatever the
    environment says, and no `.env` of the developer's read."""
    return load_settings(
        path, _env_file=None, anthropic_api_key="demo-key-not-a-secret", anthropic_base_url=model_url
    )


def forget_modules(root: Path) -> None:
    """Drop the modules imported from `root` (the bot's), so a program run again imports its code anew."""
    root = root.resolve()
    for name, module in list(sys.modules.items()):
        places = [getattr(module, "__file__", None) or "", *list(getattr(module, "__path__", None) or [])]
        if any(place and Path(place).resolve().is_relative_to(root) for place in places):
            del sys.modules[name]


# -- the command to seed a fault in -------------------------------------------------------------------


def _prefix_of(bot: commands.Bot | commands.AutoShardedBot) -> str:
    """A prefix a member can type: the bot's own, else a mention of it (`@mendbot`, which the
    playground turns into the bot's mention)."""
    prefix: Any = bot.command_prefix
    if callable(prefix):
        with contextlib.suppress(Exception):
            prefix = prefix(bot, None)
    if isinstance(prefix, str) and prefix.strip():
        return prefix
    if isinstance(prefix, list | tuple):
        typed = [p for p in prefix if isinstance(p, str) and p.strip() and not p.startswith("<@")]
        if typed:
            return str(typed[0])
    return "@mendbot "


def _prefix_arguments(command: commands.Command[Any, Any, Any]) -> list[str] | None:
    """Ordinary values for the command's required parameters (None: one the demo cannot fill)."""
    words: list[str] = []
    for parameter in command.clean_params.values():
        if not parameter.required:
            continue
        converter = parameter.converter
        if converter in _ARGUMENTS:
            words.append(_ARGUMENTS[converter])
        elif converter in (discord.Member, discord.User, discord.abc.User):
            words.append("@alice")
        else:
            return None
    return words


def _slash_arguments(command: app_commands.Command[Any, Any, Any]) -> list[str] | None:
    words: list[str] = []
    for parameter in command.parameters:
        if not parameter.required:
            continue
        value = _OPTIONS.get(parameter.type)
        if value is None or parameter.choices:
            return None
        words.append(value)
    return words


def _where(callback: Callable[..., Any], root: Path) -> tuple[str, str, int] | None:
    """The callback's repository path, name and first line; None when its code is not the repository's
    (mendbot's own commands, a library's)."""
    try:
        file = inspect.getsourcefile(callback)
    except TypeError:
        return None
    if file is None or not Path(file).resolve().is_relative_to(root):
        return None
    code = callback.__code__
    return Path(file).resolve().relative_to(root).as_posix(), code.co_name, code.co_firstlineno


def candidates(mend: Attachment) -> list[Candidate]:
    """The bot's own commands the demo could seed a fault in, best first: those of a reloadable extension
    (the fix then reloads, as most fixes do), prefix before slash, in the order the bot added them; only
    top-level commands with no checks, whose required parameters take ordinary values."""
    bot = mend.bot
    root = mend.services.settings.repo_dir.resolve()
    reloadable = mend.plan_for
    found: list[tuple[int, int, int, Candidate]] = []
    seen: set[tuple[str, str]] = set()
    prefix = _prefix_of(bot)
    # all_commands keeps the order the bot added them (an alias is the same command again)
    for order, command in enumerate(dict.fromkeys(bot.all_commands.values())):
        if isinstance(command, commands.Group) or command.checks:
            continue
        words = _prefix_arguments(command)
        where = _where(command.callback, root)
        if words is None or where is None:
            continue
        seen.add(where[:2])
        line = " ".join([f"{prefix}{command.name}", *words])
        candidate = Candidate(
            f"{prefix.strip()}{command.name}", line, f"command:{command.qualified_name}", *where
        )
        found.append((0 if reloadable([where[0]]).extensions else 1, 0, order, candidate))
    for order, app in enumerate(bot.tree.get_commands()):
        if not isinstance(app, app_commands.Command) or app.checks:
            continue
        words = _slash_arguments(app)
        where = _where(app.callback, root)
        if words is None or where is None or where[:2] in seen:
            continue
        candidate = Candidate(f"/{app.name}", " ".join([f"/{app.name}", *words]), f"app:{app.name}", *where)
        found.append((0 if reloadable([where[0]]).extensions else 1, 1, order, candidate))
    return [candidate for *_, candidate in sorted(found, key=lambda item: item[:3])]


def seed(repo: Path, candidate: Candidate) -> tuple[Fault, int]:
    """Insert the seeded line as the first statement of the candidate's callback in the scratch copy and
    commit it; the fault (what the demo's model undoes) and the seeded line's number. DemoRefused when
    the callback has no statement to put it before (a body that is one line, or only a docstring)."""
    path = repo / candidate.file
    source = path.read_text(encoding="utf-8")
    statement = _first_statement(ast.parse(source), candidate)
    if statement is None:
        raise DemoRefused(f"mendbot attach --demo: cannot seed a fault in {candidate.label}")
    lines = source.splitlines(keepends=True)
    index = statement.lineno - 1
    indent = lines[index][: statement.col_offset]
    seeded = f"{indent}{SEEDED}\n"
    path.write_text("".join([*lines[:index], seeded, *lines[index:]]), encoding="utf-8")
    _git(repo, "commit", "-q", "-am", f"mendbot demo: a fault seeded in {candidate.label}")
    following = lines[index].rstrip("\n")
    fault = Fault(
        file=candidate.file,
        bug=f"{indent}{SEEDED}\n{following}",
        fix=following,
        command=candidate.label,
        root_cause=f"{candidate.function} begins by dividing by len([]), which is 0: every "
        f"{candidate.label} raises ZeroDivisionError",
        proposed_fix=f"remove that division from the top of {candidate.function}",
    )
    return fault, statement.lineno


def _first_statement(tree: ast.Module, candidate: Candidate) -> ast.stmt | None:
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.name != candidate.function:
            continue
        if candidate.first_line not in (node.lineno, *(d.lineno for d in node.decorator_list)):
            continue
        body = node.body
        documented = isinstance(body[0], ast.Expr) and isinstance(
            getattr(body[0], "value", None), ast.Constant
        )
        statements = body[1:] if documented else body
        if not statements or statements[0].lineno == node.lineno:
            return None
        return statements[0]
    return None


# -- the story -------------------------------------------------------------------------------------------


class DemoStory:
    """The demo's conversation, played across the program's runs (a restart ends one): which step it is
    at, what it chose and seeded, and how it ended."""

    def __init__(self, model: DemoModel, program: Program, out: TextIO | None = None) -> None:
        self.model = model
        self.program = program
        self.out = out or sys.stdout
        self.phase = "choose"  # → "seeded" → "shipped" → "done"
        self.candidate: Candidate | None = None
        self.fault: Fault | None = None
        self.before = ""  # the command's answer before the seed
        self.after = ""  # and after the fix
        self.applied = ""  # how the fix was applied: "reloaded cogs.books" or "restarted your program"
        self.wants_restart = False  # the program is to run again: the story goes on there
        self.exit_code = EX_FAILED
        self._records: list[ActionRecord] = []

    async def play(self, mend: Attachment, settings: Settings) -> None:
        """One run of the program's bot: the steps of the story that run in it."""
        logging.getLogger("discord").setLevel(logging.ERROR)  # the program's gateway chatter: not the story
        mend.services.recorder.subscribe(self._records.append)
        async with attached_world(mend, settings) as world:
            playground = Playground(world, out=self.out, echo=True)
            if self.phase == "choose":
                await self._choose(world, playground, mend)
            if self.phase == "seeded" and not self.wants_restart:
                await self._story(playground, mend)
            if self.phase == "shipped" and not self.wants_restart:
                await self._after_ship(playground)

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # -- the steps -------------------------------------------------------------------------------

    async def _choose(self, world: VirtualWorld, playground: Playground, mend: Attachment) -> None:
        bot_name = type(world.client).__name__
        self.say(
            f"mendbot demo — your bot ({bot_name}, `{self.program}`) with mendbot attached, in a virtual "
            "Discord, with a scripted model: no application, no key, no network."
        )
        found = candidates(mend)
        if not found:
            self.exit_code = EX_CONFIG
            self.say(
                "mendbot attach --demo: found no command of your bot to seed a fault in (a prefix or slash "
                "command of your code with no checks, whose required options are numbers, words or users)"
            )
            self.phase = "done"
            return
        self.say("\n── 1. Your bot as it is: mendbot tries your commands until one answers.")
        tried: list[str] = []
        for candidate in found:
            record = await self._call(playground, candidate)
            if record is not None and record.ok:
                self.candidate, self.before = candidate, _last_reply(world, "general")
                break
            error = record.error_type if record is not None else "no answer"
            tried.append(f"{candidate.line}: {error}")
        if self.candidate is None:
            self.say(
                "mendbot attach --demo: none of your commands answered as they are ("
                + "; ".join(tried[:3])
                + ") — mendbot recorded what failed; run `mendbot attach --play -- "
                + f"{self.program.target}` to look"
            )
            self.phase = "done"
            return
        candidate = self.candidate
        self.fault, line = seed(mend.services.settings.repo_dir, candidate)
        self.model.fault = self.fault
        self.say(
            f"\ndemo: seeded a fault in `{candidate.label}` ({candidate.file}:{line}) in a scratch copy — "
            "your files are not changed"
        )
        self.phase = "seeded"
        plan = mend.plan_for([candidate.file])
        if plan.restart:
            self.say(
                f"   ({candidate.file} cannot be reloaded: your program starts again with the seeded fault)"
            )
            self.wants_restart = True
            return
        for name in plan.extensions:
            await mend.reload_extension(name)
        await mend.sync_app_commands(world.guild.id)
        await world.quiesce()

    async def _story(self, playground: Playground, mend: Attachment) -> None:
        assert self.candidate is not None
        line = self.candidate.line
        await self._step(
            f"2. `{self.candidate.label}` now fails for everyone who uses it.",
            ["@mallory", line, "@alice", line, line],
            playground,
        )
        await self._step(
            "3. mendbot noticed: the incident is announced in #dev.", ["#dev", "wait"], playground
        )
        announcement = latest_alias(playground, is_announcement)
        await self._step(
            "4. You reply “fix this”: the run gathers evidence, the coding agent (the real CLI, in the "
            "sandbox, with the scripted model) edits a worktree of the scratch copy, your checks (or the "
            "defaults: compile, load your extensions into your bot class) pass, and your program replays "
            "the failing calls as proof.",
            [f"reply {announcement} fix this"],
            playground,
        )
        proposal = latest_alias(playground, is_proposal)
        if proposal == "last":
            self.phase = "done"
            self.say(
                "\ndemo: the run did not propose a fix (#dev above says why) — nothing was shipped. "
                + OUTRO.format(program=self.program)
            )
            return
        self.say("\n── 5. Nothing ships without you: “ship it”.")
        self.phase = "shipped"
        shipped = asyncio.ensure_future(playground.run_lines([f"reply {proposal} ship it"]))
        restart = asyncio.ensure_future(mend.wait_for_restart())
        await asyncio.wait({shipped, restart}, return_when=asyncio.FIRST_COMPLETED)
        if mend.restart_requested is not None:
            await restart
            shipped.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await shipped
            playground.print_changes()
            self.applied = "restarted your program"
            self.say(
                f"↻ {self.fault.file if self.fault else 'the fix'} cannot be reloaded: your program restarts"
            )
            self.wants_restart = True
            return
        restart.cancel()
        await shipped
        self.applied = "reloaded " + ", ".join(mend.plan_for([self.candidate.file]).extensions)
        await self._after_ship(playground)

    async def _after_ship(self, playground: Playground) -> None:
        assert self.candidate is not None
        lines = ["#dev", "wait"] if self.applied.startswith("restarted") else []
        await self._step(
            f"6. Shipped ({self.applied}): `{self.candidate.label}` answers again.",
            [*lines, "#general", "@alice"],
            playground,
        )
        record = await self._call(playground, self.candidate)
        self.after = _last_reply(playground.world, "general")
        await self._step(
            f"7. The watch: {WATCH_S} s of (virtual) time with no new failure, and the run is resolved.",
            ["#dev", f"wait {WATCH_S + 1}s"],
            playground,
        )
        self.phase = "done"
        fixed = record is not None and record.ok
        self.exit_code = 0 if fixed else EX_FAILED
        if fixed:
            self.say(
                f"\ndemo: mendbot saw `{self.candidate.label}` fail, fixed {self.candidate.file} in a "
                f"scratch copy, proved it by replaying your bot, shipped it on “ship it” ({self.applied}) — "
                f"`{self.candidate.line}` answers again: {_sentence(self.after or '(answered)')} "
                + OUTRO.format(program=self.program)
            )
        else:
            self.say(
                f"\ndemo: `{self.candidate.line}` still fails after the story — the fix did not ship (see "
                "#dev above); " + OUTRO.format(program=self.program)
            )

    async def _step(self, narration: str, lines: list[str], playground: Playground) -> None:
        self.say(f"\n── {narration}")
        for line in lines:
            await playground.run_lines([line])

    async def _call(self, playground: Playground, candidate: Candidate) -> ActionRecord | None:
        """Type the candidate's line in #general; what the recorder saw of that command."""
        playground.channel = "general"
        start = len(self._records)
        await playground.run_lines([candidate.line])
        seen = [record for record in self._records[start:] if record.kind == candidate.kind]
        failed = [record for record in seen if not record.ok]
        return failed[0] if failed else (seen[0] if seen else None)


def _sentence(text: str) -> str:
    """`text` ended as one sentence: a full stop added unless it ends in one of its own ("Show me the
    code." stays as it is, never "code..")."""
    text = text.rstrip()
    return text if text.endswith((".", "!", "?", "…")) else f"{text}."


def _last_reply(world: VirtualWorld, channel: str) -> str:
    """The bot's latest message in the channel, as one line."""
    me = world.bot.user
    mine = [m for m in world.channels[channel].history() if me is not None and m.author.id == me.id]
    if not mine:
        return ""
    message = max(mine, key=lambda m: m.id)
    text = message.content or next((embed.title or "" for embed in message.embeds), "")
    return " ".join(text.split())[:200]


# -- the runner ------------------------------------------------------------------------------------------


def run_demo(argv: list[str], *, config: Path | None, play: bool, data_dir: Path | None) -> int:
    """`mendbot attach --play --demo [-- PROGRAM…]`: the exit code (78 for what it cannot run on)."""
    if not play:
        print(
            "mendbot attach: --demo runs in the local virtual Discord — "
            "`mendbot attach --play --demo -- python bot.py`",
            file=sys.stderr,
        )
        return EX_CONFIG
    startgc.resume()  # the program runs for as long as it likes: no collection held back for a start
    root = Path.cwd()
    try:
        explicit = parse_program(argv) if argv else None
        directory, held = claim_data_dir(root, data_dir or default_directory(), default="", fresh=True)
        repo, host = prepare(root, directory.resolve(), config)
        program = explicit or parse_program(host.entry)
    except DataDirInUse as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG
    except (AttachError, ConfigError, DemoRefused) as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG
    model = DemoModel(fault=None)
    try:
        settings = demo_settings(write_settings(directory.resolve(), repo, host), model.start())
        story = DemoStory(model, program)
        hooks = Hooks(
            settings, play=True, session=story.play, console_level="CRITICAL", restart_at_exit=False
        )
        hooks.install()
        # The program never connects to Discord, but reads its token as it always does.
        os.environ.setdefault(host.token_env, PLACEHOLDER_TOKEN)
        for name, value in host.env.items():
            os.environ.setdefault(name, value)
        os.chdir(repo)  # the program runs in the scratch copy: its relative paths, its state, are there
        code = run_program(program, settings, hooks)
        while story.wants_restart and code == 0:
            story.wants_restart = False
            forget_modules(repo)
            code = run_program(program, settings, hooks)
    finally:
        os.chdir(root)
        model.stop()
        held.close()
    return code or story.exit_code
