"""The proof's test runner: a change's regression tests under coverage — what each test did, who read the
changed sources, and whether a test replaced the code it claims to test.

`mendbot.improve.proof.prover` binds this file read-only into the sandbox (the installed bot's copy, never the
checkout's) and runs it in a fresh copy of the branch's (or the base's) tree:

    python /run/mendbot/proof/runner.py '<json request>'

The request names the tests, the changed lines of each changed source file (`sources`, repository
paths), the files whose code is under test (`watched`: the changed sources and the files of the recorded
failure's frames) and the recorded failure (`expect`: its exception type, file and function, or null).
It runs pytest on the tests in this process under `coverage` (started as a changed source is first
opened or run) and prints one line
`mendbot-proof-coverage {json}` with:

- `coverage`: for each changed source, its changed lines and those the tests executed;
- `read`: changed sources something read other than to run them (an import, runpy, pytest's assertion
  rewriting) or to report on them (pytest's tracebacks) — a "test" that only looks for the text the
  change adds;
- `tests`: each test's outcome, and for a failure its exception's type, message and whether its
  traceback reaches the recorded failure's function (`reaches`); `collect_errors`: test files that
  could not even be collected (a name the change adds, imported by the test, is missing on the base);
- `patched`: per test, what it replaced or changed of the code under test — an attribute of a watched
  module (a function, a class, or a module global: `LIMIT = 0`), a function or class defined in a watched
  file, replaced by `monkeypatch.setattr`, `unittest.mock.patch` (any form) or a plain assignment (a
  module's attribute writes are seen as they happen: each watched module's class is swapped for one that
  reports them; a class's attributes and a function's defaults are compared before and after each test);
  a function of the test's own handed to the code under test in place of a parameter that has a default
  (`Cog(scale=lambda s: 1)`: a profile function sees each call into the watched files, from outside the
  tests' code); an environment variable the test sets that the code under test names. A test that
  changes how the code it tests behaves proves nothing about it.

It exits with pytest's code. This runs in the process under test, so the tests' code could still fake
what it reports; the label it supports ("proven by test") ranks below the replay's, judged from outside.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.machinery
import inspect
import json
import os
import sys
import sysconfig
import threading
import types
from typing import Any

__all__ = ["MARKER", "main"]

MARKER = "mendbot-proof-coverage"
# Standard-library helpers between a read and whoever asked for it (a test calling `Path.read_text` or
# `inspect.getsource` is the one that reads).
_HELPERS = (
    "/io.py",
    "/pathlib.py",
    "/linecache.py",
    "/tokenize.py",
    "/inspect.py",
    "/codecs.py",
    "<frozen io>",
)
# Who may read a changed source without it counting: whatever runs it (an import, runpy, pytest's
# assertion rewriting of a conftest) or shows it in a traceback (pytest's report).
_RUNNERS = (
    "<frozen importlib._bootstrap_external>",
    "/runpy.py",
    "<frozen runpy>",
    "/_pytest/",
    # a traceback formatted for a log: the code under test logging an error it handled shows its own lines
    "/traceback.py",
)
_MESSAGE_CHARS = 300
# Where libraries live: a function of theirs handed to the code under test is no stand-in of the test's.
_LIBRARIES = tuple(
    {os.path.realpath(path) + os.sep for path in sysconfig.get_paths().values() if path}
    | {os.path.dirname(os.path.realpath(os.__file__)) + os.sep}
)


def _real_path(named: object) -> str | None:
    """The real path an audit event's file argument names, or None when it names none."""
    if not isinstance(named, str | bytes | os.PathLike):
        return None
    try:
        return os.path.realpath(os.fsdecode(named))
    except (TypeError, ValueError):
        return None


