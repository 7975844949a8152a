"""Parsed source files for the ranking of suspects: functions, classes, definitions and imports.

`ModuleIndex` is one file of the repository, parsed once (and cached by the evidence): its
functions and methods, its classes (a settings object is a suspect too), its top-level definitions
and imports, and the `ast` questions the ranking asks of them. A configuration file (JSON, YAML,
TOML, INI) is indexed as one unit named after the file, so it can be ranked like a function.
`resolve` finds where a called or read name is defined in the repository, through imports;
`method_of` and `class_of` follow attributes to their classes (`self.store.get` → the `get` of
the store's class).
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bot.improve import dataflow
from bot.trust.path_rules import secret_reason

__all__ = [
    "ModuleIndex",
    "SourceUnit",
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
            elif top and isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = (node.module, alias.name)
            elif top and isinstance(node, ast.Import):
                for alias in node.names:
                    self.imports[alias.asname or alias.name.split(".")[0]] = (alias.name, None)

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
        """Methods of `class_name` that assign `self.<attribute>`."""
        found = []
        for function in self.functions.values():
            if function.class_name != class_name or function.kind != "function":
                continue
            for node in ast.walk(function.node):
                targets: list[ast.expr] = []
                if isinstance(node, ast.Assign):
                    targets = node.targets
                elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                    targets = [node.target]
                if any(
                    isinstance(t, ast.Attribute)
                    and t.attr == attribute
                    and isinstance(t.value, ast.Name)
                    and t.value.id == "self"
                    for t in targets
                ):
                    found.append(function)
                    break
        return found

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
        """(start, end) of the top-level definitions a function reads (see `definitions_used`)."""
        return [(node.lineno, node.end_lineno or node.lineno) for node in self.definitions_used(function)]

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
    for path in (f"{base}.py", f"{base}/__init__.py"):
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
    """Where a called or read name is defined in the repository: (path, qualname)."""
    head, _, attribute = name.partition(".")
    if not attribute and head in module.functions:
        return _unit(module.path, head, modules)
    if attribute and head in module.classes and f"{head}.{attribute}" in module.functions:
        return module.path, f"{head}.{attribute}"
    imported = module.imports.get(head)
    if imported is None:
        return None
    source, member = imported
    if member is not None:  # from x import f  → f or f.attr
        path = module_path(source, modules)
        target = member if not attribute else f"{member}.{attribute}"
        if path is not None and target in modules[path].functions:
            return _unit(path, target, modules)
        path = module_path(f"{source}.{member}", modules)  # from pkg import module
        if path is not None and attribute and attribute in modules[path].functions:
            return _unit(path, attribute, modules)
        return None
    path = module_path(source, modules)  # import x → x.f
    if path is not None and attribute in modules[path].functions:
        return _unit(path, attribute, modules)
    return None


def resolve_class(name: str, module: ModuleIndex, modules: dict[str, ModuleIndex]) -> tuple[str, str] | None:
    """Where the class a simple name means is defined: (path, class qualname)."""
    if name in module.classes:
        return module.path, name
    imported = module.imports.get(name)
    if imported is None or imported[1] is None:
        return None
    path = module_path(imported[0], modules)
    if path is not None and imported[1] in modules[path].classes:
        return path, imported[1]
    return None


def method_of(
    receiver: ast.expr, method: str, where: SourceUnit, module: ModuleIndex, modules: dict[str, ModuleIndex]
) -> tuple[str, str] | None:
    """The method `receiver.method` calls, when the receiver's class can be told: `self.x.m` (the
    class of the attribute), `param.m` (its annotation), `self.m` (the enclosing class)."""
    found = class_of(receiver, where, module, modules)
    if found is None:
        return None
    path, class_name = found
    target = f"{class_name}.{method}"
    return (path, target) if target in modules[path].functions else None


def class_of(
    receiver: ast.expr, where: SourceUnit, module: ModuleIndex, modules: dict[str, ModuleIndex]
) -> tuple[str, str] | None:
    """(path, class) of the object an expression names, when the source says."""
    if isinstance(receiver, ast.Name):
        if receiver.id == "self" and where.class_name is not None:
            return resolve_class(where.class_name, module, modules)
        annotated = dataflow.annotation_of(where.node, receiver.id)
        return resolve_class(annotated, module, modules) if annotated else None
    if (
        isinstance(receiver, ast.Attribute)
        and isinstance(receiver.value, ast.Name)
        and receiver.value.id == "self"
        and where.class_name is not None
        and where.class_name in module.classes
    ):
        held = dataflow.attribute_classes(module.classes[where.class_name]).get(receiver.attr)
        return resolve_class(held, module, modules) if held else None
    return None
