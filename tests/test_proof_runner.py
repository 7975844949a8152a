"""The proof's test runner and the replay's exception watch, run as the pipeline runs them — real
processes on a real tree — without the sandbox around them (tests/test_proof_overfit_e2e.py has it):
what a test replaced of the code under test, whether its failure is the reported one, and which frame
caught an exception the code raised."""

from __future__ import annotations

import json
import py_compile
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mendbot.trust import proof_runner, replay_launch

DICE = textwrap.dedent(
    """\
    def scale_for(sides):
        return 60 // (sides - 6)


    class Roller:
        def scale(self, sides):
            return scale_for(sides)
    """
)
TESTS = textwrap.dedent(
    """\
    from unittest import mock

    from pkg import dice
    from pkg.dice import scale_for


    def test_real():
        assert scale_for(6) > 0


    def test_monkeypatched(monkeypatch):
        monkeypatch.setattr(dice, "scale_for", lambda sides: 1)
        assert dice.scale_for(6) == 1


    def test_mocked():
        with mock.patch("pkg.dice.scale_for", return_value=3):
            assert dice.scale_for(6) == 3


    def test_mocked_method():
        with mock.patch.object(dice.Roller, "scale", return_value=3):
            assert dice.Roller().scale(6) == 3


    def test_assigned():
        dice.Roller.scale = lambda self, sides: 5
        assert dice.Roller().scale(6) == 5


    def test_randomness_is_not_the_code_under_test(monkeypatch):
        import random

        monkeypatch.setattr(random, "randint", lambda a, b: 3)
        assert random.randint(1, 6) == 3


    def test_a_missing_name():
        assert dice.safe_scale(6) == 1
    """
)


def _tree(tmp_path: Path, tests: str) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "dice.py").write_text(DICE)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_dice.py").write_text(tests)
    return tmp_path


def _report(tree: Path, expect: dict[str, str] | None) -> dict[str, Any]:
    request = {
        "tests": ["tests/test_dice.py"],
        "sources": {"pkg/dice.py": [2]},
        "watched": [],
        "expect": expect,
    }
    done = subprocess.run(
        [sys.executable, proof_runner.__file__, json.dumps(request)],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith(proof_runner.MARKER))
    report: dict[str, Any] = json.loads(line.removeprefix(proof_runner.MARKER + " "))
    return report


def test_the_runner_names_each_test_that_replaces_the_code_it_tests(tmp_path: Path) -> None:
    """monkeypatch.setattr, mock.patch, mock.patch.object and a plain assignment of the code under test are
    each reported for the test that did it; patching `random` is not the code under test."""
    report = _report(_tree(tmp_path, TESTS), None)
    patched = {test.split("::")[1]: what for test, what in report["patched"].items()}
    assert patched == {
        "test_monkeypatched": ["pkg.dice.scale_for (monkeypatch.setattr)"],
        "test_mocked": ["pkg.dice.scale_for (mock.patch)"],
        "test_mocked_method": ["Roller.scale (mock.patch)"],
        "test_assigned": ["Roller.scale (assignment)"],
    }


