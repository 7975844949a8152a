"""Parsed source files for the ranking of suspects: functions, classes, definitions and imports.

`ModuleIndex` is one file of the repository, parsed once (and cached by the evidence): its
functions and methods, its classes (a settings object is a suspect too), its module-level constants
and instances (`MAX_ITEMS = 5`, `DEFAULTS = Settings()`: a value read as `settings.MAX_ITEMS` is a
suspect too), its top-level definitions and imports — relative ones resolved against the file's
package, as Python resolves them (`from . import helpers`, `from ..store import Store`) — and the
`ast` questions the ranking asks of them. A configuration file (JSON, YAML, TOML, INI) is indexed as
one unit named after the file, so it can be ranked like a function. `resolve` finds where a called or
read name is defined in the repository, through imports (`helpers.f`, `store.Store(...)`);
`method_of` and `class_of` follow expressions to their classes as Python would: `self.store.get` →
the `get` of the class `self.store` was made from (in `__init__` or anywhere, through a module or
not), `DEFAULTS.page_size` → the class of a module-level instance, `cart = shop.Cart()` then
`cart.total()` → `Cart.total`.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mendbot.improve.evidence import dataflow
from mendbot.trust.path_rules import secret_reason

__all__ = [
    "ModuleIndex",
    "SourceUnit",
    "class_lineage",
    "class_of",
    "method_of",
    "module_path",
    "read_module",
    "resolve",
    "resolve_class",
    "terms_of",
]

_IDENTIFIER = re.compile(r"[A-Za-z][a-z]*|[A-Z]+(?![a-z])|\d+")
_WORD = re.compile(r"[a-z0-9]+")


def terms_of(text: str) -> set[str]:
    """Lower-case word parts of identifiers and prose: `parseRate_v2` → {parse, rate, v2}."""
    words: set[str] = set()
    for token in re.findall(r"[A-Za-z0-9_]+", text):
        for part in token.split("_"):
            words.update(piece.lower() for piece in _IDENTIFIER.findall(part) if len(piece) >= 3)
            if len(part) >= 3:
                words.add(part.lower())
    return words


@dataclass
class SourceUnit:
    """A function or method, a class, or a whole configuration file: what can be ranked."""

    qualname: str
    start: int  # first line, decorators included
    end: int
    node: ast.AST
    class_name: str | None  # the class a method belongs to
    kind: str = "function"  # "function", "class" or "file"


class ModuleIndex:
    """One parsed source file: its functions, top-level definitions and imports."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.tree: ast.Module | None = None
        self.functions: dict[str, SourceUnit] = {}
        self.classes: dict[str, ast.ClassDef] = {}  # qualified name → node
        self.top_level: dict[str, ast.stmt] = {}
        self.imports: dict[str, tuple[str, str | None]] = {}  # local name → (module, attribute)
        if path.lower().endswith(dataflow.CONFIG_SUFFIXES):
            name = path.rsplit("/", 1)[-1]
            empty = ast.Module(body=[], type_ignores=[])
            self.functions[name] = SourceUnit(name, 1, max(1, len(self.lines)), empty, None, "file")
            return
        try:
            self.tree = ast.parse(text)
        except SyntaxError:
            self.tree = None
        if self.tree is not None:
            self._index(self.tree.body, prefix="", class_name=None, top=True)

    @functools.cached_property
    def config_names(self) -> list[str]:
        """Configuration file names the module mentions (walked once: the module is cached)."""
        return dataflow.config_files(self.tree) if self.tree is not None else []

    @functools.cached_property
    def property_names(self) -> frozenset[str]:
        """The names of the methods its classes read as attributes (`@property`, `cached_property`)."""
        found = set()
        for unit in self.functions.values():
            for decorator in getattr(unit.node, "decorator_list", []) if unit.class_name else []:
                name = dataflow.dotted(decorator) or ""
                if name.rsplit(".", 1)[-1] in ("property", "cached_property"):
                    found.add(unit.qualname.rsplit(".", 1)[-1])
        return frozenset(found)

    @functools.cached_property
    def dropped_calls(self) -> list[tuple[str, ast.Call]]:
        """(function, call) of every statement that is a call whose result is dropped: where a
        coroutine called without `await` would sit."""
        found = []
        for unit in self.functions.values():
            if unit.kind != "function":
                continue
            for node in ast.walk(unit.node):
                if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                    found.append((unit.qualname, node.value))
        return found

    @property
    def is_config(self) -> bool:
        """A configuration file, indexed as one unit."""
        return self.tree is None and any(f.kind == "file" for f in self.functions.values())

    def _index(self, body: list[ast.stmt], *, prefix: str, class_name: str | None, top: bool) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                qualname = prefix + node.name
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                self.functions[qualname] = SourceUnit(
                    qualname, start, node.end_lineno or node.lineno, node, class_name
                )
                self._index(node.body, prefix=qualname + ".", class_name=None, top=False)
                if top:
                    self.top_level[node.name] = node
            elif isinstance(node, ast.ClassDef):
                qualname = prefix + node.name
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                self.functions[qualname] = SourceUnit(
                    qualname, start, node.end_lineno or node.lineno, node, class_name, "class"
                )
                self.classes[qualname] = node
                self._index(node.body, prefix=qualname + ".", class_name=node.name, top=False)
                if top:
                    self.top_level[node.name] = node
            elif top and isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name):
                            self.top_level[name.id] = node
                            # A module-level constant or instance is a unit of its own: what a
                            # function reads as `NAME` or `module.NAME` can be the fault.
                            end = node.end_lineno or node.lineno
                            unit = SourceUnit(name.id, node.lineno, end, node, None, "constant")
                            self.functions.setdefault(name.id, unit)
            elif isinstance(node, ast.ImportFrom | ast.Import):
                self._import(node)
        for inner in ast.walk(ast.Module(body=body, type_ignores=[])) if top else ():
            # Imports inside functions (a lazy import) and under `if TYPE_CHECKING:` name modules too.
            if isinstance(inner, ast.ImportFrom | ast.Import) and inner not in body:
                self._import(inner, override=False)

    def _package(self, level: int) -> str | None:
        """The package a relative import of `level` dots starts from, for this file."""
        parts = self.path.removesuffix(".py").split("/")[:-1]  # a module's, or an __init__'s, package
        if level - 1 > len(parts):
            return None
        kept = parts[: len(parts) - (level - 1)]
        return ".".join(kept) if kept else None

    def _import(self, node: ast.Import | ast.ImportFrom, *, override: bool = True) -> None:
        """Record what an import binds: local name → (module, attribute or None)."""
        found: dict[str, tuple[str, str | None]] = {}
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    found[alias.asname] = (alias.name, None)
                else:
                    found[alias.name.split(".")[0]] = (alias.name.split(".")[0], None)
                    found.setdefault(alias.name, (alias.name, None))  # `a.b.f` read through `import a.b`
        else:
            source = node.module
            if node.level:
                package = self._package(node.level)
                if package is None:
                    return
                source = f"{package}.{node.module}" if node.module else package
            if not source:
                return
            for alias in node.names:
                if alias.name != "*":
                    found[alias.asname or alias.name] = (source, alias.name)
        for name, where in found.items():
            if override or name not in self.imports:
                self.imports[name] = where

    def function_at(self, line: int) -> SourceUnit | None:
        """The innermost function whose body holds `line`."""
        best: SourceUnit | None = None
        for function in self.functions.values():
            if function.start <= line <= function.end and (best is None or function.start >= best.start):
                best = function
        return best

    def source(self, start: int, end: int, focus: Iterable[int] = ()) -> str:
        marks = set(focus)
        return "\n".join(
            f"{n:>5}{'>' if n in marks else ' '} {self.lines[n - 1][:200]}"
            for n in range(max(1, start), min(len(self.lines), end) + 1)
        )

    def names_used(self, function: SourceUnit) -> set[str]:
        return {n.id for n in ast.walk(function.node) if isinstance(n, ast.Name)}

    def definitions_used(self, function: SourceUnit) -> list[ast.stmt]:
        """Top-level assignments and definitions (not functions: those are candidates) it reads."""
        names = self.names_used(function)
        seen: dict[int, ast.stmt] = {}
        for name in sorted(names):
            node = self.top_level.get(name)
            if node is not None and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                seen[node.lineno] = node
        return [seen[line] for line in sorted(seen)]

    def names_on_line(self, line: int) -> tuple[set[str], set[str]]:
        """(plain names, `self.x` attributes) read on a source line."""
        if self.tree is None:
            return set(), set()
        names: set[str] = set()
        attributes: set[str] = set()
        for node in ast.walk(self.tree):
            lineno = getattr(node, "lineno", None)
            if lineno is None or not (lineno <= line <= (getattr(node, "end_lineno", None) or lineno)):
                continue
            if isinstance(node, ast.Name) and node.lineno == line:
                names.add(node.id)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and node.lineno == line
            ):
                attributes.add(node.attr)
        return names, attributes

    def assigners(self, class_name: str, attribute: str) -> list[SourceUnit]:
        """Methods of `class_name` that write `self.<attribute>`: assign it, store into it
        (`self.x[key] = …`) or fill it (`self.x.append(…)`, `.update(…)`, …)."""
        return [
            function
            for function in self.functions.values()
            if function.class_name == class_name
            and function.kind == "function"
            and dataflow.writes_attribute(function.node, attribute)
        ]

    def keys_on_line(self, line: int) -> set[str]:
        """String keys subscripted on a line (`entry["level"]`): stored data the line reads."""
        if self.tree is None:
            return set()
        return {
            node.slice.value
            for node in ast.walk(self.tree)
            if isinstance(node, ast.Subscript)
            and getattr(node, "lineno", None) == line
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        }

    def key_writers(self, key: str) -> list[SourceUnit]:
        """Functions that build a dict with `key` or assign `x[key] = …`: who stored that data."""
        found = []
        for function in self.functions.values():
            if function.kind != "function":
                continue
            for node in ast.walk(function.node):
                builds = isinstance(node, ast.Dict) and any(
                    isinstance(k, ast.Constant) and k.value == key for k in node.keys
                )
                stores = (
                    isinstance(node, ast.Subscript)
                    and isinstance(node.ctx, ast.Store)
                    and isinstance(node.slice, ast.Constant)
                    and node.slice.value == key
                )
                if builds or stores:
                    found.append(function)
                    break
        return found

    def definition_lines(self, function: SourceUnit) -> list[tuple[int, int]]:
        """(start, end) of the top-level definitions a function reads (see `definitions_used`), but
        classes: a class's methods are suspects of their own, and a change to one of them says nothing
        about a function that only names the class."""
        return [
            (node.lineno, node.end_lineno or node.lineno)
            for node in self.definitions_used(function)
            if not isinstance(node, ast.ClassDef)
        ]

    def calls(self, function: SourceUnit) -> tuple[set[str], set[str]]:
        """(plain names called, `self.method` names called) inside a function."""
        plain: set[str] = set()
        methods: set[str] = set()
        for node in ast.walk(function.node):
            if not isinstance(node, ast.Call):
                continue
            callee = node.func
            if isinstance(callee, ast.Name):
                plain.add(callee.id)
            elif isinstance(callee, ast.Attribute) and isinstance(callee.value, ast.Name):
                if callee.value.id == "self":
                    methods.add(callee.attr)
                else:
                    plain.add(f"{callee.value.id}.{callee.attr}")
        return plain, methods

    def words(self, function: SourceUnit) -> set[str]:
        """Identifier parts and string words of a function, for matching a complaint."""
        text = "\n".join(self.lines[function.start - 1 : function.end])
        return terms_of(text) | {w for w in _WORD.findall(text.lower()) if len(w) >= 3}


