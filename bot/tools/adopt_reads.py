"""What a bot's code reads, found with `ast` for `mendbot adopt` (bot/tools/adopt.py): its token's
environment variable (followed through assignments and the bot's own functions, or a key of an untracked
file it reads), the other variables it reads, the files it keeps its state in (the SQLite files it names,
the JSON files it names and writes), the files it needs that git does not keep (`.env`, `config.json`, a
`config.py` kept out by `.gitignore`), and the servers it needs that mendbot cannot start (MongoDB, Redis,
PostgreSQL, MariaDB/MySQL, by their drivers and variables).
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path, PurePosixPath

from dotenv import dotenv_values

from mendbot.tools.adopt_entry import SourceModule, attr_name, calls
from mendbot.trust.host_files import MAX_BYTES, file_kind, secret_values, token_keys

__all__ = [
    "CONFIG_FILE",
    "DATA_DIR",
    "AdoptError",
    "candidate_files",
    "data_files",
    "env_reads",
    "file_keys",
    "needed_files",
    "servers",
    "token_and_where",
]

CONFIG_FILE = "mendbot.yaml"
DATA_DIR = ".mendbot"  # mendbot.yaml's data_dir: its database, logs and worktrees, never committed
_CONFIG_KINDS = (
    "dotenv",
    "json",
    "toml",
    "yaml",
)  # files a bot reads its settings from (a config.py: imported)
_DOTENV_READERS = ("load_dotenv", "dotenv_values")
# Servers a bot may need that mendbot cannot start in its sandbox: the drivers that show it (imports,
# requirements) and words of the variables that point at one (DATABASE_URL, MARIADB_HOST, REDIS_URL).
_SERVERS = (
    ("MongoDB", ("motor", "pymongo", "beanie", "odmantic", "mongoengine"), ("MONGO",)),
    ("Redis", ("redis", "aioredis", "coredis"), ("REDIS",)),
    ("PostgreSQL", ("asyncpg", "psycopg", "psycopg2", "psycopg2-binary"), ("POSTGRES", "PGHOST")),
    ("MariaDB/MySQL", ("aiomysql", "asyncmy", "pymysql", "mysqlclient", "mariadb"), ("MYSQL", "MARIADB")),
)
_DATABASE_VARIABLES = {"DATABASE_URL", "DB_URL", "DB_HOST", "DATABASE_HOST", "DB_URI", "DATABASE_URI"}
_REQUIREMENT = re.compile(r"^\s*[\"']?([A-Za-z0-9][A-Za-z0-9._-]*)", re.M)
_DATA_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_WRITERS = ("dump", "write_text", "write_bytes")  # json.dump(state, file), Path.write_text(json.dumps(…))
_WRITE_MODE = re.compile(r"^[rbt]*[wax][rbt+]*$|^[rbt]*\+[rbt]*$")
_NOT_THE_BOT = ("node_modules", "__pycache__", "venv", "env", "site-packages")
_MAX_WALKED = 20_000  # files and directories looked at to find a bare name in the working tree


class AdoptError(Exception):
    """The repository cannot be adopted as it is; the message is the whole explanation."""


def _env_name(node: ast.expr | None, assignments: dict[str, ast.expr]) -> str | None:
    """The environment variable an expression reads, following a name to its assignment."""
    if node is None:
        return None
    if isinstance(node, ast.Name) and node.id in assignments:
        return _env_name(assignments[node.id], {k: v for k, v in assignments.items() if k != node.id})
    if isinstance(node, ast.Call) and attr_name(node.func) in ("getenv", "get"):
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    if isinstance(node, ast.Subscript) and "environ" in ast.unparse(node.value):
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            return key.value
    return None


def _reads_a_file(node: ast.expr | None, assignments: dict[str, ast.expr]) -> bool:
    if node is None:
        return False
    if isinstance(node, ast.Name) and node.id in assignments:
        return _reads_a_file(assignments[node.id], {k: v for k, v in assignments.items() if k != node.id})
    text = ast.unparse(node)
    return any(word in text for word in ("open(", "read_text(", "json.load", "config[", "read()"))


def _assignments(tree: ast.Module) -> dict[str, ast.expr]:
    found: dict[str, ast.expr] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            found[node.target.id] = node.value
    return found


def _token(modules: list[SourceModule]) -> tuple[str | None, str | None]:
    """(the token's environment variable, or what reads it from a file) — from the bot's run/start/login."""
    functions = {
        node.name: node
        for module in modules
        for node in ast.walk(module.tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    for module in modules:
        assignments = _assignments(module.tree)
        for call in calls(module.tree):
            if attr_name(call.func) not in ("run", "start", "login") or not call.args:
                continue
            argument = call.args[0]
            name = _env_name(argument, assignments) or _env_read_by(argument, assignments, functions)
            if name is not None:
                return name, None
            if _reads_a_file(argument, assignments):
                return None, f"{module.path}: {ast.unparse(argument)[:60]}"
    return None, None


def _env_read_by(
    node: ast.expr,
    assignments: dict[str, ast.expr],
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef],
) -> str | None:
    """The token's environment variable read inside a function of the repository that gives the token
    (`token = await read_token()` … `bot.start(token.get_secret_value())`): a variable named like a token
    that the function reads."""
    given = [
        assignments[name.id]
        for name in ast.walk(node)
        if isinstance(name, ast.Name) and name.id in assignments
    ]
    for call in [found for expression in (node, *given) for found in calls(expression)]:
        function = functions.get(attr_name(call.func))
        if function is None:
            continue
        read = [name for inner in calls(function) if (name := _env_name(inner, {})) is not None]
        read += [name for inner in ast.walk(function) if isinstance(inner, ast.Subscript)
                 if (name := _env_name(inner, {})) is not None]  # fmt: skip
        token = next((name for name in read if "TOKEN" in name.upper()), None)
        if token is not None:
            return token
    return None


def env_reads(modules: list[SourceModule]) -> list[str]:
    names = []
    for module in modules:
        for call in calls(module.tree):
            name = _env_name(call, {})
            if name is not None and name not in names:
                names.append(name)
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Subscript):
                name = _env_name(node, {})
                if name is not None and name not in names:
                    names.append(name)
    return names


def data_files(root: Path, modules: list[SourceModule]) -> list[str]:
    """The files the bot keeps its state in, as repository paths (a program runs from its root): the SQLite
    files the code names (`"data/shop.db"`, `f"{here}/database/database.db"`), and the JSON files it names
    and writes (`json.dump` into `open(ECONOMY, "w")`, a `write_text`) that are in the working tree, whether
    git keeps them or not, and hold no secret (a settings file it rewrites stays one of `bot.files`, its
    secrets replaced where it is copied). A bare name the code joins to a directory it computes is found
    where it is in the tree."""
    found: list[str] = []
    for module in modules:
        joins = [node for node in ast.walk(module.tree) if isinstance(node, ast.BinOp) and _a_path_join(node)]
        joined = {id(node.right): _joined(node) for node in joins}
        parents = {child: node for node in ast.walk(module.tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
                continue
            value = (joined.get(id(node)) or node.value).strip().lstrip("/").removeprefix("./")
            if " " in value or "\n" in value or len(value) > 200 or value in found:
                continue
            suffix = PurePosixPath(value).suffix  # not a bare `".db"` suffix
            if suffix in _DATA_SUFFIXES:
                found.append(_in_tree(root, value) or value)
            elif suffix == ".json" and _written(module.tree, node, parents):
                state = _in_tree(root, value)
                if state is not None and state not in found and not _holds_secrets(root / state):
                    found.append(state)
    return list(dict.fromkeys(found))


def _written(tree: ast.Module, literal: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether the code writes the file the string `literal` names: a write in the function it is in, or —
    when it is assigned (`ECONOMY = DATA / "economy.json"`, `self.path = …`) — in a function of the module
    that uses what it is assigned to."""
    scopes: list[ast.AST] = []
    bound: set[str] = set()
    node: ast.AST | None = literal
    while node is not None and not scopes:
        node = parents.get(node)
        if isinstance(node, ast.Assign | ast.AnnAssign) and not bound:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound = {attr_name(target) for target in targets} - {""}
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            scopes.append(node)
    if not scopes and not bound:
        scopes.append(tree)
    if bound:
        scopes += [
            function
            for function in ast.walk(tree)
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
            and any(
                (isinstance(used, ast.Name) and used.id in bound)
                or (isinstance(used, ast.Attribute) and used.attr in bound)
                for used in ast.walk(function)
            )
        ]
    return any(_writes(scope) for scope in scopes)


def _writes(scope: ast.AST) -> bool:
    """Whether `scope` itself (not the functions and classes it defines) writes a file: `json.dump`,
    `write_text`/`write_bytes`, or an `open` for writing."""
    own: list[ast.AST] = []
    pending = list(ast.iter_child_nodes(scope))
    while pending:
        node = pending.pop()
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            own.append(node)
            pending.extend(ast.iter_child_nodes(node))
    for call in (node for node in own if isinstance(node, ast.Call)):
        name = attr_name(call.func)
        if name in _WRITERS:
            return True
        if name == "open":
            modes = [*call.args, *(keyword.value for keyword in call.keywords if keyword.arg == "mode")]
            texts = [mode.value for mode in modes if isinstance(mode, ast.Constant)]
            if any(isinstance(text, str) and _WRITE_MODE.match(text) for text in texts):
                return True
    return False


def _in_tree(root: Path, name: str) -> str | None:
    """`name` as a file of the working tree (not a link, not mendbot's or git's): itself, or — for a bare
    name — the one file of that name in a directory of the tree (None when none or several are)."""
    if _a_state_file(root, name):
        return name
    if "/" in name:
        return None
    found: list[str] = []
    seen = 0
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(
            inner for inner in subdirectories if not inner.startswith(".") and inner not in _NOT_THE_BOT
        )
        seen += len(files) + len(subdirectories)
        if seen > _MAX_WALKED:
            break
        if name in files:
            relative = (Path(directory) / name).relative_to(root).as_posix()
            if _a_state_file(root, relative):
                found.append(relative)
    return found[0] if len(found) == 1 else None


def _a_state_file(root: Path, name: str) -> bool:
    path = root / name
    return (
        not name.startswith((f"{DATA_DIR}/", ".git/"))
        and path.is_file()
        and not path.is_symlink()
        and path.resolve().is_relative_to(root.resolve())
    )


def _holds_secrets(path: Path) -> bool:
    """Whether a JSON file holds a secret (or cannot be read to tell): then it is not state, copied as it
    is, but a file the bot needs, its secrets replaced."""
    try:
        if path.stat().st_size > MAX_BYTES:
            return False  # too large to be a settings file: state
        return bool(secret_values(path.name, path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        return True


def _a_path_join(node: ast.AST) -> bool:
    """`x / "data" / "shelf.db"`: a path built with `/` whose last part is a string."""
    return (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Div)
        and isinstance(node.right, ast.Constant)
        and isinstance(node.right.value, str)
    )


def _joined(node: ast.BinOp) -> str:
    """The string parts of a `/`-built path, joined (`data/shelf.db`); what is not a string is left out."""
    parts: list[str] = []
    current: ast.expr = node
    while isinstance(current, ast.BinOp) and isinstance(current.op, ast.Div):
        if isinstance(current.right, ast.Constant) and isinstance(current.right.value, str):
            parts.insert(0, current.right.value)
        current = current.left
    if isinstance(current, ast.Constant) and isinstance(current.value, str):
        parts.insert(0, current.value)
    return "/".join(parts)


def _config_names(modules: list[SourceModule]) -> set[str]:
    """The file names the code gives by a literal (`".env"`, `"config/settings.json"`, the last part of
    `root / "config" / ".env"`) that are of a kind a bot reads its settings from."""
    names: set[str] = set()
    for module in modules:
        joins = [node for node in ast.walk(module.tree) if isinstance(node, ast.BinOp) and _a_path_join(node)]
        joined = {id(node.right): _joined(node) for node in joins}
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                value = (joined.get(id(node)) or node.value).strip().removeprefix("./")
                if value and "\n" not in value and len(value) < 200 and file_kind(value) in _CONFIG_KINDS:
                    names.add(value)
    return names


def _imported_modules(modules: list[SourceModule]) -> set[str]:
    """Top-level names of every module the code imports (`config` of `from config import TOKEN`)."""
    found: set[str] = set()
    for module in modules:
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
    return found


def candidate_files(modules: list[SourceModule], roots: list[str], tracked: set[str]) -> list[str]:
    """Repository paths of the files the bot may read its settings from: its `.env`, those the code names
    by a literal (config.json, config/.env, settings.toml) — a bare name in any directory of the tree,
    since the code often joins it to one it computes — and the modules it imports (a config.py)."""
    names = _config_names(modules)
    names.add(".env")  # python-dotenv's, and the one a README asks for
    directories = sorted({str(PurePosixPath(path).parent) for path in tracked} | {"."})
    candidates: list[str] = []
    for name in sorted(names, key=lambda n: (n != ".env", n)):
        if "/" in name:
            candidates.append(name)
        else:
            candidates += [name if directory == "." else f"{directory}/{name}" for directory in directories]
    prefixes = ["", *(f"{root}/" for root in roots)]
    for name in sorted(_imported_modules(modules)):
        candidates += [f"{prefix}{name.replace('.', '/')}.py" for prefix in prefixes]
    return list(dict.fromkeys(candidates))


def needed_files(root: Path, candidates: list[str], tracked: set[str]) -> list[str]:
    """Of `candidates`, what is in the working tree and git does not keep: what the bot needs to start."""
    found: list[str] = []
    for candidate in candidates:
        path = root / candidate
        if (
            candidate in tracked
            or candidate.startswith((f"{DATA_DIR}/", ".git/"))
            or candidate == CONFIG_FILE
            or not path.is_file()
            or path.is_symlink()
            or not path.resolve().is_relative_to(root)
            or path.stat().st_size > MAX_BYTES
        ):
            continue
        found.append(candidate)
    return found


def token_and_where(
    root: Path, modules: list[SourceModule], candidates: list[str], tracked: set[str], needed: list[str]
) -> tuple[str, list[str]]:
    """The token's variable (or key), and notes on how it was found; AdoptError when it is read from a file
    mendbot cannot give a test token through. `needed` gains the file it is read from, if git keeps it."""
    token, from_file = _token(modules)
    notes = []
    if token is None or from_file is not None:
        # Read from one of the files it needs (`dotenv_values("config/.env")["BOT_TOKEN"]`), or from one
        # git keeps: that file's key with TOKEN in its name is the token's, and gets the loopback Discord's
        # token there (a file git keeps is then named too, for that).
        kept = [name for name in candidates if name in tracked and file_kind(name) in _CONFIG_KINDS]
        key, where = _token_key(root, [*needed, *kept])
        if key is not None and where is not None:
            token = key
            needed += [where] if where not in needed else []
            notes.append(
                f"your bot's token is read from {where} ({key}): a test one is put there in the sandbox"
            )
        elif from_file is not None:
            raise AdoptError(
                f"mendbot adopt: your bot reads its token from a file ({from_file}) that mendbot cannot "
                "read a token key from — read it from an environment variable "
                '(`os.environ["DISCORD_TOKEN"]`) or a .env key with TOKEN in its name, then adopt again'
            )
    if token is None:
        token = "DISCORD_TOKEN"
        notes.append("the token's variable was not found: DISCORD_TOKEN assumed (bot.token_env)")
    return token, notes


def _token_key(root: Path, files: list[str]) -> tuple[str | None, str | None]:
    """(the key with TOKEN in its name in one of `files`, the file) — one that says DISCORD or BOT first."""
    for name in files:
        try:
            keys = token_keys(name, (root / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        if keys:
            keys.sort(key=lambda key: not any(word in key.upper() for word in ("DISCORD", "BOT")))
            return keys[0], name
    return None, None


def file_keys(root: Path, files: list[str]) -> list[str]:
    """The keys of the dotenv files among `files` (what the bot reads from them: `MARIADB_HOST`)."""
    keys: list[str] = []
    for name in files:
        if file_kind(name) == "dotenv":
            keys += [key for key in dotenv_values(root / name) if key]
    return keys


def _requirements(root: Path) -> set[str]:
    """The distributions requirements*.txt and pyproject.toml name, lower case."""
    names: set[str] = set()
    texts = [
        path.read_text(encoding="utf-8", errors="replace") for path in sorted(root.glob("requirements*.txt"))
    ]
    if (root / "pyproject.toml").is_file():
        texts.append((root / "pyproject.toml").read_text(encoding="utf-8", errors="replace"))
    for text in texts:
        names.update(match.lower() for match in _REQUIREMENT.findall(text))
    return names


def servers(root: Path, modules: list[SourceModule], variables: list[str]) -> list[str]:
    """The database servers the bot uses, each with what shows it (`MariaDB/MySQL (asyncmy, MARIADB_HOST)`):
    its imports, its requirements, the variables it reads. A variable such as DATABASE_URL alone says
    only that there is one."""
    imported = {name.split(".")[0].lower() for name in _imported_modules(modules)}
    required = _requirements(root)
    if "mysql" in imported:  # mysql-connector's package: `import mysql.connector`
        imported.add("mysqlclient")
    found = []
    for server, drivers, words in _SERVERS:
        seen = sorted((imported | required) & set(drivers))
        seen += sorted({name for name in variables if any(word in name.upper() for word in words)})[:2]
        if seen:
            found.append(f"{server} ({', '.join(dict.fromkeys(seen))})")
    if not found:
        named = sorted({name for name in variables if name.upper() in _DATABASE_VARIABLES})
        if named:
            found.append(f"a database server ({', '.join(named)})")
    return found
