"""The handlers the source declares, read with `ast`, kinds spelled as the recorder spells them.

The handler map the running bot keeps (bot/observe/handlers.py) is read off loaded cogs: a view, a
select, a modal or a button class is not on any cog — it exists once a command sends it — so a
complaint about "the next button" or "the feedback form" had no handler to lead to, and its evidence
pack had no suspects when nothing failed. The source says what they are before anything runs:

- `view:<Class.method>` for the methods a `ui.button`/`ui.select` decorator makes into items of
  a `View`, the `callback` of an item class (`Button`, `Select`, `DynamicItem` subclasses), and a
  view's `interaction_check`; `modal:<Class.on_submit>` for a `Modal`;
- and, for a repository no running bot has mapped (a bot mendbot has not seen start, the
  localisation bench's real bots), what the running map would hold: `app:` (slash commands, groups,
  `GroupCog`s, context menus), `command:` (prefix and hybrid commands and groups), `listener:`
  (`Cog.listener`, `@bot.event`, a bot class's own `on_*`), `task:` (`tasks.loop` bodies and their
  `before_loop`/`after_loop`), `autocomplete:<command>.<option>`, `check:<predicate>` (check
  factories' predicates, `commands.check(f)`, a cog's `cog_check`), `cog:<Cog>.cog_load`/`cog_unload`,
  and `converter:<Class>`.

Names follow discord.py's defaults (a command is named after its function, a `GroupCog` after its
class in kebab case, a context menu after its function in title case). Classes are classified by
their bases, through the repository's own base classes. Everything is syntactic: a handler made at
run time by code that builds names is not found, and nothing found is run.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mendbot.db import handlers as handler_queries
from mendbot.db.core import Connection
from mendbot.db.handlers import HandlerLocation
from mendbot.improve.evidence import dataflow
from mendbot.improve.evidence.source_index import ModuleIndex, read_module, resolve, resolve_class

__all__ = [
    "ON_THE_COG",
    "class_family",
    "declared_handlers",
    "every_handler",
    "family",
    "module_handlers",
    "repository_files",
]

# The families the running map reads off a loaded cog; what the source adds beside it is the rest.
ON_THE_COG = frozenset({"app", "command", "listener", "task", "autocomplete", "check", "cog"})

_MAX_FILES = 400  # a repository's files scanned at most, in path order
_SKIPPED_DIRS = frozenset(
    {
        "tests",
        "test",
        "docs",
        "build",
        "dist",
        "node_modules",
        "site-packages",
        "venv",
        "env",
        "migrations",
        "bench",
    }
)
_KEBAB = re.compile(r"(?<!^)(?=[A-Z])")
_VIEW_DECORATORS = frozenset(
    {"button", "select", "role_select", "user_select", "channel_select", "mentionable_select"}
)
_FAMILIES = {
    "View": "view",
    "LayoutView": "view",
    "ActionRow": "view",  # components v2: decorated buttons and selects live in rows and containers
    "Container": "view",
    "Modal": "modal",
    "Button": "item",
    "Select": "item",
    "RoleSelect": "item",
    "UserSelect": "item",
    "ChannelSelect": "item",
    "MentionableSelect": "item",
    "DynamicItem": "item",
    "Item": "item",
    "Cog": "cog",
    "GroupCog": "cog",
    "Bot": "bot",
    "AutoShardedBot": "bot",
    "Client": "bot",
    "AutoShardedClient": "bot",
    "Converter": "converter",
    "Transformer": "converter",
    "Group": "group",
}


def _call_name(node: ast.expr) -> tuple[str, ast.Call | None]:
    """(dotted name, the call) of a decorator or a call: `commands.command(name="x")` →
    ("commands.command", call)."""
    if isinstance(node, ast.Call):
        return dataflow.dotted(node.func) or "", node
    return dataflow.dotted(node) or "", None


def _string(call: ast.Call | None, keyword: str = "name", position: int = 0) -> str | None:
    """A string constant given as `keyword=` or as the positional argument at `position`."""
    if call is None:
        return None
    for given in call.keywords:
        if (
            given.arg == keyword
            and isinstance(given.value, ast.Constant)
            and isinstance(given.value.value, str)
        ):
            return given.value.value
    if len(call.args) > position:
        value = call.args[position]
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value.value
    return None


@dataclass
class _Scope:
    """A module's or a class's body as it is read: what the class is, and the commands, task loops
    and groups already declared in it (a subcommand, a loop's hook and an autocomplete callback name
    them)."""

    prefix: str
    family: str | None = None
    cog: str = ""
    group: tuple[str, str] | None = None  # (app or command, the group's qualified name)
    commands: dict[str, tuple[str, str]] = field(default_factory=dict)  # function → (family, label)
    groups: dict[str, tuple[str, str]] = field(default_factory=dict)  # attribute → (family, label)


class _Scanner:
    """One module's handlers; `modules` to classify classes through bases defined elsewhere."""

    def __init__(self, module: ModuleIndex, modules: dict[str, ModuleIndex]) -> None:
        self.module = module
        self.modules = modules
        self.found: list[HandlerLocation] = []

    def add(self, kind: str, qualname: str, cog: str = "", module: ModuleIndex | None = None) -> None:
        module = module or self.module
        unit = module.functions.get(qualname)
        if unit is not None:
            line = getattr(unit.node, "lineno", unit.start)
            self.found.append(HandlerLocation(kind, module.path, qualname, line, cog))

    def family(self, class_node: ast.ClassDef, module: ModuleIndex, depth: int = 0) -> str | None:
        """What a class is to discord.py, by its bases (through the repository's own classes)."""
        for base in class_node.bases:
            target = base.value if isinstance(base, ast.Subscript) else base  # DynamicItem[Button]
            name = dataflow.dotted(target) or ""
            if depth < 6:
                defined = resolve_class(name, module, self.modules) if name else None
                if defined is not None and defined[0] in self.modules:
                    node = self.modules[defined[0]].classes.get(defined[1])
                    if node is not None and node is not class_node:
                        found = self.family(node, self.modules[defined[0]], depth + 1)
                        if found is not None:
                            return found
            tail = name.rsplit(".", 1)[-1]
            if tail in _FAMILIES:
                if tail == "Group" and not name.startswith(("app_commands", "discord.app_commands")):
                    continue
                return _FAMILIES[tail]
        return None

    def scan(self) -> list[HandlerLocation]:
        tree = self.module.tree
        if tree is None:
            return []
        self._scope(tree.body, _Scope(""))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self._check_factory(node)
            if isinstance(node, ast.Call):
                self._context_menu(node)
        unique = {(h.kind, h.path, h.qualname): h for h in self.found}
        return [unique[key] for key in sorted(unique)]

    def _qualname(self, node: ast.AST) -> str | None:
        for qualname, unit in self.module.functions.items():
            if unit.node is node:
                return qualname
        return None

    def _scope(self, body: list[ast.stmt], scope: _Scope) -> None:
        """The handlers of a module's or a class's body."""
        scope.groups.update(self._class_groups(body, scope.group))
        for node in body:
            if isinstance(node, ast.ClassDef):
                self._class(node, scope.prefix)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self._function(node, scope)

    def _class_groups(
        self, body: list[ast.stmt], group: tuple[str, str] | None
    ) -> Iterable[tuple[str, tuple[str, str]]]:
        """`name = app_commands.Group(name="tags")` in a body: name → ("app", "tags")."""
        for node in body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                name, call = _call_name(node.value)
                if name.rsplit(".", 1)[-1] == "Group" and "app_commands" in name:
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            label = _string(call) or target.id
                            yield target.id, ("app", f"{group[1]} {label}" if group else label)

    def _class(self, node: ast.ClassDef, prefix: str) -> None:
        qualname = prefix + node.name
        family = self.family(node, self.module)
        cog = ""
        group: tuple[str, str] | None = None
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        named = keywords.get("name")
        given = named.value if isinstance(named, ast.Constant) and isinstance(named.value, str) else None
        if family == "cog":
            cog = given or node.name
            if any((dataflow.dotted(b) or "").endswith("GroupCog") for b in node.bases):
                label = keywords.get("group_name")
                if isinstance(label, ast.Constant) and isinstance(label.value, str):
                    group = ("app", label.value)
                else:
                    group = ("app", given or _KEBAB.sub("-", node.name).lower())
        elif family == "group":
            group = ("app", given or _KEBAB.sub("-", node.name).lower())
        methods = {
            item.name: item for item in node.body if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        if family == "view":
            for name in ("interaction_check", "on_error"):
                if name in methods:
                    self.add(f"view:{qualname}.{name}", f"{qualname}.{name}")
        elif family == "item":
            for name in ("callback", "interaction_check"):
                if name in methods:
                    self.add(f"view:{qualname}.{name}", f"{qualname}.{name}")
        elif family == "modal":
            for name in ("on_submit", "on_error"):
                if name in methods:
                    kind = "modal" if name == "on_submit" else "view"
                    self.add(f"{kind}:{qualname}.{name}", f"{qualname}.{name}")
        elif family == "cog":
            for hook in ("cog_load", "cog_unload"):
                if hook in methods:
                    self.add(f"cog:{cog}.{hook}", f"{qualname}.{hook}", cog)
            for hook in ("cog_check", "interaction_check", "bot_check"):
                if hook in methods:
                    self.add(f"check:{qualname}.{hook}", f"{qualname}.{hook}", cog)
        elif family == "bot":
            for name in methods:
                if name.startswith("on_") and name != "on_error":
                    self.add(f"listener:{name}", f"{qualname}.{name}")
        elif family == "converter":
            for name in ("convert", "transform"):
                if name in methods:
                    self.add(f"converter:{qualname}", f"{qualname}.{name}")
        self._scope(node.body, _Scope(qualname + ".", family, cog, group))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef, scope: _Scope) -> None:
        prefix, family, cog, group = scope.prefix, scope.family, scope.cog, scope.group
        commands, groups = scope.commands, scope.groups
        qualname = prefix + node.name
        for decorator in node.decorator_list:
            name, call = _call_name(decorator)
            head, _, tail = name.rpartition(".")
            # `ui.button` as the library's module names it, or imported by itself (`button`)
            if family == "view" and tail in _VIEW_DECORATORS and head.rsplit(".", 1)[-1] in ("ui", ""):
                self.add(f"view:{qualname}", qualname)
            elif tail in ("command", "hybrid_command", "group", "hybrid_group") and head in groups:
                kind, parent = groups[head]
                label = f"{parent} {_string(call) or node.name}"
                commands[node.name] = (kind, label)
                self.add(f"{kind}:{label}", qualname, cog)
            elif tail in ("command", "group") and head in commands:
                kind, parent = commands[head]
                label = f"{parent} {_string(call) or node.name}"
                commands[node.name] = (kind, label)
                self.add(f"{kind}:{label}", qualname, cog)
            elif tail in ("command", "hybrid_command", "group", "hybrid_group"):
                app = head.endswith("app_commands") or head.endswith("tree")
                kind = "app" if app else "command"
                label = _string(call) or node.name
                if app and group is not None:
                    label = f"{group[1]} {label}"
                commands[node.name] = (kind, label)
                self.add(f"{kind}:{label}", qualname, cog)
            elif tail == "context_menu":
                self.add(f"app:{_string(call) or node.name.title()}", qualname, cog)
            elif tail == "listener" and head.endswith("Cog"):
                self.add(f"listener:{_string(call) or node.name}", qualname, cog)
            elif tail == "event" and head:
                self.add(f"listener:{node.name}", qualname, cog)
            elif tail == "loop" and head.endswith("tasks"):
                commands[node.name] = ("task", node.name)
                self.add(f"task:{node.name}", qualname, cog)
            elif tail in ("before_loop", "after_loop", "error") and commands.get(head, ("",))[0] == "task":
                self.add(f"task:{head}", qualname, cog)
            elif tail == "autocomplete" and head in commands and call is not None:
                option = _string(call)
                if option is not None:
                    self.add(f"autocomplete:{commands[head][1]}.{option}", qualname, cog)
            elif tail == "check" and call is not None and call.args:
                self._check_callable(call.args[0], prefix, cog)
        # `@app_commands.autocomplete(city=city_names)` sits above the command it completes: its
        # label is known once the command's decorator is read, so it is read again now.
        for decorator in node.decorator_list:
            name, call = _call_name(decorator)
            if name.endswith("app_commands.autocomplete") and call is not None and node.name in commands:
                self._named_callbacks(call, prefix, commands[node.name][1], cog)

    def _named_callbacks(self, call: ast.Call, prefix: str, command: str, cog: str) -> None:
        """`app_commands.autocomplete(option=function)` on the command labelled `command`: each
        option's callback."""
        for given in call.keywords:
            if given.arg is None:
                continue
            where = self._callable(given.value, prefix)
            if where is not None:
                self.add(f"autocomplete:{command}.{given.arg}", where, cog)

    def _callable(self, node: ast.expr, prefix: str) -> str | None:
        """The qualified name, in this module, of a function a decorator argument names."""
        name = dataflow.dotted(node)
        if name is None:
            return None
        for candidate in (prefix + name, name, name.removeprefix("self.")):
            if candidate in self.module.functions:
                return candidate
        return None

    def _check_callable(self, node: ast.expr, prefix: str, cog: str) -> None:
        """`commands.check(predicate)` above a command: the predicate (here, or imported from another
        module of the repository), named as Python names it."""
        where = self._callable(node, prefix)
        if where is not None:
            self.add(f"check:{self._python_qualname(where)}", where, cog)
            return
        name = dataflow.dotted(node)
        found = resolve(name, self.module, self.modules) if name else None
        if found is not None and found[0] in self.modules:
            self.add(f"check:{found[1]}", found[1], cog, self.modules[found[0]])

    def _python_qualname(self, qualname: str) -> str:
        """A function's qualified name as Python spells it (`factory.<locals>.predicate`)."""
        parts = qualname.split(".")
        spelled = [parts[0]]
        for index in range(1, len(parts)):
            enclosing = ".".join(parts[:index])
            unit = self.module.functions.get(enclosing)
            local = unit is not None and unit.kind == "function"
            spelled.append(f"<locals>.{parts[index]}" if local else parts[index])
        return ".".join(spelled)

    def _check_factory(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        """A function returning `commands.check(predicate)` (or `app_commands.check`, `check_any`) of a
        predicate it defines: the predicate is `check:<factory>.<locals>.<predicate>`."""
        outer = self._qualname(node)
        if outer is None:
            return
        inner = {item.name for item in node.body if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)}
        for item in ast.walk(node):
            if not isinstance(item, ast.Return) or not isinstance(item.value, ast.Call):
                continue
            name, call = _call_name(item.value)
            if name.rsplit(".", 1)[-1] not in ("check", "check_any") or call is None:
                continue
            for argument in call.args:
                if isinstance(argument, ast.Name) and argument.id in inner:
                    qualname = f"{outer}.{argument.id}"
                    self.add(f"check:{self._python_qualname(qualname)}", qualname)

    def _context_menu(self, call: ast.Call) -> None:
        """`app_commands.ContextMenu(name="Report", callback=self.report)`: the callback is `app:Report`."""
        name, _ = _call_name(call)
        if name.rsplit(".", 1)[-1] != "ContextMenu":
            return
        label = _string(call)
        callback = next((k.value for k in call.keywords if k.arg == "callback"), None)
        if label is None or callback is None:
            return
        target = dataflow.dotted(callback) or ""
        method = target.removeprefix("self.")
        for qualname in self.module.functions:
            if qualname == method or qualname.endswith(f".{method}"):
                self.add(f"app:{label}", qualname)
                return


