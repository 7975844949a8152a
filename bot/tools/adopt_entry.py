"""Which program of a bot's repository starts the bot, read with `ast` (for `mendbot adopt`): the command
`mendbot attach` runs.

A module starts a bot when the code that runs as it runs as a program — its module level and its `if
__name__ == "__main__":` block — reaches a call that starts one (`bot.run(token)`, `asyncio.run(main())`,
`await bot.start(token)`), directly or through functions of the repository it calls or names: its own
(`main()`, `asyncio.run(main())`, `parser.set_defaults(func=start)`), or imported from another of its
modules (`from shelfbot.cli import main`). A command line built with click reaches its commands through
the group (`@main.command() def start()`): the words that choose them go into the command
(`python -m shelfbot start`). A click command the group only gathers when it runs (`group.add_command(cmd)`
over modules it imports by name) is found by itself: a `@click.command()` that starts a bot, run through
its package's `__main__.py` (`python -m ministatus start`).

The entry point is then a root script by its usual names first, then any root script, then a root
`__main__.py` (`python .`), then a package's `__main__.py` (`python -m pkg`).
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

__all__ = ["SourceModule", "attr_name", "calls", "entry_point", "top_level"]

_ENTRY_NAMES = ("bot.py", "main.py", "index.py", "run.py", "app.py", "launcher.py", "start.py")
_STARTS = ("run", "start")  # `bot.run(token)`, `asyncio.run(main())`, `bot.start(token)`
_REGISTERS = ("command", "group")  # click: `@main.command()` puts a command under the group `main`

Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass
class SourceModule:
    """One Python file of the repository."""

    path: PurePosixPath  # repository path
    name: str  # module name as the program imports it
    tree: ast.Module


def attr_name(node: ast.expr) -> str:
    """`commands.Bot` → "Bot", `Bot` → "Bot"."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Subscript):  # commands.Bot[...] is not a thing, but Generic[...] bases are
        return attr_name(node.value)
    return ""


def calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def top_level(tree: ast.Module) -> list[ast.stmt]:
    """Statements that run when the module runs as a program: module level and `if __name__ == …`."""
    found: list[ast.stmt] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and "__name__" in ast.unparse(stmt.test):
            found.extend(stmt.body)
        elif not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.append(stmt)
    return found


def entry_point(modules: list[SourceModule]) -> tuple[list[str], SourceModule] | None:
    """The command that starts the bot (`["python", "bot.py"]`, `["python", "-m", "pkg", "start"]`) and
    its module, or None when no module starts one."""
    index = _Index(modules)
    found: list[tuple[SourceModule, list[str]]] = []
    for module in modules:
        words = index.words_to_a_start(module)
        if words is not None:
            found.append((module, words))
    scripts = [(m, w) for m, w in found if len(m.path.parts) == 1 and m.path.name != "__main__.py"]
    scripts.sort(
        key=lambda f: (
            _ENTRY_NAMES.index(f[0].path.name) if f[0].path.name in _ENTRY_NAMES else 99,
            f[0].path.name,
        )
    )
    for module, words in scripts:
        return ["python", str(module.path), *words], module
    for module, words in found:
        if module.path == PurePosixPath("__main__.py"):
            return ["python", ".", *words], module  # `python -m __main__` is no way to run it
    for module, words in found:
        if module.path.name == "__main__.py":
            return ["python", "-m", module.name.removesuffix(".__main__"), *words], module
    return index.gathered_command()


def _starts_a_bot(body: list[ast.stmt]) -> bool:
    """Whether `body` calls what starts a bot: `x.run(…)` or `x.start(…)` with what to run or start (a
    `thread.start()` or `loop.start()` has nothing)."""
    return any(
        isinstance(call.func, ast.Attribute) and call.func.attr in _STARTS and (call.args or call.keywords)
        for stmt in body
        for call in calls(stmt)
    )