_MAX_FILE_BYTES = 2_000_000
_MODULE_CACHE: dict[tuple[str, float, int], ModuleIndex] = {}


def _readable(repo_root: Path, path: str) -> bool:
    """Whether a path some record or source names is a Python or configuration file inside the
    repository we may read."""
    root = repo_root.resolve()
    candidate = (root / path).resolve()
    if candidate.suffix not in (".py", *dataflow.CONFIG_SUFFIXES) or not candidate.is_relative_to(root):
        return False
    if not candidate.is_file():
        return False
    if candidate.relative_to(root).as_posix() != path:
        return False
    if secret_reason(path) is not None:
        return False
    return candidate.stat().st_size <= _MAX_FILE_BYTES


def read_module(repo_root: Path, path: str) -> ModuleIndex | None:
    """A repository file, parsed (cached by path, modification time and size); None for a path that
    is not a readable source or configuration file inside the repository."""
    if not _readable(repo_root, path):
        return None
    file = repo_root.resolve() / path
    stat = file.stat()
    key = (str(file), stat.st_mtime, stat.st_size)
    cached = _MODULE_CACHE.get(key)
    if cached is None:
        if len(_MODULE_CACHE) > 512:
            _MODULE_CACHE.clear()
        cached = _MODULE_CACHE[key] = ModuleIndex(path, file.read_text(encoding="utf-8", errors="replace"))
    return cached