def class_family(module: ModuleIndex, qualname: str, modules: dict[str, ModuleIndex]) -> str | None:
    """What a class of `module` is to discord.py — `view`, `item`, `modal`, `cog`, `bot`, `converter`,
    `group` — by its bases, through the repository's own classes in `modules`; None for anything else."""
    node = module.classes.get(qualname)
    return _Scanner(module, modules).family(node, module) if node is not None else None


_SCANNED: dict[str, tuple[ModuleIndex, list[HandlerLocation]]] = {}


def module_handlers(module: ModuleIndex, modules: dict[str, ModuleIndex]) -> list[HandlerLocation]:
    """The handlers one module declares (`modules`: the other parsed files, for base classes), kept
    while the parsed module is the same (bot/improve/evidence/source_index.py caches it by its file's
    modification time and size)."""
    cached = _SCANNED.get(module.path)
    if cached is not None and cached[0] is module:
        return cached[1]
    if len(_SCANNED) > 1024:
        _SCANNED.clear()
    found = _Scanner(module, modules).scan()
    _SCANNED[module.path] = (module, found)
    return found


def repository_files(repo_root: Path, limit: int = _MAX_FILES) -> list[str]:
    """The repository's Python files that may hold a bot's handlers: not tests, documentation, build
    output or environments, nor hidden folders; in path order, at most `limit`."""
    found: list[str] = []
    root = str(repo_root)
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d for d in dirs if not d.startswith((".", "__")) and d not in _SKIPPED_DIRS and "venv" not in d
        )
        relative = os.path.relpath(folder, root)
        for name in sorted(files):
            if name.endswith(".py") and not name.startswith("test_"):
                found.append(name if relative == "." else f"{relative}/{name}".replace(os.sep, "/"))
                if len(found) >= limit:
                    return found
    return found


