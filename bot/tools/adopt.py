"""`mendbot adopt [PATH]`: read a discord.py bot's repository, never running it, and write its mendbot.yaml.

What it looks for, with `ast` over every Python file of the tree git tracks:

- the **entry point**: the module that runs a bot (`bot.run(…)`, `asyncio.run(main())` over `bot.start`)
  when it runs as a program, itself or through the functions it calls — a `main()`, a click command
  (bot/tools/adopt_entry.py) — a root script (`bot.py`, `index.py`), a root `__main__.py` (run as
  `python .`) or a package's `__main__.py` (run as `python -m pkg`, a `src/` layout's directory put on
  the path); or the command its owner names (`--entry "python launcher.py start"`);
- the **bot class**: a subclass of `commands.Bot` or `AutoShardedBot` (followed through the repository's
  own classes), or none when the program builds `commands.Bot(…)` itself;
- the **extensions**: every module with a top-level `setup` function, named as the program imports it;
- the **token's environment variable**: what the bot's `run`/`start`/`login` is given, followed to
  `os.getenv("…")` / `os.environ[…]`; else, for a token read from a file, the key with TOKEN in its name
  in one of the files below (or in a config file git keeps), which the sandbox's copy gives a token of
  its own; a token read from a file with no such key is refused;
- the **data files** (`bot.data_files`): what it keeps its state in — the SQLite files the code names
  (`…/database.db`), and the JSON files it names and writes (`data/economy.json`) that are in the working
  tree, tracked or not, with no secret in them — copied as they are into each start outside its live
  process; the replay compares what a fix did to them;
- the **files it needs that git does not keep** (`bot.files`): its `.env`, the config files the code
  names by a literal (`config.json`, `config/.env`, `settings.toml`) and the modules it imports that only
  the working tree has (a `config.py` kept out by `.gitignore`) — copied, secrets replaced, wherever it
  is started outside its live process (`mendbot.trust.host_files`);
- the **servers** it uses that mendbot cannot start in its sandbox (MongoDB, Redis, PostgreSQL,
  MariaDB/MySQL), by its imports, its requirements and the variables it reads: said, not refused;
- **other environment variables** it reads that are no secret, with their values from `.env` when it
  is there (the replay has nothing of the live environment).

It refuses, in one line, what it cannot handle: a directory that is not a git repository, uncommitted
changes, no bot, no entry point, a token from a file it cannot give a test one through. Otherwise it
writes `mendbot.yaml`, keeps mendbot's data directory (`.mendbot/`) out of git with a line in
`.gitignore`, and — unless `--no-check` — starts the unchanged bot on its committed HEAD as mendbot will
(its checks, its own program in the sandbox: `check_base`), saying in one line each what fails and what
to change. It prints what it found and, last, the one thing left to do: the ids, then committing
`mendbot.yaml` (it says how; it commits nothing itself — the ids are still to be written in).
"""

from __future__ import annotations

import ast
import asyncio
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml
from dotenv import dotenv_values

from mendbot.kernel.log import get_logger
from mendbot.kernel.settings import EX_CONFIG
from mendbot.tools.adopt_entry import SourceModule, attr_name, calls, entry_point
from mendbot.tools.adopt_reads import (
    CONFIG_FILE,
    DATA_DIR,
    AdoptError,
    candidate_files,
    data_files,
    env_reads,
    file_keys,
    needed_files,
    servers,
    token_and_where,
)
from mendbot.trust.host_files import looks_secret

__all__ = [
    "AdoptError",
    "Found",
    "adopt_main",
    "check_base",
    "ignore_data_dir",
    "inspect_repository",
    "write_config",
]

_log = get_logger(__name__)

_BOT_BASES = {"Bot", "AutoShardedBot"}
_CLIENT_BASES = {"Client", "AutoShardedClient"}


