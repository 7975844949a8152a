"""Suspects found by following the data: where a bad value was made, not only where it was used.

The ranking (bot/improve/evidence/localise.py) starts from frames, slow samples and the handler; from there
these rules add the code that made what the failing line used:

- the definitions of names and the methods called on the lines feeding the failing line, attribute
  calls included (`self.store.get(…)` is the `get` of the class `self.store` holds), the methods
  Python calls without a call written (`self.cache[key]` is the cache's `__getitem__`, `a + b` the
  `__add__` of `a`'s class), and module-level constants and instances read through their module
  (`settings.MAX_ITEMS`, `config.DEFAULTS.page_size`);
- the methods that assign the attributes those lines read (`self.rate` set in `__init__`), the lines
  of the assignment being the ones that matter, and the functions storing the dict keys it reads;
- arguments traced up the stack: when the raising frame used a parameter, the frame that computed
  what was passed for it ranks with the raising frame (and the calls that computed it are
  suspects); a parameter passed straight through is followed further up;
- settings objects and configuration: a field of a settings class read on the failing path makes
  that class a suspect, with the field's line as the line that matters; a configuration file
  named by code on the failing path is a suspect as a whole;
- for a fault with no traceback: the handler's callees, through attributes, several levels deep
  within a budget, each at the same small weight whatever its depth (being called is no evidence;
  depth is none either); the functions whose results make the reply, followed down through what
  they return at equal weight, with the constants they read; calls whose exceptions a `try`
  swallows into a fallback answer;
- the code that wrote a stored row the failing action read (`mendbot.db.provenance`).

Each candidate keeps the lines the value went through (`data`): the recency of those lines says
more than the recency of the whole function (a cosmetic edit of a signature is not the cause).
"""

from __future__ import annotations

import ast
import posixpath
from dataclasses import dataclass, field

from mendbot.improve.evidence import dataflow
from mendbot.improve.evidence.source_index import ModuleIndex, SourceUnit, class_of, method_of, resolve

__all__ = ["Candidate", "Pool", "arguments_up_the_stack", "callees", "derive_from_line", "from_writer"]

_MAX_CALLEES = 40  # functions visited below a handler: the budget for going deep
_DATA_SHARE = 0.6  # of a unit's points a module-level constant it reads earns beside it
_STACK_LEVELS = 6


# Each further piece of evidence for one suspect counts this share of the one before it: a helper
# reached ten ways (an embed builder every handler calls) is not ten times as suspect as code reached
# once, on the failing path.
_CORROBORATION = 0.6


@dataclass
class Candidate:
    """A suspect function (or class, or configuration file), with the score it earned and why.

    Its evidence (`add`) counts in full for the strongest piece and by `_CORROBORATION` for each next
    one; what the ranking adds beside the evidence (`bonus`: recency, the complaint's words, lessons)
    counts in full."""

    path: str
    qualname: str
    start: int
    end: int
    reasons: list[str] = field(default_factory=list)
    focus: set[int] = field(default_factory=set)  # lines a frame or sample pointed at
    data: set[int] = field(default_factory=set)  # lines the bad value went through
    last_change: float | None = None  # newest commit time of its lines (unix seconds)
    data_change: float | None = None  # newest commit time of its `data` lines
    evidence: list[float] = field(default_factory=list)
    bonuses: float = 0.0

    def add(self, points: float, reason: str) -> None:
        self.evidence.append(points)
        if reason not in self.reasons:
            self.reasons.append(reason)

    def bonus(self, points: float, reason: str) -> None:
        self.bonuses += points
        if reason not in self.reasons:
            self.reasons.append(reason)

    @property
    def score(self) -> float:
        ranked = sorted(self.evidence, reverse=True)
        return sum(points * _CORROBORATION**n for n, points in enumerate(ranked)) + self.bonuses

    @property
    def key(self) -> tuple[str, str]:
        return self.path, self.qualname