def _local_packages(repo_root: Path) -> tuple[set[str], set[str]]:
    """The top-level names a module of the repository may import from it: at its root, and under
    `src/` (a `src` layout)."""
    found: list[set[str]] = []
    for folder in (repo_root, repo_root / "src"):
        try:
            found.append({name.removesuffix(".py") for name in os.listdir(folder)})
        except OSError:
            found.append(set())
    return found[0], found[1]


def _imported(module: ModuleIndex, local: tuple[set[str], set[str]]) -> set[str]:
    """The repository paths a module imports (only names the repository has: `local`)."""
    paths: set[str] = set()
    for source, member in module.imports.values():
        top = source.split(".", 1)[0]
        if top in local[0]:
            base = source.replace(".", "/")
        elif top in local[1]:
            base = "src/" + source.replace(".", "/")
        else:
            continue  # discord, the standard library: not the repository's
        paths.update({f"{base}.py", f"{base}/__init__.py"})
        if member is not None:
            paths.add(f"{base}/{member}.py")
    return paths


def _mendbots_own(repo_root: Path) -> str | None:
    """The folder of mendbot's own package when `repo_root` is mendbot's repository (its sample bot's):
    mendbot's cogs and buttons are never the handlers a complaint about the bot means."""
    try:
        marker = (repo_root / "bot" / "__init__.py").read_text(encoding="utf-8", errors="replace")[:200]
    except OSError:
        return None
    return "bot/" if marker.startswith('"""mendbot:') else None