@dataclass
class Found:
    """What adopt found in a bot's repository."""

    entry: list[str]
    bot_class: str | None
    extensions: list[str]
    token_env: str
    data_files: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    path: list[str] = field(default_factory=list)  # directories put first on sys.path (a src/ layout)
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # what it needs to start that git does not keep
    servers: list[str] = field(default_factory=list)  # servers it uses that mendbot cannot start


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=False, timeout=60
    )


def _tracked_python(root: Path) -> list[PurePosixPath]:
    listing = _git(root, "ls-files", "-z", "--", "*.py")
    return sorted(PurePosixPath(name) for name in listing.stdout.split("\0") if name)


def _module_name(path: PurePosixPath, roots: list[str]) -> str:
    parts = list(path.with_suffix("").parts)
    for root in roots:
        prefix = PurePosixPath(root).parts
        if tuple(parts[: len(prefix)]) == prefix:
            parts = parts[len(prefix) :]
            break
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _bot_classes(modules: list[SourceModule]) -> dict[str, tuple[SourceModule, ast.ClassDef]]:
    """Every class of the repository that is a discord.py bot, by name (through its own subclasses)."""
    classes = {
        node.name: (module, node)
        for module in modules
        for node in ast.walk(module.tree)
        if isinstance(node, ast.ClassDef)
    }
    bots: dict[str, tuple[SourceModule, ast.ClassDef]] = {}
    changed = True
    while changed:
        changed = False
        for name, (module, node) in classes.items():
            if name in bots:
                continue
            bases = {attr_name(base) for base in node.bases}
            if bases & _BOT_BASES or bases & set(bots):
                bots[name] = (module, node)
                changed = True
    return bots


def inspect_repository(root: Path, given: list[str] | None = None) -> Found:
    """What the repository at `root` is, or AdoptError saying why it cannot be adopted; `given`: the
    command that starts the bot, when its owner names it (`--entry`)."""
    root = root.resolve()
    if not root.is_dir():
        raise AdoptError(f"mendbot adopt: {root} is not a directory")
    if _git(root, "rev-parse", "--show-toplevel").returncode != 0:
        raise AdoptError(
            f"mendbot adopt: {root} is not a git repository — mendbot proposes its fixes as commits: "
            "`git init`, commit your bot, then adopt it"
        )
    status = _git(root, "status", "--porcelain", "--untracked-files=no").stdout.splitlines()
    if status:
        shown = ", ".join(line[3:] for line in status[:3])
        raise AdoptError(f"mendbot adopt: {root} has uncommitted changes ({shown}) — commit them first")
    files = _tracked_python(root)
    roots = ["src"] if any(path.parts[:1] == ("src",) for path in files) else []
    modules: list[SourceModule] = []
    for path in files:
        try:
            tree = ast.parse((root / path).read_text(encoding="utf-8"), str(path))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        modules.append(SourceModule(path, _module_name(path, roots), tree))
    bots = _bot_classes(modules)
    builds = [
        module for module in modules for call in calls(module.tree) if attr_name(call.func) in _BOT_BASES
    ]
    clients = [
        module for module in modules for call in calls(module.tree) if attr_name(call.func) in _CLIENT_BASES
    ]
    if not bots and not builds:
        what = " (a discord.Client without commands: mendbot attaches to a commands.Bot)" if clients else ""
        raise AdoptError(
            f"mendbot adopt: no discord.py bot found in {root}{what} — mendbot attaches to a "
            "commands.Bot or AutoShardedBot subclass, or a `commands.Bot(…)` your program builds"
        )
    entry = _given_entry(given, modules) if given else entry_point(modules)
    if entry is None:
        raise AdoptError(
            f"mendbot adopt: found a bot but no program that runs it in {root} — mendbot needs the command "
            'you start your bot with: name it, e.g. `mendbot adopt --entry "python launcher.py start"`'
        )
    tracked = set(_git(root, "ls-files", "-z").stdout.split("\0")) - {""}
    state = data_files(root, modules)
    candidates = [name for name in candidate_files(modules, roots, tracked) if name not in state]
    needed = needed_files(root, candidates, tracked)
    token, notes = token_and_where(root, modules, candidates, tracked, needed)
    bot_class = None
    if bots:
        # The class the entry point builds, else the most derived one.
        used = {attr_name(call.func) for call in calls(entry[1].tree)}
        name = next((name for name in bots if name in used), None) or list(bots)[-1]
        module, _ = bots[name]
        bot_class = f"{module.name}:{name}"
    extensions = sorted(
        module.name
        for module in modules
        if module is not entry[1]
        and any(
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "setup"
            for node in module.tree.body
        )
    )
    dotenv = {key: value for key, value in dotenv_values(root / ".env").items() if value is not None}
    reads = env_reads(modules)
    env = {
        name: dotenv.get(name, "")
        for name in reads
        if name != token and not looks_secret(name) and name in dotenv
    }
    return Found(
        entry=entry[0],
        bot_class=bot_class,
        extensions=extensions,
        token_env=token,
        data_files=state,
        env=env,
        path=roots,
        notes=notes,
        files=needed,
        servers=servers(root, modules, [*reads, *file_keys(root, needed)]),
    )