def _watch_reading(sources: dict[str, str], read: set[str], active: list[bool]) -> None:
    """Record in `read` each changed source (`sources`: real path → repository path) that something
    reads other than what runs it or reports on it (an audit hook: Python cannot remove it once added)."""

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not active or event != "open" or not args:
            return
        path = _real_path(args[0])
        if path not in sources:
            return
        caller = sys._getframe(1)
        while caller is not None and caller.f_code.co_filename.endswith(_HELPERS):
            caller = caller.f_back  # type: ignore[assignment]
        asker = caller.f_code.co_filename if caller is not None else ""
        if not any(runner in asker for runner in _RUNNERS):
            read.add(sources[path])

    sys.addaudithook(hook)


def _start_before_sources(cov: Any, sources: dict[str, str]) -> None:
    """Start `cov` the moment a changed source (`sources`: real path → repository path) is opened or a code
    object compiled from it is run (an audit hook), not before pytest starts: traced from the start,
    pytest's own start-up and every import before the sources cost about a tenth of a second of CPU per
    side of a proof. A line of a source can run only in a code object compiled from it, which `exec` runs
    first (an import, runpy) or which is compiled from its text, read first. What runs untraced — a code
    object forged some other way, a thread started before the moment — counts as not run, and fewer lines
    run can only refuse a proof (`ran == 0` is "not proven"), never grant one."""
    started: list[bool] = []

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if started or not args:
            return
        if event == "open":
            named = args[0]
        elif event == "exec":
            named = getattr(args[0], "co_filename", None)
        elif event == "compile" and len(args) > 1:
            named = args[1]
        else:
            return
        if _real_path(named) in sources:
            started.append(True)
            cov.start()

    sys.addaudithook(hook)


