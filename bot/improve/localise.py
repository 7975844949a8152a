"""Suspect functions for a fault, found and ranked deterministically from source, stacks and history.

The evidence pack (bot/improve/evidence.py) collects the signals; this module turns them into a
ranked list of functions, each with the reasons it is there. Candidates come from:

- the in-repo frames of the failing tracebacks (innermost first, mendbot's own recording
  wrappers left out), weighted by how many failures took that path;
- the sampled stacks of slow calls (where their time went);
- the handler of the kind the request is about, from the handler map (a fault with no
  traceback still has an entry point);
- functions that already returned, found with `ast`: the definitions of names used on the
  failing line (a helper that returned a bad value), the methods that assign the attribute the
  failing line reads (`self.rate` set in `__init__`), the functions that store the dict key it
  reads (bad stored data), and the in-repo functions a handler calls (two levels), for faults
  with no traceback.

Each candidate is then scored from: frame depth (innermost highest), share of slow samples,
being the handler, being derived as above, recency of the last change to its lines or to the
top-level definitions it reads (git blame), relative to the newest change among the suspects,
words of the complaint in its name, strings and identifiers, and lessons naming its file or
function. Ties break on path, then qualified name, so the same evidence always ranks the same.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "RECORDING_WRAPPERS",
    "Candidate",
    "ModuleIndex",
    "Signals",
    "candidates",
    "rank",
    "terms_of",
]

# mendbot's own frames that wrap every handler: never the cause, never worth a source slot.
RECORDING_WRAPPERS = frozenset(
    {
        ("bot/runtime/recording.py", "_run_event"),
        ("bot/runtime/recording.py", "recorded"),
        ("bot/runtime/recording.py", "invoke"),
        ("bot/observe/recorder.py", "action"),
        ("bot/observe/capture.py", "sending"),
    }
)
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
class _Function:
    qualname: str
    start: int  # first line, decorators included
    end: int
    node: ast.FunctionDef | ast.AsyncFunctionDef
    class_name: str | None


class ModuleIndex:
    """One parsed source file: its functions, top-level definitions and imports."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        try:
            self.tree: ast.Module | None = ast.parse(text)
        except SyntaxError:
            self.tree = None
        self.functions: dict[str, _Function] = {}
        self.top_level: dict[str, ast.stmt] = {}
        self.imports: dict[str, tuple[str, str | None]] = {}  # local name → (module, attribute)
        if self.tree is not None:
            self._index(self.tree.body, prefix="", class_name=None, top=True)

    def _index(self, body: list[ast.stmt], *, prefix: str, class_name: str | None, top: bool) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                qualname = prefix + node.name
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                self.functions[qualname] = _Function(
                    qualname, start, node.end_lineno or node.lineno, node, class_name
                )
                self._index(node.body, prefix=qualname + ".", class_name=None, top=False)
                if top:
                    self.top_level[node.name] = node
            elif isinstance(node, ast.ClassDef):
                self._index(node.body, prefix=prefix + node.name + ".", class_name=node.name, top=False)
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

    def function_at(self, line: int) -> _Function | None:
        """The innermost function whose body holds `line`."""
        best: _Function | None = None
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

    def names_used(self, function: _Function) -> set[str]:
        return {n.id for n in ast.walk(function.node) if isinstance(n, ast.Name)}

    def definitions_used(self, function: _Function) -> list[ast.stmt]:
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

    def assigners(self, class_name: str, attribute: str) -> list[_Function]:
        """Methods of `class_name` that assign `self.<attribute>`."""
        found = []
        for function in self.functions.values():
            if function.class_name != class_name:
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

    def key_writers(self, key: str) -> list[_Function]:
        """Functions that build a dict with `key` or assign `x[key] = …`: who stored that data."""
        found = []
        for function in self.functions.values():
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

    def definition_lines(self, function: _Function) -> list[tuple[int, int]]:
        """(start, end) of the top-level definitions a function reads (see `definitions_used`)."""
        return [(node.lineno, node.end_lineno or node.lineno) for node in self.definitions_used(function)]

    def calls(self, function: _Function) -> tuple[set[str], set[str]]:
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

    def words(self, function: _Function) -> set[str]:
        """Identifier parts and string words of a function, for matching a complaint."""
        text = "\n".join(self.lines[function.start - 1 : function.end])
        return terms_of(text) | {w for w in _WORD.findall(text.lower()) if len(w) >= 3}