class Pool:
    """The candidates found so far, one per unit, over the parsed modules."""

    def __init__(self, modules: dict[str, ModuleIndex]) -> None:
        self.modules = modules
        self.found: dict[tuple[str, str], Candidate] = {}
        self.traced: set[tuple[str, str]] = set()  # units in a failing traceback

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

    def untraced(self, where: tuple[str, str] | None) -> Candidate | None:
        """The candidate for a unit that already returned (frames earn their points as frames)."""
        return None if where is None or where in self.traced else self.get(*where)


def callee_of(
    call: ast.Call, where: SourceUnit, module: ModuleIndex, modules: dict[str, ModuleIndex]
) -> tuple[str, str] | None:
    """The in-repo unit a call runs: a name, `module.f`, `pkg.module.Cls`, `self.m`, `self.attr.m`,
    `param.m`, `local.m`, `INSTANCE.m`."""
    func = call.func
    if isinstance(func, ast.Name):
        return resolve(func.id, module, modules)
    if not isinstance(func, ast.Attribute):
        return None
    name = dataflow.dotted(func)
    if name is not None and name.split(".", 1)[0] in module.imports:
        found = resolve(name, module, modules)
        if found is not None:
            return found
    return method_of(func.value, func.attr, where, module, modules)


def _is_property(node: ast.AST) -> bool:
    """A method read as an attribute: `@property`, `@functools.cached_property`."""
    for decorator in getattr(node, "decorator_list", []):
        name = dataflow.dotted(decorator) or ""
        if name.rsplit(".", 1)[-1] in ("property", "cached_property"):
            return True
    return False


def _dict_callables(
    call: ast.Call, where: SourceUnit, module: ModuleIndex, modules: dict[str, ModuleIndex]
) -> list[tuple[str, str]]:
    """The functions a call through a table may run: `HANDLERS[name](…)`, `self.actions[key](…)`,
    `ACTIONS.get(key)(…)` — every function or method the table's literal lists (a dict of classmethods,
    of handlers by name). The table is a module-level or class-level dict or list literal."""
    func = call.func
    table: ast.expr | None = None
    if isinstance(func, ast.Subscript):
        table = func.value
    elif isinstance(func, ast.Call) and isinstance(func.func, ast.Attribute) and func.func.attr == "get":
        table = func.func.value
    if table is None:
        return []
    literal: ast.AST | None = None
    name = dataflow.dotted(table) or ""
    if name.startswith("self.") and where.class_name is not None and where.class_name in module.classes:
        fields = module.classes[where.class_name].body
        for statement in fields:
            if isinstance(statement, ast.Assign | ast.AnnAssign):
                targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                if any(isinstance(t, ast.Name) and t.id == name[5:] for t in targets):
                    literal = statement.value
    elif name in module.top_level:
        definition = module.top_level[name]
        literal = definition.value if isinstance(definition, ast.Assign | ast.AnnAssign) else None
    if isinstance(literal, ast.Dict):
        values: list[ast.expr] = list(literal.values)
    elif isinstance(literal, ast.List | ast.Tuple):
        values = list(literal.elts)
    else:
        return []
    found = []
    for value in values:
        dotted = dataflow.dotted(value)
        target = resolve(dotted, module, modules) if dotted else None
        if target is None and dotted and dotted.startswith("self.") and where.class_name:
            target = resolve(f"{where.class_name}.{dotted[5:]}", module, modules)
        if target is not None and modules[target[0]].functions[target[1]].kind == "function":
            found.append(target)
    return found