def _given_entry(given: list[str], modules: list[SourceModule]) -> tuple[list[str], SourceModule]:
    """The command named with `--entry` (`python launcher.py start`, `python -m shelfbot start`), and the
    module it runs — which must be one of the repository's."""
    words = given[1:] if given[0].startswith("python") else given
    module_name = words[1] if words[:1] == ["-m"] and len(words) > 1 else None
    target = PurePosixPath(words[0]) if words and module_name is None else None
    for module in modules:
        if module_name is not None and module.name in (module_name, f"{module_name}.__main__"):
            return ["python", *words], module
        if target is not None and module.path in (target, target / "__main__.py"):
            return ["python", *words], module
    raise AdoptError(
        f"mendbot adopt: --entry `{' '.join(given)}` runs no Python file or module of this repository — "
        'name your bot\'s program as you run it, e.g. `--entry "python launcher.py start"`'
    )


def write_config(root: Path, found: Found) -> Path:
    """Write `root/mendbot.yaml` for what was found; the file written."""
    bot: dict[str, object] = {"entry": found.entry}
    if found.bot_class:
        bot["bot_class"] = found.bot_class
    if found.path:
        bot["path"] = found.path
    bot["extensions"] = found.extensions
    bot["token_env"] = found.token_env
    if found.env:
        bot["env"] = found.env
    if found.data_files:
        bot["data_files"] = found.data_files
    if found.files:
        bot["files"] = found.files
    text = (
        "# mendbot's settings for this bot (written by `mendbot adopt`; every key: config.example.yaml).\n"
        f"data_dir: {DATA_DIR}            # mendbot's database, logs and worktrees (in .gitignore)\n"
        "repo_dir: .\n"
        "discord:\n"
        "  dev_guild_id: null          # your dev server's id: mendbot's commands and reports go there\n"
        "  dev_channel_ids: []         # its channel for mendbot, e.g. [123456789012345678]\n"
        "access:\n"
        '  allowed_user_ids: []        # who may say "fix this" and "ship it": your Discord user id\n'
        + yaml.safe_dump({"bot": bot}, sort_keys=False, allow_unicode=True).replace(
            "\n  data_files:\n",
            "\n  # its state: copied as it is into each start outside the live bot; a fix that deletes or\n"
            "  # reshapes what is stored there is shown as a data change, never proven\n  data_files:\n",
        )
    )
    path = root / CONFIG_FILE
    path.write_text(text, encoding="utf-8")
    return path