@dataclass
class Candidate:
    """A suspect function, with the score it earned and why."""

    path: str
    qualname: str
    start: int
    end: int
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)
    focus: set[int] = field(default_factory=set)  # lines a frame or sample pointed at
    last_change: float | None = None  # newest commit time of its lines (unix seconds)

    def add(self, points: float, reason: str) -> None:
        self.score += points
        if reason not in self.reasons:
            self.reasons.append(reason)

    @property
    def key(self) -> tuple[str, str]:
        return self.path, self.qualname


@dataclass
class Signals:
    """What the evidence found, as input to the ranking."""

    tracebacks: list[tuple[tuple[tuple[str, int, str], ...], float]]  # (frames innermost last, share)
    stacks: list[tuple[tuple[tuple[str, int, str], ...], float]]  # sampled stacks (innermost last, share)
    handlers: list[tuple[str, str]]  # (path, qualname)
    complaint: set[str]  # the request's words, minus the words of the kinds it names
    lesson_files: set[str]
    lesson_text: str


class _Pool:
    def __init__(self, modules: dict[str, ModuleIndex]) -> None:
        self.modules = modules
        self.found: dict[tuple[str, str], Candidate] = {}

    def get(self, path: str, qualname: str) -> Candidate | None:
        module = self.modules.get(path)
        if module is None or qualname not in module.functions:
            return None
        key = (path, qualname)
        if key not in self.found:
            function = module.functions[qualname]
            self.found[key] = Candidate(path, qualname, function.start, function.end)
        return self.found[key]

    def at(self, path: str, line: int) -> Candidate | None:
        module = self.modules.get(path)
        function = module.function_at(line) if module is not None else None
        return self.get(path, function.qualname) if function is not None else None


def _module_path(module: str, modules: dict[str, ModuleIndex]) -> str | None:
    base = module.replace(".", "/")
    for path in (f"{base}.py", f"{base}/__init__.py"):
        if path in modules:
            return path
    return None


def _resolve(name: str, module: ModuleIndex, modules: dict[str, ModuleIndex]) -> tuple[str, str] | None:
    """Where a called or read name is defined in the repository: (path, qualname)."""
    head, _, attribute = name.partition(".")
    if not attribute and head in module.functions:
        return module.path, head
    if not attribute and head in module.top_level and isinstance(module.top_level[head], ast.ClassDef):
        init = f"{head}.__init__"
        return (module.path, init) if init in module.functions else None
    imported = module.imports.get(head)
    if imported is None:
        return None
    source, member = imported
    if member is not None:  # from x import f  → f or f.attr
        path = _module_path(source, modules)
        target = member if not attribute else f"{member}.{attribute}"
        if path is not None and target in modules[path].functions:
            return path, target
        path = _module_path(f"{source}.{member}", modules)  # from pkg import module
        if path is not None and attribute and attribute in modules[path].functions:
            return path, attribute
        return None
    path = _module_path(source, modules)  # import x → x.f
    if path is not None and attribute in modules[path].functions:
        return path, attribute
    return None


def _derive_from_line(pool: _Pool, path: str, line: int, weight: float, traced: set[tuple[str, str]]) -> None:
    """Functions that already returned but shaped the failing line: definitions of the names it
    uses, initialisers of the attributes it reads, writers of the stored keys it reads. Functions
    already in a traceback earn their points there, not again here."""
    module = pool.modules.get(path)
    if module is None:
        return
    function = module.function_at(line)
    at = f"{path}:{line}"
    names, attributes = module.names_on_line(line)
    for name in sorted(names):
        where = _resolve(name, module, pool.modules)
        if where is not None and where not in traced:
            candidate = pool.get(*where)
            if candidate is not None:
                candidate.add(0.45 * weight, f"defines `{name}`, used on the failing line {at}")
    if function is not None and function.class_name is not None:
        for attribute in sorted(attributes):
            for assigner in module.assigners(function.class_name, attribute):
                candidate = None if (path, assigner.qualname) in traced else pool.get(path, assigner.qualname)
                if candidate is not None:
                    candidate.add(0.5 * weight, f"sets `self.{attribute}`, read on the failing line {at}")
    for key in sorted(module.keys_on_line(line)):
        for other_path, other in sorted(pool.modules.items()):
            for writer in other.key_writers(key):
                candidate = (
                    None if (other_path, writer.qualname) in traced else pool.get(other_path, writer.qualname)
                )
                if candidate is not None:
                    candidate.add(0.5 * weight, f"stores the key {key!r} read on the failing line {at}")