def reached_on(
    unit: SourceUnit, module: ModuleIndex, modules: dict[str, ModuleIndex], lines: set[int]
) -> list[tuple[tuple[str, str], str]]:
    """The in-repo units `lines` of a function reach, with how: its calls (through a table of
    functions too, and a property read as an attribute), the methods Python calls for its operators
    and subscripts, and the module-level constants and instances it reads through their module
    (`settings.MAX_ITEMS`) or by name."""
    found: list[tuple[tuple[str, str], str]] = []
    for call in dataflow.calls_on(unit.node, lines):
        where = callee_of(call, unit, module, modules)
        if where is not None:
            found.append((where, "call"))
        found += [(target, "call") for target in _dict_callables(call, unit, module, modules)]
    for receiver, method in dataflow.implicit_calls(unit.node, lines):
        where = method_of(receiver, method, unit, module, modules)
        if where is not None:
            found.append((where, method))
    properties = frozenset().union(*(other.property_names for other in modules.values()))
    for receiver, attribute in dataflow.field_reads(unit.node, lines) if properties else ():
        if attribute not in properties:
            continue
        where = method_of(receiver, attribute, unit, module, modules)
        target = modules[where[0]].functions.get(where[1]) if where is not None else None
        if where is not None and target is not None and _is_property(target.node):
            found.append((where, "call"))  # `self.log_channel` runs the property: a call without parentheses
    for node in ast.walk(unit.node):
        if getattr(node, "lineno", 0) not in lines or not isinstance(getattr(node, "ctx", None), ast.Load):
            continue
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id not in module.imports:
                continue
            where = resolve(f"{node.value.id}.{node.attr}", module, modules)
        elif isinstance(node, ast.Name) and (node.id in module.imports or node.id in module.top_level):
            where = resolve(node.id, module, modules)
        else:
            continue
        if where is not None and modules[where[0]].functions[where[1]].kind == "constant":
            found.append((where, "read"))
    return list(dict.fromkeys(found))


def _definition_lines(module: ModuleIndex, lines: set[int]) -> set[int]:
    """The module-level definitions read on `lines` (a constant changed far above the function)."""
    found: set[int] = set()
    if module.tree is None:
        return found
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Name) and getattr(node, "lineno", 0) in lines:
            definition = module.top_level.get(node.id)
            if definition is not None and not isinstance(
                definition, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
            ):
                found |= set(range(definition.lineno, (definition.end_lineno or definition.lineno) + 1))
    return found


def _mark_data(candidate: Candidate, module: ModuleIndex, lines: set[int]) -> None:
    candidate.data |= lines | _definition_lines(module, lines)


def _settings_and_config(
    pool: Pool, path: str, unit: SourceUnit, lines: set[int], *, points: float, at: str
) -> None:
    """Fields of settings objects read on `lines`, and configuration files named by the code they call."""
    module = pool.modules[path]
    for receiver, attribute in dataflow.field_reads(unit.node, lines):
        if isinstance(receiver, ast.Name) and receiver.id == "self":
            continue  # its own class's attributes: their writers are followed instead (`writers_of`)
        found = class_of(receiver, unit, module, pool.modules)
        if found is None:
            continue
        class_path, class_name = found
        field_line = dataflow.class_fields(pool.modules[class_path].classes[class_name]).get(attribute)
        candidate = pool.get(class_path, class_name) if field_line is not None else None
        if candidate is not None and field_line is not None:
            candidate.add(points, f"its setting `{attribute}` is read on the failing path ({at})")
            candidate.data.add(field_line)
    for call in dataflow.calls_on(unit.node, lines):
        where = callee_of(call, unit, module, pool.modules)
        target = pool.modules[where[0]].functions.get(where[1]) if where is not None else None
        if where is None or target is None:
            continue
        for name in dataflow.config_files(target.node):
            for config_path in (posixpath.normpath(posixpath.join(posixpath.dirname(where[0]), name)), name):
                config = pool.modules.get(config_path)
                if config is not None and config.is_config:
                    candidate = pool.get(config_path, next(iter(config.functions)))
                    if candidate is not None:
                        candidate.add(points, f"configuration read by {where[1]} on the failing path ({at})")
                    break


