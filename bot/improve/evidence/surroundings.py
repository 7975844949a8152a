"""Suspects around a handler that no call path reaches: how its loop is started and stopped, the checks
that run before it, the code that made the view it belongs to, and coroutines nobody awaits.

The ranking (bot/improve/evidence/localise.py) follows calls and data from a handler and from the
frames of a failure. Some faults sit where no call from the handler leads:

- a task loop is started by `cog_load` and must be stopped by `cog_unload`: a teardown that names
  `self.loop.cancel` without calling it, or a cog that starts a loop nothing stops, leaves the old loop
  running after a reload ("every message arrives twice") — the loop's body is fine;
- a command's checks (`@allowed_to("announce")`, `commands.check(...)`, the cog's `cog_check`) run
  before it and decide whether it runs at all;
- a button's view, or a modal, holds what the command that showed it gave it (`Pages(chunk(rules))`):
  a page list cut short was made by that command's call, not by the button;
- `self.store.add(...)` without `await` never runs the coroutine: nothing raises, nothing is saved.

Each is syntactic and bounded by the parsed modules, as the rest of the ranking.
"""

from __future__ import annotations

import ast

from mendbot.improve.evidence import dataflow
from mendbot.improve.evidence.follow import Pool, callee_of, reached_on, value_makers
from mendbot.improve.evidence.handler_scan import class_family
from mendbot.improve.evidence.source_index import (
    ModuleIndex,
    SourceUnit,
    class_lineage,
    resolve,
    resolve_class,
)

__all__ = ["around_handler", "pointless_statements", "unawaited_coroutines"]

_STARTS = frozenset({"start", "restart"})
_STOPS = frozenset({"cancel", "stop"})
_SHOWN = frozenset({"view", "modal", "item"})


def _decorator_names(unit: SourceUnit) -> list[tuple[str, ast.Call | None]]:
    node = unit.node
    found: list[tuple[str, ast.Call | None]] = []
    for decorator in getattr(node, "decorator_list", []):
        call = decorator if isinstance(decorator, ast.Call) else None
        name = dataflow.dotted(call.func if call is not None else decorator)
        if name:
            found.append((name, call))
    return found


def _class_of(module: ModuleIndex, unit: SourceUnit) -> tuple[str, ast.ClassDef] | None:
    """(qualified name, node) of the class a method belongs to."""
    if unit.class_name is None or "." not in unit.qualname:
        return None
    qualname = unit.qualname.rsplit(".", 1)[0]
    node = module.classes.get(qualname)
    return (qualname, node) if node is not None else None


def _loop_uses(method: ast.AST, loop: str) -> tuple[set[str], list[str]]:
    """(the operations a method calls on `self.<loop>`, the ones it names without calling)."""
    called: set[str] = set()
    named: list[str] = []
    calls = {id(node.func) for node in ast.walk(method) if isinstance(node, ast.Call)}
    for node in ast.walk(method):
        if (
            isinstance(node, ast.Attribute)
            and dataflow.dotted(node.value) == f"self.{loop}"
            and id(node) in calls
        ):
            called.add(node.attr)
        value = node.value if isinstance(node, ast.Expr) else None
        if isinstance(value, ast.Attribute) and dataflow.dotted(value.value) == f"self.{loop}":
            named.append(value.attr)
    return called, named


def _is_loop(unit: SourceUnit) -> bool:
    return any(name.endswith(".loop") or name == "loop" for name, _ in _decorator_names(unit))


def _loop_lifecycle(pool: Pool, module: ModuleIndex, unit: SourceUnit, weight: float) -> None:
    """A `tasks.loop` body — or a hook of its cog that starts or stops loops: the methods of the class
    that start and stop each loop (see the module docstring)."""
    owner = _class_of(module, unit)
    if owner is None:
        return
    if _is_loop(unit):
        _one_loop(pool, module, owner, unit.qualname.rsplit(".", 1)[-1], weight)
        return
    for qualname, other in module.functions.items():
        loop = qualname.rsplit(".", 1)[-1]
        if qualname.startswith(f"{owner[0]}.") and _is_loop(other):
            called, named = _loop_uses(unit.node, loop)
            if called or named:
                _one_loop(pool, module, owner, loop, weight)