class _Index:
    """The repository's top-level functions, what each module imports of them, and the click commands
    registered on each."""

    def __init__(self, modules: list[SourceModule]) -> None:
        self.modules = {module.name: module for module in modules}
        self.functions: dict[str, dict[str, Function]] = {
            module.name: {
                node.name: node
                for node in module.tree.body
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            }
            for module in modules
        }
        # module → local name → (module, function), or (module, None) for a module imported under that name
        self.imported: dict[str, dict[str, tuple[str, str | None]]] = {
            module.name: dict(self._imports(module)) for module in modules
        }
        # (module, group function) → each (module, function) registered on it, with its command's name
        self.commands: dict[tuple[str, str], list[tuple[tuple[str, str], str]]] = {}
        for module in modules:
            for node in self.functions[module.name].values():
                for group, word in self._registrations(module.name, node):
                    self.commands.setdefault(group, []).append(((module.name, node.name), word))

    def _imports(self, module: SourceModule) -> Iterator[tuple[str, tuple[str, str | None]]]:
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname and alias.name in self.modules:
                        yield alias.asname, (alias.name, None)
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(module, node)
                for alias in node.names:
                    local = alias.asname or alias.name
                    if f"{source}.{alias.name}" in self.modules:
                        yield local, (f"{source}.{alias.name}", None)
                    elif alias.name in self.functions.get(source, {}):
                        yield local, (source, alias.name)

    def _function(self, module: str, name: str) -> tuple[str, str] | None:
        """The repository's function `name` means in `module`: its own, or one it imports."""
        if name in self.functions[module]:
            return module, name
        owner, function = self.imported[module].get(name, ("", None))
        return (owner, function) if function is not None else None

    def _registrations(self, module: str, node: Function) -> Iterator[tuple[tuple[str, str], str]]:
        """The groups `node` is a command of (`@main.command()`, `@main.command("go")`), and its name there
        (click's: the function's, with dashes for underscores)."""
        for decorator in node.decorator_list:
            if not (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr in _REGISTERS
                and isinstance(decorator.func.value, ast.Name)
            ):
                continue
            group = self._function(module, decorator.func.value.id)
            if group is None:
                continue
            named = [a.value for a in decorator.args[:1] if isinstance(a, ast.Constant)]
            named += [
                k.value.value
                for k in decorator.keywords
                if k.arg == "name" and isinstance(k.value, ast.Constant)
            ]
            word = next((name for name in named if isinstance(name, str)), node.name.replace("_", "-"))
            yield group, word

    def _named(self, module: str, body: list[ast.stmt]) -> Iterator[tuple[str, str]]:
        """The repository's functions `body` calls or names (`main()`, `func=start`, `cli.main()`)."""
        for stmt in body:
            for node in ast.walk(stmt):
                if isinstance(node, ast.Name):
                    found = self._function(module, node.id)
                    if found is not None:
                        yield found
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    owner, function = self.imported[module].get(node.value.id, ("", ""))
                    if function is None and node.attr in self.functions[owner]:
                        yield owner, node.attr

    def gathered_command(self) -> tuple[list[str], SourceModule] | None:
        """A `@click.command()` that starts a bot, in a package whose `__main__.py` runs a command line:
        the group gathers it when it runs, which no import says (`python -m pkg start`)."""
        for name, functions in self.functions.items():
            for node in functions.values():
                word = _click_command(node)
                if word is None or not _starts_a_bot(node.body):
                    continue
                package = name.split(".")[0]
                main = self.modules.get(f"{package}.__main__")
                if main is not None and any(calls(stmt) for stmt in top_level(main.tree)):
                    return ["python", "-m", package, word], main
        return None

    def words_to_a_start(self, module: SourceModule) -> list[str] | None:
        """The words after the program that make `module` start a bot ([] when it does by itself), or
        None when it never does: the code that runs as it runs, then each function it reaches, nearest
        first."""
        # (module, the function or None for the top level, its body, the words that reach it)
        queue: deque[tuple[str, str | None, list[ast.stmt], list[str]]] = deque(
            [(module.name, None, top_level(module.tree), [])]
        )
        seen: set[tuple[str, str]] = set()
        while queue:
            owner, function, body, words = queue.popleft()
            if _starts_a_bot(body):
                return words
            reached = [(target, words) for target in self._named(owner, body)]
            if function is not None:
                reached += [
                    (target, [*words, word]) for target, word in self.commands.get((owner, function), [])
                ]
            for target, path in reached:
                if target not in seen:
                    seen.add(target)
                    queue.append((target[0], target[1], self.functions[target[0]][target[1]].body, path))
        return None


def _click_command(node: Function) -> str | None:
    """The name of the click command `node` is (`@click.command()`, `@click.command("go")`), or None."""
    for decorator in node.decorator_list:
        if (
            isinstance(decorator, ast.Call)
            and isinstance(decorator.func, ast.Attribute)
            and decorator.func.attr == "command"
            and isinstance(decorator.func.value, ast.Name)
            and decorator.func.value.id == "click"
        ):
            named = [a.value for a in decorator.args[:1] if isinstance(a, ast.Constant)]
            named += [
                k.value.value
                for k in decorator.keywords
                if k.arg == "name" and isinstance(k.value, ast.Constant)
            ]
            return next((n for n in named if isinstance(n, str)), node.name.replace("_", "-"))
    return None


def _absolute(module: SourceModule, node: ast.ImportFrom) -> str:
    """The module an import names (`from .cli import main` in `shelfbot/__main__.py`: `shelfbot.cli`)."""
    if not node.level:
        return node.module or ""
    package = module.name.split(".") if module.path.name == "__init__.py" else module.name.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])