def _self_attributes(unit: SourceUnit, lines: set[int]) -> set[str]:
    """The `self.x` attributes read on `lines` of a method."""
    return {
        node.attr
        for node in ast.walk(unit.node)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
        and isinstance(node.ctx, ast.Load)
        and getattr(node, "lineno", 0) in lines
    }


def _assigning_lines(unit: SourceUnit, attribute: str) -> set[int]:
    """The lines of a method that write `self.<attribute>`, and the lines feeding them."""
    found: set[int] = set()
    for line in dataflow.attribute_writes(unit.node, attribute):
        found |= dataflow.data_lines(unit.node, line)
    return found


def writers_of(pool: Pool, path: str, unit: SourceUnit, lines: set[int], *, points: float, at: str) -> None:
    """The methods that wrote the `self.x` attributes `lines` read — the lines of the write being the
    data — and what those writes called to make the value."""
    module = pool.modules[path]
    if unit.class_name is None:
        return
    for attribute in sorted(_self_attributes(unit, lines)):
        for writer in module.assigners(unit.class_name, attribute):
            written = _assigning_lines(writer, attribute)
            candidate = pool.untraced((path, writer.qualname))
            if candidate is not None:
                candidate.add(points, f"sets `self.{attribute}`, read at {at}")
                candidate.data |= written
            for where, how in reached_on(writer, module, pool.modules, written):
                maker = _reached(pool, where, how)
                if maker is not None and how != "read":
                    maker.add(0.6 * points, f"makes the `self.{attribute}` {writer.qualname} writes")


def _reached(pool: Pool, where: tuple[str, str], how: str) -> Candidate | None:
    """The candidate for a unit reached from a line; a constant's own lines are the ones that matter."""
    candidate = pool.untraced(where)
    if candidate is not None and how == "read":
        candidate.data |= set(range(candidate.start, candidate.end + 1))
    return candidate


def _returned_data(pool: Pool, where: tuple[str, str], points: float, at: str) -> None:
    """The constants and instances a function's return value is made from: the data that reached the
    failing line through it (`return copy.deepcopy(DEFAULTS)`)."""
    module = pool.modules.get(where[0])
    unit = module.functions.get(where[1]) if module is not None else None
    if module is None or unit is None or unit.kind != "function":
        return
    for reached, how in reached_on(unit, module, pool.modules, dataflow.value_lines(unit.node)):
        candidate = _reached(pool, reached, how) if how == "read" else None
        if candidate is not None:
            candidate.add(points, f"defines `{reached[1]}`, which {where[1]} returns to {at}")


def derive_from_line(pool: Pool, path: str, line: int, weight: float) -> None:
    """Units that already returned but shaped the failing line: definitions of the names it uses,
    the units the lines feeding it call (explicitly or through an operator) or read (a module-level
    constant or instance), the methods assigning the attributes those lines read, writers of the
    stored keys it reads, settings and configuration read on the lines feeding it."""
    module = pool.modules.get(path)
    if module is None:
        return
    function = module.function_at(line)
    at = f"{path}:{line}"
    names, _ = module.names_on_line(line)
    for name in sorted(names):
        where = resolve(name, module, pool.modules)
        candidate = _reached(pool, where, "read") if where is not None else None
        if candidate is not None:
            candidate.add(0.45 * weight, f"defines `{name}`, used on the failing line {at}")
    if function is None or function.kind != "function":
        return
    lines = dataflow.data_lines(function.node, line)
    # A constant or instance the raising line itself reads is the data it failed on, as an argument
    # passed to it would be; one read on the lines feeding it, a step further.
    on_line = reached_on(function, module, pool.modules, {line})
    direct = {where for where, how in on_line if how == "read"}
    called = {where for where, how in on_line if how == "call"}
    for where, how in reached_on(function, module, pool.modules, lines):
        candidate = _reached(pool, where, how)
        if candidate is None:
            continue
        if how == "read" and where in direct:
            candidate.add(0.75 * 1.6 * weight, f"defines `{where[1]}`, read where it failed ({at})")
        elif how == "read":
            candidate.add(0.6 * weight, f"defines `{where[1]}`, read by the lines feeding {at}")
        elif how == "call":
            candidate.add(0.45 * weight, f"computes a value used on the failing line {at}")
            # What a call on the raising line returns is the data it failed on, as a constant read there.
            _returned_data(pool, where, (0.75 * 1.6 if where in called else 0.6) * weight, at)
        else:
            candidate.add(0.45 * weight, f"its `{how}` runs for the lines feeding {at}")
    # The value read came from where it was written as surely as an argument from its caller.
    writers_of(pool, path, function, lines, points=0.6 * 1.6 * weight, at=at)
    for key in sorted(module.keys_on_line(line)):
        for other_path, other in sorted(pool.modules.items()):
            for writer in other.key_writers(key):
                candidate = pool.untraced((other_path, writer.qualname))
                if candidate is not None:
                    candidate.add(0.5 * weight, f"stores the key {key!r} read on the failing line {at}")
    _settings_and_config(pool, path, function, lines, points=0.9 * 1.6 * weight, at=at)