def _one_loop(
    pool: Pool, module: ModuleIndex, owner: tuple[str, ast.ClassDef], loop: str, weight: float
) -> None:
    """The methods of the loop's class that start and stop the loop `loop`."""
    class_name, node = owner
    starters: list[str] = []
    stoppers: list[str] = []
    for method in node.body:
        if not isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        qualname = f"{class_name}.{method.name}"
        called, named = _loop_uses(method, loop)
        reasons: list[tuple[float, str]] = []
        for operation in named:
            did = "stopped" if operation in _STOPS else "started" if operation in _STARTS else "changed"
            reasons.append(
                (1.4, f"names `self.{loop}.{operation}` without calling it: the loop is never {did}")
            )
        if called & _STARTS:
            starters.append(qualname)
            reasons.append((0.25, f"starts the loop `{loop}`"))
        if called & _STOPS:
            stoppers.append(qualname)
            reasons.append((0.25, f"stops the loop `{loop}`"))
        elif method.name == "cog_unload":
            reasons.append((0.5, f"tears the cog down without stopping the loop `{loop}`"))
        candidate = pool.get(module.path, qualname) if reasons else None
        for points, reason in reasons if candidate is not None else ():
            assert candidate is not None
            candidate.add(points * weight, reason)
    if starters and not stoppers:
        teardown = f"{class_name}.cog_unload"
        for qualname in [teardown] if teardown in module.functions else starters:
            starter = pool.get(module.path, qualname)
            if starter is not None:
                starter.add(0.6 * weight, f"the loop `{loop}` is started, and nothing stops it on unload")


def _checks_of(pool: Pool, module: ModuleIndex, unit: SourceUnit, weight: float) -> None:
    """The checks a command's decorators put before it: a check factory and the predicate it makes,
    a function given to `commands.check`, and its cog's own `cog_check`."""
    for name, call in _decorator_names(unit):
        tail = name.rsplit(".", 1)[-1]
        targets: list[tuple[str, str]] = []
        if tail == "check" and call is not None and call.args:
            given = dataflow.dotted(call.args[0])
            found = resolve(given, module, pool.modules) if given else None
            targets += [found] if found is not None else []
        elif call is not None:
            found = resolve(name, module, pool.modules)
            if found is not None:
                factory = pool.modules[found[0]].functions.get(found[1])
                if factory is None or factory.kind != "function":
                    continue
                inner = [
                    f"{found[1]}.{item.name}"
                    for item in getattr(factory.node, "body", [])
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                ]
                if not inner:
                    continue  # a decorator that makes no predicate: not a check
                targets += [found, *((found[0], qualname) for qualname in inner)]
        for where in targets:
            candidate = pool.get(*where)
            if candidate is not None:
                candidate.add(0.35 * weight, f"a check run before {unit.qualname}")
    owner = _class_of(module, unit)
    for hook in ("cog_check", "interaction_check") if owner is not None else ():
        assert owner is not None
        candidate = pool.get(module.path, f"{owner[0]}.{hook}")
        if candidate is not None:
            candidate.add(0.3 * weight, f"its cog's {hook}, run before {unit.qualname}")


def _shown_by(pool: Pool, module: ModuleIndex, unit: SourceUnit, weight: float) -> None:
    """A view's, item's or modal's method: the calls that make its class, and what made their arguments."""
    owner = _class_of(module, unit)
    if owner is None or class_family(module, owner[0], pool.modules) not in _SHOWN:
        return
    wanted = (module.path, owner[0])
    builder = (
        pool.get(module.path, f"{owner[0]}.__init__") if f"{owner[0]}.__init__" in module.functions else None
    )
    if builder is not None:
        builder.add(0.35 * weight, f"builds {owner[0]}: which items it has, what they hold")
    for path, other in sorted(pool.modules.items()):
        for caller in list(other.functions.values()):
            if caller.kind != "function":
                continue
            made = [
                node
                for node in ast.walk(caller.node)
                if isinstance(node, ast.Call)
                and (name := dataflow.dotted(node.func)) is not None
                and resolve_class(name, other, pool.modules) == wanted
            ]
            if not made:
                continue
            shower = pool.get(path, caller.qualname)
            if shower is not None:
                shower.add(0.15 * weight, f"shows {owner[0]}")
            lines: set[int] = set()
            for call in made:
                for argument in [*call.args, *(k.value for k in call.keywords)]:
                    lines |= dataflow.data_lines(caller.node, getattr(argument, "lineno", 0))
            for where, how in reached_on(caller, other, pool.modules, lines):
                candidate = pool.get(*where)
                if candidate is None:
                    continue
                share = 0.6 if how == "read" else 1.0
                candidate.add(0.3 * weight * share, f"makes what {caller.qualname} gives {owner[0]}")
                if how == "call":
                    value_makers(pool, where[0], where[1], 0.2 * weight, depth=2)