def check_base(config: Path) -> list[str]:
    """The bot's checks and its own start in the sandbox, on its committed HEAD as mendbot.yaml (`config`)
    says it runs: one line each for what passes or fails and what to change (`verify_base`; kept, so the
    first `mendbot attach` on the same commit does not check it again)."""
    from mendbot.improve.agent.verify import base_report, verify_base
    from mendbot.improve.agent.workspace import Workspace
    from mendbot.kernel.log import configure_logging
    from mendbot.runtime.standalone import host_settings
    from mendbot.trust.host_files import bot_secrets
    from mendbot.trust.redact import Redactor
    from mendbot.trust.sandbox import Sandbox

    settings = host_settings(config)
    repo = settings.repo_dir.resolve()
    head = _git(repo, "rev-parse", "HEAD").stdout.strip()
    _git(repo, "worktree", "prune")  # a copy an interrupted adopt left registered, gone since
    workspace = Workspace(repo, settings.data_dir / "worktrees", host=settings.bot)
    redactor = Redactor.from_settings(settings, also=bot_secrets(settings.bot, repo))
    # What the check logs goes to mendbot's log file; the console has the lines returned here.
    configure_logging(settings.log_dir, console_level="ERROR", redactor=redactor, logger="mendbot")
    try:
        verification, _ = asyncio.run(
            verify_base(
                workspace,
                head,
                settings.improve.checks,
                settings.improve.check_timeout_s,
                sandbox=Sandbox.from_config(settings.improve.sandbox),
                redact=redactor.text,
            )
        )
    except Exception as exc:  # git, the disk: said in one line, the traceback in mendbot's log
        _log.exception("the check of the committed HEAD could not run")
        why = redactor.text(f"{type(exc).__name__}: {exc}", 300)
        return [f"⚠️ your bot was not checked on {head[:7]}: {why}"]
    return base_report(verification)


def adopt_main(root: Path, entry: str | None = None, *, check: bool = True) -> int:
    """`mendbot adopt [PATH] [--entry COMMAND] [--no-check]`: the exit code (78 for a repository it cannot
    adopt)."""
    try:
        found = inspect_repository(root, shlex.split(entry) if entry else None)
    except AdoptError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG
    target = root.resolve() / CONFIG_FILE
    if target.exists():
        print(
            f"mendbot adopt: {target} already exists — left as it is (delete it to adopt again)",
            file=sys.stderr,
        )
        return EX_CONFIG
    written = write_config(root.resolve(), found)
    program = " ".join(found.entry)
    print(f"entry point: {program}")
    print(f"bot class: {found.bot_class or 'commands.Bot, built by the program'}")
    print(f"extensions: {', '.join(found.extensions) or 'none'}")
    print(f"token: ${found.token_env}")
    if found.data_files:
        print(f"data files: {', '.join(found.data_files)}")
    if found.files:
        print(f"files it needs that git does not keep: {', '.join(found.files)} (their secrets never leave)")
    for note in found.notes:
        print(f"note: {note}")
    for server in found.servers:
        print(
            f"⚠️ your bot uses {server}: mendbot cannot start that server in its sandbox — your bot starts "
            "there (checks, smoke load, replay) only if it can without it"
        )
    print(f"wrote {written.name}")
    if ignore_data_dir(root.resolve()):
        print(f"kept {DATA_DIR}/ out of git (.gitignore)")
    if check:
        print(
            "starting your bot in the sandbox on its committed HEAD, as mendbot will (its checks, its start)…"
        )
        for line in check_base(written):
            print(line)
    print(
        f"one thing left: put your dev server's and channel's ids and your Discord user id in "
        f'{written.name}, commit it (`git add {written.name} .gitignore && git commit -m "Add mendbot"`: '
        f"fixes start from your committed main, and changes not committed hold deploys back), then run "
        f"`mendbot attach -- {program}`"
    )
    return 0


def ignore_data_dir(root: Path) -> bool:
    """Put mendbot's data directory in the repository's .gitignore (made if there is none), after the
    lines already there; whether a line was added (none when git ignores it already). Its database and
    worktrees are never part of the bot: left untracked, they would make the tree look changed."""
    if _git(root, "check-ignore", "-q", f"{DATA_DIR}/mendbot.db").returncode == 0:
        return False
    path = root / ".gitignore"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    path.write_text(f"{text}{DATA_DIR}/\n", encoding="utf-8")
    return True
