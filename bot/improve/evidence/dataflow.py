"""Following a value through source code with `ast`, for the ranking of suspects
(bot/improve/evidence/localise.py).

A frame that raised shows where a bad value was used, not where it was made. These helpers answer,
for one function of one parsed module, the questions that lead from the use back to the making:

- which lines computed the names a line uses (`data_lines`: the line, then the assignments, loop
  targets and `with … as` names feeding it, within the function);
- which of the function's parameters a line uses (`parameters_used`), and what a caller passed
  for them at its call line (`arguments_at`) — so the frame that made an argument is found;
- of what class an attribute or a parameter is (`attribute_classes`, `annotation_of`), so that
  `self.store.get(…)` resolves to the `get` of the store's class;
- which attribute reads on a line are fields of a settings object (`field_reads`);
- which file names a function mentions that are configuration files (`config_files`);
- which calls in a function feed what it answers or returns (`value_lines`);
- which calls a `try` guards whose handler does not raise again (`swallowing_calls`);
- which methods a line calls without a call in sight (`implicit_calls`): `self.cache[key]` runs the
  cache's `__getitem__`, `a + b` the `__add__` of `a`'s class, `x in box` `__contains__`, `len(x)`
  `__len__`, `for y in x` `__iter__`, an f-string `__format__`/`__str__`, `with x` `__enter__`.

Everything is syntactic and bounded by the function's own body: cheap, deterministic, and wrong
only in the conservative direction (a name it cannot follow is not followed).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

__all__ = [
    "CONFIG_SUFFIXES",
    "annotation_of",
    "arguments_at",
    "attribute_classes",
    "attribute_writes",
    "calls_on",
    "class_fields",
    "config_files",
    "data_lines",
    "dotted",
    "field_reads",
    "implicit_calls",
    "local_value",
    "parameters",
    "parameters_used",
    "swallowing_calls",
    "value_lines",
    "writes_attribute",
]

CONFIG_SUFFIXES = (".json", ".yaml", ".yml", ".toml", ".ini", ".cfg")
_REPLY_METHODS = frozenset({"send", "send_message", "reply", "edit", "edit_message", "followup"})
_ROUNDS = 4  # assignment steps followed back from a line


def _span(node: ast.AST) -> range:
    start = getattr(node, "lineno", 0)
    return range(start, (getattr(node, "end_lineno", None) or start) + 1)


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def parameters(function: ast.AST) -> list[str]:
    """Parameter names in call order (`self` included), for a function node; [] otherwise."""
    if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
        return []
    args = function.args
    return [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]


def _statements_on(function: ast.AST, line: int) -> list[ast.AST]:
    return [
        node
        for node in ast.walk(function)
        if isinstance(node, ast.stmt) and node is not function and line in _span(node)
    ]


def _nodes_on(function: ast.AST, line: int) -> list[ast.AST]:
    """The smallest statements holding `line` (a compound statement is reduced to its header)."""
    found: list[ast.AST] = []
    for node in _statements_on(function, line):
        if isinstance(node, ast.For | ast.AsyncFor):
            found += [node.target, node.iter]
        elif isinstance(node, ast.If | ast.While):
            found.append(node.test)
        elif isinstance(node, ast.With | ast.AsyncWith):
            found += [item.context_expr for item in node.items]
        elif not isinstance(node, ast.Try | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.append(node)
    return found


def _assignments(function: ast.AST) -> dict[str, list[tuple[int, ast.AST]]]:
    """Name → (line, value) of every binding in the function: assignments, loop targets, `as`."""
    found: dict[str, list[tuple[int, ast.AST]]] = {}
    for node in ast.walk(function):
        pairs: list[tuple[ast.AST, ast.AST]] = []
        if isinstance(node, ast.Assign):
            pairs = [(target, node.value) for target in node.targets]
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and node.value is not None:
            pairs = [(node.target, node.value)]
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            pairs = [(node.target, node.iter)]
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            pairs = [(node.optional_vars, node.context_expr)]
        elif isinstance(node, ast.NamedExpr):
            pairs = [(node.target, node.value)]
        for target, value in pairs:
            for name in _names(target):
                found.setdefault(name, []).append((getattr(value, "lineno", 0), value))
    return found


def data_lines(function: ast.AST, line: int) -> set[int]:
    """`line` and the lines whose assignments feed the names it uses, followed back a few steps."""
    bindings = _assignments(function)
    lines = {line}
    wanted = set().union(*(_names(node) for node in _nodes_on(function, line)))
    seen: set[str] = set()
    for _ in range(_ROUNDS):
        following: set[str] = set()
        for name in sorted(wanted - seen):
            seen.add(name)
            for where, value in bindings.get(name, []):
                if where and where not in lines:
                    lines.add(where)
                    following |= _names(value)
        wanted = following
    return lines


def parameters_used(function: ast.AST, line: int) -> list[str]:
    """The function's parameters (not `self`/`cls`) that `line` reads."""
    used = set().union(*(_names(node) for node in _nodes_on(function, line)))
    return [p for p in parameters(function) if p in used and p not in ("self", "cls")]