def _shows(pool: Pool, module: ModuleIndex, unit: SourceUnit, weight: float) -> None:
    """A handler that sends a view or a modal: what builds it and the callbacks of its items run on its
    reply — and so do those of the items and views its methods (and its bases') build in turn."""
    frontier: list[tuple[ModuleIndex, SourceUnit]] = [(module, unit)]
    seen: set[tuple[str, str]] = set()
    for _ in range(3):
        following: list[tuple[ModuleIndex, SourceUnit]] = []
        for here, function in frontier:
            for node in ast.walk(function.node):
                name = dataflow.dotted(node.func) if isinstance(node, ast.Call) else None
                found = resolve_class(name, here, pool.modules) if name else None
                if found is None or found in seen:
                    continue
                seen.add(found)
                if class_family(pool.modules[found[0]], found[1], pool.modules) not in _SHOWN:
                    continue
                for path, owner in class_lineage(found[0], found[1], pool.modules):
                    shown = pool.modules[path]
                    for qualname, method in list(shown.functions.items()):
                        if not qualname.startswith(f"{owner}.") or method.kind != "function":
                            continue
                        following.append((shown, method))
                        builds = qualname == f"{owner}.__init__"
                        if _item_callback(method) or builds:
                            what = "builds" if builds else "a callback of"
                            candidate = pool.get(path, qualname)
                            if candidate is not None:
                                candidate.add(0.3 * weight, f"{what} {owner}, which {unit.qualname} shows")
        frontier = following


def _item_callback(method: SourceUnit) -> bool:
    """A method discord.py runs on a click or a submit: a decorated button or select, `callback`,
    `on_submit`."""
    name = method.qualname.rsplit(".", 1)[-1]
    decorated = any(d.rsplit(".", 1)[-1] in ("button", "select") for d, _ in _decorator_names(method))
    return decorated or name in ("callback", "on_submit")


def around_handler(pool: Pool, path: str, qualname: str, weight: float = 1.0) -> None:
    """The suspects around one handler (see the module docstring)."""
    module = pool.modules.get(path)
    unit = module.functions.get(qualname) if module is not None else None
    if module is None or unit is None or unit.kind != "function":
        return
    _loop_lifecycle(pool, module, unit, weight)
    _checks_of(pool, module, unit, weight)
    _shown_by(pool, module, unit, weight)
    _shows(pool, module, unit, weight)


def pointless_statements(pool: Pool, points: float = 0.8) -> None:
    """A suspect with a statement that only names a method (`self.stop`, `self.loop.cancel`): the call
    it was meant to be never happens."""
    for candidate in list(pool.found.values()):
        module = pool.modules.get(candidate.path)
        unit = module.functions.get(candidate.qualname) if module is not None else None
        if unit is None or unit.kind != "function":
            continue
        for node in ast.walk(unit.node):
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Attribute):
                named = dataflow.dotted(node.value) or node.value.attr
                candidate.add(points, f"names `{named}` without calling it: the call never happens")
                candidate.focus.add(node.lineno)


def unawaited_coroutines(pool: Pool, points: float = 1.0) -> None:
    """A statement that calls a coroutine function of the repository and drops the coroutine: its body
    never runs. The caller is a suspect when it or the coroutine is one already."""
    for path, module in sorted(pool.modules.items()):
        for qualname, call in module.dropped_calls:
            unit = module.functions[qualname]
            where = callee_of(call, unit, module, pool.modules)
            target = pool.modules[where[0]].functions.get(where[1]) if where is not None else None
            if where is None or target is None or not isinstance(target.node, ast.AsyncFunctionDef):
                continue
            if (path, qualname) not in pool.found and where not in pool.found:
                continue
            caller = pool.get(path, qualname)
            if caller is not None:
                caller.add(points, f"calls `{where[1]}`, a coroutine function, without awaiting it")
                caller.focus.add(call.lineno)