SHOP = textwrap.dedent(
    """\
    import logging
    import os

    LIMIT = 3


    def scale_for(sides):
        return 60 // (sides - 6)


    def safe_scale(sides):
        try:
            return scale_for(sides)
        except ZeroDivisionError:
            logging.getLogger("shop").warning("a six-sided die", exc_info=True)
            return 1


    def limited(count, limit=None):
        return count <= (limit or LIMIT)


    def mode():
        return "safe" if os.environ.get("SHOP_SAFE") else "plain"


    class Roller:
        def __init__(self, scale=None):
            self.scale = scale or scale_for

        def roll(self, sides):
            return self.scale(sides)
    """
)
SHOP_TESTS = textwrap.dedent(
    """\
    import os
    import threading

    import pytest

    from pkg import dice


    def test_a_stub_through_the_constructor():
        assert dice.Roller(scale=lambda sides: 1).roll(6) == 1


    @pytest.fixture
    def roller():
        return dice.Roller(scale=lambda sides: 1)


    def test_a_stub_from_a_fixture(roller):
        assert roller.roll(6) == 1


    def test_a_stub_in_a_thread():
        rolled = []
        worker = threading.Thread(target=lambda: rolled.append(dice.Roller(scale=lambda sides: 1).roll(6)))
        worker.start()
        worker.join()
        assert rolled == [1]


    def test_the_real_code_through_the_constructor():
        assert dice.Roller(scale=dice.scale_for).roll(12) == 10


    def test_a_global_set():
        dice.LIMIT = 10
        assert dice.limited(5)


    def test_a_default_changed():
        dice.limited.__defaults__ = (10,)
        assert dice.limited(5)


    def test_a_variable_the_code_reads(monkeypatch):
        monkeypatch.setenv("SHOP_SAFE", "1")
        assert dice.mode() == "safe"


    def test_a_variable_the_code_does_not_read(monkeypatch):
        monkeypatch.setenv("UNRELATED", "1")
        assert dice.mode() == "plain"


    def test_a_handled_error_logged_with_its_traceback(caplog):
        assert dice.safe_scale(6) == 1
        assert "Traceback" in caplog.text
    """
)


def test_the_runner_names_each_test_that_changes_how_the_code_behaves(tmp_path: Path) -> None:
    """A function of the test's own handed to the code in place of a parameter's default (in the test, in a
    fixture, in a thread the test starts), a module global
    set, a default changed, an environment variable the code names set by the test: each is reported; the
    code's own function handed in, a variable the code never names, and an error the code handles and
    logs with its traceback (which reads the changed file to show its lines) are not."""
    tree = _tree(tmp_path, SHOP_TESTS)
    (tree / "pkg" / "dice.py").write_text(SHOP)
    request = {
        "tests": ["tests/test_dice.py"],
        "sources": {"pkg/dice.py": [14, 15]},
        "watched": [],
        "expect": None,
    }
    done = subprocess.run(
        [sys.executable, proof_runner.__file__, json.dumps(request)],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith(proof_runner.MARKER))
    report = json.loads(line.removeprefix(proof_runner.MARKER + " "))
    patched = {test.split("::")[1]: what for test, what in report["patched"].items()}
    assert patched == {
        "test_a_stub_through_the_constructor": ["Roller.__init__.argument `scale` (a function of the test)"],
        "test_a_stub_from_a_fixture": ["Roller.__init__.argument `scale` (a function of the test)"],
        "test_a_stub_in_a_thread": ["Roller.__init__.argument `scale` (a function of the test)"],
        "test_a_global_set": ["pkg.dice.LIMIT (assignment)"],
        "test_a_default_changed": ["limited.__defaults__ (assignment)"],
        "test_a_variable_the_code_reads": ["environment variable SHOP_SAFE (set by the test)"],
    }, report
    assert report["read"] == [], "a traceback in a log is not a test reading the source"
    assert all(entry["outcome"] == "passed" for entry in report["tests"].values()), report["tests"]


def test_the_runner_says_how_each_test_failed_and_whether_it_reached_the_reported_frame(
    tmp_path: Path,
) -> None:
    """A failure with the reported error through the reported function `reaches` it; one for a name the
    change would add is an AttributeError that does not."""
    report = _report(
        _tree(tmp_path, TESTS), {"type": "ZeroDivisionError", "file": "pkg/dice.py", "function": "scale_for"}
    )
    tests = {test.split("::")[1]: entry for test, entry in report["tests"].items()}
    assert tests["test_real"]["error_type"] == "ZeroDivisionError" and tests["test_real"]["reaches"] is True
    missing = tests["test_a_missing_name"]
    assert missing["error_type"] == "AttributeError" and missing["reaches"] is False
    assert "safe_scale" in missing["message"]
    assert tests["test_randomness_is_not_the_code_under_test"]["outcome"] == "passed"