def module_path(module: str, modules: dict[str, ModuleIndex]) -> str | None:
    """The path of a dotted module name among the parsed modules."""
    base = module.replace(".", "/")
    # A package under `src/` is imported by its own name (`src` layout).
    for path in (f"{base}.py", f"{base}/__init__.py", f"src/{base}.py", f"src/{base}/__init__.py"):
        if path in modules:
            return path
    return None


def _unit(path: str, qualname: str, modules: dict[str, ModuleIndex]) -> tuple[str, str] | None:
    """A class called is its `__init__` when it has one, else the class (a dataclass's fields)."""
    unit = modules[path].functions.get(qualname)
    if unit is None:
        return None
    if unit.kind == "class" and f"{qualname}.__init__" in modules[path].functions:
        return path, f"{qualname}.__init__"
    return path, qualname


def resolve(name: str, module: ModuleIndex, modules: dict[str, ModuleIndex]) -> tuple[str, str] | None:
    """Where a called or read name is defined in the repository (see `_resolve`)."""
    return _resolve(name, module, modules, 0)


def _resolve(
    name: str, module: ModuleIndex, modules: dict[str, ModuleIndex], depth: int
) -> tuple[str, str] | None:
    """Where a called or read name is defined in the repository: (path, qualname). The name may be
    dotted through imports as Python resolves it: `f`, `helpers.f`, `pkg.helpers.f`, `Cart.total`,
    `shop.Cart` (a class called is its `__init__`), `settings.MAX_ITEMS` (a module-level constant)."""
    parts = name.split(".")
    if parts[0] in module.functions and ".".join(parts) in module.functions:
        return _unit(module.path, ".".join(parts), modules)
    for cut in range(len(parts), 0, -1):  # the longest prefix an import binds
        imported = module.imports.get(".".join(parts[:cut]))
        if imported is None:
            continue
        source, member = imported
        rest = parts[cut:]
        if member is None:  # import x (or import a.b) → x.f
            path = module_path(source, modules)
            return _within(path, rest, modules, depth)
        path = module_path(source, modules)  # from x import f → f, f.attr
        found = _within(path, [member, *rest], modules, depth)
        if found is not None:
            return found
        return _within(
            module_path(f"{source}.{member}", modules), rest, modules, depth
        )  # from pkg import mod
    return None