def arguments_up_the_stack(pool: Pool, frames: tuple[tuple[str, int, str], ...], share: float) -> None:
    """From the raising frame up: the frame that computed an argument the failing line used ranks
    with the raising frame; an argument passed straight through is followed to the next caller."""
    points = 1.6 * share
    inner = frames[-1]
    module = pool.modules.get(inner[0])
    unit = module.function_at(inner[1]) if module is not None else None
    if module is None or unit is None:
        return
    first = pool.get(inner[0], unit.qualname)
    if first is not None:
        _mark_data(first, module, dataflow.data_lines(unit.node, inner[1]))
    wanted = dataflow.parameters_used(unit.node, inner[1])
    callee = unit
    for depth, (path, line, _name) in enumerate(list(reversed(frames[:-1]))[:_STACK_LEVELS], 1):
        if not wanted:
            return
        caller_module = pool.modules.get(path)
        caller = caller_module.function_at(line) if caller_module is not None else None
        if caller_module is None or caller is None:
            return
        short = callee.qualname.rsplit(".", 1)[-1]
        passed = dataflow.arguments_at(caller.node, line, callee.node, short, wanted)
        through = set(dataflow.parameters(caller.node))
        carried = [p for p, expr in passed.items() if isinstance(expr, ast.Name) and expr.id in through]
        made = {p: expr for p, expr in passed.items() if p not in carried}
        candidate = pool.get(path, caller.qualname)
        if made and candidate is not None:
            lines = dataflow.data_lines(caller.node, line)
            names = ", ".join(f"`{p}`" for p in sorted(made))
            # With the raising frame, not above it: what it earned as a frame counts toward that.
            candidate.add(
                max(0.0, 0.95 - 0.6**depth) * points,
                f"made the argument {names} that {short} used where it raised",
            )
            _mark_data(candidate, caller_module, lines)
            at = f"{path}:{line}"
            for call in dataflow.calls_on(caller.node, lines):
                maker = pool.untraced(callee_of(call, caller, caller_module, pool.modules))
                if maker is not None:
                    maker.add(0.6 * points, f"computed the argument {names} passed to {short} at {at}")
            for expr in made.values():
                if (
                    isinstance(expr, ast.Attribute)
                    and isinstance(expr.value, ast.Name)
                    and expr.value.id == "self"
                ):
                    for assigner in caller_module.assigners(caller.class_name or "", expr.attr):
                        setter = pool.untraced((path, assigner.qualname))
                        if setter is not None:
                            setter.add(0.5 * points, f"sets `self.{expr.attr}`, passed to {short} at {at}")
            _settings_and_config(pool, path, caller, lines, points=0.9 * points, at=at)
        wanted = [expr.id for p in carried if isinstance(expr := passed[p], ast.Name)]
        callee = caller