def test_a_test_file_that_cannot_be_collected_is_reported(tmp_path: Path) -> None:
    """Importing a name the tree does not have is a collection error, reported with its message."""
    report = _report(
        _tree(tmp_path, "from pkg.dice import safe_scale\n\n\ndef test_x():\n    assert safe_scale(6)\n"),
        None,
    )
    assert report["tests"] == {} and "safe_scale" in report["collect_errors"][0]


_LOADED = {
    "an import": "from pkg.dice import scale_for",
    "a spec from its path": (
        "import importlib.util\n"
        "spec = importlib.util.spec_from_file_location('dice_by_path', 'pkg/dice.py')\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "scale_for = module.scale_for"
    ),
    "runpy": "import runpy\nscale_for = runpy.run_path('pkg/dice.py')['scale_for']",
    "its text compiled": (
        "with open('pkg/dice.py') as source:\n"
        "    code = compile(source.read(), 'pkg/dice.py', 'exec')\n"
        "found = {}\n"
        "exec(code, found)\n"
        "scale_for = found['scale_for']"
    ),
}


@pytest.mark.parametrize("way", [*_LOADED, "its bytecode", "none"])
def test_the_changed_lines_a_test_runs_are_covered_however_it_loads_them(tmp_path: Path, way: str) -> None:
    """Coverage starts only when a changed source is first opened or its code first runs (not before
    pytest's start): the lines a test runs count however it loads the file (from its bytecode too, the
    source never opened); a test that imports it without calling the changed function runs none."""
    calls = "" if way == "none" else "    assert scale_for(7) == 60\n"
    body = f"def test_seven():\n    pass\n{calls}"
    tree = _tree(tmp_path, f"{_LOADED.get(way, _LOADED['an import'])}\n\n\n{body}")
    if way == "its bytecode":  # imported from __pycache__: the source itself is never opened
        py_compile.compile(str(tree / "pkg" / "dice.py"), doraise=True)
    report = _report(tree, None)
    assert [test["outcome"] for test in report["tests"].values()] == ["passed"], report
    assert report["coverage"]["pkg/dice.py"] == {"changed": [2], "ran": [] if way == "none" else [2]}


_WATCHED = textwrap.dedent(
    """\
    import sys

    def scale_for(sides):
        return 60 // (sides - 6)

    def roll(sides):
        try:
            return scale_for(sides)
        except Exception:
            return "oops"

    def local(sides):
        try:
            return 60 // (sides - 6)
        except ZeroDivisionError:
            return 1

    roll(6)
    local(6)
    try:
        sys.settrace(None)
    except RuntimeError:
        print("refused")
    """
)


def test_the_watch_reports_where_the_code_raised_and_who_caught_it(tmp_path: Path) -> None:
    """Armed before the code runs, the launcher's watch reports each exception raised in the checkout's
    frames and every frame it reached; turning it off is refused and reported."""
    (tmp_path / "app.py").write_text(_WATCHED)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "watch.sock"))
    server.listen(1)
    watch = f"replay_launch._watch({str(tmp_path / 'watch.sock')!r}, {str(tmp_path)!r})"
    launcher = (
        f"import sys; sys.path.insert(0, {str(Path(replay_launch.__file__).parent)!r}); "
        f"import replay_launch; {watch}.arm(); import runpy; runpy.run_path('app.py')"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", launcher], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    connection, _ = server.accept()
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    output, _ = process.communicate(timeout=60)
    events = [json.loads(line) for line in received.decode().splitlines()]
    chains: dict[int, list[str]] = {}
    for event in events:
        if event["e"] == "raise":
            chains.setdefault(event["id"], []).append(f"{event['type']} {event['file']}:{event['func']}")
    assert list(chains.values()) == [
        ["ZeroDivisionError app.py:scale_for", "ZeroDivisionError app.py:roll"],
        ["ZeroDivisionError app.py:local"],
        ["RuntimeError app.py:<module>"],  # the refusal of sys.settrace(None), caught by the script
    ]
    assert any(event["e"] == "tamper" and event["what"] == "sys.settrace" for event in events)
    assert "refused" in output