def _within(
    path: str | None, parts: list[str], modules: dict[str, ModuleIndex], depth: int = 0
) -> tuple[str, str] | None:
    """`parts` as a qualified name in one module, following a submodule when the module is a package,
    and a name the module only imports (a package's `__init__` re-exporting `from .views import X`)."""
    if path is None or not parts:
        return None
    qualname = ".".join(parts)
    if qualname in modules[path].functions:
        return _unit(path, qualname, modules)
    if path.endswith("/__init__.py") and len(parts) > 1:
        package = path.removesuffix("/__init__.py").replace("/", ".")
        found = _within(module_path(f"{package}.{parts[0]}", modules), parts[1:], modules, depth)
        if found is not None:
            return found
    if depth < 3 and parts[0] in modules[path].imports:
        return _resolve(qualname, modules[path], modules, depth + 1)
    return None


def resolve_class(
    name: str, module: ModuleIndex, modules: dict[str, ModuleIndex], depth: int = 0
) -> tuple[str, str] | None:
    """Where the class a name means is defined: (path, class qualname). The name may be dotted
    through a module (`shop.Cart`, `models.shop.Cart`), and imported through a package that only
    re-exports it (`from .views import StatusView` in its `__init__`)."""
    if name in module.classes:
        return module.path, name
    head, _, rest = name.partition(".")
    imported = module.imports.get(head)
    if imported is None:
        return None
    source, member = imported
    if member is None:  # import shop → shop.Cart
        path = module_path(source, modules) if rest else None
        return (path, rest) if path is not None and rest in modules[path].classes else None
    path = module_path(source, modules)
    wanted = member if not rest else f"{member}.{rest}"
    if path is not None and wanted in modules[path].classes:
        return path, wanted
    if path is not None and depth < 3 and member in modules[path].imports:  # re-exported
        found = resolve_class(wanted, modules[path], modules, depth + 1)
        if found is not None:
            return found
    path = module_path(f"{source}.{member}", modules)  # from pkg import shop → shop.Cart
    if path is not None and rest and rest in modules[path].classes:
        return path, rest
    return None