def _callee_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def arguments_at(
    caller: ast.AST, line: int, callee: ast.AST, callee_name: str, wanted: Iterable[str]
) -> dict[str, ast.expr]:
    """What the caller's `line` passes for the callee's `wanted` parameters, by parameter name."""
    names = parameters(callee)
    wanted = set(wanted)
    for node in ast.walk(caller):
        if not (isinstance(node, ast.Call) and line in _span(node) and _callee_name(node) == callee_name):
            continue
        positional = names
        if isinstance(node.func, ast.Attribute) and names[:1] in (["self"], ["cls"]):
            positional = names[1:]
        found: dict[str, ast.expr] = {}
        for index, argument in enumerate(node.args):
            if isinstance(argument, ast.Starred):
                break
            if index < len(positional) and positional[index] in wanted:
                found[positional[index]] = argument
        for keyword in node.keywords:
            if keyword.arg in wanted:
                found[keyword.arg] = keyword.value
        if found:
            return found
    return {}


def calls_on(function: ast.AST, lines: set[int]) -> list[ast.Call]:
    """The calls made on any of `lines` within the function, in source order."""
    found = [
        node
        for node in ast.walk(function)
        if isinstance(node, ast.Call) and getattr(node, "lineno", 0) in lines and node is not function
    ]
    return sorted(found, key=lambda n: (n.lineno, n.col_offset))


def annotation_of(function: ast.AST, name: str) -> str | None:
    """The simple class name a parameter is annotated with (`store: Store` → "Store")."""
    if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    args = function.args
    for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
        if arg.arg == name and arg.annotation is not None:
            return _class_name(arg.annotation)
    return None