def callees(pool: Pool, path: str, qualname: str, *, weight: float, depth: int, reason: str) -> None:
    """In-repo units a function reaches (calls through attributes, operators' methods, constants it
    reads), breadth first, `depth` levels and at most `_MAX_CALLEES` of them, each at `weight`: being
    one call deeper is no evidence against a unit, nor for it."""
    frontier = [(path, qualname)]
    seen = {(path, qualname)}
    for _ in range(depth):
        following: list[tuple[str, str]] = []
        for caller_path, caller_name in frontier:
            module = pool.modules.get(caller_path)
            unit = module.functions.get(caller_name) if module is not None else None
            if module is None or unit is None or unit.kind != "function":
                continue
            for where, how in reached_on(unit, module, pool.modules, set(range(unit.start, unit.end + 1))):
                if where in seen or len(seen) > _MAX_CALLEES:
                    continue
                seen.add(where)
                following.append(where)
                candidate = _reached(pool, where, how)
                if candidate is not None:
                    candidate.add(weight * (_DATA_SHARE if how == "read" else 1.0), f"{reason} {caller_name}")
        frontier = following


def value_makers(pool: Pool, path: str, qualname: str, points: float, depth: int = 4) -> None:
    """For an answer with no traceback: the units whose results make what the handler answers —
    calls, operators' methods, constants read — followed down through what those return, each at the
    same points whatever its depth; and calls whose exceptions a `try` turns into a fallback answer
    on the way."""
    frontier = [(path, qualname)]
    seen = {(path, qualname)}
    for _ in range(depth):
        following: list[tuple[str, str]] = []
        for unit_path, unit_name in frontier:
            module = pool.modules.get(unit_path)
            unit = module.functions.get(unit_name) if module is not None else None
            if module is None or unit is None or unit.kind != "function":
                continue
            lines = dataflow.value_lines(unit.node)
            # What the answer reads from `self` was written somewhere: by another command, say.
            writers_of(pool, unit_path, unit, lines, points=points, at=f"what {unit_name} answers")
            for where, how in reached_on(unit, module, pool.modules, lines):
                candidate = pool.get(*where) if where not in seen else None
                if candidate is None:
                    continue
                seen.add(where)
                if how == "read":
                    candidate.data |= set(range(candidate.start, candidate.end + 1))
                # A constant read is data the code uses: a suspect, behind the code using it unless it
                # changed more recently.
                share = _DATA_SHARE if how == "read" else 1.0
                what = "value" if how == "read" else "result"
                candidate.add(points * share, f"its {what} makes what {unit_name} answers")
                candidate.data |= dataflow.value_lines(pool.modules[where[0]].functions[where[1]].node)
                following.append(where)
            for call in dataflow.swallowing_calls(unit.node):
                swallowed = callee_of(call, unit, module, pool.modules)
                candidate = pool.get(*swallowed) if swallowed is not None else None
                if candidate is not None:
                    candidate.add(
                        1.5 * points,
                        f"an exception it raises is swallowed by {unit_name} into a fallback answer",
                    )
        frontier = following


def from_writer(pool: Pool, frames: tuple[tuple[str, int, str], ...], share: float, what: str) -> None:
    """The code that wrote a stored row the failing action read: the innermost writer frame ranks
    close to a raising frame, the lines feeding its write being the lines that matter."""
    for depth, (path, line, _name) in enumerate(reversed(frames)):
        candidate = pool.at(path, line)
        module = pool.modules.get(path)
        if candidate is None or module is None:
            continue
        candidate.add(1.6 * 0.9 * share * 0.6**depth, f"wrote {what}")
        unit = module.function_at(line)
        if depth == 0 and unit is not None:
            _mark_data(candidate, module, dataflow.data_lines(unit.node, line))