def declared_handlers(repo_root: Path, paths: Sequence[str] | None = None) -> list[HandlerLocation]:
    """The handlers the repository's source declares: in `paths` and the repository modules they
    import (two levels), or, without `paths`, in every file `repository_files` lists — never in
    mendbot's own package, in mendbot's own repository."""
    own = _mendbots_own(repo_root)
    modules: dict[str, ModuleIndex] = {}
    if paths is None:
        for path in repository_files(repo_root):
            if own is not None and path.startswith(own):
                continue
            module = read_module(repo_root, path)
            if module is not None and module.tree is not None and "discord" in "\n".join(module.lines[:80]):
                modules[path] = module
    else:
        frontier = set(paths)
        local = _local_packages(repo_root)
        for _ in range(3):
            following: set[str] = set()
            for path in sorted(frontier):
                if path in modules or len(modules) >= _MAX_FILES:
                    continue
                module = read_module(repo_root, path)
                if module is None or module.tree is None:
                    continue
                modules[path] = module
                following |= _imported(module, local)
            frontier = following - set(modules)
    found: dict[tuple[str, str, str], HandlerLocation] = {}
    for path in sorted(modules):
        if own is not None and path.startswith(own):
            continue
        for handler in module_handlers(modules[path], modules):
            found.setdefault((handler.kind, handler.path, handler.qualname), handler)
    return [found[key] for key in sorted(found)]