class _Patches:
    """What the tests replace of the code under test, per test (module docstring)."""

    def __init__(self, watched: dict[str, str]) -> None:
        self.watched = watched  # real path → repository path
        self.current = "collection"  # the test running, or "collection"
        self.phase = "collection"
        self.found: dict[str, list[str]] = {}
        self.modules: dict[str, types.ModuleType] = {}
        self.classes: dict[str, dict[str, Any]] = {}  # "module.Class" → its attributes after import
        self.functions: list[tuple[types.FunctionType, Any, Any]] = []  # with their defaults after import
        self.sources: list[str] = []  # the watched files' text, read before the tests run
        for path in watched:
            with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as source:
                self.sources.append(source.read())
        self.codes: dict[Any, bool] = {}  # code object → whether a call to it is one into watched code

    # -- what counts -------------------------------------------------------------------------

    def file_of(self, value: Any) -> str | None:
        """The watched file `value` (a function, method or class) is defined in, if any."""
        value = getattr(value, "__func__", value)
        try:
            value = inspect.unwrap(value)
        except ValueError:
            return None
        code = getattr(value, "__code__", None)
        if code is not None:
            return self.watched.get(os.path.realpath(code.co_filename))
        if isinstance(value, type):
            module = sys.modules.get(value.__module__)
            path = getattr(module, "__file__", None)
            return self.watched.get(os.path.realpath(path)) if path else None
        return None

    def target_watched(self, target: Any) -> bool:
        if isinstance(target, types.ModuleType):
            return target.__name__ in self.modules
        return isinstance(target, type | types.FunctionType) and self.file_of(target) is not None

    def note(self, target: Any, name: str, old: Any, how: str) -> None:
        if self.phase == "teardown":
            return  # putting back what a test replaced
        data = (
            isinstance(target, types.ModuleType)
            and target.__name__ in self.modules
            and not name.startswith("__")
        )  # a module global of the code under test: its behaviour changed from outside it
        under_test = (
            self.file_of(old) is not None
            or data
            or (self.target_watched(target) and (callable(old) or old is _MISSING or name in _DEFAULTS))
        )
        if not under_test or isinstance(old, types.ModuleType):
            return
        self.record(target, name, how)

    def record(self, target: Any, name: str, how: str) -> None:
        if self.phase == "teardown":
            return
        owner = (
            ""
            if target is None
            else getattr(target, "__qualname__", None) or getattr(target, "__name__", type(target).__name__)
        )
        what = f"{owner}.{name}" if owner else name
        found = self.found.setdefault(self.current, [])
        entry = f"{what} ({how})"
        same = [n for n, seen in enumerate(found) if seen.startswith(f"{what} (")]
        if not same:
            found.append(entry)
        elif how != "assignment":  # the tool that did it says more than the write it made
            found[same[0]] = entry

    # -- how it is seen ----------------------------------------------------------------------

    def adopt(self, module: types.ModuleType) -> None:
        """Watch a watched module's attribute writes from now on, and remember its classes."""
        if module.__name__ in self.modules:
            return
        self.modules[module.__name__] = module
        patches = self

        class Watched(types.ModuleType):
            def __setattr__(self, name: str, value: Any) -> None:
                old = self.__dict__.get(name, _MISSING)
                if value is not old:
                    patches.note(self, name, old, "assignment")
                super().__setattr__(name, value)

            def __delattr__(self, name: str) -> None:
                patches.note(self, name, self.__dict__.get(name, _MISSING), "deletion")
                super().__delattr__(name)

        with contextlib.suppress(TypeError):
            module.__class__ = Watched
        for value in list(vars(module).values()):
            if isinstance(value, type) and value.__module__ == module.__name__:
                self.classes[f"{module.__name__}.{value.__qualname__}"] = dict(vars(value))
            if isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
                self.functions.append((value, value.__defaults__, value.__kwdefaults__))

    def adopt_loaded(self) -> None:
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if isinstance(module, types.ModuleType) and path and os.path.realpath(path) in self.watched:
                self.adopt(module)

    def names_variable(self, name: str) -> bool:
        """Whether the code under test names an environment variable (its source, read before any test)."""
        return any(name in source for source in self.sources)

    def compare_defaults(self) -> None:
        """A function of the code under test whose defaults were changed since its module was imported."""
        for index, (function, defaults, kwdefaults) in enumerate(self.functions):
            if function.__defaults__ is not defaults or function.__kwdefaults__ is not kwdefaults:
                self.record(function, "__defaults__", "assignment")
                self.functions[index] = (function, function.__defaults__, function.__kwdefaults__)

    def profile(self, frame: Any, event: str, arg: Any) -> None:
        """The profile function: each call is looked at by `stub`. It is set for the loop thread only
        while a test sets up and runs (what `stub` looks at), and for every thread the process starts:
        a profile function is a Python call at each call and return, which made collecting the tests
        (importing discord.py and the bot) take about half as long again."""
        if event == "call":
            self.stub(frame)

    def stub(self, frame: Any) -> None:
        """A call into the code under test: a parameter with a default given a function of the test's own
        (a lambda, a function defined in a test, a mock) instead — the test choosing the code it runs."""
        code = frame.f_code
        watched = self.codes.get(code)
        if watched is None:
            watched = os.path.realpath(code.co_filename) in self.watched and code.co_argcount > 0
            self.codes[code] = watched
        if not watched or self.phase not in ("setup", "call"):
            return
        caller = frame.f_back
        if caller is None or os.path.realpath(caller.f_code.co_filename) in self.watched:
            return  # the code under test calling itself
        function = _function_of(frame)
        if function is None:
            return
        names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        defaults = _defaults(function)
        for name in names:
            if name not in defaults:
                continue
            given = frame.f_locals.get(name, _MISSING)
            if given is defaults[name] or given is _MISSING or not _stand_in(given, self):
                continue
            self.record(function, f"argument `{name}`", "a function of the test")

    def compare_classes(self) -> None:
        """A class attribute of the code under test replaced since its module was imported."""
        for qualname, before in self.classes.items():
            module_name, _, class_name = qualname.rpartition(".")
            cls = getattr(self.modules.get(module_name), class_name, None)
            if not isinstance(cls, type):
                continue
            for name, old in before.items():
                if vars(cls).get(name, _MISSING) is not old and callable(getattr(old, "__func__", old)):
                    self.note(cls, name, old, "assignment")
                    before[name] = vars(cls).get(name, _MISSING)

    def wrap_tools(self) -> None:
        """monkeypatch.setattr/delattr and unittest.mock's patchers report what they replace."""
        from unittest import mock

        from _pytest.compat import NOTSET
        from _pytest.monkeypatch import MonkeyPatch

        patches = self
        setattr_, delattr_ = MonkeyPatch.setattr, MonkeyPatch.delattr

        def monkey_setattr(self: MonkeyPatch, *args: Any, **kwargs: Any) -> None:
            before = len(self._setattr)
            setattr_(self, *args, **kwargs)
            for target, name, old in self._setattr[before:]:
                patches.note(target, name, old if old is not NOTSET else _MISSING, "monkeypatch.setattr")

        def monkey_delattr(self: MonkeyPatch, *args: Any, **kwargs: Any) -> None:
            before = len(self._setattr)
            delattr_(self, *args, **kwargs)
            for target, name, old in self._setattr[before:]:
                patches.note(target, name, old, "monkeypatch.delattr")

        MonkeyPatch.setattr = monkey_setattr  # type: ignore[method-assign]
        MonkeyPatch.delattr = monkey_delattr  # type: ignore[method-assign]
        enter = mock._patch.__enter__

        def patch_enter(self: Any) -> Any:
            target = self.getter()
            old = getattr(target, self.attribute, _MISSING)
            result = enter(self)
            patches.note(target, self.attribute, old, "mock.patch")
            return result

        mock._patch.__enter__ = patch_enter  # type: ignore[method-assign]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()