def _callees(pool: _Pool, path: str, qualname: str, weight: float, depth: int) -> None:
    """In-repo functions a handler calls (and what they call), for faults with no traceback."""
    module = pool.modules.get(path)
    if module is None or qualname not in module.functions or depth == 0:
        return
    function = module.functions[qualname]
    plain, methods = module.calls(function)
    targets: list[tuple[str, str]] = []
    for name in sorted(plain):
        where = _resolve(name, module, pool.modules)
        if where is not None:
            targets.append(where)
    if function.class_name is not None:
        for method in sorted(methods):
            target = f"{function.class_name}.{method}"
            if target in module.functions:
                targets.append((path, target))
    for callee_path, callee in dict.fromkeys(targets):
        if (callee_path, callee) == (path, qualname):
            continue
        candidate = pool.get(callee_path, callee)
        if candidate is None:
            continue
        candidate.add(weight, f"called by {qualname}")
        _callees(pool, callee_path, callee, weight * 0.5, depth - 1)


def _traced(signals: Signals, modules: dict[str, ModuleIndex]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for frames, _ in signals.tracebacks:
        for path, line, _function in frames:
            module = modules.get(path)
            function = module.function_at(line) if module is not None else None
            if function is not None:
                found.add((path, function.qualname))
    return found


def candidates(signals: Signals, modules: dict[str, ModuleIndex]) -> list[Candidate]:
    """Every suspect function the signals point at, before recency, complaint and lessons."""
    pool = _Pool(modules)
    traced = _traced(signals, modules)
    for frames, share in signals.tracebacks:
        for depth, (path, line, _function) in enumerate(reversed(frames)):
            candidate = pool.at(path, line)
            if candidate is None:
                continue
            where = "raised here" if depth == 0 else f"{depth} frame(s) above the raise"
            candidate.add(1.6 * share * 0.6**depth, f"in the failing traceback ({where})")
            candidate.focus.add(line)
            if depth <= 1:
                _derive_from_line(pool, path, line, share * (1.0 if depth == 0 else 0.6), traced)
    for frames, share in signals.stacks:
        for depth, (path, line, _function) in enumerate(reversed(frames)):
            candidate = pool.at(path, line)
            if candidate is None:
                continue
            candidate.add(1.4 * share * 0.5**depth, f"in {share:.0%} of the slow calls' sampled stacks")
            candidate.focus.add(line)
    for path, qualname in signals.handlers:
        candidate = pool.get(path, qualname)
        if candidate is None or signals.tracebacks:  # with a traceback, the frames say where it ran
            continue
        candidate.add(0.3, "handles the kind the request is about")
        _callees(pool, path, qualname, 0.35, depth=2)
    return list(pool.found.values())


def rank(
    found: Sequence[Candidate], signals: Signals, modules: dict[str, ModuleIndex], now: float
) -> list[Candidate]:
    """Add recency, complaint and lesson points; best first, ties by path and qualified name.

    `now` is wall-clock time: it is compared with commit times.
    """
    newest = max((c.last_change for c in found if c.last_change is not None), default=None)
    for candidate in found:
        if candidate.last_change is not None and newest is not None:
            age_days = max(0.0, now - candidate.last_change) / 86400
            # Relative to the newest change among the suspects: what changed last is most suspect.
            behind = max(0.0, newest - candidate.last_change) / 86400
            # Strong enough to lift a caller changed days ago over an innermost frame untouched for
            # months (a bad argument), not enough to lift a grand-caller over it.
            points = 0.9 / (1 + behind / 3) * (1.0 if age_days <= 30 else 0.5)
            candidate.add(points, f"it (or a definition it reads) last changed {age_days:.0f} day(s) ago")
        module = modules[candidate.path]
        matched = sorted(signals.complaint & module.words(module.functions[candidate.qualname]))
        if matched:
            # A small weight: a complaint quotes what the bot said, and the code that says it is
            # often the messenger (a handler reporting "corrupt"), not the cause.
            candidate.add(
                0.15 * min(2, len(matched)), "matches the request's words: " + ", ".join(matched[:5])
            )
        if candidate.path in signals.lesson_files:
            candidate.add(0.2, "an earlier run's lesson touched this file")
            if candidate.qualname.rsplit(".", 1)[-1] in signals.lesson_text:
                candidate.add(0.3, "an earlier run's lesson names this function")
    return sorted(found, key=lambda c: (-round(c.score, 9), c.path, c.qualname))