def family(kind: str) -> str:
    """The part of a bot a kind records, as people tell parts apart: `command` (prefix and slash
    commands, converters), `context` (a context menu: Discord lets only their names have capitals),
    `view`, `modal`, `autocomplete`, `task`, `listener`, `check`, `cog` (its load and unload hooks)."""
    prefix, _, name = kind.partition(":")
    if prefix == "app" and name != name.lower():
        return "context"
    if prefix in ("app", "command", "converter"):
        return "command"
    return prefix


async def every_handler(db: Connection, roots: Sequence[Path]) -> list[HandlerLocation]:
    """The handler map the running bot keeps, and beside it what the source of `roots` (the checkouts
    whose code runs here) declares that no loaded cog holds: views, buttons, selects and modals of the
    mapped files and the modules they import — or, where nothing is mapped, every handler the
    repository declares. The running map wins where both name one function."""
    mapped = await handler_queries.every(db)
    files = sorted({h.path for h in mapped})
    found = {(h.kind, h.path, h.qualname): h for h in mapped}
    for root in roots:
        declared = declared_handlers(root, [f for f in files if (root / f).is_file()] if mapped else None)
        for handler in declared:
            if handler.path in files and family(handler.kind) in ON_THE_COG:
                continue  # a loaded cog's own handlers: the running map knows them exactly
            found.setdefault((handler.kind, handler.path, handler.qualname), handler)
    return [found[key] for key in sorted(found)]