def _made_class(
    value: ast.AST | None, module: ModuleIndex, modules: dict[str, ModuleIndex]
) -> tuple[str, str] | None:
    """The class an expression makes, when it is a call of a class (`Cart()`, `shop.Cart(...)`)."""
    if not isinstance(value, ast.Call):
        return None
    name = dataflow.dotted(value.func)
    return resolve_class(name, module, modules) if name else None


def _instance_class(
    name: str, module: ModuleIndex, modules: dict[str, ModuleIndex], depth: int = 0
) -> tuple[str, str] | None:
    """The class of a module-level instance a name means: `DEFAULTS = Settings()` here, or imported."""
    node = module.top_level.get(name)
    if isinstance(node, ast.Assign | ast.AnnAssign):
        if isinstance(node, ast.AnnAssign) and node.annotation is not None:
            annotated = dataflow.dotted(node.annotation)
            found = resolve_class(annotated, module, modules) if annotated else None
            if found is not None:
                return found
        return _made_class(node.value, module, modules)
    imported = module.imports.get(name)
    if imported is None or imported[1] is None or depth > 2:
        return None
    path = module_path(imported[0], modules)
    return _instance_class(imported[1], modules[path], modules, depth + 1) if path is not None else None


def _module_of(name: str, module: ModuleIndex, modules: dict[str, ModuleIndex]) -> ModuleIndex | None:
    """The parsed module a local name stands for (`import shop`, `from pkg import shop`)."""
    imported = module.imports.get(name)
    if imported is None:
        return None
    source, member = imported
    path = module_path(source if member is None else f"{source}.{member}", modules)
    return modules[path] if path is not None else None


def method_of(
    receiver: ast.expr, method: str, where: SourceUnit, module: ModuleIndex, modules: dict[str, ModuleIndex]
) -> tuple[str, str] | None:
    """The method `receiver.method` calls, when the receiver's class can be told: `self.x.m` (the
    class of the attribute), `param.m` (its annotation), `self.m` (the enclosing class)."""
    found = class_of(receiver, where, module, modules)
    if found is None:
        return None
    path, class_name = found
    for owner in _lineage(path, class_name, modules):  # a method inherited from a base in the repository
        target = f"{owner[1]}.{method}"
        if target in modules[owner[0]].functions:
            return owner[0], target
    return None


def class_lineage(path: str, class_name: str, modules: dict[str, ModuleIndex]) -> list[tuple[str, str]]:
    """The class and its bases defined in the repository, nearest first: (path, class qualname)."""
    return _lineage(path, class_name, modules)


def _lineage(path: str, class_name: str, modules: dict[str, ModuleIndex]) -> list[tuple[str, str]]:
    """The class and its bases defined in the repository, nearest first."""
    found = [(path, class_name)]
    for index in range(8):
        if index >= len(found):
            break
        here, name = found[index]
        node = modules[here].classes.get(name)
        for base in node.bases if node is not None else []:
            dotted = dataflow.dotted(base)
            parent = resolve_class(dotted, modules[here], modules) if dotted else None
            if parent is not None and parent not in found:
                found.append(parent)
    return found


def class_of(
    receiver: ast.expr, where: SourceUnit, module: ModuleIndex, modules: dict[str, ModuleIndex]
) -> tuple[str, str] | None:
    """(path, class) of the object an expression names, when the source says."""
    if isinstance(receiver, ast.Name):
        if receiver.id == "self" and where.class_name is not None:
            return resolve_class(where.class_name, module, modules)
        annotated = dataflow.annotation_of(where.node, receiver.id)
        if annotated:
            return resolve_class(annotated, module, modules)
        local = dataflow.local_value(where.node, receiver.id)  # cart = shop.Cart(...)
        if local is not None:
            return _made_class(local, module, modules)
        return _instance_class(receiver.id, module, modules)  # DEFAULTS = Settings() at module level
    if not isinstance(receiver, ast.Attribute) or not isinstance(receiver.value, ast.Name):
        return None
    if receiver.value.id == "self" and where.class_name is not None and where.class_name in module.classes:
        held = dataflow.attribute_classes(module.classes[where.class_name]).get(receiver.attr)
        return resolve_class(held, module, modules) if held else None
    other = _module_of(receiver.value.id, module, modules)  # config.DEFAULTS.page_size
    return _instance_class(receiver.attr, other, modules) if other is not None else None