_DEFAULTS = ("__defaults__", "__kwdefaults__")


def _function_of(frame: Any) -> types.FunctionType | None:
    """The function a frame runs (a method found on its `self` or `cls`, else its module's global)."""
    code = frame.f_code
    first = frame.f_locals.get(code.co_varnames[0]) if code.co_argcount else None
    for owner in (first, type(first) if first is not None else None):
        found = getattr(owner, code.co_name, None) if owner is not None else None
        found = getattr(found, "__func__", found)
        if isinstance(found, types.FunctionType) and found.__code__ is code:
            return found
    found = frame.f_globals.get(code.co_name)
    return found if isinstance(found, types.FunctionType) and found.__code__ is code else None


def _defaults(function: types.FunctionType) -> dict[str, Any]:
    code = function.__code__
    positional = code.co_varnames[: code.co_argcount]
    values = dict(
        zip(
            positional[len(positional) - len(function.__defaults__ or ()) :],
            function.__defaults__ or (),
            strict=True,
        )
    )
    return {**values, **(function.__kwdefaults__ or {})}


def _stand_in(value: Any, patches: _Patches) -> bool:
    """A function of the test's own standing in for code: a lambda or function not defined in the code
    under test (nor in a library), a partial of one, or a mock."""
    from unittest import mock

    if isinstance(value, mock.Base | mock.NonCallableMock):
        return True
    target = value.func if isinstance(value, functools.partial) else value
    if not isinstance(target, types.FunctionType):
        return False
    path = os.path.realpath(target.__code__.co_filename)
    return path not in patches.watched and not path.startswith(_LIBRARIES)


class _Finder(importlib.abc.MetaPathFinder):
    """Adopts a watched module as soon as it is imported, before anything can replace its attributes."""

    def __init__(self, patches: _Patches) -> None:
        self.patches = patches

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not spec.origin or os.path.realpath(spec.origin) not in self.patches.watched:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return None
        patches = self.patches

        class Adopting(importlib.abc.Loader):
            def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
                return loader.create_module(spec)  # type: ignore[union-attr]

            def exec_module(self, module: types.ModuleType) -> None:
                loader.exec_module(module)  # type: ignore[union-attr]
                patches.adopt(module)

        spec.loader = Adopting()
        return spec


