"""The proof's test runner: a change's regression tests under coverage, and who read the changed sources.

`bot.improve.proof` binds this file read-only into the sandbox (the installed bot's copy, never the
checkout's) and runs it in a fresh copy of the branch's (or the base's) tree:

    python /run/mendbot/proof/runner.py '<json: {"tests": [...], "sources": {path: [changed lines]}}>'

It runs pytest on the tests in this process under `coverage`, measuring which of the changed lines of
each changed source file (`sources`, repository paths) the tests executed, and which of those files
something read other than to run it (an import, runpy, pytest's assertion rewriting) or to report on it
(pytest's tracebacks) — a "test" that only looks for the text the change adds. It prints one line
`mendbot-proof-coverage {"coverage": {source: {"changed": [...], "ran": [...]}}, "read": [...]}` and exits
with pytest's code.

This runs in the process under test, so the tests' code could still fake the coverage it reports; the
label it supports ("proven by test") ranks below the replay's, which is judged from outside.
"""

from __future__ import annotations

import json
import os
import sys
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
_RUNNERS = ("<frozen importlib._bootstrap_external>", "/runpy.py", "<frozen runpy>", "/_pytest/")


def _watch_reading(sources: dict[str, str], read: set[str], active: list[bool]) -> None:
    """Record in `read` each changed source (`sources`: real path → repository path) that something
    reads other than what runs it or reports on it (an audit hook: Python cannot remove it once added)."""

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not active or event != "open" or not args or not isinstance(args[0], str | bytes | os.PathLike):
            return
        try:
            path = os.path.realpath(os.fsdecode(args[0]))
        except (TypeError, ValueError):
            return
        if path not in sources:
            return
        caller = sys._getframe(1)
        while caller is not None and caller.f_code.co_filename.endswith(_HELPERS):
            caller = caller.f_back  # type: ignore[assignment]
        asker = caller.f_code.co_filename if caller is not None else ""
        if not any(runner in asker for runner in _RUNNERS):
            read.add(sources[path])

    sys.addaudithook(hook)


def main(argv: list[str]) -> int:
    request = json.loads(argv[1])
    tests: list[str] = request["tests"]
    sources: dict[str, list[int]] = request["sources"]
    absolute = {os.path.realpath(path): path for path in sources}
    import coverage
    import pytest

    cov = coverage.Coverage(data_file=None, include=list(absolute), config_file=False, branch=False)
    watching = [True]  # emptied once the tests are done: coverage itself then reads the sources
    read: set[str] = set()
    _watch_reading(absolute, read, watching)
    cov.start()
    try:
        code = pytest.main(["-q", "-p", "no:cacheprovider", *tests])
    finally:
        cov.stop()
        watching.clear()
    data = cov.get_data()
    report: dict[str, dict[str, list[int]]] = {}
    for real, rel in absolute.items():
        statements = set(cov.analysis2(real)[1]) if os.path.exists(real) else set()
        changed = sorted(set(sources[rel]) & statements)
        ran = set(data.lines(real) or ())
        report[rel] = {"changed": changed, "ran": sorted(line for line in changed if line in ran)}
    sys.stdout.write(f"\n{MARKER} {json.dumps({'coverage': report, 'read': sorted(read)})}\n")
    sys.stdout.flush()
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