def dotted(node: ast.AST) -> str | None:
    """`a.b.C` for a name or an attribute chain of names; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def local_value(function: ast.AST, name: str) -> ast.AST | None:
    """The value a local name was last bound to by a plain assignment in the function (`cart = Cart()`)."""
    found: ast.AST | None = None
    for node in ast.walk(function):
        named = isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        )
        if named and isinstance(node, ast.Assign):
            found = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            found = node.value if node.value is not None else found
    return found


_BINARY = {
    ast.Add: "__add__", ast.Sub: "__sub__", ast.Mult: "__mul__", ast.Div: "__truediv__",
    ast.FloorDiv: "__floordiv__", ast.Mod: "__mod__", ast.Pow: "__pow__", ast.MatMult: "__matmul__",
    ast.BitAnd: "__and__", ast.BitOr: "__or__", ast.BitXor: "__xor__", ast.LShift: "__lshift__",
    ast.RShift: "__rshift__",
}  # fmt: skip
_COMPARE = {
    ast.Eq: "__eq__", ast.NotEq: "__ne__", ast.Lt: "__lt__", ast.LtE: "__le__", ast.Gt: "__gt__",
    ast.GtE: "__ge__",
}  # fmt: skip
_BUILTINS = {"len": "__len__", "iter": "__iter__", "str": "__str__", "repr": "__repr__", "bool": "__bool__",
             "hash": "__hash__", "int": "__int__", "float": "__float__", "abs": "__abs__"}  # fmt: skip


_FILLING = frozenset({"append", "extend", "insert", "update", "setdefault", "add", "__setitem__"})


def attribute_writes(function: ast.AST, attribute: str) -> list[int]:
    """The lines of a function that write `self.<attribute>`: `self.x = …`, `self.x += …`,
    `self.x[key] = …`, `self.x.append(…)` and the other methods that fill a container."""
    lines = []
    for node in ast.walk(function):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _FILLING
            and dotted(node.func.value) == f"self.{attribute}"
        ):
            lines.append(node.lineno)
            continue
        for target in targets:
            base = target.value if isinstance(target, ast.Subscript) else target
            if dotted(base) == f"self.{attribute}":
                lines.append(getattr(node, "lineno", 0))
    return lines


def writes_attribute(function: ast.AST, attribute: str) -> bool:
    """Whether the function writes `self.<attribute>` (see `attribute_writes`)."""
    return bool(attribute_writes(function, attribute))


def implicit_calls(function: ast.AST, lines: set[int]) -> list[tuple[ast.expr, str]]:
    """(the object, the method Python calls on it) for the operations on `lines` that call a class's
    own methods without a call written: subscripts, operators, comparisons, `in`, `len()` and friends,
    loops, f-strings, `with`."""
    found: list[tuple[ast.expr, str]] = []
    for node in ast.walk(function):
        if getattr(node, "lineno", 0) not in lines:
            continue
        if isinstance(node, ast.Subscript):
            method = {ast.Store: "__setitem__", ast.Del: "__delitem__"}.get(type(node.ctx), "__getitem__")
            found.append((node.value, method))
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            found.append((node.left, _BINARY[type(node.op)]))
        elif isinstance(node, ast.AugAssign) and type(node.op) in _BINARY:
            found.append((node.target, _BINARY[type(node.op)].replace("__", "__i", 1)))
            found.append((node.target, _BINARY[type(node.op)]))
        elif isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=False):
                if isinstance(op, ast.In | ast.NotIn):
                    found.append((right, "__contains__"))
                elif type(op) in _COMPARE:
                    found.append((left, _COMPARE[type(op)]))
                left = right
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _BUILTINS:
            found += [(argument, _BUILTINS[node.func.id]) for argument in node.args[:1]]
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            found.append((node.iter, "__aiter__" if isinstance(node, ast.AsyncFor) else "__iter__"))
        elif isinstance(node, ast.FormattedValue):
            found += [(node.value, "__format__"), (node.value, "__str__")]
        elif isinstance(node, ast.With | ast.AsyncWith):
            enter = "__aenter__" if isinstance(node, ast.AsyncWith) else "__enter__"
            found += [(item.context_expr, enter) for item in node.items]
    return [(receiver, method) for receiver, method in found if isinstance(receiver, ast.expr)]


def _class_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name | ast.Attribute):
        return dotted(node) or (node.attr if isinstance(node, ast.Attribute) else None)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.split("[")[0].split(".")[-1] or None
    if isinstance(node, ast.Subscript):  # Optional[Store], list[...]: the outer name says little
        return None
    if isinstance(node, ast.BinOp):  # Store | None
        return _class_name(node.left) or _class_name(node.right)
    return None


def attribute_classes(class_node: ast.ClassDef) -> dict[str, str]:
    """`self.<attribute>` → the simple class name it holds, from `self.x = Cls(…)`, `self.x = param`
    (annotated) and class-level annotations."""
    found: dict[str, str] = {}
    for statement in class_node.body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            annotated = _class_name(statement.annotation)
            if annotated is not None:
                found[statement.target.id] = annotated
    for method in class_node.body:
        if not isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(method):
            if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
                continue
            targets: list[ast.expr] = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if not (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                ):
                    continue
                value = node.value
                name: str | None = None
                if isinstance(node, ast.AnnAssign):
                    name = _class_name(node.annotation)
                if name is None and isinstance(value, ast.Call):
                    name = _class_name(value.func)
                if name is None and isinstance(value, ast.Name):
                    name = annotation_of(method, value.id)
                if name is not None:
                    found.setdefault(target.attr, name)
    return found


def class_fields(class_node: ast.ClassDef) -> dict[str, int]:
    """Class-level fields with a default (`page_size: int = 5`, `LIMIT = 3`) → their line."""
    found: dict[str, int] = {}
    for node in class_node.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            found[node.target.id] = node.lineno
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.lineno
    return found


def field_reads(function: ast.AST, lines: set[int]) -> list[tuple[ast.expr, str]]:
    """(the object, the attribute) of every `obj.attr` read on `lines` that is not a call."""
    called = {id(node.func) for node in ast.walk(function) if isinstance(node, ast.Call)}
    found = []
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Load)
            and getattr(node, "lineno", 0) in lines
            and id(node) not in called
        ):
            found.append((node.value, node.attr))
    return found


def config_files(function: ast.AST) -> list[str]:
    """File names ending like configuration that the function mentions as string constants."""
    found = []
    for node in ast.walk(function):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip()
            if text.lower().endswith(CONFIG_SUFFIXES) and len(text) < 200 and "\n" not in text:
                found.append(text)
    return list(dict.fromkeys(found))


def value_lines(function: ast.AST) -> set[int]:
    """The lines that make what the function answers: its `return` values and the arguments of
    replies it sends (`send`, `send_message`, …), and the tests of the guards that end it early with
    nothing (`if not self.guild: return` — whether it answers at all), with the assignments feeding them."""
    lines: set[int] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Return) and node.value is not None:
            lines |= data_lines(function, node.lineno)
        elif (
            isinstance(node, ast.If) and isinstance(node.body[-1], ast.Return) and node.body[-1].value is None
        ):
            lines |= data_lines(function, node.test.lineno)
        elif isinstance(node, ast.Call) and _callee_name(node) in _REPLY_METHODS:
            for argument in [*node.args, *(k.value for k in node.keywords)]:
                for line in _span(argument):
                    lines |= data_lines(function, line)
    return lines


def swallowing_calls(function: ast.AST) -> list[ast.Call]:
    """Calls inside a `try` whose every handler ends without raising again (returns a fallback,
    passes, logs): an exception there becomes a quiet wrong answer."""
    found: list[ast.Call] = []
    for node in ast.walk(function):
        if not isinstance(node, ast.Try) or not node.handlers:
            continue
        if any(any(isinstance(n, ast.Raise) for n in ast.walk(h)) for h in node.handlers):
            continue
        for statement in node.body:
            found += [n for n in ast.walk(statement) if isinstance(n, ast.Call)]
    return found