class _Observer:
    """A pytest plugin: each test's outcome and error, and the phase patches are noted in."""

    def __init__(self, patches: _Patches, expect: dict[str, str] | None, root: str) -> None:
        self.patches = patches
        self.expect = expect
        self.root = root
        self.tests: dict[str, dict[str, Any]] = {}
        self.collect_errors: list[str] = []
        self.environment: dict[str, str] = {}  # the variables as each test began

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.collect_errors.append(str(report.longrepr)[-_MESSAGE_CHARS:])

    def pytest_collection_finish(self, session: Any) -> None:
        self.patches.adopt_loaded()
        self.patches.compare_classes()

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.patches.current = nodeid
        self.environment = dict(os.environ)

    def pytest_runtest_setup(self, item: Any) -> None:
        self.patches.phase = "setup"
        sys.setprofile(self.patches.profile)

    def pytest_runtest_call(self, item: Any) -> None:
        self.patches.phase = "call"

    def pytest_runtest_teardown(self, item: Any) -> None:
        self.patches.compare_classes()
        self.patches.compare_defaults()
        for name, value in os.environ.items():
            if self.environment.get(name) != value and self.patches.names_variable(name):
                self.patches.record(None, f"environment variable {name}", "set by the test")
        self.patches.phase = "teardown"
        sys.setprofile(None)

    def pytest_runtest_makereport(self, item: Any, call: Any) -> None:
        entry = self.tests.setdefault(item.nodeid, {"outcome": "passed", "error_type": None})
        if call.excinfo is None or call.when == "teardown":
            return
        if call.excinfo.errisinstance(BaseException) and call.excinfo.typename in ("Skipped", "XFailed"):
            entry["outcome"] = "skipped"
            return
        error = call.excinfo.value
        entry.update(
            outcome="failed" if call.when == "call" else "error",
            error_type=type(error).__name__,
            message=str(error)[:_MESSAGE_CHARS],
            reaches=self._reaches(call.excinfo.traceback),
        )

    def _reaches(self, traceback: Any) -> bool:
        """Whether the failure passed through the recorded failure's function (file and name)."""
        if not self.expect or not self.expect.get("file"):
            return False
        for entry in traceback:
            path = os.path.relpath(os.path.realpath(str(entry.path)), self.root)
            if path == self.expect["file"] and entry.name == self.expect.get("function"):
                return True
        return False


def main(argv: list[str]) -> int:
    request = json.loads(argv[1])
    tests: list[str] = request["tests"]
    sources: dict[str, list[int]] = request["sources"]
    watched_paths: list[str] = list(dict.fromkeys([*sources, *request.get("watched", [])]))
    expect: dict[str, str] | None = request.get("expect")
    root = os.path.realpath(os.getcwd())
    absolute = {os.path.realpath(path): path for path in sources}
    import coverage
    import pytest

    patches = _Patches({os.path.realpath(path): path for path in watched_paths})
    patches.wrap_tools()
    sys.meta_path.insert(0, _Finder(patches))
    observer = _Observer(patches, expect, root)
    cov = coverage.Coverage(data_file=None, include=list(absolute), config_file=False, branch=False)
    watching = [True]  # emptied once the tests are done: coverage itself then reads the sources
    read: set[str] = set()
    _watch_reading(absolute, read, watching)
    _start_before_sources(cov, absolute)
    threading.setprofile(patches.profile)
    try:
        code = pytest.main(["-q", "-p", "no:cacheprovider", *tests], plugins=[observer])
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
        cov.stop()
        watching.clear()
    data = cov.get_data()
    report: dict[str, dict[str, list[int]]] = {}
    for real, rel in absolute.items():
        statements = set(cov.analysis2(real)[1]) if os.path.exists(real) else set()
        changed = sorted(set(sources[rel]) & statements)
        ran = set(data.lines(real) or ())
        report[rel] = {"changed": changed, "ran": sorted(line for line in changed if line in ran)}
    result = {
        "coverage": report,
        "read": sorted(read),
        "tests": observer.tests,
        "collect_errors": observer.collect_errors,
        "patched": patches.found,
    }
    sys.stdout.write(f"\n{MARKER} {json.dumps(result, default=str)}\n")
    sys.stdout.flush()
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
